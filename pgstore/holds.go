package pgstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walletledger/ledger"
)

// Hold implements [ledger.ReadTx].
func (t *tx) Hold(ctx context.Context, id string) (ledger.HoldRecord, error) {
	if !storable(id) {
		return ledger.HoldRecord{}, t.check(ctx, ledger.ErrNotFound)
	}
	return t.oneHold(ctx, "read hold "+id, t.s.q.hold, encText(id))
}

// HoldByIdempotencyKey implements [ledger.ReadTx].
func (t *tx) HoldByIdempotencyKey(ctx context.Context, authorityID, key string) (ledger.HoldRecord, error) {
	if key == "" || !storable(authorityID) || !storable(key) {
		return ledger.HoldRecord{}, t.check(ctx, ledger.ErrNotFound)
	}
	h, err := t.oneHold(ctx, "read hold idempotency key", t.s.q.holdByKey, encText(authorityID), encText(key))
	if errors.Is(err, ledger.ErrNotFound) {
		t.missedKey()
	}
	return h, err
}

func (t *tx) oneHold(ctx context.Context, op, sql string, args ...any) (ledger.HoldRecord, error) {
	return readOne(ctx, t, op, sql, args, scanHold)
}

// Holds implements [ledger.ReadTx]. It reads in pages (see firstPage),
// each starting after the last ID read; see holdScanSQL for the index
// each shape uses.
func (t *tx) Holds(ctx context.Context, sc ledger.HoldScan) iter.Seq2[ledger.HoldRecord, error] {
	return func(yield func(ledger.HoldRecord, error) bool) {
		var k holdScanKey
		var args []any
		if sc.UserID != "" {
			if !storable(sc.UserID) {
				yieldUnusable(ctx, t, yield)
				return // nothing stored can match
			}
			k |= holdScanUser
			args = append(args, encText(sc.UserID))
		}
		if !sc.AnyCurrency {
			if !storable(sc.Currency) {
				yieldUnusable(ctx, t, yield)
				return
			}
			k |= holdScanCurrency
			args = append(args, encText(sc.Currency))
		}
		if !storable(sc.After) {
			yield(ledger.HoldRecord{}, fmt.Errorf("pgstore: scan holds: bound %q is not valid UTF-8", sc.After))
			return
		}
		fixed, after := len(args), encText(sc.After)
		read := func(limit int, last *ledger.HoldRecord) ([]ledger.HoldRecord, error) {
			if last != nil {
				after = encText(last.ID)
			}
			return t.holdPage(ctx, "scan holds", t.s.q.holdScans[k], append(args[:fixed], after, limit))
		}
		for h, err := range paged(read) {
			if !yield(h, err) || err != nil {
				return
			}
		}
	}
}

// ExpiringHolds implements [ledger.ReadTx]: a range scan of
// holds_expiring, or of holds_expiring_user for a wallet, in pages (see
// firstPage), each starting after the last (Expires, ID) read.
func (t *tx) ExpiringHolds(ctx context.Context, userID, currency string, until time.Time) iter.Seq2[ledger.HoldRecord, error] {
	return func(yield func(ledger.HoldRecord, error) bool) {
		wallet := 0
		var args []any
		if userID != "" {
			if !storable(userID) || !storable(currency) {
				yieldUnusable(ctx, t, yield)
				return
			}
			wallet = 1
			args = append(args, encText(userID), encText(currency))
		}
		bound, ok := untilNanos(until)
		if !ok {
			yieldUnusable(ctx, t, yield) // before any instant stored
			return
		}
		args = append(args, bound)
		fixed := len(args)
		read := func(limit int, last *ledger.HoldRecord) ([]ledger.HoldRecord, error) {
			q := t.s.q.expiring[wallet][0]
			args = args[:fixed]
			if last != nil {
				q = t.s.q.expiring[wallet][1]
				args = append(args, last.Expires.UnixNano(), encText(last.ID))
			}
			return t.holdPage(ctx, "scan expiring holds", q, append(args, limit))
		}
		for h, err := range paged(read) {
			if !yield(h, err) || err != nil {
				return
			}
		}
	}
}

// yieldUnusable yields why t cannot be used, if it cannot, for a scan
// that needs no query: it still honours the context and the
// transaction's state.
func yieldUnusable(ctx context.Context, t *tx, yield func(ledger.HoldRecord, error) bool) {
	if err := t.check(ctx, nil); err != nil {
		yield(ledger.HoldRecord{}, err)
	}
}

// untilNanos returns until in Unix nanoseconds, the form expires is
// stored in: an instant after the last one an int64 holds is clamped to
// it, and ok is false for one before the first, which no stored expiry
// can precede.
func untilNanos(until time.Time) (nanos int64, ok bool) {
	switch {
	case until.Before(unixTime(math.MinInt64)):
		return 0, false
	case until.After(unixTime(math.MaxInt64)):
		return math.MaxInt64, true
	}
	return until.UnixNano(), true
}

func (t *tx) holdPage(ctx context.Context, op, sql string, args []any) ([]ledger.HoldRecord, error) {
	var page []ledger.HoldRecord
	err := t.read(ctx, op, sql, args, func(rows pgx.Rows) error {
		var h ledger.HoldRecord
		if err := scanHold(rows, &h); err != nil {
			return err
		}
		page = append(page, h)
		return nil
	})
	return page, err
}

// scanHold reads a row of holdColumns.
func scanHold(rows pgx.Rows, h *ledger.HoldRecord) error {
	var (
		id, auth, user, currency, amount, reason, state string
		meta, entryID, key                              *string
		createdOn, expires, closedOn                    *int64
	)
	if err := rows.Scan(&id, &auth, &user, &currency, &amount, &reason, &meta, &createdOn, &expires, &state, &closedOn, &entryID, &key); err != nil {
		return err
	}
	var errs []error
	text := func(s string) string {
		d, err := decText(s)
		errs = append(errs, err)
		return d
	}
	opt := func(s *string) string {
		if s == nil {
			return ""
		}
		return text(*s)
	}
	instant := func(n *int64) time.Time {
		if n == nil {
			return time.Time{}
		}
		return unixTime(*n)
	}
	*h = ledger.HoldRecord{
		Hold: ledger.Hold{
			ID:          text(id),
			AuthorityID: text(auth),
			UserID:      text(user),
			Currency:    text(currency),
			Reason:      text(reason),
			CreatedOn:   instant(createdOn),
			Expires:     instant(expires),
			ClosedOn:    instant(closedOn),
			EntryID:     opt(entryID),
		},
		IdempotencyKey: opt(key),
	}
	a, err := decDecimal(amount)
	errs = append(errs, err)
	h.Amount = a
	errs = append(errs, h.State.UnmarshalText([]byte(state)))
	if meta != nil {
		m, err := decMetadata(*meta)
		errs = append(errs, err)
		h.Metadata = m
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hold %q: %w", id, err)
	}
	return nil
}

// optNanos returns the stored form of an instant: Unix nanoseconds, or
// NULL for the zero time.
func optNanos(at time.Time) any {
	if at.IsZero() {
		return nil
	}
	return at.UnixNano()
}

// InsertHold implements [ledger.Tx]. The insert is sent with the next
// read or the commit; a duplicate ID or idempotency key then fails the
// transaction, and Update returns the unique violation. Times are kept to
// the nanosecond; a zero time is stored as NULL and reads back as zero.
func (t *tx) InsertHold(ctx context.Context, h ledger.HoldRecord) error {
	for _, s := range []string{h.ID, h.AuthorityID, h.UserID, h.Currency, h.Reason, h.EntryID, h.IdempotencyKey} {
		if !storable(s) {
			return fmt.Errorf("pgstore: insert hold %q: text %q is not valid UTF-8", h.ID, s)
		}
	}
	state, err := h.State.MarshalText()
	if err != nil {
		return fmt.Errorf("pgstore: insert hold %q: %w", h.ID, err)
	}
	meta, err := encMetadata(h.Metadata)
	if err != nil {
		return fmt.Errorf("pgstore: insert hold %q: %w", h.ID, err)
	}
	return t.buffer(ctx, write{kind: writeInsertHold, id: h.ID, args: []any{
		encText(h.ID), encText(h.AuthorityID), encText(h.UserID), encText(h.Currency),
		encDecimal(h.Amount), encText(h.Reason), meta,
		optNanos(h.CreatedOn), optNanos(h.Expires), string(state), optNanos(h.ClosedOn),
		optText(h.EntryID), optText(h.IdempotencyKey),
	}})
}

// CloseHold implements [ledger.Tx]. The update is sent with the next
// read or the commit; a missing hold then fails the transaction with
// [ledger.ErrNotFound]. The hold leaves the expiry indexes, whose
// predicate is state = 'active'.
func (t *tx) CloseHold(ctx context.Context, id string, c ledger.HoldClose) error {
	if !storable(id) {
		return t.check(ctx, ledger.ErrNotFound)
	}
	if !storable(c.EntryID) {
		return fmt.Errorf("pgstore: close hold %s: entry %q is not valid UTF-8", id, c.EntryID)
	}
	state, err := c.State.MarshalText()
	if err != nil {
		return fmt.Errorf("pgstore: close hold %s: %w", id, err)
	}
	return t.buffer(ctx, write{kind: writeCloseHold, id: id, args: []any{encText(id), string(state), optNanos(c.ClosedOn), optText(c.EntryID)}})
}
