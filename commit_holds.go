package ledger

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/shopspring/decimal"
)

// The group commit's state for holds: the holds it read or wrote, as
// they stand after the group's requests so far, the new ones to insert
// and the stored ones to close. A wallet's running held amount lives in
// its total (Total.Held), which batchState keeps with the other totals.
// A savepoint undoes what one request did.

// sweepBatch bounds the holds one sweep request expires, so that a
// sweep's commit stays within a store's transaction size.
const sweepBatch = 256

type groupHold struct {
	rec   HoldRecord
	fresh bool // placed by this group
}

type holdState struct {
	holds   undoMap[string, groupHold] // hold ID -> the group's view
	byKey   map[idemKey]string         // new holds' idempotency keys -> ID
	inserts []string                   // new holds, in order
	closes  []string                   // stored holds the group closed, in order
}

type holdSavepoint struct{ undo, inserts, closes int }

func (h *holdState) init() {
	h.holds.init()
	h.byKey = make(map[idemKey]string)
}

func (h *holdState) reset() {
	h.holds.reset()
	clear(h.byKey)
	h.inserts, h.closes = h.inserts[:0], h.closes[:0]
}

func (h *holdState) savepoint() holdSavepoint {
	return holdSavepoint{h.holds.savepoint(), len(h.inserts), len(h.closes)}
}

func (h *holdState) rollback(sp holdSavepoint) {
	for _, id := range h.inserts[sp.inserts:] {
		if k := h.rec(id); k.IdempotencyKey != "" {
			delete(h.byKey, idemKey{k.AuthorityID, k.IdempotencyKey})
		}
	}
	h.inserts, h.closes = h.inserts[:sp.inserts], h.closes[:sp.closes]
	h.holds.rollback(sp.undo)
}

// rec returns the group's view of hold id, which it holds.
func (h *holdState) rec(id string) HoldRecord {
	g, _ := h.holds.get(id)
	return g.rec
}

// set records g as the group's view of its hold, undoably.
func (h *holdState) set(g groupHold) {
	h.holds.set(g.rec.ID, g)
}

func (h *holdState) flush(ctx context.Context, tx Tx) error {
	for _, id := range h.inserts {
		if err := tx.InsertHold(ctx, h.rec(id)); err != nil {
			return storeErr("insert hold", err)
		}
	}
	for _, id := range h.closes {
		r := h.rec(id)
		if err := tx.CloseHold(ctx, id, HoldClose{State: r.State, ClosedOn: r.ClosedOn, EntryID: r.EntryID}); err != nil {
			return storeErr("close hold", err)
		}
	}
	return nil
}

// clock returns the ledger clock's reading for the request being
// applied: one reading per request, so that every decision the request
// makes about due holds is made at one instant.
func (st *batchState) clock() time.Time {
	if !st.nowSet {
		st.now, st.nowSet = st.l.cfg.clock(), true
	}
	return st.now
}

// stamp is t as the ledger records instants: UTC, within the range IDs
// encode, without a monotonic reading.
func stamp(t time.Time) time.Time { return time.Unix(0, unixNano(t)).UTC() }

// heldAt returns what the holds of the wallet whose total over all
// authorities is t (under key k) hold at now: t.Held, less the holds it
// counts that are due but not yet recorded as expired. It reads only
// those, through the store's expiry index.
func (st *batchState) heldAt(k TotalKey, t Total, now time.Time) (decimal.Decimal, error) {
	held := t.Held
	if held.Sign() == 0 {
		return held, nil
	}
	for r, err := range st.tx.ExpiringHolds(st.ctx, k.UserID, k.Currency, now) {
		if err != nil {
			return decimal.Decimal{}, storeErr("read expiring holds", err)
		}
		if g, ok := st.holds.holds.get(r.ID); ok && g.rec.State != HoldActive {
			continue // closed by this group: no longer in t.Held
		}
		held = held.Sub(r.Amount)
	}
	for _, id := range st.holds.inserts {
		r := st.holds.rec(id)
		if r.UserID == k.UserID && r.Currency == k.Currency && r.State == HoldActive && r.due(now) {
			held = held.Sub(r.Amount)
		}
	}
	return held, nil
}

// checkFunds refuses a spend of amount (< 0) that takes the wallet of
// (userID, currency), whose total is t, to newTotal, if that leaves its
// Available (newTotal less what its holds hold now) below its floor.
func (st *batchState) checkFunds(userID, currency string, t Total, newTotal, amount decimal.Decimal) error {
	avail := newTotal
	if !t.Held.IsZero() {
		avail = newTotal.Sub(t.Held) // a zero Held has exponent 0: Sub would rescale
	}
	if avail.Sign() >= 0 {
		return nil // every floor is 0 or less, and what is held now is at most t.Held: no need to read either
	}
	held, err := st.heldAt(TotalKey{"", userID, currency}, t, st.clock())
	if err != nil {
		return err
	}
	available := newTotal.Sub(held)
	if available.Sign() >= 0 {
		return nil
	}
	l, err := st.limitsOf(userID, currency)
	if err != nil {
		return err
	}
	if available.LessThan(l.Floor) {
		return &NotEnoughFundsError{UserID: userID, Currency: currency, Balance: t.Value, Amount: amount, Floor: l.Floor, Held: held}
	}
	return nil
}

// holdByID returns the group's view of hold id, reading it from the
// store the first time.
func (st *batchState) holdByID(id string) (HoldRecord, error) {
	if g, ok := st.holds.holds.get(id); ok {
		return g.rec, nil
	}
	r, err := st.tx.Hold(st.ctx, id)
	switch {
	case isNotFound(err):
		return HoldRecord{}, fmt.Errorf("%w: hold %q", ErrNotFound, id)
	case err != nil:
		return HoldRecord{}, storeErr("read hold", err)
	}
	st.holds.holds.put(id, groupHold{rec: r})
	return r, nil
}

func (st *batchState) holdByKey(authorityID, key string) (HoldRecord, bool, error) {
	if id, ok := st.holds.byKey[idemKey{authorityID, key}]; ok {
		return st.holds.rec(id), true, nil
	}
	r, err := st.tx.HoldByIdempotencyKey(st.ctx, authorityID, key)
	switch {
	case isNotFound(err):
		return HoldRecord{}, false, nil
	case err != nil:
		return HoldRecord{}, false, storeErr("read hold idempotency key", err)
	}
	if g, ok := st.holds.holds.get(r.ID); ok {
		return g.rec, true, nil // as this group left it
	}
	return r, true, nil
}

// holdOut is r as a caller receives it, at now: its own copy.
func holdOut(r HoldRecord, now time.Time) Hold {
	h := r.Hold.at(now)
	h.Metadata = maps.Clone(h.Metadata)
	return h
}

// holdDiff names the fields in which a retry differs from the hold its
// idempotency key placed.
func holdDiff(orig HoldRecord, nh NewHold) []string {
	var diff []string
	if orig.UserID != nh.UserID {
		diff = append(diff, "UserID")
	}
	if orig.Currency != nh.Currency {
		diff = append(diff, "Currency")
	}
	if !orig.Amount.Equal(nh.Amount) {
		diff = append(diff, "Amount")
	}
	if orig.Reason != nh.Reason {
		diff = append(diff, "Reason")
	}
	if !orig.Expires.Equal(nh.Expires) {
		diff = append(diff, "Expires")
	}
	if !maps.Equal(orig.Metadata, nh.Metadata) {
		diff = append(diff, "Metadata")
	}
	return diff
}

// hold places nh, or, for a retry of its idempotency key, returns the
// hold the key placed, as it stands now.
func (st *batchState) hold(nh NewHold) (Hold, error) {
	now := st.clock()
	if nh.IdempotencyKey != "" {
		orig, found, err := st.holdByKey(nh.AuthorityID, nh.IdempotencyKey)
		if err != nil {
			return Hold{}, err
		}
		if found {
			if diff := holdDiff(orig, nh); len(diff) > 0 {
				return Hold{}, &IdempotencyConflictError{AuthorityID: nh.AuthorityID, Key: nh.IdempotencyKey, HoldID: orig.ID, Fields: diff}
			}
			return holdOut(orig, now), nil
		}
	}
	if !nh.Expires.IsZero() && !nh.Expires.After(now) {
		return Hold{}, invalid("Expires", "%s is not after the ledger clock's reading, %s", nh.Expires.Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
	}
	k := TotalKey{"", nh.UserID, nh.Currency}
	t, err := st.total(k)
	if err != nil {
		return Hold{}, err
	}
	newHeld := t.Held.Add(nh.Amount)
	if !st.l.fits(newHeld) {
		return Hold{}, invalid("Amount", "would take what user %q has held to %s, beyond the ledger's precision", nh.UserID, newHeld)
	}
	// A hold spends Available as an entry of -Amount would.
	if err := st.checkFunds(nh.UserID, nh.Currency, t, t.Value.Sub(nh.Amount), nh.Amount.Neg()); err != nil {
		return Hold{}, err
	}
	id, createdOn := st.ids.next(st.l.cfg.clock())
	r := HoldRecord{
		Hold: Hold{
			ID: id, AuthorityID: nh.AuthorityID, UserID: nh.UserID, Currency: nh.Currency,
			Amount: nh.Amount, Reason: nh.Reason, Metadata: nh.Metadata,
			CreatedOn: createdOn, Expires: nh.Expires, State: HoldActive,
		},
		IdempotencyKey: nh.IdempotencyKey,
	}
	if err := st.setTotal(k, Total{Value: t.Value, LastEntryID: t.LastEntryID, Held: newHeld}); err != nil {
		return Hold{}, err
	}
	st.holds.set(groupHold{rec: r, fresh: true})
	st.holds.inserts = append(st.holds.inserts, id)
	st.change(ChangeRecord{Kind: ChangeHoldPlaced, At: createdOn, AuthorityID: nh.AuthorityID, Ref: id})
	if nh.IdempotencyKey != "" {
		st.holds.byKey[idemKey{nh.AuthorityID, nh.IdempotencyKey}] = id
	}
	return holdOut(r, now), nil
}

// activeHold returns hold id if authorityID may settle it now.
func (st *batchState) activeHold(authorityID, id string) (HoldRecord, error) {
	r, err := st.holdByID(id)
	if err != nil {
		return HoldRecord{}, err
	}
	if r.AuthorityID != authorityID {
		return HoldRecord{}, fmt.Errorf("%w: authority %q did not place hold %q", ErrForbidden, authorityID, id)
	}
	if h := r.Hold.at(st.clock()); h.State != HoldActive {
		return HoldRecord{}, &HoldClosedError{HoldID: id, State: h.State}
	}
	return r, nil
}

// closeHold closes r (active, counted in its wallet's Held) with state,
// at closedOn, and frees its amount.
func (st *batchState) closeHold(r HoldRecord, state HoldState, closedOn time.Time, entryID string) error {
	k := TotalKey{"", r.UserID, r.Currency}
	t, err := st.total(k)
	if err != nil {
		return err
	}
	if err := st.setTotal(k, Total{Value: t.Value, LastEntryID: t.LastEntryID, Held: t.Held.Sub(r.Amount)}); err != nil {
		return err
	}
	g, _ := st.holds.holds.get(r.ID)
	fresh := g.fresh
	r.State, r.ClosedOn, r.EntryID = state, closedOn, entryID
	st.holds.set(groupHold{rec: r, fresh: fresh})
	if !fresh {
		st.holds.closes = append(st.holds.closes, r.ID)
	}
	return nil
}

// capture writes the entry that takes c.Amount (the whole hold when
// zero) of hold id, and closes the hold.
func (st *batchState) capture(authorityID, id string, c Capture) (Entry, error) {
	r, err := st.activeHold(authorityID, id)
	if err != nil {
		return Entry{}, err
	}
	amount := c.Amount
	switch {
	case amount.IsZero():
		amount = r.Amount
	case amount.GreaterThan(r.Amount):
		return Entry{}, invalid("Amount", "%s is more than hold %s holds (%s)", amount, id, r.Amount)
	}
	reason := c.Reason
	if reason == "" {
		reason = r.Reason
	}
	ne := NewEntry{
		AuthorityID: r.AuthorityID, UserID: r.UserID, Currency: r.Currency, Amount: amount.Neg(),
		Reason: reason, Item: c.Item, Metadata: maps.Clone(r.Metadata),
	}
	// The entry takes what the hold reserved: no funds check. Closing
	// the hold frees the whole of it, the uncaptured rest included.
	e, err := st.write(ne, entryLinks{holdID: id})
	if err != nil {
		return Entry{}, err
	}
	if err := st.closeHold(r, HoldCaptured, e.CreatedOn, e.ID); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// release closes hold id and frees what it held.
func (st *batchState) release(authorityID, id string) (Hold, error) {
	r, err := st.activeHold(authorityID, id)
	if err != nil {
		return Hold{}, err
	}
	now := st.clock()
	closed := stamp(now)
	if err := st.closeHold(r, HoldReleased, closed, ""); err != nil {
		return Hold{}, err
	}
	st.change(ChangeRecord{Kind: ChangeHoldReleased, At: closed, AuthorityID: authorityID, Ref: id})
	return holdOut(st.holds.rec(id), now), nil
}

// sweep records the expiry of up to sweepBatch due holds, appending them
// to out as they are now.
func (st *batchState) sweep(out []Hold) ([]Hold, error) {
	due, now, err := st.dueHolds(st.clock())
	if err != nil {
		return out, err
	}
	budget := st.l.cfg.limits.MaxBatchBytes
	for _, r := range due {
		if g, ok := st.holds.holds.get(r.ID); ok {
			if g.rec.State != HoldActive {
				continue // this group closed it already
			}
			r = g.rec
		}
		// Closing a hold rewrites it: the commit stays within
		// Limits.MaxBatchBytes, and the next sweep takes the rest.
		if budget -= storedHoldBytes(&r); budget < 0 && len(out) > 0 {
			break
		}
		if err := st.closeHold(r, HoldExpired, r.Expires, ""); err != nil {
			return out, err
		}
		st.change(ChangeRecord{Kind: ChangeHoldExpired, At: r.Expires, AuthorityID: r.AuthorityID, Ref: r.ID})
		out = append(out, holdOut(st.holds.rec(r.ID), now))
	}
	return out, nil
}

// dueHolds returns up to sweepBatch holds due at now, and now; or, once
// read (ahead, for the group's sweep), those and the instant they were
// due at, at which the sweep then decides.
func (st *batchState) dueHolds(now time.Time) ([]HoldRecord, time.Time, error) {
	if st.dueRead {
		return st.due, st.dueAt, nil
	}
	due := st.due[:0]
	for r, err := range st.tx.ExpiringHolds(st.ctx, "", "", now) {
		if err != nil {
			return nil, now, storeErr("read expiring holds", err)
		}
		due = append(due, r)
		if len(due) == sweepBatch {
			break
		}
	}
	st.due, st.dueAt, st.dueRead = due, now, true
	return due, now, nil
}

// storedHoldBytes is what rewriting r counts towards
// Limits.MaxBatchBytes.
func storedHoldBytes(r *HoldRecord) int {
	n := EntryOverheadBytes + len(r.ID) + len(r.AuthorityID) + len(r.UserID) + len(r.Currency) + len(r.Reason) + len(r.IdempotencyKey) + len(r.EntryID)
	for k, v := range r.Metadata {
		n += len(k) + len(v)
	}
	return n
}
