package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// The workload, the same as storetest.Benchmark's: an entry for one of
// numUsers users from one of three authorities, an amount of 0.01 to
// 100.00, and one entry in three a spend.
const numUsers = 1000

var (
	userIDs = func() []string {
		ids := make([]string, numUsers)
		for i := range ids {
			ids[i] = fmt.Sprintf("user-%04d", i)
		}
		return ids
	}()
	authorityIDs = []string{"authority-0", "authority-1", "authority-2"}
)

// workload returns the next entry of the workload. It draws from r in the
// same order as storetest's workload, so a seed gives the same entries.
func workload(r *rand.Rand) ledger.NewEntry {
	ne := ledger.NewEntry{
		AuthorityID: authorityIDs[r.IntN(3)],
		UserID:      userIDs[r.IntN(numUsers)],
		Amount:      decimal.New(int64(1+r.IntN(10000)), -2),
		Reason:      "benchmark",
	}
	if r.IntN(3) == 0 {
		ne.Amount = ne.Amount.Neg()
	}
	return ne
}

// credit returns the next entry of the workload as a credit, for batches,
// which fail whole on one overdraft.
func credit(r *rand.Rand) ledger.NewEntry {
	ne := workload(r)
	ne.Amount = ne.Amount.Abs()
	return ne
}

// An op performs one call against the system under test with the
// worker's own random source and returns how many entries it wrote: a
// refused spend writes none and is no error. An error stops the run.
type op func(ctx context.Context, r *rand.Rand) (written int, err error)

// result is what a timed run did.
type result struct {
	calls   int64 // op calls
	ops     int64 // calls times the entries each call asks for
	written int64 // entries written
	elapsed time.Duration
}

// rate returns operations per second.
func (r result) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// runFor calls ops from the given number of goroutines until d has passed,
// then waits for the calls in flight. newOp is called once per goroutine
// so that each can keep its own state (a reusable batch, say). Each call
// counts perCall operations, refused or not. The goroutines' random
// sources are seeded by their index, so runs are repeatable up to
// scheduling.
func runFor(ctx context.Context, d time.Duration, workers, perCall int, newOp func() op) (result, error) {
	var (
		stop     atomic.Bool
		calls    atomic.Int64
		written  atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		stop.Store(true)
	}
	ops := make([]op, workers)
	for w := range ops {
		ops[w] = newOp()
	}
	start := time.Now()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	for w, fn := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w+1), 2))
			var n, wrote int64
			for !stop.Load() {
				k, err := fn(ctx, r)
				if err != nil {
					fail(err)
					break
				}
				n++
				wrote += int64(k)
			}
			calls.Add(n)
			written.Add(wrote)
		}()
	}
	// Stop early if ctx ends (an interrupt).
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			stop.Store(true)
		case <-done:
		}
	}()
	wg.Wait()
	close(done)
	res := result{
		calls:   calls.Load(),
		ops:     calls.Load() * int64(perCall),
		written: written.Load(),
		elapsed: time.Since(start),
	}
	if firstErr != nil {
		return res, firstErr
	}
	if res.calls == 0 {
		return res, fmt.Errorf("no call finished in %v", d)
	}
	return res, ctx.Err()
}

// heapAlloc returns the bytes of live heap after a full collection. It
// also returns the freed pages to the operating system, so that the
// configuration timed next starts from the same state whatever ran
// before it: the in-memory rows grow their heaps from fresh pages, where
// without it a row that followed one that left a gigabyte of garbage
// mapped (the entries-in-a-slice reference, before the ceiling) grew
// into those pages and ran up to 1.7x faster than in a fresh process.
func heapAlloc() uint64 {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// perEntry divides a growth in bytes by n entries; it returns -1 (shown
// as "-") when nothing was written.
func perEntry(before, after uint64, n int64) float64 {
	if n <= 0 {
		return -1
	}
	return (float64(after) - float64(before)) / float64(n)
}
