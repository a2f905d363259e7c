package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runConcurrency races writers through a ledger over the store. Run it
// under -race.
func runConcurrency(t *testing.T, ns NewStore) {
	t.Run("SpendOneWallet", func(t *testing.T) { testSpendOneWallet(t, ns) })
	t.Run("RacingUseItem", func(t *testing.T) { testRacingUseItem(t, ns) })
	t.Run("RacingRetries", func(t *testing.T) { testRacingRetries(t, ns) })
	t.Run("RacingBatches", func(t *testing.T) { testRacingBatches(t, ns) })
	t.Run("Mixed", func(t *testing.T) { testMixed(t, ns) })
	t.Run("CancelAtRandom", func(t *testing.T) { testCancelAtRandom(t, ns) })
	t.Run("UseCancelAtRandom", func(t *testing.T) { testUseCancelAtRandom(t, ns) })
	t.Run("CloseDuringOperations", func(t *testing.T) { testCloseDuringOperations(t, ns) })
}

// parallel runs fn(i) for i in [0, n) on n goroutines released together.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

func testSpendOneWallet(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	create(t, l, "bank", "u", "100", nil)
	var ok, refused atomic.Int64
	errs := make(chan error, 50)
	parallel(50, func(int) {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "u", Amount: dec("-3"), Reason: "spend"})
		switch {
		case err == nil:
			ok.Add(1)
		case errors.Is(err, ledger.ErrNotEnoughFunds):
			refused.Add(1)
		default:
			errs <- err
		}
	})
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(33), ok.Load(), "exactly as many spends as the wallet affords")
	require.Equal(t, int64(17), refused.Load())
	require.Equal(t, []string{"u=1"}, totals(t, l, ledger.WalletQuery{}))
	require.NoError(t, l.Verify(ctx))
}

func testRacingUseItem(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	for round := range 5 {
		e := create(t, l, "shop", "u", "0", &ledger.Item{Name: fmt.Sprint("item ", round)})
		var won, lost atomic.Int64
		parallel(16, func(i int) {
			_, err := l.UseItem(ctx, fmt.Sprint("a", i), e.ID)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ledger.ErrItemUsed):
				lost.Add(1)
			default:
				t.Error(err)
			}
		})
		require.Equal(t, int64(1), won.Load(), "exactly one use wins")
		require.Equal(t, int64(15), lost.Load())
	}
	require.Len(t, inventory(t, l, ledger.InventoryQuery{Used: ledger.UsedOnly}), 5)
}

func testRacingRetries(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	create(t, l, "bank", "u", "10", nil)
	got := make([]ledger.Entry, 16)
	parallel(16, func(i int) {
		e, err := l.CreateEntry(ctx, ledger.NewEntry{
			AuthorityID: "shop", UserID: "u", Amount: dec("-10"), Reason: "once", IdempotencyKey: "order-1",
		})
		if err != nil {
			t.Error(err)
		}
		got[i] = e
	})
	for _, e := range got {
		requireSameEntry(t, got[0], e)
	}
	require.Equal(t, 2, entryCount(t, l), "concurrent retries create one entry")
	require.Equal(t, []string{"u=0"}, totals(t, l, ledger.WalletQuery{}))
}

// testRacingBatches moves value around a ring of users in batches: every
// batch is a transfer, so the grand total must stay put.
func testRacingBatches(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	const users = 4
	for u := range users {
		create(t, l, "bank", fmt.Sprint("u", u), "10", nil)
	}
	var moved atomic.Int64
	parallel(16, func(i int) {
		r := rand.New(rand.NewPCG(uint64(i), 1))
		for range 10 {
			from, to := r.IntN(users), r.IntN(users)
			amt := dec(fmt.Sprint(1 + r.IntN(6)))
			_, err := l.CreateEntries(ctx, []ledger.NewEntry{
				{AuthorityID: "transfers", UserID: fmt.Sprint("u", from), Amount: amt.Neg(), Reason: "give"},
				{AuthorityID: "transfers", UserID: fmt.Sprint("u", to), Amount: amt, Reason: "get"},
			})
			if err == nil {
				moved.Add(1)
			} else if !errors.Is(err, ledger.ErrNotEnoughFunds) {
				t.Error(err)
			}
		}
	})
	require.Positive(t, moved.Load())
	ws, err := l.Wallets(ctx, ledger.WalletQuery{})
	require.NoError(t, err)
	sum := dec("0")
	for _, w := range ws {
		require.False(t, w.Total.IsNegative(), "%s went negative", w.UserID)
		sum = sum.Add(w.Total)
	}
	requireDecimal(t, "40", sum, "transfers created or destroyed value")
	ws, err = l.Wallets(ctx, ledger.WalletQuery{AuthorityIDs: []string{"transfers"}})
	require.NoError(t, err)
	sum = dec("0")
	for _, w := range ws {
		sum = sum.Add(w.Total)
	}
	requireDecimal(t, "0", sum, "the transfers authority's totals must cancel out")
	require.NoError(t, l.Verify(ctx))
}

// testMixed spends from few wallets and uses the same items from many
// goroutines, then recomputes everything from the entries.
func testMixed(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	users := []string{"u0", "u1", "u2"}
	var items []string
	for i, u := range users {
		create(t, l, "bank", u, "50", nil)
		for j := range 3 {
			items = append(items, create(t, l, "shop", u, "-1", &ledger.Item{Name: fmt.Sprint("item", i, j)}).ID)
		}
	}
	uses := make([]atomic.Int64, len(items))
	parallel(16, func(g int) {
		r := rand.New(rand.NewPCG(uint64(g), 2))
		for range 25 {
			switch r.IntN(3) {
			case 0:
				k := r.IntN(len(items))
				_, err := l.UseItem(ctx, "shop", items[k])
				if err == nil {
					uses[k].Add(1)
				} else if !errors.Is(err, ledger.ErrItemUsed) {
					t.Error(err)
				}
			case 1:
				_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: users[r.IntN(3)], Amount: dec(fmt.Sprint(-1 - r.IntN(9))), Reason: "buy"})
				if err != nil && !errors.Is(err, ledger.ErrNotEnoughFunds) {
					t.Error(err)
				}
			default:
				_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: users[r.IntN(3)], Amount: dec(fmt.Sprint(r.IntN(5))), Reason: "pay"})
				if err != nil {
					t.Error(err)
				}
			}
		}
	})
	for k := range items {
		require.LessOrEqual(t, uses[k].Load(), int64(1), "item %s used twice", items[k])
	}
	used, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOnly})
	require.NoError(t, err)
	n := 0
	for k := range items {
		n += int(uses[k].Load())
	}
	require.Len(t, used, n, "every successful use is stored, and only those")
	ws, err := l.Wallets(ctx, ledger.WalletQuery{})
	require.NoError(t, err)
	for _, w := range ws {
		require.False(t, w.Total.IsNegative(), "%s went negative", w.UserID)
	}
	require.NoError(t, l.Verify(ctx))
}
