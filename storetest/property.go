package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
// and, after every step, that every wallet's total, held amount, balance
// and limits are the model's, that no spend or hold took a wallet's
// Available below the floor in force when it was made, that every
// currency's holds are the model's as they stand now, and that Verify
// agrees; and that the change feed is the model's own list of
// changes (see checkFeed).
//
// The model follows the rules of the issues that brought currencies,
// limits, transfers and reversals (issue 11), holds (issue 12) and the
// change feed (issue 13), not the ledger's code: it computes every answer
// from its own lists of entries, holds and changes. It owns the clock,
// which moves only when the model moves it (a small drawn step before each
// operation, and the advance operation), so that it knows at every call
// which holds are due. Each check draws whether the ledger sweeps expiries
// in the background (every millisecond of real time) or never: the answers
// must be the same. Each also draws the page size in which the ledger
// reads the feed: small, so that reads cross pages, or the default. One
// rapid check makes one store, so a store that is slow to create (pgstore
// makes a schema) pays for it 100 times (rapid's default -rapid.checks),
// as it always has; the model adds operations, not checks.
func runProperty(t *testing.T, ns NewStore) {
	rapid.Check(t, func(rt *rapid.T) {
		s := ns(t)
		clk := newManualClock()
		sweep := time.Duration(0)
		if rapid.Bool().Draw(rt, "sweep") {
			sweep = time.Millisecond
		}
		// A small page makes the feed's reads cross pages.
		page := rapid.SampledFrom([]int{4, ledger.DefaultPageSize, ledger.DefaultPageSize}).Draw(rt, "pageSize")
		l, err := ledger.New(s, ledger.WithClock(clk.Now), ledger.WithHoldSweep(sweep), ledger.WithPageSize(page))
		if err != nil {
			_ = s.Close()
			rt.Fatalf("New: %v", err)
		}
		defer l.Close()
		m := &model{l: l, clk: clk, now: clk.Now(), sweep: sweep > 0, keys: map[[2]string]int{}, limits: map[wallet]ledger.WalletLimits{},
			availAtLimits: map[wallet]decimal.Decimal{}, holdKeys: map[[2]string]int{}, holdIndex: map[string]int{}}
		// Each operation but advance first moves the clock a little.
		step := func(op func(*rapid.T)) func(*rapid.T) {
			return func(rt *rapid.T) {
				m.tick(rt)
				op(rt)
			}
		}
		rt.Repeat(map[string]func(*rapid.T){
			"create":   step(m.create),
			"batch":    step(m.batch),
			"use":      step(m.use),
			"limits":   step(m.setLimits),
			"transfer": step(m.transfer),
			"reverse":  step(m.reverse),
			"retry":    step(m.retry),
			"query":    step(m.query),
			"hold":     step(m.hold),
			"capture":  step(m.capture),
			"release":  step(m.release),
			"advance":  m.advance,
			"":         m.check,
		})
	})
}

var (
	pAuths      = []string{"a1", "a2", "a3"}
	pUsers      = []string{"u1", "u2", "u3", "u4"}
	pCurrencies = []string{"", "gems", "coins"}
	pKeys       = []string{"k1", "k2", "k3"}
	pNames      = []string{"soda", "shades"}
	pData       = []string{"", `[1, 2]`, `{"a": [true, null]}`, `"s"`}
	pAfterID    = []string{"", "u", "u2", "u25", "v"}
	pMetadata   = []map[string]string{nil, {"order": "o1"}, {"order": "o2", "match": "m1"}, {"é": ""}}
)

// wallet names one wallet: a user's, in a currency.
type wallet struct{ user, currency string }

// mEntry is the model's copy of a written entry, kept current (its
// item's use and revocation, its ReversedBy), with what the model needs
// besides.
type mEntry struct {
	ledger.Entry
	// key is the idempotency key it was written with, if any.
	key string
	// useKey is the idempotency key its item was used with, if any.
	useKey string
	// limits are its wallet's limits when it was written: the ledger had
	// to respect them.
	limits ledger.WalletLimits
	// held is what its wallet's holds held when it was written: a spend
	// could not use it.
	held decimal.Decimal
}

// model is the plain-Go model: the clock, the list of entries, the list
// of holds, the idempotency keys of each, each wallet's limits, and the
// list of changes its writes made.
type model struct {
	l   *ledger.Ledger
	clk *manualClock
	// now is the ledger clock's reading until the model moves it.
	now time.Time
	// sweep says whether the ledger records expiries in the background.
	sweep   bool
	entries []mEntry
	keys    map[[2]string]int // (authority, key) -> index in entries
	limits  map[wallet]ledger.WalletLimits
	// availAtLimits is each wallet's Available when its limits were last
	// set: a raised floor may leave a wallet below it, and then only
	// what is not a spend can move it.
	availAtLimits map[wallet]decimal.Decimal
	holds         []mHold
	holdKeys      map[[2]string]int // (authority, key) -> index in holds
	holdIndex     map[string]int    // hold ID -> index in holds
	// changes are the changes the model's writes made, in the order it
	// made them; the sweep's expiries are not among them (see
	// requireFeed).
	changes []mChange
}

func (m *model) ctx() context.Context { return context.Background() }

// cloneItem copies it, so that the model's entries share nothing with
// the ledger's answers.
func cloneItem(it *ledger.Item) *ledger.Item {
	if it == nil {
		return nil
	}
	c := *it
	c.Data = bytes.Clone(it.Data)
	return &c
}

func drawNewEntry(rt *rapid.T) ledger.NewEntry {
	ne := ledger.NewEntry{
		AuthorityID: rapid.SampledFrom(pAuths).Draw(rt, "authority"),
		UserID:      rapid.SampledFrom(pUsers).Draw(rt, "user"),
		Currency:    rapid.SampledFrom(pCurrencies).Draw(rt, "currency"),
		Amount:      decimal.New(int64(rapid.IntRange(-6000, 10000).Draw(rt, "cents")), -2),
		Reason:      rapid.SampledFrom([]string{"r1", "r2"}).Draw(rt, "reason"),
		Metadata:    maps.Clone(rapid.SampledFrom(pMetadata).Draw(rt, "metadata")),
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

// total sums the entries among es of the user in the currency that
// count: by authority when auths is set, and created at or before asOf
// when it is set.
func total(es []mEntry, user, currency string, auths []string, asOf time.Time) (decimal.Decimal, bool) {
	sum, counted := decimal.Zero, false
	for _, e := range es {
		if e.UserID == user && e.Currency == currency && (len(auths) == 0 || slices.Contains(auths, e.AuthorityID)) &&
			(asOf.IsZero() || !e.CreatedOn.After(asOf)) {
			sum, counted = sum.Add(e.Amount), true
		}
	}
	return sum, counted
}

// sum is the wallet's total now.
func (m *model) sum(w wallet) decimal.Decimal {
	s, _ := total(m.entries, w.user, w.currency, nil, time.Time{})
	return s
}

// limitsOf is the wallet's limits now: the zero limits unless SetLimits
// set others.
func limitsOf(limits map[wallet]ledger.WalletLimits, w wallet) ledger.WalletLimits {
	if l, ok := limits[w]; ok {
		return l
	}
	return ledger.WalletLimits{UserID: w.user, Currency: w.currency}
}

type outcome int

const (
	written outcome = iota
	replayed
	conflict
	noFunds
	capExceeded
	invalidInput
	notFound
	noItem
	itemUsed
	itemRevoked
	forbidden
	alreadyReversed
	holdClosed
)

// sentinels are the ledger's errors, by the outcome that must give each;
// a refusal matches its own and none of the others.
var sentinels = map[outcome]error{
	conflict:        ledger.ErrIdempotencyConflict,
	noFunds:         ledger.ErrNotEnoughFunds,
	capExceeded:     ledger.ErrCapExceeded,
	invalidInput:    ledger.ErrInvalid,
	notFound:        ledger.ErrNotFound,
	noItem:          ledger.ErrNoItem,
	itemUsed:        ledger.ErrItemUsed,
	itemRevoked:     ledger.ErrItemRevoked,
	forbidden:       ledger.ErrForbidden,
	alreadyReversed: ledger.ErrAlreadyReversed,
	holdClosed:      ledger.ErrHoldClosed,
}

// requireRefused fails unless err matches the sentinel of want and no
// other.
func requireRefused(rt *rapid.T, want outcome, err error, format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	if !errors.Is(err, sentinels[want]) {
		rt.Fatalf("%s: got %v, want %v", what, err, sentinels[want])
	}
	for o, s := range sentinels {
		if o != want && errors.Is(err, s) {
			rt.Fatalf("%s: %v matches %v besides %v", what, err, s, sentinels[want])
		}
	}
}

// limitsOutcome says whether the wallet's limits let an entry of amount
// take it from sum to sum+amount while its holds hold held: a spend may
// not leave its Available (the total less held) below the floor, a
// deposit may not leave its total above the cap, and a write that moves
// it toward its limits is never refused for them.
func limitsOutcome(lim ledger.WalletLimits, sum, held, amount decimal.Decimal) outcome {
	after := sum.Add(amount)
	switch {
	case amount.IsNegative() && after.Sub(held).LessThan(lim.Floor):
		return noFunds
	case amount.IsPositive() && lim.Cap != nil && after.GreaterThan(*lim.Cap):
		return capExceeded
	}
	return written
}

// requireLimitsError checks the details of a refusal for limits: the
// wallet, its total before, what it held, the amount and the limit.
func requireLimitsError(rt *rapid.T, want outcome, err error, lim ledger.WalletLimits, sum, held, amount decimal.Decimal) {
	requireRefused(rt, want, err, "write of %s to %s/%q (total %s, held %s)", amount, lim.UserID, lim.Currency, sum, held)
	switch want {
	case noFunds:
		var nef *ledger.NotEnoughFundsError
		if !errors.As(err, &nef) || nef.UserID != lim.UserID || nef.Currency != lim.Currency ||
			!nef.Balance.Equal(sum) || !nef.Held.Equal(held) || !nef.Amount.Equal(amount) || !nef.Floor.Equal(lim.Floor) {
			rt.Fatalf("overdraft of %s/%q: got %#v, want balance %s, held %s, amount %s, floor %s",
				lim.UserID, lim.Currency, err, sum, held, amount, lim.Floor)
		}
	case capExceeded:
		var ce *ledger.CapExceededError
		if !errors.As(err, &ce) || ce.UserID != lim.UserID || ce.Currency != lim.Currency ||
			!ce.Total.Equal(sum) || !ce.Amount.Equal(amount) || !ce.Cap.Equal(*lim.Cap) {
			rt.Fatalf("cap of %s/%q: got %#v, want total %s, amount %s, cap %s", lim.UserID, lim.Currency, err, sum, amount, lim.Cap)
		}
	}
}

// samePayload reports whether ne repeats the entry e that its key wrote.
func samePayload(e mEntry, ne ledger.NewEntry) bool {
	return ne.UserID == e.UserID && ne.Amount.Equal(e.Amount) && ne.Reason == e.Reason && ne.Currency == e.Currency &&
		maps.Equal(ne.Metadata, e.Metadata) && (ne.Item == nil) == (e.Item == nil) &&
		(e.Item == nil || ne.Item.Name == e.Item.Name && bytes.Equal(ne.Item.Data, e.Item.Data))
}

// predict says what the ledger must do with ne after entries, whose
// idempotency keys are keys, while held says what each wallet's holds
// hold; for a replay it also returns the index of the original among
// entries. An entry's key that wrote a transfer conflicts.
func predict(entries []mEntry, keys map[[2]string]int, limits map[wallet]ledger.WalletLimits, held func(wallet) decimal.Decimal,
	ne ledger.NewEntry) (outcome, int) {
	if ne.IdempotencyKey != "" {
		if i, ok := keys[[2]string{ne.AuthorityID, ne.IdempotencyKey}]; ok {
			if e := entries[i]; e.TransferID == "" && samePayload(e, ne) {
				return replayed, i
			}
			return conflict, i
		}
	}
	w := wallet{ne.UserID, ne.Currency}
	sum, _ := total(entries, w.user, w.currency, nil, time.Time{})
	return limitsOutcome(limitsOf(limits, w), sum, held(w), ne.Amount), 0
}

// links are what the ledger must set on a written entry besides its
// NewEntry's fields.
type links struct {
	transferID string
	reverses   string
	holdID     string
	// anyMetadata leaves the entry's Metadata to the ledger (a reversal's:
	// the issue does not say what it carries).
	anyMetadata bool
}

// checkWritten checks an entry the ledger wrote for ne, at the model's
// clock, and adds it to the model.
func (m *model) checkWritten(rt *rapid.T, ne ledger.NewEntry, ln links, e ledger.Entry) {
	if n := len(m.entries); n > 0 && e.ID <= m.entries[n-1].ID {
		rt.Fatalf("entry ID %s does not sort after %s", e.ID, m.entries[n-1].ID)
	}
	w := wallet{ne.UserID, ne.Currency}
	want := m.sum(w).Add(ne.Amount)
	if e.UserID != ne.UserID || e.AuthorityID != ne.AuthorityID || !e.Amount.Equal(ne.Amount) || e.Reason != ne.Reason ||
		e.Currency != ne.Currency || !ln.anyMetadata && !maps.Equal(e.Metadata, ne.Metadata) ||
		e.TransferID != ln.transferID || e.Reverses != ln.reverses || e.HoldID != ln.holdID || e.ReversedBy != "" ||
		!e.CreatedOn.Equal(m.now) ||
		!e.Balance.Equal(want) || (e.Item == nil) != (ne.Item == nil) ||
		e.Item != nil && (e.Item.Name != ne.Item.Name || e.Item.Used || e.Item.Revoked || !bytes.Equal(e.Item.Data, ne.Item.Data)) {
		rt.Fatalf("wrote %+v for %+v %+v (want balance %s, created on %s)", e, ne, ln, want, m.now)
	}
	if ne.IdempotencyKey != "" {
		m.keys[[2]string{ne.AuthorityID, ne.IdempotencyKey}] = len(m.entries)
	}
	lim := limitsOf(m.limits, w)
	if lim.Cap != nil {
		c := *lim.Cap
		lim.Cap = &c
	}
	e.Metadata = maps.Clone(e.Metadata)
	e.Item = cloneItem(e.Item)
	m.entries = append(m.entries, mEntry{Entry: e, key: ne.IdempotencyKey, limits: lim, held: m.held(w)})
	m.entryChanged(e)
}

// requireCurrent fails unless e, returned for a replay, is the model's
// entry i as it is now.
func (m *model) requireCurrent(rt *rapid.T, what string, e ledger.Entry, i int) {
	want := m.entries[i]
	if e.ID != want.ID || !e.CreatedOn.Equal(want.CreatedOn) || !e.Balance.Equal(want.Balance) || e.ReversedBy != want.ReversedBy ||
		e.TransferID != want.TransferID || (e.Item == nil) != (want.Item == nil) ||
		e.Item != nil && (e.Item.Used != want.Item.Used || e.Item.Revoked != want.Item.Revoked) {
		rt.Fatalf("%s: got %+v, want %+v", what, e, want.Entry)
	}
}

func (m *model) create(rt *rapid.T) {
	ne := drawNewEntry(rt)
	if w, ok := m.drawHeldWallet(rt); ok {
		ne.UserID, ne.Currency, ne.Amount = w.user, w.currency, m.drawNearRoom(rt, w).Neg()
	}
	m.createEntry(rt, ne)
}

func (m *model) createEntry(rt *rapid.T, ne ledger.NewEntry) {
	want, orig := predict(m.entries, m.keys, m.limits, m.held, ne)
	e, err := m.l.CreateEntry(m.ctx(), ne)
	switch want {
	case written:
		if err != nil {
			rt.Fatalf("CreateEntry(%+v): %v", ne, err)
		}
		m.checkWritten(rt, ne, links{}, e)
	case replayed:
		if err != nil {
			rt.Fatalf("retry of %s: %v", m.entries[orig].ID, err)
		}
		m.requireCurrent(rt, "retry of "+m.entries[orig].ID, e, orig)
	case conflict:
		requireRefused(rt, conflict, err, "conflicting retry %+v of %+v", ne, m.entries[orig].Entry)
	default:
		w := wallet{ne.UserID, ne.Currency}
		requireLimitsError(rt, want, err, limitsOf(m.limits, w), m.sum(w), m.held(w), ne.Amount)
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
		outcomes[i], origs[i] = predict(scratch, keys, m.limits, m.held, ne)
		if outcomes[i] != written && outcomes[i] != replayed {
			failAt = i
			break
		}
		if outcomes[i] == written {
			if ne.IdempotencyKey != "" {
				keys[[2]string{ne.AuthorityID, ne.IdempotencyKey}] = len(scratch)
			}
			scratch = append(scratch, mEntry{Entry: ledger.Entry{AuthorityID: ne.AuthorityID, UserID: ne.UserID, Currency: ne.Currency,
				Amount: ne.Amount, Reason: ne.Reason, Item: ne.Item, Metadata: ne.Metadata}})
		}
	}
	es, err := m.l.CreateEntries(m.ctx(), batch)
	if failAt >= 0 {
		var ee *ledger.EntryError
		if !errors.As(err, &ee) || ee.Index != failAt {
			rt.Fatalf("batch failing at %d: got %v", failAt, err)
		}
		ne := batch[failAt]
		switch w := (wallet{ne.UserID, ne.Currency}); outcomes[failAt] {
		case noFunds, capExceeded:
			sum, _ := total(scratch, w.user, w.currency, nil, time.Time{})
			requireLimitsError(rt, outcomes[failAt], err, limitsOf(m.limits, w), sum, m.held(w), ne.Amount)
		default:
			requireRefused(rt, outcomes[failAt], err, "batch entry %d", failAt)
		}
		return
	}
	if err != nil || len(es) != n {
		rt.Fatalf("batch: got %d entries, %v", len(es), err)
	}
	for i, ne := range batch {
		if outcomes[i] == written {
			m.checkWritten(rt, ne, links{}, es[i])
		} else {
			m.requireCurrent(rt, fmt.Sprintf("batch entry %d, a replay", i), es[i], origs[i])
		}
	}
}

// use uses an entry's item, sometimes with an idempotency key, and
// sometimes retries a keyed use: the same authority and key replay it.
func (m *model) use(rt *rapid.T) {
	id := "000000000000000000000000"
	i := -1
	if len(m.entries) > 0 && rapid.IntRange(0, 5).Draw(rt, "bogus") > 0 {
		i = rapid.IntRange(0, len(m.entries)-1).Draw(rt, "entry")
		id = m.entries[i].ID
	}
	authority, key := rapid.SampledFrom(pAuths).Draw(rt, "authority"), ""
	if rapid.IntRange(0, 2).Draw(rt, "keyedUse") == 0 {
		key = rapid.SampledFrom(pKeys).Draw(rt, "useKey")
	}
	if i >= 0 && m.entries[i].useKey != "" && rapid.Bool().Draw(rt, "retryUse") {
		authority, key = m.entries[i].Item.UsedBy, m.entries[i].useKey
	}
	var opts []ledger.UseOption
	if key != "" {
		opts = append(opts, ledger.UseIdempotencyKey(key))
	}
	call := fmt.Sprintf("UseItem(%q, %s, key %q)", authority, id, key)
	e, err := m.l.UseItem(m.ctx(), authority, id, opts...)
	switch {
	case i < 0:
		requireRefused(rt, notFound, err, "%s, unknown", call)
	case m.entries[i].Item == nil:
		requireRefused(rt, noItem, err, "%s, no item", call)
	case m.entries[i].Item.Revoked:
		requireRefused(rt, itemRevoked, err, "%s, revoked", call)
	case m.entries[i].Item.Used && key != "" && key == m.entries[i].useKey && authority == m.entries[i].Item.UsedBy:
		if err != nil {
			rt.Fatalf("%s, a retry: %v", call, err)
		}
		requireModelEntry(rt, call+", a retry", e, m.entries[i].Entry)
	case m.entries[i].Item.Used:
		requireRefused(rt, itemUsed, err, "%s, used", call)
	default:
		if err != nil {
			rt.Fatalf("%s: %v", call, err)
		}
		it := m.entries[i].Item
		it.Used, it.UsedOn, it.UsedBy = true, m.now, authority
		m.entries[i].useKey = key
		requireModelEntry(rt, call, e, m.entries[i].Entry)
		m.itemUsed(i, authority)
	}
}

func drawSubset(rt *rapid.T, from []string, label string) []string {
	return rapid.SliceOfDistinct(rapid.SampledFrom(from), rapid.ID[string]).Filter(func(s []string) bool { return len(s) <= 3 }).Draw(rt, label)
}

// wantWallets computes WalletQuery's answer from the model. A wallet in
// which a hold was placed has a total from then on, of its entries (0
// if none); totals as of an instant or by authority count entries
// alone.
func (m *model) wantWallets(q ledger.WalletQuery) []string {
	users := q.UserIDs
	if len(users) == 0 {
		for _, e := range m.entries {
			users = append(users, e.UserID)
		}
		for _, h := range m.holds {
			users = append(users, h.UserID)
		}
	}
	users = slices.Compact(slices.Sorted(slices.Values(users)))
	out := []string{}
	for _, u := range users {
		if u <= q.After || q.Limit > 0 && len(out) == q.Limit {
			continue
		}
		sum, counted := total(m.entries, u, q.Currency, q.AuthorityIDs, q.AsOf)
		if counted || len(q.UserIDs) > 0 || q.AsOf.IsZero() && len(q.AuthorityIDs) == 0 && m.hasHold(wallet{u, q.Currency}) {
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
		if w.Currency != q.Currency {
			rt.Fatalf("Wallets(%+v): a total in currency %q", q, w.Currency)
		}
		got = append(got, w.UserID+"="+w.Total.String())
	}
	if want := m.wantWallets(q); !slices.Equal(got, want) {
		rt.Fatalf("Wallets(%+v): got %v, want %v", q, got, want)
	}
}

// query asks one of the queries, so that rapid, which draws actions
// evenly, spends most steps on writes.
func (m *model) query(rt *rapid.T) {
	rapid.SampledFrom([]func(*rapid.T){m.wallets, m.asOf, m.inventory, m.history, m.holdsQuery}).Draw(rt, "query")(rt)
}

func (m *model) wallets(rt *rapid.T) {
	m.compareWallets(rt, ledger.WalletQuery{
		UserIDs:      drawSubset(rt, pUsers, "users"),
		AuthorityIDs: drawSubset(rt, pAuths, "authorities"),
		After:        rapid.SampledFrom(pAfterID).Draw(rt, "after"),
		Limit:        rapid.IntRange(0, 3).Draw(rt, "limit"),
		Currency:     rapid.SampledFrom(pCurrencies).Draw(rt, "currency"),
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
		Currency:     rapid.SampledFrom(pCurrencies).Draw(rt, "currency"),
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

// inventory lists items by every filter; an item whose entry was
// reversed before its use is revoked: listed only by UsedOrUnused.
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
			q.Used == ledger.UnusedOnly && (e.Item.Used || e.Item.Revoked) || q.Used == ledger.UsedOnly && !e.Item.Used {
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
			g.Item.Name != w.Item.Name || g.Item.Used != w.Item.Used || g.Item.Revoked != w.Item.Revoked ||
			!g.Item.UsedOn.Equal(w.Item.UsedOn) || g.Item.UsedBy != w.Item.UsedBy || !bytes.Equal(g.Item.Data, w.Item.Data) {
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
		Currencies:   drawSubset(rt, pCurrencies, "currencies"),
		Limit:        rapid.IntRange(1, 4).Draw(rt, "limit"),
	}
	if len(m.entries) > 0 && rapid.Bool().Draw(rt, "since") {
		q.Since = m.entries[rapid.IntRange(0, len(m.entries)-1).Draw(rt, "sinceAt")].CreatedOn
	}
	var want []mEntry
	for _, e := range m.entries {
		if (len(q.EntryIDs) == 0 || slices.Contains(q.EntryIDs, e.ID)) &&
			(len(q.UserIDs) == 0 || slices.Contains(q.UserIDs, e.UserID)) &&
			(len(q.AuthorityIDs) == 0 || slices.Contains(q.AuthorityIDs, e.AuthorityID)) &&
			(len(q.Currencies) == 0 || slices.Contains(q.Currencies, e.Currency)) &&
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
		rt.Fatalf("Entries(%+v): got %d, want %d", q, len(got), len(want))
	}
	for i := range got {
		requireModelEntry(rt, fmt.Sprintf("Entries[%d]", i), got[i], want[i].Entry)
	}
}

// requireModelEntry fails unless got, read back, is the model's entry
// want in every field.
func requireModelEntry(rt *rapid.T, what string, got, want ledger.Entry) {
	if got.ID != want.ID || got.AuthorityID != want.AuthorityID || got.UserID != want.UserID || got.Currency != want.Currency ||
		!got.Amount.Equal(want.Amount) || !got.Balance.Equal(want.Balance) || !got.CreatedOn.Equal(want.CreatedOn) ||
		got.Reason != want.Reason || !maps.Equal(got.Metadata, want.Metadata) ||
		got.TransferID != want.TransferID || got.Reverses != want.Reverses || got.ReversedBy != want.ReversedBy ||
		got.HoldID != want.HoldID || (got.Item == nil) != (want.Item == nil) ||
		got.Item != nil && (got.Item.Name != want.Item.Name || !bytes.Equal(got.Item.Data, want.Item.Data) ||
			got.Item.Used != want.Item.Used || got.Item.Revoked != want.Item.Revoked ||
			!got.Item.UsedOn.Equal(want.Item.UsedOn) || got.Item.UsedBy != want.Item.UsedBy) {
		rt.Fatalf("%s: got %+v (item %+v), want %+v (item %+v)", what, got, got.Item, want, want.Item)
	}
}

// check holds after every step: every entry as the model has it, each
// within the limits in force when it was written; every wallet's total,
// held amount, balance and limits, and its Available not pushed below
// its floor; totals by authority; every hold as it stands now; the
// change feed; Verify.
func (m *model) check(rt *rapid.T) {
	es, err := m.l.Entries(m.ctx(), ledger.EntryQuery{})
	if err != nil {
		rt.Fatal(err)
	}
	if len(es) != len(m.entries) {
		rt.Fatalf("Entries: got %d, want %d", len(es), len(m.entries))
	}
	for i, e := range es {
		requireModelEntry(rt, fmt.Sprintf("entry %d", i), e, m.entries[i].Entry)
		// A capture spends what its hold reserved: it cannot fail for
		// funds, and is not bound by a floor raised since.
		lim, held := m.entries[i].limits, m.entries[i].held
		if e.Amount.IsNegative() && e.HoldID == "" && e.Balance.Sub(held).LessThan(lim.Floor) ||
			e.Amount.IsPositive() && lim.Cap != nil && e.Balance.GreaterThan(*lim.Cap) {
			rt.Fatalf("entry %s of %s took wallet %s/%q to %s with %s held, past its limits then (floor %s, cap %v)",
				e.ID, e.Amount, e.UserID, e.Currency, e.Balance, held, lim.Floor, lim.Cap)
		}
	}
	m.checkBalances(rt)
	m.checkHolds(rt)
	for _, c := range pCurrencies {
		m.compareWallets(rt, ledger.WalletQuery{Currency: c})
		m.compareWallets(rt, ledger.WalletQuery{Currency: c, AuthorityIDs: pAuths[:1]})
	}
	m.checkFeed(rt)
	if err := m.l.Verify(m.ctx()); err != nil {
		rt.Fatal(err)
	}
}
