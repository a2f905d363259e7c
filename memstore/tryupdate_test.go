package memstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

// holdView keeps a View of s open until the returned func is called.
func holdView(t *testing.T, s *memstore.Store) (release func()) {
	t.Helper()
	inside, done := make(chan struct{}), make(chan struct{})
	finished := make(chan error, 1)
	go func() {
		finished <- s.View(context.Background(), func(ledger.ReadTx) error {
			close(inside)
			<-done
			return nil
		})
	}()
	<-inside
	return func() {
		close(done)
		require.NoError(t, <-finished)
	}
}

func TestTryUpdate(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()

	release := holdView(t, s)
	called := false
	ok, err := s.TryUpdate(ctx, func(ledger.Tx) error { called = true; return nil })
	require.False(t, ok, "TryUpdate began while a View held the store")
	require.NoError(t, err)
	require.False(t, called, "TryUpdate called fn though it could not begin")
	release()

	// Free, it is Update: fn's error comes back and its writes are undone.
	boom := errors.New("boom")
	ok, err = s.TryUpdate(ctx, func(tx ledger.Tx) error {
		if err := tx.SetTotal(ctx, ledger.TotalKey{UserID: "u"}, ledger.Total{Value: decimal.NewFromInt(5)}); err != nil {
			return err
		}
		return boom
	})
	require.True(t, ok)
	require.ErrorIs(t, err, boom)
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		_, found, err := tx.Total(ctx, ledger.TotalKey{UserID: "u"})
		require.False(t, found, "a failed TryUpdate kept its write")
		return err
	}))

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	ok, err = s.TryUpdate(canceled, func(ledger.Tx) error { t.Fatal("fn called with an ended context"); return nil })
	require.True(t, ok)
	require.ErrorIs(t, err, context.Canceled)

	require.NoError(t, s.Close())
	ok, err = s.TryUpdate(ctx, func(ledger.Tx) error { return nil })
	require.True(t, ok)
	require.ErrorIs(t, err, ledger.ErrClosed)
}

// A caller whose context can end commits on its own goroutine when the
// store is free; when a reader holds the store, its wait must still end
// with its context, and its write go on once the reader is done.
func TestWriteBehindReaderHonoursContext(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	l, err := ledger.New(s)
	require.NoError(t, err)
	defer l.Close()

	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	e1, err := l.CreateEntry(short, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: decimal.NewFromInt(10), Reason: "r"})
	require.NoError(t, err, "a write on a free store")

	release := holdView(t, s)
	short2, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	start := time.Now()
	_, err = l.CreateEntry(short2, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: decimal.NewFromInt(7), Reason: "r"})
	waited := time.Since(start)
	require.ErrorIs(t, err, ledger.ErrUnknownOutcome, "a write held up by a reader past its deadline")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, waited, 5*time.Second, "the caller waited for the reader, not for its context")
	release()

	// Its outcome is unknown: the leading goroutine, which waited for the
	// reader, finds the caller gone and drops its write. Either way the
	// store is free again for the next caller, and consistent.
	var total decimal.Decimal
	require.Eventually(t, func() bool {
		b, err := l.Balance(ctx, "u", "")
		total = b.Total
		return err == nil
	}, 5*time.Second, 5*time.Millisecond)
	require.True(t, total.Equal(decimal.NewFromInt(10)) || total.Equal(decimal.NewFromInt(17)), "total %s", total)
	e3, err := l.CreateEntry(short, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: total.Neg(), Reason: "r"})
	require.NoError(t, err)
	require.Greater(t, e3.ID, e1.ID)
	b, err := l.Balance(ctx, "u", "")
	require.NoError(t, err)
	require.True(t, b.Total.IsZero(), "total %s", b.Total)
	require.NoError(t, l.Verify(ctx))
}
