// Package memstore is a [ledger.Store] that keeps everything in memory,
// for tests and for ledgers that need not outlive their process.
//
// # Concurrency
//
// Transactions are serialized by one read-write lock: any number of
// readers, or one writer. A failed Update is undone from a log of its
// writes.
//
// # Layout
//
// Entries are packed, not pointed to: each is a fixed-size record in
// chunks of an append-only slab, addressed by its slot number. The ID and
// CreatedOn are kept as the ID's two numbers (the ID is rebuilt from
// them), user and authority IDs are interned, and amounts whose
// coefficient fits an int64 (all but the largest) are kept as coefficient
// and exponent. Indexes are sorted lists of slot numbers: by ID overall,
// per user, per authority and per (authority, user) pair, and overall,
// per user and per authority for entries with items. New IDs sort last,
// so indexing an entry is an append; every scan is a binary search and a
// walk. An entry without an item or idempotency key costs 72 bytes plus
// four per index it is in (BenchmarkMemoryPerEntry measures it). An
// entry with an item or idempotency key has a 72-byte extension besides;
// an item costs 48 bytes plus its name and data, and its use 32 more (the
// authority interned, the time as Unix nanoseconds), allocated only once
// the item is used (BenchmarkMemoryPerItemEntry).
package memstore

import (
	"context"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// Store is an in-memory [ledger.Store]. Create one with [New]; the zero
// value is not usable. It is safe for concurrent use.
type Store struct {
	mu     sync.RWMutex
	closed bool

	slab   slab
	byKey  map[idemKey]uint32 // (authority, idempotency key) -> slot
	names  interner
	all    index
	items  index
	byUser map[uint32]*indexes
	byAuth map[uint32]*indexes
	byPair map[uint64]*index
	totals map[string]*totalTable // by authority ID; "" = over all authorities
}

var _ ledger.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	return &Store{
		byKey:  make(map[idemKey]uint32),
		names:  interner{ids: make(map[string]uint32)},
		byUser: make(map[uint32]*indexes),
		byAuth: make(map[uint32]*indexes),
		byPair: make(map[uint64]*index),
		totals: make(map[string]*totalTable),
	}
}

type idemKey struct {
	auth uint32
	key  string
}

// indexes holds one user's or one authority's entries, and those of them
// with items.
type indexes struct{ all, items index }

func pairKey(auth, user uint32) uint64 { return uint64(auth)<<32 | uint64(user) }

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
// the store locked; if fn fails or panics, its writes are undone. Its
// outcome is never unknown: fn's writes are made in memory as fn runs,
// and an Update that returns an error has undone them all, so it never
// returns [ledger.ErrUnknownOutcome].
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
	s.slab, s.byKey, s.names, s.all, s.items = slab{}, nil, interner{}, index{}, index{}
	s.byUser, s.byAuth, s.byPair, s.totals = nil, nil, nil, nil
	return nil
}

// rec is one stored entry, 72 bytes.
type rec struct {
	nanos      int64 // ID and CreatedOn
	seq        uint32
	user, auth uint32 // interned
	// The amount, the balance and the authority balance, each coef[i] ×
	// 10^exp[i], or kept in ext.big[i] when exp[i] is spilled.
	exp    [3]int8
	_      uint8
	coef   [3]int64
	reason string
	ext    *recExt // nil unless the entry has an item, a key or a huge amount
}

// The decimals of a rec, by index.
const (
	amountNum = iota
	balanceNum
	authBalanceNum
)

// spilled marks a decimal kept in ext.big: its coefficient needs more
// than an int64 or its exponent more than an int8.
const spilled = math.MinInt8

// recExt holds what most entries do not have.
type recExt struct {
	item *item
	key  string
	big  [3]decimal.Decimal // amount, balance, authBalance when num.big
}

// item is a stored item, 48 bytes. It is never modified once stored: a
// use replaces it, so that a rollback can put the old one back.
type item struct {
	name string
	data []byte
	use  *use // nil while unused
}

// use is an item's use, 32 bytes.
type use struct {
	at  int64  // Unix nanoseconds; noTime for the zero time
	by  uint32 // interned authority, or noName for ""
	key string // the use's idempotency key
}

// noTime stands for the zero time.Time in use.at: no instant an entry
// time can hold (1970 to 2262, see ledger.ItemUse) is negative.
const noTime = math.MinInt64

// noName stands for "" in use.by, which interning would make a name.
const noName = math.MaxUint32

func (s *Store) newUse(u ledger.ItemUse) *use {
	out := &use{at: noTime, by: noName, key: strings.Clone(u.IdempotencyKey)}
	if !u.At.IsZero() {
		out.at = u.At.UnixNano()
	}
	if u.AuthorityID != "" {
		out.by = s.names.intern(u.AuthorityID)
	}
	return out
}

func (r *rec) id() string { return ledger.FormatEntryID(r.nanos, r.seq) }

// less orders records by ID.
func (r *rec) less(o *rec) bool {
	return r.nanos < o.nanos || r.nanos == o.nanos && r.seq < o.seq
}

// setNum stores d as the record's i-th decimal.
func (r *rec) setNum(i int, d decimal.Decimal) {
	if exp := d.Exponent(); exp > spilled && exp <= math.MaxInt8 && d.NumDigits() <= 18 {
		r.coef[i], r.exp[i] = d.CoefficientInt64(), int8(exp)
		return
	}
	if r.ext == nil {
		r.ext = &recExt{}
	}
	r.ext.big[i], r.exp[i] = d, spilled
}

func (r *rec) num(i int) decimal.Decimal {
	if r.exp[i] == spilled {
		return r.ext.big[i]
	}
	return decimal.New(r.coef[i], int32(r.exp[i]))
}

// slab holds records in fixed chunks, so that growing never moves them.
type slab struct {
	chunks []*[chunkSize]rec
	n      uint32 // slots in use
}

const chunkShift = 10
const chunkSize = 1 << chunkShift

func (sl *slab) at(slot uint32) *rec {
	return &sl.chunks[slot>>chunkShift][slot&(chunkSize-1)]
}

// interner maps user and authority IDs to small numbers and back.
type interner struct {
	ids   map[string]uint32
	names []string
}

func (in *interner) get(name string) (uint32, bool) {
	n, ok := in.ids[name]
	return n, ok
}

func (in *interner) intern(name string) uint32 {
	if n, ok := in.ids[name]; ok {
		return n
	}
	n := uint32(len(in.names))
	name = strings.Clone(name)
	in.ids[name] = n
	in.names = append(in.names, name)
	return n
}

// index is a list of slots sorted by ID.
type index struct{ slots []uint32 }

// search returns the position of the first slot whose ID is >= id.
func (s *Store) search(ix *index, id string) int {
	return s.searchBy(ix, func(r *rec) bool { return r.id() >= id })
}

// searchBy returns the position of the first slot for which ge holds; ge
// must be monotonic over the index.
func (s *Store) searchBy(ix *index, ge func(*rec) bool) int {
	lo, hi := 0, len(ix.slots)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ge(s.slab.at(ix.slots[m])) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

func (s *Store) insertSlot(ix *index, slot uint32) {
	r := s.slab.at(slot)
	if n := len(ix.slots); n == 0 || s.slab.at(ix.slots[n-1]).less(r) {
		ix.slots = append(ix.slots, slot)
		return
	}
	i := s.searchBy(ix, func(o *rec) bool { return !o.less(r) })
	ix.slots = slices.Insert(ix.slots, i, slot)
}

func (s *Store) removeSlot(ix *index, slot uint32) {
	if i := slices.Index(ix.slots, slot); i >= 0 {
		ix.slots = slices.Delete(ix.slots, i, i+1)
	}
}

// lookup returns the slot of the entry with the given ID.
func (s *Store) lookup(id string) (uint32, bool) {
	nanos, seq, ok := ledger.ParseEntryID(id)
	if !ok {
		return 0, false
	}
	key := rec{nanos: nanos, seq: seq}
	i := s.searchBy(&s.all, func(r *rec) bool { return !r.less(&key) })
	if i < len(s.all.slots) {
		if r := s.slab.at(s.all.slots[i]); r.nanos == nanos && r.seq == seq {
			return s.all.slots[i], true
		}
	}
	return 0, false
}

// totalTable holds one authority's totals, with the users sorted.
type totalTable struct {
	vals  map[string]ledger.Total
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
	undoInsert undoKind = iota // remove the entry in slot
	undoUse                    // give the entry in slot its item back
	undoTotal                  // restore a total
)

// undo is one logged write.
type undo struct {
	kind    undoKind
	slot    uint32
	item    *item       // undoUse: the item before
	tt      *totalTable // undoTotal
	user    string
	prev    ledger.Total
	existed bool
}

func (t *tx) rollback() {
	s := t.s
	for i := len(t.undo) - 1; i >= 0; i-- {
		switch u := t.undo[i]; u.kind {
		case undoInsert:
			// Inserts are undone last first, so the slot is the slab's last.
			r := s.slab.at(u.slot)
			if r.ext != nil && r.ext.key != "" {
				delete(s.byKey, idemKey{r.auth, r.ext.key})
			}
			s.removeSlot(&s.all, u.slot)
			s.removeSlot(&s.byUser[r.user].all, u.slot)
			s.removeSlot(&s.byAuth[r.auth].all, u.slot)
			s.removeSlot(s.byPair[pairKey(r.auth, r.user)], u.slot)
			if r.ext != nil && r.ext.item != nil {
				s.removeSlot(&s.items, u.slot)
				s.removeSlot(&s.byUser[r.user].items, u.slot)
				s.removeSlot(&s.byAuth[r.auth].items, u.slot)
			}
			*r = rec{}
			s.slab.truncate(u.slot)
		case undoUse:
			s.slab.at(u.slot).ext.item = u.item
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

// record returns the entry in slot as a Record its caller may modify.
func (s *Store) record(slot uint32) ledger.Record {
	r := s.slab.at(slot)
	out := ledger.Record{
		Entry: ledger.Entry{
			ID:          r.id(),
			AuthorityID: s.names.names[r.auth],
			UserID:      s.names.names[r.user],
			CreatedOn:   time.Unix(0, r.nanos).UTC(),
			Amount:      r.num(amountNum),
			Reason:      r.reason,
			Balance:     r.num(balanceNum),
		},
		AuthorityBalance: r.num(authBalanceNum),
	}
	if r.ext != nil {
		out.IdempotencyKey = r.ext.key
		if it := r.ext.item; it != nil {
			out.Item = &ledger.Item{Name: it.name, Data: slices.Clone(it.data)}
			if u := it.use; u != nil {
				out.Item.Used = true
				if u.at != noTime {
					out.Item.UsedOn = time.Unix(0, u.at).UTC()
				}
				if u.by != noName {
					out.Item.UsedBy = s.names.names[u.by]
				}
				out.UseIdempotencyKey = u.key
			}
		}
	}
	return out
}

func (t *tx) Entry(ctx context.Context, id string) (ledger.Record, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Record{}, err
	}
	slot, ok := t.s.lookup(id)
	if !ok {
		return ledger.Record{}, ledger.ErrNotFound
	}
	return t.s.record(slot), nil
}

func (t *tx) EntryByIdempotencyKey(ctx context.Context, authorityID, key string) (ledger.Record, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Record{}, err
	}
	auth, ok := t.s.names.get(authorityID)
	if !ok {
		return ledger.Record{}, ledger.ErrNotFound
	}
	slot, ok := t.s.byKey[idemKey{auth, key}]
	if !ok {
		return ledger.Record{}, ledger.ErrNotFound
	}
	return t.s.record(slot), nil
}

func (t *tx) Entries(ctx context.Context, sc ledger.Scan) iter.Seq2[ledger.Record, error] {
	return func(yield func(ledger.Record, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.Record{}, err)
			return
		}
		s := t.s
		ix, filterItems := s.indexFor(sc)
		if ix == nil {
			return
		}
		lo, hi := 0, len(ix.slots)
		if sc.Start != "" {
			lo = s.search(ix, sc.Start)
		}
		if sc.End != "" {
			hi = s.search(ix, sc.End)
		}
		emit := func(slot uint32) bool {
			if filterItems {
				if r := s.slab.at(slot); r.ext == nil || r.ext.item == nil {
					return true
				}
			}
			return yield(s.record(slot), nil)
		}
		if sc.Reverse {
			for i := hi - 1; i >= lo; i-- {
				if !emit(ix.slots[i]) {
					return
				}
			}
			return
		}
		for i := lo; i < hi; i++ {
			if !emit(ix.slots[i]) {
				return
			}
		}
	}
}

// indexFor returns the index that serves sc (nil if it is empty), and
// whether entries without items must still be filtered out of it.
func (s *Store) indexFor(sc ledger.Scan) (*index, bool) {
	var ixs *indexes
	switch {
	case sc.UserID != "" && sc.AuthorityID != "":
		user, ok1 := s.names.get(sc.UserID)
		auth, ok2 := s.names.get(sc.AuthorityID)
		if !ok1 || !ok2 {
			return nil, false
		}
		return s.byPair[pairKey(auth, user)], sc.ItemsOnly
	case sc.UserID != "":
		if user, ok := s.names.get(sc.UserID); ok {
			ixs = s.byUser[user]
		}
	case sc.AuthorityID != "":
		if auth, ok := s.names.get(sc.AuthorityID); ok {
			ixs = s.byAuth[auth]
		}
	case sc.ItemsOnly:
		return &s.items, false
	default:
		return &s.all, false
	}
	switch {
	case ixs == nil:
		return nil, false
	case sc.ItemsOnly:
		return &ixs.items, false
	}
	return &ixs.all, false
}

func (t *tx) Total(ctx context.Context, authorityID, userID string) (ledger.Total, bool, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Total{}, false, err
	}
	if tt := t.s.totals[authorityID]; tt != nil {
		v, ok := tt.vals[userID]
		return v, ok, nil
	}
	return ledger.Total{}, false, nil
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

func (t *tx) TotalAuthorities(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := t.check(ctx); err != nil {
			yield("", err)
			return
		}
		for a, tt := range t.s.totals {
			if len(tt.users) > 0 && !yield(a, nil) {
				return
			}
		}
	}
}

func (t *tx) InsertEntry(ctx context.Context, in ledger.Record) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	s := t.s
	nanos, seq, ok := ledger.ParseEntryID(in.ID)
	if !ok {
		return fmt.Errorf("memstore: malformed entry ID %q", in.ID)
	}
	key := rec{nanos: nanos, seq: seq}
	if n := len(s.all.slots); n > 0 && !s.slab.at(s.all.slots[n-1]).less(&key) {
		// Not after the last entry, as new ones are: check for a twin.
		if _, dup := s.lookup(in.ID); dup {
			return fmt.Errorf("memstore: entry %s exists", in.ID)
		}
	}
	if in.IdempotencyKey != "" {
		if auth, ok := s.names.get(in.AuthorityID); ok {
			if _, dup := s.byKey[idemKey{auth, in.IdempotencyKey}]; dup {
				return fmt.Errorf("memstore: idempotency key %q of authority %q exists", in.IdempotencyKey, in.AuthorityID)
			}
		}
	}
	slot := s.slab.push()
	r := s.slab.at(slot)
	*r = rec{
		nanos:  nanos,
		seq:    seq,
		user:   s.names.intern(in.UserID),
		auth:   s.names.intern(in.AuthorityID),
		reason: in.Reason,
	}
	r.setNum(amountNum, in.Amount)
	r.setNum(balanceNum, in.Balance)
	r.setNum(authBalanceNum, in.AuthorityBalance)
	if in.Item != nil || in.IdempotencyKey != "" {
		if r.ext == nil {
			r.ext = &recExt{}
		}
		r.ext.key = strings.Clone(in.IdempotencyKey)
		if in.Item != nil {
			it := &item{name: in.Item.Name, data: slices.Clone(in.Item.Data)}
			if in.Item.Used {
				it.use = s.newUse(ledger.ItemUse{
					AuthorityID: in.Item.UsedBy, At: in.Item.UsedOn, IdempotencyKey: in.UseIdempotencyKey,
				})
			}
			r.ext.item = it
		}
	}
	if r.ext != nil && r.ext.key != "" {
		s.byKey[idemKey{r.auth, r.ext.key}] = slot
	}
	user, auth := indexesIn(s.byUser, r.user), indexesIn(s.byAuth, r.auth)
	s.insertSlot(&s.all, slot)
	s.insertSlot(&user.all, slot)
	s.insertSlot(&auth.all, slot)
	pair := s.byPair[pairKey(r.auth, r.user)]
	if pair == nil {
		pair = &index{}
		s.byPair[pairKey(r.auth, r.user)] = pair
	}
	s.insertSlot(pair, slot)
	if in.Item != nil {
		s.insertSlot(&s.items, slot)
		s.insertSlot(&user.items, slot)
		s.insertSlot(&auth.items, slot)
	}
	t.undo = append(t.undo, undo{kind: undoInsert, slot: slot})
	return nil
}

func indexesIn(m map[uint32]*indexes, k uint32) *indexes {
	ix := m[k]
	if ix == nil {
		ix = &indexes{}
		m[k] = ix
	}
	return ix
}

func (sl *slab) push() uint32 {
	if int(sl.n>>chunkShift) == len(sl.chunks) {
		sl.chunks = append(sl.chunks, new([chunkSize]rec))
	}
	sl.n++
	return sl.n - 1
}

// truncate frees the slots from slot on; only the last pushed slots can
// be freed.
func (sl *slab) truncate(slot uint32) { sl.n = slot }

func (t *tx) SetItemUsed(ctx context.Context, id string, u ledger.ItemUse) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	slot, ok := t.s.lookup(id)
	if !ok {
		return ledger.ErrNotFound
	}
	r := t.s.slab.at(slot)
	if r.ext == nil || r.ext.item == nil {
		return ledger.ErrNoItem
	}
	// Replace rather than modify the item, so that the undo can put the
	// old one back.
	old := r.ext.item
	r.ext.item = &item{name: old.name, data: old.data, use: t.s.newUse(u)}
	t.undo = append(t.undo, undo{kind: undoUse, slot: slot, item: old})
	return nil
}

func (t *tx) SetTotal(ctx context.Context, authorityID, userID string, total ledger.Total) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	tt := t.s.totals[authorityID]
	if tt == nil {
		tt = &totalTable{vals: make(map[string]ledger.Total)}
		t.s.totals[strings.Clone(authorityID)] = tt
	}
	prev, existed := tt.vals[userID]
	if !existed {
		userID = strings.Clone(userID)
		i, _ := slices.BinarySearch(tt.users, userID)
		tt.users = slices.Insert(tt.users, i, userID)
	}
	tt.vals[userID] = total
	t.undo = append(t.undo, undo{kind: undoTotal, tt: tt, user: userID, prev: prev, existed: existed})
	return nil
}
