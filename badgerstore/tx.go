package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// errTxDone is returned when a ReadTx or Tx is used after the function
// it was given to returned.
var errTxDone = errors.New("badgerstore: transaction used after its function returned")

// tx is a ledger.Tx over a Badger transaction. Besides the transaction it
// tracks the Badger iterators its scans have open: Badger panics if a
// transaction ends with one open, which would happen if a caller dropped
// an iter.Pull of a scan without calling stop.
type tx struct {
	txn  *badger.Txn
	done atomic.Bool

	// s is the store; gen, in a View, the generation of the totals its
	// snapshot agrees with (see totals.go).
	s   *Store
	gen uint64
	// w is an Update's own state; nil in a View.
	w *txWrite

	mu      sync.Mutex
	cursors map[*cursor]struct{}
}

// txWrite is what an Update's Tx keeps beside its Badger transaction:
// the totals it set, the entries it inserted (for classify) and the
// highest ID among them, the entries whose change it appended and the
// limits it set, and the encodings of the changes it appended, in order,
// without their checksums (Update numbers and writes them as it
// commits).
type txWrite struct {
	totals    pendingTotals
	inserted  []insertedEntry
	maxID     string
	changed   map[string]struct{}
	setLimits map[string]ledger.StoredLimits
	changes   [][]byte
	// posts are the index postings of the entries inserted, routed as
	// the Update commits (see [Store.routePostings]).
	posts []pendingPosting
}

// updateTx is an Update's tx and its write state, in one allocation.
type updateTx struct {
	tx
	w txWrite
}

// errReadOnly is a write through a View's transaction.
var errReadOnly = errors.New("badgerstore: write in a read-only transaction")

// finish ends the transaction's use: later calls fail with errTxDone and
// cursors still open are closed.
func (t *tx) finish() {
	t.done.Store(true)
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.cursors {
		c.mu.Lock()
		c.closeLocked()
		c.mu.Unlock()
	}
	clear(t.cursors)
}

func (t *tx) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.done.Load() {
		return errTxDone
	}
	return nil
}

// checkWrite is check for a write that needs the Update's own state.
func (t *tx) checkWrite(ctx context.Context) error {
	if t.w == nil {
		return errReadOnly
	}
	return t.check(ctx)
}

// get returns a copy of the value of k, ledger.ErrNotFound if k is
// missing.
func (t *tx) get(k []byte) ([]byte, error) {
	item, err := t.txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ledger.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// exists reports whether k is stored.
func (t *tx) exists(k []byte) (bool, error) {
	_, err := t.txn.Get(k)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// set writes k; format and args say what, for an error message.
func (t *tx) set(k, v []byte, format string, args ...any) error {
	err := t.txn.Set(k, v)
	switch {
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("badgerstore: transaction too large: %s: a transaction may write at most 15%% of Badger's MemTableSize: %w",
			fmt.Sprintf(format, args...), err)
	case err != nil:
		return fmt.Errorf("badgerstore: %s: %w", fmt.Sprintf(format, args...), err)
	}
	return nil
}

// del deletes k; format and args say what, for an error message.
func (t *tx) del(k []byte, format string, args ...any) error {
	err := t.txn.Delete(k)
	switch {
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("badgerstore: transaction too large: %s: a transaction may write at most 15%% of Badger's MemTableSize: %w",
			fmt.Sprintf(format, args...), err)
	case err != nil:
		return fmt.Errorf("badgerstore: %s: %w", fmt.Sprintf(format, args...), err)
	}
	return nil
}

// entry reads the record with the given ID.
func (t *tx) entry(id string) (ledger.Record, error) {
	item, err := t.txn.Get(key(prefixEntry, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ledger.Record{}, fmt.Errorf("badgerstore: entry %q: %w", id, ledger.ErrNotFound)
	}
	if err != nil {
		return ledger.Record{}, fmt.Errorf("badgerstore: read entry %q: %w", id, err)
	}
	return decodeItem(item)
}

// decodeItem decodes the record stored in item.
func decodeItem(item *badger.Item) (ledger.Record, error) {
	return decodeValue(item, "entry", decodeRecord)
}

// decodeValue decodes the value of item, a record of what (an entry, a
// hold), with decode.
//
// Badger checks the checksum of a value it reads from the value log (the
// store opens it with VerifyValueChecksum), but on a mismatch it logs
// the failure and yields an empty value instead of an error. No record
// is empty, so an empty value is reported as unreadable: corrupt data is
// an error, never data.
func decodeValue[T any](item *badger.Item, what string, decode func([]byte) (T, error)) (T, error) {
	var out T
	err := item.Value(func(v []byte) error {
		if len(v) == 0 {
			return fmt.Errorf("%w: %s unreadable: Badger could not read it from its value log (a checksum mismatch, or a missing file; WithLogger shows Badger's report)", errCorrupt, what)
		}
		var err error
		out, err = decode(v)
		return err
	})
	if err != nil {
		var zero T
		return zero, fmt.Errorf("badgerstore: read %s %q: %w", what, item.Key()[1:], err)
	}
	return out, nil
}

func (t *tx) Entry(ctx context.Context, id string) (ledger.Record, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Record{}, err
	}
	return t.entry(id)
}

func (t *tx) EntryByIdempotencyKey(ctx context.Context, authorityID, k string) (ledger.Record, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Record{}, err
	}
	id, err := t.get(key(prefixIdemKey, authorityID, k))
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.Record{}, fmt.Errorf("badgerstore: idempotency key %q of authority %q: %w", k, authorityID, ledger.ErrNotFound)
	}
	if err != nil {
		return ledger.Record{}, fmt.Errorf("badgerstore: read idempotency key %q of authority %q: %w", k, authorityID, err)
	}
	r, err := t.entry(string(id))
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.Record{}, fmt.Errorf("badgerstore: idempotency key %q of authority %q names missing entry %q", k, authorityID, id)
	}
	return r, err
}

func (t *tx) Entries(ctx context.Context, s ledger.Scan) iter.Seq2[ledger.Record, error] {
	return func(yield func(ledger.Record, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.Record{}, err)
			return
		}
		prefix, lowest := scanPrefix(s)
		if prefix == nil {
			curs, err := t.userCurrencies(s.UserID)
			switch {
			case err != nil:
				yield(ledger.Record{}, err)
				return
			case len(curs) == 0:
				return
			case len(curs) > 1:
				t.userEntries(ctx, s, curs, yield)
				return
			}
			prefix, lowest = userPrefix(s.UserID, curs[0])
		}
		start := max(s.Start, lowest)
		if prefix[0] == prefixEntry {
			for r, err := range walk(ctx, t, prefix, start, s.End, s.Reverse, func(_ []byte, item *badger.Item) (ledger.Record, error) {
				return decodeItem(item)
			}) {
				if err != nil || matches(s, &r) {
					if !yield(r, err) || err != nil {
						return
					}
				}
			}
			return
		}
		for id, err := range t.postings(ctx, prefix, lowest, start, s.End, s.Reverse) {
			var r ledger.Record
			if err == nil {
				r, err = t.indexed(prefix, id)
			}
			if err != nil {
				yield(ledger.Record{}, err)
				return
			}
			if matches(s, &r) && !yield(r, nil) {
				return
			}
		}
	}
}

// indexed reads the record the index under prefix names.
func (t *tx) indexed(prefix []byte, id string) (ledger.Record, error) {
	r, err := t.entry(id)
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.Record{}, fmt.Errorf("badgerstore: index %q names missing entry %q", prefix, id)
	}
	return r, err
}

// userEntries yields the entries of Scan{UserID} in every currency: a
// merge, by ID, of the by-user index's ranges for curs, the currencies
// the user has entries in (few: the merge picks each next ID linearly).
func (t *tx) userEntries(ctx context.Context, s ledger.Scan, curs []string, yield func(ledger.Record, error) bool) {
	type head struct {
		next    func() (string, error, bool)
		stop    func()
		cur, id string
	}
	heads := make([]*head, 0, len(curs))
	defer func() {
		for _, h := range heads {
			h.stop()
		}
	}()
	advance := func(h *head) (bool, error) {
		id, err, ok := h.next()
		h.id = id
		return ok && err == nil, err
	}
	for _, c := range curs {
		prefix, lowest := userPrefix(s.UserID, c)
		start := max(s.Start, lowest)
		next, stop := iter.Pull2(t.postings(ctx, prefix, lowest, start, s.End, s.Reverse))
		h := &head{next: next, stop: stop, cur: c}
		heads = append(heads, h)
		switch ok, err := advance(h); {
		case err != nil:
			yield(ledger.Record{}, err)
			return
		case !ok:
			heads = heads[:len(heads)-1]
			stop()
		}
	}
	for len(heads) > 0 {
		best := 0
		for i, h := range heads[1:] {
			if h.id < heads[best].id != s.Reverse {
				best = i + 1
			}
		}
		h := heads[best]
		prefix, _ := userPrefix(s.UserID, h.cur)
		r, err := t.indexed(prefix, h.id)
		if err != nil {
			yield(ledger.Record{}, err)
			return
		}
		if matches(s, &r) && !yield(r, nil) {
			return
		}
		switch ok, err := advance(h); {
		case err != nil:
			yield(ledger.Record{}, err)
			return
		case !ok:
			h.stop()
			heads = slices.Delete(heads, best, best+1)
		}
	}
}

// userCurrencies returns the currencies in which the user has entries,
// from the by-user index: one seek per currency in Badger, reading no
// value, and the by-user postings in memory (a currency there that the
// transaction may not see yields nothing).
func (t *tx) userCurrencies(user string) ([]string, error) {
	curs, err := t.storedUserCurrencies(user)
	if err != nil {
		return nil, err
	}
	add := func(c string) {
		if !slices.Contains(curs, c) {
			curs = append(curs, c)
		}
	}
	for _, c := range t.s.post.userCurrencies(user) {
		add(c)
	}
	if t.w != nil {
		for i := range t.w.posts {
			if p := &t.w.posts[i]; p.byUser && p.user == user {
				add(p.currency)
			}
		}
	}
	return curs, nil
}

// storedUserCurrencies is userCurrencies in Badger alone.
func (t *tx) storedUserCurrencies(user string) ([]string, error) {
	prefix := key(prefixUser, user, "")
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done.Load() {
		return nil, errTxDone
	}
	it := t.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var curs []string
	for it.Seek(prefix); it.ValidForPrefix(prefix); {
		k := it.Item().Key()
		rest := k[len(prefix):]
		if len(rest) > 0 && rest[0] >= lowestID {
			// The default currency's IDs sort after every other
			// currency's keys.
			return append(curs, ""), nil
		}
		c, ids, ok := cutLP(rest)
		if !ok || len(c) == 0 {
			return nil, fmt.Errorf("%w: malformed index key %q", errCorrupt, k)
		}
		curs = append(curs, string(c))
		// Past the currency's keys: u lp(user) lp(c) and any ID.
		it.Seek(successor(k[:len(k)-len(ids)]))
	}
	return curs, nil
}

func (t *tx) Total(ctx context.Context, tk ledger.TotalKey) (ledger.Total, bool, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Total{}, false, err
	}
	if t.w == nil {
		// A View: most totals are in memory and most keys fit buf, so
		// that reading them allocates nothing.
		var buf [96]byte
		v, err := t.viewTotal(appendTotalKey(buf[:0], tk), tk)
		return v.val, v.exists, err
	}
	v, err := t.total(totalKey(tk), tk)
	return v.val, v.exists, err
}

// total returns the total under k, which names tk: in an Update, the
// latest (the Tx's own, else the store's in memory, else Badger's, which
// it keeps in memory); in a View, the one of its generation (from
// memory, else from its snapshot).
func (t *tx) total(k []byte, tk ledger.TotalKey) (totalVersion, error) {
	m := t.s.tot
	if t.w != nil {
		if p := t.w.totals.get(k); p != nil {
			return totalVersion{val: p.val, exists: true}, nil
		}
		if v, ok := m.latest(k); ok {
			return v, nil
		}
		v, err := t.readTotal(k, tk)
		if err == nil {
			m.load(k, v.val, v.exists)
		}
		return v, err
	}
	return t.viewTotal(k, tk)
}

// viewTotal is total in a View. k does not escape: a read of the
// snapshot gets a copy.
func (t *tx) viewTotal(k []byte, tk ledger.TotalKey) (totalVersion, error) {
	if v, ok := t.s.tot.at(k, t.gen); ok {
		return v, nil
	}
	return t.readTotal(bytes.Clone(k), tk)
}

func (t *tx) readTotal(k []byte, tk ledger.TotalKey) (totalVersion, error) {
	var v totalVersion
	item, err := t.txn.Get(k)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return v, fmt.Errorf("badgerstore: read total of user %q in %q from authority %q: %w", tk.UserID, tk.Currency, tk.AuthorityID, err)
	default:
		if v.val, err = totalOf(item); err != nil {
			return v, err
		}
		v.exists = true
	}
	return v, nil
}

func totalOf(item *badger.Item) (ledger.Total, error) {
	var t ledger.Total
	err := item.Value(func(b []byte) error {
		var err error
		t, err = decodeTotal(b)
		return err
	})
	if err != nil {
		return ledger.Total{}, fmt.Errorf("badgerstore: read total %q: %w", item.Key(), err)
	}
	return t, nil
}

func (t *tx) Totals(ctx context.Context, authorityID, currency, afterUserID string) iter.Seq2[ledger.UserTotal, error] {
	return func(yield func(ledger.UserTotal, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.UserTotal{}, err)
			return
		}
		start := ""
		if afterUserID != "" {
			start = afterUserID + "\x00"
		}
		load := func(user []byte, item *badger.Item) (ledger.UserTotal, error) {
			// Badger holds every total, but perhaps not as it is now.
			v, err := t.total(item.Key(), ledger.TotalKey{AuthorityID: authorityID, UserID: string(user), Currency: currency})
			return ledger.UserTotal{UserID: string(user), Total: v.val}, err
		}
		for row, err := range walk(ctx, t, key(prefixTotal, authorityID, currency, ""), start, "", false, load) {
			if !yield(row, err) || err != nil {
				return
			}
		}
	}
}

// TotalGroups implements [ledger.ReadTx]. One group's totals are
// adjacent (their keys share lp(authority) lp(currency)), so it seeks
// from each group to the next: one seek per group, reading no value.
func (t *tx) TotalGroups(ctx context.Context) iter.Seq2[ledger.TotalGroup, error] {
	return func(yield func(ledger.TotalGroup, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.TotalGroup{}, err)
			return
		}
		// Collected first, so that no iterator stays open while the
		// caller runs: groups are few.
		var groups []ledger.TotalGroup
		err := func() error {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.done.Load() {
				return errTxDone
			}
			prefix := []byte{prefixTotal}
			it := t.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Seek(prefix); it.ValidForPrefix(prefix); {
				k := it.Item().Key()
				a, rest, ok := cutLP(k[1:])
				var c []byte
				if ok {
					c, rest, ok = cutLP(rest)
				}
				if !ok {
					return fmt.Errorf("%w: malformed total key %q", errCorrupt, k)
				}
				groups = append(groups, ledger.TotalGroup{AuthorityID: string(a), Currency: string(c)})
				if err := ctx.Err(); err != nil {
					return err
				}
				it.Seek(successor(k[:len(k)-len(rest)]))
			}
			return nil
		}()
		if err != nil {
			yield(ledger.TotalGroup{}, err)
			return
		}
		for _, g := range groups {
			if !yield(g, nil) {
				return
			}
		}
	}
}

// UserTotals implements [ledger.ReadTx]: the default currency's total is
// a point read, the others' are listed by the wallet index.
func (t *tx) UserTotals(ctx context.Context, userID string) iter.Seq2[ledger.CurrencyTotal, error] {
	return func(yield func(ledger.CurrencyTotal, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.CurrencyTotal{}, err)
			return
		}
		v, ok, err := t.Total(ctx, ledger.TotalKey{UserID: userID})
		if err != nil || ok {
			if !yield(ledger.CurrencyTotal{Total: v}, err) || err != nil {
				return
			}
		}
		load := func(cur []byte, _ *badger.Item) (string, error) { return string(cur), nil }
		for cur, err := range walk(ctx, t, key(prefixWallets, userID, ""), "", "", false, load) {
			if err != nil {
				yield(ledger.CurrencyTotal{}, err)
				return
			}
			v, ok, err := t.Total(ctx, ledger.TotalKey{UserID: userID, Currency: cur})
			if err == nil && !ok {
				err = fmt.Errorf("%w: wallet index names missing total of user %q in %q", errCorrupt, userID, cur)
			}
			if !yield(ledger.CurrencyTotal{Currency: cur, Total: v}, err) || err != nil {
				return
			}
		}
	}
}

func (t *tx) Limits(ctx context.Context, userID, currency string) (ledger.StoredLimits, bool, error) {
	if err := t.check(ctx); err != nil {
		return ledger.StoredLimits{}, false, err
	}
	if t.w != nil {
		// The writer knows every stored limits (see Store.limits).
		k := limitsKey(userID, currency)
		l, ok := t.w.setLimits[string(k)]
		if !ok {
			l, ok = t.s.limits[string(k)]
		}
		return l, ok, nil
	}
	if !t.s.userMayHaveLimits(userID) {
		return ledger.StoredLimits{}, false, nil
	}
	v, err := t.get(limitsKey(userID, currency))
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return ledger.StoredLimits{}, false, nil
	case err != nil:
		return ledger.StoredLimits{}, false, fmt.Errorf("badgerstore: read limits of user %q in %q: %w", userID, currency, err)
	}
	l, err := decodeLimits(userID, currency, v)
	if err != nil {
		return ledger.StoredLimits{}, false, fmt.Errorf("badgerstore: read limits of user %q in %q: %w", userID, currency, err)
	}
	return l, true, nil
}

func (t *tx) UserLimits(ctx context.Context, userID string) iter.Seq2[ledger.StoredLimits, error] {
	if t.w == nil && !t.s.userMayHaveLimits(userID) {
		return func(yield func(ledger.StoredLimits, error) bool) {
			if err := t.check(ctx); err != nil {
				yield(ledger.StoredLimits{}, err)
			}
		}
	}
	return t.limits(ctx, limitsKey(userID, ""))
}

func (t *tx) AllLimits(ctx context.Context) iter.Seq2[ledger.StoredLimits, error] {
	return t.limits(ctx, []byte{prefixLimits})
}

// limits yields the limits under prefix, in key order: (user, currency).
func (t *tx) limits(ctx context.Context, prefix []byte) iter.Seq2[ledger.StoredLimits, error] {
	return func(yield func(ledger.StoredLimits, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.StoredLimits{}, err)
			return
		}
		load := func(_ []byte, item *badger.Item) (ledger.StoredLimits, error) {
			k := item.Key()
			user, cur, ok := cutOrdered(k[1:])
			if !ok {
				return ledger.StoredLimits{}, fmt.Errorf("%w: malformed limits key %q", errCorrupt, k)
			}
			var l ledger.StoredLimits
			err := item.Value(func(v []byte) error {
				var err error
				l, err = decodeLimits(user, string(cur), v)
				return err
			})
			if err != nil {
				return ledger.StoredLimits{}, fmt.Errorf("badgerstore: read limits of user %q in %q: %w", user, cur, err)
			}
			return l, nil
		}
		for l, err := range walk(ctx, t, prefix, "", "", false, load) {
			if !yield(l, err) || err != nil {
				return
			}
		}
	}
}

func (t *tx) InsertEntry(ctx context.Context, r ledger.Record) error {
	if err := t.checkWrite(ctx); err != nil {
		return err
	}
	if r.ID == "" || r.ID[0] < lowestID {
		// Its by-user key would read as one of another currency.
		return fmt.Errorf("badgerstore: insert entry %q: not an entry ID as the ledger makes them (they start with a hex digit)", r.ID)
	}
	ks := indexKeys(&r)
	// An ID above every one stored and every one this Tx inserted cannot
	// be taken: the ledger's IDs grow, so this is the common case, and it
	// costs no read.
	if r.ID <= t.w.maxID || r.ID <= t.s.maxEntryID {
		switch dup, err := t.exists(ks[0]); {
		case err != nil:
			return fmt.Errorf("badgerstore: insert entry %q: %w", r.ID, err)
		case dup:
			return fmt.Errorf("badgerstore: insert entry %q: an entry with this ID exists", r.ID)
		}
	}
	t.w.maxID = max(t.w.maxID, r.ID)
	var idemKey []byte
	if r.IdempotencyKey != "" {
		idemKey = key(prefixIdemKey, r.AuthorityID, r.IdempotencyKey)
		switch dup, err := t.exists(idemKey); {
		case err != nil:
			return fmt.Errorf("badgerstore: insert entry %q: %w", r.ID, err)
		case dup:
			return fmt.Errorf("badgerstore: insert entry %q: idempotency key %q of authority %q exists", r.ID, r.IdempotencyKey, r.AuthorityID)
		}
	}
	v, err := encodeRecord(nil, &r)
	if err != nil {
		return err
	}
	if err := t.set(ks[0], v, "insert entry %q", r.ID); err != nil {
		return err
	}
	t.w.inserted = append(t.w.inserted, insertedEntry{id: r.ID, user: r.UserID, currency: r.Currency, authority: r.AuthorityID,
		balance: r.Balance, authorityBalance: r.AuthorityBalance})
	ps := entryPostings(r.ID, r.AuthorityID, r.UserID, r.Currency)
	t.w.posts = append(t.w.posts, ps[:]...)
	for _, k := range ks[1:] {
		if err := t.set(k, nil, "insert entry %q", r.ID); err != nil {
			return err
		}
	}
	if idemKey != nil {
		return t.set(idemKey, []byte(r.ID), "insert entry %q", r.ID)
	}
	return nil
}

func (t *tx) SetItemUsed(ctx context.Context, id string, use ledger.ItemUse) error {
	return t.rewrite(ctx, id, "mark item of entry %q used", func(r *ledger.Record) error {
		if r.Item == nil {
			return fmt.Errorf("badgerstore: entry %q: %w", id, ledger.ErrNoItem)
		}
		r.Item.Used, r.Item.UsedOn, r.Item.UsedBy = true, use.At, use.AuthorityID
		r.UseIdempotencyKey = use.IdempotencyKey
		return nil
	})
}

// SetReversed implements [ledger.Tx]. It rewrites the record; no index
// changes, since none depends on the marks.
func (t *tx) SetReversed(ctx context.Context, id, reversal string, revokeItem bool) error {
	return t.rewrite(ctx, id, "mark entry %q reversed", func(r *ledger.Record) error {
		r.ReversedBy = reversal
		if revokeItem && r.Item != nil {
			r.Item.Revoked = true
		}
		return nil
	})
}

// rewrite reads the record with the given ID, changes it with change and
// stores it again.
func (t *tx) rewrite(ctx context.Context, id, what string, change func(*ledger.Record) error) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	r, err := t.entry(id)
	if err != nil {
		return err
	}
	if err := change(&r); err != nil {
		return err
	}
	v, err := encodeRecord(nil, &r)
	if err != nil {
		return err
	}
	return t.set(key(prefixEntry, id), v, what, id)
}

// SetTotal implements [ledger.Tx]. The total is kept in the Tx and
// written to Badger, or deferred, as the Tx commits (see [tx.classify]);
// a total not stored before is written now, with, for a wallet in a
// currency other than the default, the wallet's index key for
// UserTotals, so that scans of totals see it.
func (t *tx) SetTotal(ctx context.Context, tk ledger.TotalKey, total ledger.Total) error {
	if err := t.checkWrite(ctx); err != nil {
		return err
	}
	if err := checkTotal(total); err != nil {
		return err
	}
	k := totalKey(tk)
	p := t.w.totals.get(k)
	if p == nil {
		prev, err := t.total(k, tk)
		if err != nil {
			return fmt.Errorf("badgerstore: write total of user %q in %q: %w", tk.UserID, tk.Currency, err)
		}
		p = t.w.totals.add(k, tk, prev)
	}
	if total.Held.IsZero() {
		total.Held = decimal.Decimal{} // as Badger's encoding reads it back
	}
	p.val = total
	if p.prev.exists {
		return nil // written, if at all, as the Tx commits
	}
	if tk.AuthorityID == "" && tk.Currency != "" && !p.written {
		if err := t.set(key(prefixWallets, tk.UserID, tk.Currency), nil, "index wallet of user %q in %q", tk.UserID, tk.Currency); err != nil {
			return err
		}
	}
	p.written = true
	v, err := encodeTotal(total)
	if err != nil {
		return err
	}
	return t.set(k, v, "write total of user %q in %q from authority %q", tk.UserID, tk.Currency, tk.AuthorityID)
}

func (t *tx) SetLimits(ctx context.Context, l ledger.StoredLimits) error {
	if err := t.checkWrite(ctx); err != nil {
		return err
	}
	v, err := encodeLimits(l)
	if err != nil {
		return err
	}
	k := limitsKey(l.UserID, l.Currency)
	if err := t.set(k, v, "write limits of user %q in %q", l.UserID, l.Currency); err != nil {
		return err
	}
	if t.w.setLimits == nil {
		t.w.setLimits = make(map[string]ledger.StoredLimits)
	}
	// As a read decodes it: in UTC, to the nanosecond.
	if t.w.setLimits[string(k)], err = decodeLimits(l.UserID, l.Currency, v); err != nil {
		return err
	}
	return nil
}

// walk yields load(rest, item) for each key that starts with prefix and
// whose rest lies in [start, end) ("" leaves a side open), ascending or,
// if reverse, descending. It stops after yielding an error.
func walk[T any](ctx context.Context, t *tx, prefix []byte, start, end string, reverse bool,
	load func(rest []byte, item *badger.Item) (T, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		c, err := t.open(prefix, start, end, reverse)
		if err != nil {
			yield(zero, err)
			return
		}
		defer c.close()
		for n := 1; ; n++ {
			if n%256 == 0 {
				if err := ctx.Err(); err != nil {
					yield(zero, err)
					return
				}
			}
			v, ok, err := stepCursor(c, load)
			if err != nil {
				yield(zero, err)
				return
			}
			if !ok || !yield(v, nil) {
				return
			}
		}
	}
}

// cursor is a Badger iterator over the keys with one prefix, bounded by
// [start, end) on the rest of the key. Its mutex guards the iterator,
// which the transaction's finish may close while a scan is suspended.
type cursor struct {
	t          *tx
	prefix     []byte
	start, end []byte // bounds on the key, nil when open
	reverse    bool

	mu      sync.Mutex
	it      *badger.Iterator // nil once closed
	started bool
}

func (t *tx) open(prefix []byte, start, end string, reverse bool) (*cursor, error) {
	c := &cursor{t: t, prefix: prefix, reverse: reverse}
	if start != "" {
		c.start = append(append([]byte(nil), prefix...), start...)
	}
	if end != "" {
		c.end = append(append([]byte(nil), prefix...), end...)
	}
	opts := badger.IteratorOptions{PrefetchValues: false}
	if !reverse {
		// Lets Badger skip tables without the prefix. A reverse
		// iterator cannot have it: it must start from a key past the
		// prefix, which a Prefix would make it treat as the end.
		opts.Prefix = prefix
	} else {
		opts.Reverse = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done.Load() {
		return nil, errTxDone
	}
	c.it = t.txn.NewIterator(opts)
	if t.cursors == nil {
		t.cursors = make(map[*cursor]struct{})
	}
	t.cursors[c] = struct{}{}
	return c, nil
}

func (c *cursor) close() {
	c.mu.Lock()
	c.closeLocked()
	c.mu.Unlock()
	c.t.mu.Lock()
	delete(c.t.cursors, c)
	c.t.mu.Unlock()
}

func (c *cursor) closeLocked() {
	if c.it != nil {
		c.it.Close()
		c.it = nil
	}
}

// stepCursor moves c to its next key and loads it; ok is false at the
// end of the range.
func stepCursor[T any](c *cursor, load func([]byte, *badger.Item) (T, error)) (v T, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.it == nil {
		return v, false, errTxDone
	}
	it := c.it
	if !c.started {
		c.started = true
		if !c.reverse {
			it.Seek(c.start) // nil seeks to the prefix
		} else {
			// A reverse Seek lands on the largest key <= the seek key:
			// skip that key if it is the (exclusive) upper bound itself.
			upper := c.end
			if upper == nil {
				upper = successor(c.prefix)
			}
			for it.Seek(upper); upper != nil && it.Valid() && bytes.Compare(it.Item().Key(), upper) >= 0; {
				it.Next()
			}
		}
	} else {
		it.Next()
	}
	if !it.ValidForPrefix(c.prefix) {
		return v, false, nil
	}
	item := it.Item()
	k := item.Key()
	if c.reverse && c.start != nil && bytes.Compare(k, c.start) < 0 ||
		!c.reverse && c.end != nil && bytes.Compare(k, c.end) >= 0 {
		return v, false, nil
	}
	v, err = load(k[len(c.prefix):], item)
	if err != nil {
		return v, false, err
	}
	return v, true, nil
}

// readFormat returns the format version stored in the database and
// whether one is stored.
func readFormat(txn *badger.Txn) (uint64, bool, error) {
	return readUvarint(txn, formatKey, "format version")
}

// readUvarint returns the uvarint stored under k, a meta key holding
// what, and whether one is stored.
func readUvarint(txn *badger.Txn, k []byte, what string) (uint64, bool, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		var n int
		v, n = binary.Uvarint(b)
		if n <= 0 || n != len(b) {
			return fmt.Errorf("%w: %s %x", errCorrupt, what, b)
		}
		return nil
	})
	return v, true, err
}

// lastKey returns the greatest key under prefix, nil if there is none.
func lastKey(txn *badger.Txn, prefix []byte) []byte {
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true})
	defer it.Close()
	it.Seek(successor(prefix))
	if !it.ValidForPrefix(prefix) {
		return nil
	}
	return it.Item().KeyCopy(nil)
}
