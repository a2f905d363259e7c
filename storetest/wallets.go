package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runWallets checks, through a ledger over the store, wallets in several
// currencies, metadata, limits, transfers and reversals.
func runWallets(t *testing.T, ns NewStore) {
	t.Run("Currencies", func(t *testing.T) { testCurrencies(t, ns) })
	t.Run("CurrencyHistory", func(t *testing.T) { testCurrencyHistory(t, ns) })
	t.Run("Metadata", func(t *testing.T) { testMetadata(t, ns) })
	t.Run("Limits", func(t *testing.T) { testLimits(t, ns) })
	t.Run("Transfer", func(t *testing.T) { testTransfer(t, ns) })
	t.Run("Reverse", func(t *testing.T) { testReverseEntry(t, ns) })
	t.Run("ReverseTransfer", func(t *testing.T) { testReverseTransfer(t, ns) })
	t.Run("InvalidWalletInput", func(t *testing.T) { testInvalidWalletInput(t, ns) })
	t.Run("ExportImport", func(t *testing.T) { testWalletExportImport(t, ns) })
}

func entryIn(auth, user, currency, amount string) ledger.NewEntry {
	return ledger.NewEntry{AuthorityID: auth, UserID: user, Currency: currency, Amount: dec(amount), Reason: "test " + amount}
}

func mustCreate(t *testing.T, l *ledger.Ledger, ne ledger.NewEntry) ledger.Entry {
	t.Helper()
	e, err := l.CreateEntry(context.Background(), ne)
	require.NoError(t, err)
	return e
}

func requireBalance(t *testing.T, l *ledger.Ledger, user, currency, total string) ledger.Balance {
	t.Helper()
	b, err := l.Balance(context.Background(), user, currency)
	require.NoError(t, err)
	require.Equal(t, user, b.UserID)
	require.Equal(t, currency, b.Currency)
	requireDecimal(t, total, b.Total, user, currency, "total")
	requireDecimal(t, total, b.Available, user, currency, "available")
	requireDecimal(t, "0", b.Held)
	return b
}

func testCurrencies(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	mustCreate(t, l, entryIn("bank", "ann", "gems", "3"))
	mustCreate(t, l, entryIn("shop", "ann", "gems", "-1"))
	mustCreate(t, l, entryIn("bank", "bob", "coins", "7"))
	e := mustCreate(t, l, entryIn("shop", "ann", "coins", "0"))
	require.Equal(t, "coins", e.Currency)
	requireDecimal(t, "0", e.Balance, "Balance is the wallet's, in its currency")

	// Funds are per currency: ann has 10 of the default, 2 gems.
	_, err := l.CreateEntry(ctx, entryIn("shop", "ann", "gems", "-3"))
	var nef *ledger.NotEnoughFundsError
	require.ErrorAs(t, err, &nef)
	require.Equal(t, "gems", nef.Currency)
	requireDecimal(t, "2", nef.Balance)
	requireDecimal(t, "0", nef.Floor)
	e = mustCreate(t, l, entryIn("shop", "ann", "gems", "-2"))
	requireDecimal(t, "0", e.Balance)

	requireBalance(t, l, "ann", "", "10")
	requireBalance(t, l, "ann", "gems", "0")
	requireBalance(t, l, "bob", "", "0")
	requireBalance(t, l, "nobody", "gems", "0")
	bs, err := l.Balances(ctx, "ann")
	require.NoError(t, err)
	var got []string
	for _, b := range bs {
		got = append(got, b.Currency+"="+b.Total.String())
	}
	require.Equal(t, []string{"=10", "coins=0", "gems=0"}, got, "every currency with an entry, sorted")
	bs, err = l.Balances(ctx, "nobody")
	require.NoError(t, err)
	require.Empty(t, bs)

	// Wallets list one currency at a time; the default is the seed's.
	require.Equal(t, []string{"ann=10"}, totals(t, l, ledger.WalletQuery{}))
	ws, err := l.Wallets(ctx, ledger.WalletQuery{Currency: "coins"})
	require.NoError(t, err)
	require.Len(t, ws, 2)
	require.Equal(t, "coins", ws[0].Currency)
	require.Equal(t, []string{"ann=0", "bob=7"}, totals(t, l, ledger.WalletQuery{Currency: "coins"}))
	require.Equal(t, []string{"ann=-3"}, totals(t, l, ledger.WalletQuery{Currency: "gems", AuthorityIDs: []string{"shop"}}))
	require.Equal(t, []string{"bob=7", "zed=0"}, totals(t, l, ledger.WalletQuery{Currency: "coins", UserIDs: []string{"bob", "zed"}}))
	require.NoError(t, l.Verify(ctx))
}

func testCurrencyHistory(t *testing.T, ns NewStore) {
	ctx := context.Background()
	c := newClock()
	l, _ := newLedger(t, ns, ledger.WithClock(c.Now))
	var all []ledger.Entry
	for i := range 12 {
		cur := []string{"", "gems", "coins"}[i%3]
		all = append(all, mustCreate(t, l, entryIn([]string{"bank", "shop"}[i%2], "ann", cur, fmt.Sprint(i+1))))
	}
	// AsOf per currency: the wallet as it stood, by a seek.
	asOf := func(cur string, at time.Time, auths ...string) string {
		ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"ann"}, Currency: cur, AsOf: at, AuthorityIDs: auths})
		require.NoError(t, err)
		return ws[0].Total.String()
	}
	// Amounts are i+1; currencies "", gems, coins by i%3; authorities
	// bank, shop by i%2.
	require.Equal(t, "1", asOf("", all[3].CreatedOn.Add(-time.Nanosecond)))
	require.Equal(t, "5", asOf("", all[3].CreatedOn))
	require.Equal(t, "2", asOf("gems", all[3].CreatedOn))
	require.Equal(t, "7", asOf("gems", all[4].CreatedOn))
	require.Equal(t, "5", asOf("gems", all[4].CreatedOn, "bank"))
	require.Equal(t, "0", asOf("coins", all[1].CreatedOn))
	require.Equal(t, "3", asOf("coins", all[2].CreatedOn))
	es, err := l.Entries(ctx, ledger.EntryQuery{Currencies: []string{"gems"}})
	require.NoError(t, err)
	require.Len(t, es, 4)
	for _, e := range es {
		require.Equal(t, "gems", e.Currency)
	}
	es, err = l.Entries(ctx, ledger.EntryQuery{Currencies: []string{"", "coins"}, UserIDs: []string{"ann"}, Reverse: true})
	require.NoError(t, err)
	require.Len(t, es, 8)
	require.Equal(t, all[11].ID, es[0].ID)
	for _, e := range es {
		require.NotEqual(t, "gems", e.Currency)
	}
	require.NoError(t, l.Verify(ctx))
}

func testMetadata(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	md := map[string]string{"order": "17", "match": "m-3", "note": "é \x00 \"q\""}
	ne := entryIn("shop", "ann", "", "5")
	ne.Metadata, ne.IdempotencyKey = md, "k"
	e := mustCreate(t, l, ne)
	require.Equal(t, md, e.Metadata)
	md["order"] = "changed after the call"
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Equal(t, "17", es[0].Metadata["order"], "the ledger keeps its own copy")
	// Metadata is part of the payload an idempotency key compares.
	ne.Metadata = map[string]string{"order": "17", "match": "m-3", "note": "é \x00 \"q\""}
	again := mustCreate(t, l, ne)
	require.Equal(t, e.ID, again.ID)
	ne.Metadata = map[string]string{"order": "18"}
	_, err = l.CreateEntry(ctx, ne)
	var ice *ledger.IdempotencyConflictError
	require.ErrorAs(t, err, &ice)
	require.Contains(t, ice.Fields, "Metadata")
	ne.Metadata, ne.Currency = map[string]string{"order": "17", "match": "m-3", "note": "é \x00 \"q\""}, "gems"
	_, err = l.CreateEntry(ctx, ne)
	require.ErrorAs(t, err, &ice)
	require.Equal(t, []string{"Currency"}, ice.Fields)
}

func setLimits(t *testing.T, l *ledger.Ledger, user, cur, floor, capV string) {
	t.Helper()
	lim := ledger.WalletLimits{UserID: user, Currency: cur, Floor: dec(floor)}
	if capV != "" {
		c := dec(capV)
		lim.Cap = &c
	}
	require.NoError(t, l.SetLimits(context.Background(), "bank", lim))
}

func testLimits(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	// A credit line: the wallet may go to -50.
	setLimits(t, l, "ann", "gems", "-50", "100")
	b := requireBalance(t, l, "ann", "gems", "0")
	requireDecimal(t, "-50", b.Floor)
	require.NotNil(t, b.Cap)
	requireDecimal(t, "100", *b.Cap)
	mustCreate(t, l, entryIn("shop", "ann", "gems", "-50"))
	_, err := l.CreateEntry(ctx, entryIn("shop", "ann", "gems", "-0.01"))
	var nef *ledger.NotEnoughFundsError
	require.ErrorAs(t, err, &nef)
	requireDecimal(t, "-50", nef.Floor)
	requireDecimal(t, "-50", nef.Balance)
	// The cap: at most 100.
	mustCreate(t, l, entryIn("bank", "ann", "gems", "150"))
	_, err = l.CreateEntry(ctx, entryIn("bank", "ann", "gems", "0.5"))
	var ce *ledger.CapExceededError
	require.ErrorAs(t, err, &ce)
	require.ErrorIs(t, err, ledger.ErrCapExceeded)
	require.Equal(t, "ann", ce.UserID)
	require.Equal(t, "gems", ce.Currency)
	requireDecimal(t, "100", ce.Total)
	requireDecimal(t, "0.5", ce.Amount)
	requireDecimal(t, "100", ce.Cap)
	// Other currencies keep the default rule.
	_, err = l.CreateEntry(ctx, entryIn("shop", "ann", "", "-1"))
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	mustCreate(t, l, entryIn("bank", "ann", "", "1000000"))

	// Lowering the cap below the total strands nobody: spends go on,
	// deposits wait until the total is under the cap.
	setLimits(t, l, "ann", "gems", "-50", "10")
	mustCreate(t, l, entryIn("shop", "ann", "gems", "-30"))
	_, err = l.CreateEntry(ctx, entryIn("bank", "ann", "gems", "1"))
	require.ErrorIs(t, err, ledger.ErrCapExceeded, "70 is still above the cap 10")
	mustCreate(t, l, entryIn("shop", "ann", "gems", "-65"))
	mustCreate(t, l, entryIn("bank", "ann", "gems", "5")) // 5 + 5 = 10: at the cap
	// Raising the floor above the total: deposits go on, spends wait.
	mustCreate(t, l, entryIn("shop", "ann", "gems", "-50")) // -40
	setLimits(t, l, "ann", "gems", "0", "")
	_, err = l.CreateEntry(ctx, entryIn("shop", "ann", "gems", "-1"))
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	mustCreate(t, l, entryIn("bank", "ann", "gems", "30")) // -10: toward the floor, allowed
	requireBalance(t, l, "ann", "gems", "-10")
	// A cap of zero admits nothing but keeps spends.
	setLimits(t, l, "bob", "", "0", "0")
	_, err = l.CreateEntry(ctx, entryIn("bank", "bob", "", "1"))
	require.ErrorIs(t, err, ledger.ErrCapExceeded)
	mustCreate(t, l, entryIn("bank", "bob", "", "0"))

	// Balances lists limits without entries, and default limits are not
	// "limits".
	setLimits(t, l, "cid", "coins", "-5", "")
	setLimits(t, l, "dan", "coins", "0", "")
	bs, err := l.Balances(ctx, "cid")
	require.NoError(t, err)
	require.Len(t, bs, 1)
	requireDecimal(t, "-5", bs[0].Floor)
	require.Nil(t, bs[0].Cap)
	bs, err = l.Balances(ctx, "dan")
	require.NoError(t, err)
	require.Empty(t, bs)
	require.NoError(t, l.Verify(ctx))
}

func testTransfer(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	mustCreate(t, l, entryIn("bank", "ann", "gems", "10"))
	nt := ledger.NewTransfer{AuthorityID: "gifts", FromUserID: "ann", ToUserID: "bob", Currency: "gems", Amount: dec("4"),
		Reason: "a gift", Metadata: map[string]string{"card": "happy birthday"}, IdempotencyKey: "gift-1"}
	tr, err := l.Transfer(ctx, nt)
	require.NoError(t, err)
	require.Equal(t, tr.From.ID, tr.ID)
	require.Equal(t, tr.ID, tr.From.TransferID)
	require.Equal(t, tr.ID, tr.To.TransferID)
	requireDecimal(t, "-4", tr.From.Amount)
	requireDecimal(t, "4", tr.To.Amount)
	requireDecimal(t, "6", tr.From.Balance)
	requireDecimal(t, "4", tr.To.Balance)
	require.Equal(t, "happy birthday", tr.To.Metadata["card"])
	require.Equal(t, "gems", tr.To.Currency)
	require.Equal(t, "gifts", tr.To.AuthorityID)
	// A retry is the same transfer; a different one with the key conflicts.
	again, err := l.Transfer(ctx, nt)
	require.NoError(t, err)
	require.Equal(t, tr.ID, again.ID)
	require.Equal(t, tr.To.ID, again.To.ID)
	other := nt
	other.ToUserID = "cid"
	_, err = l.Transfer(ctx, other)
	var ice *ledger.IdempotencyConflictError
	require.ErrorAs(t, err, &ice)
	require.Equal(t, []string{"ToUserID"}, ice.Fields)
	// The key is the authority's: an entry may not reuse it.
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "gifts", UserID: "ann", Currency: "gems", Amount: dec("-4"), Reason: "a gift",
		Metadata: map[string]string{"card": "happy birthday"}, IdempotencyKey: "gift-1"})
	require.ErrorIs(t, err, ledger.ErrIdempotencyConflict)

	// Funds on From, cap on To; either refusal writes nothing.
	_, err = l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "gifts", FromUserID: "ann", ToUserID: "bob", Currency: "gems", Amount: dec("7"), Reason: "r"})
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	setLimits(t, l, "bob", "gems", "0", "5")
	_, err = l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "gifts", FromUserID: "ann", ToUserID: "bob", Currency: "gems", Amount: dec("2"), Reason: "r"})
	require.ErrorIs(t, err, ledger.ErrCapExceeded)
	requireBalance(t, l, "ann", "gems", "6")
	requireBalance(t, l, "bob", "gems", "4")
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Len(t, es, 3, "refused transfers wrote nothing")

	for name, bad := range map[string]ledger.NewTransfer{
		"to oneself":      {AuthorityID: "g", FromUserID: "ann", ToUserID: "ann", Amount: dec("1"), Reason: "r"},
		"zero":            {AuthorityID: "g", FromUserID: "ann", ToUserID: "bob", Amount: dec("0"), Reason: "r"},
		"negative":        {AuthorityID: "g", FromUserID: "ann", ToUserID: "bob", Amount: dec("-1"), Reason: "r"},
		"no from":         {AuthorityID: "g", ToUserID: "bob", Amount: dec("1"), Reason: "r"},
		"bad currency":    {AuthorityID: "g", FromUserID: "ann", ToUserID: "bob", Currency: "ge ms", Amount: dec("1"), Reason: "r"},
		"no authority":    {FromUserID: "ann", ToUserID: "bob", Amount: dec("1"), Reason: "r"},
		"too many digits": {AuthorityID: "g", FromUserID: "ann", ToUserID: "bob", Amount: dec("0.000000001"), Reason: "r"},
	} {
		_, err := l.Transfer(ctx, bad)
		require.ErrorIs(t, err, ledger.ErrInvalid, name)
	}
	require.NoError(t, l.Verify(ctx))
}

func testReverseEntry(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	pay := mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	ne := entryIn("shop", "ann", "", "-4")
	ne.Item = &ledger.Item{Name: "Soda"}
	buy := mustCreate(t, l, ne)

	_, err := l.Reverse(ctx, "bank", buy.ID, "refund")
	require.ErrorIs(t, err, ledger.ErrForbidden, "only the writer reverses")
	rev, err := l.Reverse(ctx, "shop", buy.ID, "refund")
	require.NoError(t, err)
	require.Len(t, rev, 1)
	r := rev[0]
	require.Equal(t, buy.ID, r.Reverses)
	requireDecimal(t, "4", r.Amount)
	requireDecimal(t, "10", r.Balance)
	require.Equal(t, "refund", r.Reason)
	require.Equal(t, "shop", r.AuthorityID)
	requireBalance(t, l, "ann", "", "10")

	es, err := l.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{buy.ID}})
	require.NoError(t, err)
	require.Equal(t, r.ID, es[0].ReversedBy)
	require.True(t, es[0].Item.Revoked)
	require.False(t, es[0].Item.Used)
	// The revoked item: gone from the default inventory, listed with
	// UsedOrUnused, and not usable.
	inv, err := l.Inventory(ctx, ledger.InventoryQuery{})
	require.NoError(t, err)
	require.Empty(t, inv)
	inv, err = l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOrUnused})
	require.NoError(t, err)
	require.Len(t, inv, 1)
	require.True(t, inv[0].Item.Revoked)
	_, err = l.UseItem(ctx, "shop", buy.ID)
	require.ErrorIs(t, err, ledger.ErrItemRevoked)

	_, err = l.Reverse(ctx, "shop", buy.ID, "again")
	require.ErrorIs(t, err, ledger.ErrAlreadyReversed)
	_, err = l.Reverse(ctx, "shop", r.ID, "undo the refund")
	require.ErrorIs(t, err, ledger.ErrInvalid, "a reversal cannot be reversed")

	// A used item's entry cannot be reversed.
	ne.Item = &ledger.Item{Name: "Chips"}
	buy2 := mustCreate(t, l, ne)
	_, err = l.UseItem(ctx, "shop", buy2.ID)
	require.NoError(t, err)
	_, err = l.Reverse(ctx, "shop", buy2.ID, "refund")
	require.ErrorIs(t, err, ledger.ErrItemUsed)
	// Reversing a deposit that was spent: not enough funds, nothing written.
	mustCreate(t, l, entryIn("shop", "ann", "", "-6"))
	_, err = l.Reverse(ctx, "bank", pay.ID, "chargeback")
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	es, err = l.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{pay.ID}})
	require.NoError(t, err)
	require.Empty(t, es[0].ReversedBy)
	_, err = l.Reverse(ctx, "bank", "000000000000000000000000", "r")
	require.ErrorIs(t, err, ledger.ErrNotFound)
	require.NoError(t, l.Verify(ctx))
}

func testReverseTransfer(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	mustCreate(t, l, entryIn("bank", "ann", "gems", "10"))
	tr, err := l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "trade", FromUserID: "ann", ToUserID: "bob", Currency: "gems", Amount: dec("4"), Reason: "trade"})
	require.NoError(t, err)
	// Reversing either side reverses both.
	rev, err := l.Reverse(ctx, "trade", tr.To.ID, "undo")
	require.NoError(t, err)
	require.Len(t, rev, 2)
	require.Equal(t, tr.From.ID, rev[0].Reverses)
	require.Equal(t, tr.To.ID, rev[1].Reverses)
	requireDecimal(t, "4", rev[0].Amount)
	requireDecimal(t, "-4", rev[1].Amount)
	require.Equal(t, rev[0].ID, rev[0].TransferID, "the reversal is a transfer back")
	require.Equal(t, rev[0].ID, rev[1].TransferID)
	requireBalance(t, l, "ann", "gems", "10")
	requireBalance(t, l, "bob", "gems", "0")
	_, err = l.Reverse(ctx, "trade", tr.From.ID, "again")
	require.ErrorIs(t, err, ledger.ErrAlreadyReversed)

	// If bob spent what he got, the reversal is refused whole.
	tr, err = l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "trade", FromUserID: "ann", ToUserID: "bob", Currency: "gems", Amount: dec("4"), Reason: "trade"})
	require.NoError(t, err)
	mustCreate(t, l, entryIn("shop", "bob", "gems", "-3"))
	_, err = l.Reverse(ctx, "trade", tr.From.ID, "undo")
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	requireBalance(t, l, "ann", "gems", "6")
	es, err := l.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{tr.From.ID, tr.To.ID}})
	require.NoError(t, err)
	for _, e := range es {
		require.Empty(t, e.ReversedBy)
	}
	require.NoError(t, l.Verify(ctx))
}

func testInvalidWalletInput(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	big := map[string]string{}
	for i := range 17 {
		big[fmt.Sprint("k", i)] = "v"
	}
	for _, c := range []struct {
		name  string
		field string
		call  func() error
	}{
		{"currency with a space", "Currency", func() error { _, err := l.CreateEntry(ctx, entryIn("a", "u", "ge ms", "1")); return err }},
		{"currency of 33 bytes", "Currency", func() error {
			_, err := l.CreateEntry(ctx, entryIn("a", "u", strings.Repeat("c", 33), "1"))
			return err
		}},
		{"currency not ASCII", "Currency", func() error { _, err := l.CreateEntry(ctx, entryIn("a", "u", "€", "1")); return err }},
		{"17 metadata keys", "Metadata", func() error {
			ne := entryIn("a", "u", "", "1")
			ne.Metadata = big
			_, err := l.CreateEntry(ctx, ne)
			return err
		}},
		{"empty metadata key", "Metadata", func() error {
			ne := entryIn("a", "u", "", "1")
			ne.Metadata = map[string]string{"": "v"}
			_, err := l.CreateEntry(ctx, ne)
			return err
		}},
		{"metadata key of 65 bytes", "Metadata", func() error {
			ne := entryIn("a", "u", "", "1")
			ne.Metadata = map[string]string{strings.Repeat("k", 65): "v"}
			_, err := l.CreateEntry(ctx, ne)
			return err
		}},
		{"metadata value over 1 KiB", "Metadata", func() error {
			ne := entryIn("a", "u", "", "1")
			ne.Metadata = map[string]string{"k": strings.Repeat("v", 1025)}
			_, err := l.CreateEntry(ctx, ne)
			return err
		}},
		{"metadata not UTF-8", "Metadata", func() error {
			ne := entryIn("a", "u", "", "1")
			ne.Metadata = map[string]string{"k": "\xff"}
			_, err := l.CreateEntry(ctx, ne)
			return err
		}},
		{"floor above zero", "Floor", func() error {
			return l.SetLimits(ctx, "a", ledger.WalletLimits{UserID: "u", Floor: dec("1")})
		}},
		{"negative cap", "Cap", func() error {
			c := dec("-1")
			return l.SetLimits(ctx, "a", ledger.WalletLimits{UserID: "u", Cap: &c})
		}},
		{"limits without a user", "UserID", func() error { return l.SetLimits(ctx, "a", ledger.WalletLimits{}) }},
		{"limits in a bad currency", "Currency", func() error {
			return l.SetLimits(ctx, "a", ledger.WalletLimits{UserID: "u", Currency: "x y"})
		}},
		{"balance in a bad currency", "Currency", func() error { _, err := l.Balance(ctx, "u", "x/y"); return err }},
		{"wallets in a bad currency", "Currency", func() error { _, err := l.Wallets(ctx, ledger.WalletQuery{Currency: "x y"}); return err }},
		{"entries in a bad currency", "Currencies", func() error {
			_, err := l.Entries(ctx, ledger.EntryQuery{Currencies: []string{"ok", "not ok"}})
			return err
		}},
		{"reverse without a reason", "Reason", func() error { _, err := l.Reverse(ctx, "a", "000000000000000000000000", ""); return err }},
	} {
		err := c.call()
		var ie *ledger.InvalidError
		require.ErrorAs(t, err, &ie, c.name)
		require.Equal(t, c.field, ie.Field, c.name)
	}
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Empty(t, es, "bad input writes nothing")
	bs, err := l.Balances(ctx, "u")
	require.NoError(t, err)
	require.Empty(t, bs, "refused limits were not set")
}

func testWalletExportImport(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	setLimits(t, l, "ann", "gems", "-20", "50")
	setLimits(t, l, "bob", "", "0", "1000")
	ne := entryIn("bank", "ann", "gems", "30")
	ne.Metadata = map[string]string{"order": "1"}
	mustCreate(t, l, ne)
	tr, err := l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "gifts", FromUserID: "ann", ToUserID: "bob", Currency: "gems", Amount: dec("40"), Reason: "gift"})
	require.NoError(t, err)
	item := entryIn("shop", "bob", "gems", "-1")
	item.Item = &ledger.Item{Name: "Gem box"}
	buy := mustCreate(t, l, item)
	_, err = l.Reverse(ctx, "shop", buy.ID, "refund")
	require.NoError(t, err)
	_, err = l.Reverse(ctx, "gifts", tr.ID, "undo")
	require.NoError(t, err)
	var first bytes.Buffer
	require.NoError(t, l.Export(ctx, &first))

	l2, _ := newLedger(t, ns)
	require.NoError(t, ledger.Import(ctx, l2, bytes.NewReader(first.Bytes())))
	var second bytes.Buffer
	require.NoError(t, l2.Export(ctx, &second))
	require.Equal(t, first.String(), second.String(), "an import exports byte for byte as its source")
	b, err := l2.Balance(ctx, "ann", "gems")
	require.NoError(t, err)
	requireDecimal(t, "-20", b.Floor)
	requireDecimal(t, "30", b.Total)
	_, err = l2.CreateEntry(ctx, entryIn("bank", "ann", "gems", "21"))
	require.ErrorIs(t, err, ledger.ErrCapExceeded, "the limits came along")
	require.NoError(t, l2.Verify(ctx))
}
