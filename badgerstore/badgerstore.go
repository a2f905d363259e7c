// Package badgerstore is a durable [ledger.Store] in a directory on disk,
// on Badger v4 (github.com/dgraph-io/badger/v4).
//
//	s, err := badgerstore.Open("/var/lib/wallet")
//	...
//	l, err := ledger.New(s) // l.Close closes s
//
// # Durability
//
// By default every commit is fsynced before Update returns, so a ledger
// write that returned survives a crash of the process, of the machine, or
// a power cut. [WithSyncWrites](false) trades that for speed: a commit
// that returned survives a crash of the process, but a crash of the
// machine may lose the last commits (whole transactions, never part of
// one; the database is never corrupted). Concurrent commits share an
// fsync, so durable throughput grows with the number of writers (and the
// ledger groups concurrent writes into one commit besides).
//
// A crash while Badger creates a file (when a ledger is created, or when
// Badger starts a new log file) can leave a file Badger itself refuses to
// open: an empty log file, or a manifest not yet renamed into place. Such
// files hold no data, and Open clears them (logging a warning with
// [WithLogger]).
//
// # Corruption
//
// Data that changed on disk is an error, never data. Records of 256
// bytes or more (items with data) live in Badger's value log, where
// each value carries a CRC32C checksum: the store has Badger verify it
// on every read (VerifyValueChecksum), and a read of a value that fails
// it fails with an error instead of yielding the value; [ledger.Ledger.Verify],
// which reads every record, reports it too. Smaller records, totals and
// indexes live in the LSM tree's tables, whose blocks carry checksums:
// the store has Badger verify every table when it opens it
// (ChecksumVerificationMode options.OnTableRead), so that [Open] fails
// on a table corrupted at rest, as do flushes and compactions on a table
// corrupted as they write it. Blocks are not verified again when read
// (Badger would report a failed block as missing keys rather than as an
// error, and with options.OnTableAndBlockRead Badger v4.9 panics on a
// corrupt table), so a table that changes on disk while the store is
// open can go unnoticed until the next Open. Open reads every table
// once for this; [WithBadgerOptions] can turn the checks off.
//
// # Concurrency
//
// A View reads a snapshot of Badger taken when it starts. Updates run
// one at a time, each in a Badger transaction of its own that commits
// before the next begins: the store is its directory's only writer
// (only one Store at a time may have a directory open: while one has,
// [Open] of the same directory fails at once with [ErrLocked], in this
// process or another), so no Update can conflict with another, and
// Badger's conflict detection is off. The ledger sends its writes one
// group commit at a time anyway.
//
// # Totals in memory
//
// Being the only writer, the store knows every running total as it is
// and keeps the totals in memory, so that writing an entry reads no
// total, and in the common case writes none: the entry's record and its
// change are all it writes to Badger (see Index postings for its index
// keys). A total that changes is
// written to Badger at once only when the records could not rebuild it
// (a wallet's first total, a change of the held amount, a value no
// entry of the same commit records); otherwise it is deferred. A
// checkpoint writes the deferred totals, and the sequence number of the
// last change they account for, once 16,384 totals are deferred, or
// 65,536 changes after the last checkpoint, and at Close. After a crash,
// Open reads the feed from the checkpoint on and sets each total that
// an entry there touched from the entry's record, which holds the
// wallet's balance and its authority's total right after it: at most
// 65,536 changes to read, and nothing acknowledged is lost, since the
// records and their changes commit together.
//
// Views read the totals of their snapshot: each committed change of a
// total is kept as a version of the commit's generation while a View
// that started before the next change may read it, so a View sees
// totals and entries of one instant, as it did when totals were read
// from Badger.
//
// # Index postings
//
// An entry is indexed by user (in its currency), by authority and by
// (authority, user). Those postings wait in memory, and the checkpoint
// writes each index prefix's as one key, a block of IDs, before it
// moves: a key per user, authority and pair written since the last
// checkpoint instead of three keys per entry at random places in
// Badger's memtable, which cost a write more than its record did. A
// scan merges the blocks with the postings in memory its snapshot may
// see. After a crash, Open finds the postings of the entries the feed
// names after the checkpoint that Badger lacks, as it does their totals.
// A posting that the feed could not find again is written to Badger in
// its own commit: an entry inserted without its entry change, with an ID
// below one already stored (an import), or in a commit that moves the
// checkpoint. A checkpoint comes at the latest when 131,072 postings
// wait. The postings of items (i, v, w) are written with their entry.
//
// # Memory
//
// An open store costs, in memory, about 112 MB fixed (Badger's memtable
// of 80 MiB, whose arena is allocated whole, and its caches), plus per
// wallet its totals: BenchmarkMemoryPerWallet, on 1,000,000 wallets of
// one authority (one entry each), measured 743 bytes of heap per wallet
// with every total kept (the default, [WithCachedTotals](-1)) and 267
// with WithCachedTotals(0) when first run, so about 480 bytes per wallet
// (240 per total: its key, its value, its last entry ID) for the totals
// and the rest Badger's own growth (table indexes and filters). Run
// again with format 7 (index postings in blocks), 734 and 451 to 541:
// the figure moves by about 100 bytes a wallet from run to run, as a
// memtable of Badger's (its arena about 104 MB) is still alive or not
// when the heap is read, and the release before read 546 to 677 with
// WithCachedTotals(0) on the same machine the same day. A wallet with
// entries from several authorities has one total more for each. For a
// small footprint, WithCachedTotals(n) keeps at most about n totals
// besides those not yet checkpointed (at most 16,384): with n = 0 a
// store keeps only those, and a write or read of a wallet reads its
// totals from Badger. A View never adds a total to memory: a wallet not
// written since Open is read from Badger (a point lookup). The postings
// waiting for the checkpoint add at most about 13 MB: 131,072 of them,
// 48 bytes each with their IDs when 1,000 users share them and 100 when
// every entry has a user of its own (BenchmarkPostingsMemory); those a
// checkpoint wrote stay while a View older than it is open. Memory never grows with the number of
// entries.
//
// # Key layout
//
// Every key starts with a one-byte prefix naming what it holds. Within a
// key, variable-length components are preceded by their length as a
// uvarint, except the last, so that the keys sharing a prefix and leading
// components sort by the last component, bytewise. Entry IDs sort in
// creation order, so an index ordered by ID is in creation order too.
// lp(s) below is a uvarint length followed by s. Under the u, a and p
// indexes a key's value is empty (the key is the ID's posting) or a
// block of IDs that starts with the key's (see postings.go); the values
// of the other indexes are empty.
//
//	m "format"                   format version (uvarint)
//	m "migrate"                  present while Open upgrades the format
//	m "checkpoint"               the sequence number of the last change
//	                             the totals in Badger account for
//	e id                         the entry's record
//	u lp(user) id                index: by user, default currency
//	u lp(user) lp(currency) id   index: by user, another currency
//	a lp(authority) id           index: by authority
//	p lp(authority) lp(user) id  index: by authority and user
//	i id                         index: entries with an item
//	v lp(user) id                index: entries with an item, by user
//	w lp(authority) id           index: entries with an item, by authority
//	k lp(authority) key          idempotency key: the value is the entry ID
//	b lp(authority) lp(currency) user
//	                             running total; authority "" = all
//	x lp(user) currency          index: the user's wallets in a currency
//	                             other than the default
//	l ord(user) currency         the limits of a wallet
//	h id                         the hold's record
//	j lp(authority) key          hold idempotency key: the value is the
//	                             hold ID
//	y lp(user) lp(currency) id   index: holds by wallet
//	q exp(expires) id            index: active holds that expire
//	r lp(user) lp(currency) exp(expires) id
//	                             index: the same, by wallet
//	c seq                        a change, under its sequence number
//
// where ord(s) is s with each 0x00 written 0x00 0xFF, then 0x00 0x01, so
// that keys sort by (user, currency) whatever the users' lengths,
// exp(t) is t's Unix nanoseconds as 8 big-endian bytes with the sign bit
// flipped, so that keys sort by (expires, ID), and seq is 8 big-endian
// bytes.
//
// An entry has the same postings in every currency, as many as before
// wallets had currencies: its currency selects which by-user prefix it
// is posted under. The default currency keeps the key it always had, u lp(user) id,
// and the others add the currency; an entry ID starts with a hex digit
// ('0' or above) and a currency's length is 1 to 32, so neither key can
// be taken for the other, and a user's default-currency entries are the
// keys under u lp(user) from "0" on. The wallet index is written once
// per wallet outside the default currency, not per entry.
//
// A total under b is as of the checkpoint, or later (see Totals in
// memory). So a wallet total and an (authority, user) total are point
// lookups (in memory, unless WithCachedTotals dropped them), as
// are an entry by ID and by idempotency key, and a wallet's limits.
// [ledger.ReadTx.Totals] seeks within one authority's totals in one
// currency; TotalGroups seeks from each (authority, currency) group to
// the next; UserTotals reads the default total and the totals the
// wallet index lists. A scan of entries seeks within one index, chosen
// from the Scan's UserID, AuthorityID, ItemsOnly and InCurrency (by
// authority and user; else items by user; by user in the currency; by
// user in every currency; items by authority; by authority; items;
// all), and filters the records for what that index does not select
// (ItemsOnly on the pair index, the currency on any but by user): an
// inventory query by user or authority walks only that user's or
// authority's items, a wallet's balance as of an instant is one seek
// in the by-user index, and paging (Start, After) is a seek, not a
// skip (with a start, one more seek finds the block that holds it). A
// user's entries in every currency are a merge by ID of the user's
// ranges, one per currency, found by a seek each. Index scans read each
// entry's record with a point lookup.
//
// Holds are kept apart from entries: an entry writes no hold key and
// reads none, and the only trace of holds on the write path of entries
// is the held amount a wallet's total carries, which costs nothing
// while it is zero. A hold is a point lookup by ID and by idempotency
// key (of its own namespace: j, not k). A scan of holds with a user
// walks the wallet's range of the y index, or, in every currency, merges
// the user's wallets' ranges by ID; without a user it walks the records
// and filters them by currency. A hold is in the expiry indexes (q
// overall, r by wallet) while it is stored active with an expiry:
// InsertHold writes those keys and CloseHold deletes them, so that the
// holds due by an instant are a seek and a walk over just them.
//
// The change feed is one key per change, c seq, whose value names what
// changed (kind, time, authority, the entry or hold ID, or the limits
// set), not a copy of the record. A change's cursor is its sequence
// number in 16 lowercase hex digits, so cursors sort as the keys do and
// reading from a cursor is a seek. Numbers start at 1 and are taken in
// commit order: an Update that appended changes numbers them and writes
// their keys as it commits; Updates run one at a time, so that a
// snapshot holding a change holds every change with a lower number that
// will ever commit. A commit that fails skips its numbers: no later commit takes them. Open
// takes up the numbering after the last change stored. A change is
// committed with the transaction that wrote it, and so is as durable as
// the records it names.
//
// Records are encoded with this package's own compact binary codec, led
// by a version byte: decimals keep their exact coefficient and exponent,
// item data is kept byte for byte, and times are kept as Unix
// nanoseconds and come back in UTC. Holds have a codec of their own in
// the same terms; a total is its value, its last entry ID and, only
// when it is not zero, its held amount. A change ends with a CRC-32C
// of its key and value: it lives in the LSM tree, whose blocks are
// checked only when a table is opened (see Corruption), so a change
// that changed on disk, or is read under another change's key, is an
// error when it is read. On disk, records of 256 bytes or more are kept
// in Badger's value log rather than its LSM tree (see [WithValueLogGC]).
//
// # On-disk format
//
// Open writes the format version when it creates a ledger and checks it
// on every open: a directory written by a newer format fails with
// [ErrFormat], and a directory holding something other than a ledger
// fails with [ErrNotLedger]. A directory of an older format is upgraded
// in place. Format 1 is the first; format 2 (since item uses carry who
// used the item, when, and with which idempotency key) adds record
// version 2, which keeps those, and needed no rewrite: items used under
// format 1 read with no use time or authority. Format 3 (since wallets
// have currencies) adds record version 3 and keys totals by currency.
// Records of formats 1 and 2 read as they are, in the default currency,
// and their by-user index keys are already the default currency's; only
// the totals move, from t lp(authority) user to b lp(authority) lp("")
// user. Open first marks the directory with the current format, with a
// marker that a migration is in progress, then moves the totals in
// transactions of 1,000, and clears the marker in the last (since
// format 5, in the last of the feed's, below). Each transaction moves its
// totals whole, so a crash during the migration loses nothing, and the
// next Open finds the marker and resumes. Format 4 (since holds) adds
// record version 4, which keeps an entry's HoldID, the held amount in a
// wallet's total (absent while zero) and the keys of holds; it needed no
// rewrite, since no record, total or key of format 3 reads differently:
// a format 3 directory is only marked format 4, and reads with every
// HoldID "", every Held zero and no hold. Format 5 (since the change
// feed) adds the change keys. A directory of an older format has records
// but no changes: Open synthesizes the feed's past from the records,
// with the cursors before any new change's, a merge by time of every
// entry (an entry change at its CreatedOn, by its authority), every used
// item's use (at Item.UsedOn, by Item.UsedBy; a use recorded before uses
// had times comes right after its entry, at the zero time), every stored
// limits (at SetOn, by SetBy) and every hold (placed at its CreatedOn;
// released or expired at its ClosedOn, both by the hold's authority,
// which is all a hold records; a capture has no change besides its
// entry's). Ties in time go entries, uses, limits, placings, closes, and
// within a kind by ID (limits by user, then currency). Entries stream
// from their records in ID order; the rest, far fewer, are sorted in
// memory. The changes are written in transactions of 1,000 under the
// migration marker, which the last clears; the order and so the numbers
// depend only on the records, so the next Open after a crash resumes
// after the last change written. A format 1 or 2 directory first moves
// its totals as above; every older directory then synthesizes its feed
// and is format 5. Once opened by this version, a directory no longer
// opens under a release that knows only older formats (it fails with
// ErrFormat there), even before a migration finished.
package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/walletledger/ledger"
)

// The errors [Open] returns for a directory it cannot use. Each error
// satisfies errors.Is with its sentinel and names the directory.
var (
	// ErrLocked is returned by Open when another Store has the directory
	// open, in this process or in another one.
	ErrLocked = errors.New("badgerstore: directory in use by another Store (in this process or another)")

	// ErrNotLedger is returned by Open when the path holds something
	// other than a ledger: a file, a directory with files but no Badger
	// database, or a Badger database with keys but no ledger format
	// version. Open creates no database in a directory of other files.
	ErrNotLedger = errors.New("badgerstore: not a ledger directory")

	// ErrFormat is returned by Open when the directory was written in an
	// on-disk format this version does not know, by a newer version.
	ErrFormat = errors.New("badgerstore: unknown on-disk format")
)

// formatVersion is the on-disk format this version writes. It reads
// every version from 1: version 2 records item uses (record version 2,
// see encoding.go); version 3 wallets in several currencies (record
// version 3, and the totals' keys, see migrate.go); version 4 holds
// (record version 4, the held amount in totals, and the holds' keys);
// version 5 the change feed (see changes.go), whose past Open
// synthesizes from the records of an older directory; version 6 totals
// that Badger holds only as of the checkpoint (see checkpoint.go);
// version 7 index postings in blocks, and in memory until a checkpoint
// (see postings.go), whose single keys are those of every older version.
// A directory of an older version is marked version 7 when Open first
// opens it, so that a release that knows only older versions refuses it
// rather than fail on its first newer record, misread its totals (which
// since version 6 may be behind the entries) or its index blocks (read
// as single postings, they would hide entries), or write changes the
// feed lacks.
const formatVersion = 7

// feedFormat is the first format with the change feed: a directory of an
// older one synthesizes the feed's past (see migrate.go).
const feedFormat = 5

// totalsKeyedByCurrency is the first format whose totals are keyed by
// currency: a directory of an older one moves its totals (see
// migrate.go).
const totalsKeyedByCurrency = 3

// memTableSize is Badger's MemTableSize for this store, which bounds a
// transaction: at most 15% of it in bytes (12 MiB here), and in keys that
// over Badger's 96-byte skiplist node (131,072 here). Badger's default,
// 64 MiB, allows 104,857 keys: fewer than the 10,000-entry batch of
// entries with items (the ledger's largest) writes, a user of its own
// for every entry, at 11 keys an entry with the entry's change (12 in a
// currency other than the default, with the wallet index). Each memtable
// costs 1.3 times this in memory (its arena), and Badger keeps up to
// NumMemtables (5) while flushes lag.
const memTableSize = 80 << 20

// valueThreshold is the size from which Badger keeps a value in its value
// log rather than in the LSM tree. Badger's default, 1 MiB, keeps
// everything in the tree, where a transaction may hold at most 15% of
// MemTableSize (12 MiB): a 10,000-entry batch (the ledger's limit) then
// fails once records carry several hundred bytes of item data. At 256 bytes,
// entries without an item or with a small one stay in the tree, larger
// records cost a transaction only a 12-byte pointer, and a batch of
// 10,000 entries fits whatever their items' size, as long as user and
// authority IDs and idempotency keys stay under about 48 bytes (measured
// with a user of its own for every entry). Records replaced when an item
// is used leave garbage in the value log, which [WithValueLogGC]
// reclaims. In memory there is no value log and Badger refuses (or, for
// values under 1 KiB, panics on) values above the threshold, so
// in-memory stores keep Badger's default.
const valueThreshold = 256

// Store is a [ledger.Store] in a Badger database. Open one with [Open];
// the zero value is not usable. It is safe for concurrent use. It holds
// its directory locked, against every other Store in this process or
// another, until [Store.Close].
// Everything it returns is freshly allocated and the caller's.
type Store struct {
	db   *badger.DB
	lock *dirLock
	name string // the directory, for messages
	log  *slog.Logger

	// mu guards closed and active; idle is signalled when active drops to
	// zero, for Close to wait for the calls in flight.
	mu     sync.Mutex
	idle   sync.Cond
	closed bool
	active int

	gcStop  chan struct{} // closed by Close; nil without value-log GC
	gcDone  chan struct{} // closed by the GC goroutine when it exits
	gcRound func()        // from config

	// writeTurn holds a token while an Update runs (see lockWrite): the
	// store runs its Updates one at a time, and owns the totals (see
	// totals.go). Under it ("holding writeMu" below): nextSeq, the next change sequence number to take (see
	// changes.go); maxEntryID, the highest entry ID stored; checkpointed,
	// the checkpoint (see checkpoint.go); and broken, set when the
	// totals in memory could not be rebuilt after a failed commit.
	writeTurn    chan struct{}
	nextSeq      uint64
	maxEntryID   string
	checkpointed uint64
	broken       error
	// limits holds every stored limits, under its key, for Updates to
	// read without Badger: wallets with limits are few, and a write
	// reads its wallet's.
	limits map[string]ledger.StoredLimits
	// limitUsers is every user with limits stored, or being committed:
	// added before the commit that stores them (none is ever deleted),
	// so that a View may answer "none" for any other user without
	// reading Badger, whatever its snapshot.
	limitUsersMu sync.RWMutex
	limitUsers   map[string]struct{}
	// When to checkpoint: at this many dirty totals, postings in
	// memory, or changes since the last checkpoint.
	checkpointTotals, checkpointChanges, checkpointPostings int

	tot *memTotals
	// post holds the index postings not yet in Badger (see
	// postings.go).
	post *memPostings
}

var _ ledger.Store = (*Store)(nil)

// Open opens the ledger in directory dir, creating the directory and an
// empty ledger if needed. With [WithInMemory], dir must be "". Open
// fails with [ErrLocked] if another Store (in any process) has dir open, [ErrNotLedger]
// if dir holds something other than a ledger, and [ErrFormat] if it was
// written by a newer version of this package. The Store holds dir
// locked until [Store.Close].
func Open(dir string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	name := dir
	switch {
	case cfg.inMemory && dir != "":
		return nil, fmt.Errorf("badgerstore: open %q: WithInMemory needs the directory \"\"", dir)
	case cfg.inMemory && cfg.gcInterval > 0:
		return nil, errors.New("badgerstore: open: WithValueLogGC cannot be used WithInMemory, which has no value log")
	case cfg.inMemory:
		name = "(in memory)"
	case dir == "":
		return nil, errors.New("badgerstore: open: no directory given (use WithInMemory for a store in memory)")
	}

	bopts := badger.DefaultOptions(dir)
	if cfg.inMemory {
		bopts = badger.DefaultOptions("").WithInMemory(true)
	}
	bopts.SyncWrites = cfg.syncWrites
	// Updates run one at a time (see Update): none can conflict.
	bopts.DetectConflicts = false
	bopts.MemTableSize = memTableSize
	// Corrupt data is an error (see the package doc). Badger checks
	// neither by default.
	bopts.VerifyValueChecksum = true
	bopts.ChecksumVerificationMode = options.OnTableRead
	if !cfg.inMemory {
		bopts.ValueThreshold = valueThreshold
	}
	bopts.Logger = nil
	if cfg.logger != nil {
		bopts.Logger = slogLogger{cfg.logger}
	}
	bopts.BypassLockGuard = ownLock && !cfg.inMemory
	if cfg.tune != nil {
		want := bopts
		bopts = cfg.tune(bopts)
		if bopts.Dir != want.Dir || bopts.ValueDir != want.ValueDir || bopts.InMemory != want.InMemory ||
			bopts.ReadOnly != want.ReadOnly || bopts.BypassLockGuard != want.BypassLockGuard {
			return nil, fmt.Errorf("badgerstore: open %q: WithBadgerOptions changed Dir, ValueDir, InMemory, ReadOnly or BypassLockGuard", name)
		}
	}

	var lock *dirLock
	if !cfg.inMemory {
		var err error
		if lock, err = prepareDir(dir, cfg.logger); err != nil {
			return nil, err
		}
	}
	db, err := openDB(bopts)
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("badgerstore: open %q: %w", name, err)
	}
	s := &Store{db: db, lock: lock, name: name, log: cfg.logger, gcRound: cfg.gcRound, tot: newMemTotals(cfg.cacheTotals),
		post:             newMemPostings(),
		writeTurn:        make(chan struct{}, 1),
		checkpointTotals: cfg.checkpointTotals, checkpointChanges: cfg.checkpointChanges, checkpointPostings: cfg.checkpointPostings}
	s.idle.L = &s.mu
	if err := s.initFormat(cfg.migrateBatch, cfg.afterMigrateBatch); err != nil {
		db.Close()
		lock.release()
		return nil, err
	}
	err = db.View(func(txn *badger.Txn) error {
		last, err := lastSeq(txn)
		if err != nil {
			return fmt.Errorf("find the last change: %w", err)
		}
		s.nextSeq = last + 1
		s.maxEntryID = lastEntryID(txn)
		s.limits = make(map[string]ledger.StoredLimits)
		s.limitUsers = make(map[string]struct{})
		t := &tx{txn: txn, s: s}
		defer t.finish()
		for l, err := range t.AllLimits(context.Background()) {
			if err != nil {
				return fmt.Errorf("read the limits: %w", err)
			}
			s.limits[string(limitsKey(l.UserID, l.Currency))] = l
			s.limitUsers[l.UserID] = struct{}{}
		}
		return nil
	})
	if err == nil {
		err = s.rebuildTotals(nil)
	}
	if err != nil {
		db.Close()
		lock.release()
		return nil, fmt.Errorf("badgerstore: open %q: %w", name, err)
	}
	if cfg.gcInterval > 0 {
		s.gcStop, s.gcDone = make(chan struct{}), make(chan struct{})
		go s.runGC(cfg.gcInterval, cfg.gcRatio)
	}
	return s, nil
}

// prepareDir makes sure dir is a directory that is empty or holds a
// Badger database, creating it if missing, locks it, and clears what a
// crash while Badger created a file can leave.
func prepareDir(dir string, log *slog.Logger) (*dirLock, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("badgerstore: open %q: %w", dir, err)
		}
	case err != nil:
		return nil, fmt.Errorf("badgerstore: open %q: %w", dir, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%w: %q is not a directory", ErrNotLedger, dir)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	// Checked under the lock, so that no other process is creating a
	// ledger here meanwhile.
	ents, err := os.ReadDir(dir)
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("badgerstore: open %q: %w", dir, err)
	}
	// Badger creates a database by writing MANIFEST-REWRITE and renaming
	// it MANIFEST: a crash in between leaves the former alone, which
	// Badger overwrites.
	if len(ents) == 0 || len(ents) == 1 && ents[0].Name() == "MANIFEST-REWRITE" {
		return lock, nil
	}
	if fi, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil || !fi.Mode().IsRegular() {
		lock.release()
		return nil, fmt.Errorf("%w: %q holds files but no Badger database (no MANIFEST)", ErrNotLedger, dir)
	}
	// Only under our own lock: where Badger takes the lock itself, later,
	// an empty log file might be one another process is creating.
	if ownLock {
		if err := removeEmptyLogs(dir, ents, log); err != nil {
			lock.release()
			return nil, err
		}
	}
	return lock, nil
}

// removeEmptyLogs removes the empty write-ahead (.mem) and value (.vlog)
// log files from dir. Badger creates such a file empty, then sizes it and
// writes its header; a crash in between leaves an empty file, which holds
// no data but on which Badger's Open fails ("Create a new file"), so
// that a kill during the creation of a ledger, or when Badger starts a
// new log file, would leave a directory Badger cannot open.
func removeEmptyLogs(dir string, ents []os.DirEntry, log *slog.Logger) error {
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("badgerstore: open %q: %w", dir, err)
		}
		if fi.Size() > 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("badgerstore: open %q: remove empty log file left by a crash: %w", dir, err)
		}
		if log != nil {
			log.Warn("badgerstore: removed an empty log file left by a crash", "dir", dir, "file", name)
		}
	}
	return nil
}

// openDB opens the Badger database, turning a panic (Badger panics on
// some corrupt files) into an error.
func openDB(opts badger.Options) (db *badger.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("badger panicked: %v", p)
		}
	}()
	return badger.Open(opts)
}

// enter starts a call, failing if the store is closed; leave ends it.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ledger.ErrClosed
	}
	s.active++
	return nil
}

func (s *Store) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active--; s.active == 0 {
		s.idle.Broadcast()
	}
}

// View implements [ledger.Store]: fn sees a snapshot taken when View
// starts.
func (s *Store) View(ctx context.Context, fn func(ledger.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	t := &tx{s: s}
	t.gen = s.tot.beginView(func() { t.txn = s.db.NewTransaction(false) })
	defer s.tot.endView(t.gen)
	defer t.txn.Discard()
	defer t.finish() // before Discard, which panics on an open iterator
	return fn(t)
}

// Update implements [ledger.Store]. Updates run one at a time: the
// store is its directory's only writer, and keeps the totals in memory
// (see the package doc). An Update waiting for the one before it
// returns ctx's error, having run nothing, if ctx ends first; once fn
// has returned nil, the commit goes on whatever ctx does. With the default [WithSyncWrites](true), the
// commit is fsynced when Update returns nil. A commit that Badger
// refused (a transaction too large, a database closing) wrote nothing;
// one that failed in Badger's writer, writing or syncing its logs, fails
// with an error matching [ledger.ErrUnknownOutcome] as well as the
// cause, since part of its group may have reached the logs.
func (s *Store) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := s.lockWrite(ctx); err != nil {
		return fmt.Errorf("badgerstore: waiting for the Update before it: %w", err)
	}
	defer s.unlockWrite()
	if s.broken != nil {
		return s.broken
	}
	if err := s.update(fn); err != nil {
		return err
	}
	if s.wantCheckpoint() {
		// The Update committed: a checkpoint that fails is retried by
		// the next one, and Open rebuilds what it did not write.
		if err := s.checkpoint(); err != nil && s.log != nil {
			s.log.Warn("badgerstore: checkpoint failed", "dir", s.name, "err", err)
		}
	}
	return nil
}

// userMayHaveLimits reports whether limits of the user may be stored, in
// any snapshot: false means none are.
func (s *Store) userMayHaveLimits(user string) bool {
	s.limitUsersMu.RLock()
	defer s.limitUsersMu.RUnlock()
	_, ok := s.limitUsers[user]
	return ok
}

// lockWrite takes the writer's turn (what the comments call holding
// writeMu), waiting for the Update that has it, unless ctx ends first:
// an Update whose caller gives up while another commits (say, one that
// also checkpoints) returns then, having written nothing. unlockWrite
// gives the turn back.
func (s *Store) lockWrite(ctx context.Context) error {
	select {
	case s.writeTurn <- struct{}{}:
		return nil
	default:
	}
	select {
	case s.writeTurn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) unlockWrite() { <-s.writeTurn }

// update runs fn in one transaction and commits it. The caller holds
// writeMu.
func (s *Store) update(fn func(ledger.Tx) error) error {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	u := &updateTx{tx: tx{txn: txn, s: s}}
	t := &u.tx
	t.w = &u.w
	defer t.finish() // also if fn panics: Discard panics on an open iterator
	err := fn(t)
	t.finish()
	if err != nil {
		return err
	}
	ws, forced := t.classify()
	if forced && (len(s.tot.dirty) > 0 || s.post.unflushed > 0) {
		// Badger's totals complete up to here first: this commit then
		// moves the checkpoint past itself (below).
		if err := s.checkpoint(); err != nil {
			return err
		}
	}
	if len(t.w.changes) > 0 {
		if err := s.numberChanges(t); err != nil {
			return err
		}
	}
	for i := range ws {
		w := &ws[i]
		if forced {
			w.through = true
		}
		if !w.through || t.w.totals.list[i].written {
			continue
		}
		v, err := encodeTotal(w.val)
		if err != nil {
			return err
		}
		if err := t.set([]byte(w.key), v, "write total %q", w.key); err != nil {
			return err
		}
	}
	posts, spilled, err := s.routePostings(t, forced)
	if err != nil {
		return err
	}
	if forced {
		if err := t.set(checkpointKey, binary.AppendUvarint(nil, s.nextSeq-1), "write the checkpoint"); err != nil {
			return err
		}
	}
	if len(t.w.setLimits) > 0 {
		s.limitUsersMu.Lock()
		for _, l := range t.w.setLimits {
			s.limitUsers[l.UserID] = struct{}{}
		}
		s.limitUsersMu.Unlock()
	}
	s.tot.snapMu.Lock()
	err = txn.Commit()
	if err == nil {
		s.tot.apply(ws)
		s.post.add(posts, s.tot.gen)
		if len(spilled) > 0 || len(s.post.trim) > 0 {
			s.post.markFlushed(spilled, s.tot.gen)
			oldest, _, viewing := s.tot.viewRange()
			s.post.drop(oldest, viewing)
		}
	}
	s.tot.snapMu.Unlock()
	if err != nil {
		err = commitError(err)
		if errors.Is(err, ledger.ErrUnknownOutcome) {
			s.recoverTotals()
		}
		return err
	}
	s.maxEntryID = max(s.maxEntryID, t.w.maxID)
	for k, l := range t.w.setLimits {
		s.limits[k] = l
	}
	if forced {
		s.checkpointed = s.nextSeq - 1
	}
	return nil
}

// recoverTotals rebuilds the totals in memory from Badger after a commit
// whose outcome is unknown: Badger may hold it or not, and memory must
// agree. Every total in memory is read again, and those the feed's
// entries after the checkpoint set are rebuilt from them, as a new
// generation: Views in flight keep reading the totals of their
// snapshots. If the rebuild fails, every later Update fails: the store
// must be opened again. The caller holds writeMu.
func (s *Store) recoverTotals() {
	keys := make([]string, 0, len(s.tot.vals))
	for k := range s.tot.vals {
		keys = append(keys, k)
	}
	err := s.rebuildTotals(keys)
	if err == nil {
		err = s.db.View(func(txn *badger.Txn) error {
			s.maxEntryID = lastEntryID(txn) // the commit's IDs, if it landed
			return nil
		})
	}
	if err != nil {
		s.broken = fmt.Errorf("badgerstore: %q: the totals in memory are lost after a failed commit (open the store again): %w", s.name, err)
		if s.log != nil {
			s.log.Error("badgerstore: totals lost after a failed commit", "dir", s.name, "err", err)
		}
	}
}

// commitError classifies a failed txn.Commit. Badger refuses a
// transaction before handing it to its writer for a conflict, a
// transaction too large, or writes blocked because the database is
// closing: nothing was written. Any other failure came from the writer,
// which writes the group of transactions it took to the value log, then
// to the memtable and its write-ahead log, and fails them all if one
// step fails, some of them possibly written already (and replayed from
// the write-ahead log by the next Open): the outcome is unknown.
func commitError(err error) error {
	switch {
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("badgerstore: commit: transaction too large: a transaction may write at most 15%% of Badger's MemTableSize: %w", err)
	case errors.Is(err, badger.ErrConflict), errors.Is(err, badger.ErrBlockedWrites), errors.Is(err, badger.ErrDBClosed):
		return fmt.Errorf("badgerstore: commit: %w", err)
	}
	return fmt.Errorf("badgerstore: commit: %w: %w", ledger.ErrUnknownOutcome, err)
}

// Ping implements [ledger.Store].
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if s.db.IsClosed() {
		return fmt.Errorf("badgerstore: %q: database closed", s.name)
	}
	return nil
}

// Close implements [ledger.Store]. It waits for the calls in flight,
// stops the value-log garbage collection, closes the database and
// releases the directory.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ledger.ErrClosed
	}
	s.closed = true
	for s.active > 0 {
		s.idle.Wait()
	}
	s.mu.Unlock()

	_ = s.lockWrite(context.Background()) // nothing runs now: no wait
	var cerr error
	if s.broken == nil && (len(s.tot.dirty) > 0 || s.post.unflushed > 0) {
		// Open would rebuild them, but reading the feed costs more than
		// writing them.
		cerr = s.checkpoint()
	}
	s.unlockWrite()
	if s.gcStop != nil {
		close(s.gcStop)
		<-s.gcDone
	}
	err := s.db.Close()
	if lerr := s.lock.release(); err == nil && lerr != nil {
		err = lerr
	}
	if err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("badgerstore: close %q: %w", s.name, err)
	}
	return nil
}

// runGC runs value-log garbage collection every interval until Close.
func (s *Store) runGC(interval time.Duration, ratio float64) {
	defer close(s.gcDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.gcStop:
			return
		case <-t.C:
		}
		// Each successful call rewrote one file; go on until none
		// qualifies, or Close.
	round:
		for {
			err := s.db.RunValueLogGC(ratio)
			switch {
			case err == nil:
			case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
				break round
			default:
				if s.log != nil {
					s.log.Warn("badgerstore: value-log garbage collection failed", "dir", s.name, "err", err)
				}
				break round
			}
			select {
			case <-s.gcStop:
				return
			default:
			}
		}
		if s.gcRound != nil {
			s.gcRound()
		}
	}
}
