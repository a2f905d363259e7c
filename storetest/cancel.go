package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// testCancelAtRandom: writers whose contexts end at random moments
// (before they start, while queued, while their commit runs) each learn
// one of three outcomes, and each outcome is true: success means written,
// the context's error alone means nothing written, ErrUnknownOutcome
// means either, and a retry with the same idempotency key settles it.
// No write is lost or doubled, and the ledger verifies.
func testCancelAtRandom(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns)
	bg := context.Background()
	const writers, each = 16, 20
	var mu sync.Mutex
	written, unknown, refused := map[string]bool{}, map[string]bool{}, map[string]bool{}
	parallel(writers, func(w int) {
		r := rand.New(rand.NewPCG(uint64(w), 1))
		for i := range each {
			key := fmt.Sprintf("w%d-%d", w, i)
			ctx, cancel := context.WithTimeout(bg, time.Duration(r.IntN(400))*time.Microsecond)
			var err error
			if i%4 == 0 {
				_, err = l.CreateEntries(ctx, []ledger.NewEntry{{AuthorityID: "a", UserID: fmt.Sprint("u", w%3), Amount: decimal.NewFromInt(1), Reason: "r", IdempotencyKey: key}})
			} else {
				_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: fmt.Sprint("u", w%3), Amount: decimal.NewFromInt(1), Reason: "r", IdempotencyKey: key})
			}
			cancel()
			mu.Lock()
			switch {
			case err == nil:
				written[key] = true
			case errors.Is(err, ledger.ErrUnknownOutcome):
				require.ErrorIs(t, err, context.DeadlineExceeded)
				unknown[key] = true
			case errors.Is(err, context.DeadlineExceeded):
				refused[key] = true
			default:
				t.Errorf("write %s: unexpected error %v", key, err)
			}
			mu.Unlock()
		}
	})
	t.Logf("written %d, unknown %d, refused %d", len(written), len(unknown), len(refused))
	require.Equal(t, writers*each, len(written)+len(unknown)+len(refused))

	stored := map[string]bool{}
	var rows []ledger.Entry
	// Settle the unknowns first: a retry with the key returns the entry
	// if the first attempt committed, and writes it if it did not.
	for key := range unknown {
		_, err := l.CreateEntry(bg, ledger.NewEntry{AuthorityID: "a", UserID: "x", Amount: decimal.NewFromInt(1), Reason: "r", IdempotencyKey: key})
		if errors.Is(err, ledger.ErrIdempotencyConflict) {
			stored[key] = true // the first attempt committed (for its own user)
			continue
		}
		require.NoError(t, err)
	}
	rows, err := l.Entries(bg, ledger.EntryQuery{UserIDs: []string{"u0", "u1", "u2"}})
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, e := range rows {
		k := fmt.Sprint(e.Reason, e.ID)
		require.False(t, seen[k])
		seen[k] = true
	}
	// Each committed write is one entry of u0..u2; refused ones none.
	require.Equal(t, len(written)+len(stored), len(rows), "entries of the writers' users")
	require.NoError(t, l.Verify(bg))
	ws, err := l.Wallets(bg, ledger.WalletQuery{UserIDs: []string{"u0", "u1", "u2"}})
	require.NoError(t, err)
	sum := decimal.Zero
	for _, w := range ws {
		sum = sum.Add(w.Total)
	}
	require.Equal(t, int64(len(rows)), sum.IntPart())
}

// testCloseDuringOperations: Close while every kind of call is in flight
// waits for them and returns; each call either completes or fails with
// ErrClosed (or its context's error), and none hangs.
func testCloseDuringOperations(t *testing.T, ns NewStore) {
	// A sweep that always has work: Close must stop it mid-way too.
	l, _ := newLedger(t, ns, ledger.WithHoldSweep(time.Millisecond))
	bg := context.Background()
	item := create(t, l, "a", "u0", "100", &ledger.Item{Name: "i"})
	create(t, l, "a", "u3", "1000000", nil)
	settle := func(ctx context.Context, capture bool) error {
		h, err := l.Hold(ctx, ledger.NewHold{AuthorityID: "a", UserID: "u3", Amount: decimal.NewFromInt(1), Reason: "r",
			Expires: time.Now().Add(time.Duration(1+rand.IntN(3)) * time.Millisecond)})
		var ie *ledger.InvalidError
		if errors.As(err, &ie) && ie.Field == "Expires" {
			return nil // its expiry passed before it was placed
		}
		if err != nil {
			return err
		}
		if capture {
			_, err = l.Capture(ctx, "a", h.ID, ledger.Capture{})
		} else {
			_, err = l.Release(ctx, "a", h.ID)
		}
		if errors.Is(err, ledger.ErrHoldClosed) {
			return nil // expired first
		}
		return err
	}
	ops := []func(ctx context.Context) error{
		func(ctx context.Context) error { return settle(ctx, true) },
		func(ctx context.Context) error { return settle(ctx, false) },
		func(ctx context.Context) error { _, err := l.Holds(ctx, ledger.HoldQuery{}); return err },
		func(ctx context.Context) error {
			for _, err := range l.Changes(ctx, ledger.ChangeQuery{Limit: 50}) {
				if err != nil {
					return err
				}
			}
			return nil
		},
		func(ctx context.Context) error {
			// A follower: its context ending is how it stops.
			for _, err := range l.Changes(ctx, ledger.ChangeQuery{Follow: true}) {
				if errors.Is(err, context.DeadlineExceeded) {
					return nil
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
		func(ctx context.Context) error { _, err := l.Balance(ctx, "u3", ""); return err },
		func(ctx context.Context) error {
			_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u1", Amount: decimal.NewFromInt(1), Reason: "r"})
			return err
		},
		func(ctx context.Context) error {
			_, err := l.CreateEntries(ctx, []ledger.NewEntry{{AuthorityID: "a", UserID: "u2", Amount: decimal.NewFromInt(1), Reason: "r"}})
			return err
		},
		func(ctx context.Context) error {
			_, err := l.UseItem(ctx, "a", item.ID)
			if errors.Is(err, ledger.ErrItemUsed) {
				return nil
			}
			return err
		},
		func(ctx context.Context) error { _, err := l.Wallets(ctx, ledger.WalletQuery{}); return err },
		func(ctx context.Context) error {
			_, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOrUnused})
			return err
		},
		func(ctx context.Context) error {
			for _, err := range l.EntriesSeq(ctx, ledger.EntryQuery{}) {
				if err != nil {
					return err
				}
			}
			return nil
		},
		func(ctx context.Context) error { return l.Verify(ctx) },
		func(ctx context.Context) error { return l.Health(ctx) },
		func(ctx context.Context) error { return l.Export(ctx, discard{}) },
	}
	const rounds = 30
	errs := make(chan error, 64*rounds)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range 4 * len(ops) {
		op := ops[g%len(ops)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := rand.New(rand.NewPCG(uint64(g), 2))
			for range rounds {
				ctx, cancel := context.WithTimeout(bg, time.Duration(r.IntN(2000))*time.Microsecond)
				err := op(ctx)
				cancel()
				if err != nil && !errors.Is(err, ledger.ErrClosed) && !errors.Is(err, context.DeadlineExceeded) {
					errs <- fmt.Errorf("op %d: %w", g%len(ops), err)
				}
				if errors.Is(err, ledger.ErrClosed) {
					return
				}
			}
		}()
	}
	close(start)
	time.Sleep(2 * time.Millisecond) // let the calls get going; any moment will do
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("calls still running 30 s after Close")
	}
	require.NoError(t, <-closed)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.ErrorIs(t, l.Close(), ledger.ErrClosed)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// testUseCancelAtRandom: item uses with idempotency keys whose contexts
// end at random moments: whatever each learned (used, refused, unknown),
// a retry with its key settles it, and each item ends used exactly once,
// by the use that holds its key.
func testUseCancelAtRandom(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns)
	bg := context.Background()
	const items = 48
	ids := make([]string, items)
	for i := range ids {
		ids[i] = create(t, l, "shop", fmt.Sprint("u", i%4), "1", &ledger.Item{Name: fmt.Sprint("item ", i)}).ID
	}
	outcomes := make([]error, items)
	parallel(items, func(i int) {
		r := rand.New(rand.NewPCG(uint64(i), 3))
		ctx, cancel := context.WithTimeout(bg, time.Duration(r.IntN(400))*time.Microsecond)
		defer cancel()
		_, outcomes[i] = l.UseItem(ctx, "shop", ids[i], ledger.UseIdempotencyKey(fmt.Sprint("use-", i)))
	})
	for i, err := range outcomes {
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("use %d: unexpected error %v", i, err)
		}
		// The retry: the same key returns the use if the first attempt
		// made it, and makes it if not.
		e, err := l.UseItem(bg, "shop", ids[i], ledger.UseIdempotencyKey(fmt.Sprint("use-", i)))
		require.NoError(t, err, "retry of use %d after %v", i, outcomes[i])
		require.True(t, e.Item.Used)
		require.Equal(t, "shop", e.Item.UsedBy)
		// Any other use is refused: it was used once.
		_, err = l.UseItem(bg, "shop", ids[i], ledger.UseIdempotencyKey("another"))
		require.ErrorIs(t, err, ledger.ErrItemUsed)
	}
	inv, err := l.Inventory(bg, ledger.InventoryQuery{Used: ledger.UsedOnly})
	require.NoError(t, err)
	require.Len(t, inv, items)
	require.NoError(t, l.Verify(bg))
}
