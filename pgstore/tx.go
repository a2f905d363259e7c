package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// Statements that open a transaction. They are not sent on their own but
// in front of the transaction's first statement.
const (
	beginView   = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
	beginUpdate = "BEGIN ISOLATION LEVEL READ COMMITTED"
)

// Scans read pages of firstPage rows, growing fourfold up to maxPage: a
// caller that stops after one row (the last entry, a balance as of an
// instant) reads few, and a long scan takes few round trips. Each page is
// read whole before its first row is yielded, so no result set stays open
// while the caller runs: a caller may read the transaction inside its
// loop, or interleave several scans, and stopping early leaves nothing to
// close.
const (
	firstPage = 16
	maxPage   = 1024
)

// rollbackTimeout bounds the ROLLBACK sent when a transaction ends
// without committing, within what is left of the caller's context.
const rollbackTimeout = 5 * time.Second

var (
	errTxDone     = errors.New("pgstore: transaction used after its function returned")
	errRolledBack = errors.New("pgstore: commit: the server rolled the transaction back")
	// errConflict says that a row an update read without locking it was
	// changed by a transaction that committed since, so that what the
	// update decided from it may no longer hold: Update rolls back and
	// runs its function again, as for a serialization failure.
	errConflict = errors.New("pgstore: changed by a concurrent transaction since it was read")
)

// tx is a transaction on one connection: a View's or one attempt of an
// Update's. It sends nothing until it must: BEGIN travels with the first
// read, writes wait in a buffer until the next read or the commit and
// then travel together with it, in one batch (one round trip).
type tx struct {
	s      *Store
	conn   *pgx.Conn
	update bool

	mu    sync.Mutex // serializes use of conn
	begun bool       // BEGIN has been sent
	done  bool       // fn returned: no more use from outside
	err   error      // the first failure; the transaction is lost
	// writes are the buffered inserts and updates of entries and holds,
	// in call order; totals and limitW the buffered writes of totals and
	// of limits, the last of each key. All are sent with the next read
	// or the commit, totals and limits after the others, in key order
	// (see queue).
	writes []write
	totals map[storedKey]totalRow
	limitW map[limitsKey][]any
	// changes are the changes appended, sent at the commit (see commit).
	changes pendingChanges
	// limits caches the wallets' limits TotalsOf read, and those
	// SetLimits wrote, by decoded (user, currency); guarded by mu.
	limits map[[2]string]cachedLimits

	// An update's locks (see queueLocks), guarded by mu: the totals it
	// has locked, and those of them it made a row for and has not
	// written, which the commit deletes. prelock are the totals an
	// earlier attempt of the same Update locked: the first read takes
	// them too, in order, so that a retry does not take them out of
	// order again.
	locked, placeholders map[storedKey]bool
	prelock              []storedKey
	// fresh are the totals, sorted, that the last read's lock locked with
	// values, and lockRows what it read of them (see queueLocks).
	fresh    []storedKey
	lockRows map[storedKey]lockedRow
	// unknown are the totals locked with the placeholder insert, which
	// the commit makes known but for dropped, the placeholders it
	// deletes (see knownTotals).
	unknown, dropped []storedKey
	// at holds the ctid of each total the update read, locked, and has
	// not written since: where queueTotals writes it (see
	// queries.setTotalsAt). Guarded by mu.
	at map[storedKey]pgtype.TID
	// keyMissed is set when an update looked up an idempotency key and
	// found none: a unique violation of that key is then a conflict.
	keyMissed bool
}

// storedKey is a total's key as stored: authority, currency and user,
// encoded (see encText). Transactions lock totals in its order.
type storedKey struct{ a, c, u string }

func (k storedKey) compare(o storedKey) int {
	return cmp.Or(cmp.Compare(k.a, o.a), cmp.Compare(k.c, o.c), cmp.Compare(k.u, o.u))
}

// storedKeyOf returns the stored key of k, which must be storable.
func storedKeyOf(k ledger.TotalKey) storedKey {
	return storedKey{encText(k.AuthorityID), encText(k.Currency), encText(k.UserID)}
}

// keyArrays returns keys as the three arrays the lock statements take.
func keyArrays(keys []storedKey) [3][]string {
	var out [3][]string
	for i := range out {
		out[i] = make([]string, len(keys))
	}
	for i, k := range keys {
		out[0][i], out[1][i], out[2][i] = k.a, k.c, k.u
	}
	return out
}

// queueLocks adds to b the statements that lock the totals of keys an
// update has not locked yet (and, on its first read, those of prelock),
// before the read they come with: for each in key order, a row if it
// has none (a placeholder: total 0, held 0, no last entry), then FOR
// UPDATE. The read, a statement of its own, runs on a snapshot taken
// after the locks were granted, so it reads every total as the last
// transaction that held its lock committed it, and no other transaction
// can change it until this one ends. With values, the lock also
// returns the totals it locks, as PostgreSQL documents for SELECT ...
// FOR UPDATE under READ COMMITTED: the version it locked, the latest,
// as the read would; queueLocks records their keys in t.fresh and the
// reader puts the totals in t.lockRows, so that the read need not read
// them again. It returns the readers of the statements' results. Must
// hold t.mu.
func (t *tx) queueLocks(b *pgx.Batch, keys []storedKey, values bool) []reader {
	t.fresh = nil
	if !t.update {
		return nil
	}
	if t.locked == nil {
		t.locked, t.placeholders = make(map[storedKey]bool, len(keys)+len(t.prelock)), map[storedKey]bool{}
		keys = append(slices.Clone(keys), t.prelock...)
	}
	var todo []storedKey
	for _, k := range keys {
		if !t.locked[k] {
			todo = append(todo, k)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	slices.SortFunc(todo, storedKey.compare)
	todo = slices.Compact(todo)
	for _, k := range todo {
		t.locked[k] = true
	}
	var rs []reader
	// Placeholders only for the totals the Store does not know to have a
	// row: for the others the insert would find the row and do nothing.
	if unknown := t.s.known.unknown(todo); len(unknown) > 0 {
		t.unknown = append(t.unknown, unknown...)
		ua := keyArrays(unknown)
		b.Queue(t.s.q.ensureTotals, ua[0], ua[1], ua[2])
		rs = append(rs, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return fmt.Errorf("pgstore: lock %d totals: %w", len(todo), err)
			}
			for rows.Next() {
				var k storedKey
				if err := rows.Scan(&k.a, &k.c, &k.u); err != nil {
					rows.Close()
					return fmt.Errorf("pgstore: lock %d totals: %w", len(todo), err)
				}
				t.placeholders[k] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("pgstore: lock %d totals: %w", len(todo), err)
			}
			return nil
		})
	}
	arrays := keyArrays(todo)
	if values {
		b.Queue(t.s.q.lockTotalsValues, arrays[0], arrays[1], arrays[2])
		t.fresh, t.lockRows = todo, make(map[storedKey]lockedRow, len(todo))
	} else {
		b.Queue(t.s.q.lockTotals, arrays[0], arrays[1], arrays[2])
	}
	return append(rs, func(br pgx.BatchResults) error {
		var n int64
		var err error
		if values {
			n, err = t.readLockedRows(br, todo)
		} else {
			err = br.QueryRow().Scan(&n)
		}
		if err != nil {
			return fmt.Errorf("pgstore: lock %d totals: %w", len(todo), err)
		}
		if n != int64(len(todo)) {
			// A total the Store knew to have a row has none (see
			// knownTotals): run again, with placeholders for all.
			t.s.known.forget()
			return fmt.Errorf("pgstore: lock %d totals: %d have a row: %w", len(todo), n, errConflict)
		}
		return nil
	})
}

// lockedRow is a total as the lock with values returns it, as text.
type lockedRow struct{ v, last, held string }

// readLockedRows reads the rows of the lock with values of todo into
// t.lockRows, and records where each was read (see readAt). It returns
// how many rows it read. Must hold t.mu.
func (t *tx) readLockedRows(br pgx.BatchResults, todo []storedKey) (int64, error) {
	rows, err := br.Query()
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		var o int64
		var r lockedRow
		var tid pgtype.TID
		if err := rows.Scan(&o, &r.v, &r.last, &r.held, &tid); err != nil {
			return n, err
		}
		if o < 1 || o > int64(len(todo)) {
			return n, fmt.Errorf("row for key %d of %d", o, len(todo))
		}
		k := todo[o-1]
		t.lockRows[k] = r
		t.readAt(k, tid)
		n++
	}
	return n, rows.Err()
}

// queueDrops adds to b the deletion of the placeholders an update made
// and never wrote, so that committing leaves no total where there was
// none. Must hold t.mu.
func (t *tx) queueDrops(b *pgx.Batch) []reader {
	if len(t.placeholders) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(t.placeholders), storedKey.compare)
	clear(t.placeholders)
	t.dropped = keys
	arrays := keyArrays(keys)
	b.Queue(t.s.q.dropTotals, arrays[0], arrays[1], arrays[2])
	return []reader{func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("pgstore: delete %d totals locked and not written: %w", len(keys), err)
		}
		return nil
	}}
}

type cachedLimits struct {
	l     ledger.StoredLimits
	found bool
}

// limitsKey is a wallet's key in the limits table as stored: currency
// and user, encoded, in the order their writes are sent.
type limitsKey struct{ c, u string }

func (k limitsKey) compare(o limitsKey) int {
	return cmp.Or(cmp.Compare(k.c, o.c), cmp.Compare(k.u, o.u))
}

type writeKind uint8

const (
	writeInsert writeKind = iota
	writeUse
	writeReverse
	writeInsertHold
	writeCloseHold
)

// write is a buffered insert or update of an entry or a hold.
type write struct {
	kind  writeKind
	id    string    // entry or hold ID: for errors, and the order of updates
	args  []any     // the statement's parameters (all but an entry's insert)
	entry *entryRow // an entry's insert
}

// updatesRow reports whether w changes an entry or a hold that exists: a
// use, a reversal or a close, which fail by their result rather than by
// an error.
func (w write) updatesRow() bool {
	return w.kind == writeUse || w.kind == writeReverse || w.kind == writeCloseHold
}

// table orders the rows that updates lock: entries before holds.
func (w write) table() int {
	if w.kind == writeInsertHold || w.kind == writeCloseHold {
		return 1
	}
	return 0
}

var (
	_ ledger.ReadTx = (*tx)(nil)
	_ ledger.Tx     = (*tx)(nil)
)

// usable returns why t cannot run a statement now, if it cannot. Must
// hold t.mu.
func (t *tx) usable(ctx context.Context) error {
	switch {
	case t.done:
		return errTxDone
	case t.err != nil:
		return t.err
	}
	return ctx.Err()
}

// fail records err as the transaction's failure and returns it.
func (t *tx) fail(err error) error {
	if t.err == nil {
		t.err = err
	}
	return err
}

// reader reads one statement's result out of a batch.
type reader func(pgx.BatchResults) error

// queue adds what t owes the server to b: its BEGIN and its buffered
// writes, those of entries and holds in the order of orderWrites, then
// the totals by key, then the limits by key, each written once with its
// last value. Each run of entry inserts is one statement, and so are the
// totals (see queueEntries and queueTotals). Every transaction thus
// takes its row locks in one order (entries by ID, holds by ID, then
// totals by (authority, currency, user), then limits by (currency,
// user)), so two that write the same rows queue instead of
// deadlocking. queue returns the readers of the statements' results and
// empties the buffers. Must hold t.mu.
func (t *tx) queue(b *pgx.Batch) []reader {
	var rs []reader
	if !t.begun {
		begin := beginView
		if t.update {
			begin = beginUpdate
		}
		b.Queue(begin)
		rs = append(rs, func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("pgstore: begin: %w", err)
			}
			return nil
		})
		t.begun = true
	}
	ws := orderWrites(t.writes)
	for i := 0; i < len(ws); {
		w, j := ws[i], i+1
		if w.kind != writeInsert {
			b.Queue(t.sqlOf(w.kind), w.args...)
			rs = append(rs, w.reader())
			i = j
			continue
		}
		for j < len(ws) && ws[j].kind == writeInsert {
			j++
		}
		rs = append(rs, t.queueEntries(b, ws[i:j]))
		i = j
	}
	clear(t.writes)
	t.writes = t.writes[:0]
	if len(t.totals) > 0 {
		rs = append(rs, t.queueTotals(b)...)
		clear(t.totals)
	}
	for _, k := range slices.SortedFunc(maps.Keys(t.limitW), limitsKey.compare) {
		b.Queue(t.s.q.setLimits, t.limitW[k]...)
		rs = append(rs, func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("pgstore: write limits of user %q in currency %q: %w", k.u, k.c, err)
			}
			return nil
		})
	}
	clear(t.limitW)
	return rs
}

// pending reports whether t has buffered writes to send. Must hold t.mu.
func (t *tx) pending() bool {
	return len(t.writes) > 0 || len(t.totals) > 0 || len(t.limitW) > 0
}

// sqlOf returns the statement of a write that travels alone: not an
// entry's insert (see queueEntries).
func (t *tx) sqlOf(k writeKind) string {
	switch k {
	case writeUse:
		return t.s.q.use
	case writeReverse:
		return t.s.q.reverse
	case writeInsertHold:
		return t.s.q.insertHold
	case writeCloseHold:
		return t.s.q.closeHold
	}
	panic(fmt.Sprintf("pgstore: write kind %d has no statement of its own", k))
}

func (w write) reader() reader {
	switch w.kind {
	case writeUse:
		return func(br pgx.BatchResults) error {
			var marked, found, item bool
			if err := br.QueryRow().Scan(&marked, &found, &item); err != nil {
				return fmt.Errorf("pgstore: mark item of entry %s used: %w", w.id, err)
			}
			switch {
			case !found:
				return fmt.Errorf("pgstore: mark item of entry %s used: %w", w.id, ledger.ErrNotFound)
			case !item:
				return fmt.Errorf("pgstore: mark item of entry %s used: %w", w.id, ledger.ErrNoItem)
			case !marked:
				return fmt.Errorf("pgstore: mark item of entry %s used: item used or revoked: %w", w.id, errConflict)
			}
			return nil
		}
	case writeReverse:
		return func(br pgx.BatchResults) error {
			var marked, found bool
			if err := br.QueryRow().Scan(&marked, &found); err != nil {
				return fmt.Errorf("pgstore: mark entry %s reversed: %w", w.id, err)
			}
			switch {
			case !found:
				return fmt.Errorf("pgstore: mark entry %s reversed: %w", w.id, ledger.ErrNotFound)
			case !marked:
				return fmt.Errorf("pgstore: mark entry %s reversed: reversed, or its item used: %w", w.id, errConflict)
			}
			return nil
		}
	case writeInsertHold:
		return func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("pgstore: insert hold %s: %w", w.id, err)
			}
			return nil
		}
	case writeCloseHold:
		return func(br pgx.BatchResults) error {
			var closed, found bool
			if err := br.QueryRow().Scan(&closed, &found); err != nil {
				return fmt.Errorf("pgstore: close hold %s: %w", w.id, err)
			}
			switch {
			case !found:
				return fmt.Errorf("pgstore: close hold %s: %w", w.id, ledger.ErrNotFound)
			case !closed:
				return fmt.Errorf("pgstore: close hold %s: closed already: %w", w.id, errConflict)
			}
			return nil
		}
	}
	panic(fmt.Sprintf("pgstore: write kind %d has no statement of its own", w.kind))
}

// orderWrites returns the writes of entries and holds in the order they
// are sent, sorting ws in place. Entries and holds are inserted in call
// order, and item uses, reversal marks and hold closes keep their place
// relative to the inserts (one may name a row inserted just before), but
// a run of consecutive ones is sorted, entries by ID before holds by ID.
// Uses and reversal marks commute with each other (they set different
// columns), closes with both (another table), so the result is the
// same, and the rows are locked in one order (see queue).
func orderWrites(ws []write) []write {
	for i := 0; i < len(ws); i++ {
		j := i
		for j < len(ws) && ws[j].updatesRow() {
			j++
		}
		if j-i > 1 {
			slices.SortStableFunc(ws[i:j], func(a, b write) int {
				return cmp.Or(cmp.Compare(a.table(), b.table()), cmp.Compare(a.id, b.id))
			})
		}
		i = j
	}
	return ws
}

// read runs one query and calls each for every row, after sending what t
// owes the server in the same round trip. op names the query in errors.
func (t *tx) read(ctx context.Context, op, sql string, args []any, each func(pgx.Rows) error) error {
	return t.readLocking(ctx, op, nil, sql, args, each)
}

// readLocking is read that, in an update, first locks the totals of
// lock, in the same round trip (see queueLocks).
func (t *tx) readLocking(ctx context.Context, op string, lock []storedKey, sql string, args []any, each func(pgx.Rows) error) error {
	return t.lockAndRead(ctx, op, lock, false, sql, func() []any { return args }, each)
}

// lockAndRead is readLocking whose lock, with values, also returns the
// totals it locks (see queueLocks), and whose read's arguments args
// returns once the lock is queued. Must not hold t.mu.
func (t *tx) lockAndRead(ctx context.Context, op string, lock []storedKey, values bool, sql string, argsOf func() []any, each func(pgx.Rows) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(ctx); err != nil {
		return err
	}
	var (
		rows  pgx.Rows
		br    pgx.BatchResults
		err   error
		locks = &pgx.Batch{}
		lrs   = t.queueLocks(locks, lock, values)
		args  = argsOf()
	)
	if t.begun && !t.pending() && len(lrs) == 0 {
		rows, err = t.conn.Query(ctx, sql, args...)
		if err != nil {
			return t.fail(fmt.Errorf("pgstore: %s: %w", op, err))
		}
	} else {
		b := &pgx.Batch{}
		rs := t.queue(b)
		b.QueuedQueries = append(b.QueuedQueries, locks.QueuedQueries...)
		rs = append(rs, lrs...)
		b.Queue(sql, args...)
		br = t.conn.SendBatch(ctx, b)
		for _, r := range rs {
			if err := r(br); err != nil {
				_ = br.Close()
				return t.fail(err)
			}
		}
		rows, err = br.Query()
		if err != nil {
			_ = br.Close()
			return t.fail(fmt.Errorf("pgstore: %s: %w", op, err))
		}
	}
	for rows.Next() {
		if err = each(rows); err != nil {
			break
		}
	}
	rows.Close()
	if err == nil {
		err = rows.Err()
	}
	if br != nil {
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return t.fail(fmt.Errorf("pgstore: %s: %w", op, err))
	}
	return nil
}

// commit sends the buffered writes and COMMIT, in one round trip when it
// can. A batch is one pipeline: when a statement fails, the server skips
// the rest, COMMIT included, so an insert's unique violation can share
// the round trip with COMMIT. An item use, a reversal mark or a hold's
// close cannot: it fails by its result, not by an error, so the writes
// go first, and COMMIT waits for their results. A transaction that
// appended changes ends with the schema's change lock, the changes
// numbered under it, and COMMIT, always in one round trip, after every
// other write has been sent: so the lock is held for that round trip
// and no longer, and its holder waits for no row lock (see the package
// documentation). Once COMMIT is sent, a failure that is not the
// server's refusal leaves the outcome unknown (see commitFailed). Must
// hold t.mu.
func (t *tx) commit(ctx context.Context) error {
	if !t.begun && !t.pending() && t.changes.len() == 0 {
		return nil // nothing was read or written: there is no transaction
	}
	if slices.ContainsFunc(t.writes, write.updatesRow) {
		// The writes alone, their results read before COMMIT is sent.
		b := &pgx.Batch{}
		rs := t.queue(b)
		br := t.conn.SendBatch(ctx, b)
		for _, r := range rs {
			if err := r(br); err != nil {
				_ = br.Close()
				return t.fail(err)
			}
		}
		if err := br.Close(); err != nil {
			return t.fail(fmt.Errorf("pgstore: commit: %w", err))
		}
	}
	if !t.pending() && t.changes.len() == 0 && len(t.placeholders) == 0 {
		ct, err := t.conn.Exec(ctx, "COMMIT")
		if err := commitResult(ct.String(), err); err != nil {
			return t.fail(commitFailed(err))
		}
		t.begun = false
		return nil
	}
	b := &pgx.Batch{}
	rs := t.queue(b)
	rs = append(rs, t.queueDrops(b)...)
	if t.changes.len() > 0 {
		rs = append(rs, t.queueChanges(b)...)
	}
	committed := false
	b.Queue("COMMIT")
	rs = append(rs, func(br pgx.BatchResults) error {
		ct, err := br.Exec()
		if err = commitResult(ct.String(), err); err == nil {
			committed = true
		}
		return err
	})
	br := t.conn.SendBatch(ctx, b)
	for _, r := range rs {
		if err := r(br); err != nil {
			_ = br.Close()
			return t.fail(commitFailed(err))
		}
	}
	if err := br.Close(); err != nil && !committed {
		return t.fail(fmt.Errorf("pgstore: commit: %w", err))
	}
	// Committed: the server said so. A failure to read what follows its
	// answer concerns the connection only, which the pool drops if it is
	// broken.
	t.begun = false
	return nil
}

func commitResult(tag string, err error) error {
	switch {
	case err != nil:
		return fmt.Errorf("pgstore: commit: %w", err)
	case tag != "COMMIT":
		// COMMIT of a failed transaction answers ROLLBACK.
		return errRolledBack
	}
	return nil
}

// commitFailed classifies err, a failure of a round trip that carried
// COMMIT. The transaction was certainly not committed when nothing was
// sent (the context had ended, say), when the server answered ROLLBACK,
// or when it answered with an error of severity ERROR, which rolls the
// transaction back and leaves the session open: a serialization failure
// (40001) or a deadlock (40P01), which Update retries, or a unique
// violation. Anything else, a lost connection or a context that ended
// while the server had COMMIT, may have come after the server committed:
// the error then matches [ledger.ErrUnknownOutcome] as well as its
// cause. A FATAL error is in that class too (pg_terminate_backend's
// 57P01 can arrive after the commit record is written).
func commitFailed(err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, errRolledBack), pgconn.SafeToRetry(err):
		return err
	case errors.As(err, &pe) && pe.Severity == "ERROR":
		return err
	}
	return fmt.Errorf("%w: %w", ledger.ErrUnknownOutcome, err)
}

// end marks t finished and rolls back what is left open. If ctx has
// ended, or the ROLLBACK fails, it closes the connection instead, which
// makes the server roll back: a server that stopped answering then
// costs no wait. The pool drops a closed connection, and one that comes
// back inside a transaction.
func (t *tx) end(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	t.writes, t.totals, t.limitW = nil, nil, nil
	t.changes = pendingChanges{}
	if !t.begun || t.conn.IsClosed() {
		return
	}
	t.begun = false
	if ctx.Err() != nil {
		_ = t.conn.Close(ctx) // ctx has ended: sends nothing it must wait for
		return
	}
	ctx, cancel := context.WithTimeout(ctx, rollbackTimeout)
	defer cancel()
	if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = t.conn.Close(ctx)
	}
}

// Entry implements [ledger.ReadTx].
func (t *tx) Entry(ctx context.Context, id string) (ledger.Record, error) {
	if !storable(id) {
		return ledger.Record{}, t.check(ctx, ledger.ErrNotFound)
	}
	return t.one(ctx, "read entry "+id, t.s.q.entry, encText(id))
}

// EntryByIdempotencyKey implements [ledger.ReadTx].
func (t *tx) EntryByIdempotencyKey(ctx context.Context, authorityID, key string) (ledger.Record, error) {
	if key == "" || !storable(authorityID) || !storable(key) {
		return ledger.Record{}, t.check(ctx, ledger.ErrNotFound)
	}
	r, err := t.one(ctx, "read idempotency key", t.s.q.entryByKey, encText(authorityID), encText(key))
	if errors.Is(err, ledger.ErrNotFound) {
		t.missedKey()
	}
	return r, err
}

// missedKey records that an update looked up an idempotency key and
// found none (see keyConflict).
func (t *tx) missedKey() {
	t.mu.Lock()
	t.keyMissed = t.keyMissed || t.update
	t.mu.Unlock()
}

// keyConflict reports whether err, the failure of an update that looked
// up an idempotency key and found none, is a unique violation of an
// idempotency key: another transaction inserted the key after the
// lookup and committed (a unique violation waits for the other
// inserter's outcome), so that the update's decision to insert it is
// stale, a conflict that running it again resolves (the lookup then
// finds the key). PostgreSQL's SERIALIZABLE reports such a violation as
// a serialization failure for the same reason.
func keyConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" &&
		(pe.ConstraintName == "entries_idempotency_key" || pe.ConstraintName == "holds_idempotency_key")
}

// check returns why t cannot be used, or else miss: a lookup that needs
// no query still honours the context and the transaction's state.
func (t *tx) check(ctx context.Context, miss error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(ctx); err != nil {
		return err
	}
	return miss
}

func (t *tx) one(ctx context.Context, op, sql string, args ...any) (ledger.Record, error) {
	return readOne(ctx, t, op, sql, args, scanRecord)
}

// readOne reads the one row sql selects with scan, or fails with
// ledger.ErrNotFound if it selects none.
func readOne[T any](ctx context.Context, t *tx, op, sql string, args []any, scan func(pgx.Rows, *T) error) (T, error) {
	var v T
	found := false
	err := t.read(ctx, op, sql, args, func(rows pgx.Rows) error {
		found = true
		return scan(rows, &v)
	})
	switch {
	case err != nil:
		var zero T
		return zero, err
	case !found:
		var zero T
		return zero, ledger.ErrNotFound
	}
	return v, nil
}

// scanRecord reads a row of recordColumns.
func scanRecord(rows pgx.Rows, r *ledger.Record) error {
	var (
		id, auth, user, amount, reason, balance, authBalance string
		createdOn                                            int64
		currency                                             string
		itemName, key, usedBy, useKey, meta                  *string
		transfer, reverses, reversedBy, holdID               *string
		itemUsed, revoked                                    *bool
		usedOn                                               *int64
		data                                                 []byte
	)
	if err := rows.Scan(&id, &auth, &user, &createdOn, &amount, &reason, &itemName, &itemUsed, &data, &balance, &authBalance, &key,
		&usedOn, &usedBy, &useKey, &currency, &meta, &transfer, &reverses, &reversedBy, &revoked, &holdID); err != nil {
		return err
	}
	var errs []error
	text := func(s string) string {
		d, err := decText(s)
		errs = append(errs, err)
		return d
	}
	num := func(s string) decimal.Decimal {
		d, err := decDecimal(s)
		errs = append(errs, err)
		return d
	}
	opt := func(s *string) string {
		if s == nil {
			return ""
		}
		return text(*s)
	}
	*r = ledger.Record{
		Entry: ledger.Entry{
			ID:          text(id),
			AuthorityID: text(auth),
			UserID:      text(user),
			CreatedOn:   unixTime(createdOn),
			Amount:      num(amount),
			Reason:      text(reason),
			Balance:     num(balance),
			Currency:    text(currency),
			TransferID:  opt(transfer),
			Reverses:    opt(reverses),
			ReversedBy:  opt(reversedBy),
			HoldID:      opt(holdID),
		},
		AuthorityBalance: num(authBalance),
	}
	if meta != nil {
		m, err := decMetadata(*meta)
		errs = append(errs, err)
		r.Metadata = m
	}
	if itemName != nil {
		r.Item = &ledger.Item{Name: text(*itemName), Used: itemUsed != nil && *itemUsed, Data: data, Revoked: revoked != nil && *revoked}
		if usedOn != nil {
			r.Item.UsedOn = unixTime(*usedOn)
		}
		if usedBy != nil {
			r.Item.UsedBy = text(*usedBy)
		}
	}
	if useKey != nil {
		r.UseIdempotencyKey = text(*useKey)
	}
	if key != nil {
		r.IdempotencyKey = text(*key)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("entry %q: %w", id, err)
	}
	return nil
}

// Entries implements [ledger.ReadTx]. It reads in pages (see firstPage).
func (t *tx) Entries(ctx context.Context, sc ledger.Scan) iter.Seq2[ledger.Record, error] {
	return func(yield func(ledger.Record, error) bool) {
		var k scanKey
		var args []any
		if sc.AuthorityID != "" {
			if !storable(sc.AuthorityID) {
				return // nothing stored can match
			}
			k |= scanAuthority
			args = append(args, encText(sc.AuthorityID))
		}
		if sc.UserID != "" {
			if !storable(sc.UserID) {
				return
			}
			k |= scanUser
			args = append(args, encText(sc.UserID))
		}
		if sc.InCurrency {
			if !storable(sc.Currency) {
				return
			}
			k |= scanCurrency
			args = append(args, encText(sc.Currency))
		}
		if sc.ItemsOnly {
			k |= scanItems
		}
		if sc.Reverse {
			k |= scanReverse
		}
		if !storable(sc.Start) || !storable(sc.End) {
			yield(ledger.Record{}, fmt.Errorf("pgstore: scan entries: bound %q or %q is not valid UTF-8", sc.Start, sc.End))
			return
		}
		fixed := len(args)
		start, end := encText(sc.Start), encText(sc.End)
		if sc.Start != "" {
			k |= scanStart
		}
		if sc.End != "" {
			k |= scanEnd
		}
		read := func(limit int, last *ledger.Record) ([]ledger.Record, error) {
			if last != nil {
				// The next page starts after the last row read.
				if id := encText(last.ID); sc.Reverse {
					k, end = k|scanEnd, id
				} else {
					k, start = k&^scanStart|scanAfter, id
				}
			}
			args = args[:fixed]
			if k&(scanStart|scanAfter) != 0 {
				args = append(args, start)
			}
			if k&scanEnd != 0 {
				args = append(args, end)
			}
			args = append(args, limit)
			var page []ledger.Record
			err := t.read(ctx, "scan entries", t.s.q.scans[k], args, func(rows pgx.Rows) error {
				var r ledger.Record
				if err := scanRecord(rows, &r); err != nil {
					return err
				}
				page = append(page, r)
				return nil
			})
			return page, err
		}
		for r, err := range paged(read) {
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// paged yields the rows of a query read in pages: read fetches at most
// limit rows following last (nil for the first page), each page whole
// before any of its rows is yielded, pages growing from firstPage to
// maxPage. It stops after yielding an error.
func paged[T any](read func(limit int, last *T) ([]T, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var last *T
		for limit := firstPage; ; limit = min(4*limit, maxPage) {
			page, err := read(limit, last)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, r := range page {
				if !yield(r, nil) {
					return
				}
			}
			if len(page) < limit {
				return
			}
			last = &page[len(page)-1]
		}
	}
}

// Total implements [ledger.ReadTx].
func (t *tx) Total(ctx context.Context, k ledger.TotalKey) (ledger.Total, bool, error) {
	if !storable(k.AuthorityID) || !storable(k.UserID) || !storable(k.Currency) {
		return ledger.Total{}, false, t.check(ctx, nil)
	}
	var total ledger.Total
	found := false
	sk := storedKeyOf(k)
	args := []any{sk.a, sk.c, sk.u}
	err := t.readLocking(ctx, "read total", []storedKey{sk}, t.s.q.total, args, func(rows pgx.Rows) error {
		var v, last, held string
		var tid pgtype.TID
		if err := rows.Scan(&v, &last, &held, &tid); err != nil {
			return err
		}
		t.readAt(sk, tid)
		if t.placeholders[sk] {
			return nil // only the lock's placeholder: no total
		}
		var err error
		total, err = decTotal(v, last, held)
		found = true
		return err
	})
	if err != nil {
		return ledger.Total{}, false, fmt.Errorf("pgstore: read total of user %q in currency %q for authority %q: %w", k.UserID, k.Currency, k.AuthorityID, err)
	}
	return total, found, nil
}

// readAt records where an update read the total of k, which it has
// locked: the row it writes, unless it writes k before it reads k again
// (see queries.setTotalsAt). A View writes nothing. Must hold t.mu.
func (t *tx) readAt(k storedKey, tid pgtype.TID) {
	if !t.update || !tid.Valid || !t.locked[k] {
		return
	}
	if t.at == nil {
		t.at = make(map[storedKey]pgtype.TID, len(t.locked))
	}
	t.at[k] = tid
}

// decTotal decodes a total read as text.
func decTotal(v, last, held string) (ledger.Total, error) {
	d, err := decDecimal(v)
	if err != nil {
		return ledger.Total{}, err
	}
	l, err := decText(last)
	if err != nil {
		return ledger.Total{}, err
	}
	h, err := decDecimal(held)
	if err != nil {
		return ledger.Total{}, err
	}
	return ledger.Total{Value: d, LastEntryID: l, Held: h}, nil
}

// TotalsOf implements [ledger.TotalsPrefetcher]: one round trip for the
// totals of a whole group commit. In an update it first locks them all,
// in key order (see queueLocks), in the same round trip.
func (t *tx) TotalsOf(ctx context.Context, keys []ledger.TotalKey) (map[ledger.TotalKey]ledger.Total, error) {
	n := len(keys)
	cols := make([]string, 3*n) // one allocation for the three arrays
	auths, curs, users := cols[:0:n], cols[n:n:2*n], cols[2*n:2*n:3*n]
	// The storable keys, in the order of the arrays: a row names its key
	// by its ordinality.
	asked, lock := make([]ledger.TotalKey, 0, n), make([]storedKey, 0, n)
	wallets := 0 // keys over all authorities, whose limits come along
	for _, k := range keys {
		if !storable(k.AuthorityID) || !storable(k.UserID) || !storable(k.Currency) {
			continue // cannot be stored, so is not
		}
		if k.AuthorityID == "" {
			wallets++
		}
		sk := storedKeyOf(k)
		auths, curs, users = append(auths, sk.a), append(curs, sk.c), append(users, sk.u)
		asked, lock = append(asked, k), append(lock, sk)
	}
	out := make(map[ledger.TotalKey]ledger.Total, len(asked))
	if len(asked) == 0 {
		return out, t.check(ctx, nil)
	}
	cache := make(map[[2]string]cachedLimits, wallets)
	// need says which totals the read reads: those the lock locks with
	// values (see queueLocks) it reads only for their limits.
	need := make([]bool, len(asked))
	args := func() []any {
		for i, sk := range lock {
			_, fresh := slices.BinarySearchFunc(t.fresh, sk, storedKey.compare)
			need[i] = !fresh
		}
		return []any{auths, curs, users, need}
	}
	err := t.lockAndRead(ctx, "read totals", lock, true, t.s.q.totalsOf, args, func(rows pgx.Rows) error {
		var o int64
		var v, last, held pgtype.Text // values, not pointers: fewer allocations
		var tid pgtype.TID
		var hasLimits bool
		var floor, capV, by *string
		var on *int64
		if err := rows.Scan(&o, &v, &last, &held, &tid, &hasLimits, &floor, &capV, &by, &on); err != nil {
			return err
		}
		if o < 1 || o > int64(len(asked)) {
			return fmt.Errorf("row for key %d of %d", o, len(asked))
		}
		k, sk := asked[o-1], lock[o-1]
		if !need[o-1] {
			r, ok := t.lockRows[sk]
			if !ok {
				return fmt.Errorf("key %d of %d: locked without its total", o, len(asked))
			}
			v, last, held = pgtype.Text{String: r.v, Valid: true}, pgtype.Text{String: r.last, Valid: true}, pgtype.Text{String: r.held, Valid: true}
		} else {
			t.readAt(sk, tid)
		}
		if k.AuthorityID == "" {
			c := cachedLimits{found: hasLimits}
			if hasLimits {
				l, err := decLimits(sk.u, sk.c, *floor, capV, by, on)
				if err != nil {
					return err
				}
				c.l = l
			}
			cache[[2]string{k.UserID, k.Currency}] = c
		}
		if !v.Valid || !last.Valid || !held.Valid || t.placeholders[sk] {
			return nil // no total, or only the lock's placeholder
		}
		total, err := decTotal(v.String, last.String, held.String)
		if err != nil {
			return fmt.Errorf("pgstore: read total of user %q in currency %q for authority %q: %w", k.UserID, k.Currency, k.AuthorityID, err)
		}
		out[k] = total
		return nil
	})
	t.mu.Lock()
	t.fresh, t.lockRows = nil, nil
	if err == nil {
		if t.limits == nil {
			t.limits = cache
		} else {
			maps.Copy(t.limits, cache)
		}
	}
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return out, nil
}

var _ ledger.TotalsPrefetcher = (*tx)(nil)

// TotalGroups implements [ledger.ReadTx]: one statement, an index probe
// per group (see queries.totalGroups).
func (t *tx) TotalGroups(ctx context.Context) iter.Seq2[ledger.TotalGroup, error] {
	return func(yield func(ledger.TotalGroup, error) bool) {
		var gs []ledger.TotalGroup
		err := t.read(ctx, "read total groups", t.s.q.totalGroups, nil, func(rows pgx.Rows) error {
			var a, c string
			if err := rows.Scan(&a, &c); err != nil {
				return err
			}
			da, err := decText(a)
			if err != nil {
				return fmt.Errorf("authority %q: %w", a, err)
			}
			dc, err := decText(c)
			if err != nil {
				return fmt.Errorf("currency %q: %w", c, err)
			}
			gs = append(gs, ledger.TotalGroup{AuthorityID: da, Currency: dc})
			return nil
		})
		if err != nil {
			yield(ledger.TotalGroup{}, err)
			return
		}
		for _, g := range gs {
			if !yield(g, nil) {
				return
			}
		}
	}
}

// Totals implements [ledger.ReadTx]. It reads in pages (see firstPage).
func (t *tx) Totals(ctx context.Context, authorityID, currency, afterUserID string) iter.Seq2[ledger.UserTotal, error] {
	return func(yield func(ledger.UserTotal, error) bool) {
		if !storable(authorityID) || !storable(currency) {
			if err := t.check(ctx, nil); err != nil {
				yield(ledger.UserTotal{}, err)
			}
			return
		}
		if !storable(afterUserID) {
			yield(ledger.UserTotal{}, fmt.Errorf("pgstore: read totals: user bound %q is not valid UTF-8", afterUserID))
			return
		}
		a, c, after := encText(authorityID), encText(currency), encText(afterUserID)
		q := t.s.q.totals[1]
		if afterUserID == "" {
			q = t.s.q.totals[0] // every user, "" included
		}
		read := func(limit int, last *ledger.UserTotal) ([]ledger.UserTotal, error) {
			if last != nil {
				q, after = t.s.q.totals[1], encText(last.UserID)
			}
			var page []ledger.UserTotal
			err := t.read(ctx, "read totals", q, []any{a, c, after, limit}, func(rows pgx.Rows) error {
				var u, v, last, held string
				if err := rows.Scan(&u, &v, &last, &held); err != nil {
					return err
				}
				user, err := decText(u)
				if err != nil {
					return fmt.Errorf("user %q: %w", u, err)
				}
				total, err := decTotal(v, last, held)
				if err != nil {
					return fmt.Errorf("user %q: %w", u, err)
				}
				page = append(page, ledger.UserTotal{UserID: user, Total: total})
				return nil
			})
			return page, err
		}
		for r, err := range paged(read) {
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// UserTotals implements [ledger.ReadTx]. It reads in pages (see
// firstPage), through the partial index totals_user.
func (t *tx) UserTotals(ctx context.Context, userID string) iter.Seq2[ledger.CurrencyTotal, error] {
	return func(yield func(ledger.CurrencyTotal, error) bool) {
		if !storable(userID) {
			if err := t.check(ctx, nil); err != nil {
				yield(ledger.CurrencyTotal{}, err)
			}
			return
		}
		u, q, after := encText(userID), t.s.q.userTotals[0], "" // every currency, "" included
		read := func(limit int, last *ledger.CurrencyTotal) ([]ledger.CurrencyTotal, error) {
			if last != nil {
				q, after = t.s.q.userTotals[1], encText(last.Currency)
			}
			var page []ledger.CurrencyTotal
			err := t.read(ctx, "read user totals", q, []any{u, after, limit}, func(rows pgx.Rows) error {
				var c, v, last, held string
				if err := rows.Scan(&c, &v, &last, &held); err != nil {
					return err
				}
				cur, err := decText(c)
				if err != nil {
					return fmt.Errorf("currency %q: %w", c, err)
				}
				total, err := decTotal(v, last, held)
				if err != nil {
					return fmt.Errorf("currency %q: %w", c, err)
				}
				page = append(page, ledger.CurrencyTotal{Currency: cur, Total: total})
				return nil
			})
			return page, err
		}
		for r, err := range paged(read) {
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// buffer adds a write to send with the next read or the commit.
func (t *tx) buffer(ctx context.Context, w write) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(ctx); err != nil {
		return err
	}
	t.writes = append(t.writes, w)
	return nil
}

// InsertEntry implements [ledger.Tx]. The insert is sent with the next
// read or the commit; a duplicate ID or idempotency key then fails the
// transaction, and Update returns the unique violation.
func (t *tx) InsertEntry(ctx context.Context, r ledger.Record) error {
	var itemName, usedBy string
	if r.Item != nil {
		itemName, usedBy = r.Item.Name, r.Item.UsedBy
	}
	for _, s := range [...]string{r.ID, r.AuthorityID, r.UserID, r.Reason, r.IdempotencyKey, r.UseIdempotencyKey,
		r.Currency, r.TransferID, r.Reverses, r.ReversedBy, r.HoldID, itemName, usedBy} {
		if !storable(s) {
			return fmt.Errorf("pgstore: insert entry %q: text %q is not valid UTF-8", r.ID, s)
		}
	}
	meta, err := encMetadata(r.Metadata)
	if err != nil {
		return fmt.Errorf("pgstore: insert entry %q: %w", r.ID, err)
	}
	e := &entryRow{
		id: encText(r.ID), authority: encText(r.AuthorityID), user: encText(r.UserID), createdOn: r.CreatedOn.UnixNano(),
		amount: encDecimal(r.Amount), reason: encText(r.Reason),
		balance: encDecimal(r.Balance), authorityBalance: encDecimal(r.AuthorityBalance), key: ptrText(r.IdempotencyKey),
		currency: encText(r.Currency), metadata: meta,
		transfer: ptrText(r.TransferID), reverses: ptrText(r.Reverses), reversedBy: ptrText(r.ReversedBy), holdID: ptrText(r.HoldID),
	}
	if it := r.Item; it != nil {
		name, used := encText(it.Name), it.Used
		e.itemName, e.itemUsed = &name, &used
		e.itemData = slices.Clone(it.Data) // the caller may reuse its slice
		if it.Used {
			if !it.UsedOn.IsZero() {
				on := it.UsedOn.UnixNano()
				e.usedOn = &on
			}
			e.usedBy, e.useKey = ptrText(it.UsedBy), ptrText(r.UseIdempotencyKey)
		}
		if it.Revoked {
			revoked := true
			e.revoked = &revoked
		}
	}
	return t.buffer(ctx, write{kind: writeInsert, id: r.ID, entry: e})
}

// ptrText returns the stored form of s, or nil (NULL) for "".
func ptrText(s string) *string {
	if s == "" {
		return nil
	}
	e := encText(s)
	return &e
}

// optText returns the stored form of s, or NULL for "".
func optText(s string) any {
	if s == "" {
		return nil
	}
	return encText(s)
}

// useArgs returns the columns item_used_on, item_used_by and
// use_idempotency_key of u: NULL for the zero time and for "".
func useArgs(u ledger.ItemUse) [3]any {
	var out [3]any
	if !u.At.IsZero() {
		out[0] = u.At.UnixNano()
	}
	if u.AuthorityID != "" {
		out[1] = encText(u.AuthorityID)
	}
	if u.IdempotencyKey != "" {
		out[2] = encText(u.IdempotencyKey)
	}
	return out
}

// SetItemUsed implements [ledger.Tx]. The update is sent with the next
// read or the commit; a missing entry or item then fails the transaction
// with [ledger.ErrNotFound] or [ledger.ErrNoItem].
func (t *tx) SetItemUsed(ctx context.Context, id string, u ledger.ItemUse) error {
	if !storable(id) {
		return t.check(ctx, ledger.ErrNotFound)
	}
	if !storable(u.AuthorityID) || !storable(u.IdempotencyKey) {
		return fmt.Errorf("pgstore: mark item of entry %s used: text is not valid UTF-8", id)
	}
	use := useArgs(u)
	return t.buffer(ctx, write{kind: writeUse, id: id, args: []any{encText(id), use[0], use[1], use[2]}})
}

// SetReversed implements [ledger.Tx]. The update is sent with the next
// read or the commit; a missing entry then fails the transaction with
// [ledger.ErrNotFound]. revokeItem on an entry without an item revokes
// nothing.
func (t *tx) SetReversed(ctx context.Context, id, reversal string, revokeItem bool) error {
	if !storable(id) {
		return t.check(ctx, ledger.ErrNotFound)
	}
	if !storable(reversal) {
		return fmt.Errorf("pgstore: mark entry %s reversed: reversal %q is not valid UTF-8", id, reversal)
	}
	return t.buffer(ctx, write{kind: writeReverse, id: id, args: []any{encText(id), encText(reversal), revokeItem}})
}

// SetTotal implements [ledger.Tx]. The write is sent with the next read
// or the commit.
func (t *tx) SetTotal(ctx context.Context, k ledger.TotalKey, total ledger.Total) error {
	if !storable(k.AuthorityID) || !storable(k.UserID) || !storable(k.Currency) || !storable(total.LastEntryID) {
		return fmt.Errorf("pgstore: write total of user %q in currency %q for authority %q: not valid UTF-8", k.UserID, k.Currency, k.AuthorityID)
	}
	sk := storedKeyOf(k)
	row := totalRow{encDecimal(total.Value), encText(total.LastEntryID), encDecimal(total.Held)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(ctx); err != nil {
		return err
	}
	if t.totals == nil {
		t.totals = make(map[storedKey]totalRow, len(t.locked)) // an update writes most totals it locked
	}
	t.totals[sk] = row         // a later write of the key replaces this one
	delete(t.placeholders, sk) // written: no longer a placeholder
	return nil
}
