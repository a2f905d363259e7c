package badgerstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"testing"
	"time"

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

// TestReopenHolds closes and reopens a store on disk holding holds
// (active, expiring, closed, in two currencies, with keys) and held
// totals, one for Held alone, and finds them all, their indexes too.
func TestReopenHolds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	at := time.Date(2026, 3, 1, 0, 0, 0, 789, time.UTC)
	hold := func(n int, user, cur string, expires time.Duration) ledger.HoldRecord {
		h := ledger.HoldRecord{Hold: ledger.Hold{
			ID: fmt.Sprintf("%016x%08x", at.Add(time.Duration(n)).UnixNano(), n), AuthorityID: "shop", UserID: user, Currency: cur,
			Amount: dec(fmt.Sprintf("%d.50", n)), Reason: fmt.Sprintf("hold %d", n), CreatedOn: at.Add(time.Duration(n)),
			Metadata: map[string]string{"n": fmt.Sprint(n)},
		}}
		if expires != 0 {
			h.Expires = at.Add(expires)
		}
		return h
	}
	hs := []ledger.HoldRecord{
		hold(1, "alice", "", time.Hour), hold(2, "alice", "gems", 2*time.Hour), hold(3, "alice", "", 0),
		hold(4, "bob", "", 30*time.Minute), hold(5, "bob", "", time.Hour),
	}
	hs[0].IdempotencyKey = "h-1"
	closed := ledger.HoldClose{State: ledger.HoldCaptured, ClosedOn: at.Add(time.Minute), EntryID: "18d2000000000000000000e1"}
	totals := map[ledger.TotalKey]ledger.Total{
		{UserID: "alice"}:                   {Value: dec("100"), LastEntryID: "18d2000000000000000000e0", Held: dec("4.00")},
		{UserID: "alice", Currency: "gems"}: {Held: dec("2.50")},
		{UserID: "bob"}:                     {Held: dec("5.50")},
	}

	s := open(t, dir)
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		for _, h := range hs {
			require.NoError(t, tx.InsertHold(ctx, h))
		}
		for k, v := range totals {
			require.NoError(t, tx.SetTotal(ctx, k, v))
		}
		return nil
	}))
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return tx.CloseHold(ctx, hs[3].ID, closed) }))
	hs[3].State, hs[3].ClosedOn, hs[3].EntryID = closed.State, closed.ClosedOn, closed.EntryID
	require.NoError(t, s.Close())

	s = open(t, dir)
	ids := func(seq iter.Seq2[ledger.HoldRecord, error]) []string {
		var out []string
		for h, err := range seq {
			require.NoError(t, err)
			out = append(out, h.ID)
		}
		return out
	}
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for _, want := range hs {
			got, err := tx.Hold(ctx, want.ID)
			require.NoError(t, err)
			requireSameHold(t, want, got)
		}
		got, err := tx.HoldByIdempotencyKey(ctx, "shop", "h-1")
		require.NoError(t, err)
		requireSameHold(t, hs[0], got)
		require.Equal(t, []string{hs[0].ID, hs[1].ID, hs[2].ID}, ids(tx.Holds(ctx, ledger.HoldScan{UserID: "alice", AnyCurrency: true})))
		require.Equal(t, []string{hs[1].ID}, ids(tx.Holds(ctx, ledger.HoldScan{UserID: "alice", Currency: "gems"})))
		require.Equal(t, []string{hs[0].ID, hs[4].ID, hs[1].ID}, ids(tx.ExpiringHolds(ctx, "", "", at.Add(24*time.Hour))),
			"the captured hold left the expiry index, for good")
		require.Equal(t, []string{hs[4].ID}, ids(tx.ExpiringHolds(ctx, "bob", "", at.Add(time.Hour))))
		for k, want := range totals {
			got, ok, err := tx.Total(ctx, k)
			require.NoError(t, err)
			require.True(t, ok, "%v", k)
			requireSameTotal(t, want, got)
		}
		var cur []string
		for r, err := range tx.UserTotals(ctx, "alice") {
			require.NoError(t, err)
			cur = append(cur, r.Currency+"="+r.Held.String())
		}
		require.Equal(t, []string{"=4", "gems=2.5"}, cur)
		return nil
	}))
}
