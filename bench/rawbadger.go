package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// Raw Badger: the workload's reads and writes with no ledger around
// them, the ceiling for badgerstore. Each entry reads the user's balance,
// checks it, and writes the new balance and the entry: a 24-byte ID key
// (16 hex digits of nanoseconds and 8 of a sequence number, like the
// ledger's) and a value of about 100 bytes. There are no indexes, no
// per-authority totals and no idempotency keys: that is the work the
// ledger does on top.

// rawBadger is a Badger database used directly.
type rawBadger struct {
	db  *badger.DB
	seq atomic.Uint64
}

// apply writes ne in txn unless it is a spend the user cannot afford,
// and reports whether it did.
func (rb *rawBadger) apply(txn *badger.Txn, ne ledger.NewEntry) (bool, error) {
	bk := append([]byte("b/"), ne.UserID...)
	var bal decimal.Decimal
	item, err := txn.Get(bk)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return false, err
	default:
		err := item.Value(func(v []byte) error {
			var err error
			bal, err = decimal.NewFromString(string(v))
			return err
		})
		if err != nil {
			return false, err
		}
	}
	nb := bal.Add(ne.Amount)
	if ne.Amount.Sign() < 0 && nb.Sign() < 0 {
		return false, nil
	}
	now := time.Now().UnixNano()
	id := appendHex(appendHex(make([]byte, 0, 24), uint64(now), 16), rb.seq.Add(1), 8)
	if err := txn.Set(bk, []byte(nb.String())); err != nil {
		return false, err
	}
	if err := txn.Set(id, appendEntryValue(make([]byte, 0, 128), ne, nb, now)); err != nil {
		return false, err
	}
	return true, nil
}

// appendEntryValue appends an entry's value, about 100 bytes of JSON.
func appendEntryValue(dst []byte, ne ledger.NewEntry, balance decimal.Decimal, nanos int64) []byte {
	dst = append(dst, `{"a":"`...)
	dst = append(dst, ne.AuthorityID...)
	dst = append(dst, `","u":"`...)
	dst = append(dst, ne.UserID...)
	dst = append(dst, `","amt":"`...)
	dst = append(dst, ne.Amount.String()...)
	dst = append(dst, `","bal":"`...)
	dst = append(dst, balance.String()...)
	dst = append(dst, `","r":"`...)
	dst = append(dst, ne.Reason...)
	dst = append(dst, `","t":`...)
	dst = strconv.AppendInt(dst, nanos, 10)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendHex appends the low digits hex digits of v.
func appendHex(dst []byte, v uint64, digits int) []byte {
	for i := digits - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(v>>(4*i))&0xf])
	}
	return dst
}

// entryOp makes ops that write one workload entry in one transaction,
// retrying it when it conflicts with another writer's.
func (rb *rawBadger) entryOp() op {
	return func(_ context.Context, r *rand.Rand) (int, error) {
		ne := workload(r)
		for {
			var ok bool
			err := rb.db.Update(func(txn *badger.Txn) error {
				var err error
				ok, err = rb.apply(txn, ne)
				return err
			})
			switch {
			case errors.Is(err, badger.ErrConflict):
				continue
			case err != nil:
				return 0, err
			case ok:
				return 1, nil
			}
			return 0, nil
		}
	}
}

// batchOp makes ops that write size credits in one transaction.
func (rb *rawBadger) batchOp(size int) op {
	batch := make([]ledger.NewEntry, size)
	return func(_ context.Context, r *rand.Rand) (int, error) {
		for i := range batch {
			batch[i] = credit(r)
		}
		for {
			err := rb.db.Update(func(txn *badger.Txn) error {
				for _, ne := range batch {
					if _, err := rb.apply(txn, ne); err != nil {
						return err
					}
				}
				return nil
			})
			switch {
			case errors.Is(err, badger.ErrConflict):
				continue
			case err != nil:
				return 0, err
			}
			return size, nil
		}
	}
}

// rawBadgerWrites times raw Badger in a fresh directory, with sync
// writes on or off: one transaction per entry from workers goroutines,
// or, with batch > 0, batch credits per transaction from one goroutine.
func (b *bench) rawBadgerWrites(ctx context.Context, sync bool, workers, batch int) (row, error) {
	dir, cleanup, err := b.tempDir("badger")
	if err != nil {
		return row{}, err
	}
	defer cleanup()
	db, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(sync).WithLogger(nil))
	if err != nil {
		return row{}, err
	}
	rb := &rawBadger{db: db}
	var res result
	if batch > 0 {
		res, err = runFor(ctx, b.duration, 1, batch, func() op { return rb.batchOp(batch) })
	} else {
		res, err = runFor(ctx, b.duration, workers, 1, rb.entryOp)
	}
	return b.diskRow(kindBadger, dir, res, err, db.Close())
}
