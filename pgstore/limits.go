package pgstore

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/jackc/pgx/v5"

	"github.com/walletledger/ledger"
)

// Limits implements [ledger.ReadTx].
func (t *tx) Limits(ctx context.Context, userID, currency string) (ledger.StoredLimits, bool, error) {
	if !storable(userID) || !storable(currency) {
		return ledger.StoredLimits{}, false, t.check(ctx, nil)
	}
	t.mu.Lock()
	c, cached := t.limits[[2]string{userID, currency}]
	t.mu.Unlock()
	if cached {
		return c.l, c.found, t.check(ctx, nil)
	}
	var l ledger.StoredLimits
	found := false
	// In an update, the wallet's total over all authorities is locked
	// first: it guards the wallet's limits as it does its totals (see
	// the package documentation).
	eu, ec := encText(userID), encText(currency)
	err := t.readLocking(ctx, "read limits", []storedKey{{"", ec, eu}}, t.s.q.limits, []any{eu, ec}, func(rows pgx.Rows) error {
		found = true
		return scanLimits(rows, &l)
	})
	if err != nil {
		return ledger.StoredLimits{}, false, fmt.Errorf("pgstore: read limits of user %q in currency %q: %w", userID, currency, err)
	}
	return l, found, nil
}

// UserLimits implements [ledger.ReadTx]. It reads in pages (see
// firstPage), through the primary key of limits.
func (t *tx) UserLimits(ctx context.Context, userID string) iter.Seq2[ledger.StoredLimits, error] {
	return func(yield func(ledger.StoredLimits, error) bool) {
		if !storable(userID) {
			if err := t.check(ctx, nil); err != nil {
				yield(ledger.StoredLimits{}, err)
			}
			return
		}
		u, q, after := encText(userID), t.s.q.userLimits[0], "" // every currency, "" included
		t.pagedLimits(ctx, "read user limits", yield, func(last *ledger.StoredLimits) (string, []any) {
			if last != nil {
				q, after = t.s.q.userLimits[1], encText(last.Currency)
			}
			return q, []any{u, after}
		})
	}
}

// AllLimits implements [ledger.ReadTx]. It reads in pages (see
// firstPage), through the primary key of limits.
func (t *tx) AllLimits(ctx context.Context) iter.Seq2[ledger.StoredLimits, error] {
	return func(yield func(ledger.StoredLimits, error) bool) {
		q, user, cur := t.s.q.allLimits[0], "", "" // from ("", ""), the least key
		t.pagedLimits(ctx, "read limits", yield, func(last *ledger.StoredLimits) (string, []any) {
			if last != nil {
				q, user, cur = t.s.q.allLimits[1], encText(last.UserID), encText(last.Currency)
			}
			return q, []any{user, cur}
		})
	}
}

// pagedLimits yields the rows of a paged read of limits: next returns
// the query and its arguments, but for the page size, of the page after
// last.
func (t *tx) pagedLimits(ctx context.Context, op string, yield func(ledger.StoredLimits, error) bool, next func(last *ledger.StoredLimits) (string, []any)) {
	read := func(limit int, last *ledger.StoredLimits) ([]ledger.StoredLimits, error) {
		q, args := next(last)
		var page []ledger.StoredLimits
		err := t.read(ctx, op, q, append(args, limit), func(rows pgx.Rows) error {
			var l ledger.StoredLimits
			if err := scanLimits(rows, &l); err != nil {
				return err
			}
			page = append(page, l)
			return nil
		})
		return page, err
	}
	for l, err := range paged(read) {
		if !yield(l, err) || err != nil {
			return
		}
	}
}

// scanLimits reads a row of limitsColumns.
func scanLimits(rows pgx.Rows, l *ledger.StoredLimits) error {
	var (
		user, cur, floor, by string
		capV                 *string
		on                   *int64
	)
	if err := rows.Scan(&user, &cur, &floor, &capV, &by, &on); err != nil {
		return err
	}
	d, err := decLimits(user, cur, floor, capV, &by, on)
	if err != nil {
		return err
	}
	*l = d
	return nil
}

// SetLimits implements [ledger.Tx]. The write is sent with the next read
// or the commit. SetOn is kept to the nanosecond; the zero time is
// stored as NULL and reads back as the zero time.
func (t *tx) SetLimits(ctx context.Context, l ledger.StoredLimits) error {
	if !storable(l.UserID) || !storable(l.Currency) || !storable(l.SetBy) {
		return fmt.Errorf("pgstore: write limits of user %q in currency %q: not valid UTF-8", l.UserID, l.Currency)
	}
	u, c := encText(l.UserID), encText(l.Currency)
	var capV, on any // NULL: no cap, no time
	if l.Cap != nil {
		capV = encDecimal(*l.Cap)
	}
	if !l.SetOn.IsZero() {
		on = l.SetOn.UnixNano()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(ctx); err != nil {
		return err
	}
	if t.limitW == nil {
		t.limitW = map[limitsKey][]any{}
	}
	t.limitW[limitsKey{c, u}] = []any{u, c, encDecimal(l.Floor), capV, encText(l.SetBy), on} // a later write replaces this one
	if t.limits == nil {
		t.limits = map[[2]string]cachedLimits{}
	}
	t.limits[[2]string{l.UserID, l.Currency}] = cachedLimits{l: cloneLimits(l), found: true}
	return nil
}

func cloneLimits(l ledger.StoredLimits) ledger.StoredLimits {
	if l.Cap != nil {
		c := *l.Cap
		l.Cap = &c
	}
	return l
}

// decLimits decodes a limits row's columns (text still encoded).
func decLimits(user, cur, floor string, capV, by *string, on *int64) (ledger.StoredLimits, error) {
	var errs []error
	text := func(s string) string {
		d, err := decText(s)
		errs = append(errs, err)
		return d
	}
	l := ledger.StoredLimits{WalletLimits: ledger.WalletLimits{UserID: text(user), Currency: text(cur)}}
	if by != nil {
		l.SetBy = text(*by)
	}
	f, err := decDecimal(floor)
	errs = append(errs, err)
	l.Floor = f
	if capV != nil {
		c, err := decDecimal(*capV)
		errs = append(errs, err)
		l.Cap = &c
	}
	if on != nil {
		l.SetOn = unixTime(*on)
	}
	if err := errors.Join(errs...); err != nil {
		return ledger.StoredLimits{}, fmt.Errorf("limits of user %q in currency %q: %w", user, cur, err)
	}
	return l, nil
}
