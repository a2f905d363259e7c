package pgstore_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
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
	// The feed's past: the use without a time comes right after its
	// entry, with no time or authority.
	requireChanges(t, s, []ledger.ChangeRecord{
		{Kind: ledger.ChangeEntry, At: unixNano(created.UnixNano()), AuthorityID: "bank", Ref: ids[0]},
		{Kind: ledger.ChangeEntry, At: unixNano(created.UnixNano() + 1), AuthorityID: "shop", Ref: ids[1]},
		{Kind: ledger.ChangeItemUsed, Ref: ids[1]},
		{Kind: ledger.ChangeEntry, At: unixNano(created.UnixNano() + 2), AuthorityID: "shop", Ref: ids[2]},
	})

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

// The statements of the release whose schema was at version 2, as it
// sent them: an entry's insert, an item's use and a total's upsert.
const (
	v2Insert = `INSERT INTO {schema}.entries (id, authority_id, user_id, created_on, amount, reason, item_name, item_used, item_data, balance, authority_balance, idempotency_key, item_used_on, item_used_by, use_idempotency_key)
VALUES ($1, $2, $3, $4, $5::numeric, $6, $7, $8, $9, $10::numeric, $11::numeric, $12, $13, $14, $15)`
	v2Use = `WITH u AS (UPDATE {schema}.entries SET item_used = true, item_used_on = $2, item_used_by = $3, use_idempotency_key = $4
WHERE id = $1 AND item_name IS NOT NULL RETURNING 1)
SELECT EXISTS (SELECT FROM u), EXISTS (SELECT FROM {schema}.entries WHERE id = $1)`
	v2Total = `INSERT INTO {schema}.totals (authority_id, user_id, total, last_entry) VALUES ($1, $2, $3::numeric, $4)
ON CONFLICT (authority_id, user_id) DO UPDATE SET total = EXCLUDED.total, last_entry = EXCLUDED.last_entry`
)

// TestUpgradeSchema2 builds a schema as the release at schema version 2
// (the one before currencies) left it: its two migrations, its meta row,
// entries, totals and a used item written by its statements. Opened
// with this pgstore it migrates to the current version, and every old
// entry reads back as it was, in the default currency with no metadata,
// transfer or reversal; the totals, the used item's use, an as-of
// balance and Verify are all intact. The new columns, the new key of
// totals and the limits table then take new data.
func TestUpgradeSchema2(t *testing.T) {
	ctx := context.Background()
	schema := freshSchema(t)
	q := pgx.Identifier{schema}.Sanitize()
	sql := func(s string) string { return strings.ReplaceAll(s, "{schema}", q) }
	db := adminPool(t)
	_, err := db.Exec(ctx, "CREATE SCHEMA "+q+`; CREATE TABLE `+q+`.meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL)`)
	require.NoError(t, err)
	for _, m := range pgstore.Migrations[:2] {
		_, err = db.Exec(ctx, sql(m))
		require.NoError(t, err)
	}
	_, err = db.Exec(ctx, "INSERT INTO "+q+".meta (key, value) VALUES ('version', '2')")
	require.NoError(t, err)

	created := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	at := func(i int64) int64 { return created.UnixNano() + i }
	ids := []string{ledger.FormatEntryID(at(0), 7), ledger.FormatEntryID(at(1), 8), ledger.FormatEntryID(at(2), 9), ledger.FormatEntryID(at(3), 10)}
	for _, row := range [][]any{
		{ids[0], "bank", "alice", at(0), "10", "pay", nil, nil, nil, "10", "10", "pay-1", nil, nil, nil},
		{ids[1], "shop", "alice", at(1), "-2.50", "soda", "Soda Can", false, []byte(` {"fizz": true} `), "7.50", "-2.50", "order-1", nil, nil, nil},
		{ids[2], "shop", "alice", at(2), "-1", "cake", "Cake", false, nil, "6.50", "-3.50", nil, nil, nil, nil},
		{ids[3], "bank", "bob\x01\x01", at(3), "4.00", "nul\x01\x01 escaped", nil, nil, nil, "4.00", "4.00", nil, nil, nil, nil},
	} {
		_, err = db.Exec(ctx, sql(v2Insert), row...)
		require.NoError(t, err)
	}
	usedOn := time.Date(2026, 2, 3, 4, 5, 6, 789, time.UTC)
	var used, found bool
	require.NoError(t, db.QueryRow(ctx, sql(v2Use), ids[1], usedOn.UnixNano(), "arcade", "use-soda").Scan(&used, &found))
	require.True(t, used && found)
	for _, row := range [][]any{
		{"", "alice", "6.50", ids[2]}, {"bank", "alice", "10", ids[0]}, {"shop", "alice", "-3.50", ids[2]},
		{"", "bob\x01\x01", "4.00", ids[3]}, {"bank", "bob\x01\x01", "4.00", ids[3]},
	} {
		_, err = db.Exec(ctx, sql(v2Total), row...)
		require.NoError(t, err)
	}

	s := open(t, schema)
	var version string
	require.NoError(t, db.QueryRow(ctx, "SELECT value FROM "+q+".meta WHERE key = 'version'").Scan(&version))
	require.Equal(t, strconv.Itoa(pgstore.SchemaVersion), version, "Open migrated the schema")

	// The store reads the old rows with the new fields empty.
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		var got []ledger.Record
		for r, err := range tx.Entries(ctx, ledger.Scan{}) {
			require.NoError(t, err)
			got = append(got, r)
		}
		require.Len(t, got, len(ids))
		for i, r := range got {
			require.Equal(t, ids[i], r.ID)
			require.Empty(t, r.Currency, "%s is in the default currency", r.ID)
			require.Empty(t, r.Metadata, r.ID)
			require.Empty(t, r.TransferID+r.Reverses+r.ReversedBy, r.ID)
			if r.Item != nil {
				require.False(t, r.Item.Revoked, r.ID)
			}
		}
		require.Equal(t, "bob\x00", got[3].UserID)
		require.Equal(t, "nul\x00 escaped", got[3].Reason)
		require.Equal(t, "4.00", exact(got[3].Amount))
		soda := got[1]
		require.True(t, soda.Item.Used)
		require.True(t, soda.Item.UsedOn.Equal(usedOn))
		require.Equal(t, "arcade", soda.Item.UsedBy)
		require.Equal(t, "use-soda", soda.UseIdempotencyKey)
		require.Equal(t, ` {"fizz": true} `, string(soda.Item.Data))

		// The wallet's history in the default currency is found through
		// the new index.
		var wallet []string
		for r, err := range tx.Entries(ctx, ledger.Scan{UserID: "alice", InCurrency: true, End: ids[2], Reverse: true}) {
			require.NoError(t, err)
			wallet = append(wallet, r.ID)
		}
		require.Equal(t, []string{ids[1], ids[0]}, wallet)

		for k, want := range map[ledger.TotalKey]string{
			{UserID: "alice"}: "6.50", {AuthorityID: "bank", UserID: "alice"}: "10", {AuthorityID: "shop", UserID: "alice"}: "-3.50",
			{UserID: "bob\x00"}: "4.00",
		} {
			v, ok, err := tx.Total(ctx, k)
			require.NoError(t, err)
			require.True(t, ok, "%+v", k)
			require.Equal(t, want, exact(v.Value), "%+v, its scale kept", k)
		}
		groups := map[ledger.TotalGroup]bool{}
		for g, err := range tx.TotalGroups(ctx) {
			require.NoError(t, err)
			groups[g] = true
		}
		require.Equal(t, map[ledger.TotalGroup]bool{{}: true, {AuthorityID: "bank"}: true, {AuthorityID: "shop"}: true}, groups)
		var cur []string
		for c, err := range tx.UserTotals(ctx, "alice") {
			require.NoError(t, err)
			cur = append(cur, c.Currency+"="+exact(c.Value))
		}
		require.Equal(t, []string{"=6.50"}, cur)
		for l, err := range tx.AllLimits(ctx) {
			require.NoError(t, err)
			t.Fatalf("limits before any were set: %+v", l)
		}
		return nil
	}))

	// The ledger agrees, and writes on.
	l, err := ledger.New(s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	require.NoError(t, l.Verify(ctx))
	w, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"alice"}, AsOf: time.Unix(0, at(1)).UTC()})
	require.NoError(t, err)
	require.Len(t, w, 1)
	require.Equal(t, "7.50", exact(w[0].Total), "alice's balance as of the soda, before the cake")
	_, err = l.UseItem(ctx, "arcade", ids[1], ledger.UseIdempotencyKey("use-soda"))
	require.NoError(t, err, "the old use's key still answers its retry")
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "alice", Amount: decimal.RequireFromString("-0.50"), Reason: "gum"})
	require.NoError(t, err)
	require.Equal(t, "6.00", exact(e.Balance))
	require.NoError(t, l.Verify(ctx))

	// New data in the new columns, the new key and the new table.
	gems := ledger.Record{Entry: ledger.Entry{
		ID: ledger.FormatEntryID(at(10), 1), AuthorityID: "shop", UserID: "alice", CreatedOn: time.Unix(0, at(10)).UTC(),
		Amount: decimal.NewFromInt(5), Reason: "gift", Balance: decimal.NewFromInt(5), Currency: "gems",
		Metadata: map[string]string{"order": "o-1"}, TransferID: "t-1",
	}, AuthorityBalance: decimal.NewFromInt(5)}
	capV := decimal.NewFromInt(100)
	lim := ledger.StoredLimits{WalletLimits: ledger.WalletLimits{UserID: "alice", Currency: "gems", Floor: decimal.NewFromInt(-3), Cap: &capV}, SetBy: "shop", SetOn: created}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		require.NoError(t, tx.InsertEntry(ctx, gems))
		require.NoError(t, tx.SetTotal(ctx, ledger.TotalKey{UserID: "alice", Currency: "gems"}, ledger.Total{Value: decimal.NewFromInt(5), LastEntryID: gems.ID}))
		require.NoError(t, tx.SetReversed(ctx, ids[2], gems.ID, true))
		return tx.SetLimits(ctx, lim)
	}))
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		r, err := tx.Entry(ctx, gems.ID)
		require.NoError(t, err)
		require.Equal(t, "gems", r.Currency)
		require.Equal(t, gems.Metadata, r.Metadata)
		require.Equal(t, "t-1", r.TransferID)
		cake, err := tx.Entry(ctx, ids[2])
		require.NoError(t, err)
		require.Equal(t, gems.ID, cake.ReversedBy)
		require.True(t, cake.Item.Revoked)
		var cur []string
		for c, err := range tx.UserTotals(ctx, "alice") {
			require.NoError(t, err)
			cur = append(cur, c.Currency+"="+exact(c.Value))
		}
		require.Equal(t, []string{"=6.00", "gems=5"}, cur)
		got, ok, err := tx.Limits(ctx, "alice", "gems")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "shop", got.SetBy)
		require.True(t, got.Cap.Equal(capV))
		return nil
	}))

	// The new check holds for rows written from now on.
	_, err = db.Exec(ctx, "UPDATE "+q+".entries SET item_revoked = true WHERE id = $1", ids[0])
	require.ErrorContains(t, err, "entries_revoked_check")
}

// exact renders d with its scale: 1.50 as 1.50.
func exact(d decimal.Decimal) string {
	if e := d.Exponent(); e < 0 {
		return d.StringFixed(-e)
	}
	return d.String()
}

// The statements of the release whose schema was at version 3, as it
// sent them: an entry's insert, a total's upsert and a limits upsert.
const (
	v3Insert = `INSERT INTO {schema}.entries (id, authority_id, user_id, created_on, amount, reason, item_name, item_used, item_data, balance, authority_balance, idempotency_key, item_used_on, item_used_by, use_idempotency_key,
currency, metadata, transfer_id, reverses, reversed_by, item_revoked)
VALUES ($1, $2, $3, $4, $5::numeric, $6, $7, $8, $9, $10::numeric, $11::numeric, $12, $13, $14, $15, $16, $17::jsonb, $18, $19, $20, $21)`
	v3Total = `INSERT INTO {schema}.totals (authority_id, currency, user_id, total, last_entry) VALUES ($1, $2, $3, $4::numeric, $5)
ON CONFLICT (authority_id, currency, user_id) DO UPDATE SET total = EXCLUDED.total, last_entry = EXCLUDED.last_entry`
	v3Limits = `INSERT INTO {schema}.limits (user_id, currency, floor, cap, set_by, set_on) VALUES ($1, $2, $3::numeric, $4::numeric, $5, $6)
ON CONFLICT (user_id, currency) DO UPDATE SET floor = EXCLUDED.floor, cap = EXCLUDED.cap, set_by = EXCLUDED.set_by, set_on = EXCLUDED.set_on`
)

// TestUpgradeSchema3 builds a schema as the release at schema version 3
// (the one before holds) left it: its three migrations, its meta row,
// and entries, totals and limits written by its statements. Opened with
// this pgstore it migrates to the current version without rewriting
// entries or totals (their files are the same), and every old row reads
// back as it was, entries with no HoldID and totals holding nothing;
// the ledger verifies it. Holds, an entry's HoldID and a total's Held
// then take new data.
func TestUpgradeSchema3(t *testing.T) {
	ctx := context.Background()
	schema := freshSchema(t)
	q := pgx.Identifier{schema}.Sanitize()
	sql := func(s string) string { return strings.ReplaceAll(s, "{schema}", q) }
	db := adminPool(t)
	_, err := db.Exec(ctx, "CREATE SCHEMA "+q+`; CREATE TABLE `+q+`.meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL)`)
	require.NoError(t, err)
	for _, m := range pgstore.Migrations[:3] {
		_, err = db.Exec(ctx, sql(m))
		require.NoError(t, err)
	}
	_, err = db.Exec(ctx, "INSERT INTO "+q+".meta (key, value) VALUES ('version', '3')")
	require.NoError(t, err)

	created := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	at := func(i int64) int64 { return created.UnixNano() + i }
	ids := []string{ledger.FormatEntryID(at(0), 7), ledger.FormatEntryID(at(1), 8), ledger.FormatEntryID(at(2), 9)}
	for _, row := range [][]any{
		{ids[0], "bank", "alice", at(0), "10", "pay", nil, nil, nil, "10", "10", "pay-1", nil, nil, nil, "", nil, nil, nil, nil, nil},
		{ids[1], "shop", "alice", at(1), "-2.50", "soda", "Soda Can", false, []byte(`{}`), "7.50", "-2.50", nil, nil, nil, nil, "", `{"order": "o-1"}`, nil, nil, nil, nil},
		{ids[2], "bank", "alice", at(2), "5", "gems", nil, nil, nil, "5", "5", nil, nil, nil, nil, "gems", nil, "t-1", nil, nil, nil},
	} {
		_, err = db.Exec(ctx, sql(v3Insert), row...)
		require.NoError(t, err)
	}
	for _, row := range [][]any{
		{"", "", "alice", "7.50", ids[1]}, {"bank", "", "alice", "10", ids[0]}, {"shop", "", "alice", "-2.50", ids[1]},
		{"", "gems", "alice", "5", ids[2]}, {"bank", "gems", "alice", "5", ids[2]},
	} {
		_, err = db.Exec(ctx, sql(v3Total), row...)
		require.NoError(t, err)
	}
	_, err = db.Exec(ctx, sql(v3Limits), "alice", "gems", "-1", "100", "bank", created.UnixNano())
	require.NoError(t, err)
	files := func() (entries, totals int64) {
		t.Helper()
		require.NoError(t, db.QueryRow(ctx, "SELECT pg_relation_filenode($1::text::regclass)::bigint, pg_relation_filenode($2::text::regclass)::bigint",
			q+".entries", q+".totals").Scan(&entries, &totals))
		return entries, totals
	}
	entriesFile, totalsFile := files()

	s := open(t, schema)
	var version string
	require.NoError(t, db.QueryRow(ctx, "SELECT value FROM "+q+".meta WHERE key = 'version'").Scan(&version))
	require.Equal(t, strconv.Itoa(pgstore.SchemaVersion), version, "Open migrated the schema")
	e, tot := files()
	require.Equal(t, entriesFile, e, "the migration rewrote entries")
	require.Equal(t, totalsFile, tot, "the migration rewrote totals")

	// The store reads the old rows with the new fields empty.
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		var got []ledger.Record
		for r, err := range tx.Entries(ctx, ledger.Scan{}) {
			require.NoError(t, err)
			got = append(got, r)
		}
		require.Len(t, got, len(ids))
		for i, r := range got {
			require.Equal(t, ids[i], r.ID)
			require.Empty(t, r.HoldID, r.ID)
		}
		require.Equal(t, map[string]string{"order": "o-1"}, got[1].Metadata)
		require.Equal(t, "gems", got[2].Currency)
		require.Equal(t, "t-1", got[2].TransferID)

		keys := map[ledger.TotalKey]string{
			{UserID: "alice"}: "7.50", {AuthorityID: "bank", UserID: "alice"}: "10", {AuthorityID: "shop", UserID: "alice"}: "-2.50",
			{UserID: "alice", Currency: "gems"}: "5", {AuthorityID: "bank", UserID: "alice", Currency: "gems"}: "5",
		}
		for k, want := range keys {
			v, ok, err := tx.Total(ctx, k)
			require.NoError(t, err)
			require.True(t, ok, "%+v", k)
			require.Equal(t, want, exact(v.Value), "%+v", k)
			require.Equal(t, "0", exact(v.Held), "%+v holds nothing", k)
		}
		m, err := tx.(ledger.TotalsPrefetcher).TotalsOf(ctx, slices.Collect(maps.Keys(keys)))
		require.NoError(t, err)
		require.Len(t, m, len(keys))
		for k, v := range m {
			require.Equal(t, keys[k], exact(v.Value), "%+v", k)
			require.Equal(t, "0", exact(v.Held), "%+v", k)
		}
		var cur []string
		for c, err := range tx.UserTotals(ctx, "alice") {
			require.NoError(t, err)
			cur = append(cur, c.Currency+"="+exact(c.Value)+"/"+exact(c.Held))
		}
		require.Equal(t, []string{"=7.50/0", "gems=5/0"}, cur)
		var users []string
		for u, err := range tx.Totals(ctx, "bank", "", "") {
			require.NoError(t, err)
			users = append(users, u.UserID+"="+exact(u.Value)+"/"+exact(u.Held))
		}
		require.Equal(t, []string{"alice=10/0"}, users)
		for h, err := range tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true}) {
			require.NoError(t, err)
			t.Fatalf("holds before any were placed: %+v", h)
		}
		return nil
	}))

	// The feed's past: the entries and the limits, set at the first
	// entry's time and so right after it.
	capV := decimal.NewFromInt(100)
	requireChanges(t, s, []ledger.ChangeRecord{
		{Kind: ledger.ChangeEntry, At: unixNano(at(0)), AuthorityID: "bank", Ref: ids[0]},
		{Kind: ledger.ChangeLimits, At: created, AuthorityID: "bank", Limits: &ledger.WalletLimits{UserID: "alice", Currency: "gems", Floor: decimal.NewFromInt(-1), Cap: &capV}},
		{Kind: ledger.ChangeEntry, At: unixNano(at(1)), AuthorityID: "shop", Ref: ids[1]},
		{Kind: ledger.ChangeEntry, At: unixNano(at(2)), AuthorityID: "bank", Ref: ids[2]},
	})

	// The ledger agrees.
	l, err := ledger.New(s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	require.NoError(t, l.Verify(ctx))

	// New data in the new table and columns.
	placed := created.Add(time.Hour + 1)
	h := ledger.HoldRecord{Hold: ledger.Hold{
		ID: ledger.FormatEntryID(placed.UnixNano(), 1), AuthorityID: "shop", UserID: "alice", Currency: "gems",
		Amount: decimal.RequireFromString("1.50"), Reason: "cart", CreatedOn: placed, Expires: placed.Add(time.Minute + 1),
	}, IdempotencyKey: "cart-1"}
	capture := ledger.Record{Entry: ledger.Entry{
		ID: ledger.FormatEntryID(at(10), 1), AuthorityID: "shop", UserID: "alice", CreatedOn: time.Unix(0, at(10)).UTC(),
		Amount: decimal.NewFromInt(-1), Reason: "cart", Balance: decimal.NewFromInt(4), Currency: "gems", HoldID: h.ID,
	}, AuthorityBalance: decimal.NewFromInt(-1)}
	held := ledger.Total{Value: decimal.NewFromInt(5), LastEntryID: ids[2], Held: h.Amount}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		require.NoError(t, tx.InsertHold(ctx, h))
		return tx.SetTotal(ctx, ledger.TotalKey{UserID: "alice", Currency: "gems"}, held)
	}))
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		got, err := tx.HoldByIdempotencyKey(ctx, "shop", "cart-1")
		require.NoError(t, err)
		require.Equal(t, h, got)
		exp := slices.Collect(func(yield func(string) bool) {
			for h, err := range tx.ExpiringHolds(ctx, "alice", "gems", h.Expires) {
				require.NoError(t, err)
				yield(h.ID)
			}
		})
		require.Equal(t, []string{h.ID}, exp)
		v, ok, err := tx.Total(ctx, ledger.TotalKey{UserID: "alice", Currency: "gems"})
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "1.50", exact(v.Held))
		return nil
	}))
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		require.NoError(t, tx.InsertEntry(ctx, capture))
		require.NoError(t, tx.CloseHold(ctx, h.ID, ledger.HoldClose{State: ledger.HoldCaptured, ClosedOn: capture.CreatedOn, EntryID: capture.ID}))
		return tx.SetTotal(ctx, ledger.TotalKey{UserID: "alice", Currency: "gems"}, ledger.Total{Value: decimal.NewFromInt(4), LastEntryID: capture.ID})
	}))
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		r, err := tx.Entry(ctx, capture.ID)
		require.NoError(t, err)
		require.Equal(t, h.ID, r.HoldID)
		got, err := tx.Hold(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, ledger.HoldCaptured, got.State)
		require.Equal(t, capture.ID, got.EntryID)
		for h, err := range tx.ExpiringHolds(ctx, "", "", h.Expires) {
			require.NoError(t, err)
			t.Fatalf("a captured hold is expiring: %+v", h)
		}
		return nil
	}))

	// The new check holds.
	_, err = db.Exec(ctx, "UPDATE "+q+".holds SET state = 'lost' WHERE hold_id = $1", h.ID)
	require.ErrorContains(t, err, "holds_state_check")
}

// The statements of the release whose schema was at version 4, as it
// sent them: an entry's insert, a total's upsert, a limits upsert, a
// hold's insert and its close.
const (
	v4Insert = `INSERT INTO {schema}.entries (id, authority_id, user_id, created_on, amount, reason, item_name, item_used, item_data, balance, authority_balance, idempotency_key, item_used_on, item_used_by, use_idempotency_key,
currency, metadata, transfer_id, reverses, reversed_by, item_revoked, hold_id)
VALUES ($1, $2, $3, $4, $5::numeric, $6, $7, $8, $9, $10::numeric, $11::numeric, $12, $13, $14, $15, $16, $17::jsonb, $18, $19, $20, $21, $22)`
	v4Total = `INSERT INTO {schema}.totals (authority_id, currency, user_id, total, last_entry, held) VALUES ($1, $2, $3, $4::numeric, $5, $6::numeric)
ON CONFLICT (authority_id, currency, user_id) DO UPDATE SET total = EXCLUDED.total, last_entry = EXCLUDED.last_entry, held = EXCLUDED.held`
	v4Hold = `INSERT INTO {schema}.holds (hold_id, authority_id, user_id, currency, amount, reason, metadata, created_on, expires, state, closed_on, entry_id, idempotency_key)
VALUES ($1, $2, $3, $4, $5::numeric, $6, $7::jsonb, $8, $9, $10, $11, $12, $13)`
	v4Close = `UPDATE {schema}.holds SET state = $2, closed_on = $3, entry_id = $4 WHERE hold_id = $1`
)

// TestUpgradeSchema4 builds a schema as the release at schema version 4
// (the one before the change feed) left it, with entries, item uses
// (one with a time, one from before uses had times), limits (one set at
// the zero time) and holds in every state, written by its statements.
// Opened with this pgstore it migrates, and the feed's past is
// synthesized from the records, change by change, in the order of a
// merge by time with its ties broken as the migration says; the changes
// appended from then on sort after it.
func TestUpgradeSchema4(t *testing.T) {
	ctx := context.Background()
	schema := freshSchema(t)
	q := pgx.Identifier{schema}.Sanitize()
	sql := func(s string) string { return strings.ReplaceAll(s, "{schema}", q) }
	db := adminPool(t)
	_, err := db.Exec(ctx, "CREATE SCHEMA "+q+`; CREATE TABLE `+q+`.meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL)`)
	require.NoError(t, err)
	for _, m := range pgstore.Migrations[:4] {
		_, err = db.Exec(ctx, sql(m))
		require.NoError(t, err)
	}
	_, err = db.Exec(ctx, "INSERT INTO "+q+".meta (key, value) VALUES ('version', '4')")
	require.NoError(t, err)

	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	at := func(i int64) int64 { return base + i }
	e := func(i int64, n uint32) string { return ledger.FormatEntryID(at(i), n) }
	e1, e2, e3, e4, e5 := e(0, 1), e(5, 2), e(10, 3), e(18, 4), e(20, 5)
	h1, h2, h3, h4 := e(3, 11), e(10, 12), e(12, 13), e(15, 14)
	for _, row := range [][]any{
		// e1's item was used at 5 by the shop; e2's, created at 5, was used
		// before uses had times.
		{e1, "bank", "alice", at(0), "10", "pay", "Sword", true, nil, "10", "10", nil, at(5), "shop", "use-1", "", nil, nil, nil, nil, nil, nil},
		{e2, "shop", "alice", at(5), "0", "grant", "Shield", true, nil, "10", "0", nil, nil, nil, nil, "", nil, nil, nil, nil, nil, nil},
		{e3, "bank", "bob", at(10), "5", "pay", nil, nil, nil, "5", "5", nil, nil, nil, nil, "", nil, nil, nil, nil, nil, nil},
		{e4, "shop", "alice", at(18), "-1", "cart", nil, nil, nil, "9", "-1", nil, nil, nil, nil, "", nil, nil, nil, nil, nil, h4},
		{e5, "bank", "alice", at(20), "1", "pay", nil, nil, nil, "10", "11", nil, nil, nil, nil, "", nil, nil, nil, nil, nil, nil},
	} {
		_, err = db.Exec(ctx, sql(v4Insert), row...)
		require.NoError(t, err)
	}
	for _, row := range [][]any{
		{"", "", "alice", "10", e5, "2"}, {"bank", "", "alice", "11", e5, "0"}, {"shop", "", "alice", "-1", e4, "0"},
		{"", "", "bob", "5", e3, "0"}, {"bank", "", "bob", "5", e3, "0"},
	} {
		_, err = db.Exec(ctx, sql(v4Total), row...)
		require.NoError(t, err)
	}
	for _, row := range [][]any{
		{"carol", "", "0", nil, "bank", nil}, // set at the zero time: first of all
		{"bob", "", "0", "50", "bank", at(10)},
		{"alice", "gems", "-3", "100", "shop", at(10)},
	} {
		_, err = db.Exec(ctx, sql(v3Limits), row...)
		require.NoError(t, err)
	}
	for _, row := range [][]any{
		{h1, "shop", "alice", "", "2", "cart", nil, at(3), nil, "active", nil, nil, nil},
		{h2, "shop", "alice", "", "1", "cart", nil, at(10), nil, "active", nil, nil, "cart-2"},
		{h3, "shop", "alice", "", "1", "cart", nil, at(12), at(19), "active", nil, nil, nil},
		{h4, "desk", "alice", "", "1", "cart", nil, at(15), nil, "active", nil, nil, nil},
	} {
		_, err = db.Exec(ctx, sql(v4Hold), row...)
		require.NoError(t, err)
	}
	for _, row := range [][]any{{h2, "released", at(20), nil}, {h3, "expired", at(20), nil}, {h4, "captured", at(18), e4}} {
		_, err = db.Exec(ctx, sql(v4Close), row...)
		require.NoError(t, err)
	}

	s := open(t, schema)
	var version string
	require.NoError(t, db.QueryRow(ctx, "SELECT value FROM "+q+".meta WHERE key = 'version'").Scan(&version))
	require.Equal(t, strconv.Itoa(pgstore.SchemaVersion), version, "Open migrated the schema")

	capBob, capAlice := decimal.NewFromInt(50), decimal.NewFromInt(100)
	past := []ledger.ChangeRecord{
		{Kind: ledger.ChangeLimits, AuthorityID: "bank", Limits: &ledger.WalletLimits{UserID: "carol", Floor: decimal.Zero}},
		{Kind: ledger.ChangeEntry, At: unixNano(at(0)), AuthorityID: "bank", Ref: e1},
		{Kind: ledger.ChangeHoldPlaced, At: unixNano(at(3)), AuthorityID: "shop", Ref: h1},
		// At 5: the entry, its use without a time right after it, then
		// the timed use of e1.
		{Kind: ledger.ChangeEntry, At: unixNano(at(5)), AuthorityID: "shop", Ref: e2},
		{Kind: ledger.ChangeItemUsed, Ref: e2},
		{Kind: ledger.ChangeItemUsed, At: unixNano(at(5)), AuthorityID: "shop", Ref: e1},
		// At 10: the entry, the limits by user, the hold.
		{Kind: ledger.ChangeEntry, At: unixNano(at(10)), AuthorityID: "bank", Ref: e3},
		{Kind: ledger.ChangeLimits, At: unixNano(at(10)), AuthorityID: "shop", Limits: &ledger.WalletLimits{UserID: "alice", Currency: "gems", Floor: decimal.NewFromInt(-3), Cap: &capAlice}},
		{Kind: ledger.ChangeLimits, At: unixNano(at(10)), AuthorityID: "bank", Limits: &ledger.WalletLimits{UserID: "bob", Floor: decimal.Zero, Cap: &capBob}},
		{Kind: ledger.ChangeHoldPlaced, At: unixNano(at(10)), AuthorityID: "shop", Ref: h2},
		{Kind: ledger.ChangeHoldPlaced, At: unixNano(at(12)), AuthorityID: "shop", Ref: h3},
		{Kind: ledger.ChangeHoldPlaced, At: unixNano(at(15)), AuthorityID: "desk", Ref: h4},
		// The capture is its entry, and nothing else.
		{Kind: ledger.ChangeEntry, At: unixNano(at(18)), AuthorityID: "shop", Ref: e4},
		// At 20: the entry, then the closes by hold ID.
		{Kind: ledger.ChangeEntry, At: unixNano(at(20)), AuthorityID: "bank", Ref: e5},
		{Kind: ledger.ChangeHoldReleased, At: unixNano(at(20)), AuthorityID: "shop", Ref: h2},
		{Kind: ledger.ChangeHoldExpired, At: unixNano(at(20)), AuthorityID: "shop", Ref: h3},
	}
	requireChanges(t, s, past)
	l, err := ledger.New(s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	require.NoError(t, l.Verify(ctx), "the fixture is a consistent ledger")

	// New changes follow the past.
	next := ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: unixNano(at(30)), AuthorityID: "bank", Ref: e(30, 6)}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return tx.AppendChange(ctx, next) }))
	requireChanges(t, s, append(past, next))
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		var got []ledger.ChangeRecord
		for c, err := range tx.Changes(ctx, fmt.Sprintf("%016x", len(past)-1)) {
			require.NoError(t, err)
			got = append(got, c)
		}
		require.Len(t, got, 2, "a seek to the end of the past")
		require.Equal(t, ledger.ChangeHoldExpired, got[0].Kind)
		require.Equal(t, next.Ref, got[1].Ref)
		return nil
	}))
}

// requireChanges checks that s's feed holds exactly want, in order, with
// the cursors 1, 2, ... as the migration numbers the past.
func requireChanges(t *testing.T, s ledger.Store, want []ledger.ChangeRecord) {
	t.Helper()
	require.NoError(t, s.View(context.Background(), func(tx ledger.ReadTx) error {
		var got []ledger.ChangeRecord
		for c, err := range tx.Changes(context.Background(), "") {
			require.NoError(t, err)
			got = append(got, c)
		}
		require.Len(t, got, len(want))
		for i, w := range want {
			g := got[i]
			require.Equal(t, fmt.Sprintf("%016x", i+1), g.Cursor, "change %d", i)
			require.Equal(t, w.Kind, g.Kind, "change %d", i)
			require.Truef(t, w.At.Equal(g.At), "change %d: At %v, want %v", i, g.At, w.At)
			require.Equal(t, time.UTC, g.At.Location(), "change %d", i)
			require.Equal(t, w.AuthorityID, g.AuthorityID, "change %d", i)
			require.Equal(t, w.Ref, g.Ref, "change %d", i)
			require.Equal(t, w.Limits == nil, g.Limits == nil, "change %d: limits", i)
			if w.Limits != nil {
				require.Equal(t, w.Limits.UserID, g.Limits.UserID, "change %d", i)
				require.Equal(t, w.Limits.Currency, g.Limits.Currency, "change %d", i)
				require.True(t, w.Limits.Floor.Equal(g.Limits.Floor), "change %d: floor %s", i, g.Limits.Floor)
				require.Equal(t, w.Limits.Cap == nil, g.Limits.Cap == nil, "change %d: cap", i)
				if w.Limits.Cap != nil {
					require.True(t, w.Limits.Cap.Equal(*g.Limits.Cap), "change %d: cap %s", i, g.Limits.Cap)
				}
			}
		}
		return nil
	}))
}

// unixNano is the time n Unix nanoseconds name, in UTC.
func unixNano(n int64) time.Time { return time.Unix(0, n).UTC() }
