package ledger

import (
	"context"
	"iter"
	"time"

	"github.com/shopspring/decimal"
)

// Store is what a [Ledger] keeps its data in. Implementations in this
// module are memstore (memory only), badgerstore (durable, on disk, one
// process) and pgstore (PostgreSQL, shared by many processes);
// storetest.Run is the conformance suite every implementation must pass.
//
// A Store holds no business rule: it never checks funds, validates input,
// picks IDs or decides what a query means beyond the [Scan] it is given.
// The Ledger reads and writes through transactions, so one ledger
// operation, a batch, or many callers' operations grouped into one commit
// are each a single atomic and isolated step. Transactions are
// serializable: a store may run them one at a time (memstore,
// badgerstore), detect conflicts and retry, or lock rows (a SQL
// database).
//
// Records passed to a store and returned from it are the receiver's: a
// store copies what it keeps and returns memory its caller may modify.
//
// All methods are safe for concurrent use.
type Store interface {
	// View runs fn in a read-only transaction that sees a consistent
	// snapshot. The ReadTx is valid only until fn returns. View returns
	// fn's error, or the store's.
	View(ctx context.Context, fn func(ReadTx) error) error

	// Update runs fn in a read-write transaction. If fn returns nil the
	// transaction commits, and when Update returns nil everything fn wrote
	// is durable to the store's promise. If fn returns an error nothing fn
	// wrote is kept and Update returns that error. A store may call fn
	// more than once (to retry a conflict), so fn must not have effects
	// outside the Tx that it cannot repeat. The Tx is valid only until fn
	// returns. When Update fails after fn returned nil and the store
	// cannot tell whether the transaction committed (a connection lost
	// during COMMIT, a commit abandoned when ctx ended), the error matches
	// [ErrUnknownOutcome] with errors.Is (wrap both:
	// fmt.Errorf("...: %w: %w", ledger.ErrUnknownOutcome, cause)); every
	// other error means nothing was written. A store that can should
	// return soon after ctx ends (pgstore does, whatever its server
	// does); the ledger does not rely on it: a caller's context bounds
	// the caller's wait whatever the store does.
	Update(ctx context.Context, fn func(Tx) error) error

	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error

	// Close releases the store. Afterwards every method returns
	// [ErrClosed]. Calling Close again returns ErrClosed.
	Close() error
}

// ReadTx reads a [Store] inside a transaction. Iterators yield their error
// as the second value and stop after it.
type ReadTx interface {
	// Entry returns the entry with the given ID, or [ErrNotFound].
	Entry(ctx context.Context, id string) (Record, error)

	// EntryByIdempotencyKey returns the entry that the authority created
	// with the given idempotency key, or [ErrNotFound].
	EntryByIdempotencyKey(ctx context.Context, authorityID, key string) (Record, error)

	// Entries yields the entries matching s, in ascending ID order (or
	// descending if s.Reverse).
	Entries(ctx context.Context, s Scan) iter.Seq2[Record, error]

	// Total returns the running total stored under k by [Tx.SetTotal],
	// and whether one is stored.
	Total(ctx context.Context, k TotalKey) (Total, bool, error)

	// Totals yields the stored totals of one authority ("" for the totals
	// over all authorities) in one currency, for users whose ID sorts
	// after the given one, in ascending user ID order.
	Totals(ctx context.Context, authorityID, currency, afterUserID string) iter.Seq2[UserTotal, error]

	// TotalGroups yields, once each and in no particular order, the
	// (authority, currency) pairs that [ReadTx.Totals] yields at least one
	// total for, authority "" included. [Ledger.Verify] uses it to find
	// every stored total.
	TotalGroups(ctx context.Context) iter.Seq2[TotalGroup, error]

	// UserTotals yields the user's stored totals over all authorities
	// (authority ""), one per currency, in ascending currency order.
	UserTotals(ctx context.Context, userID string) iter.Seq2[CurrencyTotal, error]

	// Limits returns the limits stored for the user's wallet in currency
	// by [Tx.SetLimits], and whether any are stored.
	Limits(ctx context.Context, userID, currency string) (StoredLimits, bool, error)

	// UserLimits yields the limits stored for the user's wallets, in
	// ascending currency order.
	UserLimits(ctx context.Context, userID string) iter.Seq2[StoredLimits, error]

	// AllLimits yields every stored limits, in ascending (UserID,
	// Currency) order.
	AllLimits(ctx context.Context) iter.Seq2[StoredLimits, error]

	// Hold returns the hold with the given ID, or [ErrNotFound].
	Hold(ctx context.Context, id string) (HoldRecord, error)

	// HoldByIdempotencyKey returns the hold that the authority placed
	// with the given idempotency key, or [ErrNotFound]. Hold keys are a
	// namespace of their own, apart from entries' keys.
	HoldByIdempotencyKey(ctx context.Context, authorityID, key string) (HoldRecord, error)

	// Holds yields the holds matching s, in ascending ID order.
	Holds(ctx context.Context, s HoldScan) iter.Seq2[HoldRecord, error]

	// ExpiringHolds yields the holds stored with State [HoldActive] and
	// a non-zero Expires at or before until, in ascending (Expires, ID)
	// order; with userID set, only those of the wallet (userID,
	// currency), and otherwise those of every wallet (currency is then
	// ignored). A store indexes active holds by expiry, overall and per
	// wallet, so that this is a seek and a walk over the holds it
	// yields.
	ExpiringHolds(ctx context.Context, userID, currency string, until time.Time) iter.Seq2[HoldRecord, error]

	// Changes yields the stored changes whose cursor sorts after after
	// ("" for every change), in ascending cursor order (see
	// [Tx.AppendChange]). A store seeks to after: reading from a cursor
	// costs what it yields, not what precedes it.
	Changes(ctx context.Context, after string) iter.Seq2[ChangeRecord, error]
}

// Tx reads and writes a [Store] inside a read-write transaction. Reads see
// the transaction's own writes.
type Tx interface {
	ReadTx

	// InsertEntry stores a new entry and indexes it for [ReadTx.Entries]
	// and, when r.IdempotencyKey is set, for
	// [ReadTx.EntryByIdempotencyKey]. An entry with the same ID (or the
	// same authority and idempotency key) must not exist; if one does,
	// the transaction fails: InsertEntry returns an error, or (in a store
	// that sends writes in batches) a later read or Update does. A used
	// item's use (see [ItemUse]) is kept as given.
	InsertEntry(ctx context.Context, r Record) error

	// SetItemUsed marks the item of an existing entry used by use: from
	// then on the entry's record reads with Item.Used true, Item.UsedOn
	// use.At, Item.UsedBy use.AuthorityID and UseIdempotencyKey
	// use.IdempotencyKey. If the entry does not exist or has no item,
	// the transaction fails with [ErrNotFound] or [ErrNoItem], from
	// SetItemUsed or, in a store that batches writes, from a later read
	// or Update. The ledger has already checked both, and that the item
	// is unused; this is a last guard.
	SetItemUsed(ctx context.Context, id string, use ItemUse) error

	// SetReversed records on an existing entry that reversal (an entry
	// ID) reverses it: from then on its record reads with ReversedBy
	// reversal, and, with revokeItem, with Item.Revoked true. If the
	// entry does not exist the transaction fails with [ErrNotFound], as
	// for SetItemUsed. The ledger has already checked that the entry was
	// not reversed, and passes revokeItem only for an entry with an
	// unused item.
	SetReversed(ctx context.Context, id, reversal string, revokeItem bool) error

	// SetTotal stores the running total k names.
	SetTotal(ctx context.Context, k TotalKey, total Total) error

	// SetLimits stores the limits of the wallet (l.UserID, l.Currency),
	// replacing any stored before.
	SetLimits(ctx context.Context, l StoredLimits) error

	// InsertHold stores a new hold and indexes it for [ReadTx.Holds],
	// for [ReadTx.HoldByIdempotencyKey] when h.IdempotencyKey is set, and
	// for [ReadTx.ExpiringHolds] when it is active and expires. A hold
	// with the same ID (or the same authority and idempotency key) must
	// not exist; if one does, the transaction fails, as for
	// [Tx.InsertEntry]. A closed hold (as [Import] writes them) is kept
	// as given.
	InsertHold(ctx context.Context, h HoldRecord) error

	// CloseHold closes an existing active hold: from then on its record
	// reads with c's State, ClosedOn and EntryID, and it is no longer
	// among [ReadTx.ExpiringHolds]. If the hold does not exist the
	// transaction fails with [ErrNotFound], as for SetItemUsed. The
	// ledger has already checked that it exists and is active.
	CloseHold(ctx context.Context, id string, c HoldClose) error

	// AppendChange records a change (c.Cursor is ""). When the
	// transaction commits, the store gives each change it appended a
	// cursor: a string of 1 to 64 bytes of [0-9a-z], unique, never
	// changed once committed (it survives a crash as the change does),
	// sorting bytewise
	//   - within the transaction, in the order of the appends, and
	//   - after the cursor of every change of every transaction that
	//     committed before this one did;
	// and no gap is filled later: once a reader's snapshot holds a change,
	// it holds every change with a lower cursor that will ever be
	// committed. (A feed built on a plain sequence breaks this: numbers
	// are taken in one order and become visible in another.) Changes
	// are kept forever.
	AppendChange(ctx context.Context, c ChangeRecord) error
}

// HoldRecord is a hold as a [Store] keeps it: the [Hold] and the key it
// was placed with. Its ID is always an ID as the ledger makes them, like
// a [Record]'s; its times (CreatedOn, Expires, ClosedOn) are instants in
// UTC within the range IDs encode, or zero, and a store returns them to
// the nanosecond, in UTC, and zero as zero.
type HoldRecord struct {
	Hold
	// IdempotencyKey is the key the hold was placed with, or "".
	IdempotencyKey string
}

// HoldClose is how [Tx.CloseHold] closes a hold.
type HoldClose struct {
	// State is HoldCaptured, HoldReleased or HoldExpired.
	State HoldState
	// ClosedOn is when: Hold.ClosedOn.
	ClosedOn time.Time
	// EntryID is, for a capture, the entry it wrote: Hold.EntryID.
	EntryID string
}

// HoldScan selects holds for [ReadTx.Holds]. Every set field must match.
type HoldScan struct {
	// UserID, when set, selects only that user's holds.
	UserID string
	// Currency selects only holds in that currency ("" being the
	// default), unless AnyCurrency is set. With UserID set, a store seeks
	// within the wallet's holds (it indexes them).
	Currency    string
	AnyCurrency bool
	// After, when set, selects only holds whose ID sorts after it.
	After string
}

// TryUpdater is implemented by a [Store] whose write transactions run
// in memory, waiting on no I/O and no other process: memstore. The ledger
// then commits a lone write on its caller's goroutine even when the
// caller's context can end, instead of handing it to the goroutine that
// commits for such callers (a hand-off that costs more than a memory
// store's whole commit). A store that can wait in Update (on a disk, a
// server) must not implement it. A Store that wraps memstore by
// embedding it gets its TryUpdate too, which the ledger calls instead of
// Update: a wrapper that changes what Update does must define TryUpdate
// as well (one that returns false makes the ledger call Update).
type TryUpdater interface {
	// TryUpdate is [Store.Update] when a write transaction can begin at
	// once: it runs fn, commits without waiting on anything, and returns
	// true and Update's result. When the transaction cannot begin at once
	// (a reader holds the store), it returns false and a nil error at
	// once, having called nothing.
	TryUpdate(ctx context.Context, fn func(Tx) error) (bool, error)
}

// ConcurrentStore is implemented by a [Store] whose write transactions
// may run at the same time in one process, each isolated from the others
// as from another process's, and which gains from it: a database server
// (pgstore), which one transaction at a time leaves idle while the
// process builds the next and while their round trips travel. The ledger
// then commits in CommitLanes lanes (at most 16): each has its own queue
// of writes and commits its own groups, and every new entry ID sorts
// after those the lanes handed out before it. Creates go to the lane
// their user hashes to, every other write to the first lane, and Import
// holds every lane. A store that serializes its transactions (memstore,
// badgerstore) must not implement it: its lanes would only wait for
// each other.
type ConcurrentStore interface {
	Store
	// CommitLanes returns how many transactions the ledger may run at
	// once; 1 or less means one.
	CommitLanes() int
}

// SavepointTx is implemented by a [Tx] whose writes take effect as they
// are made and which can undo them back to a mark: a store that keeps its
// data in memory and an undo log. The ledger then makes a group's total
// and entry writes through it as it goes, undoing a refused request's
// with RollbackTo, instead of keeping them apart until the end of the
// group. A store that writes at commit does not implement it.
type SavepointTx interface {
	Tx
	// Savepoint returns a mark of the writes the transaction has made.
	Savepoint() int
	// RollbackTo undoes every write made since Savepoint returned sp, in
	// reverse order; sp is a mark of this transaction, not yet undone.
	RollbackTo(sp int)
}

// TotalsPrefetcher is implemented by a [ReadTx] that reads many totals in
// one call more cheaply than one by one: a database across a network,
// where each read is a round trip. At the start of a group commit the
// ledger hands it every total the group's entries will read, and reads
// the rest of them from what it returned. A store without the need does
// not implement it.
type TotalsPrefetcher interface {
	// TotalsOf returns the stored totals among keys, as [ReadTx.Total]
	// would one by one; a key without a stored total is absent from the
	// result.
	TotalsOf(ctx context.Context, keys []TotalKey) (map[TotalKey]Total, error)
}

// Total is a running total as a [Store] keeps it: the sum of the entries
// it counts, and the ID of the last of them. The ledger makes every new
// entry's ID sort after the user's last one, read in the same
// transaction, so that a user's entries sort in the order they were
// committed even when processes with different clocks share a store.
type Total struct {
	Value       decimal.Decimal
	LastEntryID string
	// Held is, in a wallet's total over all authorities, the sum of the
	// amounts of the wallet's holds stored as active (due ones too, until
	// they are closed): the ledger sets it with the hold's changes. It is
	// zero in an authority's total. A total may be stored for Held alone,
	// with zero Value and no LastEntryID.
	Held decimal.Decimal
}

// TotalKey names a running total: an authority's for a user's wallet in
// one currency, or with AuthorityID "" the wallet's total over all
// authorities. Currency "" is the default currency.
type TotalKey struct{ AuthorityID, UserID, Currency string }

// TotalGroup names the totals of one authority ("" for all) in one
// currency, as [ReadTx.TotalGroups] yields them.
type TotalGroup struct{ AuthorityID, Currency string }

// CurrencyTotal is one row yielded by [ReadTx.UserTotals].
type CurrencyTotal struct {
	Currency string
	Total
}

// StoredLimits are a wallet's limits as a [Store] keeps them: the
// [WalletLimits] and who set them when.
type StoredLimits struct {
	WalletLimits
	// SetBy is the authority that set them; SetOn when, in UTC.
	SetBy string
	SetOn time.Time
}

// Record is an entry as a [Store] keeps it: the [Entry] and what the
// ledger needs besides to answer retries and historical queries. Its ID
// is always an entry ID as the ledger makes them (24 lowercase hex
// digits; see the package doc): a store may rely on that format and
// refuse another.
type Record struct {
	Entry
	// IdempotencyKey is the key the entry was created with, or "".
	IdempotencyKey string
	// AuthorityBalance is the total of the entry's authority for the
	// entry's wallet (user and currency) right after the entry, as Balance
	// is over all authorities.
	AuthorityBalance decimal.Decimal
	// UseIdempotencyKey is the key the entry's item was used with (see
	// [UseIdempotencyKey]), or "". It is set only on a used item.
	UseIdempotencyKey string
}

// ItemUse is the use of an item, as [Tx.SetItemUsed] records it. A store
// keeps every field as given and reads it back in the entry's record:
// Item.UsedBy, Item.UsedOn and Record.UseIdempotencyKey. A record passed
// to [Tx.InsertEntry] with its item used (as [Import] writes them)
// carries the same three, and a store keeps those as given too.
type ItemUse struct {
	// AuthorityID is the authority that used the item: Item.UsedBy.
	AuthorityID string
	// At is when: Item.UsedOn. The ledger passes an instant in UTC within
	// the range entry IDs encode (1970 to 2262, see the package doc), or
	// the zero time for a use recorded without one; a store returns it
	// to the nanosecond, in UTC, and the zero time as the zero time.
	At time.Time
	// IdempotencyKey is the key the use was made with, or "":
	// Record.UseIdempotencyKey.
	IdempotencyKey string
}

// Scan selects entries for [ReadTx.Entries]. Every set field must match;
// the zero Scan selects every entry.
type Scan struct {
	// UserID, when set, selects only that user's entries.
	UserID string
	// AuthorityID, when set, selects only that authority's entries.
	AuthorityID string
	// InCurrency selects only entries in Currency ("" being the default
	// currency). With UserID set, a store seeks within the user's entries
	// in that currency (it indexes them), so that a wallet's balance as of
	// an instant is a seek; with AuthorityID too, it may filter the
	// (authority, user) entries by currency.
	InCurrency bool
	Currency   string
	// ItemsOnly selects only entries that carry an item.
	ItemsOnly bool
	// Start, when set, selects IDs >= Start; End, when set, IDs < End.
	Start, End string
	// Reverse yields in descending ID order.
	Reverse bool
}

// UserTotal is one row yielded by [ReadTx.Totals].
type UserTotal struct {
	UserID string
	Total
}
