package storetest

import (
	"fmt"
	"maps"
	"time"

	"pgregory.net/rapid"

	"github.com/walletledger/ledger"
)

// The model's change feed (issue 13): the model lists the changes it
// expects as it applies each write it predicts is written, and the check
// compares the ledger's feed with that list, record by record.

// mChange is a change the model expects in the feed, with the record as
// the change must show it: an entry as written (entry) or as its use
// left it (item_used), a hold as placed or as released, the limits set.
type mChange struct {
	kind      ledger.ChangeKind
	authority string
	at        time.Time
	entry     *ledger.Entry
	hold      *ledger.Hold
	limits    *ledger.WalletLimits
}

// snapshot copies e, so that what the model does to its entries later
// (a use, a revocation, a reversal) leaves the change as it was.
func snapshot(e ledger.Entry) *ledger.Entry {
	e.Item = cloneItem(e.Item)
	e.Metadata = maps.Clone(e.Metadata)
	return &e
}

// entryChanged lists the entry change of e, just written at the model's
// clock.
func (m *model) entryChanged(e ledger.Entry) {
	m.changes = append(m.changes, mChange{kind: ledger.ChangeEntry, authority: e.AuthorityID, at: m.now, entry: snapshot(e)})
}

// itemUsed lists the use of entry i's item, just made by authority.
func (m *model) itemUsed(i int, authority string) {
	m.changes = append(m.changes, mChange{kind: ledger.ChangeItemUsed, authority: authority, at: m.now, entry: snapshot(m.entries[i].Entry)})
}

// limitsSet lists the limits lim, just set by authority.
func (m *model) limitsSet(authority string, lim ledger.WalletLimits) {
	if lim.Cap != nil {
		c := *lim.Cap
		lim.Cap = &c
	}
	m.changes = append(m.changes, mChange{kind: ledger.ChangeLimits, authority: authority, at: m.now, limits: &lim})
}

// holdChanged lists a change of kind to hold h, as it stands after it.
func (m *model) holdChanged(kind ledger.ChangeKind, authority string, h ledger.Hold) {
	m.changes = append(m.changes, mChange{kind: kind, authority: authority, at: m.now, hold: &h})
}

// readChanges reads the feed to its end, or to q.Limit changes.
func (m *model) readChanges(rt *rapid.T, q ledger.ChangeQuery) []ledger.Change {
	var out []ledger.Change
	for c, err := range m.l.Changes(m.ctx(), q) {
		if err != nil {
			rt.Fatalf("Changes(%+v): %v", q, err)
		}
		out = append(out, c)
	}
	return out
}

// checkFeed reads the whole feed and compares it with the model's list
// of changes (see requireFeed), then reads it again after a cursor drawn
// from it, sometimes with a Limit, and checks that the answer is the
// rest of the first read (or its first Limit changes): the same changes
// under the same cursors. The sweep may record expiries between the two
// reads, so the second read may end with changes the first did not
// have; requireFeed checks them with the rest.
func (m *model) checkFeed(rt *rapid.T) {
	feed := m.readChanges(rt, ledger.ChangeQuery{})
	m.requireFeed(rt, "Changes()", feed, true)
	if len(feed) == 0 {
		return
	}
	k := rapid.IntRange(0, len(feed)-1).Draw(rt, "resumeAfter")
	q := ledger.ChangeQuery{After: feed[k].Cursor, Limit: rapid.SampledFrom([]int{0, 0, 0, 1, 3}).Draw(rt, "resumeLimit")}
	rest := m.readChanges(rt, q)
	want := feed[k+1:]
	if q.Limit > 0 {
		want = want[:min(q.Limit, len(want))]
		if len(rest) > q.Limit {
			rt.Fatalf("Changes(%+v): %d changes, past the limit", q, len(rest))
		}
	}
	if len(rest) < len(want) {
		rt.Fatalf("Changes(%+v) after change %d of %d: got %d changes, want at least %d", q, k, len(feed), len(rest), len(want))
	}
	for i := range want {
		if g, w := changeKey(rest[i]), changeKey(want[i]); g != w {
			rt.Fatalf("Changes(%+v)[%d]: got %s, want %s, change %d of the whole feed", q, i, g, w, k+1+i)
		}
	}
	m.requireFeed(rt, fmt.Sprintf("Changes(after %d, limit %d)", k, q.Limit), append(feed[:k+1:k+1], rest...), q.Limit == 0)
}

// changeKey is what tells one change from another.
func changeKey(c ledger.Change) string {
	ref := ""
	switch {
	case c.Entry != nil:
		ref = c.Entry.ID
	case c.Hold != nil:
		ref = c.Hold.ID
	case c.Limits != nil:
		ref = c.Limits.UserID + "/" + c.Limits.Currency + " " + c.Limits.Floor.String()
	}
	return fmt.Sprintf("%s %s %s by %s at %s", c.Cursor, c.Kind, ref, c.AuthorityID, c.At.Format(time.RFC3339Nano))
}

// requireFeed fails unless feed, read from the first change, agrees with
// the model: its cursors increase; its changes other than hold_expired
// are the model's list, in order, each with the record as the model has
// it (when whole; else a prefix of the list, feed being a prefix of the
// ledger's); and each hold_expired is the expiry of a hold the model
// says is due now, at most once, after its hold_placed, and only when
// the ledger sweeps. When the sweep records an expiry is the sweep's
// business: only the model's own writes have a place in its list.
func (m *model) requireFeed(rt *rapid.T, what string, feed []ledger.Change, whole bool) {
	placed, expired := map[string]bool{}, map[string]bool{}
	n := 0
	for i, c := range feed {
		if i > 0 && c.Cursor <= feed[i-1].Cursor {
			rt.Fatalf("%s[%d]: cursor %q does not sort after %q", what, i, c.Cursor, feed[i-1].Cursor)
		}
		at := fmt.Sprintf("%s[%d] (%s)", what, i, changeKey(c))
		if c.Kind == ledger.ChangeHoldExpired {
			m.requireExpiry(rt, at, c, placed, expired)
			continue
		}
		if n == len(m.changes) {
			rt.Fatalf("%s: a change the model did not make; it made %d", at, n)
		}
		requireChange(rt, at, c, m.changes[n])
		if c.Kind == ledger.ChangeHoldPlaced {
			placed[c.Hold.ID] = true
		}
		n++
	}
	if whole && n != len(m.changes) {
		w := m.changes[n]
		rt.Fatalf("%s: %d changes besides expiries, want %d; the first missing is %s by %s at %s",
			what, n, len(m.changes), w.kind, w.authority, w.at)
	}
}

// requireChange fails unless got is the model's change want, with the
// record it names as the change left it.
func requireChange(rt *rapid.T, what string, got ledger.Change, want mChange) {
	if got.Kind != want.kind || got.AuthorityID != want.authority || !got.At.Equal(want.at) ||
		(got.Entry == nil) != (want.entry == nil) || (got.Hold == nil) != (want.hold == nil) || (got.Limits == nil) != (want.limits == nil) {
		rt.Fatalf("%s: got %s by %s at %s (entry %v, hold %v, limits %v), want %s by %s at %s (entry %v, hold %v, limits %v)",
			what, got.Kind, got.AuthorityID, got.At, got.Entry != nil, got.Hold != nil, got.Limits != nil,
			want.kind, want.authority, want.at, want.entry != nil, want.hold != nil, want.limits != nil)
	}
	switch {
	case want.entry != nil:
		requireModelEntry(rt, what, *got.Entry, *want.entry)
	case want.hold != nil:
		requireModelHold(rt, what, *got.Hold, *want.hold)
	case want.limits != nil:
		g, w := got.Limits, want.limits
		if g.UserID != w.UserID || g.Currency != w.Currency || !g.Floor.Equal(w.Floor) ||
			(g.Cap == nil) != (w.Cap == nil) || g.Cap != nil && !g.Cap.Equal(*w.Cap) {
			rt.Fatalf("%s: got limits %+v (cap %v), want %+v (cap %v)", what, *g, g.Cap, *w, w.Cap)
		}
	}
}

// requireExpiry fails unless c, a hold_expired change, records the
// expiry of a hold that the model says is due now, placed earlier in
// the feed (placed) and not expired by it already (expired, which it
// joins).
func (m *model) requireExpiry(rt *rapid.T, what string, c ledger.Change, placed, expired map[string]bool) {
	if !m.sweep {
		rt.Fatalf("%s: an expiry, with the sweep off", what)
	}
	if c.Hold == nil || c.Entry != nil || c.Limits != nil {
		rt.Fatalf("%s: an expiry without its hold, or with another record", what)
	}
	id := c.Hold.ID
	i, ok := m.holdIndex[id]
	if !ok {
		rt.Fatalf("%s: the expiry of hold %s, which the model did not place", what, id)
	}
	h := m.holds[i].at(m.now)
	switch {
	case h.State != ledger.HoldExpired || m.holds[i].State != ledger.HoldActive:
		rt.Fatalf("%s: the expiry of hold %s, %s at %s (expires %s)", what, id, h.State, m.now, h.Expires)
	case !placed[id]:
		rt.Fatalf("%s: the expiry of hold %s before its hold_placed", what, id)
	case expired[id]:
		rt.Fatalf("%s: hold %s expired twice", what, id)
	case c.AuthorityID != h.AuthorityID || !c.At.Equal(h.Expires):
		rt.Fatalf("%s: the expiry of hold %s by %s at %s, want by %s at %s", what, id, c.AuthorityID, c.At, h.AuthorityID, h.Expires)
	}
	expired[id] = true
	requireModelHold(rt, what, *c.Hold, h)
}
