package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// statementLedger makes a ledger whose iterator forms read pages of two
// rows, with entries of three users from two authorities at one-second
// steps; some carry items, one of them used.
func statementLedger(t *testing.T, ns NewStore) (*ledger.Ledger, []ledger.Entry) {
	t.Helper()
	c := newClock()
	l, _ := newLedger(t, ns, ledger.WithClock(c.Now), ledger.WithPageSize(2))
	var all []ledger.Entry
	for i := range 15 {
		var item *ledger.Item
		if i%3 == 0 {
			item = &ledger.Item{Name: fmt.Sprint("item ", i)}
		}
		all = append(all, create(t, l, []string{"shop", "bank"}[i%2], []string{"ann", "bob", "cid"}[i%3], fmt.Sprint(i+1), item))
	}
	_, err := l.UseItem(context.Background(), "shop", all[3].ID)
	require.NoError(t, err)
	all[3].Item.Used = true
	return l, all
}

// testReverse: EntryQuery.Reverse lists newest first with every filter,
// and After pages backwards.
func testReverse(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, all := statementLedger(t, ns)
	queries := map[string]ledger.EntryQuery{
		"all":                {},
		"one user":           {UserIDs: []string{"bob"}},
		"two users":          {UserIDs: []string{"ann", "cid"}},
		"one authority":      {AuthorityIDs: []string{"bank"}},
		"user and authority": {UserIDs: []string{"ann"}, AuthorityIDs: []string{"shop"}},
		"entry IDs":          {EntryIDs: []string{all[2].ID, all[9].ID, all[5].ID, "000000000000000000000000"}},
		"since and until":    {Since: all[4].CreatedOn, Until: all[11].CreatedOn},
		"user, since, until": {UserIDs: []string{"bob"}, Since: all[4].CreatedOn, Until: all[11].CreatedOn},
	}
	for name, q := range queries {
		t.Run(name, func(t *testing.T) {
			fwd, err := l.Entries(ctx, q)
			require.NoError(t, err)
			require.NotEmpty(t, fwd)
			want := entryIDs(fwd)
			slices.Reverse(want)
			rq := q
			rq.Reverse = true
			rev, err := l.Entries(ctx, rq)
			require.NoError(t, err)
			require.Equal(t, want, entryIDs(rev), "newest first")

			// Pages of two, each After the last ID of the one before.
			var paged []string
			rq.Limit = 2
			for {
				page, err := l.Entries(ctx, rq)
				require.NoError(t, err)
				paged = append(paged, entryIDs(page)...)
				if len(page) < 2 {
					break
				}
				rq.After = page[len(page)-1].ID
			}
			require.Equal(t, want, paged, "After pages backwards")
		})
	}
	// After bounds newest-first lists also past a time bound.
	es, err := l.Entries(ctx, ledger.EntryQuery{Reverse: true, After: all[7].ID, Until: all[12].CreatedOn})
	require.NoError(t, err)
	want := entryIDs(all[:7])
	slices.Reverse(want)
	require.Equal(t, want, entryIDs(es))
}

// collectSeq drains an iterator form, failing the test on an error.
func collectSeq[T any](t *testing.T, seq func(func(T, error) bool)) []T {
	t.Helper()
	var out []T
	for v, err := range seq {
		require.NoError(t, err)
		out = append(out, v)
	}
	return out
}

// testSeqs: the iterator forms yield what the slice forms return, page
// by page, with After and Limit; errors are yielded.
func testSeqs(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, all := statementLedger(t, ns)
	for _, q := range []ledger.EntryQuery{
		{}, {Limit: 5}, {Limit: 4}, {After: all[3].ID}, {After: all[3].ID, Limit: 3},
		{Reverse: true}, {Reverse: true, After: all[10].ID, Limit: 5}, {UserIDs: []string{"bob"}},
	} {
		want, err := l.Entries(ctx, q)
		require.NoError(t, err)
		require.Equal(t, entryIDs(want), entryIDs(collectSeq(t, l.EntriesSeq(ctx, q))), "%+v", q)
	}
	for _, q := range []ledger.InventoryQuery{
		{}, {Used: ledger.UsedOrUnused}, {Used: ledger.UsedOnly}, {Limit: 3}, {After: all[3].ID, Used: ledger.UsedOrUnused},
		{UserIDs: []string{"ann"}, Used: ledger.UsedOrUnused},
	} {
		want, err := l.Inventory(ctx, q)
		require.NoError(t, err)
		require.Equal(t, want, collectSeq(t, l.InventorySeq(ctx, q)), "%+v", q)
	}
	for _, q := range []ledger.WalletQuery{
		{}, {Limit: 2}, {After: "ann"}, {UserIDs: []string{"zed", "ann", "bob", "cid", "dan"}, Limit: 4},
		{AuthorityIDs: []string{"shop"}}, {AsOf: all[6].CreatedOn},
	} {
		want, err := l.Wallets(ctx, q)
		require.NoError(t, err)
		got := collectSeq(t, l.WalletsSeq(ctx, q))
		require.Equal(t, len(want), len(got), "%+v", q)
		for i := range want {
			require.Equal(t, want[i].UserID, got[i].UserID)
			requireDecimal(t, want[i].Total.String(), got[i].Total)
		}
	}

	// A caller may stop early.
	n := 0
	for range l.EntriesSeq(ctx, ledger.EntryQuery{}) {
		if n++; n == 3 {
			break
		}
	}
	require.Equal(t, 3, n)

	// Bad input and a closed ledger are yielded as errors, once.
	errs := func(seq func(func(ledger.Entry, error) bool)) []error {
		var out []error
		for _, err := range seq {
			out = append(out, err)
		}
		return out
	}
	got := errs(l.EntriesSeq(ctx, ledger.EntryQuery{Limit: -1}))
	require.Len(t, got, 1)
	require.ErrorIs(t, got[0], ledger.ErrInvalid)

	// Close between pages: the rows read so far, then ErrClosed.
	var rows int
	var last error
	for _, err := range l.EntriesSeq(ctx, ledger.EntryQuery{}) {
		if err != nil {
			last = err
			break
		}
		if rows++; rows == 1 {
			require.NoError(t, l.Close())
		}
	}
	require.Equal(t, 2, rows, "the first page, then the error")
	require.ErrorIs(t, last, ledger.ErrClosed)

}
