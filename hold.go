package ledger

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// NewHold is what an authority asks [Ledger.Hold] to reserve: Amount of
// the wallet (UserID, Currency), until it is captured, released or
// expires.
type NewHold struct {
	AuthorityID, UserID, Currency string
	// Amount is > 0: what the hold reserves.
	Amount decimal.Decimal
	// Reason says why, for people; a capture's entry carries it unless
	// the capture gives its own.
	Reason string
	// Expires is when the hold lapses on its own: the zero time for
	// never, otherwise after the ledger clock's reading and no later than
	// 2262-04-11T23:47:16.854775807Z, the last instant the ledger
	// records. It is kept to the nanosecond, in UTC.
	Expires time.Time
	// Metadata is the application's own references, as on [NewEntry]; a
	// capture's entry carries them.
	Metadata map[string]string
	// IdempotencyKey, when set, makes the hold safe to retry: the
	// authority's second Hold with the same key and fields returns the
	// first hold, as it is now. Hold keys are scoped to AuthorityID,
	// kept forever, and are their own namespace: a key the authority
	// used for an entry says nothing about holds.
	IdempotencyKey string
}

// HoldState is where a [Hold] is in its life: active until it is
// captured, released or expires. It marshals to and from the text
// "active", "captured", "released" and "expired".
type HoldState uint8

// The states of a hold.
const (
	HoldActive HoldState = iota
	HoldCaptured
	HoldReleased
	HoldExpired
)

var holdStateNames = [...]string{"active", "captured", "released", "expired"}

// String returns the state's name, or "HoldState(N)" for a value that is
// not one of the states.
func (s HoldState) String() string {
	if int(s) < len(holdStateNames) {
		return holdStateNames[s]
	}
	return fmt.Sprintf("HoldState(%d)", s)
}

// MarshalText returns the state's name; it fails for a value that is
// not one of the states.
func (s HoldState) MarshalText() ([]byte, error) {
	if int(s) >= len(holdStateNames) {
		return nil, fmt.Errorf("ledger: HoldState %d is not a hold state", s)
	}
	return []byte(holdStateNames[s]), nil
}

// UnmarshalText sets the state from its name.
func (s *HoldState) UnmarshalText(text []byte) error {
	for i, n := range holdStateNames {
		if string(text) == n {
			*s = HoldState(i)
			return nil
		}
	}
	return fmt.Errorf("ledger: %q is not a hold state (active, captured, released or expired)", truncated(string(text)))
}

// Hold is a reservation of value in a wallet, as [Ledger.Hold] placed it
// and [Ledger.Capture], [Ledger.Release] or its expiry closed it.
type Hold struct {
	ID          string            `json:"hold_id"`
	AuthorityID string            `json:"authority_id"`
	UserID      string            `json:"user_id"`
	Currency    string            `json:"currency,omitempty"`
	Amount      decimal.Decimal   `json:"amount"`
	Reason      string            `json:"reason"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	CreatedOn   time.Time         `json:"created_on"`
	// Expires is when the hold lapses on its own; zero for never.
	Expires time.Time `json:"expires,omitzero"`
	State   HoldState `json:"state"`
	// ClosedOn is when it was captured, released or expired (for an
	// expired hold: Expires); zero while it is active.
	ClosedOn time.Time `json:"closed_on,omitzero"`
	// EntryID is the entry its capture wrote.
	EntryID string `json:"entry_id,omitempty"`
}

// due reports whether h's expiry has come at now.
func (h *Hold) due(now time.Time) bool {
	return !h.Expires.IsZero() && !now.Before(h.Expires)
}

// at returns h as it stands at now: a stored active hold that is due is
// expired, closed at its Expires.
func (h Hold) at(now time.Time) Hold {
	if h.State == HoldActive && h.due(now) {
		h.State, h.ClosedOn = HoldExpired, h.Expires
	}
	return h
}

// Capture says how [Ledger.Capture] settles a hold.
type Capture struct {
	// Amount is what the capture takes: zero for the whole hold,
	// otherwise 0 < Amount <= the hold's Amount. The rest is released.
	Amount decimal.Decimal
	// Reason is the entry's reason; "" for the hold's.
	Reason string
	// Item, when set, is granted by the capture's entry, as by
	// [NewEntry].Item.
	Item *Item
}

// HoldQuery selects holds for [Ledger.Holds]. Every set field must
// match.
type HoldQuery struct {
	HoldIDs, UserIDs, AuthorityIDs []string
	// Currency is the currency whose holds are listed ("" the default),
	// as in [WalletQuery].
	Currency string
	// States lists the states wanted, as the holds stand when the query
	// runs (a due hold is expired); empty: all.
	States []HoldState
	// After pages: only holds whose ID sorts after it.
	After string
	// Limit caps the holds returned; 0 means no cap.
	Limit int
}

// HoldClosedError is returned when a capture or release names a hold
// that is no longer active. It satisfies errors.Is(err,
// [ErrHoldClosed]).
type HoldClosedError struct {
	HoldID string
	// State is the hold's state: captured, released or expired.
	State HoldState
}

func (e *HoldClosedError) Error() string {
	return fmt.Sprintf("ledger: hold %s is closed: %s", e.HoldID, e.State)
}

// Is reports whether target is [ErrHoldClosed].
func (e *HoldClosedError) Is(target error) bool { return target == ErrHoldClosed }
