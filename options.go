package ledger

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Option configures a [Ledger] in [New].
type Option func(*config)

type config struct {
	clock         func() time.Time
	realClock     bool // clock is time.Now: no WithClock
	places        int
	digits        int
	limits        Limits
	grantorOnly   bool
	maxBatch      int
	maxWait       time.Duration
	commitTimeout time.Duration
	pageSize      int
	holdSweep     time.Duration
	logger        *slog.Logger
	err           error
}

// Limits bounds the size of what callers may write and ask for. A field
// left zero in [WithLimits] keeps its default.
type Limits struct {
	// MaxIDBytes bounds authority, user and entry IDs and idempotency
	// keys. Default 256.
	MaxIDBytes int
	// MaxReasonBytes bounds NewEntry.Reason. Default 4096.
	MaxReasonBytes int
	// MaxItemNameBytes bounds Item.Name. Default 256.
	MaxItemNameBytes int
	// MaxItemDataBytes bounds Item.Data. Default 65536.
	MaxItemDataBytes int
	// MaxBatchEntries bounds the entries of one [Ledger.CreateEntries]
	// call. Default 10000.
	MaxBatchEntries int
	// MaxBatchBytes bounds the size of one [Ledger.CreateEntries] call,
	// and of every store transaction the ledger makes: a batch within
	// MaxBatchEntries and MaxBatchBytes commits on every store in this
	// module. An entry's size is its AuthorityID, UserID, Reason,
	// IdempotencyKey, Currency, Metadata keys and values, Item.Name and
	// Item.Data in bytes, plus
	// [EntryOverheadBytes]. Default 2 MiB: 10,000 entries of about 170
	// bytes of text each, 2,600 with the longest IDs and keys, or 31 with
	// the largest item data. It may not be less than the largest single
	// entry the other limits admit. (Raising it may need a store
	// configured for larger transactions: badgerstore's limit is 15% of
	// Badger's MemTableSize.)
	MaxBatchBytes int
	// MaxDataDepth bounds how deeply Item.Data may nest arrays and
	// objects. Default 64, well within what common JSON parsers accept
	// (Python's json stops near 1,000).
	MaxDataDepth int
}

// check refuses limits that contradict each other.
func (l Limits) check() error {
	largest := EntryOverheadBytes + 3*l.MaxIDBytes + l.MaxReasonBytes + l.MaxItemNameBytes + l.MaxItemDataBytes +
		maxCurrencyBytes + maxMetadataKeys*(maxMetadataKeyBytes+maxMetadataValueBytes)
	if l.MaxBatchBytes < largest {
		return fmt.Errorf("ledger: WithLimits: MaxBatchBytes %d is less than the largest entry the other limits admit (%d bytes)", l.MaxBatchBytes, largest)
	}
	return nil
}

// EntryOverheadBytes is what an entry counts towards
// Limits.MaxBatchBytes besides its text and item data.
const EntryOverheadBytes = 32

// DefaultLimits returns the limits a [Ledger] applies unless told
// otherwise.
func DefaultLimits() Limits {
	return Limits{
		MaxIDBytes:       256,
		MaxReasonBytes:   4096,
		MaxItemNameBytes: 256,
		MaxItemDataBytes: 64 << 10,
		MaxBatchEntries:  10000,
		MaxBatchBytes:    2 << 20,
		MaxDataDepth:     64,
	}
}

// Default precision of amounts: up to 8 decimal places and 30 digits in
// all, so amounts and totals stay below 10^22.
const (
	DefaultPlaces = 8
	DefaultDigits = 30
)

// Defaults of group commit; see [WithGroupCommit] and
// [WithCommitTimeout].
const (
	DefaultMaxBatch      = 1000
	DefaultMaxWait       = 0
	DefaultCommitTimeout = 30 * time.Second
)

func defaultConfig() config {
	return config{
		clock:         time.Now,
		realClock:     true,
		places:        DefaultPlaces,
		digits:        DefaultDigits,
		limits:        DefaultLimits(),
		maxBatch:      DefaultMaxBatch,
		maxWait:       DefaultMaxWait,
		commitTimeout: DefaultCommitTimeout,
		pageSize:      DefaultPageSize,
		holdSweep:     DefaultHoldSweep,
		logger:        slog.Default(),
	}
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// WithClock sets the clock that stamps CreatedOn, for tests. The ledger
// keeps CreatedOn non-decreasing in creation order even if the clock goes
// back: an entry created while the clock is behind the last entry gets the
// last entry's time. Entry IDs encode instants from 1970 to 2262 (Unix
// nanoseconds in an int64): a clock reading outside that range stamps
// the nearest of them, 1970-01-01T00:00:00Z or
// 2262-04-11T23:47:16.854775807Z, and queries by time (Since, Until,
// AsOf) treat such entries by the CreatedOn they carry.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now == nil {
			c.fail(errors.New("ledger: WithClock: nil clock"))
			return
		}
		c.clock, c.realClock = now, false
	}
}

// WithPrecision sets how exact amounts are: at most places digits after
// the decimal point and digits digits in all, so that every amount and
// every total is below 10^(digits-places) in magnitude. Amounts are never
// rounded: one that needs more places, or is too large, is refused with
// [ErrInvalid]. WithPrecision(0, 18) admits whole amounts that fit an
// int64, as the original wallet service did.
func WithPrecision(places, digits int) Option {
	return func(c *config) {
		if places < 0 || digits < 1 || places >= digits || digits > 1000 {
			c.fail(fmt.Errorf("ledger: WithPrecision(%d, %d): want 0 <= places < digits <= 1000", places, digits))
			return
		}
		c.places, c.digits = places, digits
	}
}

// WithLimits replaces the default [Limits]; zero fields keep their
// defaults.
func WithLimits(l Limits) Option {
	return func(c *config) {
		set := func(name string, dst *int, v int) {
			switch {
			case v < 0:
				c.fail(fmt.Errorf("ledger: WithLimits: negative %s", name))
			case v > 0:
				*dst = v
			}
		}
		set("MaxIDBytes", &c.limits.MaxIDBytes, l.MaxIDBytes)
		set("MaxReasonBytes", &c.limits.MaxReasonBytes, l.MaxReasonBytes)
		set("MaxItemNameBytes", &c.limits.MaxItemNameBytes, l.MaxItemNameBytes)
		set("MaxItemDataBytes", &c.limits.MaxItemDataBytes, l.MaxItemDataBytes)
		set("MaxBatchEntries", &c.limits.MaxBatchEntries, l.MaxBatchEntries)
		set("MaxBatchBytes", &c.limits.MaxBatchBytes, l.MaxBatchBytes)
		set("MaxDataDepth", &c.limits.MaxDataDepth, l.MaxDataDepth)
	}
}

// WithGrantorOnlyItemUse restricts [Ledger.UseItem] to the authority that
// granted the item; others get [ErrForbidden]. By default any authority
// may use any item, as in the original wallet service.
func WithGrantorOnlyItemUse() Option {
	return func(c *config) { c.grantorOnly = true }
}

// WithGroupCommit tunes group commit. Writes (CreateEntry, CreateEntries,
// UseItem) that arrive while a commit is in flight are applied together in
// the next store transaction, each judged on its own, so a durable store
// pays one sync for many callers. maxBatch caps the entries in one
// transaction (a larger CreateEntries batch still commits whole, alone);
// maxWait, when positive, makes a commit wait that long for company before
// it starts, trading a lone caller's latency for larger groups. With no
// maxWait (the default), a commit that follows one of several writes, on
// a store whose commits take 5µs or more a write (an fsync, a round
// trip), waits for the callers just answered to write again, while they
// keep coming: until none has for a quarter of the wait, at most an
// eighth of a commit's time and 100µs. Callers that write again at once
// then share one commit instead of taking turns in two. A lone caller,
// and a store in memory, never wait. WithGroupCommit(1, 0) turns grouping
// off.
func WithGroupCommit(maxBatch int, maxWait time.Duration) Option {
	return func(c *config) {
		if maxBatch < 1 || maxWait < 0 {
			c.fail(fmt.Errorf("ledger: WithGroupCommit(%d, %v): want maxBatch >= 1 and maxWait >= 0", maxBatch, maxWait))
			return
		}
		c.maxBatch, c.maxWait = maxBatch, maxWait
	}
}

// WithCommitTimeout bounds each store transaction that commits writes
// (default [DefaultCommitTimeout]). A caller's own context bounds how
// long the caller waits; the commit timeout bounds the commit itself,
// which goes on for the other callers grouped with it after one gives up,
// so that a stalled store cannot hold up every later write for longer. A
// commit that outruns it fails with [ErrUnknownOutcome]: the store may or
// may not have committed it.
func WithCommitTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.fail(fmt.Errorf("ledger: WithCommitTimeout(%v): want a positive duration", d))
			return
		}
		c.commitTimeout = d
	}
}

// DefaultPageSize is how many rows the iterator forms ([Ledger.EntriesSeq]
// and its kin) read per store transaction unless [WithPageSize] says
// otherwise.
const DefaultPageSize = 256

// WithPageSize sets how many rows the iterator forms read per store
// transaction, and so about how many they hold in memory at once.
func WithPageSize(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.fail(fmt.Errorf("ledger: WithPageSize(%d): want at least 1", n))
			return
		}
		c.pageSize = n
	}
}

// DefaultHoldSweep is how often a ledger records the expiry of due holds
// unless [WithHoldSweep] says otherwise.
const DefaultHoldSweep = time.Second

// WithHoldSweep sets how often the Ledger records expiries: a background
// sweep, started by [New] and stopped by [Ledger.Close], closes every
// hold whose Expires the ledger clock (see [WithClock]) has reached,
// with state HoldExpired and ClosedOn = Expires, a batch per commit.
// Default [DefaultHoldSweep]; d <= 0 turns the sweep off. Whether or not
// the sweep has run, a due hold holds nothing, cannot be captured or
// released, and [Ledger.Holds] reports it expired: the sweep only
// records what the rules already say. Ledgers in several processes
// sharing one store may each sweep; a hold is closed once.
func WithHoldSweep(d time.Duration) Option {
	return func(c *config) { c.holdSweep = d }
}

// WithLogger sets the logger for what the ledger does in the background
// on no caller's behalf (the hold sweep's failures). Default
// slog.Default(); nil keeps the default.
func WithLogger(lg *slog.Logger) Option {
	return func(c *config) {
		if lg != nil {
			c.logger = lg
		}
	}
}
