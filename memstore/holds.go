package memstore

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/walletledger/ledger"
)

// holdTable holds the holds. Each is one *ledger.HoldRecord, the store's
// own copy, that every index points to; only CloseHold modifies it, and
// a read returns a copy.
type holdTable struct {
	all      holdList   // by ID
	expiring expiryList // the active holds that expire, by (Expires, ID)
	byKey    map[holdKey]*ledger.HoldRecord
	byUser   map[string]*userHolds
}

type holdKey struct{ authority, key string }

// userHolds holds one user's holds, all of them and per currency.
type userHolds struct {
	all     holdList
	wallets map[string]*walletHolds
}

// walletHolds holds one wallet's holds, and those of them that are active
// and expire.
type walletHolds struct {
	all      holdList
	expiring expiryList
}

func newHoldTable() holdTable {
	return holdTable{byKey: make(map[holdKey]*ledger.HoldRecord), byUser: make(map[string]*userHolds)}
}

// holdList is a list of holds sorted by ID. New IDs usually sort last,
// so adding one is usually an append.
type holdList []*ledger.HoldRecord

func compareID(h *ledger.HoldRecord, id string) int { return strings.Compare(h.ID, id) }

// find returns the hold with the given ID.
func (l holdList) find(id string) (*ledger.HoldRecord, bool) {
	if i, found := slices.BinarySearchFunc(l, id, compareID); found {
		return l[i], true
	}
	return nil, false
}

// after returns the position of the first hold whose ID sorts after id.
func (l holdList) after(id string) int {
	i, found := slices.BinarySearchFunc(l, id, compareID)
	if found {
		i++
	}
	return i
}

func (l *holdList) insert(h *ledger.HoldRecord) {
	if n := len(*l); n == 0 || (*l)[n-1].ID < h.ID {
		*l = append(*l, h)
		return
	}
	i, _ := slices.BinarySearchFunc(*l, h.ID, compareID)
	*l = slices.Insert(*l, i, h)
}

func (l *holdList) remove(h *ledger.HoldRecord) {
	if i, found := slices.BinarySearchFunc(*l, h.ID, compareID); found {
		*l = slices.Delete(*l, i, i+1)
	}
}

// expiryList is a list of active holds that expire, sorted by (Expires,
// ID).
type expiryList []*ledger.HoldRecord

func compareExpiry(a, b *ledger.HoldRecord) int {
	return cmp.Or(a.Expires.Compare(b.Expires), strings.Compare(a.ID, b.ID))
}

// after returns the position of the first hold that sorts after h.
func (l expiryList) after(h *ledger.HoldRecord) int {
	i, found := slices.BinarySearchFunc(l, h, compareExpiry)
	if found {
		i++
	}
	return i
}

func (l *expiryList) insert(h *ledger.HoldRecord) {
	i, _ := slices.BinarySearchFunc(*l, h, compareExpiry)
	*l = slices.Insert(*l, i, h)
}

// remove removes h and reports whether it was there.
func (l *expiryList) remove(h *ledger.HoldRecord) bool {
	i, found := slices.BinarySearchFunc(*l, h, compareExpiry)
	if found {
		*l = slices.Delete(*l, i, i+1)
	}
	return found
}

// expires reports whether h belongs in the expiry indexes.
func expires(h *ledger.HoldRecord) bool {
	return h.State == ledger.HoldActive && !h.Expires.IsZero()
}

// copyHold returns h with memory of its own: a copy of its metadata,
// its strings cloned (so that the store keeps no caller's larger
// buffer), its times in UTC.
func copyHold(h ledger.HoldRecord) *ledger.HoldRecord {
	out := h
	out.ID = strings.Clone(h.ID)
	out.AuthorityID = strings.Clone(h.AuthorityID)
	out.UserID = strings.Clone(h.UserID)
	out.Currency = strings.Clone(h.Currency)
	out.Reason = strings.Clone(h.Reason)
	out.EntryID = strings.Clone(h.EntryID)
	out.IdempotencyKey = strings.Clone(h.IdempotencyKey)
	out.Metadata = cloneMeta(h.Metadata)
	out.CreatedOn, out.Expires, out.ClosedOn = h.CreatedOn.UTC(), h.Expires.UTC(), h.ClosedOn.UTC()
	return &out
}

// holdRecord returns the stored h as a record its caller may modify.
func holdRecord(h *ledger.HoldRecord) ledger.HoldRecord {
	out := *h
	out.Metadata = cloneMeta(h.Metadata)
	return out
}

func cloneMeta(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// wallet returns the indexes of the user and of the wallet (user,
// currency), making them if create is set; otherwise either is nil if
// there is none.
func (ht *holdTable) wallet(user, currency string, create bool) (*userHolds, *walletHolds) {
	u := ht.byUser[user]
	if u == nil {
		if !create {
			return nil, nil
		}
		u = &userHolds{wallets: make(map[string]*walletHolds)}
		ht.byUser[strings.Clone(user)] = u
	}
	w := u.wallets[currency]
	if w == nil && create {
		w = &walletHolds{}
		u.wallets[strings.Clone(currency)] = w
	}
	return u, w
}

func (t *tx) Hold(ctx context.Context, id string) (ledger.HoldRecord, error) {
	if err := t.check(ctx); err != nil {
		return ledger.HoldRecord{}, err
	}
	if h, ok := t.s.holds.all.find(id); ok {
		return holdRecord(h), nil
	}
	return ledger.HoldRecord{}, ledger.ErrNotFound
}

func (t *tx) HoldByIdempotencyKey(ctx context.Context, authorityID, key string) (ledger.HoldRecord, error) {
	if err := t.check(ctx); err != nil {
		return ledger.HoldRecord{}, err
	}
	if h, ok := t.s.holds.byKey[holdKey{authorityID, key}]; ok {
		return holdRecord(h), nil
	}
	return ledger.HoldRecord{}, ledger.ErrNotFound
}

func (t *tx) Holds(ctx context.Context, sc ledger.HoldScan) iter.Seq2[ledger.HoldRecord, error] {
	return func(yield func(ledger.HoldRecord, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.HoldRecord{}, err)
			return
		}
		ht := &t.s.holds
		// The list that serves sc, and whether it must still be filtered
		// by currency. It is looked up again after each yield, and the
		// walk seeks past the last hold yielded, so that the caller may
		// write in the transaction between two holds.
		list := func() holdList { return ht.all }
		filter := !sc.AnyCurrency
		if sc.UserID != "" {
			filter = false
			if sc.AnyCurrency {
				list = func() holdList {
					if u := ht.byUser[sc.UserID]; u != nil {
						return u.all
					}
					return nil
				}
			} else {
				list = func() holdList {
					if _, w := ht.wallet(sc.UserID, sc.Currency, false); w != nil {
						return w.all
					}
					return nil
				}
			}
		}
		after := sc.After
		for {
			l := list()
			i := 0
			if after != "" {
				i = l.after(after)
			}
			for ; i < len(l) && filter && l[i].Currency != sc.Currency; i++ {
			}
			if i == len(l) {
				return
			}
			after = l[i].ID
			if !yield(holdRecord(l[i]), nil) {
				return
			}
		}
	}
}

func (t *tx) ExpiringHolds(ctx context.Context, userID, currency string, until time.Time) iter.Seq2[ledger.HoldRecord, error] {
	return func(yield func(ledger.HoldRecord, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.HoldRecord{}, err)
			return
		}
		ht := &t.s.holds
		list := func() expiryList { return ht.expiring }
		if userID != "" {
			list = func() expiryList {
				if _, w := ht.wallet(userID, currency, false); w != nil {
					return w.expiring
				}
				return nil
			}
		}
		// As in Holds, each step seeks past the last hold yielded: the
		// caller may close the holds it is given as it goes (closing
		// changes neither Expires nor ID, so last still seeks right).
		var last *ledger.HoldRecord
		for {
			l := list()
			i := 0
			if last != nil {
				i = l.after(last)
			}
			if i == len(l) || l[i].Expires.After(until) {
				return
			}
			last = l[i]
			if !yield(holdRecord(l[i]), nil) {
				return
			}
		}
	}
}

func (t *tx) InsertHold(ctx context.Context, in ledger.HoldRecord) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	ht := &t.s.holds
	if _, dup := ht.all.find(in.ID); dup {
		return fmt.Errorf("memstore: hold %s exists", in.ID)
	}
	if in.IdempotencyKey != "" {
		if _, dup := ht.byKey[holdKey{in.AuthorityID, in.IdempotencyKey}]; dup {
			return fmt.Errorf("memstore: hold idempotency key %q of authority %q exists", in.IdempotencyKey, in.AuthorityID)
		}
	}
	h := copyHold(in)
	ht.all.insert(h)
	if h.IdempotencyKey != "" {
		ht.byKey[holdKey{h.AuthorityID, h.IdempotencyKey}] = h
	}
	u, w := ht.wallet(h.UserID, h.Currency, true)
	u.all.insert(h)
	w.all.insert(h)
	if expires(h) {
		ht.expiring.insert(h)
		w.expiring.insert(h)
	}
	t.undo = append(t.undo, undo{kind: undoInsertHold, hold: h})
	return nil
}

// uninsertHold undoes an InsertHold.
func (s *Store) uninsertHold(h *ledger.HoldRecord) {
	ht := &s.holds
	ht.all.remove(h)
	if h.IdempotencyKey != "" {
		delete(ht.byKey, holdKey{h.AuthorityID, h.IdempotencyKey})
	}
	u, w := ht.wallet(h.UserID, h.Currency, false)
	u.all.remove(h)
	w.all.remove(h)
	ht.expiring.remove(h)
	w.expiring.remove(h)
}

func (t *tx) CloseHold(ctx context.Context, id string, c ledger.HoldClose) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	ht := &t.s.holds
	h, ok := ht.all.find(id)
	if !ok {
		return ledger.ErrNotFound
	}
	u := undo{kind: undoCloseHold, hold: h, close: &ledger.HoldClose{State: h.State, ClosedOn: h.ClosedOn, EntryID: h.EntryID}}
	// Leave the expiry indexes before the state changes: they find h by
	// (Expires, ID), which closing does not change, but only active holds
	// are in them.
	_, w := ht.wallet(h.UserID, h.Currency, false)
	u.existed = ht.expiring.remove(h)
	w.expiring.remove(h)
	h.State, h.ClosedOn, h.EntryID = c.State, c.ClosedOn.UTC(), strings.Clone(c.EntryID)
	t.undo = append(t.undo, u)
	return nil
}

// uncloseHold undoes a CloseHold.
func (s *Store) uncloseHold(u *undo) {
	h := u.hold
	h.State, h.ClosedOn, h.EntryID = u.close.State, u.close.ClosedOn, u.close.EntryID
	if u.existed {
		_, w := s.holds.wallet(h.UserID, h.Currency, false)
		s.holds.expiring.insert(h)
		w.expiring.insert(h)
	}
}
