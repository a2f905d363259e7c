// Package memstore is a [ledger.Store] that keeps everything in memory,
// for tests and for ledgers that need not outlive their process.
//
// Transactions are serialized by one read-write lock: any number of
// readers, or one writer. A failed Update is undone from a log of its
// writes. Entries are indexed in sorted slices (by ID overall, per user,
// per authority and per pair, and the same for entries with items), so
// every scan is a binary search and a walk; since new IDs sort last,
// indexing an entry is an append.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"slices"
	"sync"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// Store is an in-memory [ledger.Store]. Create one with [New]; the zero
// value is not usable. It is safe for concurrent use.
type Store struct {
	mu     sync.RWMutex
	closed bool

	entries     map[string]*ledger.Record
	keys        map[pair]*ledger.Record // (authority, idempotency key)
	all, items  index
	byUser      map[string]*index
	itemsByUser map[string]*index
	byAuth      map[string]*index
	itemsByAuth map[string]*index
	byPair      map[pair]*index
	totals      map[string]*totalTable // by authority; "" = over all authorities
}

var _ ledger.Store = (*Store)(nil)

type pair struct{ a, b string }

// New returns an empty Store.
func New() *Store {
	return &Store{
		entries:     make(map[string]*ledger.Record),
		keys:        make(map[pair]*ledger.Record),
		byUser:      make(map[string]*index),
		itemsByUser: make(map[string]*index),
		byAuth:      make(map[string]*index),
		itemsByAuth: make(map[string]*index),
		byPair:      make(map[pair]*index),
		totals:      make(map[string]*totalTable),
	}
}

// View implements [ledger.Store].
func (s *Store) View(ctx context.Context, fn func(ledger.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ledger.ErrClosed
	}
	return fn(&tx{s: s})
}

// Update implements [ledger.Store]. It runs fn exactly once, holding
// the store locked; if fn fails or panics, its writes are undone.
func (s *Store) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ledger.ErrClosed
	}
	t := &tx{s: s}
	committed := false
	defer func() {
		if !committed {
			t.rollback()
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	committed = true
	return nil
}

// Ping implements [ledger.Store].
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ledger.ErrClosed
	}
	return nil
}

// Close implements [ledger.Store]; it drops the data.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ledger.ErrClosed
	}
	s.closed = true
	s.entries, s.keys, s.all, s.items = nil, nil, index{}, index{}
	s.byUser, s.itemsByUser, s.byAuth, s.itemsByAuth, s.byPair, s.totals = nil, nil, nil, nil, nil, nil
	return nil
}

// index is a sorted list of entries, by ID.
type index struct{ rs []*ledger.Record }

func (ix *index) insert(r *ledger.Record) {
	if n := len(ix.rs); n == 0 || ix.rs[n-1].ID < r.ID {
		ix.rs = append(ix.rs, r)
		return
	}
	i, _ := ix.search(r.ID)
	ix.rs = slices.Insert(ix.rs, i, r)
}

func (ix *index) remove(id string) {
	if i, ok := ix.search(id); ok {
		ix.rs = slices.Delete(ix.rs, i, i+1)
	}
}

func (ix *index) search(id string) (int, bool) {
	return slices.BinarySearchFunc(ix.rs, id, func(r *ledger.Record, id string) int { return cmp.Compare(r.ID, id) })
}

func indexIn[K comparable](m map[K]*index, k K) *index {
	ix := m[k]
	if ix == nil {
		ix = &index{}
		m[k] = ix
	}
	return ix
}

// totalTable holds one authority's totals, with the users sorted.
type totalTable struct {
	vals  map[string]decimal.Decimal
	users []string
}

// tx is a transaction. Writes go straight to the store, which the
// transaction holds locked, and are logged so that rollback can undo
// them.
type tx struct {
	s    *Store
	undo []func()
}

func (t *tx) rollback() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
}

func (t *tx) check(ctx context.Context) error { return ctx.Err() }

// copyOut returns a record its caller may modify.
func copyOut(r *ledger.Record) ledger.Record {
	c := *r
	if r.Item != nil {
		it := *r.Item
		it.Data = slices.Clone(r.Item.Data)
		c.Item = &it
	}
	return c
}

func (t *tx) Entry(ctx context.Context, id string) (ledger.Record, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Record{}, err
	}
	r, ok := t.s.entries[id]
	if !ok {
		return ledger.Record{}, ledger.ErrNotFound
	}
	return copyOut(r), nil
}

func (t *tx) EntryByIdempotencyKey(ctx context.Context, authorityID, key string) (ledger.Record, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Record{}, err
	}
	r, ok := t.s.keys[pair{authorityID, key}]
	if !ok {
		return ledger.Record{}, ledger.ErrNotFound
	}
	return copyOut(r), nil
}

func (t *tx) Entries(ctx context.Context, sc ledger.Scan) iter.Seq2[ledger.Record, error] {
	return func(yield func(ledger.Record, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.Record{}, err)
			return
		}
		ix, exact := t.s.indexFor(sc)
		if ix == nil {
			return
		}
		lo, hi := 0, len(ix.rs)
		if sc.Start != "" {
			lo, _ = ix.search(sc.Start)
		}
		if sc.End != "" {
			hi, _ = ix.search(sc.End)
		}
		match := func(r *ledger.Record) bool { return exact || !sc.ItemsOnly || r.Item != nil }
		if sc.Reverse {
			for i := hi - 1; i >= lo; i-- {
				if r := ix.rs[i]; match(r) && !yield(copyOut(r), nil) {
					return
				}
			}
			return
		}
		for i := lo; i < hi; i++ {
			if r := ix.rs[i]; match(r) && !yield(copyOut(r), nil) {
				return
			}
		}
	}
}

// indexFor returns the index that serves sc, nil if none has entries, and
// whether the index holds only entries with items when sc asks for them.
func (s *Store) indexFor(sc ledger.Scan) (*index, bool) {
	switch {
	case sc.UserID != "" && sc.AuthorityID != "":
		return s.byPair[pair{sc.AuthorityID, sc.UserID}], false
	case sc.UserID != "" && sc.ItemsOnly:
		return s.itemsByUser[sc.UserID], true
	case sc.UserID != "":
		return s.byUser[sc.UserID], true
	case sc.AuthorityID != "" && sc.ItemsOnly:
		return s.itemsByAuth[sc.AuthorityID], true
	case sc.AuthorityID != "":
		return s.byAuth[sc.AuthorityID], true
	case sc.ItemsOnly:
		return &s.items, true
	}
	return &s.all, true
}

func (t *tx) Total(ctx context.Context, authorityID, userID string) (decimal.Decimal, bool, error) {
	if err := t.check(ctx); err != nil {
		return decimal.Decimal{}, false, err
	}
	if tt := t.s.totals[authorityID]; tt != nil {
		v, ok := tt.vals[userID]
		return v, ok, nil
	}
	return decimal.Decimal{}, false, nil
}

func (t *tx) Totals(ctx context.Context, authorityID, after string) iter.Seq2[ledger.UserTotal, error] {
	return func(yield func(ledger.UserTotal, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.UserTotal{}, err)
			return
		}
		tt := t.s.totals[authorityID]
		if tt == nil {
			return
		}
		i := 0
		if after != "" {
			i, _ = slices.BinarySearch(tt.users, after+"\x00")
		}
		for _, u := range tt.users[i:] {
			if !yield(ledger.UserTotal{UserID: u, Total: tt.vals[u]}, nil) {
				return
			}
		}
	}
}

func (t *tx) InsertEntry(ctx context.Context, rec ledger.Record) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	s := t.s
	if _, dup := s.entries[rec.ID]; dup {
		return fmt.Errorf("memstore: entry %s exists", rec.ID)
	}
	k := pair{rec.AuthorityID, rec.IdempotencyKey}
	if rec.IdempotencyKey != "" {
		if _, dup := s.keys[k]; dup {
			return fmt.Errorf("memstore: idempotency key %q of authority %q exists", rec.IdempotencyKey, rec.AuthorityID)
		}
	}
	r := copyOut(&rec)
	p := &r
	s.entries[r.ID] = p
	if r.IdempotencyKey != "" {
		s.keys[k] = p
	}
	ixs := []*index{
		&s.all,
		indexIn(s.byUser, r.UserID),
		indexIn(s.byAuth, r.AuthorityID),
		indexIn(s.byPair, pair{r.AuthorityID, r.UserID}),
	}
	if r.Item != nil {
		ixs = append(ixs, &s.items, indexIn(s.itemsByUser, r.UserID), indexIn(s.itemsByAuth, r.AuthorityID))
	}
	for _, ix := range ixs {
		ix.insert(p)
	}
	t.undo = append(t.undo, func() {
		delete(s.entries, r.ID)
		if r.IdempotencyKey != "" {
			delete(s.keys, k)
		}
		for _, ix := range ixs {
			ix.remove(r.ID)
		}
	})
	return nil
}

func (t *tx) SetItemUsed(ctx context.Context, id string) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	r, ok := t.s.entries[id]
	switch {
	case !ok:
		return ledger.ErrNotFound
	case r.Item == nil:
		return ledger.ErrNoItem
	}
	// Replace rather than modify the item: nothing outside holds it, but
	// keeping stored values immutable makes the undo trivially right.
	old := r.Item
	it := *old
	it.Used = true
	r.Item = &it
	t.undo = append(t.undo, func() { r.Item = old })
	return nil
}

func (t *tx) SetTotal(ctx context.Context, authorityID, userID string, total decimal.Decimal) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	tt := t.s.totals[authorityID]
	if tt == nil {
		tt = &totalTable{vals: make(map[string]decimal.Decimal)}
		t.s.totals[authorityID] = tt
	}
	prev, existed := tt.vals[userID]
	tt.vals[userID] = total
	if !existed {
		i, _ := slices.BinarySearch(tt.users, userID)
		tt.users = slices.Insert(tt.users, i, userID)
	}
	t.undo = append(t.undo, func() {
		if existed {
			tt.vals[userID] = prev
			return
		}
		delete(tt.vals, userID)
		if i, ok := slices.BinarySearch(tt.users, userID); ok {
			tt.users = slices.Delete(tt.users, i, i+1)
		}
	})
	return nil
}
