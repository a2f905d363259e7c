package memstore

import (
	"cmp"
	"context"
	"iter"
	"maps"
	"slices"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// totalTable holds the totals of one authority in one currency, with the
// users sorted. A total's Held is kept apart, and only when it is not
// zero: most totals never have one (an authority's never do), and a
// ledger.Total with it is half as large again.
type totalTable struct {
	group ledger.TotalGroup // its own copy of its key in Store.totals
	vals  map[string]*total
	held  map[string]decimal.Decimal // nil until a total has a non-zero Held
	users []string
	// The authority, interned, and its indexes, once an entry of a total
	// here is inserted (see cachedPlace).
	auth   uint32
	byAuth *indexes
}

// total is a ledger.Total without its Held, and where the entries it
// counts are indexed, once one is inserted (see cachedPlace): a
// wallet's total over all authorities keeps the wallet, an authority's
// total the index of its (authority, user) pair.
type total struct {
	value       decimal.Decimal
	lastEntryID string
	wallet      *wallet
	pair        *index
}

// get returns the total of user, and whether one is stored.
func (tt *totalTable) get(user string) (ledger.Total, bool) {
	v := tt.vals[user]
	return tt.total(user, v), v != nil
}

// total returns v, user's, as a ledger.Total: the zero Total if v is nil.
func (tt *totalTable) total(user string, v *total) ledger.Total {
	if v == nil {
		return ledger.Total{}
	}
	t := ledger.Total{Value: v.value, LastEntryID: v.lastEntryID}
	if tt.held != nil {
		t.Held = tt.held[user]
	}
	return t
}

// put stores v as user's total in p, keeping where its entries are
// indexed.
func (tt *totalTable) put(user string, p *total, v ledger.Total) {
	p.value, p.lastEntryID = v.Value, v.LastEntryID
	switch {
	case !v.Held.IsZero():
		if tt.held == nil {
			tt.held = make(map[string]decimal.Decimal)
		}
		tt.held[user] = v.Held
	case tt.held != nil:
		delete(tt.held, user)
	}
}

func (t *tx) Total(ctx context.Context, k ledger.TotalKey) (ledger.Total, bool, error) {
	if err := t.check(ctx); err != nil {
		return ledger.Total{}, false, err
	}
	if tt := t.table(groupOf(k)); tt != nil {
		v := t.lookup(tt, k.UserID)
		return tt.total(k.UserID, v), v != nil, nil
	}
	return ledger.Total{}, false, nil
}

// totalMemo holds the totals a transaction looked up last, the latest
// first. Writing an entry reads its wallet's total and its authority's,
// writes both and indexes the entry where they say, six lookups of the
// same two: the memo makes it two map lookups, not six. A total stays at
// its address while it is stored, and only a rollback removes one
// (unsetTotal clears the write transaction's memo then), so an address
// here stays valid from one transaction to the next.
type totalMemo [2]memoSlot

type memoSlot struct {
	tt   *totalTable
	user string
	v    *total
}

// lookup returns the total of user in tt, nil if there is none.
func (t *tx) lookup(tt *totalTable, user string) *total {
	m := &t.memo
	if m[0].tt == tt && m[0].user == user {
		return m[0].v
	}
	if m[1].tt == tt && m[1].user == user {
		return m[1].v
	}
	v := tt.vals[user]
	if v != nil {
		m[1], m[0] = m[0], memoSlot{tt, user, v}
	}
	return v
}

// tableCache holds the total tables a transaction used last, the latest
// first: writing an entry looks up the same two (its wallet's and its
// authority's) six times, and a few authorities writing in turn keep a
// few tables in use. Tables are never removed while the store is open,
// so a cached one stays valid from one transaction to the next.
type tableCache [4]*totalTable

// table returns the total table of g, nil if there is none.
func (t *tx) table(g ledger.TotalGroup) *totalTable {
	c := &t.tables
	for i, tt := range c {
		if tt == nil {
			break
		}
		if tt.group == g {
			if i > 1 {
				// Keep the wallet's and the authority's tables of the
				// entry being written in front.
				copy(c[1:i+1], c[:i])
				c[0] = tt
			}
			return tt
		}
	}
	tt := t.s.totals[g]
	if tt != nil {
		copy(c[1:], c[:len(c)-1])
		c[0] = tt
	}
	return tt
}

func groupOf(k ledger.TotalKey) ledger.TotalGroup {
	return ledger.TotalGroup{AuthorityID: k.AuthorityID, Currency: k.Currency}
}

func (t *tx) Totals(ctx context.Context, authorityID, currency, after string) iter.Seq2[ledger.UserTotal, error] {
	return func(yield func(ledger.UserTotal, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.UserTotal{}, err)
			return
		}
		tt := t.s.totals[ledger.TotalGroup{AuthorityID: authorityID, Currency: currency}]
		if tt == nil {
			return
		}
		i := 0
		if after != "" {
			i, _ = slices.BinarySearch(tt.users, after+"\x00")
		}
		for _, u := range tt.users[i:] {
			v, _ := tt.get(u)
			if !yield(ledger.UserTotal{UserID: u, Total: v}, nil) {
				return
			}
		}
	}
}

func (t *tx) TotalGroups(ctx context.Context) iter.Seq2[ledger.TotalGroup, error] {
	return func(yield func(ledger.TotalGroup, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.TotalGroup{}, err)
			return
		}
		for g, tt := range t.s.totals {
			// A table whose every total was rolled back is kept, empty.
			if len(tt.users) > 0 && !yield(g, nil) {
				return
			}
		}
	}
}

func (t *tx) UserTotals(ctx context.Context, userID string) iter.Seq2[ledger.CurrencyTotal, error] {
	return func(yield func(ledger.CurrencyTotal, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.CurrencyTotal{}, err)
			return
		}
		for _, cur := range t.s.userCurrencies[userID] {
			v, _ := t.s.totals[ledger.TotalGroup{Currency: cur}].get(userID)
			if !yield(ledger.CurrencyTotal{Currency: cur, Total: v}, nil) {
				return
			}
		}
	}
}

func (t *tx) SetTotal(ctx context.Context, k ledger.TotalKey, v ledger.Total) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	s := t.s
	g := groupOf(k)
	tt := t.table(g)
	if tt == nil {
		g = ledger.TotalGroup{AuthorityID: strings.Clone(g.AuthorityID), Currency: strings.Clone(g.Currency)}
		tt = &totalTable{group: g, vals: make(map[string]*total)}
		s.totals[g] = tt
	}
	p := t.lookup(tt, k.UserID)
	prev, existed := tt.total(k.UserID, p), p != nil
	if !existed {
		k.UserID = strings.Clone(k.UserID)
		p = &total{}
		tt.vals[k.UserID] = p
		tt.users = insertSorted(tt.users, k.UserID)
		if k.AuthorityID == "" {
			s.userCurrencies[k.UserID] = insertSorted(s.userCurrencies[k.UserID], strings.Clone(k.Currency))
		}
	}
	tt.put(k.UserID, p, v)
	t.undo = append(t.undo, undo{kind: undoTotal, key: k, prev: prev, existed: existed})
	return nil
}

// unsetTotal undoes a SetTotal.
func (s *Store) unsetTotal(u *undo) {
	tt := s.totals[groupOf(u.key)]
	if u.existed {
		tt.put(u.key.UserID, tt.vals[u.key.UserID], u.prev)
		return
	}
	delete(tt.vals, u.key.UserID)
	s.wtx.memo = totalMemo{}
	if tt.held != nil {
		delete(tt.held, u.key.UserID)
	}
	tt.users = removeSorted(tt.users, u.key.UserID)
	if u.key.AuthorityID == "" {
		if curs := removeSorted(s.userCurrencies[u.key.UserID], u.key.Currency); len(curs) > 0 {
			s.userCurrencies[u.key.UserID] = curs
		} else {
			delete(s.userCurrencies, u.key.UserID)
		}
	}
}

func insertSorted(list []string, v string) []string {
	i, _ := slices.BinarySearch(list, v)
	return slices.Insert(list, i, v)
}

func removeSorted(list []string, v string) []string {
	if i, ok := slices.BinarySearch(list, v); ok {
		return slices.Delete(list, i, i+1)
	}
	return list
}

// limitTable holds the stored limits, by wallet, with the wallets sorted
// by (user, currency).
type limitTable struct {
	vals map[limitKey]ledger.StoredLimits
	keys []limitKey
}

type limitKey struct{ user, currency string }

func compareLimitKeys(a, b limitKey) int {
	return cmp.Or(strings.Compare(a.user, b.user), strings.Compare(a.currency, b.currency))
}

// copyLimits returns l with its own Cap, which the caller may modify,
// and SetOn in UTC.
func copyLimits(l ledger.StoredLimits) ledger.StoredLimits {
	if l.Cap != nil {
		c := *l.Cap
		l.Cap = &c
	}
	l.SetOn = l.SetOn.UTC()
	return l
}

func (t *tx) Limits(ctx context.Context, userID, currency string) (ledger.StoredLimits, bool, error) {
	if err := t.check(ctx); err != nil {
		return ledger.StoredLimits{}, false, err
	}
	l, ok := t.s.limits.vals[limitKey{userID, currency}]
	if !ok {
		return ledger.StoredLimits{}, false, nil
	}
	return copyLimits(l), true, nil
}

func (t *tx) UserLimits(ctx context.Context, userID string) iter.Seq2[ledger.StoredLimits, error] {
	return func(yield func(ledger.StoredLimits, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.StoredLimits{}, err)
			return
		}
		lt := &t.s.limits
		i, _ := slices.BinarySearchFunc(lt.keys, limitKey{user: userID}, compareLimitKeys)
		for ; i < len(lt.keys) && lt.keys[i].user == userID; i++ {
			if !yield(copyLimits(lt.vals[lt.keys[i]]), nil) {
				return
			}
		}
	}
}

func (t *tx) AllLimits(ctx context.Context) iter.Seq2[ledger.StoredLimits, error] {
	return func(yield func(ledger.StoredLimits, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.StoredLimits{}, err)
			return
		}
		lt := &t.s.limits
		for i := 0; i < len(lt.keys); i++ {
			if !yield(copyLimits(lt.vals[lt.keys[i]]), nil) {
				return
			}
		}
	}
}

func (t *tx) SetLimits(ctx context.Context, l ledger.StoredLimits) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	lt := &t.s.limits
	k := limitKey{l.UserID, l.Currency}
	u := undo{kind: undoLimits, key: ledger.TotalKey{UserID: l.UserID, Currency: l.Currency}}
	if prev, ok := lt.vals[k]; ok {
		u.existed, u.prevLim = true, &prev
	} else {
		k = limitKey{strings.Clone(k.user), strings.Clone(k.currency)}
		i, _ := slices.BinarySearchFunc(lt.keys, k, compareLimitKeys)
		lt.keys = slices.Insert(lt.keys, i, k)
	}
	l = copyLimits(l)
	l.UserID, l.Currency, l.SetBy = k.user, k.currency, strings.Clone(l.SetBy)
	lt.vals[k] = l
	t.undo = append(t.undo, u)
	return nil
}

// unsetLimits undoes a SetLimits.
func (s *Store) unsetLimits(u *undo) {
	lt := &s.limits
	k := limitKey{u.key.UserID, u.key.Currency}
	if u.existed {
		lt.vals[k] = *u.prevLim
		return
	}
	delete(lt.vals, k)
	if i, ok := slices.BinarySearchFunc(lt.keys, k, compareLimitKeys); ok {
		lt.keys = slices.Delete(lt.keys, i, i+1)
	}
}

// packMeta packs metadata into one string, so that an entry's metadata
// costs one allocation, not a map's: for each key, in ascending order,
// the key's length and the value's length as uvarints, then the key and
// the value. Empty metadata packs as "".
func packMeta(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	n := 0
	for k, v := range m {
		n += len(k) + len(v) + 4
	}
	b := make([]byte, 0, n)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		b = appendUvarint(b, len(k))
		b = appendUvarint(b, len(v))
		b = append(b, k...)
		b = append(b, v...)
	}
	return string(b)
}

// unpackMeta returns a new map of the metadata packed in p, nil for "".
// Its strings share p's memory, which is never modified.
func unpackMeta(p string) map[string]string {
	if p == "" {
		return nil
	}
	m := make(map[string]string)
	for len(p) > 0 {
		var kn, vn int
		kn, p = readUvarint(p)
		vn, p = readUvarint(p)
		m[p[:kn]] = p[kn : kn+vn]
		p = p[kn+vn:]
	}
	return m
}

func appendUvarint(b []byte, n int) []byte {
	for ; n >= 0x80; n >>= 7 {
		b = append(b, byte(n)|0x80)
	}
	return append(b, byte(n))
}

func readUvarint(p string) (int, string) {
	n, shift := 0, 0
	for i := 0; ; i++ {
		c := p[i]
		n |= int(c&0x7f) << shift
		if c < 0x80 {
			return n, p[i+1:]
		}
		shift += 7
	}
}
