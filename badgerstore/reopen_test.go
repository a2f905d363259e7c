package badgerstore_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// snapshot is everything a ledger answers that must survive a reopen.
type snapshot struct {
	wallets, shopWallets, bankWallets map[string]string
	inventory                         []ledger.InventoryItem
	entries                           []ledger.Entry
}

func takeSnapshot(t *testing.T, l *ledger.Ledger) snapshot {
	t.Helper()
	ctx := context.Background()
	inv, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOrUnused})
	require.NoError(t, err)
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	return snapshot{
		wallets:     totals(t, l, ledger.WalletQuery{}),
		shopWallets: totals(t, l, ledger.WalletQuery{AuthorityIDs: []string{"shop"}}),
		bankWallets: totals(t, l, ledger.WalletQuery{AuthorityIDs: []string{"bank"}}),
		inventory:   inv,
		entries:     es,
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := badgerstore.Open(dir)
	require.NoError(t, err)
	l, err := ledger.New(s)
	require.NoError(t, err)

	datas := []json.RawMessage{
		json.RawMessage(`[1, 2,3 ]`),
		json.RawMessage(" {\"k\" :\t[true, null, \"é\\u00e9\"]}\n"),
		json.RawMessage(`"just a string"`),
		json.RawMessage(`12.50`),
		nil,
	}
	create := func(auth, user, amount string, item *ledger.Item, key string) ledger.Entry {
		t.Helper()
		e, err := l.CreateEntry(ctx, ledger.NewEntry{
			AuthorityID: auth, UserID: user, Amount: dec(amount), Reason: "r " + amount, Item: item, IdempotencyKey: key,
		})
		require.NoError(t, err)
		return e
	}
	create("bank", "alice", "100.25", nil, "pay-alice")
	create("bank", "bob", "40", nil, "")
	create("bank", "carol", "7.5", nil, "pay-carol")
	var granted []ledger.Entry
	for i, d := range datas {
		user := []string{"alice", "bob", "carol"}[i%3]
		granted = append(granted, create("shop", user, "-1.25", &ledger.Item{Name: "Soda Can", Data: d}, ""))
	}
	create("arcade", "alice", "0.10", &ledger.Item{Name: "Token"}, "token-1")
	_, err = l.UseItem(ctx, "shop", granted[0].ID)
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "arcade", granted[3].ID)
	require.NoError(t, err)
	_, err = l.CreateEntries(ctx, []ledger.NewEntry{
		{AuthorityID: "bank", UserID: "dave", Amount: dec("3"), Reason: "batch"},
		{AuthorityID: "shop", UserID: "dave", Amount: dec("-3"), Reason: "batch", Item: &ledger.Item{Name: "Cake", Data: datas[1]}},
	})
	require.NoError(t, err)

	before := takeSnapshot(t, l)
	require.Equal(t, map[string]string{"alice": "97.85", "bob": "37.5", "carol": "6.25", "dave": "0"}, before.wallets)
	require.Equal(t, map[string]string{"alice": "-2.5", "bob": "-2.5", "carol": "-1.25", "dave": "-3"}, before.shopWallets)
	require.Len(t, before.inventory, 7)
	require.NoError(t, l.Close())

	s, err = badgerstore.Open(dir)
	require.NoError(t, err)
	l = newLedger(t, s)
	after := takeSnapshot(t, l)
	require.Equal(t, before, after)

	// Item data byte for byte, used flags.
	items := map[string]ledger.InventoryItem{}
	for _, it := range after.inventory {
		items[it.EntryID] = it
	}
	for i, g := range granted {
		it, ok := items[g.ID]
		require.True(t, ok, "item of entry %s", g.ID)
		require.Equal(t, []byte(datas[i]), []byte(it.Item.Data), "data of item %d", i)
		require.Equal(t, i == 0 || i == 3, it.Item.Used, "used flag of item %d", i)
	}

	// An idempotent retry returns the original entry.
	orig := after.entries[0]
	again, err := l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "bank", UserID: "alice", Amount: dec("100.25"), Reason: "r 100.25", IdempotencyKey: "pay-alice",
	})
	require.NoError(t, err)
	require.Equal(t, orig.ID, again.ID)
	_, err = l.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: "bank", UserID: "alice", Amount: dec("1"), Reason: "r 100.25", IdempotencyKey: "pay-alice",
	})
	require.ErrorIs(t, err, ledger.ErrIdempotencyConflict)

	// A used item stays used; a new entry sorts after every old one.
	_, err = l.UseItem(ctx, "shop", granted[0].ID)
	require.ErrorIs(t, err, ledger.ErrItemUsed)
	e := create("bank", "erin", "1", nil, "")
	require.Greater(t, e.ID, after.entries[len(after.entries)-1].ID)
	require.NoError(t, l.Verify(ctx))

	// History per user, with balances, is intact.
	hist, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"alice"}})
	require.NoError(t, err)
	var balances []string
	for _, h := range hist {
		balances = append(balances, h.Balance.String())
	}
	require.Equal(t, []string{"100.25", "99", "97.75", "97.85"}, balances)
}
