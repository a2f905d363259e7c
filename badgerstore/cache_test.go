package badgerstore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// TestCachedTotalsAgreeWithSnapshot writes totals from one goroutine
// while others read them in Views, each View reading every total twice:
// by point lookup (which the cache serves) and by a scan of all totals
// (which reads Badger). Within one View the two must agree, and a total
// must never go back in time from one View to the next.
func TestCachedTotalsAgreeWithSnapshot(t *testing.T) {
	s, err := badgerstore.Open(t.TempDir(), badgerstore.WithSyncWrites(false), badgerstore.WithCachedTotals(64))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	users := []string{"a", "b", "c", "d"}

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stop.Store(true)
		for n := 1; n <= 400; n++ {
			err := s.Update(ctx, func(tx ledger.Tx) error {
				for _, u := range users {
					if err := tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: u}, ledger.Total{Value: decimal.NewFromInt(int64(n))}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for !stop.Load() {
				err := s.View(ctx, func(tx ledger.ReadTx) error {
					scanned := map[string]decimal.Decimal{}
					for row, err := range tx.Totals(ctx, "", "", "") {
						if err != nil {
							return err
						}
						scanned[row.UserID] = row.Value
					}
					for _, u := range users {
						t0, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: u})
						if err != nil {
							return err
						}
						v := t0.Value
						if ok != (scanned[u] != decimal.Decimal{}) || ok && !v.Equal(scanned[u]) {
							t.Errorf("user %s: lookup %s (%v), scan %s in one snapshot", u, v, ok, scanned[u])
						}
						if ok && v.IntPart() < last {
							t.Errorf("user %s: total went back from %d to %s", u, last, v)
						}
						if ok {
							last = v.IntPart()
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
