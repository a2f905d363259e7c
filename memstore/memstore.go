// Package memstore is a [ledger.Store] that keeps everything in memory,
// for tests and for ledgers that need not outlive their process.
//
// Transactions are serialized by one read-write lock: any number of
// readers, or one writer. A failed Update is undone from a log of its
// writes. Entries are indexed in sorted slices of pointers (by ID
// overall, per user, per authority and per (authority, user) pair, and
// overall, per user and per authority for entries with items), so every
// scan is a binary search and a walk; since new IDs sort last, indexing
// an entry is an append.
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

	entries    map[string]*ledger.Record
	keys       map[pair]*ledger.Record // (authority, idempotency key)
	all, items index
	byUser     map[string]*indexes
	byAuth     map[string]*indexes
	byPair     map[pair]*index
	totals     map[string]*totalTable // by authority; "" = over all authorities
}

// indexes holds one user's or one authority's entries, and those of them
// with items.
type indexes struct{ all, items index }

var _ ledger.Store = (*Store)(nil)

type pair struct{ a, b string }

// New returns an empty Store.
func New() *Store {
	return &Store{
		entries: make(map[string]*ledger.Record),
		keys:    make(map[pair]*ledger.Record),
		byUser:  make(map[string]*indexes),
		byAuth:  make(map[string]*indexes),
		byPair:  make(map[pair]*index),
		totals:  make(map[string]*totalTable),
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
	s.byUser, s.byAuth, s.byPair, s.totals = nil, nil, nil, nil
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

func indexIn[K comparable, V any](m map[K]*V, k K) *V {
	ix := m[k]
	if ix == nil {
		ix = new(V)
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
	undo []undo
}

type undoKind uint8

const (
	undoInsert undoKind = iota // remove rec
	undoUse                    // give rec its item back
	undoTotal                  // restore a total
)

// undo is one logged write.
type undo struct {
	kind    undoKind
	rec     *ledger.Record
	item    *ledger.Item // undoUse: the item before
	tt      *totalTable  // undoTotal
	user    string
	prev    decimal.Decimal
	existed bool
}

func (t *tx) rollback() {
	s := t.s
	for i := len(t.undo) - 1; i >= 0; i-- {
		switch u := t.undo[i]; u.kind {
		case undoInsert:
			r := u.rec
			delete(s.entries, r.ID)
			if r.IdempotencyKey != "" {
				delete(s.keys, pair{r.AuthorityID, r.IdempotencyKey})
			}
			s.all.remove(r.ID)
			s.byUser[r.UserID].all.remove(r.ID)
			s.byAuth[r.AuthorityID].all.remove(r.ID)
			s.byPair[pair{r.AuthorityID, r.UserID}].remove(r.ID)
			if r.Item != nil {
				s.items.remove(r.ID)
				s.byUser[r.UserID].items.remove(r.ID)
				s.byAuth[r.AuthorityID].items.remove(r.ID)
			}
		case undoUse:
			u.rec.Item = u.item
		case undoTotal:
			if u.existed {
				u.tt.vals[u.user] = u.prev
				continue
			}
			delete(u.tt.vals, u.user)
			if i, ok := slices.BinarySearch(u.tt.users, u.user); ok {
				u.tt.users = slices.Delete(u.tt.users, i, i+1)
			}
		}
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
	var ixs *indexes
	switch {
	case sc.UserID != "" && sc.AuthorityID != "":
		return s.byPair[pair{sc.AuthorityID, sc.UserID}], false
	case sc.UserID != "":
		ixs = s.byUser[sc.UserID]
	case sc.AuthorityID != "":
		ixs = s.byAuth[sc.AuthorityID]
	default:
		ixs = &indexes{all: s.all, items: s.items}
	}
	switch {
	case ixs == nil:
		return nil, true
	case sc.ItemsOnly:
		return &ixs.items, true
	}
	return &ixs.all, true
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
	p := new(ledger.Record)
	*p = copyOut(&rec)
	s.entries[p.ID] = p
	if p.IdempotencyKey != "" {
		s.keys[k] = p
	}
	user, auth := indexIn(s.byUser, p.UserID), indexIn(s.byAuth, p.AuthorityID)
	s.all.insert(p)
	user.all.insert(p)
	auth.all.insert(p)
	indexIn(s.byPair, pair{p.AuthorityID, p.UserID}).insert(p)
	if p.Item != nil {
		s.items.insert(p)
		user.items.insert(p)
		auth.items.insert(p)
	}
	t.undo = append(t.undo, undo{kind: undoInsert, rec: p})
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
	t.undo = append(t.undo, undo{kind: undoUse, rec: r, item: old})
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
	t.undo = append(t.undo, undo{kind: undoTotal, tt: tt, user: userID, prev: prev, existed: existed})
	return nil
}
