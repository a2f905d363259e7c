package ledger

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/shopspring/decimal"
)

// Hold reserves h.Amount (> 0) of the wallet (h.UserID, h.Currency) and
// returns the active hold. From then on the wallet's Held includes it
// and its Available excludes it: no spend (entry, batch, transfer,
// reversal, another hold) can use the reserved value until the hold is
// captured ([Ledger.Capture]), released ([Ledger.Release]) or expires
// (at h.Expires, if set). A hold writes no entry and leaves Total as it
// is.
//
// It fails with [ErrNotEnoughFunds] if the hold would take the wallet's
// Available below its floor, and with [ErrInvalid] on bad input, an
// Expires not after the ledger clock's reading included. With an
// IdempotencyKey the authority used for a hold before, it places nothing
// and returns that hold as it is now (or fails with
// [ErrIdempotencyConflict] if a field differs). On failure nothing is
// written.
func (l *Ledger) Hold(ctx context.Context, h NewHold) (Hold, error) {
	if err := l.enter(ctx); err != nil {
		return Hold{}, err
	}
	defer l.mu.RUnlock()
	h, err := l.checkNewHold(h)
	if err != nil {
		return Hold{}, err
	}
	r := newRequest(ctx, opHold)
	r.hold = h
	r.bytes = holdBytes(&h)
	return l.commits.runHold(r)
}

// Capture settles hold holdID: it writes one entry of -c.Amount (the
// whole hold when c.Amount is zero) to the hold's wallet, carrying the
// hold's ID as HoldID, its metadata, c.Reason (or the hold's reason)
// and c.Item, and closes the hold as captured with the entry's ID; the
// rest of the hold is released in the same step. It cannot fail for
// funds, the value being reserved, and the wallet's cap does not apply.
//
// Only the authority that placed the hold may capture it
// ([ErrForbidden]); an unknown hold fails with [ErrNotFound], a hold that
// is no longer active (captured, released, or expired: due by the ledger
// clock, recorded or not) with a [*HoldClosedError] matching
// [ErrHoldClosed], and an Amount above the hold's or below zero with
// [ErrInvalid]. On failure nothing is written.
func (l *Ledger) Capture(ctx context.Context, authorityID, holdID string, c Capture) (Entry, error) {
	if err := l.enter(ctx); err != nil {
		return Entry{}, err
	}
	defer l.mu.RUnlock()
	c, err := l.checkCapture(authorityID, holdID, c)
	if err != nil {
		return Entry{}, err
	}
	r := newRequest(ctx, opCapture)
	r.authorityID, r.entryID, r.capture = authorityID, holdID, c
	r.bytes = EntryOverheadBytes + 2*l.cfg.limits.MaxIDBytes + max(len(c.Reason), l.cfg.limits.MaxReasonBytes) +
		maxCurrencyBytes + maxMetadataKeys*(maxMetadataKeyBytes+maxMetadataValueBytes)
	if c.Item != nil {
		r.bytes += len(c.Item.Name) + len(c.Item.Data)
	}
	return l.commits.run(r)
}

// Release closes hold holdID as released and frees what it held. It
// fails as [Ledger.Capture] does: [ErrForbidden], [ErrNotFound],
// [ErrHoldClosed]; on failure nothing is written.
func (l *Ledger) Release(ctx context.Context, authorityID, holdID string) (Hold, error) {
	if err := l.enter(ctx); err != nil {
		return Hold{}, err
	}
	defer l.mu.RUnlock()
	if err := l.checkID("AuthorityID", authorityID); err != nil {
		return Hold{}, err
	}
	if err := l.checkID("HoldID", holdID); err != nil {
		return Hold{}, err
	}
	r := newRequest(ctx, opRelease)
	r.authorityID, r.entryID = authorityID, holdID
	r.bytes = holdRecordBytes(l)
	return l.commits.runHold(r)
}

// runHold submits a request for one hold and returns it, releasing r.
func (c *committer) runHold(r *request) (Hold, error) {
	if err := c.submit(r); err != nil {
		return Hold{}, err
	}
	defer r.release()
	if r.err != nil {
		return Hold{}, r.err
	}
	return r.outHolds[0], nil
}

// checkNewHold validates h and returns the copy the ledger keeps.
func (l *Ledger) checkNewHold(h NewHold) (NewHold, error) {
	if err := l.checkID("AuthorityID", h.AuthorityID); err != nil {
		return h, err
	}
	if err := l.checkID("UserID", h.UserID); err != nil {
		return h, err
	}
	if err := checkCurrency("Currency", h.Currency); err != nil {
		return h, err
	}
	amount, err := l.checkAmount("Amount", h.Amount)
	if err != nil {
		return h, err
	}
	if amount.Sign() <= 0 {
		return h, invalid("Amount", "%s: a hold reserves a positive amount", brief(amount))
	}
	h.Amount = amount
	if err := checkText("Reason", h.Reason, l.cfg.limits.MaxReasonBytes); err != nil {
		return h, err
	}
	if h.IdempotencyKey != "" {
		if err := l.checkID("IdempotencyKey", h.IdempotencyKey); err != nil {
			return h, err
		}
	}
	if h.Metadata, err = checkMetadata(h.Metadata); err != nil {
		return h, err
	}
	if !h.Expires.IsZero() {
		if h.Expires.Before(minTime) {
			return h, invalid("Expires", "%s is before 1970, the first instant the ledger records", h.Expires.Format(time.RFC3339Nano))
		}
		if h.Expires.After(maxTime) {
			return h, invalid("Expires", "%s is past %s, the last instant the ledger records: a hold that never expires has the zero Expires",
				h.Expires.Format(time.RFC3339Nano), maxTime.UTC().Format(time.RFC3339Nano))
		}
		// Whether it is after now is for the commit to say, after the
		// idempotency key: a retry of an expired hold returns it.
		h.Expires = stamp(h.Expires)
	}
	return h, nil
}

// checkCapture validates a capture and returns the copy the ledger
// keeps.
func (l *Ledger) checkCapture(authorityID, holdID string, c Capture) (Capture, error) {
	if err := l.checkID("AuthorityID", authorityID); err != nil {
		return c, err
	}
	if err := l.checkID("HoldID", holdID); err != nil {
		return c, err
	}
	amount, err := l.checkAmount("Amount", c.Amount)
	if err != nil {
		return c, err
	}
	if amount.Sign() < 0 {
		return c, invalid("Amount", "%s is negative: a capture takes 0 (the whole hold) or a positive amount", brief(amount))
	}
	c.Amount = amount
	if c.Reason != "" {
		if err := checkText("Reason", c.Reason, l.cfg.limits.MaxReasonBytes); err != nil {
			return c, err
		}
	}
	if c.Item, err = l.checkItem(c.Item); err != nil {
		return c, err
	}
	return c, nil
}

// holdBytes is what h counts towards Limits.MaxBatchBytes: as an entry
// with the same fields.
func holdBytes(h *NewHold) int {
	return entryBytes(&NewEntry{
		AuthorityID: h.AuthorityID, UserID: h.UserID, Reason: h.Reason, IdempotencyKey: h.IdempotencyKey,
		Currency: h.Currency, Metadata: h.Metadata,
	})
}

// holdRecordBytes bounds what closing a stored hold writes.
func holdRecordBytes(l *Ledger) int {
	return EntryOverheadBytes + 3*l.cfg.limits.MaxIDBytes + l.cfg.limits.MaxReasonBytes +
		maxCurrencyBytes + maxMetadataKeys*(maxMetadataKeyBytes+maxMetadataValueBytes)
}

// Holds returns the holds matching q in ascending ID order, each as it
// stands at the ledger clock's reading: a hold whose Expires has come is
// expired, with ClosedOn = Expires, whether or not the sweep (see
// [WithHoldSweep]) has recorded it yet. A negative Limit fails with
// [ErrInvalid], as does a state that is not one of the four.
func (l *Ledger) Holds(ctx context.Context, q HoldQuery) ([]Hold, error) {
	if err := l.enter(ctx); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	ids, err := l.checkIDs("HoldIDs", q.HoldIDs)
	if err != nil {
		return nil, err
	}
	users, err := l.checkIDs("UserIDs", q.UserIDs)
	if err != nil {
		return nil, err
	}
	auths, err := l.checkIDs("AuthorityIDs", q.AuthorityIDs)
	if err != nil {
		return nil, err
	}
	if err := checkCurrency("Currency", q.Currency); err != nil {
		return nil, err
	}
	for _, s := range q.States {
		if s > HoldExpired {
			return nil, invalid("States", "%d is not a hold state", s)
		}
	}
	if err := l.checkPage(q.After, q.Limit); err != nil {
		return nil, err
	}
	now := l.cfg.clock()
	out := []Hold{}
	match := func(r HoldRecord) bool {
		h := r.Hold.at(now)
		return r.Currency == q.Currency && r.ID > q.After &&
			(len(users) == 0 || contains(users, r.UserID)) &&
			(len(auths) == 0 || contains(auths, r.AuthorityID)) &&
			(len(q.States) == 0 || slices.Contains(q.States, h.State))
	}
	err = l.storeView(ctx, "holds", func(tx ReadTx) error {
		var seq iter.Seq2[HoldRecord, error]
		switch {
		case len(ids) > 0:
			seq = holdsByID(ctx, tx, ids, q.After)
		case len(users) > 0:
			seqs := make([]iter.Seq2[HoldRecord, error], len(users))
			for i, u := range users {
				seqs[i] = tx.Holds(ctx, HoldScan{UserID: u, Currency: q.Currency, After: q.After})
			}
			seq = merge(seqs, func(r HoldRecord) string { return r.ID }, false)
		default:
			seq = tx.Holds(ctx, HoldScan{Currency: q.Currency, After: q.After})
		}
		for r, err := range seq {
			if err != nil {
				return err
			}
			if !match(r) {
				continue
			}
			out = append(out, holdOut(r, now))
			if q.Limit > 0 && len(out) == q.Limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// holdsByID yields the holds among ids (sorted) that exist, past after.
func holdsByID(ctx context.Context, tx ReadTx, ids []string, after string) iter.Seq2[HoldRecord, error] {
	return func(yield func(HoldRecord, error) bool) {
		for _, id := range ids {
			if id <= after {
				continue
			}
			r, err := tx.Hold(ctx, id)
			if isNotFound(err) {
				continue
			}
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// HoldsSeq yields the holds [Ledger.Holds] returns for q, fetching them
// a page at a time (see [WithPageSize]): each page is a consistent
// snapshot, the whole sequence is not. q.Limit, when set, caps the holds
// yielded. It stops after the first error.
func (l *Ledger) HoldsSeq(ctx context.Context, q HoldQuery) iter.Seq2[Hold, error] {
	return pages(l.cfg.pageSize, q.After, q.Limit, func(after string, limit int) ([]Hold, error) {
		q.After, q.Limit = after, limit
		return l.Holds(ctx, q)
	}, func(h Hold) string { return h.ID })
}

// heldNow returns what the wallet's holds hold at now, for a reader:
// t.Held less the due holds it still counts.
func heldNow(ctx context.Context, tx ReadTx, userID, currency string, t Total, now time.Time) (decimal.Decimal, error) {
	if t.Held.Sign() == 0 {
		return t.Held, nil
	}
	return heldLess(ctx, tx, userID, currency, t.Held, now)
}

// heldLess is held less the wallet's holds that have expired by now:
// apart from heldNow, since a range over a func allocates its state
// when the function starts, and most wallets hold nothing.
func heldLess(ctx context.Context, tx ReadTx, userID, currency string, held decimal.Decimal, now time.Time) (decimal.Decimal, error) {
	for r, err := range tx.ExpiringHolds(ctx, userID, currency, now) {
		if err != nil {
			return decimal.Decimal{}, err
		}
		held = held.Sub(r.Amount)
	}
	return held, nil
}

// sweeper records holds' expiries in the background (see
// [WithHoldSweep]).
type sweeper struct {
	stop chan struct{}
	once sync.Once // closes stop
	done chan struct{}
}

// startSweep starts the sweep, if the ledger's configuration has one.
func (l *Ledger) startSweep() {
	d := l.cfg.holdSweep
	if d <= 0 {
		return
	}
	l.sweep = &sweeper{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.sweep.done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-l.sweep.stop:
				return
			case <-t.C:
			}
			if _, err := l.expireHolds(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
				l.cfg.logger.Warn("ledger: recording hold expiries failed; the next sweep tries again", slog.Any("err", err))
			}
		}
	}()
}

// stopSweep stops the sweep and waits for it. The caller must not hold
// l.mu: a sweep in progress holds it for reading.
func (l *Ledger) stopSweep() {
	if l.sweep == nil {
		return
	}
	l.sweep.once.Do(func() { close(l.sweep.stop) })
	<-l.sweep.done
}

// expireHolds records the expiry of every hold that is due at the ledger
// clock's reading, a batch per commit, and returns how many it recorded.
func (l *Ledger) expireHolds(ctx context.Context) (int, error) {
	n := 0
	for {
		if err := l.enter(ctx); err != nil {
			return n, err
		}
		// A read first: most sweeps find nothing due, and need not
		// queue a write behind the callers' writes.
		due := false
		now := l.cfg.clock()
		err := l.storeView(ctx, "find due holds", func(tx ReadTx) error {
			for _, err := range tx.ExpiringHolds(ctx, "", "", now) {
				if err != nil {
					return err
				}
				due = true
				break
			}
			return nil
		})
		if err != nil || !due {
			l.mu.RUnlock()
			return n, err
		}
		r := newRequest(ctx, opSweep)
		r.bytes = l.cfg.limits.MaxBatchBytes // commits alone
		err = l.commits.submit(r)
		l.mu.RUnlock()
		if err != nil {
			return n, err
		}
		got, err := len(r.outHolds), r.err
		r.release()
		n += got
		if err != nil || got == 0 {
			return n, err
		}
		select {
		case <-l.sweep.stop:
			return n, nil
		default:
		}
	}
}
