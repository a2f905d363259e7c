package storetest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"

	"github.com/walletledger/ledger"
)

// The model's holds (issue 12): placing, capturing and releasing them,
// the model's clock that makes them expire, and the hold listings
// checked after every step.

// mHold is the model's copy of a placed hold, as placed and then as its
// capture or release left it. Its expiry is never stored: at says what
// the hold is at an instant.
type mHold struct {
	ledger.Hold
	// key is the idempotency key it was placed with, if any.
	key string
}

// at returns h as it stands at now: an active hold whose Expires has
// come is expired, closed at its Expires, whether or not anything
// recorded it.
func (h *mHold) at(now time.Time) ledger.Hold {
	out := h.Hold
	if out.State == ledger.HoldActive && !out.Expires.IsZero() && !now.Before(out.Expires) {
		out.State, out.ClosedOn = ledger.HoldExpired, out.Expires
	}
	return out
}

// active reports whether h holds value at the model's clock.
func (m *model) active(h *mHold) bool { return h.at(m.now).State == ledger.HoldActive }

// held is what the wallet's holds hold at the model's clock.
func (m *model) held(w wallet) decimal.Decimal {
	sum := decimal.Zero
	for i := range m.holds {
		if h := &m.holds[i]; h.UserID == w.user && h.Currency == w.currency && m.active(h) {
			sum = sum.Add(h.Amount)
		}
	}
	return sum
}

// hasHold reports whether a hold was ever placed in the wallet.
func (m *model) hasHold(w wallet) bool {
	return slices.ContainsFunc(m.holds, func(h mHold) bool { return h.UserID == w.user && h.Currency == w.currency })
}

// setNow moves the model's clock, and so the ledger's, to t.
func (m *model) setNow(t time.Time) {
	m.clk.advance(t.Sub(m.now))
	m.now = t
}

// tick moves the clock on by a small drawn step before an operation:
// often not at all, so that writes share an instant.
func (m *model) tick(rt *rapid.T) {
	d := rapid.SampledFrom([]time.Duration{0, 0, time.Nanosecond, time.Millisecond, 3 * time.Millisecond}).Draw(rt, "tick")
	m.setNow(m.now.Add(d))
}

// advance moves the clock: a little, to exactly the expiry of a hold
// active now, to the nanosecond before it, or past every expiry.
func (m *model) advance(rt *rapid.T) {
	var expiries []time.Time
	for i := range m.holds {
		if h := &m.holds[i]; m.active(h) && !h.Expires.IsZero() {
			expiries = append(expiries, h.Expires)
		}
	}
	slices.SortFunc(expiries, time.Time.Compare)
	to := m.now.Add(time.Duration(rapid.IntRange(1, 20_000).Draw(rt, "micros")) * time.Microsecond)
	if len(expiries) > 0 {
		switch rapid.IntRange(0, 3).Draw(rt, "to") {
		case 1:
			to = rapid.SampledFrom(expiries).Draw(rt, "expiry")
		case 2:
			to = rapid.SampledFrom(expiries).Draw(rt, "expiry").Add(-time.Nanosecond)
		case 3:
			to = expiries[len(expiries)-1].Add(time.Duration(rapid.IntRange(0, 2).Draw(rt, "past")) * time.Millisecond)
		}
	}
	m.setNow(to)
}

// room is the most the wallet can spend now.
func (m *model) room(w wallet) decimal.Decimal {
	return m.sum(w).Sub(m.held(w)).Sub(limitsOf(m.limits, w).Floor)
}

// drawHeldWallet sometimes picks a wallet that holds something now, so
// that a spend from it tests what held value leaves.
func (m *model) drawHeldWallet(rt *rapid.T) (wallet, bool) {
	var ws []wallet
	for i := range m.holds {
		if h := &m.holds[i]; m.active(h) {
			if w := (wallet{h.UserID, h.Currency}); !slices.Contains(ws, w) {
				ws = append(ws, w)
			}
		}
	}
	if len(ws) == 0 || rapid.IntRange(0, 2).Draw(rt, "fromHeld") > 0 {
		return wallet{}, false
	}
	return rapid.SampledFrom(ws).Draw(rt, "heldWallet"), true
}

// drawNearRoom draws a positive amount within a few cents of what the
// wallet can spend now: at, above or below the edge that held value
// sets.
func (m *model) drawNearRoom(rt *rapid.T, w wallet) decimal.Decimal {
	return decimal.Max(cents(1), m.room(w).Add(cents(rapid.IntRange(-2, 2).Draw(rt, "nearRoom"))))
}

// drawNewHold draws a hold, mostly in a wallet that can spare something:
// its amount within what the wallet can spare, random, exactly that, a
// cent more, or not positive; its expiry none, a drawn offset in the
// future, or not after now.
func (m *model) drawNewHold(rt *rapid.T) ledger.NewHold {
	nh := ledger.NewHold{
		AuthorityID: rapid.SampledFrom(pAuths).Draw(rt, "authority"),
		UserID:      rapid.SampledFrom(pUsers).Draw(rt, "user"),
		Currency:    rapid.SampledFrom(pCurrencies).Draw(rt, "currency"),
		Reason:      rapid.SampledFrom([]string{"h1", "h2"}).Draw(rt, "reason"),
		Metadata:    maps.Clone(rapid.SampledFrom(pMetadata).Draw(rt, "metadata")),
	}
	var funded []wallet
	for _, u := range pUsers {
		for _, c := range pCurrencies {
			if w := (wallet{u, c}); m.room(w).IsPositive() {
				funded = append(funded, w)
			}
		}
	}
	if len(funded) > 0 && rapid.IntRange(0, 3).Draw(rt, "funded") > 0 {
		w := rapid.SampledFrom(funded).Draw(rt, "wallet")
		nh.UserID, nh.Currency = w.user, w.currency
	}
	w := wallet{nh.UserID, nh.Currency}
	room := m.room(w)
	nh.Amount = cents(rapid.IntRange(1, 5000).Draw(rt, "cents"))
	if room.IsPositive() && rapid.IntRange(0, 3).Draw(rt, "withinRoom") > 0 {
		nh.Amount = cents(rapid.IntRange(1, int(room.Shift(2).IntPart())).Draw(rt, "roomCents"))
	}
	switch rapid.IntRange(0, 9).Draw(rt, "amountKind") {
	case 0:
		nh.Amount = decimal.Max(room, cents(1))
	case 1:
		nh.Amount = decimal.Max(room.Add(cents(1)), cents(1))
	case 2:
		nh.Amount = cents(-rapid.IntRange(0, 100).Draw(rt, "minusCents"))
	}
	switch rapid.IntRange(0, 9).Draw(rt, "expires") { // 0 to 3: never
	case 4:
		nh.Expires = m.now
	case 5:
		nh.Expires = m.now.Add(-time.Duration(rapid.IntRange(1, 1000).Draw(rt, "agoMicros")) * time.Microsecond)
	case 6, 7, 8, 9:
		nh.Expires = m.now.Add(time.Duration(rapid.IntRange(1, 30_000).Draw(rt, "inMicros")) * time.Microsecond)
	}
	if nh.Amount.IsPositive() && rapid.IntRange(0, 2).Draw(rt, "keyed") == 0 {
		// The entries' keys: hold keys are a namespace of their own.
		nh.IdempotencyKey = rapid.SampledFrom(pKeys).Draw(rt, "key")
	}
	return nh
}

// retryHold repeats the keyed hold h, as it was or with one field
// changed.
func retryHold(rt *rapid.T, h mHold) ledger.NewHold {
	nh := ledger.NewHold{AuthorityID: h.AuthorityID, UserID: h.UserID, Currency: h.Currency, Amount: h.Amount,
		Reason: h.Reason, Expires: h.Expires, Metadata: maps.Clone(h.Metadata), IdempotencyKey: h.key}
	switch rapid.IntRange(0, 8).Draw(rt, "change") { // 0, 7 and 8: none
	case 1:
		nh.Amount = nh.Amount.Add(cents(1))
	case 2:
		nh.Reason += "?"
	case 3:
		nh.Metadata = map[string]string{"other": "x"}
	case 4:
		nh.UserID = pUsers[(slices.Index(pUsers, nh.UserID)+1)%len(pUsers)]
	case 5:
		nh.Currency = pCurrencies[(slices.Index(pCurrencies, nh.Currency)+1)%len(pCurrencies)]
	case 6:
		if nh.Expires.IsZero() {
			nh.Expires = h.CreatedOn.Add(time.Hour)
		} else {
			nh.Expires = nh.Expires.Add(time.Nanosecond)
		}
	}
	return nh
}

// sameHold reports whether nh repeats the hold h that its key placed.
func sameHold(h mHold, nh ledger.NewHold) bool {
	return nh.UserID == h.UserID && nh.Currency == h.Currency && nh.Amount.Equal(h.Amount) && nh.Reason == h.Reason &&
		nh.Expires.Equal(h.Expires) && maps.Equal(nh.Metadata, h.Metadata)
}

// predictHold says what the ledger must do with nh: refuse it as
// invalid, replay or refuse a retry of its key (whose hold may have
// expired since: a retry is not a new hold), refuse it for the wallet's
// floor, or place it. For a retry it returns the index of the original.
func (m *model) predictHold(nh ledger.NewHold) (outcome, int) {
	if !nh.Amount.IsPositive() {
		return invalidInput, -1
	}
	if nh.IdempotencyKey != "" {
		if i, ok := m.holdKeys[[2]string{nh.AuthorityID, nh.IdempotencyKey}]; ok {
			if sameHold(m.holds[i], nh) {
				return replayed, i
			}
			return conflict, i
		}
	}
	if !nh.Expires.IsZero() && !nh.Expires.After(m.now) {
		return invalidInput, -1
	}
	w := wallet{nh.UserID, nh.Currency}
	return limitsOutcome(limitsOf(m.limits, w), m.sum(w), m.held(w), nh.Amount.Neg()), -1
}

// hold places a drawn hold, or retries a keyed one.
func (m *model) hold(rt *rapid.T) {
	var keyed []int
	for i, h := range m.holds {
		if h.key != "" {
			keyed = append(keyed, i)
		}
	}
	var nh ledger.NewHold
	if len(keyed) > 0 && rapid.IntRange(0, 3).Draw(rt, "retry") == 0 {
		nh = retryHold(rt, m.holds[rapid.SampledFrom(keyed).Draw(rt, "of")])
	} else {
		nh = m.drawNewHold(rt)
	}
	want, orig := m.predictHold(nh)
	got, err := m.l.Hold(m.ctx(), nh)
	w := wallet{nh.UserID, nh.Currency}
	switch want {
	case written:
		if err != nil {
			rt.Fatalf("Hold(%+v): %v", nh, err)
		}
		if n := len(m.holds); n > 0 && got.ID <= m.holds[n-1].ID {
			rt.Fatalf("hold ID %s does not sort after %s", got.ID, m.holds[n-1].ID)
		}
		placed := ledger.Hold{ID: got.ID, AuthorityID: nh.AuthorityID, UserID: nh.UserID, Currency: nh.Currency,
			Amount: nh.Amount, Reason: nh.Reason, Metadata: maps.Clone(nh.Metadata), CreatedOn: m.now, Expires: nh.Expires,
			State: ledger.HoldActive}
		requireModelHold(rt, fmt.Sprintf("Hold(%+v)", nh), got, placed)
		if nh.IdempotencyKey != "" {
			m.holdKeys[[2]string{nh.AuthorityID, nh.IdempotencyKey}] = len(m.holds)
		}
		m.holdIndex[placed.ID] = len(m.holds)
		m.holds = append(m.holds, mHold{Hold: placed, key: nh.IdempotencyKey})
		m.holdChanged(ledger.ChangeHoldPlaced, nh.AuthorityID, placed)
	case replayed:
		if err != nil {
			rt.Fatalf("retry of hold %s: %v", m.holds[orig].ID, err)
		}
		requireModelHold(rt, "retry of hold "+m.holds[orig].ID, got, m.holds[orig].at(m.now))
	case conflict:
		requireRefused(rt, conflict, err, "conflicting retry %+v of hold %+v", nh, m.holds[orig].Hold)
		var ce *ledger.IdempotencyConflictError
		if !errors.As(err, &ce) || ce.HoldID != m.holds[orig].ID || ce.EntryID != "" || ce.AuthorityID != nh.AuthorityID ||
			ce.Key != nh.IdempotencyKey || len(ce.Fields) == 0 {
			rt.Fatalf("conflicting retry of hold %s: got %#v", m.holds[orig].ID, err)
		}
	case noFunds:
		requireLimitsError(rt, want, err, limitsOf(m.limits, w), m.sum(w), m.held(w), nh.Amount.Neg())
	default:
		requireRefused(rt, want, err, "Hold(%+v)", nh)
	}
}

// drawHoldID picks a hold of the model, mostly one active now, or
// returns -1 and an ID that names no hold (sometimes an entry's).
func (m *model) drawHoldID(rt *rapid.T) (int, string) {
	if len(m.holds) == 0 || rapid.IntRange(0, 9).Draw(rt, "unknown") == 0 {
		if len(m.entries) > 0 && rapid.Bool().Draw(rt, "entryID") {
			return -1, m.entries[rapid.IntRange(0, len(m.entries)-1).Draw(rt, "entry")].ID
		}
		return -1, "000000000000000000000000"
	}
	var active []int
	for i := range m.holds {
		if m.active(&m.holds[i]) {
			active = append(active, i)
		}
	}
	i := rapid.IntRange(0, len(m.holds)-1).Draw(rt, "hold")
	if len(active) > 0 && rapid.IntRange(0, 2).Draw(rt, "pickActive") > 0 {
		i = rapid.SampledFrom(active).Draw(rt, "activeHold")
	}
	return i, m.holds[i].ID
}

// settleRefusals lists why authority may not settle hold i (-1: none)
// now; empty when it may.
func (m *model) settleRefusals(i int, authority string) []outcome {
	if i < 0 {
		return []outcome{notFound}
	}
	var out []outcome
	if m.holds[i].AuthorityID != authority {
		out = append(out, forbidden)
	}
	if !m.active(&m.holds[i]) {
		out = append(out, holdClosed)
	}
	return out
}

// requireOneOf fails unless err matches exactly one of the ledger's
// sentinels and that one is among wants: where a call breaks several
// rules at once, the issue does not say which it reports. A refusal for
// a closed hold must say the hold's state now.
func (m *model) requireOneOf(rt *rapid.T, wants []outcome, err error, i int, format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	var got []outcome
	for o, s := range sentinels {
		if errors.Is(err, s) {
			got = append(got, o)
		}
	}
	if len(got) != 1 || !slices.Contains(wants, got[0]) {
		rt.Fatalf("%s: got %v (matching %v), want one of %v", what, err, got, wants)
	}
	if got[0] == holdClosed {
		var hc *ledger.HoldClosedError
		if h := m.holds[i].at(m.now); !errors.As(err, &hc) || hc.HoldID != h.ID || hc.State != h.State {
			rt.Fatalf("%s: got %#v, want hold %s %s", what, err, h.ID, h.State)
		}
	}
}

// capture captures a hold: the whole of it, part, all of it by amount,
// more than it holds or a negative amount; mostly by the authority that
// placed it.
func (m *model) capture(rt *rapid.T) {
	if len(m.holds) == 0 && rapid.IntRange(0, 7).Draw(rt, "early") > 0 {
		return
	}
	i, id := m.drawHoldID(rt)
	authority := rapid.SampledFrom(pAuths).Draw(rt, "authority")
	if i >= 0 && rapid.IntRange(0, 4).Draw(rt, "byPlacer") > 0 {
		authority = m.holds[i].AuthorityID
	}
	c := ledger.Capture{Reason: rapid.SampledFrom([]string{"", "c1"}).Draw(rt, "reason")}
	if rapid.IntRange(0, 2).Draw(rt, "item") == 0 {
		c.Item = &ledger.Item{Name: rapid.SampledFrom(pNames).Draw(rt, "name")}
		if d := rapid.SampledFrom(pData).Draw(rt, "data"); d != "" {
			c.Item.Data = []byte(d)
		}
	}
	held := cents(100)
	if i >= 0 {
		held = m.holds[i].Amount
	}
	switch rapid.IntRange(0, 5).Draw(rt, "amountKind") { // 0 and 1: zero, the whole hold
	case 2:
		c.Amount = cents(rapid.IntRange(1, int(held.Shift(2).IntPart())).Draw(rt, "partCents"))
	case 3:
		c.Amount = held
	case 4:
		c.Amount = held.Add(cents(rapid.IntRange(1, 100).Draw(rt, "overCents")))
	case 5:
		c.Amount = cents(-rapid.IntRange(1, 100).Draw(rt, "minusCents"))
	}
	refusals := m.settleRefusals(i, authority)
	if c.Amount.IsNegative() || i >= 0 && c.Amount.GreaterThan(held) {
		refusals = append(refusals, invalidInput)
	}
	e, err := m.l.Capture(m.ctx(), authority, id, c)
	if len(refusals) > 0 {
		m.requireOneOf(rt, refusals, err, i, "%s", captureCall(authority, id, c))
		return
	}
	if err != nil {
		rt.Fatalf("%s: %v", captureCall(authority, id, c), err)
	}
	h := &m.holds[i]
	amount := c.Amount
	if amount.IsZero() {
		amount = h.Amount
	}
	reason := c.Reason
	if reason == "" {
		reason = h.Reason
	}
	m.checkWritten(rt, ledger.NewEntry{AuthorityID: h.AuthorityID, UserID: h.UserID, Currency: h.Currency, Amount: amount.Neg(),
		Reason: reason, Item: c.Item, Metadata: h.Metadata}, links{holdID: h.ID}, e)
	h.State, h.ClosedOn, h.EntryID = ledger.HoldCaptured, e.CreatedOn, e.ID
}

// captureCall is how a failure names a call of Capture.
func captureCall(authority, id string, c ledger.Capture) string {
	item := "no item"
	if c.Item != nil {
		item = fmt.Sprintf("item %q data %q", c.Item.Name, c.Item.Data)
	}
	return fmt.Sprintf("Capture(%q, %s, amount %s, reason %q, %s)", authority, id, c.Amount, c.Reason, item)
}

// release releases a hold, mostly by the authority that placed it.
func (m *model) release(rt *rapid.T) {
	if len(m.holds) == 0 && rapid.IntRange(0, 7).Draw(rt, "early") > 0 {
		return
	}
	i, id := m.drawHoldID(rt)
	authority := rapid.SampledFrom(pAuths).Draw(rt, "authority")
	if i >= 0 && rapid.IntRange(0, 4).Draw(rt, "byPlacer") > 0 {
		authority = m.holds[i].AuthorityID
	}
	got, err := m.l.Release(m.ctx(), authority, id)
	if refusals := m.settleRefusals(i, authority); len(refusals) > 0 {
		m.requireOneOf(rt, refusals, err, i, "Release(%q, %s)", authority, id)
		return
	}
	if err != nil {
		rt.Fatalf("Release(%q, %s): %v", authority, id, err)
	}
	h := &m.holds[i]
	h.State, h.ClosedOn = ledger.HoldReleased, m.now
	requireModelHold(rt, fmt.Sprintf("Release(%q, %s)", authority, id), got, h.Hold)
	m.holdChanged(ledger.ChangeHoldReleased, authority, h.Hold)
}

// requireModelHold fails unless got is the model's hold want in every
// field.
func requireModelHold(rt *rapid.T, what string, got, want ledger.Hold) {
	if got.ID != want.ID || got.AuthorityID != want.AuthorityID || got.UserID != want.UserID || got.Currency != want.Currency ||
		!got.Amount.Equal(want.Amount) || got.Reason != want.Reason || !maps.Equal(got.Metadata, want.Metadata) ||
		!got.CreatedOn.Equal(want.CreatedOn) || !got.Expires.Equal(want.Expires) || got.State != want.State ||
		!got.ClosedOn.Equal(want.ClosedOn) || got.EntryID != want.EntryID {
		rt.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

// wantHolds computes Holds' answer to q from the model, each hold as it
// stands now.
func (m *model) wantHolds(q ledger.HoldQuery) []ledger.Hold {
	out := []ledger.Hold{}
	for i := range m.holds {
		h := m.holds[i].at(m.now)
		if h.Currency != q.Currency || h.ID <= q.After || q.Limit > 0 && len(out) == q.Limit ||
			len(q.HoldIDs) > 0 && !slices.Contains(q.HoldIDs, h.ID) ||
			len(q.UserIDs) > 0 && !slices.Contains(q.UserIDs, h.UserID) ||
			len(q.AuthorityIDs) > 0 && !slices.Contains(q.AuthorityIDs, h.AuthorityID) ||
			len(q.States) > 0 && !slices.Contains(q.States, h.State) {
			continue
		}
		out = append(out, h)
	}
	return out
}

func (m *model) compareHolds(rt *rapid.T, q ledger.HoldQuery) {
	got, err := m.l.Holds(m.ctx(), q)
	if err != nil {
		rt.Fatalf("Holds(%+v): %v", q, err)
	}
	want := m.wantHolds(q)
	if len(got) != len(want) {
		rt.Fatalf("Holds(%+v) at %s: got %+v, want %+v", q, m.now, got, want)
	}
	for i := range got {
		requireModelHold(rt, fmt.Sprintf("Holds(%+v)[%d] at %s", q, i, m.now), got[i], want[i])
	}
}

// holdsQuery lists holds by every filter.
func (m *model) holdsQuery(rt *rapid.T) {
	q := ledger.HoldQuery{
		UserIDs:      drawSubset(rt, pUsers, "users"),
		AuthorityIDs: drawSubset(rt, pAuths, "authorities"),
		Currency:     rapid.SampledFrom(pCurrencies).Draw(rt, "currency"),
		Limit:        rapid.IntRange(0, 3).Draw(rt, "limit"),
	}
	if len(m.holds) > 0 && rapid.Bool().Draw(rt, "byID") {
		for range rapid.IntRange(1, 3).Draw(rt, "nIDs") {
			if id := m.holds[rapid.IntRange(0, len(m.holds)-1).Draw(rt, "id")].ID; !slices.Contains(q.HoldIDs, id) {
				q.HoldIDs = append(q.HoldIDs, id)
			}
		}
		q.HoldIDs = append(q.HoldIDs, "ffffffffffffffffffffffff")
	}
	for _, s := range []ledger.HoldState{ledger.HoldActive, ledger.HoldCaptured, ledger.HoldReleased, ledger.HoldExpired} {
		if rapid.IntRange(0, 3).Draw(rt, "state") == 0 {
			q.States = append(q.States, s)
		}
	}
	if len(m.holds) > 0 && rapid.Bool().Draw(rt, "paged") {
		q.After = m.holds[rapid.IntRange(0, len(m.holds)-1).Draw(rt, "after")].ID
	}
	m.compareHolds(rt, q)
}

// checkHolds holds after every step: each currency's holds are the
// model's, as they stand now.
func (m *model) checkHolds(rt *rapid.T) {
	for _, c := range pCurrencies {
		m.compareHolds(rt, ledger.HoldQuery{Currency: c})
	}
}
