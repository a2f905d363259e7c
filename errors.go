package ledger

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// The ledger's errors. Every error a [Ledger] method returns for a reason
// of its own (as opposed to a store or context failure) satisfies
// errors.Is with exactly one of these sentinels. Typed errors below carry
// the details and still match their sentinel, so callers check with
// errors.Is and extract fields with errors.As.
var (
	// ErrInvalid is returned when an argument breaks a documented limit or
	// format. The error is an [*InvalidError] naming the field. Nothing is
	// written.
	ErrInvalid = errors.New("ledger: invalid input")

	// ErrNotEnoughFunds is returned when a negative amount would take the
	// user's total over all authorities below zero. The error is a
	// [*NotEnoughFundsError]. Nothing is written.
	ErrNotEnoughFunds = errors.New("ledger: not enough funds")

	// ErrNotFound is returned when an entry named by ID does not exist,
	// and by [Ledger.UseItem] under [ForUser] when it is another user's.
	// Stores return it too, for a missing entry.
	ErrNotFound = errors.New("ledger: not found")

	// ErrNoItem is returned by [Ledger.UseItem] when the entry carries no
	// item.
	ErrNoItem = errors.New("ledger: entry has no item")

	// ErrItemUsed is returned by [Ledger.UseItem] when the item was already
	// used, by another call than a retry with the use's key (see
	// [UseIdempotencyKey]).
	ErrItemUsed = errors.New("ledger: item already used")

	// ErrForbidden is returned by [Ledger.UseItem] when the ledger was
	// created with [WithGrantorOnlyItemUse] and the caller is not the
	// authority that granted the item.
	ErrForbidden = errors.New("ledger: forbidden")

	// ErrClosed is returned by every method called after [Ledger.Close],
	// and by a [Store] after its Close.
	ErrClosed = errors.New("ledger: closed")

	// ErrIdempotencyConflict is returned when an idempotency key that the
	// authority already used comes back with a different user, amount,
	// reason or item. The error is an [*IdempotencyConflictError].
	ErrIdempotencyConflict = errors.New("ledger: idempotency key reused with different fields")

	// ErrCapExceeded is returned when a positive amount would take a
	// wallet's Total above the Cap its [WalletLimits] set. The error is a
	// [*CapExceededError]. Nothing is written.
	ErrCapExceeded = errors.New("ledger: cap exceeded")

	// ErrAlreadyReversed is returned by [Ledger.Reverse] for an entry that
	// was reversed before.
	ErrAlreadyReversed = errors.New("ledger: entry already reversed")

	// ErrItemRevoked is returned by [Ledger.UseItem] for an item whose
	// entry was reversed before the item was used.
	ErrItemRevoked = errors.New("ledger: item revoked")

	// ErrNotEmpty is returned by [Import] when the target ledger already
	// has entries.
	ErrNotEmpty = errors.New("ledger: import: target ledger is not empty")

	// ErrUnknownOutcome is returned when a write may or may not have been
	// committed: the connection to the store was lost during COMMIT, the
	// commit outran the ledger's commit timeout (see [WithCommitTimeout]),
	// or the caller's context ended after its write had been handed to the
	// store. The error also matches the underlying cause (for example
	// context.DeadlineExceeded). The caller finds out by retrying with the
	// same idempotency key: the retry writes the entry if the first
	// attempt did not, and returns the first attempt's entry if it did.
	// A write without an idempotency key cannot be told apart from a new
	// one; look it up with [Ledger.Entries] instead.
	ErrUnknownOutcome = errors.New("ledger: outcome unknown: the write may or may not have been committed")

	// ErrHoldClosed is returned by [Ledger.Capture] and [Ledger.Release]
	// for a hold that is no longer active: captured, released or expired.
	// The error is a [*HoldClosedError].
	ErrHoldClosed = errors.New("ledger: hold closed")

	// ErrInconsistent is returned by [Ledger.Verify] when stored totals or
	// balances disagree with the entries. The error is a [*VerifyError].
	ErrInconsistent = errors.New("ledger: stored totals disagree with entries")
)

// InvalidError describes an argument that was refused. It satisfies
// errors.Is(err, [ErrInvalid]).
type InvalidError struct {
	// Field names the offending field by its Go name: a NewEntry field
	// ("AuthorityID", "UserID", "Amount", "Reason", "IdempotencyKey",
	// "Item.Name", "Item.Used", "Item.UsedOn", "Item.UsedBy",
	// "Item.Data"), a query field ("UserIDs", "EntryIDs",
	// "AuthorityIDs", "After", "Limit", "Used", "Since"), UseItem's
	// "AuthorityID" and "EntryID" or its options' "UserID" ([ForUser])
	// and "IdempotencyKey" ([UseIdempotencyKey]), "Currency",
	// "Currencies" and "Metadata", SetLimits's "Floor" and "Cap",
	// Transfer's "FromUserID" and "ToUserID", or "entries" for a batch
	// over Limits.MaxBatchEntries or Limits.MaxBatchBytes.
	Field string
	// Problem says what is wrong with it, in a few words.
	Problem string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("ledger: invalid %s: %s", e.Field, e.Problem)
}

// Is reports whether target is [ErrInvalid].
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// NotEnoughFundsError is returned when a user cannot afford an entry. It
// satisfies errors.Is(err, [ErrNotEnoughFunds]).
type NotEnoughFundsError struct {
	UserID string
	// Currency is the wallet's currency, "" for the default one.
	Currency string
	// Balance is the wallet's total over all authorities before the
	// entry.
	Balance decimal.Decimal
	// Amount is the refused (negative) amount.
	Amount decimal.Decimal
	// Floor is the lowest the wallet may go (0 unless [Ledger.SetLimits]
	// set a credit line).
	Floor decimal.Decimal
	// Held is what holds reserved of the wallet when the spend was
	// refused: Balance - Held was available.
	Held decimal.Decimal
}

func (e *NotEnoughFundsError) Error() string {
	msg := fmt.Sprintf("ledger: not enough funds: user %q has %s, entry needs %s", e.UserID, e.Balance, e.Amount.Neg())
	if e.Currency != "" {
		msg = fmt.Sprintf("ledger: not enough funds: user %q has %s %s, entry needs %s", e.UserID, e.Balance, e.Currency, e.Amount.Neg())
	}
	if !e.Held.IsZero() {
		msg += fmt.Sprintf(" (%s held)", e.Held)
	}
	if !e.Floor.IsZero() {
		msg += fmt.Sprintf(" (floor %s)", e.Floor)
	}
	return msg
}

// Is reports whether target is [ErrNotEnoughFunds].
func (e *NotEnoughFundsError) Is(target error) bool { return target == ErrNotEnoughFunds }

// CapExceededError is returned when a deposit would take a wallet above
// its cap. It satisfies errors.Is(err, [ErrCapExceeded]).
type CapExceededError struct {
	UserID, Currency string
	// Total is the wallet's total before the entry; Amount the refused
	// (positive) amount; Cap the wallet's cap.
	Total, Amount, Cap decimal.Decimal
}

func (e *CapExceededError) Error() string {
	return fmt.Sprintf("ledger: cap exceeded: user %q has %s%s, cap %s, entry adds %s",
		e.UserID, e.Total, currencySuffix(e.Currency), e.Cap, e.Amount)
}

// Is reports whether target is [ErrCapExceeded].
func (e *CapExceededError) Is(target error) bool { return target == ErrCapExceeded }

func currencySuffix(c string) string {
	if c == "" {
		return ""
	}
	return " " + c
}

// IdempotencyConflictError is returned when an idempotency key is reused
// with a different payload. It satisfies errors.Is(err,
// [ErrIdempotencyConflict]).
type IdempotencyConflictError struct {
	AuthorityID, Key string
	// EntryID is the entry the key first created; for a hold's key
	// ([NewHold].IdempotencyKey), HoldID is the hold it placed.
	EntryID, HoldID string
	// Fields lists the NewEntry fields that differ from that entry, such
	// as "UserID" or "Item.Data".
	Fields []string
}

func (e *IdempotencyConflictError) Error() string {
	if e.HoldID != "" {
		return fmt.Sprintf("ledger: idempotency key %q of authority %q already placed hold %s with different %s",
			e.Key, e.AuthorityID, e.HoldID, strings.Join(e.Fields, ", "))
	}
	return fmt.Sprintf("ledger: idempotency key %q of authority %q already created entry %s with different %s",
		e.Key, e.AuthorityID, e.EntryID, strings.Join(e.Fields, ", "))
}

// Is reports whether target is [ErrIdempotencyConflict].
func (e *IdempotencyConflictError) Is(target error) bool { return target == ErrIdempotencyConflict }

// EntryError is returned by [Ledger.CreateEntries] when an entry of the
// batch fails; nothing of the batch is written. Unwrap gives the entry's
// own error, so errors.Is(err, ErrNotEnoughFunds) and the like work on it.
type EntryError struct {
	// Index is the position in the batch of the first entry that failed.
	Index int
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("ledger: batch entry %d: %s", e.Index, strings.TrimPrefix(e.Err.Error(), "ledger: "))
}

// Unwrap returns the entry's error.
func (e *EntryError) Unwrap() error { return e.Err }

// EntryErrors is returned by [Ledger.CreateEntries] when entries of the
// batch are invalid: one [*EntryError] per invalid entry, in index order,
// so that a caller can fix the whole batch at once. Nothing of the batch
// is written. errors.As(err, &entryErr) gives the first of them, and
// errors.Is(err, ErrInvalid) holds.
type EntryErrors []*EntryError

func (es EntryErrors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ledger: %d invalid batch entries:", len(es))
	for i, e := range es {
		if i == 10 {
			fmt.Fprintf(&b, " and %d more", len(es)-i)
			break
		}
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %d: %s", e.Index, strings.TrimPrefix(e.Err.Error(), "ledger: "))
	}
	return b.String()
}

// Unwrap returns each entry's error, for errors.Is and errors.As.
func (es EntryErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// VerifyError lists what [Ledger.Verify] found wrong. It satisfies
// errors.Is(err, [ErrInconsistent]).
type VerifyError struct {
	// Problems describes each mismatch, one per line, at most 100 of
	// them.
	Problems []string
	// More counts mismatches found beyond those listed.
	More int
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ledger: verify: %d mismatches", len(e.Problems)+e.More)
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p)
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n\t... and %d more", e.More)
	}
	return b.String()
}

// Is reports whether target is [ErrInconsistent].
func (e *VerifyError) Is(target error) bool { return target == ErrInconsistent }
