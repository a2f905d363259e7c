package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

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

	// A View's use of the totals cache: the cache (nil if not to be
	// used) and the generation its snapshot agrees with.
	cache *totalsCache
	gen   uint64
	// The totals an Update wrote, for the cache to drop once committed.
	wroteTotals [][]byte

	mu      sync.Mutex
	cursors map[*cursor]struct{}
}

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
//
// Badger checks the checksum of a value it reads from the value log (the
// store opens it with VerifyValueChecksum), but on a mismatch it logs
// the failure and yields an empty value instead of an error. No record
// is empty, so an empty value is reported as unreadable: corrupt data is
// an error, never data.
func decodeItem(item *badger.Item) (ledger.Record, error) {
	var r ledger.Record
	err := item.Value(func(v []byte) error {
		if len(v) == 0 {
			return fmt.Errorf("%w: record unreadable: Badger could not read it from its value log (a checksum mismatch, or a missing file; WithLogger shows Badger's report)", errCorrupt)
		}
		var err error
		r, err = decodeRecord(v)
		return err
	})
	if err != nil {
		return ledger.Record{}, fmt.Errorf("badgerstore: read entry %q: %w", item.Key()[1:], err)
	}
	return r, nil
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
		prefix, exact := scanPrefix(s)
		direct := prefix[0] == prefixEntry
		load := func(id []byte, item *badger.Item) (ledger.Record, error) {
			if direct {
				return decodeItem(item)
			}
			r, err := t.entry(string(id))
			if errors.Is(err, ledger.ErrNotFound) {
				return ledger.Record{}, fmt.Errorf("badgerstore: index key %q names missing entry %q", item.Key(), id)
			}
			return r, err
		}
		for r, err := range walk(ctx, t, prefix, s.Start, s.End, s.Reverse, load) {
			if err != nil {
				yield(ledger.Record{}, err)
				return
			}
			if !exact && r.Item == nil {
				continue
			}
			if !yield(r, nil) {
				return
			}
		}
	}
}

func (t *tx) Total(ctx context.Context, authorityID, userID string) (ledger.Total, bool, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Total{}, false, err
	}
	k := key(prefixTotal, authorityID, userID)
	if t.cache != nil {
		if c, ok := t.cache.get(t.gen, k); ok {
			return c.val, c.exists, nil
		}
	}
	var c cachedTotal
	item, err := t.txn.Get(k)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return ledger.Total{}, false, fmt.Errorf("badgerstore: read total of user %q from authority %q: %w", userID, authorityID, err)
	default:
		if c.val, err = totalOf(item); err != nil {
			return ledger.Total{}, false, err
		}
		c.exists = true
	}
	if t.cache != nil {
		t.cache.fill(t.gen, k, c)
	}
	return c.val, c.exists, nil
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

func (t *tx) Totals(ctx context.Context, authorityID, afterUserID string) iter.Seq2[ledger.UserTotal, error] {
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
			t, err := totalOf(item)
			return ledger.UserTotal{UserID: string(user), Total: t}, err
		}
		for row, err := range walk(ctx, t, key(prefixTotal, authorityID, ""), start, "", false, load) {
			if !yield(row, err) || err != nil {
				return
			}
		}
	}
}

// TotalAuthorities implements [ledger.ReadTx]. It walks the keys of
// every total, reading no value.
func (t *tx) TotalAuthorities(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := t.check(ctx); err != nil {
			yield("", err)
			return
		}
		load := func(rest []byte, _ *badger.Item) (string, error) {
			n, w := binary.Uvarint(rest)
			if w <= 0 || uint64(len(rest)-w) < n {
				return "", fmt.Errorf("badgerstore: malformed total key %q", rest)
			}
			return string(rest[w : w+int(n)]), nil
		}
		last, first := "", true
		for a, err := range walk(ctx, t, []byte{prefixTotal}, "", "", false, load) {
			if err != nil {
				yield("", err)
				return
			}
			// One authority's totals are adjacent: its keys share their
			// leading components.
			if (first || a != last) && !yield(a, nil) {
				return
			}
			last, first = a, false
		}
	}
}

func (t *tx) InsertEntry(ctx context.Context, r ledger.Record) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	ks := indexKeys(&r)
	switch dup, err := t.exists(ks[0]); {
	case err != nil:
		return fmt.Errorf("badgerstore: insert entry %q: %w", r.ID, err)
	case dup:
		return fmt.Errorf("badgerstore: insert entry %q: an entry with this ID exists", r.ID)
	}
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
	if err := t.check(ctx); err != nil {
		return err
	}
	r, err := t.entry(id)
	if err != nil {
		return err
	}
	if r.Item == nil {
		return fmt.Errorf("badgerstore: entry %q: %w", id, ledger.ErrNoItem)
	}
	r.Item.Used, r.Item.UsedOn, r.Item.UsedBy = true, use.At, use.AuthorityID
	r.UseIdempotencyKey = use.IdempotencyKey
	v, err := encodeRecord(nil, &r)
	if err != nil {
		return err
	}
	return t.set(key(prefixEntry, id), v, "mark item of entry %q used", id)
}

func (t *tx) SetTotal(ctx context.Context, authorityID, userID string, total ledger.Total) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	k := key(prefixTotal, authorityID, userID)
	t.wroteTotals = append(t.wroteTotals, k)
	v, err := encodeTotal(total)
	if err != nil {
		return err
	}
	return t.set(k, v, "write total of user %q from authority %q", userID, authorityID)
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
	item, err := txn.Get(formatKey)
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
			return fmt.Errorf("%w: format version %x", errCorrupt, b)
		}
		return nil
	})
	return v, true, err
}
