package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"math"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/walletledger/ledger"
)

// cursorDigits is the length of a cursor: a change's number in
// lowercase hex, zero-padded, so that cursors sort bytewise as the
// numbers do.
const cursorDigits = 16

// formatCursor returns the cursor of change number n (n >= 1).
func formatCursor(n int64) string {
	s := strconv.FormatInt(n, 16)
	return "0000000000000000"[len(s):] + s
}

// firstAfter returns the least change number whose cursor sorts bytewise
// after after: for a cursor this package made, its number plus one; for
// any other string, where it falls among the cursors. ok is false when
// no cursor sorts after it.
func firstAfter(after string) (n int64, ok bool) {
	const digits = "0123456789abcdef"
	var prefix uint64 // after[:i] read as hex
	for i := 0; i < cursorDigits; i++ {
		if i == len(after) {
			// after is a proper prefix of the cursors that start with it,
			// which sort after it: the least is after padded with zeros.
			return fromPrefix(prefix, i, 0)
		}
		d := int64(-1)
		for j := range len(digits) {
			if digits[j] == after[i] {
				d = int64(j)
			}
		}
		if d < 0 {
			// Cursors that start with after[:i] and then a digit above
			// after[i] sort after it, and those with a digit below
			// before it.
			for j := range len(digits) {
				if digits[j] > after[i] {
					return fromPrefix(prefix<<4|uint64(j), i+1, 0)
				}
			}
			// No digit sorts above after[i]: the next prefix of i digits.
			return fromPrefix(prefix, i, 1)
		}
		prefix = prefix<<4 | uint64(d)
	}
	// after[:16] is a cursor; it and anything longer that starts with it
	// sort before the next one.
	return fromPrefix(prefix, cursorDigits, 1)
}

// fromPrefix returns the number whose cursor is the i hex digits of
// prefix, plus carry, followed by zeros; ok is false when that is past
// the largest number.
func fromPrefix(prefix uint64, i int, carry uint64) (int64, bool) {
	if i == 0 {
		if carry > 0 {
			return 0, false
		}
		return 1, true
	}
	shift := uint(4 * (cursorDigits - i))
	p := prefix + carry
	if i < cursorDigits && p >= 1<<(4*uint(i)) || p > math.MaxInt64>>shift || i == cursorDigits && p < prefix {
		return 0, false
	}
	return max(int64(p<<shift), 1), true
}

// changesLockKey is the pg_advisory_xact_lock key that orders the
// commits of transactions with changes in one schema: another hash than
// the migrations' (lockKey), so that the two never wait for each other.
func changesLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("github.com/walletledger/ledger/pgstore/changes\x00" + schema))
	return int64(h.Sum64())
}

// AppendChange implements [ledger.Tx]. The change waits in the
// transaction until it commits, and gets its number then (see the
// package documentation); a change is not among the transaction's own
// reads of [ledger.ReadTx.Changes], having no cursor yet.
func (t *tx) AppendChange(ctx context.Context, c ledger.ChangeRecord) error {
	texts := []string{string(c.Kind), c.AuthorityID, c.Ref}
	if c.Limits != nil {
		texts = append(texts, c.Limits.UserID, c.Limits.Currency)
	}
	for _, s := range texts {
		if !storable(s) {
			return fmt.Errorf("pgstore: append %s change: text %q is not valid UTF-8", c.Kind, s)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(ctx); err != nil {
		return err
	}
	if !t.update {
		return fmt.Errorf("pgstore: append change: %w", errReadOnly)
	}
	p := &t.changes
	p.kinds = append(p.kinds, encText(string(c.Kind)))
	var at *int64
	if !c.At.IsZero() {
		n := c.At.UnixNano()
		at = &n
	}
	p.ats = append(p.ats, at)
	p.auths = append(p.auths, encText(c.AuthorityID))
	p.refs = append(p.refs, encText(c.Ref))
	var lu, lc, lf, lcap *string
	if l := c.Limits; l != nil {
		u, cur, f := encText(l.UserID), encText(l.Currency), encDecimal(l.Floor)
		lu, lc, lf = &u, &cur, &f
		if l.Cap != nil {
			v := encDecimal(*l.Cap)
			lcap = &v
		}
	}
	p.users, p.currencies, p.floors, p.caps = append(p.users, lu), append(p.currencies, lc), append(p.floors, lf), append(p.caps, lcap)
	return nil
}

// pendingChanges are the changes a transaction appended, as the
// columns of appendChanges; NULL (nil) for the zero time and where a
// change has no limits.
type pendingChanges struct {
	kinds, auths, refs        []string
	ats                       []*int64
	users, currencies, floors []*string
	caps                      []*string
}

func (p *pendingChanges) len() int { return len(p.kinds) }

// queueChanges adds to b the end of a transaction that appended
// changes: the schema's change lock, then the changes, numbered under
// it. Must hold t.mu.
func (t *tx) queueChanges(b *pgx.Batch) []reader {
	p := &t.changes
	b.Queue(t.s.q.lockChanges, changesLockKey(t.s.schema))
	b.Queue(t.s.q.appendChanges, p.kinds, p.ats, p.auths, p.refs, p.users, p.currencies, p.floors, p.caps)
	n := p.len()
	*p = pendingChanges{}
	return []reader{
		func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("pgstore: lock the change feed: %w", err)
			}
			return nil
		},
		func(br pgx.BatchResults) error {
			ct, err := br.Exec()
			switch {
			case err != nil:
				return fmt.Errorf("pgstore: append %d changes: %w", n, err)
			case ct.RowsAffected() != int64(n):
				return fmt.Errorf("pgstore: append %d changes: %d appended", n, ct.RowsAffected())
			}
			return nil
		},
	}
}

// Changes implements [ledger.ReadTx]: pages of a range scan of the
// primary key of changes, from the first number whose cursor sorts
// after after (see firstPage).
func (t *tx) Changes(ctx context.Context, after string) iter.Seq2[ledger.ChangeRecord, error] {
	return func(yield func(ledger.ChangeRecord, error) bool) {
		from, ok := firstAfter(after)
		if !ok {
			if err := t.check(ctx, nil); err != nil {
				yield(ledger.ChangeRecord{}, err)
			}
			return
		}
		read := func(limit int, last *ledger.ChangeRecord) ([]ledger.ChangeRecord, error) {
			if last != nil {
				n, err := strconv.ParseInt(last.Cursor, 16, 64)
				if err != nil || n == math.MaxInt64 {
					return nil, nil // the last number there is
				}
				from = n + 1
			}
			var page []ledger.ChangeRecord
			err := t.read(ctx, "read changes", t.s.q.changes, []any{from, limit}, func(rows pgx.Rows) error {
				c, err := scanChange(rows)
				page = append(page, c)
				return err
			})
			return page, err
		}
		for c, err := range paged(read) {
			if !yield(c, err) || err != nil {
				return
			}
		}
	}
}

// scanChange reads a row of changeColumns.
func scanChange(rows pgx.Rows) (ledger.ChangeRecord, error) {
	var (
		n                int64
		kind, auth, ref  string
		at               *int64
		lu, lc, lf, lcap *string
	)
	if err := rows.Scan(&n, &kind, &at, &auth, &ref, &lu, &lc, &lf, &lcap); err != nil {
		return ledger.ChangeRecord{}, err
	}
	c := ledger.ChangeRecord{Cursor: formatCursor(n)}
	var errs []error
	text := func(s string) string {
		d, err := decText(s)
		errs = append(errs, err)
		return d
	}
	c.Kind, c.AuthorityID, c.Ref = ledger.ChangeKind(text(kind)), text(auth), text(ref)
	if at != nil {
		c.At = unixTime(*at)
	}
	if lu != nil && lc != nil && lf != nil {
		l := &ledger.WalletLimits{UserID: text(*lu), Currency: text(*lc)}
		f, err := decDecimal(*lf)
		errs = append(errs, err)
		l.Floor = f
		if lcap != nil {
			v, err := decDecimal(*lcap)
			errs = append(errs, err)
			l.Cap = &v
		}
		c.Limits = l
	}
	for _, err := range errs {
		if err != nil {
			return ledger.ChangeRecord{}, fmt.Errorf("change %s: %w", c.Cursor, err)
		}
	}
	return c, nil
}

var errReadOnly = errors.New("a View's transaction is read-only")
