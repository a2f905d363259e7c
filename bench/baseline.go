package main

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// The in-memory ceiling: the least a program can do to keep wallets
// that never go negative.

// mapWallets is a map of totals behind a mutex. It checks and applies
// each amount and keeps no entries.
type mapWallets struct {
	mu     sync.Mutex
	totals map[string]decimal.Decimal
}

// apply adds amount to user's total unless that takes a spend below
// zero, and reports whether it did.
func (w *mapWallets) apply(user string, amount decimal.Decimal) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.totals[user].Add(amount)
	if amount.Sign() < 0 && t.Sign() < 0 {
		return false
	}
	w.totals[user] = t
	return true
}

// bareMap times the workload on a mapWallets.
func (b *bench) bareMap(ctx context.Context, workers int) (row, error) {
	w := &mapWallets{totals: make(map[string]decimal.Decimal, numUsers)}
	res, err := runFor(ctx, b.duration, workers, 1, func() op {
		return func(_ context.Context, r *rand.Rand) (int, error) {
			ne := workload(r)
			if w.apply(ne.UserID, ne.Amount) {
				return 1, nil
			}
			return 0, nil
		}
	})
	if err != nil {
		return row{}, err
	}
	return row{rate: res.rate(), unit: "entries/s", entries: res.written, mem: -1, disk: -1}, nil
}

// mapLedger is mapWallets that also keeps each entry it applies, with an
// ID and a time, in a slice: the least an in-memory ledger must do. It is
// for reference, to split the ledger's distance from the bare map into
// keeping entries and everything else; no target uses it.
type mapLedger struct {
	mu      sync.Mutex
	totals  map[string]decimal.Decimal
	entries []ledger.Entry
	seq     uint64
}

func (w *mapLedger) apply(ne ledger.NewEntry) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.totals[ne.UserID].Add(ne.Amount)
	if ne.Amount.Sign() < 0 && t.Sign() < 0 {
		return false
	}
	w.totals[ne.UserID] = t
	now := time.Now()
	w.seq++
	id := appendHex(appendHex(make([]byte, 0, 24), uint64(now.UnixNano()), 16), w.seq, 8)
	w.entries = append(w.entries, ledger.Entry{
		ID: string(id), AuthorityID: ne.AuthorityID, UserID: ne.UserID, CreatedOn: now,
		Amount: ne.Amount, Reason: ne.Reason, Balance: t,
	})
	return true
}

// mapWithEntries times the workload on a mapLedger and measures the heap
// its entries hold.
func (b *bench) mapWithEntries(ctx context.Context, workers int) (row, error) {
	w := &mapLedger{totals: make(map[string]decimal.Decimal, numUsers)}
	return b.timeKeeping(ctx, workers, w.apply, w)
}

// timeKeeping times the workload on apply, which keeps what it applies
// in keeper, and measures the heap keeper holds.
func (b *bench) timeKeeping(ctx context.Context, workers int, apply func(ledger.NewEntry) bool, keeper any) (row, error) {
	before := heapAlloc()
	res, err := runFor(ctx, b.duration, workers, 1, func() op {
		return func(_ context.Context, r *rand.Rand) (int, error) {
			if apply(workload(r)) {
				return 1, nil
			}
			return 0, nil
		}
	})
	if err != nil {
		return row{}, err
	}
	after := heapAlloc()
	runtime.KeepAlive(keeper)
	return row{rate: res.rate(), unit: "entries/s", entries: res.written, mem: perEntry(before, after, res.written), disk: -1}, nil
}

// mapCeiling is issue 14's in-memory ceiling: mapWallets with the funds
// check, and an append per applied entry to a slice of plain structs
// (no validation, no ID formatting, no time.Time).
type mapCeiling struct {
	mu      sync.Mutex
	totals  map[string]decimal.Decimal
	entries []ceilingEntry
	seq     uint64
}

type ceilingEntry struct {
	id                      uint64
	user, authority, reason string
	amount                  decimal.Decimal
	at                      int64
}

func (w *mapCeiling) apply(ne ledger.NewEntry) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.totals[ne.UserID].Add(ne.Amount)
	if ne.Amount.Sign() < 0 && t.Sign() < 0 {
		return false
	}
	w.totals[ne.UserID] = t
	w.seq++
	w.entries = append(w.entries, ceilingEntry{id: w.seq, user: ne.UserID, authority: ne.AuthorityID, reason: ne.Reason,
		amount: ne.Amount, at: time.Now().UnixNano()})
	return true
}

// mapCeilingWrites times the workload on a mapCeiling.
func (b *bench) mapCeilingWrites(ctx context.Context, workers int) (row, error) {
	w := &mapCeiling{totals: make(map[string]decimal.Decimal, numUsers)}
	return b.timeKeeping(ctx, workers, w.apply, w)
}
