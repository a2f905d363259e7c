package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// NewBenchStore returns a new, empty store for a benchmark.
type NewBenchStore func(b *testing.B) ledger.Store

// BenchUsers is how many users the benchmarks spread their entries over.
const BenchUsers = 1000

// Benchmark runs the ledger's benchmarks over stores made by newStore.
// Writes report entries/s (successful or refused, every call counts);
// reads report their own rate. The read benchmarks run over ledgers of
// 10,000 and 1,000,000 entries (the latter skipped with -short), to show
// that reads do not grow with history.
func Benchmark(b *testing.B, newStore NewBenchStore) {
	b.Run("CreateEntry", func(b *testing.B) { benchCreateEntry(b, newStore, 1) })
	b.Run("CreateEntry/parallel64", func(b *testing.B) { benchCreateEntry(b, newStore, 64) })
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("CreateEntries/%d", n), func(b *testing.B) { benchCreateEntries(b, newStore, n) })
	}
	b.Run("UseItem", func(b *testing.B) { benchUseItem(b, newStore, 1) })
	b.Run("UseItem/parallel64", func(b *testing.B) { benchUseItem(b, newStore, 64) })
	b.Run("HoldAndSettle", func(b *testing.B) { benchHolds(b, newStore) })
	b.Run("Changes/Read", func(b *testing.B) { benchChangesRead(b, newStore) })
	b.Run("Changes/Follow", func(b *testing.B) { benchChangesFollow(b, newStore) })
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("Reads/entries=%d", n), func(b *testing.B) {
			if n > 100_000 && testing.Short() {
				b.Skip("large history skipped in -short mode")
			}
			benchReads(b, newStore, n)
		})
	}
}

func benchLedger(b *testing.B, newStore NewBenchStore, opts ...ledger.Option) *ledger.Ledger {
	b.Helper()
	l, err := ledger.New(newStore(b), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close() })
	return l
}

var (
	benchUserIDs = func() []string {
		ids := make([]string, BenchUsers)
		for i := range ids {
			ids[i] = fmt.Sprintf("user-%04d", i)
		}
		return ids
	}()
	benchAuthorityIDs = []string{"authority-0", "authority-1", "authority-2"}
)

// workload returns an entry of the benchmark workload: an entry for one
// of BenchUsers users, two credits for every spend.
func workload(r *rand.Rand) ledger.NewEntry {
	ne := ledger.NewEntry{
		AuthorityID: benchAuthorityIDs[r.IntN(3)],
		UserID:      benchUserIDs[r.IntN(BenchUsers)],
		Amount:      decimal.New(int64(1+r.IntN(10000)), -2),
		Reason:      "benchmark",
	}
	if r.IntN(3) == 0 {
		ne.Amount = ne.Amount.Neg()
	}
	return ne
}

func reportRate(b *testing.B, n int, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(n)/s, unit)
	}
}

func benchCreateEntry(b *testing.B, newStore NewBenchStore, goroutines int) {
	l := benchLedger(b, newStore)
	ctx := context.Background()
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	if goroutines == 1 {
		r := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			if _, err := l.CreateEntry(ctx, workload(r)); err != nil && !isFunds(err) {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism((goroutines + 1) / 2) // per GOMAXPROCS; 64 on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(seed.Add(1), 2))
			for pb.Next() {
				if _, err := l.CreateEntry(ctx, workload(r)); err != nil && !isFunds(err) {
					b.Error(err)
					return
				}
			}
		})
	}
	reportRate(b, b.N, "entries/s")
}

func isFunds(err error) bool {
	_, ok := err.(*ledger.NotEnoughFundsError)
	return ok
}

func benchCreateEntries(b *testing.B, newStore NewBenchStore, size int) {
	l := benchLedger(b, newStore)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	batch := make([]ledger.NewEntry, size)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i] = workload(r)
			batch[i].Amount = batch[i].Amount.Abs() // a batch fails whole on one overdraft
		}
		if _, err := l.CreateEntries(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, b.N*size, "entries/s")
}

func benchUseItem(b *testing.B, newStore NewBenchStore, goroutines int) {
	l := benchLedger(b, newStore)
	ctx := context.Background()
	ids := make([]string, 0, b.N)
	batch := make([]ledger.NewEntry, 0, 1000)
	for i := range b.N {
		batch = append(batch, ledger.NewEntry{
			AuthorityID: "shop", UserID: benchUserIDs[i%BenchUsers], Amount: decimal.Zero,
			Reason: "prize", Item: &ledger.Item{Name: "token", Data: []byte(`{"level": 3}`)},
		})
		if len(batch) == cap(batch) || i == b.N-1 {
			es, err := l.CreateEntries(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range es {
				ids = append(ids, e.ID)
			}
			batch = batch[:0]
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism((goroutines + 1) / 2)
	if goroutines == 1 {
		b.SetParallelism(1)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.UseItem(ctx, "shop", ids[next.Add(1)-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, b.N, "uses/s")
}

// benchReads fills a ledger with n entries over BenchUsers users and
// three authorities, one in ten with an item, and times the reads.
func benchReads(b *testing.B, newStore NewBenchStore, n int) {
	l := benchLedger(b, newStore)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	batch := make([]ledger.NewEntry, 0, 1000)
	var mid time.Time // an instant halfway through the history
	for i := range n {
		ne := workload(r)
		ne.Amount = ne.Amount.Abs()
		if i%10 == 0 {
			ne.Item = &ledger.Item{Name: "thing"}
		}
		if i == n/2 {
			mid = time.Now()
		}
		batch = append(batch, ne)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := l.CreateEntries(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	user := func(i int) string { return benchUserIDs[i%BenchUsers] }

	// oneUser runs a read of one user's wallet, read(u), which fails if
	// the answer is not u's.
	oneUser := func(name string, read func(u string) error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if err := read(user(i * 7)); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, b.N, "reads/s")
		})
	}
	oneUser("WalletOne", func(u string) error {
		ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{u}})
		if err == nil && (len(ws) != 1 || ws[0].UserID != u) {
			err = fmt.Errorf("wallets of %s: %v", u, ws)
		}
		return err
	})
	oneUser("BalanceOne", func(u string) error {
		bal, err := l.Balance(ctx, u, "")
		if err == nil && bal.UserID != u {
			err = fmt.Errorf("balance of %s: %v", u, bal)
		}
		return err
	})
	oneUser("BalancesOne", func(u string) error {
		bs, err := l.Balances(ctx, u)
		if err == nil && (len(bs) != 1 || bs[0].UserID != u) {
			err = fmt.Errorf("balances of %s: %v", u, bs)
		}
		return err
	})
	// A wallet as of an instant is a seek in the user's entries, and
	// with an authority in the (authority, user) entries.
	oneUser("WalletOneAsOf", func(u string) error {
		ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{u}, AsOf: mid})
		if err == nil && (len(ws) != 1 || ws[0].UserID != u) {
			err = fmt.Errorf("wallets of %s as of %v: %v", u, mid, ws)
		}
		return err
	})
	oneUser("WalletOneAsOfByAuthority", func(u string) error {
		ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{u}, AuthorityIDs: []string{"authority-1"}, AsOf: mid})
		if err == nil && (len(ws) != 1 || ws[0].UserID != u) {
			err = fmt.Errorf("wallets of %s by authority-1 as of %v: %v", u, mid, ws)
		}
		return err
	})
	b.Run("WalletsAllPaged", func(b *testing.B) {
		b.ReportAllocs()
		rows := 0
		for b.Loop() {
			q := ledger.WalletQuery{Limit: 100}
			for {
				ws, err := l.Wallets(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				rows += len(ws)
				if len(ws) < q.Limit {
					break
				}
				q.After = ws[len(ws)-1].UserID
			}
		}
		reportRate(b, rows, "rows/s")
	})
	b.Run("WalletsByAuthority", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{user(i * 7)}, AuthorityIDs: []string{"authority-1"}}); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, b.N, "reads/s")
	})
	b.Run("InventoryByUser", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := l.Inventory(ctx, ledger.InventoryQuery{UserIDs: []string{user(i * 7)}, Limit: 20}); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, b.N, "reads/s")
	})
	b.Run("EntriesPage", func(b *testing.B) {
		b.ReportAllocs()
		i, rows := 0, 0
		for b.Loop() {
			i++
			es, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{user(i * 7)}, Limit: 50})
			if err != nil {
				b.Fatal(err)
			}
			rows += len(es)
		}
		reportRate(b, rows, "rows/s")
	})
}
