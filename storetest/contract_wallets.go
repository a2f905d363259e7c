package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runWalletContract checks what the Store contract holds for wallets in
// several currencies: records with their currency, metadata, transfer
// and reversal links; totals per currency; limits; reversal marks.
func runWalletContract(t *testing.T, ns NewStore) {
	t.Run("Records", func(t *testing.T) { testWalletRecords(t, ns) })
	t.Run("CurrencyScans", func(t *testing.T) { testCurrencyScans(t, ns) })
	t.Run("CurrencyTotals", func(t *testing.T) { testCurrencyTotals(t, ns) })
	t.Run("Limits", func(t *testing.T) { testStoredLimits(t, ns) })
	t.Run("SetReversed", func(t *testing.T) { testSetReversed(t, ns) })
}

// walletRecord is record(n, ...) in a currency, with metadata.
func walletRecord(n int, user, auth, currency string, item bool) ledger.Record {
	r := record(n, user, auth, item)
	r.Currency = currency
	if n%2 == 0 {
		r.Metadata = map[string]string{"order": "o-" + r.ID, "é": "ü\x00 \"quoted\"", "empty": ""}
	}
	return r
}

func testWalletRecords(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	a := walletRecord(1, "u", "shop", "gems", true)
	b := walletRecord(2, "u", "shop", "", false)
	b.TransferID = b.ID
	c := walletRecord(3, "v", "shop", "", false)
	c.TransferID = b.ID
	d := walletRecord(4, "u", "shop", "gems", false)
	d.Reverses = a.ID
	e := walletRecord(5, "u", "shop", "a-very.long_currency-code-32byte", false)
	f := walletRecord(6, "u", "shop", "gems", true)
	f.HoldID = id(1<<40, 7) // the entry of a capture
	insert(t, s, a, b, c, d, e, f)
	view(t, s, func(tx ledger.ReadTx) {
		for _, want := range []ledger.Record{a, b, c, d, e, f} {
			got, err := tx.Entry(ctx, want.ID)
			require.NoError(t, err)
			requireSameRecord(t, want, got)
		}
	})
}

func testCurrencyScans(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	var all []ledger.Record
	for n := range 24 {
		cur := []string{"", "gems", "coins"}[n%3]
		all = append(all, walletRecord(n, []string{"u", "v"}[n/3%2], []string{"a", "b"}[n/6%2], cur, n%4 == 0))
	}
	insert(t, s, all...)
	want := func(f func(ledger.Record) bool, reverse bool) []string {
		var out []string
		for _, r := range all {
			if f(r) {
				out = append(out, r.ID)
			}
		}
		if reverse {
			for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
				out[i], out[j] = out[j], out[i]
			}
		}
		return out
	}
	view(t, s, func(tx ledger.ReadTx) {
		for _, cur := range []string{"", "gems", "coins", "none"} {
			for _, reverse := range []bool{false, true} {
				got := ids(collect(t, tx.Entries(ctx, ledger.Scan{UserID: "u", InCurrency: true, Currency: cur, Reverse: reverse})))
				require.Equal(t, want(func(r ledger.Record) bool { return r.UserID == "u" && r.Currency == cur }, reverse), got, "user u in %q", cur)
				got = ids(collect(t, tx.Entries(ctx, ledger.Scan{UserID: "v", AuthorityID: "b", InCurrency: true, Currency: cur, Reverse: reverse})))
				require.Equal(t, want(func(r ledger.Record) bool { return r.UserID == "v" && r.AuthorityID == "b" && r.Currency == cur }, reverse), got, "user v, authority b, in %q", cur)
				got = ids(collect(t, tx.Entries(ctx, ledger.Scan{InCurrency: true, Currency: cur, ItemsOnly: true, Reverse: reverse})))
				require.Equal(t, want(func(r ledger.Record) bool { return r.Item != nil && r.Currency == cur }, reverse), got, "items in %q", cur)
			}
		}
		// A seek bounded by End, newest first: the AsOf lookup.
		end := all[13].ID
		got := collect(t, tx.Entries(ctx, ledger.Scan{UserID: "u", InCurrency: true, Currency: "gems", End: end, Reverse: true}))
		require.Equal(t, want(func(r ledger.Record) bool { return r.UserID == "u" && r.Currency == "gems" && r.ID < end }, true), ids(got))
		// Without InCurrency, every currency.
		got = collect(t, tx.Entries(ctx, ledger.Scan{UserID: "u"}))
		require.Equal(t, want(func(r ledger.Record) bool { return r.UserID == "u" }, false), ids(got))
	})
}

func testCurrencyTotals(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	set := func(a, u, cur, v string) {
		k := ledger.TotalKey{AuthorityID: a, UserID: u, Currency: cur}
		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return tx.SetTotal(ctx, k, storedTotal(v, a+"/"+u+"/"+cur)) }))
	}
	set("", "bob", "", "1")
	set("", "bob", "gems", "2")
	set("", "bob", "coins", "3")
	set("", "ann", "gems", "4")
	set("shop", "bob", "gems", "5")
	set("shop", "bob", "", "6")
	view(t, s, func(tx ledger.ReadTx) {
		for k, want := range map[ledger.TotalKey]string{
			{UserID: "bob"}: "1", {UserID: "bob", Currency: "gems"}: "2", {AuthorityID: "shop", UserID: "bob", Currency: "gems"}: "5",
			{AuthorityID: "shop", UserID: "bob"}: "6",
		} {
			v, ok, err := tx.Total(ctx, k)
			require.NoError(t, err)
			require.True(t, ok, "%+v", k)
			requireDecimal(t, want, v.Value)
			require.Equal(t, storedTotal("0", k.AuthorityID+"/"+k.UserID+"/"+k.Currency).LastEntryID, v.LastEntryID)
		}
		_, ok, err := tx.Total(ctx, ledger.TotalKey{UserID: "ann"})
		require.NoError(t, err)
		require.False(t, ok, "totals are per currency")

		users := func(a, cur, after string) []string {
			var out []string
			for r, err := range tx.Totals(ctx, a, cur, after) {
				require.NoError(t, err)
				out = append(out, r.UserID+"="+r.Value.String())
			}
			return out
		}
		require.Equal(t, []string{"ann=4", "bob=2"}, users("", "gems", ""))
		require.Equal(t, []string{"bob=2"}, users("", "gems", "ann"))
		require.Equal(t, []string{"bob=1"}, users("", "", ""))
		require.Equal(t, []string{"bob=5"}, users("shop", "gems", ""))
		require.Empty(t, users("shop", "coins", ""))

		groups := map[ledger.TotalGroup]int{}
		for g, err := range tx.TotalGroups(ctx) {
			require.NoError(t, err)
			groups[g]++
		}
		require.Equal(t, map[ledger.TotalGroup]int{
			{}: 1, {Currency: "gems"}: 1, {Currency: "coins"}: 1, {AuthorityID: "shop", Currency: "gems"}: 1, {AuthorityID: "shop"}: 1,
		}, groups, "each (authority, currency) with a total, once")

		var cur []string
		for r, err := range tx.UserTotals(ctx, "bob") {
			require.NoError(t, err)
			cur = append(cur, r.Currency+"="+r.Value.String())
		}
		require.Equal(t, []string{"=1", "coins=3", "gems=2"}, cur, "bob's totals over all authorities, by currency")
		for r, err := range tx.UserTotals(ctx, "nobody") {
			require.NoError(t, err)
			t.Fatalf("a user without totals has none: %+v", r)
		}
	})
}

func limits(user, cur, floor string, capV string, by string, at time.Time) ledger.StoredLimits {
	l := ledger.StoredLimits{WalletLimits: ledger.WalletLimits{UserID: user, Currency: cur, Floor: dec(floor)}, SetBy: by, SetOn: at}
	if capV != "" {
		c := dec(capV)
		l.Cap = &c
	}
	return l
}

func requireSameLimits(t *testing.T, want, got ledger.StoredLimits) {
	t.Helper()
	require.Equal(t, want.UserID, got.UserID)
	require.Equal(t, want.Currency, got.Currency)
	requireDecimal(t, want.Floor.String(), got.Floor)
	require.Equal(t, want.Cap == nil, got.Cap == nil, "cap set")
	if want.Cap != nil {
		requireDecimal(t, want.Cap.String(), *got.Cap)
	}
	require.Equal(t, want.SetBy, got.SetBy)
	require.True(t, want.SetOn.Equal(got.SetOn), "SetOn: got %v, want %v", got.SetOn, want.SetOn)
	require.Equal(t, time.UTC, got.SetOn.Location())
}

func testStoredLimits(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	at := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	put := func(ls ...ledger.StoredLimits) {
		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
			for _, l := range ls {
				if err := tx.SetLimits(ctx, l); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	a := limits("bob", "gems", "-100.5", "1000", "shop", at)
	b := limits("bob", "", "0", "", "bank", at.Add(time.Second))
	c := limits("ann", "coins", "-1", "0", "shop", at.Add(2*time.Second))
	put(a, b, c)
	view(t, s, func(tx ledger.ReadTx) {
		got, ok, err := tx.Limits(ctx, "bob", "gems")
		require.NoError(t, err)
		require.True(t, ok)
		requireSameLimits(t, a, got)
		got, ok, err = tx.Limits(ctx, "bob", "")
		require.NoError(t, err)
		require.True(t, ok)
		requireSameLimits(t, b, got)
		_, ok, err = tx.Limits(ctx, "bob", "coins")
		require.NoError(t, err)
		require.False(t, ok)
		var mine []ledger.StoredLimits
		for l, err := range tx.UserLimits(ctx, "bob") {
			require.NoError(t, err)
			mine = append(mine, l)
		}
		require.Len(t, mine, 2)
		requireSameLimits(t, b, mine[0]) // "" sorts first
		requireSameLimits(t, a, mine[1])
		var every []ledger.StoredLimits
		for l, err := range tx.AllLimits(ctx) {
			require.NoError(t, err)
			every = append(every, l)
		}
		require.Len(t, every, 3)
		requireSameLimits(t, c, every[0])
		requireSameLimits(t, b, every[1])
		requireSameLimits(t, a, every[2])
	})
	// Replace; and a rolled-back SetLimits leaves no trace.
	a2 := limits("bob", "gems", "0", "", "other", at.Add(time.Hour))
	put(a2)
	err := s.Update(ctx, func(tx ledger.Tx) error {
		if err := tx.SetLimits(ctx, limits("bob", "gems", "-5", "5", "x", at)); err != nil {
			return err
		}
		return errRollback
	})
	require.ErrorIs(t, err, errRollback)
	view(t, s, func(tx ledger.ReadTx) {
		got, ok, err := tx.Limits(ctx, "bob", "gems")
		require.NoError(t, err)
		require.True(t, ok)
		requireSameLimits(t, a2, got)
	})
}

func testSetReversed(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	a := walletRecord(1, "u", "shop", "", true)
	b := walletRecord(2, "u", "shop", "gems", false)
	rev := walletRecord(3, "u", "shop", "", false)
	rev.Reverses = a.ID
	insert(t, s, a, b, rev)
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		if err := tx.SetReversed(ctx, a.ID, rev.ID, true); err != nil {
			return err
		}
		return tx.SetReversed(ctx, b.ID, rev.ID, false)
	}))
	a.ReversedBy, a.Item.Revoked = rev.ID, true
	b.ReversedBy = rev.ID
	view(t, s, func(tx ledger.ReadTx) {
		for _, want := range []ledger.Record{a, b, rev} {
			got, err := tx.Entry(ctx, want.ID)
			require.NoError(t, err)
			requireSameRecord(t, want, got)
		}
		// The scans read the marks too.
		got := collect(t, tx.Entries(ctx, ledger.Scan{UserID: "u", ItemsOnly: true}))
		require.Len(t, got, 1)
		requireSameRecord(t, a, got[0])
	})
	err := s.Update(ctx, func(tx ledger.Tx) error { return tx.SetReversed(ctx, id(1, 1), rev.ID, false) })
	require.ErrorIs(t, err, ledger.ErrNotFound, "SetReversed of a missing entry fails the transaction")
}

// errRollback makes an Update roll back.
var errRollback = errors.New("storetest: roll back")
