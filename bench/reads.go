package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
	"github.com/walletledger/ledger/memstore"
)

// Reads: does reading one wallet slow down as the history grows? A read
// configuration fills one fresh ledger per size with credits, then times
// Wallets for one user on each, from one goroutine. The sizes take turns
// in readRounds short slices of the duration, so that a change in the
// machine's load (it is shared) falls on every size alike and the ratio
// between sizes stays fair.

// fillBatch is the size of the CreateEntries calls that fill a ledger.
const fillBatch = 1000

// readRounds is how many turns each size gets.
const readRounds = 10

// fill writes n workload credits to l in batches of fillBatch.
func fill(ctx context.Context, l *ledger.Ledger, n int) error {
	r := rand.New(rand.NewPCG(3, 4))
	batch := make([]ledger.NewEntry, 0, fillBatch)
	for i := range n {
		batch = append(batch, credit(r))
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := l.CreateEntries(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// walletOp makes ops that read one user's total, the users in turn.
func walletOp(l *ledger.Ledger) func() op {
	return func() op {
		i := 0
		q := ledger.WalletQuery{UserIDs: make([]string, 1)}
		return func(ctx context.Context, _ *rand.Rand) (int, error) {
			i++
			u := userIDs[(i*7)%numUsers]
			q.UserIDs[0] = u
			ws, err := l.Wallets(ctx, q)
			if err != nil {
				return 0, err
			}
			if len(ws) != 1 || ws[0].UserID != u {
				return 0, fmt.Errorf("wallets for %s returned %v", u, ws)
			}
			return 0, nil
		}
	}
}

// readLedger is one filled ledger of a read configuration.
type readLedger struct {
	l       *ledger.Ledger
	dir     string // badgerstore's directory; "" for memstore
	cleanup func() // removes dir
	n       int
	out     row
}

// walletReads fills a ledger per size over memstore or, when disk is
// set, over badgerstore with sync writes off, and times single-wallet
// reads on each. For memstore it measures the heap the entries hold; for
// badgerstore, the bytes on disk after Close.
func (b *bench) walletReads(ctx context.Context, disk bool, sizes []int) (rows []row, err error) {
	var rls []*readLedger
	defer func() {
		for _, rl := range rls {
			if cerr := rl.l.Close(); err == nil && cerr != nil && !errors.Is(cerr, ledger.ErrClosed) {
				err = cerr
			}
			rl.cleanup()
		}
	}()
	for _, n := range sizes {
		rl := &readLedger{n: n, cleanup: func() {}}
		rl.out = row{
			key: readKey(disk, n), name: readName(disk, n), writers: 1,
			unit: "reads/s", entries: int64(n), mem: -1, disk: -1,
		}
		var store ledger.Store = memstore.New()
		if disk {
			dir, cleanup, err := b.tempDir("badgerstore")
			if err != nil {
				return nil, err
			}
			s, err := badgerstore.Open(dir, badgerstore.WithSyncWrites(false))
			if err != nil {
				cleanup()
				return nil, err
			}
			store, rl.dir, rl.cleanup = s, dir, cleanup
		}
		if rl.l, err = ledger.New(store); err != nil {
			store.Close()
			rl.cleanup()
			return nil, err
		}
		rls = append(rls, rl)
		if err := b.fillLedger(ctx, rl); err != nil {
			return nil, err
		}
	}

	elapsed := make([]time.Duration, len(rls))
	reads := make([]int64, len(rls))
	slice := max(b.duration/readRounds, time.Millisecond)
	for range readRounds {
		for i, rl := range rls {
			res, err := runFor(ctx, slice, 1, 1, walletOp(rl.l))
			if err != nil {
				return nil, err
			}
			elapsed[i] += res.elapsed
			reads[i] += res.ops
		}
	}

	for i, rl := range rls {
		rl.out.rate = float64(reads[i]) / elapsed[i].Seconds()
		if disk {
			if err := rl.l.Close(); err != nil {
				return nil, err
			}
			if rl.out.disk, err = b.diskPerEntry(kindBadgerstore, rl.dir, int64(rl.n)); err != nil {
				return nil, err
			}
		}
		rows = append(rows, rl.out)
	}
	return rows, nil
}

// readKey and readName name the read row of a ledger of n entries.
func readKey(disk bool, n int) string {
	if disk {
		return keyReadsBadPrefix + sizeLabel(n)
	}
	return keyReadsMemPrefix + sizeLabel(n)
}

func readName(disk bool, n int) string {
	store := "memstore"
	if disk {
		store = "badgerstore relaxed"
	}
	return fmt.Sprintf("read one wallet, ledger, %s, %s entries", store, commas(float64(n)))
}

// fillLedger fills rl's ledger, measuring the heap it grows by when it is
// in memory.
func (b *bench) fillLedger(ctx context.Context, rl *readLedger) error {
	var before uint64
	if rl.dir == "" {
		before = heapAlloc()
	}
	start := time.Now()
	if err := fill(ctx, rl.l, rl.n); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	b.progressf("filled %s in %.1fs; ", commas(float64(rl.n)), time.Since(start).Seconds())
	if rl.dir == "" {
		rl.out.mem = perEntry(before, heapAlloc(), int64(rl.n))
		own, err := ownFieldBytes(ctx, rl.l)
		if err != nil {
			return err
		}
		rl.out.own = own
	}
	return nil
}
