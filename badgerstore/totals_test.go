package badgerstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// TestRecoverTotals: after a commit whose outcome the store cannot know,
// it forgets the totals in memory and rebuilds them from Badger, where
// the deferred ones are behind; the wallets read as before, later
// writes build on them, and the ledger verifies. A View in flight
// across the rebuild still reads the totals of its snapshot.
func TestRecoverTotals(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), WithSyncWrites(false))
	require.NoError(t, err)
	l, err := ledger.New(s, ledger.WithHoldSweep(0))
	require.NoError(t, err)
	defer l.Close()
	users := []string{"ann", "ben", "cat"}
	for i := range 30 {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: []string{"bank", "shop"}[i%2], UserID: users[i%3],
			Currency: []string{"", "gems"}[i%2], Amount: decimal.NewFromInt(int64(i + 1)), Reason: "pay"})
		require.NoError(t, err)
	}
	_, err = l.Hold(ctx, ledger.NewHold{AuthorityID: "shop", UserID: "ann", Amount: decimal.NewFromInt(3), Reason: "hold"})
	require.NoError(t, err)
	_, dirty := checkpointState(s)
	require.Positive(t, dirty, "the entries' totals are deferred")
	before := balances(t, l, users)

	// A View that started before the rebuild reads the same totals
	// after it.
	viewed, rebuilt := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.View(ctx, func(tx ledger.ReadTx) error {
			k := ledger.TotalKey{UserID: "ann"}
			v1, _, err := tx.Total(ctx, k)
			if err != nil {
				return err
			}
			close(viewed)
			<-rebuilt
			v2, _, err := tx.Total(ctx, k)
			if err == nil && (!v1.Value.Equal(v2.Value) || !v1.Held.Equal(v2.Held)) {
				err = fmt.Errorf("the View read %v, then %v after the rebuild", v1, v2)
			}
			return err
		})
	}()
	<-viewed

	_ = s.lockWrite(context.Background())
	s.recoverTotals()
	s.unlockWrite()
	require.NoError(t, s.broken)
	close(rebuilt)
	require.NoError(t, <-done)
	require.Equal(t, before, balances(t, l, users), "every wallet as before the rebuild")

	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "ann", Amount: decimal.NewFromInt(100), Reason: "after"})
	require.NoError(t, err)
	b, err := l.Balance(ctx, "ann", "")
	require.NoError(t, err)
	require.Equal(t, decimal.RequireFromString(before[0]).Add(decimal.NewFromInt(100)).String(), b.Total.String())
	require.NoError(t, l.Verify(ctx))
}

func checkpointState(s *Store) (uint64, int) {
	_ = s.lockWrite(context.Background())
	defer s.unlockWrite()
	return s.checkpointed, len(s.tot.dirty)
}

// balances returns each user's balance lines: the default currency's
// total first.
func balances(t *testing.T, l *ledger.Ledger, users []string) []string {
	t.Helper()
	var out []string
	for _, u := range users {
		bs, err := l.Balances(context.Background(), u)
		require.NoError(t, err)
		for _, b := range bs {
			out = append(out, b.Total.String(), fmt.Sprintf("%s %q held=%s", u, b.Currency, b.Held))
		}
	}
	return out
}

// TestCloseCheckpoints: Close writes the deferred totals and the
// checkpoint at the last change, so the next Open has nothing to
// rebuild.
func TestCloseCheckpoints(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, WithSyncWrites(false))
	require.NoError(t, err)
	l, err := ledger.New(s, ledger.WithHoldSweep(0))
	require.NoError(t, err)
	for i := range 20 {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: fmt.Sprint("u", i%4), Amount: decimal.NewFromInt(1), Reason: "pay"})
		require.NoError(t, err)
	}
	_, dirty := checkpointState(s)
	require.Positive(t, dirty, "deferred before Close")
	before := balances(t, l, []string{"u0", "u1", "u2", "u3"})
	require.NoError(t, l.Close())

	s, err = Open(dir, WithSyncWrites(false))
	require.NoError(t, err)
	seq, dirty := checkpointState(s)
	require.Zero(t, dirty, "nothing to rebuild")
	require.Equal(t, s.nextSeq-1, seq, "the checkpoint is the last change")
	l, err = ledger.New(s, ledger.WithHoldSweep(0))
	require.NoError(t, err)
	defer l.Close()
	require.Equal(t, before, balances(t, l, []string{"u0", "u1", "u2", "u3"}))
}

// TestSmallFootprint: with WithCachedTotals(0) the totals in memory are
// at most those not yet checkpointed (and the commit's own), however
// many wallets are written, and every wallet still reads right; by
// default every total stays.
func TestSmallFootprint(t *testing.T) {
	ctx := context.Background()
	const users = 300
	for _, tc := range []struct {
		name     string
		opts     []Option
		min, max int
	}{
		{"small", []Option{WithCachedTotals(0), WithCheckpoints(1<<20, 16)}, 0, 16 + 2},
		{"default", nil, 2 * users, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open("", append([]Option{WithInMemory()}, tc.opts...)...)
			require.NoError(t, err)
			l, err := ledger.New(s, ledger.WithHoldSweep(0))
			require.NoError(t, err)
			defer l.Close()
			for u := range users {
				_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: fmt.Sprint("u", u), Amount: decimal.NewFromInt(int64(u + 1)), Reason: "pay"})
				require.NoError(t, err)
				// A second entry: the wallet's totals exist, so it defers.
				_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: fmt.Sprint("u", u), Amount: decimal.NewFromInt(1), Reason: "pay"})
				require.NoError(t, err)
			}
			_ = s.lockWrite(ctx)
			n := len(s.tot.vals)
			s.unlockWrite()
			require.GreaterOrEqual(t, n, tc.min)
			require.LessOrEqual(t, n, tc.max, "totals in memory")
			for _, u := range []int{0, users / 2, users - 1} {
				b, err := l.Balance(ctx, fmt.Sprint("u", u), "")
				require.NoError(t, err)
				require.Equal(t, fmt.Sprint(u+2), b.Total.String())
			}
			require.NoError(t, l.Verify(ctx))
		})
	}
}
