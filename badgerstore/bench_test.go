package badgerstore_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
	"github.com/walletledger/ledger/storetest"
)

func BenchmarkLedger(b *testing.B) {
	for _, mode := range []struct {
		name     string
		inMemory bool
		opts     []badgerstore.Option
	}{
		{"durable", false, nil},
		{"nosync", false, []badgerstore.Option{badgerstore.WithSyncWrites(false)}},
		{"memory", true, []badgerstore.Option{badgerstore.WithInMemory()}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			storetest.Benchmark(b, func(b *testing.B) ledger.Store {
				dir := ""
				if !mode.inMemory {
					dir = b.TempDir()
				}
				s, err := badgerstore.Open(dir, mode.opts...)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = s.Close() })
				return s
			})
		})
	}
}

// BenchmarkMemoryPerWallet measures what an open store keeps in memory:
// fixed, the growth of the live heap (after a full GC) across Open and
// ledger.New; per wallet, its growth from there once users wallets
// (1,000,000; 20,000 with -short) have one entry each, written in
// batches of 1,000 by one authority (so two totals each), divided by the
// number of wallets. With every total kept (the default) and with
// WithCachedTotals(0), the small footprint. b.N is ignored.
func BenchmarkMemoryPerWallet(b *testing.B) {
	users := 1_000_000
	if testing.Short() {
		users = 20_000
	}
	for _, mode := range []struct {
		name string
		opts []badgerstore.Option
	}{
		{"all", nil},
		{"small", []badgerstore.Option{badgerstore.WithCachedTotals(0)}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			dir := b.TempDir()
			opts := append([]badgerstore.Option{badgerstore.WithSyncWrites(false)}, mode.opts...)
			before := liveHeap()
			s, err := badgerstore.Open(dir, opts...)
			if err != nil {
				b.Fatal(err)
			}
			l, err := ledger.New(s, ledger.WithHoldSweep(0))
			if err != nil {
				b.Fatal(err)
			}
			opened := liveHeap()
			batch := make([]ledger.NewEntry, 0, 1000)
			for u := range users {
				batch = append(batch, ledger.NewEntry{AuthorityID: "bank", UserID: fmt.Sprintf("user-%07d", u), Amount: decimal.New(int64(u%1000+1), -2), Reason: "deposit"})
				if len(batch) == cap(batch) || u == users-1 {
					if _, err := l.CreateEntries(ctx, batch); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			after := settledHeap()
			runtime.KeepAlive(l)
			b.ReportMetric(float64(opened-before), "B-fixed")
			b.ReportMetric((float64(after)-float64(opened))/float64(users), "B/wallet")
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// settledHeap returns the live heap once Badger's background flushes
// have released the memtables they wrote (each an arena of about 100
// MiB, allocated whole): the least of readings a quarter second apart,
// once one is no lower than the one before, within 20 seconds.
func settledHeap() uint64 {
	least := liveHeap()
	for range 80 {
		time.Sleep(250 * time.Millisecond)
		h := liveHeap()
		if h >= least {
			break
		}
		least = h
	}
	return least
}

// liveHeap returns the bytes of live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
