package ledger_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

// TestAmountExponentNormalised: an amount written with a long exponent
// is kept in the ledger's own form, so that no total carries the
// exponent on to every later write.
func TestAmountExponentNormalised(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		in   decimal.Decimal
		want string
	}{
		{"zero with exponent -10000", dec("0e-10000"), "0"},
		{"zero with exponent 5000", dec("0e5000"), "0"},
		{"decimal.New(0, -1e6)", decimal.New(0, -1e6), "0"},
		{"one and a thousand and one zeros", dec("1." + strings.Repeat("0", 1001)), "1"},
		{"trailing zeros past the places", dec("-2.50000000000000"), "-2.5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLedger(t)
			_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("10"), Reason: "seed"})
			require.NoError(t, err)
			e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: c.in, Reason: "odd"})
			require.NoError(t, err)
			assert.True(t, e.Amount.Equal(dec(c.want)), "got %s, want %s", e.Amount, c.want)
			assert.GreaterOrEqual(t, e.Amount.Exponent(), int32(-ledger.DefaultPlaces), "amount's exponent")
			assert.GreaterOrEqual(t, e.Balance.Exponent(), int32(-ledger.DefaultPlaces), "balance's exponent")
			ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"u"}})
			require.NoError(t, err)
			assert.True(t, ws[0].Total.Equal(dec("10").Add(dec(c.want))))
			assert.GreaterOrEqual(t, ws[0].Total.Exponent(), int32(-ledger.DefaultPlaces), "total's exponent")
			// A retry with the same key and the amount as written is the
			// same entry, not a conflict.
			_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: c.in, Reason: "k", IdempotencyKey: "k"})
			require.NoError(t, err)
			_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: c.in, Reason: "k", IdempotencyKey: "k"})
			require.NoError(t, err)
		})
	}
	l := newLedger(t)
	for _, bad := range []decimal.Decimal{dec("1." + strings.Repeat("0", 1000) + "1"), decimal.New(1, -999999999), dec("1e22")} {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: bad, Reason: "r"})
		require.ErrorIs(t, err, ledger.ErrInvalid)
	}
}

// faultyStore is a memstore whose transactions fail to insert an entry
// with the reason "poison", as a store would refuse a value the ledger
// admitted, and whose Update can be held at its start.
type faultyStore struct {
	ledger.Store
	hold    chan struct{} // when set, Update waits for it to close
	updates atomic.Int32
}

func (s *faultyStore) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	s.updates.Add(1)
	if s.hold != nil {
		<-s.hold
	}
	return s.Store.Update(ctx, func(tx ledger.Tx) error { return fn(faultyTx{tx}) })
}

type faultyTx struct{ ledger.Tx }

func (tx faultyTx) InsertEntry(ctx context.Context, r ledger.Record) error {
	if r.Reason == "poison" {
		return errors.New("faulty store: refused")
	}
	return tx.Tx.InsertEntry(ctx, r)
}

// TestStoreRefusalFailsOnlyItsRequest: a store's refusal of one request
// in a group commit fails that request alone; the others commit.
func TestStoreRefusalFailsOnlyItsRequest(t *testing.T) {
	ctx := context.Background()
	s := &faultyStore{Store: memstore.New(), hold: make(chan struct{})}
	l, err := ledger.New(s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })

	// The first write leads and is held inside Update while the others
	// queue behind it, so that they share the next commit.
	const n = 8
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, errs[0] = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "lead", Amount: dec("1"), Reason: "r"})
	}()
	require.Eventually(t, func() bool { return s.updates.Load() == 1 }, 5*time.Second, time.Millisecond)
	for i := 1; i <= n; i++ {
		reason := "fine"
		if i == 3 {
			reason = "poison"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: reason})
		}()
	}
	require.Eventually(t, func() bool { return l.QueuedForTest() == n }, 5*time.Second, time.Millisecond)
	close(s.hold)
	wg.Wait()

	for i, err := range errs {
		if i == 3 {
			require.Error(t, err, "the poisoned request fails")
			require.NotErrorIs(t, err, ledger.ErrUnknownOutcome)
			continue
		}
		require.NoError(t, err, "request %d", i)
	}
	ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"u"}})
	require.NoError(t, err)
	require.Equal(t, "7", ws[0].Total.String())
	require.NoError(t, l.Verify(ctx))
}

// TestRefusedWriteLeavesIDClock: only committed entries move the ID
// generator, so a refused batch written while the clock ran ahead does
// not stamp later entries with its time.
func TestRefusedWriteLeavesIDClock(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var now atomic.Pointer[time.Time]
	now.Store(&t0)
	l := newLedger(t, ledger.WithClock(func() time.Time { return *now.Load() }))
	_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err)

	later := t0.Add(time.Hour)
	now.Store(&later)
	_, err = l.CreateEntries(ctx, []ledger.NewEntry{
		{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "fine"},
		{AuthorityID: "a", UserID: "u", Amount: dec("-5"), Reason: "too much"},
	})
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("-5"), Reason: "too much"})
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)

	now.Store(&t0)
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err)
	require.Equal(t, t0, e.CreatedOn, "the refused writes' clock reading is not the ledger's")
}

// TestClosedBeforeInvalid: after Close every call returns ErrClosed,
// whatever its arguments.
func TestClosedBeforeInvalid(t *testing.T) {
	ctx := context.Background()
	l, err := ledger.New(memstore.New())
	require.NoError(t, err)
	require.NoError(t, l.Close())
	calls := map[string]error{}
	_, calls["CreateEntry"] = l.CreateEntry(ctx, ledger.NewEntry{})
	_, calls["CreateEntries"] = l.CreateEntries(ctx, []ledger.NewEntry{{}})
	_, calls["CreateEntries over the limit"] = l.CreateEntries(ctx, make([]ledger.NewEntry, ledger.DefaultLimits().MaxBatchEntries+1))
	_, calls["UseItem"] = l.UseItem(ctx, "", "")
	_, calls["Wallets"] = l.Wallets(ctx, ledger.WalletQuery{Limit: -1})
	_, calls["Inventory"] = l.Inventory(ctx, ledger.InventoryQuery{Used: 99})
	_, calls["Entries"] = l.Entries(ctx, ledger.EntryQuery{Since: time.Now(), Until: time.Now().Add(-time.Hour)})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, calls["CreateEntry with a cancelled context"] = l.CreateEntry(cancelled, ledger.NewEntry{})
	calls["Health"] = l.Health(ctx)
	calls["Verify"] = l.Verify(ctx)
	for name, err := range calls {
		assert.ErrorIs(t, err, ledger.ErrClosed, name)
		assert.NotErrorIs(t, err, ledger.ErrInvalid, name)
	}
}

// stallingStore is a memstore whose Update, once stalled, blocks until
// released, ignoring its context as a store whose backend froze would.
type stallingStore struct {
	ledger.Store
	stalled  atomic.Bool
	release  chan struct{}
	inUpdate chan struct{} // receives when a stalled Update starts
	honour   bool          // return when ctx ends instead
}

func newStallingStore(honour bool) *stallingStore {
	return &stallingStore{Store: memstore.New(), release: make(chan struct{}), inUpdate: make(chan struct{}, 16), honour: honour}
}

func (s *stallingStore) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	if s.stalled.Load() {
		s.inUpdate <- struct{}{}
		if s.honour {
			select {
			case <-s.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		} else {
			<-s.release
		}
	}
	return s.Store.Update(ctx, fn)
}

// TestStalledStoreCallerContext: a caller's context bounds its wait
// whatever the store does. A caller whose write is in a stalled commit
// gets ErrUnknownOutcome when its deadline passes; one queued behind it
// gets its context's error with nothing written; once the store
// resumes, the abandoned commit completes and a retry with the same
// idempotency key finds it.
func TestStalledStoreCallerContext(t *testing.T) {
	s := newStallingStore(false)
	l, err := ledger.New(s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	s.stalled.Store(true)

	ne := ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("3"), Reason: "r", IdempotencyKey: "k1"}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var leadErr, queuedErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, leadErr = l.CreateEntry(ctx, ne)
	}()
	<-s.inUpdate
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, queuedErr = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("4"), Reason: "queued"})
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("callers still waiting 5 s after their 200 ms deadline")
	}
	require.ErrorIs(t, leadErr, ledger.ErrUnknownOutcome)
	require.ErrorIs(t, leadErr, context.DeadlineExceeded)
	require.ErrorIs(t, queuedErr, context.DeadlineExceeded)
	require.NotErrorIs(t, queuedErr, ledger.ErrUnknownOutcome, "a write still queued was not handed to the store")

	s.stalled.Store(false)
	close(s.release)
	bg := context.Background()
	e, err := l.CreateEntry(bg, ne)
	require.NoError(t, err)
	require.True(t, e.Amount.Equal(dec("3")))
	ws, err := l.Wallets(bg, ledger.WalletQuery{UserIDs: []string{"u"}})
	require.NoError(t, err)
	require.Equal(t, "3", ws[0].Total.String(), "the abandoned commit completed once, the queued write never ran")
	require.NoError(t, l.Close())
}

// TestCommitTimeout: the commit itself is bounded, so a caller without
// a deadline is not held by a stalled store for longer than the commit
// timeout, and learns that the outcome is unknown.
func TestCommitTimeout(t *testing.T) {
	s := newStallingStore(true)
	l, err := ledger.New(s, ledger.WithCommitTimeout(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	s.stalled.Store(true)
	start := time.Now()
	_, err = l.CreateEntry(context.Background(), ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.ErrorIs(t, err, ledger.ErrUnknownOutcome)
	require.Less(t, time.Since(start), 5*time.Second)
	// The next commits run under a fresh deadline: once the store
	// answers, writes succeed, one after another.
	s.stalled.Store(false)
	for range 3 {
		_, err = l.CreateEntry(context.Background(), ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
		require.NoError(t, err)
		time.Sleep(60 * time.Millisecond) // past where an old deadline would have been, were it kept
	}
	// A commit that stalls after others have run expires at its own
	// deadline: not before it, at an earlier commit's, nor never.
	for _, pause := range []time.Duration{0, 30 * time.Millisecond, 70 * time.Millisecond} {
		s.stalled.Store(false)
		_, err = l.CreateEntry(context.Background(), ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
		require.NoError(t, err)
		time.Sleep(pause)
		s.stalled.Store(true)
		start := time.Now()
		_, err = l.CreateEntry(context.Background(), ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
		require.ErrorIs(t, err, ledger.ErrUnknownOutcome)
		require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "after a pause of %v", pause)
		require.Less(t, time.Since(start), 5*time.Second)
	}
	s.stalled.Store(false)

	for _, d := range []time.Duration{0, -time.Second} {
		_, err := ledger.New(memstore.New(), ledger.WithCommitTimeout(d))
		require.Error(t, err, "WithCommitTimeout(%v)", d)
	}
}

// TestCloseWaitsForAbandonedCommit: Close does not close the store
// under a commit whose caller gave up waiting.
func TestCloseWaitsForAbandonedCommit(t *testing.T) {
	s := newStallingStore(false)
	l, err := ledger.New(s)
	require.NoError(t, err)
	s.stalled.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
		errc <- err
	}()
	<-s.inUpdate
	cancel()
	require.ErrorIs(t, <-errc, ledger.ErrUnknownOutcome)
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a commit was in the store", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(s.release)
	require.NoError(t, <-closed)
}

// TestItemDataChecks: item data must be valid UTF-8 and nest no deeper
// than Limits.MaxDataDepth.
func TestItemDataChecks(t *testing.T) {
	ctx := context.Background()
	nested := func(n int) []byte { return []byte(strings.Repeat("[", n) + strings.Repeat("]", n)) }
	cases := []struct {
		name string
		opts []ledger.Option
		data []byte
		ok   bool
	}{
		{"64 levels", nil, nested(64), true},
		{"65 levels", nil, nested(65), false},
		{"9000 levels", nil, nested(9000), false},
		{"objects count", nil, []byte(strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65)), false},
		{"brackets in strings do not", nil, []byte(`["` + strings.Repeat("[", 100) + `\"["]`), true},
		{"raised limit", []ledger.Option{ledger.WithLimits(ledger.Limits{MaxDataDepth: 100})}, nested(100), true},
		{"invalid UTF-8", nil, []byte("\"\xff\""), false},
		{"valid UTF-8", nil, []byte(`"é ü 😀"`), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLedger(t, c.opts...)
			_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r",
				Item: &ledger.Item{Name: "n", Data: c.data}})
			if c.ok {
				require.NoError(t, err)
				return
			}
			var ie *ledger.InvalidError
			require.ErrorAs(t, err, &ie)
			require.Equal(t, "Item.Data", ie.Field)
			inv, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOrUnused})
			require.NoError(t, err)
			require.Empty(t, inv)
		})
	}
}

// TestBatchListsEveryInvalidEntry: CreateEntries names every invalid
// entry at once, and errors.As still gives the first.
func TestBatchListsEveryInvalidEntry(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	ok := ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"}
	noUser, noReason := ok, ok
	noUser.UserID, noReason.Reason = "", ""
	_, err := l.CreateEntries(ctx, []ledger.NewEntry{ok, noUser, ok, noReason, ok})
	require.ErrorIs(t, err, ledger.ErrInvalid)
	var list ledger.EntryErrors
	require.ErrorAs(t, err, &list)
	require.Len(t, list, 2)
	var fields []string
	for _, e := range list {
		var ie *ledger.InvalidError
		require.ErrorAs(t, e, &ie)
		fields = append(fields, ie.Field)
	}
	require.Equal(t, []int{1, 3}, []int{list[0].Index, list[1].Index})
	require.Equal(t, []string{"UserID", "Reason"}, fields)
	var first *ledger.EntryError
	require.ErrorAs(t, err, &first)
	require.Equal(t, 1, first.Index)
	require.Equal(t, "ledger: 2 invalid batch entries: 1: invalid UserID: empty; 3: invalid Reason: empty", err.Error())
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Empty(t, es)
}

// TestLimitsContradiction: a byte budget below the largest entry the
// other limits admit is refused when the ledger is made.
func TestLimitsContradiction(t *testing.T) {
	_, err := ledger.New(memstore.New(), ledger.WithLimits(ledger.Limits{MaxBatchBytes: 1000}))
	require.ErrorContains(t, err, "MaxBatchBytes")
	_, err = ledger.New(memstore.New(), ledger.WithLimits(ledger.Limits{MaxBatchBytes: 100 << 10}))
	require.NoError(t, err)
}

// TestClockBeyondIDRange: entries stamped while the clock reads past
// 2262 (or before 1970) carry the nearest instant IDs encode, and every
// query by time treats them by that CreatedOn: none goes missing.
func TestClockBeyondIDRange(t *testing.T) {
	ctx := context.Background()
	last := time.Unix(0, math.MaxInt64).UTC()
	for _, c := range []struct {
		name  string
		clock time.Time
		want  time.Time
	}{
		{"2300", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), last},
		{"year 9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), last},
		{"1960", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(0, 0).UTC()},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLedger(t, ledger.WithClock(func() time.Time { return c.clock }))
			for range 3 {
				e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("2"), Reason: "r"})
				require.NoError(t, err)
				require.Equal(t, c.want, e.CreatedOn)
			}
			require.NoError(t, l.Verify(ctx))
			count := func(q ledger.EntryQuery) int {
				es, err := l.Entries(ctx, q)
				require.NoError(t, err)
				return len(es)
			}
			total := func(asOf time.Time) string {
				ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"u"}, AsOf: asOf})
				require.NoError(t, err)
				return ws[0].Total.String()
			}
			for _, at := range []time.Time{c.want, c.clock, c.want.Add(time.Hour), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)} {
				if at.Before(c.want) {
					continue
				}
				assert.Equal(t, "6", total(at), "AsOf %v", at)
				assert.Equal(t, 3, count(ledger.EntryQuery{Until: at.Add(time.Nanosecond)}), "Until %v", at)
				assert.Equal(t, 3, count(ledger.EntryQuery{Since: c.want, Until: at.Add(time.Nanosecond)}), "Since %v", c.want)
			}
			assert.Equal(t, 0, count(ledger.EntryQuery{Since: c.want.Add(time.Nanosecond)}), "Since just after their CreatedOn")
			assert.Equal(t, 0, count(ledger.EntryQuery{Until: c.want}), "Until their CreatedOn")
			assert.Equal(t, "0", total(c.want.Add(-time.Nanosecond)), "AsOf just before")
		})
	}
}
