package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// benchHolds measures a hold's life: placed and then captured (or
// released, every other one), each a commit. It reports holds/s, a hold
// being two writes.
func benchHolds(b *testing.B, newStore NewBenchStore) {
	l := benchLedger(b, newStore, ledger.WithHoldSweep(0))
	ctx := context.Background()
	for _, u := range benchUserIDs[:100] {
		if _, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: u, Amount: decimal.NewFromInt(1e9), Reason: "funds"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h, err := l.Hold(ctx, ledger.NewHold{AuthorityID: "shop", UserID: benchUserIDs[i%100], Amount: decimal.NewFromInt(3), Reason: "order"})
		if err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			_, err = l.Capture(ctx, "shop", h.ID, ledger.Capture{})
		} else {
			_, err = l.Release(ctx, "shop", h.ID)
		}
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportRate(b, b.N, "holds/s")
}

// benchChangesRead reads a feed of 10,000 changes from the start, a
// page at a time: changes/s.
func benchChangesRead(b *testing.B, newStore NewBenchStore) {
	l := benchLedger(b, newStore)
	ctx := context.Background()
	batch := make([]ledger.NewEntry, 1000)
	for k := range 10 {
		for i := range batch {
			batch[i] = ledger.NewEntry{AuthorityID: "bank", UserID: benchUserIDs[(k*1000+i)%BenchUsers], Amount: decimal.NewFromInt(1), Reason: "r"}
		}
		if _, err := l.CreateEntries(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for _, err := range l.Changes(ctx, ledger.ChangeQuery{}) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	reportRate(b, n, "changes/s")
}

// benchChangesFollow measures how soon a follower in the same process
// gets a change after the write that made it returns: the wake-up, not a
// poll. It reports the mean delay in ns per change.
func benchChangesFollow(b *testing.B, newStore NewBenchStore) {
	l := benchLedger(b, newStore)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan time.Time, 1)
	go func() {
		for _, err := range l.Changes(ctx, ledger.ChangeQuery{Follow: true}) {
			if err != nil {
				return
			}
			got <- time.Now()
		}
	}()
	b.ReportAllocs()
	var delay time.Duration
	i := 0
	for b.Loop() {
		if _, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: benchUserIDs[i%BenchUsers], Amount: decimal.NewFromInt(1), Reason: fmt.Sprint(i)}); err != nil {
			b.Fatal(err)
		}
		written := time.Now()
		delay += (<-got).Sub(written)
		i++
	}
	if i > 0 {
		b.ReportMetric(float64(delay.Nanoseconds())/float64(i), "delay-ns/change")
	}
}
