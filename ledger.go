// Package ledger is an embeddable wallet ledger: trusted applications,
// called authorities, write entries that add value to or remove value from
// a user's wallet and may grant the user an item; a wallet's value is the
// sum of its entries; an item can be marked used once; no wallet ever goes
// negative.
//
// # Getting started
//
// A [Ledger] holds the rules; a [Store] holds the data. Pick a store
// (memstore for memory only, badgerstore for a durable directory on disk
// used by one process, pgstore for a PostgreSQL database shared by many),
// hand it to [New], and call methods:
//
//	l, err := ledger.New(memstore.New())
//	...
//	defer l.Close()
//	e, err := l.CreateEntry(ctx, ledger.NewEntry{
//		AuthorityID: "shop", UserID: "alice",
//		Amount: decimal.NewFromInt(-5), Reason: "bought a soda",
//		Item: &ledger.Item{Name: "Soda Can"},
//	})
//	if errors.Is(err, ledger.ErrNotEnoughFunds) { ... }
//
// # Rules
//
// A wallet is one user's value in one currency ("" is the default
// currency; see [NewEntry]). A negative amount is refused with
// [ErrNotEnoughFunds] when the wallet's total over all authorities would
// drop below zero (or below the floor [Ledger.SetLimits] set; a positive
// one is refused with [ErrCapExceeded] above its cap); reaching exactly
// zero is allowed, and a user with no entries has total zero.
// [Ledger.Transfer] moves value between users, and [Ledger.Reverse]
// takes an entry back. [Ledger.Hold] reserves value, to be captured
// ([Ledger.Capture]), released ([Ledger.Release]) or left to expire: a
// wallet's Available is its total less what its holds reserve, and no
// spend can use held value. The funds check
// and the write are one atomic step, so no number of concurrent writers
// can overdraw a wallet, and of two racing [Ledger.UseItem] calls on one
// item exactly one wins.
//
// Amounts are exact decimals, never rounded: by default up to
// [DefaultPlaces] decimal places and [DefaultDigits] digits in all (see
// [WithPrecision]). Input beyond a limit (see [Limits]) is refused with an
// [*InvalidError] that names the field, and nothing is written.
//
// Entry IDs are strings that sort bytewise in creation order: 16 hex
// digits of CreatedOn in Unix nanoseconds, then 8 hex digits that keep IDs
// unique and increasing. CreatedOn never decreases from one entry to the
// next.
//
// # Retries, batches, history
//
// A [NewEntry] with an IdempotencyKey is created once: a retry with the
// same key and payload returns the original entry, and a retry with a
// different payload fails with [ErrIdempotencyConflict]. An item use
// made with [UseIdempotencyKey] is retried the same way: the retry
// returns the used entry instead of [ErrItemUsed].
// [Ledger.CreateEntries] writes a batch all or nothing. Every entry
// records the user's Balance right after it, which makes
// [Ledger.Entries] a statement and WalletQuery.AsOf a lookup, not a
// replay. [Ledger.Verify] recomputes everything from the entries.
//
// # Concurrency
//
// A Ledger is safe for concurrent use. Concurrent writes are grouped: the
// writes that arrive while one store transaction commits go into the
// next, each judged on its own, so a durable store syncs once for many
// callers (see [WithGroupCommit]). A method returns only after its write
// is committed, or with an error: one that matches [ErrUnknownOutcome]
// when the write may have been committed all the same (the caller's
// context ended once the write was in a commit, the commit outran
// [WithCommitTimeout], or a store lost its connection during COMMIT);
// a retry with the same idempotency key settles it. Any other error
// means nothing was written.
package ledger

import (
	"context"
	"encoding/json"
	"hash/maphash"
	"sync"
	"time"

	"github.com/shopspring/decimal"
)

// NewEntry is what an authority asks the ledger to write.
type NewEntry struct {
	AuthorityID, UserID string
	// Amount adds value to the wallet when positive and removes it when
	// negative.
	Amount decimal.Decimal
	// Reason says why, for people.
	Reason string
	// Item, when set, is granted to the user. Its Used must be false.
	Item *Item
	// IdempotencyKey, when set, makes the entry safe to retry: the
	// authority's second CreateEntry with the same key returns the first
	// entry instead of writing another. Keys are scoped to AuthorityID and
	// kept forever.
	IdempotencyKey string
	// Currency is the wallet's currency: "" is the default currency (the
	// single unit of the original service), otherwise 1 to 32 bytes of
	// ASCII letters, digits, '_', '-' and '.', case-sensitive.
	Currency string
	// Metadata is the application's own references (an order ID, a match
	// ID), stored and returned as given: at most 16 keys of 1 to 64 bytes
	// and values of up to 1 KiB, all UTF-8.
	Metadata map[string]string
}

// Entry is a written entry. Its JSON form (decimal strings for amounts,
// RFC 3339 for CreatedOn, item data compacted by encoding/json) is for Go
// programs; it is not walletd's wire format.
type Entry struct {
	ID          string          `json:"entry_id"`
	AuthorityID string          `json:"authority_id"`
	UserID      string          `json:"user_id"`
	CreatedOn   time.Time       `json:"created_on"`
	Amount      decimal.Decimal `json:"amount"`
	Reason      string          `json:"reason"`
	Item        *Item           `json:"item,omitempty"`
	// Balance is the wallet's total (the user's, in the entry's
	// currency) over all authorities right after this entry.
	Balance decimal.Decimal `json:"balance"`
	// Currency is the wallet's currency, "" for the default one.
	Currency string            `json:"currency,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// TransferID is set on both entries of a [Ledger.Transfer].
	TransferID string `json:"transfer_id,omitempty"`
	// Reverses, on a reversal, is the entry it reverses; ReversedBy, on a
	// reversed entry, is its reversal (see [Ledger.Reverse]).
	Reverses   string `json:"reverses,omitempty"`
	ReversedBy string `json:"reversed_by,omitempty"`
	// HoldID, on the entry a [Ledger.Capture] wrote, is the hold it
	// captured.
	HoldID string `json:"hold_id,omitempty"`
}

// Item is something an entry grants a user. Used, UsedOn and UsedBy are
// the ledger's: [Ledger.UseItem] sets them, and a [NewEntry] leaves them
// zero.
type Item struct {
	Name string `json:"name"`
	Used bool   `json:"used"`
	// Data is any JSON value, kept byte for byte by the ledger. (Note that
	// encoding/json compacts a RawMessage it marshals; write Data out
	// yourself where the bytes matter.)
	Data json.RawMessage `json:"data,omitempty"`
	// UsedOn is when the item was used: the ledger clock's reading (see
	// [WithClock]) at the use, in UTC, to the nanosecond and within the
	// years 1970 to 2262 that entry times span. It is zero while the item
	// is unused, and for an item used before the ledger recorded uses
	// (data written by releases before UsedOn, or imported from their
	// exports).
	UsedOn time.Time `json:"used_on,omitzero"`
	// UsedBy is the authority that used the item, "" while it is unused
	// and where UsedOn is zero for want of a record.
	UsedBy string `json:"used_by,omitempty"`
	// Revoked is set when the entry was reversed before the item was
	// used: the item can no longer be used, and the default inventory
	// (UnusedOnly) no longer lists it.
	Revoked bool `json:"revoked,omitempty"`
}

func (it *Item) clone() *Item {
	if it == nil {
		return nil
	}
	c := *it
	if it.Data != nil {
		c.Data = append(json.RawMessage(nil), it.Data...)
	}
	return &c
}

// Ledger applies the wallet rules over a [Store]. Create one with [New].
// It is safe for concurrent use; the zero value is not usable.
type Ledger struct {
	store Store
	cfg   config

	// mu is held for reading by every call while it runs and for writing
	// by Close, so that Close waits for calls in flight before it closes
	// the store.
	mu     sync.RWMutex
	closed bool

	// commits is the committer of every write but the creates that
	// laneFor sends to one of more, the other lanes over a
	// [ConcurrentStore].
	commits committer
	more    []*committer
	// laneSeed seeds laneFor's hash.
	laneSeed maphash.Seed
	sweep    *sweeper // nil without a hold sweep
	feed     feed
}

// New returns a Ledger over store. The Ledger owns the store from now on:
// [Ledger.Close] closes it. New reads the store's last entry so that new
// entry IDs sort after every existing one.
func New(store Store, opts ...Option) (*Ledger, error) {
	if store == nil {
		return nil, invalid("store", "nil")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	if err := cfg.limits.check(); err != nil {
		return nil, err
	}
	l := &Ledger{store: store, cfg: cfg}
	lanes := 1
	if cs, ok := store.(ConcurrentStore); ok {
		lanes = min(max(cs.CommitLanes(), 1), maxLanes)
	}
	l.laneSeed = maphash.MakeSeed()
	var mark *idMark
	if lanes > 1 {
		mark = &idMark{}
	}
	l.commits.init(l, mark)
	for i := 1; i < lanes; i++ {
		c := &committer{}
		c.init(l, mark)
		l.more = append(l.more, c)
	}
	l.feed.init()
	err := store.View(context.Background(), func(tx ReadTx) error {
		for r, err := range tx.Entries(context.Background(), Scan{Reverse: true}) {
			if err != nil {
				return err
			}
			l.observe(r.ID)
			break
		}
		return nil
	})
	if err != nil {
		return nil, storeErr("read last entry", err)
	}
	l.startSweep()
	return l, nil
}

// Close stops the hold sweep (see [WithHoldSweep]), waits for calls in
// flight, then closes the store. Afterwards every method, Close
// included, returns [ErrClosed].
func (l *Ledger) Close() error {
	l.stopSweep()
	l.feed.close() // followers stop waiting, and stop
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.closed = true
	// A commit whose callers all gave up waiting may still be running.
	l.commits.stop()
	for _, c := range l.more {
		c.stop()
	}
	return l.store.Close()
}

// Health returns nil when the store can serve, [ErrClosed] after Close,
// and the store's error otherwise.
func (l *Ledger) Health(ctx context.Context) error {
	if err := l.enter(ctx); err != nil {
		return err
	}
	defer l.mu.RUnlock()
	if err := l.store.Ping(ctx); err != nil {
		return storeErr("ping", err)
	}
	return nil
}

// enter starts a call: it fails if ctx is done or the ledger is closed,
// and otherwise holds l.mu for reading until the caller releases it.
// Closed comes first: after Close every call fails with ErrClosed,
// whatever its arguments.
func (l *Ledger) enter(ctx context.Context) error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		l.mu.RUnlock()
		return err
	}
	return nil
}

// CreateEntry writes one entry and returns it. It fails with
// [ErrNotEnoughFunds] if the amount is negative and the user cannot afford
// it, [ErrInvalid] on bad input, and [ErrIdempotencyConflict] if
// e.IdempotencyKey was used before with different fields; in each case
// nothing is written. With an IdempotencyKey the authority used before
// for the same fields, it writes nothing and returns that first entry as
// it is now.
func (l *Ledger) CreateEntry(ctx context.Context, e NewEntry) (Entry, error) {
	if err := l.enter(ctx); err != nil {
		return Entry{}, err
	}
	defer l.mu.RUnlock()
	ne, err := l.checkNewEntry(e)
	if err != nil {
		return Entry{}, err
	}
	r := newRequest(ctx, opCreate)
	r.entries = append(r.entries, ne)
	r.bytes = entryBytes(&ne)
	return l.laneFor(ne.UserID).run(r)
}

// CreateEntries writes a batch of entries all or nothing, in order, in
// one store transaction: each entry's funds check sees the entries before
// it in the batch. On failure nothing is written. If entries are invalid,
// the error is an [EntryErrors] listing each of them with its index; if
// an entry is refused when its turn comes (funds, an idempotency
// conflict), it is an [*EntryError] with that entry's index. Either way
// errors.As to *EntryError gives the first failing entry, and errors.Is
// matches its cause. Idempotency keys work per entry as in
// [Ledger.CreateEntry]: an entry whose key was used before for the same
// fields (earlier, or earlier in the batch) writes nothing and comes back
// as the first entry. An empty batch writes nothing and returns no
// entries. A batch may hold at most Limits.MaxBatchEntries entries and
// Limits.MaxBatchBytes bytes.
func (l *Ledger) CreateEntries(ctx context.Context, es []NewEntry) ([]Entry, error) {
	if err := l.enter(ctx); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	if len(es) > l.cfg.limits.MaxBatchEntries {
		return nil, invalid("entries", "%d entries, limit %d", len(es), l.cfg.limits.MaxBatchEntries)
	}
	if len(es) == 0 {
		return []Entry{}, nil
	}
	r := newRequest(ctx, opCreate)
	r.batch = true
	var bad EntryErrors
	for i, e := range es {
		ne, err := l.checkNewEntry(e)
		if err != nil {
			bad = append(bad, &EntryError{Index: i, Err: err})
			continue
		}
		r.entries = append(r.entries, ne)
		r.bytes += entryBytes(&ne)
	}
	switch {
	case len(bad) > 0:
		r.release()
		return nil, bad
	case r.bytes > l.cfg.limits.MaxBatchBytes:
		n := r.bytes
		r.release()
		return nil, invalid("entries", "%d bytes, limit %d", n, l.cfg.limits.MaxBatchBytes)
	}
	out, err := l.laneFor(r.entries[0].UserID).runBatch(r)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UseItem marks the item granted by entry entryID used by authorityID
// and returns the updated entry, whose Item.UsedOn is the ledger clock's
// reading and Item.UsedBy is authorityID. Of any number of concurrent
// uses of one item, exactly one succeeds (retries with its idempotency
// key aside, see below).
//
// It fails, checking in this order, with [ErrNotFound] for an unknown
// entry, or under [ForUser] for an entry of another user (the same
// error: the caller learns nothing about other users' entries); under
// [WithGrantorOnlyItemUse], with [ErrForbidden] if authorityID did not
// grant the item; with [ErrNoItem] for an entry without an item; and with
// [ErrItemUsed] if the item was used already, unless this call is a
// retry of that use: see [UseIdempotencyKey]. Invalid arguments (an
// empty or oversized ID or option value) fail with an [*InvalidError]
// naming "AuthorityID", "EntryID", "UserID" or "IdempotencyKey". After
// [Ledger.Close] every call fails with [ErrClosed]. On failure nothing is
// written.
//
// A use whose outcome is unknown ([ErrUnknownOutcome]) is safe to retry
// only with an idempotency key: the retry returns the used entry if the
// first attempt was committed, and uses the item if it was not.
func (l *Ledger) UseItem(ctx context.Context, authorityID, entryID string, opts ...UseOption) (Entry, error) {
	if err := l.enter(ctx); err != nil {
		return Entry{}, err
	}
	defer l.mu.RUnlock()
	if err := l.checkID("AuthorityID", authorityID); err != nil {
		return Entry{}, err
	}
	if err := l.checkID("EntryID", entryID); err != nil {
		return Entry{}, err
	}
	var uc useConfig
	for _, o := range opts {
		if o != nil {
			o(&uc)
		}
	}
	if uc.forUser {
		if err := l.checkID("UserID", uc.userID); err != nil {
			return Entry{}, err
		}
	}
	if uc.keyed {
		if err := l.checkID("IdempotencyKey", uc.key); err != nil {
			return Entry{}, err
		}
	}
	r := newRequest(ctx, opUse)
	r.authorityID, r.entryID = authorityID, entryID
	r.use = uc
	return l.commits.run(r)
}

// UseOption modifies a [Ledger.UseItem] call: [ForUser],
// [UseIdempotencyKey]. Options apply in order; of two of the same kind
// the later wins. A nil UseOption does nothing.
type UseOption func(*useConfig)

// useConfig is what a UseItem call's options ask for.
type useConfig struct {
	forUser bool
	userID  string
	keyed   bool
	key     string
}

// ForUser makes [Ledger.UseItem] use the item only if entry entryID is
// userID's: for another user's entry it fails with [ErrNotFound], as for
// an entry that does not exist, so a caller acting for one user can
// neither use another's items nor learn that they exist. An empty or
// oversized userID fails the call with an [*InvalidError] naming
// "UserID".
func ForUser(userID string) UseOption {
	return func(c *useConfig) { c.forUser, c.userID = true, userID }
}

// UseIdempotencyKey makes a [Ledger.UseItem] call safe to retry: when
// the item is already used, and that use was made by the same authority
// on the same entry with the same key, the call writes nothing and
// returns the entry as it is now (with the first use's UsedOn) instead
// of failing with [ErrItemUsed]. The key's scope is the (authority,
// entry) pair: a key used on one entry says nothing about any other, and
// a use with a different key, with no key, or by another authority
// still fails with ErrItemUsed. The key is kept with the use, forever
// (and travels with [Ledger.Export]). An empty or oversized key fails
// the call with an [*InvalidError] naming "IdempotencyKey".
func UseIdempotencyKey(key string) UseOption {
	return func(c *useConfig) { c.keyed, c.key = true, key }
}
