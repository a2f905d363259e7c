package ledger

import (
	"time"
)

// ChangeKind says what a [Change] records.
type ChangeKind string

// The kinds of change.
const (
	// ChangeEntry: an entry was written (CreateEntry, a batch, a
	// transfer's two entries, a reversal, a capture).
	ChangeEntry ChangeKind = "entry"
	// ChangeItemUsed: an entry's item was used.
	ChangeItemUsed ChangeKind = "item_used"
	// ChangeLimits: SetLimits set a wallet's limits.
	ChangeLimits ChangeKind = "limits"
	// ChangeHoldPlaced: a hold was placed.
	ChangeHoldPlaced ChangeKind = "hold_placed"
	// ChangeHoldReleased: a hold was released.
	ChangeHoldReleased ChangeKind = "hold_released"
	// ChangeHoldExpired: the sweep recorded a hold's expiry.
	ChangeHoldExpired ChangeKind = "hold_expired"
	// A capture is a ChangeEntry whose Entry.HoldID is set, followed by
	// nothing else.
)

// valid reports whether k is one of the kinds.
func (k ChangeKind) valid() bool {
	switch k {
	case ChangeEntry, ChangeItemUsed, ChangeLimits, ChangeHoldPlaced, ChangeHoldReleased, ChangeHoldExpired:
		return true
	}
	return false
}

// Change is one change to the ledger, as [Ledger.Changes] yields it.
type Change struct {
	// Cursor is opaque; cursors sort bytewise in feed order. Pass the
	// last one handled as ChangeQuery.After to resume after it.
	Cursor string     `json:"cursor"`
	Kind   ChangeKind `json:"kind"`
	// At is when the change happened: the entry's CreatedOn, the item's
	// UsedOn, the limits' SetOn, the hold's CreatedOn (placed) or
	// ClosedOn (released, expired).
	At time.Time `json:"at"`
	// AuthorityID is who made the change; for hold_expired, the hold's
	// authority.
	AuthorityID string `json:"authority_id"`
	// Entry is, for entry, the entry as written; for item_used, the entry
	// right after the use.
	Entry *Entry `json:"entry,omitempty"`
	// Hold is, for hold_placed, the hold as placed; for hold_released
	// and hold_expired, the hold as closed.
	Hold *Hold `json:"hold,omitempty"`
	// Limits is, for limits, the limits set.
	Limits *WalletLimits `json:"limits,omitempty"`
}

// ChangeQuery selects changes for [Ledger.Changes].
type ChangeQuery struct {
	// After is a Cursor: only changes after it. "": from the first
	// change.
	After string
	// Follow, once the stored changes are yielded, waits for new ones
	// and yields them as they commit, until ctx ends.
	Follow bool
	// Limit caps the changes yielded; 0: no cap (with Follow: until ctx
	// ends). Negative is ErrInvalid.
	Limit int
}

// ChangeRecord is a change as a [Store] keeps it: what the change did
// and to which record, not a copy of the record. The ledger rebuilds the
// [Change] from it and the record it names.
type ChangeRecord struct {
	// Cursor is the store's: "" in [Tx.AppendChange], set by the store
	// when it commits (see [Tx.AppendChange]), and returned by
	// [ReadTx.Changes].
	Cursor      string
	Kind        ChangeKind
	At          time.Time
	AuthorityID string
	// Ref names the record: an entry ID (entry, item_used) or a hold ID
	// (hold_placed, hold_released, hold_expired); "" for limits.
	Ref string
	// Limits are, for limits, the wallet's limits as set; nil otherwise.
	Limits *WalletLimits
}

// SharedStore is implemented by a [Store] that other processes write to
// (pgstore): their commits do not pass through this process's ledger,
// so a ledger following the change feed ([ChangeQuery].Follow) reads the
// store for new changes every PollInterval while it waits.
type SharedStore interface {
	PollInterval() time.Duration
}
