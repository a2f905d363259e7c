package ledger

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/shopspring/decimal"
)

// The group commit's state for wallets in several currencies: limits read
// once per group and set by it, and reversals it made. Like the totals in
// batchState, everything stays in memory until flush, and a savepoint
// undoes what one request did.

type walletKey struct{ userID, currency string }

type limitsSlot struct {
	l      WalletLimits
	exists bool // stored, or set by this group
}

type pendingReversal struct {
	id, reversal string
	revoke       bool
}

type walletState struct {
	limits    undoMap[walletKey, limitsSlot]
	newLimits []StoredLimits
	reversed  map[string]pendingReversal // entry ID -> its pending reversal
	reversals []pendingReversal
}

type walletSavepoint struct{ undo, newLimits, reversals int }

func (w *walletState) init() {
	w.limits.init()
	w.reversed = make(map[string]pendingReversal)
}

func (w *walletState) reset() {
	w.limits.reset()
	clear(w.reversed)
	clear(w.newLimits)
	clear(w.reversals)
	w.newLimits, w.reversals = w.newLimits[:0], w.reversals[:0]
}

func (w *walletState) savepoint() walletSavepoint {
	return walletSavepoint{w.limits.savepoint(), len(w.newLimits), len(w.reversals)}
}

func (w *walletState) rollback(sp walletSavepoint) {
	w.limits.rollback(sp.undo)
	clear(w.newLimits[sp.newLimits:])
	w.newLimits = w.newLimits[:sp.newLimits]
	for _, r := range w.reversals[sp.reversals:] {
		delete(w.reversed, r.id)
	}
	clear(w.reversals[sp.reversals:])
	w.reversals = w.reversals[:sp.reversals]
}

func (w *walletState) revoked(id string) bool { return w.reversed[id].revoke }

func (w *walletState) flush(ctx context.Context, tx Tx) error {
	for _, l := range w.newLimits {
		if err := tx.SetLimits(ctx, l); err != nil {
			return storeErr("write limits", err)
		}
	}
	for _, r := range w.reversals {
		if err := tx.SetReversed(ctx, r.id, r.reversal, r.revoke); err != nil {
			return storeErr("mark entry reversed", err)
		}
	}
	return nil
}

// limitsOf returns the limits of the wallet (userID, currency): the
// group's, else the stored ones, else the zero limits.
func (st *batchState) limitsOf(userID, currency string) (WalletLimits, error) {
	k := walletKey{userID, currency}
	if s, ok := st.wallets.limits.get(k); ok {
		return s.l, nil
	}
	stored, exists, err := st.tx.Limits(st.ctx, userID, currency)
	if err != nil {
		return WalletLimits{}, storeErr("read limits", err)
	}
	l := WalletLimits{UserID: userID, Currency: currency}
	if exists {
		l = stored.WalletLimits
	}
	if st.direct == nil {
		// A store that writes in place reads as cheaply as the group
		// would look up what it read.
		st.wallets.limits.put(k, limitsSlot{l: l, exists: exists})
	}
	return l, nil
}

// checkLimits refuses the entry ne if it would take its wallet (whose
// total over all authorities is t) to newTotal past a limit: Available
// below the floor for a spend, Total above the cap for a deposit. A
// write that moves a wallet toward its limits is never refused for them.
func (st *batchState) checkLimits(ne NewEntry, t Total, newTotal decimal.Decimal) error {
	total := t.Value
	switch ne.Amount.Sign() {
	case 0:
		return nil
	case -1:
		return st.checkFunds(ne.UserID, ne.Currency, t, newTotal, ne.Amount)
	default:
		l, err := st.limitsOf(ne.UserID, ne.Currency)
		if err != nil {
			return err
		}
		if l.Cap != nil && newTotal.GreaterThan(*l.Cap) {
			return &CapExceededError{UserID: ne.UserID, Currency: ne.Currency, Total: total, Amount: ne.Amount, Cap: *l.Cap}
		}
	}
	return nil
}

// setLimits records lim for the wallet, set by authorityID now.
func (st *batchState) setLimits(authorityID string, lim WalletLimits) error {
	if _, err := st.limitsOf(lim.UserID, lim.Currency); err != nil {
		return err
	}
	k := walletKey{lim.UserID, lim.Currency}
	st.wallets.limits.set(k, limitsSlot{l: lim, exists: true})
	sl := StoredLimits{WalletLimits: lim, SetBy: authorityID, SetOn: time.Unix(0, unixNano(st.l.cfg.clock())).UTC()}
	st.wallets.newLimits = append(st.wallets.newLimits, sl)
	st.change(ChangeRecord{Kind: ChangeLimits, At: sl.SetOn, AuthorityID: authorityID, Limits: cloneLimits(&lim)})
	return nil
}

// transfer writes t's two entries, or, for a retry of its idempotency
// key, returns the first ones.
func (st *batchState) transfer(t NewTransfer, out []Entry) ([]Entry, error) {
	from := NewEntry{
		AuthorityID: t.AuthorityID, UserID: t.FromUserID, Currency: t.Currency, Amount: t.Amount.Neg(),
		Reason: t.Reason, Metadata: t.Metadata, IdempotencyKey: t.IdempotencyKey,
	}
	to := NewEntry{
		AuthorityID: t.AuthorityID, UserID: t.ToUserID, Currency: t.Currency, Amount: t.Amount,
		Reason: t.Reason, Metadata: t.Metadata,
	}
	if t.IdempotencyKey != "" {
		orig, found, err := st.byIdempotencyKey(t.AuthorityID, t.IdempotencyKey)
		if err != nil {
			return out, err
		}
		if found {
			if orig.TransferID != orig.ID {
				return out, &IdempotencyConflictError{AuthorityID: t.AuthorityID, Key: t.IdempotencyKey, EntryID: orig.ID, Fields: []string{"kind (the key wrote an entry, not a transfer)"}}
			}
			partner, err := st.partner(orig)
			if err != nil {
				return out, err
			}
			diff := payloadDiff(orig, from)
			if partner.UserID != t.ToUserID {
				diff = append(diff, "ToUserID")
			}
			if len(diff) > 0 {
				return out, &IdempotencyConflictError{AuthorityID: t.AuthorityID, Key: t.IdempotencyKey, EntryID: orig.ID, Fields: transferFields(diff)}
			}
			return append(out, st.current(orig), st.current(partner)), nil
		}
	}
	// The first entry's ID names the transfer; both carry it.
	f, err := st.write(from, entryLinks{namesTransfer: true})
	if err != nil {
		return out, err
	}
	g, err := st.write(to, entryLinks{transferID: f.ID})
	if err != nil {
		return out, err
	}
	return append(out, f, g), nil
}

// transferFields names a transfer's fields for what payloadDiff names
// for its first entry.
func transferFields(diff []string) []string {
	out := make([]string, len(diff))
	for i, f := range diff {
		switch f {
		case "UserID":
			f = "FromUserID"
		}
		out[i] = f
	}
	return out
}

// partnerWindow bounds the entries of an authority partner reads past a
// transfer's first entry to find its second.
const partnerWindow = 1024

// partner returns the other entry of r's transfer. The two entries of a
// transfer are written one after the other by one request, in one
// commit, so the second is among the first entries of the same authority
// that follow the first (another process sharing the store may have
// written some in between).
func (st *batchState) partner(r Record) (Record, error) {
	if p, ok := st.aheadPair[r.ID]; ok {
		return p, nil
	}
	if r.TransferID != r.ID {
		first, err := st.entry(r.TransferID)
		if err != nil {
			return Record{}, err
		}
		return first, nil
	}
	n := 0
	for p, err := range st.tx.Entries(st.ctx, Scan{AuthorityID: r.AuthorityID, Start: r.ID + "\x00"}) {
		if err != nil {
			return Record{}, storeErr("read transfer", err)
		}
		if p.TransferID == r.ID {
			return p, nil
		}
		if n++; n == partnerWindow {
			break
		}
	}
	for i := range st.inserts {
		if p := &st.inserts[i]; p.TransferID == r.ID && p.ID != r.ID {
			return *p, nil
		}
	}
	return Record{}, fmt.Errorf("ledger: transfer %s has one entry only: %w", r.ID, ErrInconsistent)
}

// reverse writes the reversal of entry entryID (of both entries, for one
// of a transfer) and marks the originals reversed.
func (st *batchState) reverse(authorityID, entryID, reason string, out []Entry) ([]Entry, error) {
	orig, err := st.entry(entryID)
	if err != nil {
		return out, err
	}
	origs := []Record{orig}
	if orig.TransferID != "" {
		p, err := st.partner(orig)
		if err != nil {
			return out, err
		}
		if p.ID < orig.ID {
			origs = []Record{p, orig}
		} else {
			origs = append(origs, p)
		}
	}
	for _, r := range origs {
		switch {
		case r.AuthorityID != authorityID:
			return out, fmt.Errorf("%w: authority %q did not write entry %q", ErrForbidden, authorityID, r.ID)
		case r.Reverses != "":
			return out, invalid("EntryID", "entry %s is a reversal, which cannot be reversed", r.ID)
		case r.ReversedBy != "" || st.wallets.reversed[r.ID].reversal != "":
			return out, fmt.Errorf("%w: entry %q", ErrAlreadyReversed, r.ID)
		}
		if r.Item != nil {
			if _, used := st.itemUse(r); used {
				return out, fmt.Errorf("%w: entry %q's item was used, so the entry cannot be reversed", ErrItemUsed, r.ID)
			}
		}
	}
	transferID := ""
	for i, r := range origs {
		ne := NewEntry{
			AuthorityID: r.AuthorityID, UserID: r.UserID, Currency: r.Currency, Amount: r.Amount.Neg(), Reason: reason,
			Metadata: maps.Clone(r.Metadata),
		}
		// A transfer's reversal is a transfer back, named by its first
		// entry.
		first := len(origs) == 2 && i == 0
		e, err := st.write(ne, entryLinks{transferID: transferID, reverses: r.ID, namesTransfer: first})
		if err != nil {
			return out, err
		}
		if first {
			transferID = e.ID
		}
		p := pendingReversal{id: r.ID, reversal: e.ID, revoke: r.Item != nil}
		st.wallets.reversed[r.ID] = p
		st.wallets.reversals = append(st.wallets.reversals, p)
		out = append(out, e)
	}
	return out, nil
}

// cloneLimits returns a copy of l that shares no memory with it.
func cloneLimits(l *WalletLimits) *WalletLimits {
	c := *l
	if l.Cap != nil {
		v := *l.Cap
		c.Cap = &v
	}
	return &c
}
