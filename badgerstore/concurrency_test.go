package badgerstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// TestConcurrentSpends has 32 goroutines spend from 3 wallets and race
// for the same items through a ledger on a durable store on disk.
func TestConcurrentSpends(t *testing.T) {
	const (
		workers   = 32
		spends    = 15 // per worker
		funds     = 100
		maxAmount = 10
		perUser   = 4 // items
	)
	ctx := context.Background()
	l := newLedger(t, open(t, t.TempDir()))
	users := []string{"ann", "ben", "cat"}
	var items []string
	for _, u := range users {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: u, Amount: decimal.NewFromInt(funds), Reason: "funds"})
		require.NoError(t, err)
		for i := range perUser {
			e, err := l.CreateEntry(ctx, ledger.NewEntry{
				AuthorityID: "shop", UserID: u, Amount: decimal.Zero, Reason: "gift", Item: &ledger.Item{Name: fmt.Sprint("gift ", i)},
			})
			require.NoError(t, err)
			items = append(items, e.ID)
		}
	}

	type outcome struct {
		spent       map[string]decimal.Decimal // by user, succeeded
		maxRefused  map[string]decimal.Decimal // by user, largest refused amount
		refusals    int
		uses, clash map[string]int // by item: won, lost
	}
	out := outcome{
		spent: map[string]decimal.Decimal{}, maxRefused: map[string]decimal.Decimal{},
		uses: map[string]int{}, clash: map[string]int{},
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			// Every worker tries every item once, between its spends
			// (there are more spends than items).
			order := r.Perm(len(items))
			for i := range spends + len(items) {
				if i%2 == 1 && len(order) > 0 {
					id := items[order[0]]
					order = order[1:]
					_, err := l.UseItem(ctx, "shop", id)
					mu.Lock()
					switch {
					case err == nil:
						out.uses[id]++
					case errors.Is(err, ledger.ErrItemUsed):
						out.clash[id]++
					default:
						t.Errorf("use %s: %v", id, err)
					}
					mu.Unlock()
					continue
				}
				u := users[r.IntN(len(users))]
				a := decimal.NewFromInt(int64(1 + r.IntN(maxAmount)))
				_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: u, Amount: a.Neg(), Reason: "spend"})
				mu.Lock()
				switch {
				case err == nil:
					out.spent[u] = out.spent[u].Add(a)
				case errors.Is(err, ledger.ErrNotEnoughFunds):
					out.refusals++
					if a.GreaterThan(out.maxRefused[u]) {
						out.maxRefused[u] = a
					}
				default:
					t.Errorf("spend: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	require.NoError(t, l.Verify(ctx), "totals recomputed from the entries agree")
	requireNoNegativeWallet(t, l)
	require.Positive(t, out.refusals, "the workers ask for more than the wallets hold")
	got := totals(t, l, ledger.WalletQuery{})
	for _, u := range users {
		left := decimal.NewFromInt(funds).Sub(out.spent[u])
		require.Equal(t, left.String(), got[u], "user %s: funds less successful spends", u)
		if m := out.maxRefused[u]; !m.IsZero() {
			// A spend is refused only when it exceeds the balance, and
			// balances only fall: what is left is below every refusal.
			require.Truef(t, left.LessThan(m), "user %s: %s left, yet a spend of %s was refused", u, left, m)
		}
	}
	for _, id := range items {
		require.Equal(t, 1, out.uses[id], "item %s is used exactly once", id)
		require.Equal(t, workers-1, out.clash[id], "item %s: every other use fails", id)
	}
	inv, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOnly})
	require.NoError(t, err)
	require.Len(t, inv, len(items))
}

// increment adds one to the total of ("", "counter") in s.
func increment(ctx context.Context, s ledger.Store, inside func()) error {
	return s.Update(ctx, func(tx ledger.Tx) error {
		v, _, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "counter"})
		if err != nil {
			return err
		}
		inside()
		return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "counter"}, ledger.Total{Value: v.Value.Add(decimal.NewFromInt(1))})
	})
}

// TestConcurrentUpdatesSerialize runs read-modify-write increments of
// one total from many goroutines straight on the store: Updates run one
// at a time, so no two overlap and no increment is lost, in memory and
// after the store is opened again.
func TestConcurrentUpdatesSerialize(t *testing.T) {
	const workers, increments = 16, 40
	ctx := context.Background()
	for _, mode := range []struct {
		name string
		dir  func(t *testing.T) string
		opts []badgerstore.Option
	}{
		{"in memory", func(*testing.T) string { return "" }, []badgerstore.Option{badgerstore.WithInMemory()}},
		{"on disk", func(t *testing.T) string { return t.TempDir() }, nil},
	} {
		t.Run(mode.name, func(t *testing.T) {
			dir := mode.dir(t)
			s := open(t, dir, mode.opts...)
			var inside, overlaps atomic.Int32
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range increments {
						err := increment(ctx, s, func() {
							if inside.Add(1) > 1 {
								overlaps.Add(1)
							}
							runtime.Gosched()
							inside.Add(-1)
						})
						if err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			require.Zero(t, overlaps.Load(), "Updates overlapped")
			want := fmt.Sprint(workers * increments)
			requireCounter(t, s, want)
			if dir != "" {
				require.NoError(t, s.Close())
				requireCounter(t, open(t, dir), want)
			}
		})
	}
}

func requireCounter(t *testing.T, s ledger.Store, want string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		v, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "counter"})
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, v.Value.String(), "no increment is lost")
		return nil
	}))
}

// TestUpdateWaitHonoursContext: an Update waiting for the one in
// progress returns when its context ends, having run nothing, and the
// one in progress commits.
func TestUpdateWaitHonoursContext(t *testing.T) {
	ctx := context.Background()
	s := open(t, "", badgerstore.WithInMemory())
	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- increment(ctx, s, func() {
			close(inside)
			<-release
		})
	}()
	<-inside
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	ran := false
	err := s.Update(wctx, func(tx ledger.Tx) error { ran = true; return nil })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "badgerstore:")
	require.False(t, ran, "the waiting Update ran nothing")
	close(release)
	require.NoError(t, <-first)
	requireCounter(t, s, "1")
}
