package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runHistory checks what the original service lacked: idempotent
// retries, atomic batches, history, AsOf and Verify.
func runHistory(t *testing.T, ns NewStore) {
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, ns) })
	t.Run("Batches", func(t *testing.T) { testBatches(t, ns) })
	t.Run("BatchIdempotency", func(t *testing.T) { testBatchIdempotency(t, ns) })
	t.Run("Entries", func(t *testing.T) { testEntries(t, ns) })
	t.Run("EntriesPaging", func(t *testing.T) { testEntriesPaging(t, ns) })
	t.Run("AsOf", func(t *testing.T) { testAsOf(t, ns) })
	t.Run("Verify", func(t *testing.T) { testVerify(t, ns) })
	t.Run("Reverse", func(t *testing.T) { testReverse(t, ns) })
	t.Run("Seqs", func(t *testing.T) { testSeqs(t, ns) })
}

func testIdempotency(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	create(t, l, "bank", "u", "100", nil)
	ne := ledger.NewEntry{
		AuthorityID: "shop", UserID: "u", Amount: dec("-30"), Reason: "sunglasses",
		Item: &ledger.Item{Name: "Cool Shades", Data: []byte(`[1, 2]`)}, IdempotencyKey: "order-17",
	}
	first, err := l.CreateEntry(ctx, ne)
	require.NoError(t, err)
	again, err := l.CreateEntry(ctx, ne)
	require.NoError(t, err)
	requireSameEntry(t, first, again)
	require.Equal(t, []string{"u=70"}, totals(t, l, ledger.WalletQuery{}), "a retry charges nothing")
	require.Equal(t, 2, entryCount(t, l), "a retry writes nothing")

	// The same key with any field different is a conflict that names it.
	for _, tc := range []struct {
		change func(*ledger.NewEntry)
		fields []string
	}{
		{func(e *ledger.NewEntry) { e.UserID = "v" }, []string{"UserID"}},
		{func(e *ledger.NewEntry) { e.Amount = dec("-31") }, []string{"Amount"}},
		{func(e *ledger.NewEntry) { e.Reason = "other" }, []string{"Reason"}},
		{func(e *ledger.NewEntry) { e.Item = nil }, []string{"Item"}},
		{func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: "Shades", Data: []byte(`[1, 2]`)} }, []string{"Item.Name"}},
		{func(e *ledger.NewEntry) { e.Item = &ledger.Item{Name: "Cool Shades", Data: []byte(`[1,2]`)} }, []string{"Item.Data"}},
		{func(e *ledger.NewEntry) { e.Amount, e.Reason = dec("1"), "x" }, []string{"Amount", "Reason"}},
	} {
		changed := ne
		tc.change(&changed)
		_, err := l.CreateEntry(ctx, changed)
		require.ErrorIs(t, err, ledger.ErrIdempotencyConflict)
		var ice *ledger.IdempotencyConflictError
		require.ErrorAs(t, err, &ice)
		require.Equal(t, tc.fields, ice.Fields)
		require.Equal(t, first.ID, ice.EntryID)
	}
	require.Equal(t, 2, entryCount(t, l), "a conflict writes nothing")

	// An amount written differently but equal is the same amount.
	same := ne
	same.Amount = dec("-30.000")
	again, err = l.CreateEntry(ctx, same)
	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID)

	// Keys are scoped to their authority.
	other := ne
	other.AuthorityID = "other-shop"
	third, err := l.CreateEntry(ctx, other)
	require.NoError(t, err)
	require.NotEqual(t, first.ID, third.ID)
	require.Equal(t, []string{"u=40"}, totals(t, l, ledger.WalletQuery{}))

	// A refused attempt does not spend the key: the retry after funding works.
	broke := ledger.NewEntry{AuthorityID: "shop", UserID: "w", Amount: dec("-5"), Reason: "soda", IdempotencyKey: "order-18"}
	_, err = l.CreateEntry(ctx, broke)
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	create(t, l, "bank", "w", "5", nil)
	paid, err := l.CreateEntry(ctx, broke)
	require.NoError(t, err)
	requireDecimal(t, "0", paid.Balance)

	// A retry after the item was used returns the entry as it is now.
	_, err = l.UseItem(ctx, "shop", first.ID)
	require.NoError(t, err)
	again, err = l.CreateEntry(ctx, ne)
	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, first.CreatedOn, again.CreatedOn)
	require.True(t, again.Item.Used)
}

func testBatches(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	create(t, l, "bank", "alice", "50", nil)

	// A gift: two entries, one batch.
	gift, err := l.CreateEntries(ctx, []ledger.NewEntry{
		{AuthorityID: "gifts", UserID: "alice", Amount: dec("-10"), Reason: "gift to bob"},
		{AuthorityID: "gifts", UserID: "bob", Amount: dec("10"), Reason: "gift from alice"},
	})
	require.NoError(t, err)
	require.Len(t, gift, 2)
	require.Less(t, gift[0].ID, gift[1].ID, "written in order")
	requireDecimal(t, "40", gift[0].Balance)
	requireDecimal(t, "10", gift[1].Balance)
	require.Equal(t, []string{"alice=40", "bob=10"}, totals(t, l, ledger.WalletQuery{}))

	// Each funds check sees the entries before it in the batch.
	es, err := l.CreateEntries(ctx, []ledger.NewEntry{
		{AuthorityID: "bank", UserID: "carol", Amount: dec("5"), Reason: "in"},
		{AuthorityID: "shop", UserID: "carol", Amount: dec("-5"), Reason: "out"},
	})
	require.NoError(t, err)
	requireDecimal(t, "0", es[1].Balance)

	before := entryCount(t, l)
	for _, tc := range []struct {
		name  string
		batch []ledger.NewEntry
		index int
		is    error
	}{
		{"funds fail midway", []ledger.NewEntry{
			{AuthorityID: "bank", UserID: "dave", Amount: dec("5"), Reason: "in"},
			{AuthorityID: "shop", UserID: "dave", Amount: dec("-6"), Reason: "out"},
			{AuthorityID: "bank", UserID: "erin", Amount: dec("1"), Reason: "in"},
		}, 1, ledger.ErrNotEnoughFunds},
		{"a later entry overdraws what an earlier one spent", []ledger.NewEntry{
			{AuthorityID: "shop", UserID: "alice", Amount: dec("-40"), Reason: "all of it"},
			{AuthorityID: "shop", UserID: "alice", Amount: dec("-0.01"), Reason: "one more"},
		}, 1, ledger.ErrNotEnoughFunds},
		{"invalid entry", []ledger.NewEntry{
			{AuthorityID: "bank", UserID: "dave", Amount: dec("5"), Reason: "in"},
			{AuthorityID: "bank", UserID: "dave", Amount: dec("5"), Reason: "in"},
			{AuthorityID: "bank", UserID: "", Amount: dec("5"), Reason: "no user"},
		}, 2, ledger.ErrInvalid},
		{"first entry fails", []ledger.NewEntry{
			{AuthorityID: "shop", UserID: "nobody", Amount: dec("-1"), Reason: "out"},
			{AuthorityID: "bank", UserID: "dave", Amount: dec("5"), Reason: "in"},
		}, 0, ledger.ErrNotEnoughFunds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.CreateEntries(ctx, tc.batch)
			require.ErrorIs(t, err, tc.is)
			var ee *ledger.EntryError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, tc.index, ee.Index)
			require.Equal(t, before, entryCount(t, l), "a failed batch writes nothing")
			require.Equal(t, []string{"alice=40", "bob=10", "carol=0"}, totals(t, l, ledger.WalletQuery{}))
		})
	}

	got, err := l.CreateEntries(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, got)
	require.Equal(t, before, entryCount(t, l))
}

func testBatchIdempotency(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	prior, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("10"), Reason: "in", IdempotencyKey: "k0"})
	require.NoError(t, err)

	in := ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("5"), Reason: "in", IdempotencyKey: "k1"}
	es, err := l.CreateEntries(ctx, []ledger.NewEntry{
		{AuthorityID: "a", UserID: "u", Amount: dec("10"), Reason: "in", IdempotencyKey: "k0"}, // seen before
		in,
		in, // twice in one batch
		{AuthorityID: "a", UserID: "u", Amount: dec("-15"), Reason: "out"},
	})
	require.NoError(t, err)
	requireSameEntry(t, prior, es[0])
	requireSameEntry(t, es[1], es[2])
	requireDecimal(t, "15", es[1].Balance)
	requireDecimal(t, "0", es[3].Balance, "the repeated entry was not counted twice")
	require.Equal(t, 3, entryCount(t, l))

	// The same key with different fields in one batch fails the batch.
	_, err = l.CreateEntries(ctx, []ledger.NewEntry{
		{AuthorityID: "a", UserID: "v", Amount: dec("1"), Reason: "in", IdempotencyKey: "k2"},
		{AuthorityID: "a", UserID: "v", Amount: dec("2"), Reason: "in", IdempotencyKey: "k2"},
	})
	require.ErrorIs(t, err, ledger.ErrIdempotencyConflict)
	var ee *ledger.EntryError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.Index)
	require.Equal(t, 3, entryCount(t, l))
	// And k2 was not spent by the failed batch.
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "v", Amount: dec("2"), Reason: "in", IdempotencyKey: "k2"})
	require.NoError(t, err)
	requireDecimal(t, "2", e.Amount)
}

func entryIDs(es []ledger.Entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func testEntries(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now))
	var all []ledger.Entry
	for i := range 12 {
		var item *ledger.Item
		if i%3 == 0 {
			item = &ledger.Item{Name: "i"}
		}
		all = append(all, create(t, l, fmt.Sprintf("a%d", i%2), fmt.Sprintf("u%d", i%3), fmt.Sprint(i+1), item))
	}
	pick := func(keep func(i int, e ledger.Entry) bool) []string {
		out := []string{}
		for i, e := range all {
			if keep(i, e) {
				out = append(out, e.ID)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    ledger.EntryQuery
		want []string
	}{
		{"all, in creation order", ledger.EntryQuery{}, pick(func(int, ledger.Entry) bool { return true })},
		{"by user", ledger.EntryQuery{UserIDs: []string{"u1"}}, pick(func(i int, _ ledger.Entry) bool { return i%3 == 1 })},
		{"by users", ledger.EntryQuery{UserIDs: []string{"u2", "u0"}}, pick(func(i int, _ ledger.Entry) bool { return i%3 != 1 })},
		{"by authority", ledger.EntryQuery{AuthorityIDs: []string{"a1"}}, pick(func(i int, _ ledger.Entry) bool { return i%2 == 1 })},
		{"by user and authority", ledger.EntryQuery{UserIDs: []string{"u0"}, AuthorityIDs: []string{"a1"}}, pick(func(i int, _ ledger.Entry) bool { return i%6 == 3 })},
		{"by entry IDs", ledger.EntryQuery{EntryIDs: []string{all[7].ID, all[2].ID, "missing"}}, []string{all[2].ID, all[7].ID}},
		{"by entry IDs and user", ledger.EntryQuery{EntryIDs: []string{all[7].ID, all[2].ID}, UserIDs: []string{"u1"}}, []string{all[7].ID}},
		{"since", ledger.EntryQuery{Since: all[9].CreatedOn}, pick(func(i int, _ ledger.Entry) bool { return i >= 9 })},
		{"until", ledger.EntryQuery{Until: all[2].CreatedOn}, pick(func(i int, _ ledger.Entry) bool { return i < 2 })},
		{"since and until", ledger.EntryQuery{Since: all[3].CreatedOn, Until: all[6].CreatedOn.Add(time.Nanosecond)}, pick(func(i int, _ ledger.Entry) bool { return i >= 3 && i <= 6 })},
		{"since and until by user", ledger.EntryQuery{UserIDs: []string{"u0"}, Since: all[1].CreatedOn, Until: all[9].CreatedOn}, []string{all[3].ID, all[6].ID}},
		{"empty range", ledger.EntryQuery{Since: all[3].CreatedOn, Until: all[3].CreatedOn}, []string{}},
		{"after and limit", ledger.EntryQuery{After: all[4].ID, Limit: 3}, []string{all[5].ID, all[6].ID, all[7].ID}},
		{"after and since", ledger.EntryQuery{After: all[8].ID, Since: all[2].CreatedOn}, pick(func(i int, _ ledger.Entry) bool { return i > 8 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := l.Entries(ctx, tc.q)
			require.NoError(t, err)
			require.Equal(t, tc.want, entryIDs(es))
		})
	}

	// A user's history reads as a statement: each Balance is the running sum.
	es, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"u2"}})
	require.NoError(t, err)
	sum := decimal.Zero
	for _, e := range es {
		sum = sum.Add(e.Amount)
		requireDecimal(t, sum.String(), e.Balance, e.ID)
	}
	requireSameEntry(t, all[5], es[1])
}

func testEntriesPaging(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	for i := range 25 {
		create(t, l, fmt.Sprintf("a%d", i%4), fmt.Sprintf("u%d", i%5), "1", nil)
	}
	for _, q := range []ledger.EntryQuery{{}, {UserIDs: []string{"u1", "u3"}}, {AuthorityIDs: []string{"a2"}}} {
		full, err := l.Entries(ctx, q)
		require.NoError(t, err)
		for limit := 1; limit <= len(full)+1; limit += 2 {
			var pages []ledger.Entry
			p := q
			p.Limit = limit
			for {
				es, err := l.Entries(ctx, p)
				require.NoError(t, err)
				pages = append(pages, es...)
				if len(es) < limit {
					break
				}
				p.After = es[len(es)-1].ID
			}
			require.Equal(t, entryIDs(full), entryIDs(pages), "query %+v limit %d", q, limit)
		}
	}
}

func testAsOf(t *testing.T, ns NewStore) {
	clk := newClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now))
	e1 := create(t, l, "bank", "alice", "100", nil) // t1
	e2 := create(t, l, "bank", "bob", "50", nil)    // t2
	e3 := create(t, l, "shop", "alice", "-30", nil) // t3
	e4 := create(t, l, "shop", "bob", "-50", nil)   // t4
	e5 := create(t, l, "bank", "alice", "7", nil)   // t5
	e6 := create(t, l, "bank", "carol", "1", nil)   // t6

	q := func(at time.Time, users, auths []string) []string {
		return totals(t, l, ledger.WalletQuery{AsOf: at, UserIDs: users, AuthorityIDs: auths})
	}
	before := e1.CreatedOn.Add(-time.Nanosecond)
	require.Equal(t, []string{}, q(before, nil, nil), "before the first entry nobody has a wallet")
	require.Equal(t, []string{"alice=0", "bob=0"}, q(before, []string{"alice", "bob"}, nil), "named users read zero")
	require.Equal(t, []string{"alice=100"}, q(e1.CreatedOn, nil, nil), "an entry counts at its own instant")
	require.Equal(t, []string{"alice=100", "bob=50"}, q(e3.CreatedOn.Add(-time.Nanosecond), nil, nil))
	require.Equal(t, []string{"alice=70", "bob=0"}, q(e4.CreatedOn, nil, nil))
	require.Equal(t, []string{"alice=77", "bob=0"}, q(e5.CreatedOn.Add(time.Millisecond), nil, nil))
	require.Equal(t, []string{"alice=77", "bob=0", "carol=1"}, q(e6.CreatedOn.Add(time.Hour), nil, nil))
	require.Equal(t, []string{"alice=70"}, q(e4.CreatedOn, []string{"alice"}, nil))

	// With authorities: each authority's running total for the user.
	require.Equal(t, []string{"alice=-30", "bob=-50"}, q(e4.CreatedOn, nil, []string{"shop"}))
	require.Equal(t, []string{"alice=-30"}, q(e3.CreatedOn, nil, []string{"shop"}))
	require.Equal(t, []string{"alice=70", "bob=50"}, q(e3.CreatedOn, nil, []string{"shop", "bank"}))
	require.Equal(t, []string{"bob=0", "carol=0"}, q(e3.CreatedOn, []string{"bob", "carol"}, []string{"shop"}))
	require.Equal(t, []string{"alice=100", "bob=50"}, q(e5.CreatedOn.Add(-time.Nanosecond), nil, []string{"bank"}))
	require.Equal(t, []string{"bob=50"}, totals(t, l, ledger.WalletQuery{AsOf: e5.CreatedOn, AuthorityIDs: []string{"bank"}, After: "alice", Limit: 1}))
	require.Equal(t, []string{"bob=0"}, totals(t, l, ledger.WalletQuery{AsOf: e4.CreatedOn, After: "alice"}))
	_ = e2
}

func testVerify(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, s := newLedger(t, ns)
	create(t, l, "bank", "alice", "100", nil)
	e := create(t, l, "shop", "alice", "-30", &ledger.Item{Name: "x"})
	_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "bob", Amount: dec("5"), Reason: "r", IdempotencyKey: "k"})
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "shop", e.ID)
	require.NoError(t, err)
	require.NoError(t, l.Verify(ctx))

	// Damage the stored totals under the ledger, as a bad restore would.
	damage := func(tx ledger.Tx, a, u, v string) error {
		t, _, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: a, UserID: u})
		if err != nil {
			return err
		}
		t.Value = dec(v)
		return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: a, UserID: u}, t)
	}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		if err := damage(tx, "", "alice", "71"); err != nil {
			return err
		}
		if err := damage(tx, "shop", "bob", "6"); err != nil {
			return err
		}
		if err := damage(tx, "", "ghost", "1"); err != nil {
			return err
		}
		// A total of an authority that has no entries at all.
		return damage(tx, "stray", "alice", "2")
	}))
	err = l.Verify(ctx)
	require.ErrorIs(t, err, ledger.ErrInconsistent)
	var ve *ledger.VerifyError
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 4, "%v", ve.Problems)
	require.Contains(t, ve.Problems[0], `"alice"`)
	require.Contains(t, err.Error(), `"ghost"`)
	require.Contains(t, err.Error(), `authority "shop"`)
	require.Contains(t, err.Error(), `authority "stray"`)
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return damage(tx, "stray", "alice", "0") }))

	// An entry whose Balance disagrees with the entries before it.
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		if err := damage(tx, "", "alice", "70"); err != nil {
			return err
		}
		if err := damage(tx, "shop", "bob", "5"); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		bad := ledger.Record{Entry: ledger.Entry{
			ID: id(now, 0), AuthorityID: "bank", UserID: "zed", CreatedOn: time.Unix(0, now).UTC(),
			Amount: dec("3"), Reason: "r", Balance: dec("4"),
		}, AuthorityBalance: dec("3")}
		if err := tx.InsertEntry(ctx, bad); err != nil {
			return err
		}
		// With its change, so that only its balance is wrong.
		if err := tx.AppendChange(ctx, ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: bad.CreatedOn, AuthorityID: "bank", Ref: bad.ID}); err != nil {
			return err
		}
		if err := tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "zed"}, ledger.Total{Value: dec("3"), LastEntryID: bad.ID}); err != nil {
			return err
		}
		return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "bank", UserID: "zed"}, ledger.Total{Value: dec("3"), LastEntryID: bad.ID})
	}))
	err = l.Verify(ctx)
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 3, "%v", ve.Problems) // the ghost and stray totals are still there
	require.Contains(t, ve.Problems[0], "Balance 4")

	// An entry written without its change, a change naming no record,
	// and limits whose change is gone: the feed disagrees.
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		now := time.Now().UnixNano() + 1000
		quiet := ledger.Record{Entry: ledger.Entry{
			ID: id(now, 0), AuthorityID: "bank", UserID: "zed", CreatedOn: time.Unix(0, now).UTC(),
			Amount: dec("0"), Reason: "r", Balance: dec("3"),
		}, AuthorityBalance: dec("3")}
		if err := tx.InsertEntry(ctx, quiet); err != nil {
			return err
		}
		if err := tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "zed"}, ledger.Total{Value: dec("3"), LastEntryID: quiet.ID}); err != nil {
			return err
		}
		if err := tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "bank", UserID: "zed"}, ledger.Total{Value: dec("3"), LastEntryID: quiet.ID}); err != nil {
			return err
		}
		return tx.AppendChange(ctx, ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: quiet.CreatedOn, AuthorityID: "bank", Ref: id(now+1, 0)})
	}))
	err = l.Verify(ctx)
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 5, "%v", ve.Problems)
	require.Contains(t, strings.Join(ve.Problems, "\n"), "which does not exist")
	require.Contains(t, strings.Join(ve.Problems, "\n"), "1 entries have no entry change")
}
