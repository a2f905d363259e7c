package ledger

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
)

// feedCheck checks that a change feed agrees with the records it
// describes: every entry has exactly one entry change, every recorded
// item use one item_used change at its UsedOn by its UsedBy, every hold
// one hold_placed change and, once released or expired, one change
// saying so at its ClosedOn, and each wallet's last limits change is its
// stored limits. Verify feeds it from a store and Import from a stream.
// It keeps a few bytes per entry.
type feedCheck struct {
	entries  map[[12]byte]uint8 // entry ID -> entryKnown | entryChanged | useSeen | useChanged
	uses     map[string]ItemUse // entry ID -> its item's use
	holds    map[string]*holdFeed
	limits   map[walletKey]StoredLimits
	lastLims map[walletKey]ChangeRecord
	problems []string
}

const (
	entryKnown uint8 = 1 << iota
	entryChanged
	useChanged
)

type holdFeed struct {
	h              Hold
	placed, closed bool
}

func newFeedCheck() *feedCheck {
	return &feedCheck{
		entries: map[[12]byte]uint8{}, uses: map[string]ItemUse{}, holds: map[string]*holdFeed{},
		limits: map[walletKey]StoredLimits{}, lastLims: map[walletKey]ChangeRecord{},
	}
}

func rawID(id string) ([12]byte, bool) {
	var k [12]byte
	n, s, ok := ParseEntryID(id)
	if !ok {
		return k, false
	}
	for i := range 8 {
		k[i] = byte(uint64(n) >> (56 - 8*i))
	}
	for i := range 4 {
		k[8+i] = byte(s >> (24 - 8*i))
	}
	return k, true
}

func (f *feedCheck) report(format string, args ...any) {
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

// entry records an entry (and its item's use, if used).
func (f *feedCheck) entry(r *Record) {
	k, ok := rawID(r.ID)
	if !ok {
		return // reported elsewhere
	}
	f.entries[k] |= entryKnown
	if r.Item != nil && r.Item.Used {
		f.uses[r.ID] = ItemUse{AuthorityID: r.Item.UsedBy, At: r.Item.UsedOn}
	}
}

func (f *feedCheck) limit(l StoredLimits) { f.limits[walletKey{l.UserID, l.Currency}] = l }

func (f *feedCheck) hold(h *Hold) { f.holds[h.ID] = &holdFeed{h: *h} }

// change checks one change against the records added so far, which must
// be all of them, and returns what is wrong with it, or "".
func (f *feedCheck) change(c ChangeRecord) string {
	switch c.Kind {
	case ChangeEntry, ChangeItemUsed:
		k, ok := rawID(c.Ref)
		flags := f.entries[k]
		if !ok || flags&entryKnown == 0 {
			return fmt.Sprintf("%s change names entry %q, which does not exist", c.Kind, c.Ref)
		}
		if c.Kind == ChangeEntry {
			if flags&entryChanged != 0 {
				return fmt.Sprintf("a second entry change for entry %s", c.Ref)
			}
			f.entries[k] |= entryChanged
			return ""
		}
		u, used := f.uses[c.Ref]
		switch {
		case !used:
			return fmt.Sprintf("item_used change for entry %s, whose item is not used", c.Ref)
		case flags&useChanged != 0:
			return fmt.Sprintf("a second item_used change for entry %s", c.Ref)
		case !c.At.Equal(u.At) || c.AuthorityID != u.AuthorityID:
			return fmt.Sprintf("item_used change for entry %s at %v by %q, but the item was used at %v by %q", c.Ref, c.At, c.AuthorityID, u.At, u.AuthorityID)
		}
		f.entries[k] |= useChanged
	case ChangeHoldPlaced, ChangeHoldReleased, ChangeHoldExpired:
		hf := f.holds[c.Ref]
		if hf == nil {
			return fmt.Sprintf("%s change names hold %q, which does not exist", c.Kind, c.Ref)
		}
		h := &hf.h
		if c.Kind == ChangeHoldPlaced {
			switch {
			case hf.placed:
				return fmt.Sprintf("a second hold_placed change for hold %s", c.Ref)
			case !c.At.Equal(h.CreatedOn) || c.AuthorityID != h.AuthorityID:
				return fmt.Sprintf("hold_placed change for hold %s at %v by %q, but it was placed at %v by %q", c.Ref, c.At, c.AuthorityID, h.CreatedOn, h.AuthorityID)
			}
			hf.placed = true
			return ""
		}
		want := map[ChangeKind]HoldState{ChangeHoldReleased: HoldReleased, ChangeHoldExpired: HoldExpired}[c.Kind]
		switch {
		case hf.closed:
			return fmt.Sprintf("a second closing change for hold %s", c.Ref)
		case h.State != want:
			return fmt.Sprintf("%s change for hold %s, which is %s", c.Kind, c.Ref, h.State)
		case !c.At.Equal(h.ClosedOn):
			return fmt.Sprintf("%s change for hold %s at %v, but it closed at %v", c.Kind, c.Ref, c.At, h.ClosedOn)
		}
		hf.closed = true
	case ChangeLimits:
		if c.Limits == nil {
			return "limits change without limits"
		}
		f.lastLims[walletKey{c.Limits.UserID, c.Limits.Currency}] = c
	default:
		return fmt.Sprintf("change of unknown kind %q", c.Kind)
	}
	return ""
}

// finish reports what no change covered.
func (f *feedCheck) finish() []string {
	missing := 0
	for _, flags := range f.entries {
		if flags&entryChanged == 0 {
			missing++
		}
	}
	if missing > 0 {
		f.report("%d entries have no entry change", missing)
	}
	for _, id := range slices.Sorted(maps.Keys(f.uses)) {
		k, _ := rawID(id)
		if f.entries[k]&useChanged == 0 {
			f.report("entry %s: its item's use has no item_used change", id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(f.holds)) {
		hf := f.holds[id]
		if !hf.placed {
			f.report("hold %s has no hold_placed change", id)
		}
		if (hf.h.State == HoldReleased || hf.h.State == HoldExpired) && !hf.closed {
			f.report("hold %s is %s, with no change saying so", id, hf.h.State)
		}
	}
	keys := slices.SortedFunc(maps.Keys(f.limits), func(a, b walletKey) int {
		return cmp.Or(cmp.Compare(a.userID, b.userID), cmp.Compare(a.currency, b.currency))
	})
	for _, k := range keys {
		l := f.limits[k]
		c, ok := f.lastLims[k]
		switch {
		case !ok:
			f.report("limits of user %q in %q have no limits change", k.userID, k.currency)
		case !sameLimits(*c.Limits, l.WalletLimits) || c.AuthorityID != l.SetBy || !c.At.Equal(l.SetOn):
			f.report("limits of user %q in %q disagree with their last limits change", k.userID, k.currency)
		}
	}
	for k := range f.lastLims {
		if _, ok := f.limits[k]; !ok {
			f.report("a limits change for user %q in %q, which has no limits stored", k.userID, k.currency)
		}
	}
	return f.problems
}

func sameLimits(a, b WalletLimits) bool {
	return a.UserID == b.UserID && a.Currency == b.Currency && a.Floor.Equal(b.Floor) &&
		(a.Cap == nil) == (b.Cap == nil) && (a.Cap == nil || a.Cap.Equal(*b.Cap))
}

// pastEvent is a change of a ledger's past other than an entry's, as
// pastChanges merges them.
type pastEvent struct {
	order int    // at equal times: uses, then limits, then placed holds, then closes
	key   string // then by ID (limits: user, currency)
	c     ChangeRecord
}

// past collects the records of a ledger that has none of its changes,
// and merges them into the changes that describe its past, in this
// order: a merge by time of every entry (at CreatedOn), every recorded
// item use (at UsedOn; a use recorded without a time comes right after
// its entry), every wallet's limits (at SetOn), every hold's placing (at
// CreatedOn) and, for a released or expired hold, its closing (at
// ClosedOn). At equal times entries come first, then uses, limits,
// placed holds and closes, each by ID (limits by user and currency).
type past struct {
	events  []pastEvent
	untimed map[string]ChangeRecord // entry ID -> its use recorded without a time
	sorted  bool
	next    int
}

func newPast() *past { return &past{untimed: map[string]ChangeRecord{}} }

func (p *past) use(r *Record) {
	if r.Item == nil || !r.Item.Used {
		return
	}
	c := ChangeRecord{Kind: ChangeItemUsed, At: r.Item.UsedOn, AuthorityID: r.Item.UsedBy, Ref: r.ID}
	if r.Item.UsedOn.IsZero() {
		p.untimed[r.ID] = c
		return
	}
	p.events = append(p.events, pastEvent{1, r.ID, c})
}

func (p *past) limit(l StoredLimits) {
	p.events = append(p.events, pastEvent{2, l.UserID + "\x00" + l.Currency,
		ChangeRecord{Kind: ChangeLimits, At: l.SetOn, AuthorityID: l.SetBy, Limits: cloneLimits(&l.WalletLimits)}})
}

func (p *past) hold(h *Hold) {
	p.events = append(p.events, pastEvent{3, h.ID, ChangeRecord{Kind: ChangeHoldPlaced, At: h.CreatedOn, AuthorityID: h.AuthorityID, Ref: h.ID}})
	switch h.State {
	case HoldReleased:
		p.events = append(p.events, pastEvent{4, h.ID, ChangeRecord{Kind: ChangeHoldReleased, At: h.ClosedOn, AuthorityID: h.AuthorityID, Ref: h.ID}})
	case HoldExpired:
		p.events = append(p.events, pastEvent{4, h.ID, ChangeRecord{Kind: ChangeHoldExpired, At: h.ClosedOn, AuthorityID: h.AuthorityID, Ref: h.ID}})
	}
}

func (p *past) sort() {
	if !p.sorted {
		slices.SortFunc(p.events, func(a, b pastEvent) int {
			return cmp.Or(a.c.At.Compare(b.c.At), cmp.Compare(a.order, b.order), cmp.Compare(a.key, b.key))
		})
		p.sorted = true
	}
}

// entry appends to out the changes that come before entry r, r's own,
// and its untimed use, in order; entries must come in ID order.
func (p *past) entry(r *Record, out []ChangeRecord) []ChangeRecord {
	p.sort()
	for p.next < len(p.events) && p.events[p.next].c.At.Before(r.CreatedOn) {
		out = append(out, p.events[p.next].c)
		p.next++
	}
	out = append(out, ChangeRecord{Kind: ChangeEntry, At: r.CreatedOn, AuthorityID: r.AuthorityID, Ref: r.ID})
	if c, ok := p.untimed[r.ID]; ok {
		out = append(out, c)
	}
	return out
}

// rest appends the changes after the last entry.
func (p *past) rest(out []ChangeRecord) []ChangeRecord {
	p.sort()
	for ; p.next < len(p.events); p.next++ {
		out = append(out, p.events[p.next].c)
	}
	return out
}
