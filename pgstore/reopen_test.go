package pgstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

// TestReopen writes a ledger, closes it, opens the schema again and
// finds everything as it was: entries field by field, totals, items,
// used flags and item data byte for byte.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	url := dbURL(t)
	schema := freshSchema(t)

	// Item data that a JSON column would not keep: an unpaired surrogate
	// escape (jsonb refuses it; the ledger refuses raw invalid UTF-8
	// since issue 10 item 15), an escaped NUL, duplicate keys, key order
	// and whitespace.
	data := [][]byte{
		[]byte(`"\ud800 lone \udfff"`),
		[]byte(`{"b": 1, "a": "\u0000", "a": [1 , 2.50]}`),
		[]byte("  [ 1e2,\n\t\"x\" ]  "),
	}
	for _, d := range data {
		require.True(t, json.Valid(d), "%q", d)
	}
	// Text the database cannot hold as it is: NUL and \x01 (escaped).
	odd := "user\x00with\x01nul"

	s, err := pgstore.Open(ctx, url, pgstore.WithSchema(schema))
	require.NoError(t, err)
	l, err := ledger.New(s)
	require.NoError(t, err)
	entries := []ledger.NewEntry{
		{AuthorityID: "bank", UserID: "alice", Amount: decimal.RequireFromString("100.50"), Reason: "salary"},
		{AuthorityID: "bank", UserID: odd, Amount: decimal.RequireFromString("12345678901234567890.12345678"), Reason: "big\x00reason"},
		{AuthorityID: "shop", UserID: "alice", Amount: decimal.RequireFromString("-30.25"), Reason: "shades",
			Item: &ledger.Item{Name: "Cool Shades", Data: data[0]}, IdempotencyKey: "order-1"},
		{AuthorityID: "shop", UserID: odd, Amount: decimal.RequireFromString("-0.00000001"), Reason: "soda",
			Item: &ledger.Item{Name: "Soda\x01Can", Data: data[1]}},
		{AuthorityID: "auth\x00ority", UserID: "alice", Amount: decimal.Zero, Reason: "gift",
			Item: &ledger.Item{Name: "Gift", Data: data[2]}, IdempotencyKey: "key\x00\x01"},
		{AuthorityID: "shop", UserID: "alice", Amount: decimal.Zero, Reason: "no data", Item: &ledger.Item{Name: "Plain"}},
	}
	var written []ledger.Entry
	for _, ne := range entries {
		e, err := l.CreateEntry(ctx, ne)
		require.NoError(t, err)
		written = append(written, e)
	}
	used, err := l.UseItem(ctx, "shop", written[2].ID)
	require.NoError(t, err)
	written[2] = used
	before := snapshot(t, l)
	require.NoError(t, l.Close())

	l = newLedgerIn(t, schema)
	after := snapshot(t, l)
	require.Equal(t, before.wallets, after.wallets)
	require.Equal(t, before.shopWallets, after.shopWallets)
	require.Len(t, after.entries, len(written))
	for i, e := range after.entries {
		w := written[i]
		require.Equal(t, w.ID, e.ID)
		require.Equal(t, w.AuthorityID, e.AuthorityID)
		require.Equal(t, w.UserID, e.UserID)
		require.Equal(t, w.Reason, e.Reason)
		require.Truef(t, w.CreatedOn.Equal(e.CreatedOn), "CreatedOn %v, want %v", e.CreatedOn, w.CreatedOn)
		require.Equal(t, w.CreatedOn, e.CreatedOn, "CreatedOn to the nanosecond, in UTC")
		for _, d := range [][2]decimal.Decimal{{w.Amount, e.Amount}, {w.Balance, e.Balance}} {
			require.Truef(t, d[0].Equal(d[1]), "got %s, want %s", d[1], d[0])
			require.Equal(t, d[0].Exponent(), d[1].Exponent(), "%s keeps its scale", d[0])
		}
		if w.Item == nil {
			require.Nil(t, e.Item)
			continue
		}
		require.Equal(t, w.Item.Name, e.Item.Name)
		require.Equal(t, w.Item.Used, e.Item.Used)
		require.Truef(t, bytes.Equal(w.Item.Data, e.Item.Data), "Item.Data %q, want %q", e.Item.Data, w.Item.Data)
	}
	require.True(t, after.entries[2].Item.Used, "the used flag survives")
	require.Equal(t, before.items, after.items)
	require.NoError(t, l.Verify(ctx))

	// Idempotency keys survive: a retry returns the original entry.
	again, err := l.CreateEntry(ctx, entries[4])
	require.NoError(t, err)
	require.Equal(t, written[4].ID, again.ID)
	// New entries sort after the old ones.
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "alice", Amount: decimal.NewFromInt(1), Reason: "later"})
	require.NoError(t, err)
	require.Greater(t, e.ID, written[len(written)-1].ID)
}

type ledgerState struct {
	wallets, shopWallets []ledger.WalletTotal
	entries              []ledger.Entry
	items                []ledger.InventoryItem
}

func snapshot(t *testing.T, l *ledger.Ledger) ledgerState {
	t.Helper()
	ctx := context.Background()
	var s ledgerState
	var err error
	s.wallets, err = l.Wallets(ctx, ledger.WalletQuery{})
	require.NoError(t, err)
	s.shopWallets, err = l.Wallets(ctx, ledger.WalletQuery{AuthorityIDs: []string{"shop"}})
	require.NoError(t, err)
	s.entries, err = l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	s.items, err = l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOrUnused})
	require.NoError(t, err)
	require.NotEmpty(t, s.wallets)
	return s
}
