// Package memstore is a [ledger.Store] that keeps everything in memory,
// for tests and for ledgers that need not outlive their process.
//
// # Concurrency
//
// Transactions are serialized by one read-write lock: any number of
// readers, or one writer. Writes are made in place and logged: a failed
// Update is undone from the log, and a write transaction is a
// [ledger.SavepointTx], which undoes its writes back to a mark, so the
// ledger writes a group's entries and totals as it goes.
//
// # Layout
//
// Entries are packed, not pointed to: each is a fixed-size record in
// chunks of an append-only slab, addressed by its slot number. The ID and
// CreatedOn are kept as the ID's two numbers (the ID is rebuilt from
// them), user, authority and currency names are interned, the wallet
// (user, currency) is numbered, and amounts whose coefficient fits an
// int64 (all but the largest) are kept as coefficient and exponent.
//
// Indexes are sorted lists of slot numbers: by ID overall, per wallet,
// per user, per authority and per (authority, user) pair, and overall,
// per user and per authority for entries with items. A user's index is
// kept only once the user has a second wallet: until then the wallet's
// index is the user's. A scan of one user's entries in one currency
// seeks in the wallet's index; one of an authority's (or every) entries
// in a currency walks its index and skips the other currencies. New IDs
// sort last, so indexing an entry is an append; every scan is a binary
// search and a walk.
//
// An entry without an item, idempotency key, metadata or links costs 72
// bytes plus four per index it is in (BenchmarkMemoryPerEntry measures
// it). An entry with an item, a key or metadata has a 48-byte extension
// besides; its metadata is one packed string. An item costs 48 bytes plus
// its name and data, and its use 32 more (the authority interned, the
// time as Unix nanoseconds), allocated only once the item is used
// (BenchmarkMemoryPerItemEntry). Rarer still, a transfer ID, a reversal
// link or an amount too large to pack put a 64-byte block behind the
// extension (BenchmarkMemoryPerLinkedEntry measures an entry with one
// metadata key and a transfer ID). The hold ID of a capture's entry, which
// would push that 64-byte block into a larger size class, is kept in a map
// by slot, and a flag in the record's spare byte says it is there: other
// entries pay nothing for it.
//
// Running totals are kept per (authority, currency) with the users
// sorted, and per user the currencies of the user's totals over all
// authorities; a total's Held is kept beside it, in a map made for the
// table only once a Held is not zero. A total also points to where the
// entries it counts are indexed (a wallet's total to its wallet, an
// authority's to its (authority, user) index), 16 bytes: the ledger
// reads and writes an entry's two totals just before it inserts the
// entry, so InsertEntry finds the indexes from those totals, in cache,
// instead of looking up the user, wallet and pair again. Limits are kept
// per wallet, sorted by (user, currency).
//
// Holds, far fewer than entries, are plain records (the store's own
// copies) that sorted slices point to: by ID overall, per user and per
// wallet, and, for the holds stored active that expire, by (Expires, ID)
// overall and per wallet, which CloseHold leaves. Keys are mapped per
// authority, apart from entries' keys. A scan or an expiry walk seeks by
// binary search, and seeks again past each hold it yields, so that the
// caller may place or close holds as it walks.
//
// The change feed is an append-only log in chunks. A change's cursor is
// its sequence number (its position plus one) as 16 lowercase hex
// digits, so cursors sort bytewise in append order; it is not stored,
// and it never changes, since one writer appends at a time and a
// rollback removes only its own changes, the last ones. A change is 24
// bytes in chunks without pointers (the time as Unix nanoseconds, the
// authority interned, the ref as an entry ID's two numbers) and one byte
// beside them for its kind and flags: 25 bytes, which is what the entry
// change the ledger appends for each entry adds to the entry's cost
// (BenchmarkMemoryPerChange). Limits, for limits changes only, are kept
// in a list the change points into by number; the kind, ref and time of
// a change in which one of them does not pack (none the ledger makes)
// are kept in a map by position. Changes seeks by binary search over the positions'
// cursors, which takes any string, and walks.
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
	wtx    tx // the write transaction, reused: Updates run one at a time

	slab    slab
	byKey   map[idemKey]uint32 // (authority, idempotency key) -> slot
	names   interner
	wallets walletTable
	all     index
	items   index
	byUser  map[uint32]*userIndexes
	byAuth  map[uint32]*indexes
	byPair  map[uint64]*index
	// entryHolds holds Entry.HoldID for the entries of captures, by slot:
	// few entries have one, and those without must not grow.
	entryHolds map[uint32]string

	totals map[ledger.TotalGroup]*totalTable
	// userCurrencies holds, per user, the currencies of the user's totals
	// over all authorities, sorted: what UserTotals walks.
	userCurrencies map[string][]string
	limits         limitTable

	holds holdTable

	changes changeLog
}

var _ ledger.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	return &Store{
		byKey:          make(map[idemKey]uint32),
		names:          interner{ids: make(map[string]uint32)},
		wallets:        walletTable{ids: make(map[uint64]uint32)},
		byUser:         make(map[uint32]*userIndexes),
		byAuth:         make(map[uint32]*indexes),
		byPair:         make(map[uint64]*index),
		entryHolds:     make(map[uint32]string),
		totals:         make(map[ledger.TotalGroup]*totalTable),
		userCurrencies: make(map[string][]string),
		limits:         limitTable{vals: make(map[limitKey]ledger.StoredLimits)},
		holds:          newHoldTable(),
	}
}

type idemKey struct {
	auth uint32
	key  string
}

// indexes holds one authority's entries, and those of them with items.
type indexes struct{ all, items index }

// userIndexes holds one user's entries. While the user has one wallet,
// that wallet's index is the user's and all is empty; the second wallet
// fills all, and from then on it is kept.
type userIndexes struct {
	wallets []uint32 // the user's wallets, in the order they were made
	all     index
	items   index
}

// entries returns the index of all the user's entries.
func (s *Store) userEntries(u *userIndexes) *index {
	if len(u.wallets) == 1 {
		return &s.wallets.list[u.wallets[0]].entries
	}
	return &u.all
}

func pairKey(a, b uint32) uint64 { return uint64(a)<<32 | uint64(b) }

// walletTable numbers wallets, so that a record names its user and
// currency in four bytes. Wallets, like interned names, are never
// removed, not even by a rollback: an unused one costs a few bytes.
type walletTable struct {
	ids  map[uint64]uint32 // pairKey(user, currency) -> wallet
	list []*wallet
}

// wallet is a (user, currency) pair and the index of its entries.
type wallet struct {
	user, currency uint32 // interned
	id             uint32 // its number
	shared         bool   // the user has other wallets: owner.all is kept
	owner          *userIndexes
	entries        index
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
	return s.update(fn)
}

// TryUpdate implements [ledger.TryUpdater]: it is Update when no View or
// Update holds the store, and otherwise returns false at once.
func (s *Store) TryUpdate(ctx context.Context, fn func(ledger.Tx) error) (bool, error) {
	if err := ctx.Err(); err != nil {
		return true, err
	}
	if !s.mu.TryLock() {
		return false, nil
	}
	defer s.mu.Unlock()
	return true, s.update(fn)
}

// maxKeptUndo bounds the undo log an Update keeps for the next: one of
// the ledger's groups of a few hundred entries fits.
const maxKeptUndo = 4096

// update runs fn in a transaction; the caller holds s.mu.
func (s *Store) update(fn func(ledger.Tx) error) error {
	if s.closed {
		return ledger.ErrClosed
	}
	t := &s.wtx
	t.s = s
	committed := false
	defer func() {
		if !committed {
			t.rollback()
		}
		clear(t.undo)
		t.undo = t.undo[:0]
		if cap(t.undo) > maxKeptUndo {
			t.undo = nil // after a large batch
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
	s.slab, s.byKey, s.names, s.wallets, s.all, s.items = slab{}, nil, interner{}, walletTable{}, index{}, index{}
	s.byUser, s.byAuth, s.byPair, s.entryHolds = nil, nil, nil, nil
	s.totals, s.userCurrencies, s.limits = nil, nil, limitTable{}
	s.holds, s.changes = holdTable{}, changeLog{}
	s.wtx = tx{}
	return nil
}

// rec is one stored entry, 72 bytes.
type rec struct {
	nanos  int64 // ID and CreatedOn
	seq    uint32
	wallet uint32 // user and currency
	auth   uint32 // interned
	// The amount, the balance and the authority balance, each coef[i] ×
	// 10^exp[i], or kept in ext.more.big[i] when exp[i] is spilled.
	exp    [3]int8
	flags  uint8 // hasHold
	coef   [3]int64
	reason string
	ext    *recExt // nil unless the entry has one of the fields recExt holds
}

// hasHold is set in rec.flags when the entry has a HoldID, kept in
// Store.entryHolds.
const hasHold = 1

// The decimals of a rec, by index.
const (
	amountNum = iota
	balanceNum
	authBalanceNum
)

// spilled marks a decimal kept in ext.more.big: its coefficient needs
// more than an int64 or its exponent more than an int8.
const spilled = math.MinInt8

// recExt holds what most entries do not have, 48 bytes. Once stored it
// is modified only by SetItemUsed, which replaces item; SetReversed
// replaces the whole extension, so that a rollback can put the old one
// back.
type recExt struct {
	item *item
	key  string
	meta string   // the metadata packed by packMeta, "" for none
	more *recMore // nil unless the entry has one of the fields recMore holds
}

// recMore holds what fewer entries still have, 64 bytes: transfer and
// reversal links, and amounts too large to pack. It is never modified
// once stored.
type recMore struct {
	transfer, reverses, reversedBy string
	big                            *[3]decimal.Decimal // amount, balance, authBalance where spilled
	revoked                        bool                // the entry's item: Item.Revoked
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
	m := r.more()
	if m.big == nil {
		m.big = new([3]decimal.Decimal)
	}
	m.big[i], r.exp[i] = d, spilled
}

func (r *rec) num(i int) decimal.Decimal {
	if r.exp[i] == spilled {
		return r.ext.more.big[i]
	}
	return decimal.New(r.coef[i], int32(r.exp[i]))
}

// more returns the record's recMore, adding one (and an extension) if it
// has none; only for a record being inserted.
func (r *rec) more() *recMore {
	if r.ext == nil {
		r.ext = &recExt{}
	}
	if r.ext.more == nil {
		r.ext.more = &recMore{}
	}
	return r.ext.more
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

// interner maps user, authority and currency names to small numbers and
// back.
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

// wallet returns the number of the wallet (user, currency), numbering it
// if it has none, and whether it is new.
func (s *Store) wallet(user, currency uint32) (uint32, bool) {
	k := pairKey(user, currency)
	if w, ok := s.wallets.ids[k]; ok {
		return w, false
	}
	w := uint32(len(s.wallets.list))
	s.wallets.ids[k] = w
	s.wallets.list = append(s.wallets.list, &wallet{user: user, currency: currency, id: w})
	return w, true
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

// insertSlot adds slot to ix in order; last says the slot's entry sorts
// after every other stored entry.
func (s *Store) insertSlot(last bool, ix *index, slot uint32) {
	if last {
		ix.slots = append(ix.slots, slot)
		return
	}
	r := s.slab.at(slot)
	if n := len(ix.slots); n == 0 || s.slab.at(ix.slots[n-1]).less(r) {
		ix.slots = append(ix.slots, slot)
		return
	}
	i := s.searchBy(ix, func(o *rec) bool { return !o.less(r) })
	ix.slots = slices.Insert(ix.slots, i, slot)
}

// removeSlot removes slot from ix. Only the last insert is undone, and
// an entry is mostly inserted last, so the search starts at the end.
func (s *Store) removeSlot(ix *index, slot uint32) {
	i := len(ix.slots) - 1
	for i >= 0 && ix.slots[i] != slot {
		i--
	}
	if i >= 0 {
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

// tx is a transaction. Writes go straight to the store, which the
// transaction holds locked, and are logged so that rollback can undo
// them.
type tx struct {
	s      *Store
	undo   []undo
	tables tableCache
	memo   totalMemo
}

type undoKind uint8

const (
	undoInsert     undoKind = iota // remove the entry in slot
	undoUse                        // give the entry in slot its item back
	undoExt                        // give the entry in slot its extension back
	undoTotal                      // restore a total
	undoLimits                     // restore a wallet's limits
	undoInsertHold                 // remove hold
	undoCloseHold                  // reopen hold as close says it was
	undoChange                     // remove the last change
)

// undo is one logged write.
type undo struct {
	kind undoKind
	// existed is, for undoTotal and undoLimits, whether there was a value
	// before; for undoCloseHold, whether the hold was in the expiry
	// indexes.
	existed bool
	slot    uint32
	item    *item   // undoUse: the item before
	ext     *recExt // undoExt: the extension before
	// key is, for undoTotal, the total; for undoLimits, its UserID and
	// Currency are the wallet.
	key     ledger.TotalKey
	prev    ledger.Total         // undoTotal, if existed
	prevLim *ledger.StoredLimits // undoLimits, if existed
	hold    *ledger.HoldRecord   // undoInsertHold, undoCloseHold: the stored hold
	close   *ledger.HoldClose    // undoCloseHold: the hold's state, ClosedOn and EntryID before
}

var _ ledger.SavepointTx = (*tx)(nil)

// Savepoint implements [ledger.SavepointTx]: a mark in the undo log.
func (t *tx) Savepoint() int { return len(t.undo) }

// RollbackTo implements [ledger.SavepointTx].
func (t *tx) RollbackTo(sp int) {
	if sp < 0 || sp > len(t.undo) {
		return // not a mark of this transaction's: nothing of it to undo
	}
	t.undoTo(sp)
	clear(t.undo[sp:])
	t.undo = t.undo[:sp]
}

func (t *tx) rollback() { t.undoTo(0) }

// undoTo undoes the writes logged from sp on, last first.
func (t *tx) undoTo(sp int) {
	s := t.s
	for i := len(t.undo) - 1; i >= sp; i-- {
		switch u := &t.undo[i]; u.kind {
		case undoInsert:
			s.uninsert(u.slot)
		case undoUse:
			s.slab.at(u.slot).ext.item = u.item
		case undoExt:
			s.slab.at(u.slot).ext = u.ext
		case undoTotal:
			s.unsetTotal(u)
		case undoLimits:
			s.unsetLimits(u)
		case undoInsertHold:
			s.uninsertHold(u.hold)
		case undoCloseHold:
			s.uncloseHold(u)
		case undoChange:
			s.unappendChange()
		}
	}
}

// uninsert removes the entry in slot, which is the slab's last: inserts
// are undone last first.
func (s *Store) uninsert(slot uint32) {
	r := s.slab.at(slot)
	w := s.wallets.list[r.wallet]
	user := s.byUser[w.user]
	if r.ext != nil && r.ext.key != "" {
		delete(s.byKey, idemKey{r.auth, r.ext.key})
	}
	if r.flags&hasHold != 0 {
		delete(s.entryHolds, slot)
	}
	s.removeSlot(&s.all, slot)
	s.removeSlot(&w.entries, slot)
	if len(user.wallets) > 1 {
		s.removeSlot(&user.all, slot)
	}
	s.removeSlot(&s.byAuth[r.auth].all, slot)
	s.removeSlot(s.byPair[pairKey(r.auth, w.user)], slot)
	if r.ext != nil && r.ext.item != nil {
		s.removeSlot(&s.items, slot)
		s.removeSlot(&user.items, slot)
		s.removeSlot(&s.byAuth[r.auth].items, slot)
	}
	*r = rec{}
	s.slab.truncate(slot)
}

func (t *tx) check(ctx context.Context) error { return ctx.Err() }

// record returns the entry in slot as a Record its caller may modify.
func (s *Store) record(slot uint32) ledger.Record {
	r := s.slab.at(slot)
	w := s.wallets.list[r.wallet]
	out := ledger.Record{
		Entry: ledger.Entry{
			ID:          r.id(),
			AuthorityID: s.names.names[r.auth],
			UserID:      s.names.names[w.user],
			CreatedOn:   time.Unix(0, r.nanos).UTC(),
			Amount:      r.num(amountNum),
			Reason:      r.reason,
			Balance:     r.num(balanceNum),
			Currency:    s.names.names[w.currency],
		},
		AuthorityBalance: r.num(authBalanceNum),
	}
	if r.flags&hasHold != 0 {
		out.HoldID = s.entryHolds[slot]
	}
	x := r.ext
	if x == nil {
		return out
	}
	out.IdempotencyKey = x.key
	out.Metadata = unpackMeta(x.meta)
	if m := x.more; m != nil {
		out.TransferID, out.Reverses, out.ReversedBy = m.transfer, m.reverses, m.reversedBy
	}
	if it := x.item; it != nil {
		out.Item = &ledger.Item{Name: it.name, Data: slices.Clone(it.data)}
		out.Item.Revoked = x.more != nil && x.more.revoked
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
		ix, f := s.indexFor(sc)
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
			if f.items || f.currency {
				r := s.slab.at(slot)
				if f.items && (r.ext == nil || r.ext.item == nil) {
					return true
				}
				if f.currency && s.wallets.list[r.wallet].currency != f.cur {
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

// filter is what a scan must still skip in the index that serves it:
// entries without items, and entries in another currency than cur.
type filter struct {
	items, currency bool
	cur             uint32 // interned
}

// indexFor returns the index that serves sc (nil if it is empty), and
// what must still be filtered out of it.
func (s *Store) indexFor(sc ledger.Scan) (*index, filter) {
	var f filter
	if sc.InCurrency {
		cur, ok := s.names.get(sc.Currency)
		if !ok {
			return nil, f
		}
		f.currency, f.cur = true, cur
	}
	switch {
	case sc.UserID != "" && sc.AuthorityID != "":
		user, ok1 := s.names.get(sc.UserID)
		auth, ok2 := s.names.get(sc.AuthorityID)
		if !ok1 || !ok2 {
			return nil, f
		}
		f.items = sc.ItemsOnly
		return s.byPair[pairKey(auth, user)], f
	case sc.UserID != "":
		user, ok := s.names.get(sc.UserID)
		if !ok || s.byUser[user] == nil {
			return nil, f
		}
		ixs := s.byUser[user]
		if f.currency {
			// Seek in the wallet, not the user's whole history.
			w, ok := s.wallets.ids[pairKey(user, f.cur)]
			if !ok {
				return nil, f
			}
			return &s.wallets.list[w].entries, filter{items: sc.ItemsOnly}
		}
		if sc.ItemsOnly {
			return &ixs.items, f
		}
		return s.userEntries(ixs), f
	case sc.AuthorityID != "":
		auth, ok := s.names.get(sc.AuthorityID)
		if !ok || s.byAuth[auth] == nil {
			return nil, f
		}
		if sc.ItemsOnly {
			return &s.byAuth[auth].items, f
		}
		return &s.byAuth[auth].all, f
	case sc.ItemsOnly:
		return &s.items, f
	default:
		return &s.all, f
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
	// last is whether the entry sorts after every stored one, as new
	// entries do: then it sorts last in every index too, and indexing it
	// is an append to each, without reading the record now last there.
	last := true
	if n := len(s.all.slots); n > 0 && !s.slab.at(s.all.slots[n-1]).less(&key) {
		// Not after the last entry: check for a twin.
		if _, dup := s.lookup(in.ID); dup {
			return fmt.Errorf("memstore: entry %s exists", in.ID)
		}
		last = false
	}
	if in.IdempotencyKey != "" {
		if auth, ok := s.names.get(in.AuthorityID); ok {
			if _, dup := s.byKey[idemKey{auth, in.IdempotencyKey}]; dup {
				return fmt.Errorf("memstore: idempotency key %q of authority %q exists", in.IdempotencyKey, in.AuthorityID)
			}
		}
	}
	ut, pt := t.table(ledger.TotalGroup{Currency: in.Currency}), t.table(ledger.TotalGroup{AuthorityID: in.AuthorityID, Currency: in.Currency})
	at, ok := t.cachedPlace(ut, pt, in.UserID)
	if !ok {
		at = s.place(&in, ut, pt)
	}
	slot := s.slab.push()
	r := s.slab.at(slot)
	*r = rec{
		nanos:  nanos,
		seq:    seq,
		wallet: at.w.id,
		auth:   at.auth,
		reason: in.Reason,
	}
	r.setNum(amountNum, in.Amount)
	r.setNum(balanceNum, in.Balance)
	r.setNum(authBalanceNum, in.AuthorityBalance)
	if in.Item != nil || in.IdempotencyKey != "" || len(in.Metadata) > 0 {
		if r.ext == nil {
			r.ext = &recExt{}
		}
		r.ext.key = strings.Clone(in.IdempotencyKey)
		r.ext.meta = packMeta(in.Metadata)
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
	if in.TransferID != "" || in.Reverses != "" || in.ReversedBy != "" || in.Item != nil && in.Item.Revoked {
		m := r.more()
		m.transfer = strings.Clone(in.TransferID)
		m.reverses = strings.Clone(in.Reverses)
		m.reversedBy = strings.Clone(in.ReversedBy)
		m.revoked = in.Item != nil && in.Item.Revoked
	}
	if r.ext != nil && r.ext.key != "" {
		s.byKey[idemKey{r.auth, r.ext.key}] = slot
	}
	if in.HoldID != "" {
		r.flags |= hasHold
		s.entryHolds[slot] = strings.Clone(in.HoldID)
	}

	s.insertSlot(last, &s.all, slot)
	s.insertSlot(last, &at.w.entries, slot)
	if at.w.shared {
		s.insertSlot(last, &at.w.owner.all, slot)
	}
	s.insertSlot(last, &at.byAuth.all, slot)
	s.insertSlot(last, at.pair, slot)
	if in.Item != nil {
		s.insertSlot(last, &s.items, slot)
		s.insertSlot(last, &at.w.owner.items, slot)
		s.insertSlot(last, &at.byAuth.items, slot)
	}
	t.undo = append(t.undo, undo{kind: undoInsert, slot: slot})
	return nil
}

// place is where an entry is indexed: its wallet (whose owner is its
// user's indexes), its authority, interned, and the authority's indexes,
// and the index of its (authority, user) pair.
type place struct {
	w      *wallet
	auth   uint32
	byAuth *indexes
	pair   *index
}

// cachedPlace returns where an entry of user is indexed from its totals
// in ut, its wallet's currency's table, and pt, its authority's (either
// nil if there is none), which keep it once an entry of theirs is
// inserted: the ledger has just read and written both, so this costs no
// lookup of a name, wallet or pair that the totals' do not. It reports
// false if either total is not stored or keeps no place yet.
func (t *tx) cachedPlace(ut, pt *totalTable, user string) (place, bool) {
	if ut == nil || pt == nil || pt.byAuth == nil {
		return place{}, false
	}
	uc, pc := t.lookup(ut, user), t.lookup(pt, user)
	if uc == nil || pc == nil || uc.wallet == nil || pc.pair == nil {
		return place{}, false
	}
	return place{w: uc.wallet, auth: pt.auth, byAuth: pt.byAuth, pair: pc.pair}, true
}

// place returns where in is indexed, making its wallet, user, authority
// and pair indexes if they are new, and keeps it in in's totals in ut and
// pt (as cachedPlace takes them), where cachedPlace finds it.
func (s *Store) place(in *ledger.Record, ut, pt *totalTable) place {
	userName := s.names.intern(in.UserID)
	w, newWallet := s.wallet(userName, s.names.intern(in.Currency))
	wal := s.wallets.list[w]
	user := s.byUser[userName]
	if user == nil {
		user = &userIndexes{}
		s.byUser[userName] = user
	}
	if newWallet {
		wal.owner = user
		if len(user.wallets) == 1 {
			// The user's second wallet: the first's index no longer
			// serves as the user's.
			user.all.slots = slices.Clone(s.wallets.list[user.wallets[0]].entries.slots)
		}
		user.wallets = append(user.wallets, w)
		if len(user.wallets) > 1 {
			for _, o := range user.wallets {
				s.wallets.list[o].shared = true
			}
		}
	}
	at := place{w: wal, auth: s.names.intern(in.AuthorityID)}
	at.byAuth = s.byAuth[at.auth]
	if at.byAuth == nil {
		at.byAuth = &indexes{}
		s.byAuth[at.auth] = at.byAuth
	}
	at.pair = s.byPair[pairKey(at.auth, userName)]
	if at.pair == nil {
		at.pair = &index{}
		s.byPair[pairKey(at.auth, userName)] = at.pair
	}
	if ut != nil {
		if c := ut.vals[in.UserID]; c != nil {
			c.wallet = wal
		}
	}
	if pt != nil {
		pt.auth, pt.byAuth = at.auth, at.byAuth
		if c := pt.vals[in.UserID]; c != nil {
			c.pair = at.pair
		}
	}
	return at
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

func (t *tx) SetReversed(ctx context.Context, id, reversal string, revokeItem bool) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	slot, ok := t.s.lookup(id)
	if !ok {
		return ledger.ErrNotFound
	}
	r := t.s.slab.at(slot)
	// Replace the extension and its recMore rather than modify them, so
	// that the undo can put the old ones back.
	old := r.ext
	ext := &recExt{}
	if old != nil {
		*ext = *old
	}
	more := &recMore{}
	if ext.more != nil {
		*more = *ext.more
	}
	more.reversedBy = strings.Clone(reversal)
	more.revoked = more.revoked || revokeItem
	ext.more = more
	r.ext = ext
	t.undo = append(t.undo, undo{kind: undoExt, slot: slot, ext: old})
	return nil
}
