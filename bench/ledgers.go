package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
	"github.com/walletledger/ledger/memstore"
)

// The ledger itself, over memstore and over badgerstore.

// createEntryOp makes ops that write one workload entry with
// CreateEntry. A spend the user cannot afford is refused by the ledger
// and counts as an operation that wrote nothing.
func createEntryOp(l *ledger.Ledger) func() op {
	return func() op {
		return func(ctx context.Context, r *rand.Rand) (int, error) {
			_, err := l.CreateEntry(ctx, workload(r))
			switch {
			case errors.Is(err, ledger.ErrNotEnoughFunds):
				return 0, nil
			case err != nil:
				return 0, err
			}
			return 1, nil
		}
	}
}

// createEntriesOp makes ops that write size credits with one
// CreateEntries call, each goroutine reusing its own batch.
func createEntriesOp(l *ledger.Ledger, size int) func() op {
	return func() op {
		batch := make([]ledger.NewEntry, size)
		return func(ctx context.Context, r *rand.Rand) (int, error) {
			for i := range batch {
				batch[i] = credit(r)
			}
			es, err := l.CreateEntries(ctx, batch)
			return len(es), err
		}
	}
}

// memstoreWrites times CreateEntry on a ledger over memstore and
// measures the heap the written entries hold.
func (b *bench) memstoreWrites(ctx context.Context, workers int) (row, error) {
	l, err := ledger.New(memstore.New())
	if err != nil {
		return row{}, err
	}
	defer l.Close()
	before := heapAlloc()
	res, err := runFor(ctx, b.duration, workers, 1, createEntryOp(l))
	if err != nil {
		return row{}, err
	}
	after := heapAlloc()
	own, err := ownFieldBytes(ctx, l)
	if err != nil {
		return row{}, err
	}
	return row{
		rate: res.rate(), unit: "entries/s", entries: res.written,
		mem: perEntry(before, after, res.written), disk: -1, own: own,
	}, nil
}

// badgerstoreWrites times a ledger over badgerstore in a fresh
// directory: CreateEntry from workers goroutines, or, with batch > 0,
// CreateEntries of batch credits from one goroutine.
func (b *bench) badgerstoreWrites(ctx context.Context, durable bool, workers, batch int) (row, error) {
	dir, cleanup, err := b.tempDir("badgerstore")
	if err != nil {
		return row{}, err
	}
	defer cleanup()
	s, err := badgerstore.Open(dir, badgerstore.WithSyncWrites(durable))
	if err != nil {
		return row{}, err
	}
	l, err := ledger.New(s)
	if err != nil {
		s.Close()
		return row{}, err
	}
	var res result
	if batch > 0 {
		res, err = runFor(ctx, b.duration, 1, batch, createEntriesOp(l, batch))
	} else {
		res, err = runFor(ctx, b.duration, workers, 1, createEntryOp(l))
	}
	return b.diskRow(kindBadgerstore, dir, res, err, l.Close())
}

// ownFieldBytes returns the average size of the first entries' own
// fields: the bytes of the ID, authority, user and reason strings, 8 for
// CreatedOn and the bytes of the amount's coefficient. It is the floor
// that memory per entry is compared with.
func ownFieldBytes(ctx context.Context, l *ledger.Ledger) (float64, error) {
	es, err := l.Entries(ctx, ledger.EntryQuery{Limit: 1000})
	if err != nil {
		return 0, err
	}
	if len(es) == 0 {
		return 0, fmt.Errorf("no entries to measure")
	}
	total := 0
	for _, e := range es {
		total += len(e.ID) + len(e.AuthorityID) + len(e.UserID) + len(e.Reason) + 8 +
			len(e.Amount.Coefficient().Bytes())
	}
	return float64(total) / float64(len(es)), nil
}
