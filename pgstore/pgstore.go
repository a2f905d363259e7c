// Package pgstore is a [ledger.Store] on PostgreSQL, through pgx
// (github.com/jackc/pgx/v5): one ledger that any number of processes, on
// any number of machines, share safely.
//
//	s, err := pgstore.Open(ctx, "postgres://wallet@db.internal/wallet")
//	...
//	l, err := ledger.New(s) // l.Close closes s
//
// # Schema
//
// A ledger lives in one schema, "walletledger" unless [WithSchema] names
// another, so one database can hold several ledgers. [Open] creates the
// schema on first use (CREATE SCHEMA IF NOT EXISTS) and upgrades it: the
// schema's version is kept in its meta table, and the migrations are an
// ordered list in code, run in one transaction that holds
// pg_advisory_xact_lock on a key derived from the schema name, so that
// processes opening at once queue and each after the first finds the
// work done. A schema that is already current costs Open two reads and
// no lock or DDL, so a role without the right to create may open a
// schema made for it. A schema written by a newer pgstore fails Open
// with [ErrSchemaVersion]. Version 5, with S the schema:
//
//	CREATE TABLE S.meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL);  -- ('version', '5')
//	CREATE TABLE S.entries (
//		id                text COLLATE "C" PRIMARY KEY,
//		authority_id      text COLLATE "C" NOT NULL,
//		user_id           text COLLATE "C" NOT NULL,
//		created_on        bigint NOT NULL,   -- Unix nanoseconds (timestamptz has microseconds)
//		amount            numeric NOT NULL,
//		reason            text COLLATE "C" NOT NULL,
//		item_name         text COLLATE "C",  -- NULL: no item
//		item_used         boolean,           -- NULL exactly when item_name is
//		item_data         bytea,             -- byte for byte; not json or jsonb
//		balance           numeric NOT NULL,
//		authority_balance numeric NOT NULL,
//		idempotency_key   text COLLATE "C",  -- NULL: none
//		item_used_on        bigint,          -- Unix nanoseconds; NULL: unused, or used before version 2
//		item_used_by        text COLLATE "C", -- NULL: unused, or used before version 2
//		use_idempotency_key text COLLATE "C", -- NULL: none
//		currency     text COLLATE "C" NOT NULL DEFAULT '',  -- '' = the default currency
//		metadata     jsonb,              -- NULL: none; keys and values escaped as text is (below)
//		transfer_id  text COLLATE "C",   -- NULL: not part of a transfer
//		reverses     text COLLATE "C",   -- on a reversal: the entry it reverses
//		reversed_by  text COLLATE "C",   -- on a reversed entry: its reversal
//		item_revoked boolean,            -- true: revoked; NULL: not (or no item)
//		hold_id      text COLLATE "C",   -- on a capture's entry: the hold it captured
//		CONSTRAINT entries_item_check CHECK ((item_name IS NULL) = (item_used IS NULL)
//			AND (item_name IS NOT NULL OR item_data IS NULL)),
//		CONSTRAINT entries_use_check CHECK (item_used IS TRUE
//			OR (item_used_on IS NULL AND item_used_by IS NULL AND use_idempotency_key IS NULL)),
//		CONSTRAINT entries_revoked_check CHECK (item_revoked IS NULL OR item_name IS NOT NULL)
//	);
//	CREATE UNIQUE INDEX entries_idempotency_key ON S.entries (authority_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
//	CREATE INDEX entries_user            ON S.entries (user_id, id);
//	CREATE INDEX entries_authority       ON S.entries (authority_id, id);
//	CREATE INDEX entries_authority_user  ON S.entries (authority_id, user_id, id);
//	CREATE INDEX entries_items           ON S.entries (id)               WHERE item_name IS NOT NULL;
//	CREATE INDEX entries_items_user      ON S.entries (user_id, id)      WHERE item_name IS NOT NULL;
//	CREATE INDEX entries_items_authority ON S.entries (authority_id, id) WHERE item_name IS NOT NULL;
//	CREATE INDEX entries_currency_user   ON S.entries (currency, user_id, id);  -- a wallet's history
//	CREATE TABLE S.totals (
//		authority_id text COLLATE "C" NOT NULL,  -- '' = the total over all authorities
//		user_id      text COLLATE "C" NOT NULL,
//		total        numeric NOT NULL,
//		last_entry   text COLLATE "C" NOT NULL,
//		currency     text COLLATE "C" NOT NULL DEFAULT '',
//		held         numeric NOT NULL DEFAULT 0,  -- authority '': the wallet's active holds; else 0
//		PRIMARY KEY (authority_id, currency, user_id)
//	) WITH (fillfactor = 70);  -- room for HOT updates: a total's update touches no index
//	CREATE INDEX totals_user ON S.totals (user_id, currency) WHERE authority_id = '';
//	CREATE TABLE S.limits (
//		user_id  text COLLATE "C" NOT NULL,
//		currency text COLLATE "C" NOT NULL,
//		floor    numeric NOT NULL,
//		cap      numeric,                 -- NULL: no cap
//		set_by   text COLLATE "C" NOT NULL,
//		set_on   bigint,                  -- Unix nanoseconds; NULL: the zero time
//		PRIMARY KEY (user_id, currency)
//	);
//	CREATE TABLE S.holds (
//		hold_id         text COLLATE "C" PRIMARY KEY,
//		authority_id    text COLLATE "C" NOT NULL,
//		user_id         text COLLATE "C" NOT NULL,
//		currency        text COLLATE "C" NOT NULL,
//		amount          numeric NOT NULL,
//		reason          text COLLATE "C" NOT NULL,
//		metadata        jsonb,              -- NULL: none; escaped as in entries
//		created_on      bigint,             -- Unix nanoseconds; NULL: the zero time
//		expires         bigint,             -- Unix nanoseconds; NULL: never
//		state           text COLLATE "C" NOT NULL,  -- active, captured, released or expired
//		closed_on       bigint,             -- Unix nanoseconds; NULL: open (the zero time)
//		entry_id        text COLLATE "C",   -- on a captured hold: its capture's entry
//		idempotency_key text COLLATE "C",   -- NULL: none
//		CONSTRAINT holds_state_check CHECK (state IN ('active', 'captured', 'released', 'expired'))
//	);
//	CREATE UNIQUE INDEX holds_idempotency_key ON S.holds (authority_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
//	CREATE INDEX holds_user          ON S.holds (user_id, currency, hold_id);  -- a wallet's holds
//	CREATE INDEX holds_expiring      ON S.holds (expires, hold_id)
//		WHERE state = 'active' AND expires IS NOT NULL;
//	CREATE INDEX holds_expiring_user ON S.holds (user_id, currency, expires, hold_id)
//		WHERE state = 'active' AND expires IS NOT NULL;
//	CREATE SEQUENCE S.changes_cursor AS bigint MINVALUE 1 CACHE 1 NO CYCLE;  -- see Change feed
//	CREATE TABLE S.changes (
//		cursor          bigint PRIMARY KEY,  -- the change's number; its Cursor is it in hex
//		kind            text COLLATE "C" NOT NULL,
//		at              bigint,              -- Unix nanoseconds; NULL: the zero time
//		authority_id    text COLLATE "C" NOT NULL,
//		ref             text COLLATE "C" NOT NULL,  -- '' for limits
//		limits_user_id  text COLLATE "C",    -- the four limits_ columns: NULL but for limits
//		limits_currency text COLLATE "C",
//		limits_floor    numeric,
//		limits_cap      numeric,             -- NULL: no cap
//		CONSTRAINT changes_limits_check CHECK ((limits_user_id IS NULL) = (limits_currency IS NULL)
//			AND (limits_user_id IS NULL) = (limits_floor IS NULL) AND (limits_cap IS NULL OR limits_floor IS NOT NULL))
//	);
//
// Version 1 is the same without the last three columns of entries and
// entries_use_check. The migration to version 2 adds them in place, in
// an instant whatever the table's size: the columns are nullable
// without a default, and the check is added NOT VALID (it holds for
// every row written since; rows from before have NULLs there), so
// nothing is rewritten or scanned. Items used under version 1 read with
// no use time or authority.
//
// Version 2 is version 3 without currencies, metadata, transfers,
// reversals and limits: without the last six columns of entries,
// entries_revoked_check and entries_currency_user, with totals keyed
// (authority_id, user_id) and without currency or totals_user, and
// without the limits table. The migration to version 3 rewrites no table
// (currency's default is a constant, which PostgreSQL keeps in the
// catalog: every old entry and total is in the default currency; the
// other columns are nullable; the check is NOT VALID), but it builds
// entries_currency_user, which reads the entries table once, and
// rebuilds the primary key of totals, all in the one transaction that
// holds the migration lock and the tables' locks: on a large ledger the
// first Open of the new release waits for it, and so does every other
// process. Once migrated, a schema fails to open under an older pgstore
// (with ErrSchemaVersion).
//
// Version 3 is version 4 without holds: without entries.hold_id,
// totals.held and the holds table. The migration to version 4 rewrites
// and scans nothing: hold_id is nullable without a default, held's
// default is a constant kept in the catalog (every old total holds
// nothing), and the holds table and its indexes are new and empty, so
// its locks are held for an instant.
//
// Version 4 is version 5 without the change feed: without
// changes_cursor and changes. The migration to version 5 creates them
// and synthesizes the feed's past from the records, in one INSERT ...
// SELECT: a change per entry ("entry" at CreatedOn, by its authority),
// per used item ("item_used" at UsedOn, by UsedBy; a use recorded before
// uses had times has neither and comes right after its entry), per
// stored limits ("limits" at SetOn, by SetBy, with the limits), per
// hold ("hold_placed" at CreatedOn) and per released or expired hold
// ("hold_released" or "hold_expired" at ClosedOn, both by the hold's
// authority; a capture is its entry), numbered 1, 2, ... in the order
// of a merge by time, ties broken by kind in that order and then by ID
// (limits by user and currency); the sequence goes on after the last.
// This reads entries, limits and holds once, sorts them and writes a
// row per change, all in the migration's transaction: on a large
// ledger the first Open of the new release takes that long, and every
// other process waits for it. Nothing else is rewritten.
//
// Every text column is COLLATE "C", so that IDs, user and authority IDs
// sort bytewise, as the ledger requires, whatever the database's locale.
// Totals are rows written in the same transaction as the entries that
// change them; nothing is summed at read time. Numerics are sent and read
// as text, exactly, and keep their scale (1.50 comes back as 1.50).
// Text cannot hold NUL, so in text columns NUL is stored as \x01\x01 and
// \x01 as \x01\x02, an escape that keeps bytewise order; other strings
// are stored as they are.
//
// # Queries
//
// Every read is served by an index: an entry by its primary key or its
// idempotency key, a total or a page of one authority's totals in one
// currency by the primary key of totals, the groups of totals by a skip
// over it, a user's totals by totals_user, limits by the primary key of
// limits, a hold by its primary key or its idempotency key, a wallet's
// holds by a seek into holds_user (a user's in every currency by the
// same index, sorted by ID), all holds (in a currency or not) by
// the primary key of holds, expiring holds by a range scan of
// holds_expiring or, for a wallet, holds_expiring_user, the changes
// after a cursor by a range scan of the primary key of changes, and a scan by the index of its shape (user, authority, both, or
// neither; items only or not), in ID order, reverse included, with Start
// and End as index bounds. A user's entries in one currency (what a
// balance as of an instant reads) are a seek into entries_currency_user;
// in the other shapes a currency filters the shape's index. Scans read in pages (LIMIT 16, growing to
// 1,024), each read whole before its rows are yielded, so iterators hold
// no result set open: a caller may stop at any row, or read the
// transaction inside its loop. EXPLAIN.md shows the plan of every
// statement, and TestQueryPlans checks them. Open sets enable_seqscan=off
// on its connections, so that a young ledger runs the plans of a large
// one: on a small table the planner would otherwise scan sequentially,
// and a scan that locks rows (see Transactions) would lock every row it
// passes.
//
// # Transactions
//
// [Store.View] runs in a REPEATABLE READ READ ONLY transaction: one
// consistent snapshot. [Store.Update] runs in a READ COMMITTED
// transaction, and takes its isolation from row locks taken in one
// order and from conditional writes, not from a snapshot: transactions
// that write the same wallets, in any process, queue for them instead of
// failing to serialize and running again, as they did under the
// SERIALIZABLE isolation pgstore used before.
//
// Totals are locked before they are read. A read of totals in an Update
// (TotalsOf, with which the ledger's group commit starts and which names
// every total the group's entries, transfers and holds will read; Total;
// and Limits, which locks the wallet's total over all authorities) is
// preceded, in the same round trip, by two statements that lock the
// totals it names that the transaction has not locked yet, sorted by
// (authority, currency, user) bytewise:
//
//	INSERT INTO S.totals ... SELECT ... FROM unnest(keys) WHERE NOT EXISTS (...) ON CONFLICT DO NOTHING RETURNING ...;  -- a row for each that has none
//	SELECT count(*) FROM unnest(keys) CROSS JOIN LATERAL (SELECT FROM S.totals WHERE ... FOR UPDATE);  -- then each row, in order
//
// A row inserted so is a placeholder (total 0, held 0, no last entry):
// the transaction reads it as no total, and its commit deletes it unless
// SetTotal wrote it, so that nothing stays where the ledger wrote
// nothing (a refused spend). Other transactions never see it; an insert
// of the same key by another waits for this transaction's end.
//
// A committed total is never deleted, so a Store remembers the totals
// its updates committed (up to 32,768 of them) and sends the INSERT only
// for the others, for which it may do something; the SELECT then checks
// that it locked a row for every key, and if a remembered total has none
// (its row deleted by hand), the Store forgets them all and runs the
// update again, as for a conflict.
//
// The read is the next statement, and under READ COMMITTED each
// statement reads a snapshot taken when it starts: after the locks were
// granted. It reads every total as the transaction that last held its
// lock committed it (a commit is visible before the committer's locks
// are released; see Change feed), and no other transaction can change
// the total until this one ends. For TotalsOf, the SELECT returns the
// totals it locks, which PostgreSQL documents for SELECT ... FOR UPDATE
// under READ COMMITTED: a row updated while the lock was awaited is
// locked and returned in its updated version, what the read would read;
// the read then reads the wallets' limits, and only the totals locked
// earlier in the transaction. Nor can the row move: the read also
// returns its ctid, and the transaction's write of a total it read, and
// has not written since, updates the row at that ctid, with no index
// probe (a live row keeps its ctid; VACUUM FULL and CLUSTER wait for the
// transaction); the other writes of totals are upserts by key.
//
// Entries and holds are read without locks, at each statement's
// snapshot, and every change that the ledger decides from such a read is
// a conditional write that checks the read still holds: an item is
// marked used only if it is unused and not revoked, an entry marked
// reversed only if it is not (and, if its item is to be revoked, only if
// the item is unused), a hold closed only if it is active. A writer that
// finds the row locked waits for its holder and then checks the row as
// the holder committed it. A conditional write that matches nothing
// fails the transaction with a conflict, before COMMIT is sent. So does
// a unique violation of an idempotency key in a transaction that looked
// that key up and found none: another transaction inserted it since and
// committed.
//
// On a conflict, a serialization failure (SQLSTATE 40001) or a deadlock
// (40P01), Update rolls back and runs its function again, after a
// random pause that doubles with each attempt (up to 250ms), up to
// [WithMaxRetries] times (default 20) and while its context lasts;
// [Store.Stats] counts the retries. The retry's first read locks, in
// order, every total the failed attempt had locked.
//
// Why the ledger's rules hold across processes:
//
//   - Funds and limits. The ledger reads a wallet's total over all
//     authorities before every write that changes the wallet (an entry,
//     a hold placed or closed, its limits), so every such writer holds
//     that total's lock from its read to its end. Two writers of a
//     wallet run one after the other, the second reading the balance,
//     held amount and limits the first committed (limits and due holds
//     are read after the lock, in later statements): each entry is
//     checked against the balance it is added to, and no wallet goes
//     below its floor or above its cap.
//   - A user's entries in commit order. The ledger makes a new entry's
//     ID sort after the LastEntryID it read in the wallet's total, under
//     the lock, which the previous writer held until it committed that
//     ID.
//   - Idempotency keys. The unique indexes keep keys unique. A retry of
//     a write to the same wallet looks its key up under the wallet's
//     lock, after the first write committed, and finds its entry or
//     hold; any other race ends in a unique violation, which Update
//     retries as a conflict, and the retry's lookup finds the key.
//   - An item used once, a hold captured, released or expired once, an
//     entry reversed once: conditional writes. Of two transactions that
//     read the row and change it, the second's write matches nothing,
//     and its retry reads the row as the first left it.
//   - The change feed: see below. Its argument rests on the commit's
//     visibility and the order of its lock, not on isolation.
//
// Group commits cannot deadlock with each other: each takes its totals'
// locks (placeholder inserts included, which wait for an inserter of the
// same key) in one read at its start, in ascending order, sends its
// writes in a fixed order (entries and holds by ID, then totals by
// authority, currency and user, then limits by currency and user) and
// takes the change lock last, waiting for no one once it holds it. The
// ledger learns which totals a capture, a release, a reversal or a
// hold sweep will write by reading first, without locks, the records
// that name the wallets (the hold, the entry and its transfer's other
// entry, the due holds); those change only by conditional writes, which
// the commit checks. Should a cycle close anyway (with a program that
// writes the schema by other means), PostgreSQL reports a deadlock after
// its deadlock_timeout (1s by default), and the retry takes its locks in
// order.
//
// What it costs: a wallet's writers, in every process, run one at a time
// from their first read to their commit, two round trips and the
// commit's WAL flush, where SERIALIZABLE let them run together and all
// but one run again. In one process this changes little: the ledger's
// group commit runs one transaction at a time anyway. Each lock is an
// index probe and the row's lock (and one more probe for a total the
// Store does not know to have a row), in the round trip that reads it.
//
// Scans in an Update take no lock. Within an Update that locked a total
// that had no row, the scans of totals (Totals, UserTotals, TotalGroups)
// see its placeholder, a zero total, until the commit deletes it; the
// ledger does not scan totals in an update. A program that uses the
// store without the ledger gets this isolation, not SERIALIZABLE: a
// read-modify-write of a total through Total and SetTotal is safe, a
// decision made from a scan is not checked again.
//
// A schema may be written by processes running the pgstore before this
// scheme (SERIALIZABLE, no locks) and by this one at once, as in a
// rolling upgrade, and the rules above still hold: a serializable
// transaction whose snapshot predates a change of a row it updates (a
// total, an item's use, a hold's close) fails to serialize, and one that
// updates a row first makes the new lock or conditional write wait for
// it and then see its result. (TestContention and TestMultiProcess, run
// with half their processes on the older pgstore, find the rules kept.)
// One thing differs
// meanwhile: PostgreSQL turns the unique violation of a key that a
// serializable transaction looked up into a serialization failure only
// when the other inserter is serializable too, so an old process whose
// write races a new one's with the same idempotency key fails with the
// unique violation (nothing written; a retry with the key finds the
// entry) instead of retrying.
//
// # Change feed
//
// [ledger.Tx.AppendChange] keeps the change in the transaction; its number is
// taken at the commit, in the round trip that carries COMMIT, after
// every other write of the transaction was sent:
//
//	SELECT pg_advisory_xact_lock(K);  -- K: a hash of the schema's name
//	INSERT INTO S.changes ... nextval('S.changes_cursor') ...;  -- the changes, in append order
//	COMMIT;
//
// A change's cursor is its number as 16 lowercase hex digits, so
// cursors sort bytewise as the numbers do. The numbers are in commit
// order across every process that writes the schema, and no gap is
// ever filled later, because of two things PostgreSQL guarantees:
//
//   - The advisory lock is exclusive and held until the transaction
//     ends, so transactions that append changes take their numbers one
//     at a time; and the sequence hands out increasing numbers in the
//     order nextval is called (CACHE 1: no session holds a range of its
//     own), so every number a holder takes is above every number taken
//     before it.
//   - A transaction's commit is visible to new snapshots before its
//     locks are released: CommitTransaction (xact.c) writes the commit
//     record, then removes the transaction from the proc array
//     (ProcArrayEndTransaction: "this must be done _before_ releasing
//     locks we hold"), and only then releases its locks. So when the
//     next holder gets the lock and takes higher numbers, the previous
//     holder's changes are already visible, or, if it rolled back,
//     never will be.
//
// Hence a reader whose snapshot holds change n, committed by B, took its
// snapshot after B's commit was visible, which came after every
// transaction that took a lower number had become visible or rolled
// back: the snapshot holds every change below n that will ever commit,
// and a reader that resumes after the last cursor it saw misses
// nothing. The numbers of a transaction that rolls back or fails at
// COMMIT (a serialization failure, say) are never used: the feed has
// gaps in its numbers, never in its changes. A sequence is not
// transactional, so the numbers make transactions wait for nothing, as
// a counter row that every commit updated would, from the update to the
// commit. The argument holds whatever the writers' isolation level. A
// change's number survives a crash as the change does: nextval is
// logged with the transaction, whose log is flushed when it commits.
//
// What it costs: transactions that append changes commit one at a time,
// across all processes: each holds the lock from the moment its last
// round trip reaches the server until its COMMIT is done, the commit's
// WAL flush included (and the wait for synchronous standbys, if any), so
// their commits are not flushed together. Transactions waiting for the
// lock hold their row locks meanwhile; the holder waits for none, having
// sent its other writes before, so the lock cannot deadlock. The
// ledger's group commit puts many operations in one transaction, so the
// lock is taken once per group, not per operation. A transaction that
// appends nothing takes no lock. The changes themselves are one INSERT
// of a row per change, in the same round trip.
//
// Other processes' changes reach a following ledger by polling:
// [Store.PollInterval], which [WithPollInterval] sets, is how often it
// reads the changes after its last cursor (a range scan of the primary
// key) while it waits. pgstore does not use LISTEN/NOTIFY.
//
// # Contexts and dead connections
//
// Every call returns soon after its context ends, however the server
// behaves: the moment a context ends, the deadline of the connection in
// use passes, so a statement in flight fails at once and pgx closes the
// connection (pgconn.DeadlineContextWatcherHandler, with no delay); a
// transaction whose context ends between statements is not rolled back
// by a ROLLBACK that could wait, but by closing its connection. Without
// a deadline, a server that stopped answering is found out by the
// connection: TCP keepalives ([DefaultKeepAliveIdle],
// [DefaultKeepAliveInterval], [DefaultKeepAliveCount]: 30s for a silent
// peer), TCP_USER_TIMEOUT on Linux ([DefaultTCPUserTimeout]: data left
// unacknowledged that long), and the pool's ping of a connection idle
// for a second or more before it hands it out, which waits at most
// [DefaultPingTimeout] before trying another connection. A server
// process that is alive but stuck (its host still acknowledges) is
// bounded only by contexts.
//
// libpq's connection parameters keepalives (0 turns keepalives off),
// keepalives_idle, keepalives_interval, keepalives_count (seconds and a
// count) and tcp_user_timeout (milliseconds; 0 leaves the system's
// default) override these defaults in the connection string, as in
// libpq; [WithPoolConfig] can change any of them, PingTimeout included.
//
// # Unknown outcomes
//
// When [Store.Update] fails after sending COMMIT and the server did not
// refuse the transaction, the store cannot tell whether it committed:
// the connection was lost, the server ended the session (FATAL, as
// pg_terminate_backend does), or the context ended while COMMIT was in
// flight. The error then matches [ledger.ErrUnknownOutcome] as well as
// its cause (such as context.DeadlineExceeded). A refusal is definite:
// an error of severity ERROR (a serialization failure or deadlock, which
// Update retries, or a unique violation), COMMIT answered by ROLLBACK,
// or a failure before anything was sent.
//
// # Round trips
//
// A transaction sends nothing until it must. BEGIN travels with the first
// read; writes (InsertEntry, SetItemUsed, SetReversed, SetTotal,
// SetLimits, InsertHold, CloseHold, AppendChange) are buffered and sent
// as one pipelined batch with the next read (reads see the transaction's
// own writes) or with COMMIT. A run of entry inserts travels as one
// statement, and the totals' writes as one or two (those written where
// they were read, and the others), their columns as array parameters,
// however many rows they write (a lone entry as a row of parameters).
// In an Update, the locks of the totals a read names (see Transactions)
// travel in front of it, in the same batch.
// A ledger write that reads two totals one by one thus costs three round
// trips: BEGIN with the first total and its lock, the second total and
// its lock, and the writes with COMMIT (and the deletion of placeholders
// not written); the ledger's group commit reads and locks all its totals
// in one. Errors still come back where the contract
// puts them: a duplicate ID or idempotency key, or SetItemUsed on a
// missing entry or item ([ledger.ErrNotFound], [ledger.ErrNoItem]), fails
// the transaction when the batch runs, and Update returns that error;
// so do SetReversed on a missing entry and CloseHold on a missing hold
// ([ledger.ErrNotFound]). Because COMMIT shares the batch only with
// statements that fail by an error, a batch that marks an item used or
// an entry reversed, or closes a hold, commits in a round trip of its
// own. Changes are sent only with COMMIT, after the change lock (see
// Change feed), never with a read: a transaction's own changes, having
// no cursor before it commits, are not among its reads of Changes.
//
// # Limits
//
// Text must be valid UTF-8 (the ledger's is), metadata included:
// InsertEntry, InsertHold, SetTotal and SetLimits refuse other strings,
// and a lookup of one finds nothing. CreatedOn, and a hold's Expires and
// ClosedOn, must lie between 1678 and 2262 (Unix nanoseconds in an
// int64), as the ledger's do. Entry and hold IDs are kept as given.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walletledger/ledger"
)

// Store is a [ledger.Store] in one schema of a PostgreSQL database.
// Create one with [Open]; the zero value is not usable. It is safe for
// concurrent use, and any number of Stores, in this process or others,
// may share a schema.
type Store struct {
	pool       *pgxpool.Pool
	schema     string
	q          *queries
	maxRetries int
	poll       time.Duration
	lanes      int
	closed     atomic.Bool
	known      knownTotals

	updates, retries, deadlocks atomic.Uint64
}

var (
	_ ledger.Store           = (*Store)(nil)
	_ ledger.SharedStore     = (*Store)(nil)
	_ ledger.ConcurrentStore = (*Store)(nil)
)

// DefaultSchema is the schema a [Store] lives in unless [WithSchema] says
// otherwise.
const DefaultSchema = "walletledger"

// DefaultMaxRetries is how many times [Store.Update] retries a
// transaction that met a conflict, failed to serialize or deadlocked,
// unless [WithMaxRetries] says otherwise.
const DefaultMaxRetries = 20

// DefaultPollInterval is how often a ledger following the change feed
// reads the store for other processes' changes, unless
// [WithPollInterval] says otherwise.
const DefaultPollInterval = 50 * time.Millisecond

// Backoff between retries: a random duration up to minBackoff doubled
// per retry, capped at maxBackoff.
const (
	minBackoff = 2 * time.Millisecond
	maxBackoff = 250 * time.Millisecond
)

// Option configures [Open].
type Option func(*config)

type config struct {
	schema       string
	maxRetries   int
	pollInterval time.Duration
	poolConfig   func(*pgxpool.Config)
	commitLanes  int
}

// DefaultCommitLanes is how many transactions a ledger over a [Store]
// commits at once unless [WithCommitLanes] says otherwise.
const DefaultCommitLanes = 2

// WithCommitLanes sets how many write transactions a ledger over the
// Store runs at once, 1 to 16 (see [ledger.ConcurrentStore]): with
// more than one, a lane's group is built and sent while another's
// commits, which keeps the server busy where one transaction at a time
// leaves it waiting for the process. Each lane holds a pool connection
// while it commits. The default is [DefaultCommitLanes].
func WithCommitLanes(n int) Option {
	return func(c *config) { c.commitLanes = n }
}

// WithSchema puts the ledger in the named schema, created on first use.
// The name must be a plain lower-case SQL identifier: letters a-z, digits
// and underscores, not starting with a digit or pg_, at most 63 bytes.
// One database can hold several ledgers, each in its own schema.
func WithSchema(name string) Option {
	return func(c *config) { c.schema = name }
}

// WithMaxRetries sets how many times [Store.Update] runs its function
// again after a conflict (see the package documentation), a
// serialization failure or a deadlock, after the first attempt; 0 turns
// retries off. The default is [DefaultMaxRetries].
func WithMaxRetries(n int) Option {
	return func(c *config) { c.maxRetries = n }
}

// WithPollInterval sets how often a ledger that follows the change feed
// ([ledger.ChangeQuery] Follow) reads the store for changes that other
// processes committed, while it waits: the longest a change from
// another process waits to be delivered, less the time a read takes.
// Each following ledger reads once per interval, a range scan that
// finds nothing when nothing changed. d must be positive; the default
// is [DefaultPollInterval].
func WithPollInterval(d time.Duration) Option {
	return func(c *config) { c.pollInterval = d }
}

// WithPoolConfig lets fn tune the connection pool's configuration (sizes,
// lifetimes, tracing, TLS) after [Open] has parsed the connection string
// and set its defaults: the runtime parameters application_name
// (walletledger, unless the connection string sets one) and
// enable_seqscan=off, and the settings that bound waits on a dead
// server, ConnConfig.DialFunc (TCP keepalives and TCP_USER_TIMEOUT),
// ConnConfig.BuildContextWatcherHandler and PingTimeout (see the package
// documentation). fn must not replace ConnConfig.
func WithPoolConfig(fn func(*pgxpool.Config)) Option {
	return func(c *config) { c.poolConfig = fn }
}

// Open connects to the database that connString names (a URL or a
// key=value string, as pgx and libpq read it), creates or upgrades the
// ledger's schema, and returns a Store that owns a new connection pool.
// It fails with [ErrSchemaVersion] if a newer pgstore wrote the schema,
// and with an error wrapping [ledger.ErrInvalid] for a bad option.
func Open(ctx context.Context, connString string, opts ...Option) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg := config{schema: DefaultSchema, maxRetries: DefaultMaxRetries, pollInterval: DefaultPollInterval, commitLanes: DefaultCommitLanes}
	for _, o := range opts {
		o(&cfg)
	}
	if err := checkSchemaName(cfg.schema); err != nil {
		return nil, err
	}
	if cfg.maxRetries < 0 {
		return nil, fmt.Errorf("pgstore: max retries %d: negative: %w", cfg.maxRetries, ledger.ErrInvalid)
	}
	if cfg.pollInterval <= 0 {
		return nil, fmt.Errorf("pgstore: poll interval %v: not positive: %w", cfg.pollInterval, ledger.ErrInvalid)
	}
	if cfg.commitLanes < 1 || cfg.commitLanes > 16 {
		return nil, fmt.Errorf("pgstore: commit lanes %d: must be 1 to 16: %w", cfg.commitLanes, ledger.ErrInvalid)
	}
	pc, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx redacts any password from the error.
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	params := pc.ConnConfig.RuntimeParams
	if params["application_name"] == "" {
		params["application_name"] = "walletledger"
	}
	params["enable_seqscan"] = "off"
	if err := configureConns(pc); err != nil {
		return nil, err
	}
	if cfg.poolConfig != nil {
		cfg.poolConfig(pc)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	s := &Store{pool: pool, schema: cfg.schema, q: newQueries(cfg.schema), maxRetries: cfg.maxRetries, poll: cfg.pollInterval,
		lanes: cfg.commitLanes}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// View implements [ledger.Store]: fn runs in a REPEATABLE READ, READ
// ONLY transaction, which reads one snapshot of the database.
func (s *Store) View(ctx context.Context, fn func(ledger.ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return ledger.ErrClosed
	}
	_, err := s.run(ctx, false, nil, func(t *tx) error { return fn(t) })
	return err
}

// Update implements [ledger.Store]: fn runs in a READ COMMITTED
// transaction that locks the totals it reads before it reads them and
// checks, when it changes an entry or a hold, that what it read of it
// still holds (see the package documentation). When a check fails, or
// the transaction fails to serialize against another (SQLSTATE 40001)
// or deadlocks (40P01), at any point, fn's work is rolled back and fn
// runs again in a new transaction, after a short random pause, up to
// the configured number of retries (see [WithMaxRetries]) and while ctx
// lasts. So fn may run more than once, as the Store contract allows.
func (s *Store) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return ledger.ErrClosed
	}
	s.updates.Add(1)
	var locked []storedKey
	for attempt := 0; ; attempt++ {
		var err error
		locked, err = s.run(ctx, true, locked, func(t *tx) error { return fn(t) })
		if err == nil || !retryable(err) {
			return err
		}
		if attempt >= s.maxRetries {
			return fmt.Errorf("pgstore: update: still failing to serialize after %d attempts: %w", attempt+1, err)
		}
		s.retries.Add(1)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "40P01" {
			s.deadlocks.Add(1)
		}
		pause := time.Duration(rand.Int64N(int64(min(maxBackoff, minBackoff<<min(attempt, 16))) + 1))
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
}

// retryable reports whether err says the transaction was rolled back
// because of concurrent transactions, so that running it again can
// succeed: a serialization failure or a deadlock, or a conflict that
// the store found (errConflict).
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, errConflict) || errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// run runs fn in one transaction on one connection and, for an update,
// commits it if fn succeeds. An update first locks the totals of
// prelock with its first read, and when it fails in a way that Update
// retries, run returns the totals it locked, for the next attempt (see
// tx.queueLocks); otherwise it returns prelock.
func (s *Store) run(ctx context.Context, update bool, prelock []storedKey, fn func(*tx) error) ([]storedKey, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		if s.closed.Load() {
			return prelock, ledger.ErrClosed
		}
		return prelock, fmt.Errorf("pgstore: connect: %w", err)
	}
	defer conn.Release()
	t := &tx{s: s, conn: conn.Conn(), update: update, prelock: prelock}
	defer t.end(ctx) // also when fn panics
	err = fn(t)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	switch {
	case err != nil:
	case t.err != nil:
		// fn went on after a failed read or write.
		err = t.err
	case update:
		if err = t.commit(ctx); err == nil && len(t.unknown) > 0 {
			s.known.learn(t.unknown, t.dropped)
		}
	}
	if err != nil && t.keyMissed && keyConflict(err) {
		err = fmt.Errorf("%w: %w", errConflict, err)
	}
	locked := prelock
	if len(t.locked) > 0 && err != nil && retryable(err) {
		// Only a retry takes them again.
		locked = slices.Collect(maps.Keys(t.locked))
	}
	return locked, err
}

// PollInterval implements [ledger.SharedStore]: other processes commit
// to the schema without this process knowing, so a ledger following the
// change feed reads the store this often while it waits (see
// [WithPollInterval]). pgstore does not use LISTEN/NOTIFY.
func (s *Store) PollInterval() time.Duration { return s.poll }

// CommitLanes implements [ledger.ConcurrentStore]: see [WithCommitLanes].
func (s *Store) CommitLanes() int { return s.lanes }

// Ping implements [ledger.Store]: it checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return ledger.ErrClosed
	}
	if err := s.pool.Ping(ctx); err != nil {
		if s.closed.Load() {
			return ledger.ErrClosed
		}
		return fmt.Errorf("pgstore: ping: %w", err)
	}
	return nil
}

// Close implements [ledger.Store]: it waits for transactions in flight
// and closes the connection pool. The data stays in the database.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ledger.ErrClosed
	}
	s.pool.Close()
	return nil
}

// Stats counts what a [Store] has done since [Open].
type Stats struct {
	// Updates counts calls of [Store.Update].
	Updates uint64
	// Retries counts the times Update ran its function again because the
	// transaction met a conflict, failed to serialize or deadlocked.
	Retries uint64
	// Deadlocks counts, among the retries, those after PostgreSQL broke
	// a deadlock (SQLSTATE 40P01), which it does only once a transaction
	// has waited its deadlock_timeout (1s by default). The ledger's
	// writes take their locks in one order, so that it stays zero while
	// only ledgers write the schema.
	Deadlocks uint64
}

// Stats returns the Store's counters.
func (s *Store) Stats() Stats {
	return Stats{Updates: s.updates.Load(), Retries: s.retries.Load(), Deadlocks: s.deadlocks.Load()}
}
