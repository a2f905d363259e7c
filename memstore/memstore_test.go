package memstore_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
	"github.com/walletledger/ledger/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) ledger.Store { return memstore.New() })
}

func BenchmarkLedger(b *testing.B) {
	storetest.Benchmark(b, func(*testing.B) ledger.Store { return memstore.New() })
}

// reportHeapPerEntry runs fill on a new store each round and reports the
// heap it grew by, divided by the n entries fill stores.
func reportHeapPerEntry(b *testing.B, n int, fill func(s *memstore.Store) io.Closer) {
	b.Helper()
	reportHeapPer(b, n, "B/entry", fill)
}

// reportHeapPer runs fill on a new store each round and reports the heap
// it grew by, divided by the n things fill stores, as unit.
func reportHeapPer(b *testing.B, n int, unit string, fill func(s *memstore.Store) io.Closer) {
	b.Helper()
	for b.Loop() {
		s := memstore.New()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		owner := fill(s)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), unit)
		runtime.KeepAlive(owner)
		_ = owner.Close()
	}
}

// fillLedger writes n entries made by entry through a ledger over s, in
// batches of 1,000, and returns the ledger and what each batch returned.
func fillLedger(b *testing.B, s *memstore.Store, n int, entry func(i int) ledger.NewEntry, each func([]ledger.Entry)) *ledger.Ledger {
	b.Helper()
	ctx := context.Background()
	l, err := ledger.New(s)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]ledger.NewEntry, 0, 1000)
	for i := range n {
		batch = append(batch, entry(i))
		if len(batch) == cap(batch) {
			es, err := l.CreateEntries(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			if each != nil {
				each(es)
			}
			batch = batch[:0]
		}
	}
	return l
}

// BenchmarkMemoryPerEntry reports the heap a stored entry costs, index
// entries and running totals included, for the benchmark workload.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const n = 200_000
	reportHeapPerEntry(b, n, func(s *memstore.Store) io.Closer {
		return fillLedger(b, s, n, func(i int) ledger.NewEntry {
			return ledger.NewEntry{
				AuthorityID: authorities[i%3], UserID: users[i%1000],
				Amount: decimal.New(int64(1+i%10000), -2), Reason: "benchmark",
			}
		}, nil)
	})
}

// BenchmarkMemoryPerItemEntry reports the heap a stored entry with an
// item costs (a short name, no data), half of them used by an authority.
func BenchmarkMemoryPerItemEntry(b *testing.B) {
	const n = 50_000
	reportHeapPerEntry(b, n, func(s *memstore.Store) io.Closer {
		var ids []string
		l := fillLedger(b, s, n, func(i int) ledger.NewEntry {
			return ledger.NewEntry{
				AuthorityID: authorities[i%3], UserID: users[i%1000],
				Amount: decimal.Zero, Reason: "benchmark", Item: &ledger.Item{Name: "ticket"},
			}
		}, func(es []ledger.Entry) {
			for _, e := range es[:len(es)/2] {
				ids = append(ids, e.ID)
			}
		})
		for _, id := range ids {
			if _, err := l.UseItem(context.Background(), authorities[0], id); err != nil {
				b.Fatal(err)
			}
		}
		return l
	})
}

var (
	authorities = []string{"authority-0", "authority-1", "authority-2"}
	users       = func() []string {
		u := make([]string, 1000)
		for i := range u {
			u[i] = fmt.Sprintf("user-%04d", i)
		}
		return u
	}()
)
