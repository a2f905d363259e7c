package ledger

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/shopspring/decimal"
)

// WalletQuery selects wallet totals for [Ledger.Wallets]. The zero value
// asks for every user's current total.
type WalletQuery struct {
	// UserIDs, when set, asks for exactly these users (duplicates
	// ignored), each with a row even if nothing counts for them. When
	// empty, every user with at least one counted entry gets a row.
	UserIDs []string
	// AuthorityIDs, when set, counts only these authorities' entries.
	AuthorityIDs []string
	// After pages: only users whose ID sorts after it.
	After string
	// Limit caps the rows returned; 0 means no cap.
	Limit int
	// AsOf, when set, gives totals as they stood at that instant: the
	// entries created at or before it count.
	AsOf time.Time
	// Currency lists the totals of this currency ("" the default).
	Currency string
}

// WalletTotal is one user's total.
type WalletTotal struct {
	UserID   string          `json:"user_id"`
	Total    decimal.Decimal `json:"total"`
	Currency string          `json:"currency,omitempty"`
}

// String formats w as user=total, followed by the currency if it is not
// the default.
func (w WalletTotal) String() string {
	return w.UserID + "=" + w.Total.String() + currencySuffix(w.Currency)
}

// UsedFilter selects items by their used state.
type UsedFilter int

// The used filters. The zero value is UnusedOnly, the original service's
// default.
const (
	UnusedOnly UsedFilter = iota
	UsedOnly
	UsedOrUnused
)

// InventoryQuery selects items for [Ledger.Inventory]. Every non-empty
// list filters, all together. The zero value asks for every unused item.
type InventoryQuery struct {
	EntryIDs, UserIDs, AuthorityIDs []string
	Used                            UsedFilter
	// After pages: only entries whose ID sorts after it.
	After string
	// Limit caps the items returned; 0 means no cap.
	Limit int
}

// InventoryItem is an item and the entry that granted it.
type InventoryItem struct {
	EntryID     string `json:"entry_id"`
	AuthorityID string `json:"authority_id"`
	UserID      string `json:"user_id"`
	Item        Item   `json:"item"`
}

// EntryQuery selects entries for [Ledger.Entries]. Every set field
// filters, all together. The zero value asks for every entry.
type EntryQuery struct {
	EntryIDs, UserIDs, AuthorityIDs []string
	// Currencies, when set, selects only entries in these currencies ("" the
	// default).
	Currencies []string
	// Since and Until bound CreatedOn to [Since, Until); zero means
	// unbounded.
	Since, Until time.Time
	// After pages: only entries whose ID sorts after it (before it, with
	// Reverse).
	After string
	// Limit caps the entries returned; 0 means no cap.
	Limit int
	// Reverse lists newest first, and After pages backwards: pass the
	// last ID of one page to get the older entries before it.
	Reverse bool
}

// Wallets returns wallet totals sorted by user ID. With q.AuthorityIDs
// only those authorities' entries count; with q.AsOf, only the entries
// created at or before it. Reading a named user's total is a lookup of a
// running total, never a sum over entries.
func (l *Ledger) Wallets(ctx context.Context, q WalletQuery) ([]WalletTotal, error) {
	if err := l.enter(ctx); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	users, err := l.checkIDs("UserIDs", q.UserIDs)
	if err != nil {
		return nil, err
	}
	auths, err := l.checkIDs("AuthorityIDs", q.AuthorityIDs)
	if err != nil {
		return nil, err
	}
	if err := l.checkPage(q.After, q.Limit); err != nil {
		return nil, err
	}
	if err := checkCurrency("Currency", q.Currency); err != nil {
		return nil, err
	}

	v := &walletsView{walletReader: walletReader{ctx: ctx, auths: auths, currency: q.Currency},
		users: users, after: q.After, limit: q.Limit}
	if !q.AsOf.IsZero() {
		v.end = timeBound(q.AsOf.Add(time.Nanosecond))
	}
	if err := l.store.View(ctx, v.read); err != nil {
		return nil, storeErr("wallets", err)
	}
	if v.out == nil {
		return []WalletTotal{}, nil
	}
	return v.out, nil
}

// walletsView is one call of [Ledger.Wallets] in its View: one
// allocation holds what the call needs.
type walletsView struct {
	walletReader
	users []string
	after string
	limit int
	out   []WalletTotal
	first [1]WalletTotal
}

func (v *walletsView) full() bool { return v.limit > 0 && len(v.out) >= v.limit }

func (v *walletsView) read(tx ReadTx) error {
	v.tx, v.out = tx, v.out[:0]
	if len(v.users) > 0 {
		start, _ := slices.BinarySearch(v.users, v.after+"\x00")
		if n := len(v.users) - start; n == 1 || v.limit == 1 {
			v.out = v.first[:0] // the common read of one wallet
		} else if v.out == nil {
			v.out = make([]WalletTotal, 0, n)
		}
		for _, u := range v.users[start:] {
			if v.full() {
				break
			}
			total, _, err := v.total(u)
			if err != nil {
				return err
			}
			v.out = append(v.out, WalletTotal{UserID: u, Total: total, Currency: v.currency})
		}
		return nil
	}
	return v.readAll()
}

// readAll is read of every user's total; apart, since a range over a
// func allocates its state when the function starts.
func (v *walletsView) readAll() error {
	for row, err := range v.all(v.after) {
		if err != nil {
			return err
		}
		if v.full() {
			break
		}
		if v.end != "" {
			total, counted, err := v.total(row.UserID)
			if err != nil {
				return err
			}
			if !counted {
				continue
			}
			row.Value = total
		}
		v.out = append(v.out, WalletTotal{UserID: row.UserID, Total: row.Value, Currency: v.currency})
	}
	return nil
}

// walletReader reads totals, current or as of an instant, over all
// authorities or some.
type walletReader struct {
	ctx      context.Context
	tx       ReadTx
	auths    []string
	currency string
	end      string // when set, only entries with IDs below it count
}

// total returns u's total and whether any entry counts for it.
func (w *walletReader) total(u string) (decimal.Decimal, bool, error) {
	if len(w.auths) == 0 {
		return w.one("", u)
	}
	var sum decimal.Decimal
	counted := false
	for _, a := range w.auths {
		v, ok, err := w.one(a, u)
		if err != nil {
			return decimal.Decimal{}, false, err
		}
		if ok {
			sum, counted = sum.Add(v), true
		}
	}
	return sum, counted, nil
}

// one returns the total of one authority ("" for all) for u.
func (w *walletReader) one(a, u string) (decimal.Decimal, bool, error) {
	if w.end == "" {
		t, ok, err := w.tx.Total(w.ctx, TotalKey{a, u, w.currency})
		if !ok {
			return decimal.Decimal{}, false, err
		}
		return t.Value, true, err
	}
	return w.oneAsOf(a, u)
}

// oneAsOf is one as of w.end: the running total recorded on the last
// entry before it. Apart from one, since a range over a func allocates
// its state when the function starts.
func (w *walletReader) oneAsOf(a, u string) (decimal.Decimal, bool, error) {
	for r, err := range w.tx.Entries(w.ctx, Scan{UserID: u, AuthorityID: a, InCurrency: true, Currency: w.currency, End: w.end, Reverse: true}) {
		if err != nil {
			return decimal.Decimal{}, false, err
		}
		if a == "" {
			return r.Balance, true, nil
		}
		return r.AuthorityBalance, true, nil
	}
	return decimal.Decimal{}, false, nil
}

// all yields the current total of every user with a counted entry, after
// the given user ID, in user order.
func (w *walletReader) all(after string) iter.Seq2[UserTotal, error] {
	if len(w.auths) == 0 {
		return w.tx.Totals(w.ctx, "", w.currency, after)
	}
	seqs := make([]iter.Seq2[UserTotal, error], len(w.auths))
	for i, a := range w.auths {
		seqs[i] = w.tx.Totals(w.ctx, a, w.currency, after)
	}
	return func(yield func(UserTotal, error) bool) {
		var cur UserTotal
		have := false
		for row, err := range merge(seqs, func(t UserTotal) string { return t.UserID }, false) {
			if err != nil {
				yield(UserTotal{}, err)
				return
			}
			if have && row.UserID == cur.UserID {
				cur.Value = cur.Value.Add(row.Value)
				continue
			}
			if have && !yield(cur, nil) {
				return
			}
			cur, have = row, true
		}
		if have {
			yield(cur, nil)
		}
	}
}

// Inventory returns items sorted by the ID of the entry that granted
// them, filtered by every list in q together and by q.Used. Item data
// comes back exactly as written.
func (l *Ledger) Inventory(ctx context.Context, q InventoryQuery) ([]InventoryItem, error) {
	if err := l.enter(ctx); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	if q.Used < UnusedOnly || q.Used > UsedOrUnused {
		return nil, invalid("Used", "unknown filter %d", int(q.Used))
	}
	sel, err := l.newSelection(q.EntryIDs, q.UserIDs, q.AuthorityIDs, q.After, q.Limit)
	if err != nil {
		return nil, err
	}
	sel.itemsOnly = true
	out := []InventoryItem{}
	err = l.storeView(ctx, "inventory", func(tx ReadTx) error {
		return sel.run(ctx, tx, func(r Record) bool {
			if q.Used == UnusedOnly && (r.Item.Used || r.Item.Revoked) || q.Used == UsedOnly && !r.Item.Used {
				return true
			}
			out = append(out, InventoryItem{EntryID: r.ID, AuthorityID: r.AuthorityID, UserID: r.UserID, Item: *r.Item})
			return q.Limit == 0 || len(out) < q.Limit
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Entries returns entries sorted by ID, that is in creation order (newest
// first with q.Reverse), filtered by every field of q together. Each
// carries the user's Balance right after it, so a user's entries read as
// a statement.
func (l *Ledger) Entries(ctx context.Context, q EntryQuery) ([]Entry, error) {
	if err := l.enter(ctx); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Since.After(q.Until) {
		return nil, invalid("Since", "%v is after Until %v", q.Since, q.Until)
	}
	if err := l.checkPage(q.After, q.Limit); err != nil {
		return nil, err
	}
	sel, err := l.newSelection(q.EntryIDs, q.UserIDs, q.AuthorityIDs, "", q.Limit)
	if err != nil {
		return nil, err
	}
	if !q.Since.IsZero() {
		sel.start = timeBound(q.Since)
	}
	if !q.Until.IsZero() {
		sel.end = timeBound(q.Until)
	}
	if q.After != "" {
		if q.Reverse {
			sel.end = minBound(sel.end, q.After)
		} else {
			sel.start = max(sel.start, q.After+"\x00")
		}
	}
	sel.reverse = q.Reverse
	if len(q.Currencies) > 0 {
		for _, c := range q.Currencies {
			if err := checkCurrency("Currencies", c); err != nil {
				return nil, err
			}
		}
		sel.currencies = slices.Compact(slices.Sorted(slices.Values(q.Currencies)))
	}
	out := []Entry{}
	err = l.storeView(ctx, "entries", func(tx ReadTx) error {
		return sel.run(ctx, tx, func(r Record) bool {
			out = append(out, r.Entry)
			return q.Limit == 0 || len(out) < q.Limit
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// storeView runs fn in a store read transaction on behalf of a call,
// which holds l.mu.
func (l *Ledger) storeView(ctx context.Context, op string, fn func(ReadTx) error) error {
	if err := l.store.View(ctx, fn); err != nil {
		return storeErr(op, err)
	}
	return nil
}

// selection is a validated entry filter, ready to run against a store.
type selection struct {
	entryIDs, users, auths []string // sorted, distinct
	itemsOnly              bool
	start, end             string   // ID range [start, end); "" = unbounded
	reverse                bool     // descending ID order
	currencies             []string // sorted, distinct; nil: all
}

// minBound returns the lower of two end bounds, "" being unbounded.
func minBound(a, b string) string {
	if a == "" {
		return b
	}
	return min(a, b)
}

func (l *Ledger) newSelection(entryIDs, users, auths []string, after string, limit int) (selection, error) {
	var s selection
	var err error
	if s.entryIDs, err = l.checkIDs("EntryIDs", entryIDs); err != nil {
		return s, err
	}
	if s.users, err = l.checkIDs("UserIDs", users); err != nil {
		return s, err
	}
	if s.auths, err = l.checkIDs("AuthorityIDs", auths); err != nil {
		return s, err
	}
	if err := l.checkPage(after, limit); err != nil {
		return s, err
	}
	if after != "" {
		s.start = after + "\x00"
	}
	return s, nil
}

// maxPairScans bounds the (user, authority) scans a selection merges
// before it prefers one scan per user, filtered.
const maxPairScans = 64

// run calls fn with each matching record in ID order until fn returns
// false. It drives the query from the most selective index: the entry
// IDs, else each user's (or user and authority's) entries, else each
// authority's, else all.
func (s *selection) run(ctx context.Context, tx ReadTx, fn func(Record) bool) error {
	base := Scan{ItemsOnly: s.itemsOnly, Start: s.start, End: s.end, Reverse: s.reverse}
	if len(s.currencies) == 1 {
		base.InCurrency, base.Currency = true, s.currencies[0]
	}
	var src iter.Seq2[Record, error]
	switch {
	case len(s.entryIDs) > 0:
		src = s.lookup(ctx, tx)
	case len(s.users) > 0 && len(s.auths) > 0 && len(s.users)*len(s.auths) <= maxPairScans:
		var seqs []iter.Seq2[Record, error]
		for _, u := range s.users {
			for _, a := range s.auths {
				sc := base
				sc.UserID, sc.AuthorityID = u, a
				seqs = append(seqs, tx.Entries(ctx, sc))
			}
		}
		src = merge(seqs, recordID, s.reverse)
	case len(s.users) > 0:
		seqs := make([]iter.Seq2[Record, error], len(s.users))
		for i, u := range s.users {
			sc := base
			sc.UserID = u
			seqs[i] = tx.Entries(ctx, sc)
		}
		src = merge(seqs, recordID, s.reverse)
	case len(s.auths) > 0:
		seqs := make([]iter.Seq2[Record, error], len(s.auths))
		for i, a := range s.auths {
			sc := base
			sc.AuthorityID = a
			seqs[i] = tx.Entries(ctx, sc)
		}
		src = merge(seqs, recordID, s.reverse)
	default:
		src = tx.Entries(ctx, base)
	}
	n := 0
	for r, err := range src {
		if err != nil {
			return err
		}
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if !s.match(r) {
			continue
		}
		if !fn(r) {
			return nil
		}
	}
	return ctx.Err()
}

func recordID(r Record) string { return r.ID }

func (s *selection) match(r Record) bool {
	return (!s.itemsOnly || r.Item != nil) &&
		(s.currencies == nil || contains(s.currencies, r.Currency)) &&
		(len(s.users) == 0 || contains(s.users, r.UserID)) &&
		(len(s.auths) == 0 || contains(s.auths, r.AuthorityID))
}

func contains(sorted []string, s string) bool {
	_, ok := slices.BinarySearch(sorted, s)
	return ok
}

// lookup yields the selection's named entries that exist, in ID order.
func (s *selection) lookup(ctx context.Context, tx ReadTx) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		ids := s.entryIDs
		if s.reverse {
			ids = slices.Clone(ids)
			slices.Reverse(ids)
		}
		for _, id := range ids {
			if s.start != "" && id < s.start || s.end != "" && id >= s.end {
				continue
			}
			r, err := tx.Entry(ctx, id)
			if isNotFound(err) {
				continue
			}
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// Verify recomputes every total and per-authority total from the entries,
// and every wallet's held amount from its holds, and checks them, each
// entry's Balance, and the links between captures and their holds,
// against what is stored. It
// returns nil when all agree and otherwise a [*VerifyError] listing the
// mismatches. It reads the whole ledger in one snapshot.
func (l *Ledger) Verify(ctx context.Context) error {
	if err := l.enter(ctx); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	return l.verifyHeld(ctx)
}

// verifyHeld is [Ledger.Verify] for a caller that holds l.mu already.
func (l *Ledger) verifyHeld(ctx context.Context) error {
	var v verifier
	if err := l.storeView(ctx, "verify", func(tx ReadTx) error { return v.run(ctx, tx) }); err != nil {
		return err
	}
	if len(v.problems) > 0 {
		return &VerifyError{Problems: v.problems, More: v.more}
	}
	return nil
}

// maxProblems bounds the mismatches a VerifyError lists.
const maxProblems = 100

type verifier struct {
	problems []string
	more     int
	// The reversal links the entries hold, checked against each other.
	reversedBy, reverses map[string]string
	// captures maps a hold ID to the entry that names it as HoldID.
	captures map[string]string
	// held sums the active holds per wallet; holders are the wallets
	// with a hold in any state.
	held    map[walletKey]decimal.Decimal
	holders map[walletKey]bool
	feed    *feedCheck
}

func (v *verifier) report(format string, args ...any) {
	if len(v.problems) < maxProblems {
		v.problems = append(v.problems, fmt.Sprintf(format, args...))
	} else {
		v.more++
	}
}

func (v *verifier) run(ctx context.Context, tx ReadTx) error {
	v.reversedBy, v.reverses = map[string]string{}, map[string]string{}
	v.captures, v.held, v.holders = map[string]string{}, map[walletKey]decimal.Decimal{}, map[walletKey]bool{}
	v.feed = newFeedCheck()
	sums := totalSums{} // recomputed from the entries
	var prev string
	var prevNanos int64
	n := 0
	for r, err := range tx.Entries(ctx, Scan{}) {
		if err != nil {
			return err
		}
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		nanos, _, ok := ParseEntryID(r.ID)
		switch {
		case !ok:
			v.report("entry %q: malformed ID", r.ID)
		case r.ID <= prev:
			v.report("entry %s: listed after %s", r.ID, prev)
		case nanos != r.CreatedOn.UnixNano():
			v.report("entry %s: CreatedOn %v disagrees with its ID", r.ID, r.CreatedOn)
		case nanos < prevNanos:
			v.report("entry %s: created before the entry preceding it", r.ID)
		}
		prev, prevNanos = r.ID, nanos
		v.feed.entry(&r)

		user := sums.add(TotalKey{"", r.UserID, r.Currency}, r)
		pair := sums.add(TotalKey{r.AuthorityID, r.UserID, r.Currency}, r)
		if !user.Equal(r.Balance) {
			v.report("entry %s: Balance %s, but the user's entries sum to %s", r.ID, r.Balance, user)
		}
		if !pair.Equal(r.AuthorityBalance) {
			v.report("entry %s: authority balance %s, but the authority's entries for the user sum to %s",
				r.ID, r.AuthorityBalance, pair)
		}
		if r.ReversedBy != "" {
			v.reversedBy[r.ID] = r.ReversedBy
		}
		if r.Reverses != "" {
			v.reverses[r.ID] = r.Reverses
		}
		if r.HoldID != "" {
			if prev, ok := v.captures[r.HoldID]; ok {
				v.report("entry %s: captures hold %s, which entry %s captured", r.ID, r.HoldID, prev)
			}
			v.captures[r.HoldID] = r.ID
		}
		if r.IdempotencyKey != "" {
			k, err := tx.EntryByIdempotencyKey(ctx, r.AuthorityID, r.IdempotencyKey)
			switch {
			case isNotFound(err):
				v.report("entry %s: idempotency key %q is not indexed", r.ID, r.IdempotencyKey)
			case err != nil:
				return err
			case k.ID != r.ID:
				v.report("entry %s: idempotency key %q points to entry %s", r.ID, r.IdempotencyKey, k.ID)
			}
		}
	}

	if err := v.holds(ctx, tx); err != nil {
		return err
	}
	if err := v.changes(ctx, tx); err != nil {
		return err
	}

	// Every (authority, currency) with a stored total, and every one with
	// entries or holds: a total stored for an authority without entries
	// is a mismatch too.
	set := map[TotalGroup]bool{{}: true}
	for k := range v.held {
		set[TotalGroup{"", k.currency}] = true
	}
	for k := range sums {
		set[TotalGroup{k.AuthorityID, k.Currency}] = true
	}
	for g, err := range tx.TotalGroups(ctx) {
		if err != nil {
			return err
		}
		set[g] = true
	}
	groups := slices.SortedFunc(maps.Keys(set), func(a, b TotalGroup) int {
		return cmp.Or(cmp.Compare(a.Currency, b.Currency), cmp.Compare(a.AuthorityID, b.AuthorityID))
	})
	for _, g := range groups {
		if err := v.totals(ctx, tx, g, sums); err != nil {
			return err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(v.reversedBy)) {
		if rev := v.reversedBy[id]; v.reverses[rev] != id {
			v.report("entry %s: reversed by %s, which does not reverse it", id, rev)
		}
	}
	for _, rev := range slices.Sorted(maps.Keys(v.reverses)) {
		if id := v.reverses[rev]; v.reversedBy[id] != rev {
			v.report("entry %s: reverses %s, which is not marked reversed by it", rev, id)
		}
	}
	return nil
}

// totalSums holds totals recomputed from entries read in ID order.
type totalSums map[TotalKey]Total

// add counts r in the total k and returns the new sum.
func (s totalSums) add(k TotalKey, r Record) decimal.Decimal {
	t := s[k]
	t.Value, t.LastEntryID = t.Value.Add(r.Amount), r.ID
	s[k] = t
	return t.Value
}

// totals checks the stored totals of authority a ("" for all) against
// the sums of the entries.
func (v *verifier) totals(ctx context.Context, tx ReadTx, g TotalGroup, sums totalSums) error {
	who := "total"
	if g.AuthorityID != "" {
		who = fmt.Sprintf("total from authority %q", g.AuthorityID)
	}
	if g.Currency != "" {
		who += fmt.Sprintf(" in %q", g.Currency)
	}
	seen := map[string]bool{}
	for row, err := range tx.Totals(ctx, g.AuthorityID, g.Currency, "") {
		if err != nil {
			return err
		}
		seen[row.UserID] = true
		held, holds := decimal.Decimal{}, false
		if g.AuthorityID == "" {
			k := walletKey{row.UserID, g.Currency}
			held, holds = v.held[k], v.holders[k]
		}
		if !held.Equal(row.Held) {
			v.report("user %q: stored %s holds %s, but the active holds sum to %s", row.UserID, who, row.Held, held)
		}
		sum, ok := sums[TotalKey{g.AuthorityID, row.UserID, g.Currency}]
		switch {
		case !ok && holds && row.Value.IsZero() && row.LastEntryID == "":
			// A total stored for the wallet's holds alone (held, or
			// holding nothing once they closed).
		case !ok:
			v.report("user %q: stored %s %s, but no entries", row.UserID, who, row.Value)
		case !sum.Value.Equal(row.Value):
			v.report("user %q: stored %s %s, but the entries sum to %s", row.UserID, who, row.Value, sum.Value)
		case sum.LastEntryID != row.LastEntryID:
			v.report("user %q: stored %s counts up to entry %q, but the last entry is %s", row.UserID, who, row.LastEntryID, sum.LastEntryID)
		}
	}
	var missing []string
	for k := range sums {
		if k.AuthorityID == g.AuthorityID && k.Currency == g.Currency && !seen[k.UserID] {
			missing = append(missing, k.UserID)
		}
	}
	slices.Sort(missing)
	for _, u := range missing {
		v.report("user %q: entries sum to %s, but no %s is stored", u, sums[TotalKey{g.AuthorityID, u, g.Currency}].Value, who)
	}
	if g.AuthorityID == "" {
		var unstored []walletKey
		for k := range v.held {
			if k.currency == g.Currency && !seen[k.userID] {
				unstored = append(unstored, k)
			}
		}
		slices.SortFunc(unstored, func(a, b walletKey) int { return cmp.Compare(a.userID, b.userID) })
		for _, k := range unstored {
			v.report("user %q: active holds in %q sum to %s, but no total is stored", k.userID, k.currency, v.held[k])
		}
	}
	return nil
}

// holds checks every hold: its key is indexed, an active one with an
// expiry is in the expiry index, a captured one names the entry that
// names it; and it sums the active holds per wallet.
func (v *verifier) holds(ctx context.Context, tx ReadTx) error {
	expiring := 0
	captured := map[string]bool{}
	for h, err := range tx.Holds(ctx, HoldScan{AnyCurrency: true}) {
		if err != nil {
			return err
		}
		if _, _, ok := ParseEntryID(h.ID); !ok {
			v.report("hold %q: malformed ID", h.ID)
		}
		if h.Amount.Sign() <= 0 {
			v.report("hold %s: amount %s is not positive", h.ID, h.Amount)
		}
		v.feed.hold(&h.Hold)
		v.holders[walletKey{h.UserID, h.Currency}] = true
		switch h.State {
		case HoldActive:
			k := walletKey{h.UserID, h.Currency}
			v.held[k] = v.held[k].Add(h.Amount)
			if !h.Expires.IsZero() {
				expiring++
			}
		case HoldCaptured:
			captured[h.ID] = true
			switch e := v.captures[h.ID]; {
			case e == "":
				v.report("hold %s: captured by entry %q, which does not name it", h.ID, h.EntryID)
			case e != h.EntryID:
				v.report("hold %s: captured by entry %q, but entry %s names it", h.ID, h.EntryID, e)
			}
		case HoldReleased, HoldExpired:
		default:
			v.report("hold %s: state %d is not a hold state", h.ID, h.State)
		}
		if h.IdempotencyKey != "" {
			k, err := tx.HoldByIdempotencyKey(ctx, h.AuthorityID, h.IdempotencyKey)
			switch {
			case isNotFound(err):
				v.report("hold %s: idempotency key %q is not indexed", h.ID, h.IdempotencyKey)
			case err != nil:
				return err
			case k.ID != h.ID:
				v.report("hold %s: idempotency key %q points to hold %s", h.ID, h.IdempotencyKey, k.ID)
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(v.captures)) {
		if !captured[id] {
			v.report("entry %s: captures hold %s, which is not captured", v.captures[id], id)
		}
	}
	indexed := 0
	for h, err := range tx.ExpiringHolds(ctx, "", "", maxTime) {
		if err != nil {
			return err
		}
		if h.State != HoldActive || h.Expires.IsZero() {
			v.report("hold %s: in the expiry index, but %s and expiring %v", h.ID, h.State, h.Expires)
		}
		indexed++
	}
	if indexed != expiring {
		v.report("holds: %d active holds expire, but the expiry index lists %d", expiring, indexed)
	}
	return nil
}

// WalletsSeq is [Ledger.Wallets] as an iterator: it yields the same rows
// in the same order, reading them a page at a time, each page in a store
// transaction of its own, so that no result is built whole in memory and
// no transaction stays open while the caller works. A row is never
// yielded twice nor skipped (pages are of [WithPageSize] rows); with AsOf unset, a total may reflect writes
// committed after the iteration began. An error (bad input, ErrClosed, a
// store failure) is yielded once, last.
func (l *Ledger) WalletsSeq(ctx context.Context, q WalletQuery) iter.Seq2[WalletTotal, error] {
	return pages(l.cfg.pageSize, q.After, q.Limit, func(after string, limit int) ([]WalletTotal, error) {
		q.After, q.Limit = after, limit
		return l.Wallets(ctx, q)
	}, func(w WalletTotal) string { return w.UserID })
}

// InventorySeq is [Ledger.Inventory] as an iterator, read a page at a
// time as [Ledger.WalletsSeq] describes. An item's used state is as of
// the page that yields it.
func (l *Ledger) InventorySeq(ctx context.Context, q InventoryQuery) iter.Seq2[InventoryItem, error] {
	return pages(l.cfg.pageSize, q.After, q.Limit, func(after string, limit int) ([]InventoryItem, error) {
		q.After, q.Limit = after, limit
		return l.Inventory(ctx, q)
	}, func(it InventoryItem) string { return it.EntryID })
}

// EntriesSeq is [Ledger.Entries] as an iterator, read a page at a time
// as [Ledger.WalletsSeq] describes; with q.Reverse it pages backwards.
// Entries never change once written, except an item's used state, which
// is as of the page that yields it.
func (l *Ledger) EntriesSeq(ctx context.Context, q EntryQuery) iter.Seq2[Entry, error] {
	return pages(l.cfg.pageSize, q.After, q.Limit, func(after string, limit int) ([]Entry, error) {
		q.After, q.Limit = after, limit
		return l.Entries(ctx, q)
	}, func(e Entry) string { return e.ID })
}

// pages yields the rows that fetch returns page by page, up to limit
// rows (0: all), each page continuing after the key of the last row of
// the one before.
func pages[T any](size int, after string, limit int, fetch func(after string, limit int) ([]T, error), key func(T) string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		if limit < 0 {
			var zero T
			yield(zero, invalid("Limit", "negative (%d)", limit))
			return
		}
		left := limit
		for {
			n := size
			if limit > 0 {
				n = min(n, left)
			}
			page, err := fetch(after, n)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, v := range page {
				if !yield(v, nil) {
					return
				}
			}
			if len(page) < n {
				return
			}
			if limit > 0 {
				if left -= len(page); left == 0 {
					return
				}
			}
			after = key(page[len(page)-1])
		}
	}
}

// changes checks the change feed against the records it describes.
func (v *verifier) changes(ctx context.Context, tx ReadTx) error {
	for l, err := range tx.AllLimits(ctx) {
		if err != nil {
			return err
		}
		v.feed.limit(l)
	}
	prev := ""
	for c, err := range tx.Changes(ctx, "") {
		if err != nil {
			return err
		}
		if c.Cursor <= prev || !isCursor(c.Cursor) {
			v.report("change %q: listed after %q, or not a cursor", c.Cursor, prev)
		}
		prev = c.Cursor
		if p := v.feed.change(c); p != "" {
			v.report("change %s: %s", c.Cursor, p)
		}
	}
	for _, p := range v.feed.finish() {
		v.report("changes: %s", p)
	}
	return nil
}
