package memstore_test

import (
	"context"
	"fmt"
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

// BenchmarkMemoryPerEntry reports the heap a stored entry costs, index
// entries and running totals included, for the benchmark workload.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const n = 200_000
	ctx := context.Background()
	for b.Loop() {
		l, err := ledger.New(memstore.New())
		if err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		batch := make([]ledger.NewEntry, 0, 1000)
		for i := range n {
			batch = append(batch, ledger.NewEntry{
				AuthorityID: authorities[i%3], UserID: users[i%1000],
				Amount: decimal.New(int64(1+i%10000), -2), Reason: "benchmark",
			})
			if len(batch) == cap(batch) {
				if _, err := l.CreateEntries(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
		runtime.KeepAlive(l)
		_ = l.Close()
	}
}

// BenchmarkMemoryPerItemEntry reports the heap a stored entry with an
// item costs (a short name, no data), half of them used by an authority.
func BenchmarkMemoryPerItemEntry(b *testing.B) {
	const n = 50_000
	ctx := context.Background()
	for b.Loop() {
		l, err := ledger.New(memstore.New())
		if err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		batch := make([]ledger.NewEntry, 0, 1000)
		var ids []string
		for i := range n {
			batch = append(batch, ledger.NewEntry{
				AuthorityID: authorities[i%3], UserID: users[i%1000],
				Amount: decimal.Zero, Reason: "benchmark", Item: &ledger.Item{Name: "ticket"},
			})
			if len(batch) == cap(batch) {
				es, err := l.CreateEntries(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				for _, e := range es[:len(es)/2] {
					ids = append(ids, e.ID)
				}
				batch = batch[:0]
			}
		}
		for _, id := range ids {
			if _, err := l.UseItem(ctx, authorities[0], id); err != nil {
				b.Fatal(err)
			}
		}
		ids = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
		runtime.KeepAlive(l)
		_ = l.Close()
	}
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
