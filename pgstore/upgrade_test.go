package pgstore_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

// The statements of the release whose schema was at version 1, as it
// sent them: an entry's insert and an item's use.
const (
	v1Insert = `INSERT INTO {schema}.entries (id, authority_id, user_id, created_on, amount, reason, item_name, item_used, item_data, balance, authority_balance, idempotency_key)
VALUES ($1, $2, $3, $4, $5::numeric, $6, $7, $8, $9, $10::numeric, $11::numeric, $12)`
	v1Use   = `UPDATE {schema}.entries SET item_used = true WHERE id = $1 AND item_name IS NOT NULL`
	v1Total = `INSERT INTO {schema}.totals (authority_id, user_id, total, last_entry) VALUES ($1, $2, $3::numeric, $4)`
)

// TestUpgradeSchema1 builds a schema as the release at schema version 1
// left it (its migration, its meta row, rows written by its
// statements), opens it with this pgstore, which migrates it, and finds
// the old rows intact: the item used before reads as used, with no use
// time or authority. A use recorded after the upgrade keeps them.
func TestUpgradeSchema1(t *testing.T) {
	ctx := context.Background()
	schema := freshSchema(t)
	q := pgx.Identifier{schema}.Sanitize()
	sql := func(s string) string { return strings.ReplaceAll(s, "{schema}", q) }
	db := adminPool(t)
	_, err := db.Exec(ctx, "CREATE SCHEMA "+q+`; CREATE TABLE `+q+`.meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL)`)
	require.NoError(t, err)
	_, err = db.Exec(ctx, sql(pgstore.Migrations[0]))
	require.NoError(t, err)
	_, err = db.Exec(ctx, "INSERT INTO "+q+".meta (key, value) VALUES ('version', '1')")
	require.NoError(t, err)

	created := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	ids := []string{ledger.FormatEntryID(created.UnixNano(), 7), ledger.FormatEntryID(created.UnixNano()+1, 8), ledger.FormatEntryID(created.UnixNano()+2, 9)}
	for _, row := range [][]any{
		{ids[0], "bank", "alice", created.UnixNano(), "10", "pay", nil, nil, nil, "10", "10", "pay-1"},
		{ids[1], "shop", "alice", created.UnixNano() + 1, "-2.50", "soda", "Soda Can", false, []byte(` {"fizz": true} `), "7.50", "-2.50", "order-1"},
		{ids[2], "shop", "alice", created.UnixNano() + 2, "-1", "cake", "Cake", false, nil, "6.50", "-3.50", nil},
	} {
		_, err = db.Exec(ctx, sql(v1Insert), row...)
		require.NoError(t, err)
	}
	_, err = db.Exec(ctx, sql(v1Use), ids[1])
	require.NoError(t, err)
	for _, row := range [][]any{{"", "alice", "6.50", ids[2]}, {"bank", "alice", "10", ids[0]}, {"shop", "alice", "-3.50", ids[2]}} {
		_, err = db.Exec(ctx, sql(v1Total), row...)
		require.NoError(t, err)
	}

	clock := time.Date(2027, 5, 6, 7, 8, 9, 123456789, time.UTC)
	s := open(t, schema)
	l, err := ledger.New(s, ledger.WithClock(func() time.Time { return clock }))
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	var version string
	require.NoError(t, db.QueryRow(ctx, "SELECT value FROM "+q+".meta WHERE key = 'version'").Scan(&version))
	require.Equal(t, strconv.Itoa(pgstore.SchemaVersion), version, "Open migrated the schema")
	require.NoError(t, l.Verify(ctx))

	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Equal(t, ids, []string{es[0].ID, es[1].ID, es[2].ID})
	soda := es[1]
	require.True(t, soda.Item.Used)
	require.True(t, soda.Item.UsedOn.IsZero(), "no use time was recorded")
	require.Empty(t, soda.Item.UsedBy, "no authority was recorded")
	require.Equal(t, ` {"fizz": true} `, string(soda.Item.Data))
	require.False(t, es[2].Item.Used)
	_, err = l.UseItem(ctx, "shop", soda.ID, ledger.UseIdempotencyKey("k"))
	require.ErrorIs(t, err, ledger.ErrItemUsed, "a use without a key matches no retry")

	cake, err := l.UseItem(ctx, "arcade", es[2].ID, ledger.UseIdempotencyKey("use-cake"), ledger.ForUser("alice"))
	require.NoError(t, err)
	require.Equal(t, clock, cake.Item.UsedOn)
	require.Equal(t, "arcade", cake.Item.UsedBy)
	require.NoError(t, l.Close())

	l = newLedgerIn(t, schema)
	again, err := l.UseItem(ctx, "arcade", es[2].ID, ledger.UseIdempotencyKey("use-cake"))
	require.NoError(t, err, "the use's key is stored")
	require.Equal(t, cake, again)
	require.NoError(t, l.Verify(ctx))

	// The new check holds for rows written from now on.
	_, err = db.Exec(ctx, "UPDATE "+q+".entries SET item_used_by = 'x' WHERE id = $1", ids[0])
	require.ErrorContains(t, err, "entries_use_check")
}
