package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit.
//
// Every write is a request handed to the committer. A caller that finds
// no commit in flight becomes the leader: it takes its own request and
// whatever else is queued (up to maxBatch entries), applies them in one
// store transaction, hands every follower its result, and passes the lead
// to the first request that queued meanwhile. A lone caller therefore
// commits at once on its own goroutine, and callers that arrive during a
// commit share the next one, and its sync.
//
// Each request is judged on its own inside the shared transaction: the
// batch state below keeps the transaction's writes in memory until the
// end, with a savepoint per request, so a request that fails (funds,
// conflict) leaves no trace and its neighbours are unaffected. Only a
// store failure fails the whole group.

type opKind uint8

const (
	opCreate opKind = iota
	opUse
	// opExclusive runs fn as the leader, alone: no other write of this
	// ledger runs meanwhile. Import uses it.
	opExclusive
	opTransfer // transfer
	opReverse  // authorityID, entryID, reason
	opLimits   // authorityID, limits
	opHold     // hold
	opCapture  // authorityID, entryID (the hold's ID), capture
	opRelease  // authorityID, entryID (the hold's ID)
	opSweep    // records due holds' expiry; out is empty, holds counts them
)

// request is one caller's write and, once it is done, its result.
type request struct {
	ctx     context.Context
	op      opKind
	batch   bool       // from CreateEntries: errors carry the entry index
	entries []NewEntry // opCreate
	bytes   int        // opCreate: the entries' size, as Limits.MaxBatchBytes counts it
	// opUse
	authorityID, entryID string
	use                  useConfig
	// opTransfer, opReverse, opLimits
	transfer NewTransfer
	reason   string
	limits   WalletLimits
	// opHold, opCapture, opRelease, opSweep
	hold     NewHold
	capture  Capture
	outHolds []Hold
	// opExclusive
	fn func() error

	out []Entry
	err error

	// wake receives one signal: the result is ready, or (lead set) the
	// request must lead the next commit.
	wake chan struct{}
	lead bool
	// state says who owns a request that a leader has taken: its caller,
	// waiting for the result (pending, then done), or, once the caller
	// gave up waiting (abandoned), the committer, which drops it.
	state atomic.Uint32
	// queued is true while the request waits in the queue; guarded by
	// the committer's mu.
	queued bool
}

const (
	statePending uint32 = iota
	stateDone
	stateAbandoned
)

var requestPool = sync.Pool{New: func() any { return &request{wake: make(chan struct{}, 1)} }}

func newRequest(ctx context.Context, op opKind) *request {
	r := requestPool.Get().(*request)
	r.ctx, r.op = ctx, op
	return r
}

// release returns r to the pool; r and its out slice must not be used
// afterwards.
func (r *request) release() {
	clear(r.entries)
	clear(r.out)
	clear(r.outHolds)
	*r = request{entries: r.entries[:0], out: r.out[:0], outHolds: r.outHolds[:0], wake: r.wake}
	requestPool.Put(r)
}

func (r *request) weight() int {
	switch r.op {
	case opCreate:
		return len(r.entries)
	case opTransfer, opReverse:
		return 2
	case opSweep:
		return sweepBatch
	}
	return 1
}

// finish hands r's result to its caller, unless the caller has given up.
func (r *request) finish() {
	if r.state.CompareAndSwap(statePending, stateDone) {
		r.lead = false
		r.wake <- struct{}{}
	}
}

type committer struct {
	l *Ledger

	mu    sync.Mutex
	busy  bool       // a leader is committing
	queue []*request // waiting for the next commit
	// detached counts leaders running on the leading goroutine, whose
	// callers may have given up waiting; Close waits for them, then
	// closes leads, which ends that goroutine.
	detached sync.WaitGroup
	// leads hands a leader whose caller may give up to the goroutine
	// that leads for such callers: one that lives as long as the ledger,
	// so that its stack, grown to what a commit needs, is not grown
	// again for every commit (a new goroutine's would be).
	leads     chan *request
	leadsOnce sync.Once

	// Owned by the current leader.
	ids     idGen
	group   []*request
	st      batchState
	ctx     commitContext
	running []*request // the group being committed
	// lastGroup is how many requests the last group carried; commitNanos
	// a moving average of how long its commits take (see linger).
	lastGroup   int
	commitNanos int64
	applyFn     func(Tx) error // applyGroup, bound once
}

// init makes c a committer of l whose ID generator shares mark with the
// other lanes' (nil with one lane; see [ConcurrentStore]).
func (c *committer) init(l *Ledger, mark *idMark) {
	c.l = l
	c.ids.shared = mark
	c.st.init(l, &c.ids)
	c.leads = make(chan *request)
	c.applyFn = c.applyGroup
}

// leadDetached runs r's lead on the leading goroutine, starting it the
// first time. Only one leader runs at a time, so the goroutine is idle,
// or about to be, whenever a lead is handed to it.
func (c *committer) leadDetached(r *request) {
	c.leadsOnce.Do(func() {
		go func() {
			for r := range c.leads {
				c.lead(r, true)
				c.detached.Done()
			}
		}()
	})
	c.leads <- r
}

// stop ends the leading goroutine, once no detached leader is left.
func (c *committer) stop() {
	c.detached.Wait()
	close(c.leads)
	c.ctx.close()
}

// submit runs r through a commit and returns when r's result is set, or
// when r's context ends after a leader took r into a commit. In the
// latter case submit returns an error matching [ErrUnknownOutcome] and
// the context's error, and r belongs to the committer: the caller must
// neither read nor release it. Otherwise submit returns nil and the
// caller reads r.out and r.err.
func (c *committer) submit(r *request) error {
	c.mu.Lock()
	fresh := !c.busy // and so the queue is empty
	if c.busy {
		r.queued = true
		c.queue = append(c.queue, r)
		c.mu.Unlock()
		lead, err := c.wait(r)
		if !lead || err != nil {
			return err
		}
		r.state.Store(statePending) // the lead was its result; now r waits for its own
	} else {
		c.busy = true
		c.mu.Unlock()
	}
	if r.ctx.Done() == nil || r.op == opExclusive {
		// A caller that cannot give up leads on its own goroutine, at
		// no cost; so does Import, which finishes what it starts.
		c.lead(r, false)
		return nil
	}
	if err := r.ctx.Err(); err != nil {
		// Given the lead after giving up: nothing of r was written.
		r.err = err
		c.passLead()
		return nil
	}
	if c.leadAlone(r, fresh) {
		return nil
	}
	// The leader's caller must be able to stop waiting for a commit that
	// its context no longer allows, while the commit goes on for the
	// followers: the commit runs detached.
	c.detached.Add(1)
	c.leadDetached(r)
	return c.await(r)
}

// run submits a request for one entry and returns that entry, releasing
// r.
func (c *committer) run(r *request) (Entry, error) {
	if err := c.submit(r); err != nil {
		return Entry{}, err
	}
	defer r.release()
	if r.err != nil {
		return Entry{}, r.err
	}
	return r.out[0], nil
}

// runBatch submits a request and returns a copy of its entries,
// releasing r.
func (c *committer) runBatch(r *request) ([]Entry, error) {
	if err := c.submit(r); err != nil {
		return nil, err
	}
	defer r.release()
	if r.err != nil {
		return nil, r.err
	}
	return slices.Clone(r.out), nil
}

// wait blocks until r has its result or must lead. If r's context ends
// while r is still queued, r leaves the queue with the context's error.
// If it ends once a leader has taken r into a commit, wait gives r up
// and returns an unknown-outcome error.
func (c *committer) wait(r *request) (lead bool, err error) {
	select {
	case <-r.wake:
		return r.lead, nil
	case <-r.ctx.Done():
	}
	c.mu.Lock()
	if r.queued {
		i := slices.Index(c.queue, r)
		c.queue = slices.Delete(c.queue, i, i+1)
		r.queued = false
		c.mu.Unlock()
		r.err = r.ctx.Err()
		return false, nil
	}
	c.mu.Unlock()
	if err := c.await(r); err != nil {
		return false, err
	}
	return r.lead, nil // the result, or the lead handed over as the context ended
}

// await waits for the result of r, which a leader has taken or which
// must lead (the lead is handed over at once: await takes it whatever
// the context says).
func (c *committer) await(r *request) error {
	select {
	case <-r.wake:
		return nil
	case <-r.ctx.Done():
	}
	if r.state.CompareAndSwap(statePending, stateAbandoned) {
		return fmt.Errorf("ledger: %w: %w", ErrUnknownOutcome, r.ctx.Err())
	}
	<-r.wake // the result, or the lead, is on its way
	return nil
}

// lead runs first, alone if it is exclusive and otherwise in a group
// with the writes queued behind it, and passes the lead on. A detached
// leader runs on a goroutine of its own and hands first its result as
// it does the followers'.
func (c *committer) lead(first *request, detached bool) {
	if first.op == opExclusive {
		first.err = runExclusive(first.fn)
	} else {
		c.commitGroup(first)
	}
	if detached {
		first.finish()
	}
	c.passLead()
}

// errStoreBusy is what leadAlone's update returns when the store's
// TryUpdate could not begin: nothing was called, nothing written.
var errStoreBusy = errors.New("ledger: store busy")

// leadAlone commits r alone on its caller's goroutine, whose context can
// end, when the store commits in memory ([TryUpdater]), nothing is queued
// behind r and the store can begin at once; then it passes the lead on
// and reports true. Such a commit waits on nothing, so the caller's wait
// stays bounded without the hand-off to the leading goroutine. Otherwise
// it reports false having done nothing, and r leads as usual. Requests
// that queue meanwhile make the next group, led as usual.
//
// fresh says r took the lead with no commit in flight, when the queue
// was empty: nothing is queued behind r but what queued since, which
// may wait for the next group. A request handed the lead by passLead
// looks at the queue.
func (c *committer) leadAlone(r *request, fresh bool) bool {
	tu, ok := c.l.store.(TryUpdater)
	if !ok || c.l.cfg.maxWait > 0 {
		return false
	}
	if !fresh {
		c.mu.Lock()
		alone := len(c.queue) == 0
		c.mu.Unlock()
		if !alone {
			return false
		}
	}
	group := append(c.group[:0], r)
	busy, _ := c.commit(group, tu) // sets r's result
	clear(group)
	c.group = group[:0]
	if busy {
		r.err = nil
		return false
	}
	c.passLead()
	return true
}

// passLead hands the lead to the first queued request, or ends the
// committer's turn if none is queued.
func (c *committer) passLead() {
	c.mu.Lock()
	if len(c.queue) == 0 {
		c.busy = false
		c.mu.Unlock()
		return
	}
	next := c.queue[0]
	c.queue = slices.Delete(c.queue, 0, 1)
	next.queued = false
	// The lead is next's result for now: its caller must take it, even if
	// its context has ended, or nobody leads.
	next.state.Store(stateDone)
	c.mu.Unlock()
	next.lead = true
	next.wake <- struct{}{}
}

func runExclusive(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("ledger: internal error: %v", p)
		}
	}()
	return fn()
}

// Bounds of a leader's wait for company (see linger).
const (
	maxLinger  = 100 * time.Microsecond
	minLinger  = 5 * time.Microsecond
	lingerFrom = 5 * time.Microsecond // a commit's time per request
)

// linger lets the callers of the last group, just handed their results,
// queue their next writes before a group is taken, when that group
// carried several and commits are slow (lingerFrom or more a request; a
// store in memory is faster). Without it, callers that write again at
// once split into two groups that take turns, each paying a commit (an
// fsync) for half of them. The wait ends when the queue has stopped
// growing for a quarter of it, or after an eighth of a commit's time, at
// most maxLinger. The leader yields meanwhile, so that the callers it
// waits for run.
func (c *committer) linger() {
	if c.lastGroup < 2 || c.commitNanos < int64(c.lastGroup)*int64(lingerFrom) {
		return
	}
	budget := min(time.Duration(c.commitNanos/8), maxLinger)
	if budget < minLinger {
		return
	}
	start := time.Now()
	deadline, quiet := start.Add(budget), budget/4
	c.mu.Lock()
	seen := len(c.queue)
	c.mu.Unlock()
	grew := start
	for seen+1 < c.l.cfg.maxBatch {
		runtime.Gosched()
		now := time.Now()
		c.mu.Lock()
		n := len(c.queue)
		c.mu.Unlock()
		if n > seen {
			seen, grew = n, now
		}
		if now.After(deadline) || now.Sub(grew) >= quiet {
			return
		}
	}
}

// commitGroup commits first and the writes queued behind it, up to
// maxBatch entries, Limits.MaxBatchBytes and the next exclusive request,
// and hands the followers their results.
func (c *committer) commitGroup(first *request) {
	maxBatch, maxBytes, maxWait := c.l.cfg.maxBatch, c.l.cfg.limits.MaxBatchBytes, c.l.cfg.maxWait
	if maxWait > 0 && first.weight() < maxBatch {
		time.Sleep(maxWait)
	} else if maxWait == 0 {
		c.linger()
	}
	group := append(c.group[:0], first)
	weight, bytes := first.weight(), first.bytes
	c.mu.Lock()
	n := 0
	for _, r := range c.queue {
		if r.op == opExclusive || weight+r.weight() > maxBatch || bytes+r.bytes > maxBytes {
			break
		}
		weight, bytes = weight+r.weight(), bytes+r.bytes
		r.queued = false
		group = append(group, r)
		n++
	}
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	c.mu.Unlock()

	c.lastGroup = len(group)
	began := time.Now()
	_, err := c.commit(group, nil)
	c.commitNanos += (int64(time.Since(began)) - c.commitNanos) / 8
	if err != nil && len(group) > 1 && !errors.Is(err, ErrUnknownOutcome) {
		// Nothing was written. Should one request have caused the
		// failure (input a store refuses though the ledger admitted
		// it), it must fail alone: commit each on its own.
		for i := range group {
			c.commit(group[i:i+1], nil)
		}
	}

	for _, r := range group[1:] {
		r.finish()
	}
	clear(group)
	c.group = group[:0]
}

// commit applies group in one store transaction and sets every request's
// result. It returns the store's error, which is every request's. With
// try, it begins the transaction with try's TryUpdate, and reports busy
// if the store could not begin at once (then nothing was called).
func (c *committer) commit(group []*request, try TryUpdater) (busy bool, err error) {
	ids := c.ids
	defer func() {
		c.running = nil
		if p := recover(); p != nil {
			err = fmt.Errorf("ledger: internal error: %v", p)
		}
		if err != nil {
			if !errors.Is(err, ErrUnknownOutcome) {
				c.ids = ids // no ID of the group was used
			}
			for _, r := range group {
				r.out, r.outHolds, r.err = r.out[:0], r.outHolds[:0], err
			}
		}
	}()
	// The group must commit whatever becomes of the leader's caller
	// (followers depend on it), within the commit timeout.
	timeout := c.l.cfg.commitTimeout
	ctx := &c.ctx
	now := time.Now()
	ctx.start(group[0].ctx, now, timeout)
	if c.l.cfg.realClock {
		// The clock would be read for the first entry a moment later.
		c.st.started, c.st.startedFresh = now, true
	}
	defer ctx.stop()
	st := &c.st
	c.running = group
	if try != nil {
		var ok bool
		if ok, err = try.TryUpdate(ctx, c.applyFn); !ok {
			busy, err = true, errStoreBusy
		}
	} else {
		err = c.l.store.Update(ctx, c.applyFn)
	}
	wrote := len(st.changes) > 0
	st.reset()
	st.ctx, st.tx, st.direct = nil, nil, nil // the transaction is over
	switch {
	case err == nil:
		if wrote {
			c.l.feed.notify()
		}
		return false, nil
	case ctx.Err() != nil && !errors.Is(err, ErrUnknownOutcome):
		// Whether the store got as far as committing, it cannot say.
		return busy, fmt.Errorf("ledger: store: commit: %w: took longer than the commit timeout (%v): %w", ErrUnknownOutcome, timeout, err)
	}
	return busy, storeErr("commit", err)
}

// applyGroup is the store transaction's function for the running group:
// it applies each request in turn and writes what they leave.
func (c *committer) applyGroup(tx Tx) error {
	st := &c.st
	if st.inUse {
		st.reset() // a store that runs fn again: undo the last run
	}
	st.inUse = true
	st.ctx, st.tx = &c.ctx, tx
	st.direct, _ = tx.(SavepointTx)
	if err := st.prefetch(c.running); err != nil {
		return err
	}
	for _, r := range c.running {
		r.out, r.outHolds, r.err = r.out[:0], r.outHolds[:0], nil
		if err := r.ctx.Err(); err != nil {
			r.err = err
			continue
		}
		if err := st.apply(r); err != nil {
			return err
		}
	}
	return st.flush()
}

// change records c in the feed, with the group's writes.
func (st *batchState) change(c ChangeRecord) { st.changes = append(st.changes, c) }

// storeError marks a failure of the store, as opposed to a refusal by the
// ledger's rules: it aborts the whole group.
type storeError struct {
	op  string
	err error
}

func (e *storeError) Error() string { return "ledger: store: " + e.op + ": " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func storeErr(op string, err error) error {
	var se *storeError
	if errors.As(err, &se) || errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &storeError{op: op, err: err}
}

// idemKey names an idempotency key: an authority's.
type idemKey struct{ authorityID, key string }

type totalSlot struct {
	t      Total
	exists bool // stored before this group
	dirty  bool // to be written
}

type totalUndo struct {
	key  TotalKey
	prev totalSlot
}

type savepoint struct {
	undo, inserts, uses int
	store               int // st.direct's mark
	ids                 idGen
	wallets             walletSavepoint
	holds               holdSavepoint
	changes             int
}

// pendingUse is an item use made by the group, not yet flushed.
type pendingUse struct {
	id  string
	use ItemUse
}

// batchState is one group's view of the store: totals read once and
// updated in memory, entries to insert, items to mark used. Reads fall
// through to the transaction; writes reach it only in flush. Over a
// [SavepointTx] (direct), totals and entries are read and written
// through the transaction as the requests run instead, and a refused
// request's are undone by the transaction.
type batchState struct {
	l      *Ledger
	ids    *idGen // the committer's
	ctx    context.Context
	tx     Tx
	direct SavepointTx // tx, if it is one

	totals  map[TotalKey]totalSlot
	dirty   []TotalKey // totals set by this group, in the order first set
	undo    []totalUndo
	inserts []Record
	byKey   map[idemKey]int    // (authority, idempotency key) -> index in inserts
	uses    []pendingUse       // items marked used, in order
	used    map[string]ItemUse // entry ID -> its item's pending use
	keys    []TotalKey         // prefetch's scratch
	// What prefetch read ahead, to learn which totals the requests will
	// read (see readAhead): the stored records, which the group does not
	// change in place, for the requests to find.
	ahead     map[string]Record // entry ID -> the stored entry
	aheadPair map[string]Record // entry ID -> the other entry of its transfer
	due       []HoldRecord      // the sweep's due holds at dueAt, once dueRead
	dueAt     time.Time
	dueRead   bool
	wallets   walletState    // limits and reversals (commit_wallets.go)
	holds     holdState      // holds (commit_holds.go)
	changes   []ChangeRecord // the change feed's records of the group's writes, in order
	// now is the ledger clock's reading for the request being applied,
	// read on first use: what decides whether a hold is due.
	now    time.Time
	nowSet bool
	// inUse says the state holds a group's, since the last reset.
	inUse bool
	// started is time.Now's reading as the commit started, for the
	// commit's first entry while startedFresh (see entryNow).
	started      time.Time
	startedFresh bool
}

// entryNow returns the ledger clock's reading for a new entry. On the
// real clock, the first entry of a commit takes the reading made as the
// commit started, a moment before: one clock reading fewer per commit.
func (st *batchState) entryNow() time.Time {
	if st.startedFresh {
		st.startedFresh = false
		return st.started
	}
	return st.l.cfg.clock()
}

func (st *batchState) init(l *Ledger, ids *idGen) {
	st.l, st.ids = l, ids
	st.totals = make(map[TotalKey]totalSlot)
	st.byKey = make(map[idemKey]int)
	st.used = make(map[string]ItemUse)
	st.ahead = make(map[string]Record)
	st.aheadPair = make(map[string]Record)
	st.wallets.init()
	st.holds.init()
}

func (st *batchState) reset() {
	st.inUse = false
	clear(st.totals)
	clear(st.byKey)
	clear(st.used)
	clear(st.inserts)
	clear(st.uses)
	clear(st.dirty)
	st.undo, st.inserts, st.uses, st.dirty = st.undo[:0], st.inserts[:0], st.uses[:0], st.dirty[:0]
	st.wallets.reset()
	st.holds.reset()
	clear(st.changes)
	st.changes = st.changes[:0]
	clear(st.ahead)
	clear(st.aheadPair)
	clear(st.due)
	st.due, st.dueRead = st.due[:0], false
}

func (st *batchState) savepoint() savepoint {
	sp := savepoint{undo: len(st.undo), inserts: len(st.inserts), uses: len(st.uses), ids: *st.ids,
		wallets: st.wallets.savepoint(), holds: st.holds.savepoint(), changes: len(st.changes)}
	if st.direct != nil {
		sp.store = st.direct.Savepoint()
	}
	return sp
}

func (st *batchState) rollback(sp savepoint) {
	if st.direct != nil {
		st.direct.RollbackTo(sp.store)
	}
	*st.ids = sp.ids // only committed entries move the ID clock
	st.wallets.rollback(sp.wallets)
	st.holds.rollback(sp.holds)
	clear(st.changes[sp.changes:])
	st.changes = st.changes[:sp.changes]
	for i := len(st.undo) - 1; i >= sp.undo; i-- {
		u := st.undo[i]
		st.totals[u.key] = u.prev
	}
	st.undo = st.undo[:sp.undo]
	for _, r := range st.inserts[sp.inserts:] {
		if r.IdempotencyKey != "" {
			delete(st.byKey, idemKey{r.AuthorityID, r.IdempotencyKey})
		}
	}
	clear(st.inserts[sp.inserts:])
	st.inserts = st.inserts[:sp.inserts]
	for _, u := range st.uses[sp.uses:] {
		delete(st.used, u.id)
	}
	clear(st.uses[sp.uses:])
	st.uses = st.uses[:sp.uses]
}

// apply runs one request against the group's state, setting its result.
// It returns an error only when the store fails.
func (st *batchState) apply(r *request) error {
	sp := st.savepoint()
	st.nowSet = false
	var err error
	switch r.op {
	case opCreate:
		for i, ne := range r.entries {
			var e Entry
			if e, err = st.create(ne); err != nil {
				if r.batch {
					err = &EntryError{Index: i, Err: err}
				}
				break
			}
			r.out = append(r.out, e)
		}
	case opUse:
		var e Entry
		if e, err = st.use(r.authorityID, r.entryID, r.use); err == nil {
			r.out = append(r.out, e)
		}
	case opTransfer:
		r.out, err = st.transfer(r.transfer, r.out)
	case opReverse:
		r.out, err = st.reverse(r.authorityID, r.entryID, r.reason, r.out)
	case opLimits:
		err = st.setLimits(r.authorityID, r.limits)
	case opHold:
		var h Hold
		if h, err = st.hold(r.hold); err == nil {
			r.outHolds = append(r.outHolds, h)
		}
	case opCapture:
		var e Entry
		if e, err = st.capture(r.authorityID, r.entryID, r.capture); err == nil {
			r.out = append(r.out, e)
		}
	case opRelease:
		var h Hold
		if h, err = st.release(r.authorityID, r.entryID); err == nil {
			r.outHolds = append(r.outHolds, h)
		}
	case opSweep:
		r.outHolds, err = st.sweep(r.outHolds)
	}
	if err != nil {
		st.rollback(sp)
		var se *storeError
		if errors.As(err, &se) {
			return err
		}
		r.out, r.outHolds, r.err = r.out[:0], r.outHolds[:0], err
	}
	return nil
}

// prefetch reads, in one call, every total the group's requests will
// read, when the store reads many totals more cheaply than one (see
// [TotalsPrefetcher]). On a database that locks what it reads for
// update, this read takes every lock the group's totals need, in the
// store's order: two processes' groups then never wait for each other
// in a cycle (a deadlock, which PostgreSQL breaks only after its
// deadlock_timeout, a second by default).
func (st *batchState) prefetch(group []*request) error {
	p, ok := st.tx.(TotalsPrefetcher)
	if !ok {
		return nil
	}
	keys := st.keys[:0]
	seen := make(map[TotalKey]bool)
	for _, r := range group {
		entries := r.entries
		switch r.op {
		case opTransfer:
			t := &r.transfer
			entries = []NewEntry{{AuthorityID: t.AuthorityID, UserID: t.FromUserID, Currency: t.Currency},
				{AuthorityID: t.AuthorityID, UserID: t.ToUserID, Currency: t.Currency}}
		case opHold:
			// Only the wallet's total over all authorities; reading the
			// authority's too costs nothing more in the same round trip.
			entries = []NewEntry{{AuthorityID: r.hold.AuthorityID, UserID: r.hold.UserID, Currency: r.hold.Currency}}
		case opCapture, opRelease, opReverse, opSweep:
			entries = st.readAhead(r)
		}
		for _, ne := range entries {
			for _, k := range [2]TotalKey{{"", ne.UserID, ne.Currency}, {ne.AuthorityID, ne.UserID, ne.Currency}} {
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
		}
	}
	st.keys = keys
	if len(keys) == 0 {
		return nil
	}
	got, err := p.TotalsOf(st.ctx, keys)
	if err != nil {
		return storeErr("read totals", err)
	}
	for _, k := range keys {
		t, exists := got[k]
		st.totals[k] = totalSlot{t: t, exists: exists}
	}
	return nil
}

// readAhead returns, as entries naming their totals, the wallets that
// r, a capture, release, reversal or sweep, will write, which it learns
// from the records it reads first: its hold, its entry (and the other
// entry of its transfer), or the due holds. It keeps what it read for r
// to find. A record it cannot read is left for r to report when it
// runs.
func (st *batchState) readAhead(r *request) []NewEntry {
	var out []NewEntry
	add := func(authorityID, userID, currency string) {
		out = append(out, NewEntry{AuthorityID: authorityID, UserID: userID, Currency: currency})
	}
	switch r.op {
	case opCapture, opRelease:
		if h, err := st.holdByID(r.entryID); err == nil {
			add(h.AuthorityID, h.UserID, h.Currency)
		}
	case opReverse:
		e, err := st.entry(r.entryID)
		if err != nil {
			return nil
		}
		st.ahead[e.ID] = e
		add(e.AuthorityID, e.UserID, e.Currency)
		if e.TransferID != "" {
			if p, err := st.partner(e); err == nil {
				st.aheadPair[e.ID] = p
				add(p.AuthorityID, p.UserID, p.Currency)
			}
		}
	case opSweep:
		due, _, err := st.dueHolds(st.l.cfg.clock())
		if err != nil {
			return nil
		}
		for _, h := range due {
			add(h.AuthorityID, h.UserID, h.Currency)
		}
	}
	return out
}

func (st *batchState) total(k TotalKey) (Total, error) {
	if st.direct == nil {
		if s, ok := st.totals[k]; ok {
			return s.t, nil
		}
	}
	t, exists, err := st.tx.Total(st.ctx, k)
	if err != nil {
		return Total{}, storeErr("read total", err)
	}
	if !exists {
		t = Total{}
	}
	if st.direct == nil {
		st.totals[k] = totalSlot{t: t, exists: exists}
	}
	return t, nil
}

// setTotal updates a total read by total.
func (st *batchState) setTotal(k TotalKey, t Total) error {
	if st.direct != nil {
		if err := st.direct.SetTotal(st.ctx, k, t); err != nil {
			return storeErr("write total", err)
		}
		return nil
	}
	prev := st.totals[k]
	st.undo = append(st.undo, totalUndo{k, prev})
	st.totals[k] = totalSlot{t: t, exists: prev.exists, dirty: true}
	if !prev.dirty {
		// A rollback may leave k here undirtied, or listed twice once
		// set again: flush skips the one and rewrites the other.
		st.dirty = append(st.dirty, k)
	}
	return nil
}

// insert inserts a new entry.
func (st *batchState) insert(rec Record) error {
	if st.direct != nil {
		if err := st.direct.InsertEntry(st.ctx, rec); err != nil {
			return storeErr("insert entry", err)
		}
		return nil
	}
	if rec.IdempotencyKey != "" {
		st.byKey[idemKey{rec.AuthorityID, rec.IdempotencyKey}] = len(st.inserts)
	}
	st.inserts = append(st.inserts, rec)
	return nil
}

// entry reads the entry with the given ID. An entry inserted by this
// group is not among them: its ID reaches no caller before the commit.
func (st *batchState) entry(id string) (Record, error) {
	if r, ok := st.ahead[id]; ok {
		return r, nil
	}
	r, err := st.tx.Entry(st.ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Record{}, fmt.Errorf("%w: entry %q", ErrNotFound, id)
	}
	if err != nil {
		return Record{}, storeErr("read entry", err)
	}
	return r, nil
}

// current returns r's entry with the group's pending use of its item.
func (st *batchState) current(r Record) Entry {
	e := r.Entry
	p, reversed := st.wallets.reversed[e.ID]
	if reversed {
		e.ReversedBy = p.reversal
	}
	if e.Item != nil {
		e.Item = e.Item.clone()
		e.Item.Revoked = e.Item.Revoked || p.revoke
		if u, ok := st.used[e.ID]; ok {
			e.Item.Used, e.Item.UsedOn, e.Item.UsedBy = true, u.At, u.AuthorityID
		}
	}
	return e
}

// itemUse returns the use of r's item, the group's pending one included,
// and whether it is used.
func (st *batchState) itemUse(r Record) (ItemUse, bool) {
	if u, ok := st.used[r.ID]; ok {
		return u, true
	}
	if r.Item.Used {
		return ItemUse{AuthorityID: r.Item.UsedBy, At: r.Item.UsedOn, IdempotencyKey: r.UseIdempotencyKey}, true
	}
	return ItemUse{}, false
}

func (st *batchState) create(ne NewEntry) (Entry, error) {
	if ne.IdempotencyKey != "" {
		orig, found, err := st.byIdempotencyKey(ne.AuthorityID, ne.IdempotencyKey)
		if err != nil {
			return Entry{}, err
		}
		if found {
			if orig.TransferID != "" {
				return Entry{}, &IdempotencyConflictError{AuthorityID: ne.AuthorityID, Key: ne.IdempotencyKey, EntryID: orig.ID,
					Fields: []string{"kind (the key wrote a transfer, not an entry)"}}
			}
			if diff := payloadDiff(orig, ne); len(diff) > 0 {
				return Entry{}, &IdempotencyConflictError{
					AuthorityID: ne.AuthorityID, Key: ne.IdempotencyKey, EntryID: orig.ID, Fields: diff,
				}
			}
			return st.current(orig), nil
		}
	}

	return st.write(ne, entryLinks{})
}

// entryLinks are what a transfer, a reversal or a capture adds to the
// entries it writes.
type entryLinks struct {
	transferID, reverses string
	// namesTransfer says the entry is the first of a transfer, whose ID
	// (the entry's own) names the transfer: transferID is ignored.
	namesTransfer bool
	// holdID is a capture's hold: its value was reserved, so the entry
	// is not checked against the floor.
	holdID string
}

// write writes a new entry, if the wallet's limits allow it.
func (st *batchState) write(ne NewEntry, links entryLinks) (Entry, error) {
	userKey, pairKey := TotalKey{"", ne.UserID, ne.Currency}, TotalKey{ne.AuthorityID, ne.UserID, ne.Currency}
	user, err := st.total(userKey)
	if err != nil {
		return Entry{}, err
	}
	// The new ID must sort after the wallet's last entry, even one that
	// another process, with another clock, wrote to a shared store.
	st.ids.observe(user.LastEntryID)
	balance := user.Value
	newBalance := add(balance, ne.Amount)
	if links.holdID == "" {
		if err := st.checkLimits(ne, user, newBalance); err != nil {
			return Entry{}, err
		}
	}
	if !st.l.fits(newBalance) {
		return Entry{}, invalid("Amount", "would take user %q's total to %s, beyond the ledger's precision", ne.UserID, newBalance)
	}
	authTotal, err := st.total(pairKey)
	if err != nil {
		return Entry{}, err
	}
	newAuthTotal := add(authTotal.Value, ne.Amount)
	if !st.l.fits(newAuthTotal) {
		return Entry{}, invalid("Amount", "would take authority %q's total for user %q to %s, beyond the ledger's precision",
			ne.AuthorityID, ne.UserID, newAuthTotal)
	}

	id, createdOn := st.ids.next(st.entryNow())
	if links.namesTransfer {
		links.transferID = id
	}
	rec := Record{
		Entry: Entry{
			ID:          id,
			AuthorityID: ne.AuthorityID,
			UserID:      ne.UserID,
			CreatedOn:   createdOn,
			Amount:      ne.Amount,
			Reason:      ne.Reason,
			Item:        ne.Item,
			Balance:     newBalance,
			Currency:    ne.Currency,
			Metadata:    ne.Metadata,
			TransferID:  links.transferID,
			Reverses:    links.reverses,
			HoldID:      links.holdID,
		},
		IdempotencyKey:   ne.IdempotencyKey,
		AuthorityBalance: newAuthTotal,
	}
	if err := st.setTotal(userKey, Total{Value: newBalance, LastEntryID: id, Held: user.Held}); err != nil {
		return Entry{}, err
	}
	if err := st.setTotal(pairKey, Total{Value: newAuthTotal, LastEntryID: id}); err != nil {
		return Entry{}, err
	}
	st.change(ChangeRecord{Kind: ChangeEntry, At: createdOn, AuthorityID: ne.AuthorityID, Ref: id})
	if err := st.insert(rec); err != nil {
		return Entry{}, err
	}
	// The item is the ledger's own copy, made in checkNewEntry, and the
	// store copies what it keeps: the caller may have it.
	return rec.Entry, nil
}

func (st *batchState) byIdempotencyKey(authorityID, key string) (Record, bool, error) {
	if i, ok := st.byKey[idemKey{authorityID, key}]; ok {
		return st.inserts[i], true, nil
	}
	r, err := st.tx.EntryByIdempotencyKey(st.ctx, authorityID, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return Record{}, false, nil
	case err != nil:
		return Record{}, false, storeErr("read idempotency key", err)
	}
	return r, true, nil
}

// payloadDiff names the fields in which a retry differs from the entry
// its idempotency key created.
func payloadDiff(orig Record, ne NewEntry) []string {
	var diff []string
	if orig.UserID != ne.UserID {
		diff = append(diff, "UserID")
	}
	if !orig.Amount.Equal(ne.Amount) {
		diff = append(diff, "Amount")
	}
	if orig.Currency != ne.Currency {
		diff = append(diff, "Currency")
	}
	if !maps.Equal(orig.Metadata, ne.Metadata) {
		diff = append(diff, "Metadata")
	}
	if orig.Reason != ne.Reason {
		diff = append(diff, "Reason")
	}
	switch a, b := orig.Item, ne.Item; {
	case (a == nil) != (b == nil):
		diff = append(diff, "Item")
	case a != nil:
		if a.Name != b.Name {
			diff = append(diff, "Item.Name")
		}
		if !bytes.Equal(a.Data, b.Data) {
			diff = append(diff, "Item.Data")
		}
	}
	return diff
}

func (st *batchState) use(authorityID, entryID string, uc useConfig) (Entry, error) {
	r, err := st.entry(entryID)
	if err != nil {
		return Entry{}, err
	}
	if uc.forUser && r.UserID != uc.userID {
		// Word for word the error of an entry that does not exist.
		return Entry{}, fmt.Errorf("%w: entry %q", ErrNotFound, entryID)
	}
	if st.l.cfg.grantorOnly && r.AuthorityID != authorityID {
		return Entry{}, fmt.Errorf("%w: authority %q did not grant entry %q", ErrForbidden, authorityID, entryID)
	}
	if r.Item == nil {
		return Entry{}, fmt.Errorf("%w: entry %q", ErrNoItem, entryID)
	}
	if r.Item.Revoked || st.wallets.revoked(r.ID) {
		return Entry{}, fmt.Errorf("%w: entry %q was reversed", ErrItemRevoked, entryID)
	}
	if prev, used := st.itemUse(r); used {
		if uc.keyed && prev.IdempotencyKey == uc.key && prev.AuthorityID == authorityID {
			return st.current(r), nil // a retry of that use
		}
		return Entry{}, fmt.Errorf("%w: entry %q", ErrItemUsed, entryID)
	}
	u := ItemUse{AuthorityID: authorityID, At: time.Unix(0, unixNano(st.l.cfg.clock())).UTC()}
	if uc.keyed {
		u.IdempotencyKey = uc.key
	}
	st.used[entryID] = u
	st.uses = append(st.uses, pendingUse{entryID, u})
	st.change(ChangeRecord{Kind: ChangeItemUsed, At: u.At, AuthorityID: authorityID, Ref: entryID})
	return st.current(r), nil
}

// flush writes the group's changes to the transaction.
func (st *batchState) flush() error {
	for _, r := range st.inserts {
		if err := st.tx.InsertEntry(st.ctx, r); err != nil {
			return storeErr("insert entry", err)
		}
	}
	for _, u := range st.uses {
		if err := st.tx.SetItemUsed(st.ctx, u.id, u.use); err != nil {
			return storeErr("mark item used", err)
		}
	}
	if err := st.wallets.flush(st.ctx, st.tx); err != nil {
		return err
	}
	if err := st.holds.flush(st.ctx, st.tx); err != nil {
		return err
	}
	for _, c := range st.changes {
		if err := st.tx.AppendChange(st.ctx, c); err != nil {
			return storeErr("append change", err)
		}
	}
	for _, k := range st.dirty {
		s := st.totals[k]
		if !s.dirty {
			continue
		}
		if err := st.tx.SetTotal(st.ctx, k, s.t); err != nil {
			return storeErr("write total", err)
		}
	}
	return nil
}
