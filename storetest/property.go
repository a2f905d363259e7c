package storetest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"

	"github.com/walletledger/ledger"
)

// runProperty drives random operations through a ledger over the store
// and a plain model side by side, checking every answer against the model
// and, after every step, that no wallet is negative, that every total is
// the sum of its entries and that Verify agrees.
func runProperty(t *testing.T, ns NewStore) {
	rapid.Check(t, func(rt *rapid.T) {
		s := ns(t)
		clk := newClock()
		clk.step = time.Millisecond
		l, err := ledger.New(s, ledger.WithClock(clk.Now))
		if err != nil {
			_ = s.Close()
			rt.Fatalf("New: %v", err)
		}
		defer l.Close()
		m := &model{l: l, keys: map[[2]string]int{}}
		rt.Repeat(map[string]func(*rapid.T){
			"create":    m.create,
			"batch":     m.batch,
			"use":       m.use,
			"wallets":   m.wallets,
			"asOf":      m.asOf,
			"inventory": m.inventory,
			"entries":   m.history,
			"":          m.check,
		})
	})
}

var (
	pAuths   = []string{"a1", "a2", "a3"}
	pUsers   = []string{"u1", "u2", "u3", "u4"}
	pKeys    = []string{"k1", "k2", "k3"}
	pNames   = []string{"soda", "shades"}
	pData    = []string{"", `[1, 2]`, `{"a": [true, null]}`, `"s"`}
	pAfterID = []string{"", "u", "u2", "u25", "v"}
)

// model is the plain-Go model: the list of entries, with used flags kept
// current, and the idempotency keys.
type model struct {
	l       *ledger.Ledger
	entries []ledger.Entry
	keys    map[[2]string]int // (authority, key) -> index in entries
}

func (m *model) ctx() context.Context { return context.Background() }

func drawNewEntry(rt *rapid.T) ledger.NewEntry {
	ne := ledger.NewEntry{
		AuthorityID: rapid.SampledFrom(pAuths).Draw(rt, "authority"),
		UserID:      rapid.SampledFrom(pUsers).Draw(rt, "user"),
		Amount:      decimal.New(int64(rapid.IntRange(-6000, 10000).Draw(rt, "cents")), -2),
		Reason:      rapid.SampledFrom([]string{"r1", "r2"}).Draw(rt, "reason"),
	}
	if rapid.Bool().Draw(rt, "item") {
		ne.Item = &ledger.Item{Name: rapid.SampledFrom(pNames).Draw(rt, "name")}
		if d := rapid.SampledFrom(pData).Draw(rt, "data"); d != "" {
			ne.Item.Data = []byte(d)
		}
	}
	if rapid.IntRange(0, 2).Draw(rt, "keyed") == 0 {
		ne.IdempotencyKey = rapid.SampledFrom(pKeys).Draw(rt, "key")
	}
	return ne
}

// total sums the user's entries among es that count: by authority when
// auths is set, and created at or before asOf when it is set.
func total(es []ledger.Entry, user string, auths []string, asOf time.Time) (decimal.Decimal, bool) {
	sum, counted := decimal.Zero, false
	for _, e := range es {
		if e.UserID == user && (len(auths) == 0 || slices.Contains(auths, e.AuthorityID)) &&
			(asOf.IsZero() || !e.CreatedOn.After(asOf)) {
			sum, counted = sum.Add(e.Amount), true
		}
	}
	return sum, counted
}

type outcome int

const (
	written outcome = iota
	replayed
	conflict
	noFunds
)

// predict says what the ledger must do with ne after entries, whose
// idempotency keys are keys; for a replay it also returns the index of the
// original among entries.
func predict(entries []ledger.Entry, keys map[[2]string]int, ne ledger.NewEntry) (outcome, int) {
	if ne.IdempotencyKey != "" {
		if i, ok := keys[[2]string{ne.AuthorityID, ne.IdempotencyKey}]; ok {
			e := entries[i]
			same := ne.UserID == e.UserID && ne.Amount.Equal(e.Amount) && ne.Reason == e.Reason && (ne.Item == nil) == (e.Item == nil) &&
				(e.Item == nil || ne.Item.Name == e.Item.Name && bytes.Equal(ne.Item.Data, e.Item.Data))
			if same {
				return replayed, i
			}
			return conflict, i
		}
	}
	sum, _ := total(entries, ne.UserID, nil, time.Time{})
	if ne.Amount.IsNegative() && sum.Add(ne.Amount).IsNegative() {
		return noFunds, 0
	}
	return written, 0
}

// checkWritten checks an entry the ledger wrote for ne and adds it to the
// model.
func (m *model) checkWritten(rt *rapid.T, ne ledger.NewEntry, e ledger.Entry) {
	if n := len(m.entries); n > 0 && e.ID <= m.entries[n-1].ID {
		rt.Fatalf("entry ID %s does not sort after %s", e.ID, m.entries[n-1].ID)
	}
	want, _ := total(m.entries, ne.UserID, nil, time.Time{})
	want = want.Add(ne.Amount)
	if e.UserID != ne.UserID || e.AuthorityID != ne.AuthorityID || !e.Amount.Equal(ne.Amount) || e.Reason != ne.Reason ||
		!e.Balance.Equal(want) || (e.Item == nil) != (ne.Item == nil) ||
		e.Item != nil && (e.Item.Name != ne.Item.Name || e.Item.Used || !bytes.Equal(e.Item.Data, ne.Item.Data)) {
		rt.Fatalf("wrote %+v for %+v (want balance %s)", e, ne, want)
	}
	if ne.IdempotencyKey != "" {
		m.keys[[2]string{ne.AuthorityID, ne.IdempotencyKey}] = len(m.entries)
	}
	m.entries = append(m.entries, e)
}

func (m *model) create(rt *rapid.T) {
	ne := drawNewEntry(rt)
	want, orig := predict(m.entries, m.keys, ne)
	e, err := m.l.CreateEntry(m.ctx(), ne)
	switch want {
	case written:
		if err != nil {
			rt.Fatalf("CreateEntry(%+v): %v", ne, err)
		}
		m.checkWritten(rt, ne, e)
	case replayed:
		if err != nil || e.ID != m.entries[orig].ID || !e.CreatedOn.Equal(m.entries[orig].CreatedOn) {
			rt.Fatalf("retry of %s: got %+v, %v", m.entries[orig].ID, e, err)
		}
	case conflict:
		if !errors.Is(err, ledger.ErrIdempotencyConflict) {
			rt.Fatalf("conflicting retry: got %+v, %v", e, err)
		}
	case noFunds:
		var nef *ledger.NotEnoughFundsError
		bal, _ := total(m.entries, ne.UserID, nil, time.Time{})
		if !errors.As(err, &nef) || !nef.Balance.Equal(bal) {
			rt.Fatalf("overdraft %+v: got %+v, %v (balance %s)", ne, e, err, bal)
		}
	}
}

// batch writes 1 to 4 entries in one batch, sometimes repeating an entry
// (and so its idempotency key) within the batch.
func (m *model) batch(rt *rapid.T) {
	n := rapid.IntRange(1, 4).Draw(rt, "size")
	batch := make([]ledger.NewEntry, n)
	for i := range batch {
		batch[i] = drawNewEntry(rt)
		if i > 0 && rapid.IntRange(0, 4).Draw(rt, "repeat") == 0 {
			batch[i] = batch[rapid.IntRange(0, i-1).Draw(rt, "of")]
		}
	}
	// Predict entry by entry on a scratch copy of the model, which then
	// lists entries in the order the ledger must write them.
	scratch, keys := slices.Clone(m.entries), maps.Clone(m.keys)
	outcomes, origs := make([]outcome, n), make([]int, n)
	failAt := -1
	for i, ne := range batch {
		outcomes[i], origs[i] = predict(scratch, keys, ne)
		if outcomes[i] == conflict || outcomes[i] == noFunds {
			failAt = i
			break
		}
		if outcomes[i] == written {
			if ne.IdempotencyKey != "" {
				keys[[2]string{ne.AuthorityID, ne.IdempotencyKey}] = len(scratch)
			}
			scratch = append(scratch, ledger.Entry{AuthorityID: ne.AuthorityID, UserID: ne.UserID, Amount: ne.Amount, Reason: ne.Reason, Item: ne.Item})
		}
	}
	es, err := m.l.CreateEntries(m.ctx(), batch)
	if failAt >= 0 {
		var ee *ledger.EntryError
		wantErr := ledger.ErrNotEnoughFunds
		if outcomes[failAt] == conflict {
			wantErr = ledger.ErrIdempotencyConflict
		}
		if !errors.As(err, &ee) || ee.Index != failAt || !errors.Is(err, wantErr) {
			rt.Fatalf("batch failing at %d with %v: got %v", failAt, wantErr, err)
		}
		return
	}
	if err != nil || len(es) != n {
		rt.Fatalf("batch: got %d entries, %v", len(es), err)
	}
	for i, ne := range batch {
		if outcomes[i] == written {
			m.checkWritten(rt, ne, es[i])
		} else if want := m.entries[origs[i]]; es[i].ID != want.ID {
			rt.Fatalf("batch entry %d: replay returned %s, want %s", i, es[i].ID, want.ID)
		}
	}
}

func (m *model) use(rt *rapid.T) {
	id := "000000000000000000000000"
	i := -1
	if len(m.entries) > 0 && rapid.IntRange(0, 5).Draw(rt, "bogus") > 0 {
		i = rapid.IntRange(0, len(m.entries)-1).Draw(rt, "entry")
		id = m.entries[i].ID
	}
	e, err := m.l.UseItem(m.ctx(), rapid.SampledFrom(pAuths).Draw(rt, "authority"), id)
	switch {
	case i < 0:
		if !errors.Is(err, ledger.ErrNotFound) {
			rt.Fatalf("UseItem(unknown): %v", err)
		}
	case m.entries[i].Item == nil:
		if !errors.Is(err, ledger.ErrNoItem) {
			rt.Fatalf("UseItem(no item): %v", err)
		}
	case m.entries[i].Item.Used:
		if !errors.Is(err, ledger.ErrItemUsed) {
			rt.Fatalf("UseItem(used): %v", err)
		}
	default:
		if err != nil || e.ID != id || !e.Item.Used {
			rt.Fatalf("UseItem: %+v, %v", e, err)
		}
		it := *m.entries[i].Item
		it.Used = true
		m.entries[i].Item = &it
	}
}

func drawSubset(rt *rapid.T, from []string, label string) []string {
	return rapid.SliceOfDistinct(rapid.SampledFrom(from), rapid.ID[string]).Filter(func(s []string) bool { return len(s) <= 3 }).Draw(rt, label)
}

// wantWallets computes WalletQuery's answer from the model.
func (m *model) wantWallets(q ledger.WalletQuery) []string {
	users := q.UserIDs
	if len(users) == 0 {
		for _, e := range m.entries {
			users = append(users, e.UserID)
		}
	}
	users = slices.Compact(slices.Sorted(slices.Values(users)))
	out := []string{}
	for _, u := range users {
		if u <= q.After || q.Limit > 0 && len(out) == q.Limit {
			continue
		}
		sum, counted := total(m.entries, u, q.AuthorityIDs, q.AsOf)
		if counted || len(q.UserIDs) > 0 {
			out = append(out, u+"="+sum.String())
		}
	}
	return out
}

func (m *model) compareWallets(rt *rapid.T, q ledger.WalletQuery) {
	ws, err := m.l.Wallets(m.ctx(), q)
	if err != nil {
		rt.Fatalf("Wallets(%+v): %v", q, err)
	}
	got := []string{}
	for _, w := range ws {
		got = append(got, w.UserID+"="+w.Total.String())
	}
	if want := m.wantWallets(q); !slices.Equal(got, want) {
		rt.Fatalf("Wallets(%+v): got %v, want %v", q, got, want)
	}
}

func (m *model) wallets(rt *rapid.T) {
	m.compareWallets(rt, ledger.WalletQuery{
		UserIDs:      drawSubset(rt, pUsers, "users"),
		AuthorityIDs: drawSubset(rt, pAuths, "authorities"),
		After:        rapid.SampledFrom(pAfterID).Draw(rt, "after"),
		Limit:        rapid.IntRange(0, 3).Draw(rt, "limit"),
	})
}

func (m *model) asOf(rt *rapid.T) {
	if len(m.entries) == 0 {
		return
	}
	at := m.entries[rapid.IntRange(0, len(m.entries)-1).Draw(rt, "at")].CreatedOn
	at = at.Add(time.Duration(rapid.IntRange(-1, 1).Draw(rt, "nudge")))
	m.compareWallets(rt, ledger.WalletQuery{
		UserIDs:      drawSubset(rt, pUsers, "users"),
		AuthorityIDs: drawSubset(rt, pAuths, "authorities"),
		After:        rapid.SampledFrom(pAfterID).Draw(rt, "after"),
		Limit:        rapid.IntRange(0, 3).Draw(rt, "limit"),
		AsOf:         at,
	})
}

func (m *model) drawEntryIDs(rt *rapid.T) []string {
	if len(m.entries) == 0 || rapid.Bool().Draw(rt, "byID") {
		return nil
	}
	var ids []string
	for range rapid.IntRange(1, 3).Draw(rt, "nIDs") {
		ids = append(ids, m.entries[rapid.IntRange(0, len(m.entries)-1).Draw(rt, "id")].ID)
	}
	return append(ids, "ffffffffffffffffffffffff")
}

func (m *model) inventory(rt *rapid.T) {
	q := ledger.InventoryQuery{
		EntryIDs:     m.drawEntryIDs(rt),
		UserIDs:      drawSubset(rt, pUsers, "users"),
		AuthorityIDs: drawSubset(rt, pAuths, "authorities"),
		Used:         ledger.UsedFilter(rapid.IntRange(0, 2).Draw(rt, "used")),
		Limit:        rapid.IntRange(0, 3).Draw(rt, "limit"),
	}
	if len(m.entries) > 0 && rapid.Bool().Draw(rt, "paged") {
		q.After = m.entries[rapid.IntRange(0, len(m.entries)-1).Draw(rt, "after")].ID
	}
	want := []ledger.InventoryItem{}
	for _, e := range m.entries {
		if e.Item == nil || e.ID <= q.After || q.Limit > 0 && len(want) == q.Limit ||
			len(q.EntryIDs) > 0 && !slices.Contains(q.EntryIDs, e.ID) ||
			len(q.UserIDs) > 0 && !slices.Contains(q.UserIDs, e.UserID) ||
			len(q.AuthorityIDs) > 0 && !slices.Contains(q.AuthorityIDs, e.AuthorityID) ||
			q.Used == ledger.UnusedOnly && e.Item.Used || q.Used == ledger.UsedOnly && !e.Item.Used {
			continue
		}
		want = append(want, ledger.InventoryItem{EntryID: e.ID, AuthorityID: e.AuthorityID, UserID: e.UserID, Item: *e.Item})
	}
	got, err := m.l.Inventory(m.ctx(), q)
	if err != nil {
		rt.Fatalf("Inventory(%+v): %v", q, err)
	}
	if len(got) != len(want) {
		rt.Fatalf("Inventory(%+v): got %d items, want %d", q, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.EntryID != w.EntryID || g.UserID != w.UserID || g.AuthorityID != w.AuthorityID ||
			g.Item.Name != w.Item.Name || g.Item.Used != w.Item.Used || !bytes.Equal(g.Item.Data, w.Item.Data) {
			rt.Fatalf("Inventory(%+v)[%d]: got %+v, want %+v", q, i, g, w)
		}
	}
}

// history pages through history with a random page size and compares the
// pages, joined, with the model.
func (m *model) history(rt *rapid.T) {
	q := ledger.EntryQuery{
		EntryIDs:     m.drawEntryIDs(rt),
		UserIDs:      drawSubset(rt, pUsers, "users"),
		AuthorityIDs: drawSubset(rt, pAuths, "authorities"),
		Limit:        rapid.IntRange(1, 4).Draw(rt, "limit"),
	}
	if len(m.entries) > 0 && rapid.Bool().Draw(rt, "since") {
		q.Since = m.entries[rapid.IntRange(0, len(m.entries)-1).Draw(rt, "sinceAt")].CreatedOn
	}
	var want []ledger.Entry
	for _, e := range m.entries {
		if (len(q.EntryIDs) == 0 || slices.Contains(q.EntryIDs, e.ID)) &&
			(len(q.UserIDs) == 0 || slices.Contains(q.UserIDs, e.UserID)) &&
			(len(q.AuthorityIDs) == 0 || slices.Contains(q.AuthorityIDs, e.AuthorityID)) &&
			!e.CreatedOn.Before(q.Since) {
			want = append(want, e)
		}
	}
	var got []ledger.Entry
	for {
		page, err := m.l.Entries(m.ctx(), q)
		if err != nil {
			rt.Fatalf("Entries(%+v): %v", q, err)
		}
		got = append(got, page...)
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1].ID
	}
	if len(got) != len(want) {
		rt.Fatalf("Entries: got %d, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || !g.Balance.Equal(w.Balance) || !g.CreatedOn.Equal(w.CreatedOn) || (g.Item == nil) != (w.Item == nil) ||
			g.Item != nil && g.Item.Used != w.Item.Used {
			rt.Fatalf("Entries[%d]: got %+v, want %+v", i, g, w)
		}
	}
}

// check holds after every step.
func (m *model) check(rt *rapid.T) {
	ws, err := m.l.Wallets(m.ctx(), ledger.WalletQuery{})
	if err != nil {
		rt.Fatal(err)
	}
	for _, w := range ws {
		if w.Total.IsNegative() {
			rt.Fatalf("wallet %s is negative: %s", w.UserID, w.Total)
		}
	}
	m.compareWallets(rt, ledger.WalletQuery{})
	m.compareWallets(rt, ledger.WalletQuery{AuthorityIDs: pAuths[:1]})
	if err := m.l.Verify(m.ctx()); err != nil {
		rt.Fatal(err)
	}
}
