package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runChanges checks the change feed through a ledger over the store:
// what makes a change, exactly once, order, resume, Follow, and the feed
// under concurrent writers and random cancels.
func runChanges(t *testing.T, ns NewStore) {
	t.Run("WhatMakesAChange", func(t *testing.T) { testWhatMakesAChange(t, ns) })
	t.Run("Resume", func(t *testing.T) { testChangesResume(t, ns) })
	t.Run("Follow", func(t *testing.T) { testChangesFollow(t, ns) })
	t.Run("FollowEnds", func(t *testing.T) { testChangesFollowEnds(t, ns) })
	t.Run("InvalidQuery", func(t *testing.T) { testChangesInvalid(t, ns) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testChangesConcurrent(t, ns) })
	t.Run("CancelAtRandom", func(t *testing.T) { testChangesCancel(t, ns) })
	t.Run("ExportImport", func(t *testing.T) { testChangesExportImport(t, ns) })
}

func collectChanges(t *testing.T, l *ledger.Ledger, q ledger.ChangeQuery) []ledger.Change {
	t.Helper()
	var out []ledger.Change
	for c, err := range l.Changes(context.Background(), q) {
		require.NoError(t, err)
		out = append(out, c)
	}
	return out
}

// describe is a change in a few words, for comparing feeds.
func describe(c ledger.Change) string {
	switch {
	case c.Entry != nil:
		s := fmt.Sprintf("%s %s %s %s %s", c.Kind, c.AuthorityID, c.Entry.UserID, c.Entry.Amount, c.Entry.ID)
		if c.Entry.Item != nil {
			s += fmt.Sprintf(" item used=%v by=%q", c.Entry.Item.Used, c.Entry.Item.UsedBy)
		}
		return s
	case c.Hold != nil:
		return fmt.Sprintf("%s %s %s %s %s", c.Kind, c.AuthorityID, c.Hold.UserID, c.Hold.State, c.Hold.ID)
	case c.Limits != nil:
		return fmt.Sprintf("%s %s %s %s", c.Kind, c.AuthorityID, c.Limits.UserID, c.Limits.Floor)
	}
	return string(c.Kind)
}

func testWhatMakesAChange(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now), ledger.WithHoldSweep(time.Millisecond))
	tick := func() { clk.advance(time.Millisecond) }
	var want []string
	deposit := mustCreate(t, l, entryIn("bank", "ann", "", "100"))
	want = append(want, fmt.Sprintf("entry bank ann 100 %s", deposit.ID))
	tick()
	ne := entryIn("shop", "ann", "", "-5")
	ne.Item, ne.IdempotencyKey = &ledger.Item{Name: "soda"}, "buy-1"
	buy := mustCreate(t, l, ne)
	mustCreate(t, l, ne) // a retry writes nothing
	want = append(want, fmt.Sprintf("entry shop ann -5 %s item used=false by=\"\"", buy.ID))
	tick()
	_, err := l.CreateEntry(ctx, entryIn("shop", "ann", "", "-1000"))
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds) // refused: no change
	es, err := l.CreateEntries(ctx, []ledger.NewEntry{entryIn("bank", "bob", "", "1"), entryIn("bank", "cat", "", "2")})
	require.NoError(t, err)
	want = append(want, fmt.Sprintf("entry bank bob 1 %s", es[0].ID), fmt.Sprintf("entry bank cat 2 %s", es[1].ID))
	_, err = l.CreateEntries(ctx, []ledger.NewEntry{entryIn("bank", "bob", "", "1"), entryIn("bank", "cat", "", "-99")})
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds) // rolled back: no change
	tick()
	used, err := l.UseItem(ctx, "arcade", buy.ID)
	require.NoError(t, err)
	want = append(want, fmt.Sprintf("item_used arcade ann -5 %s item used=true by=\"arcade\"", buy.ID))
	tick()
	tr, err := l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "gifts", FromUserID: "ann", ToUserID: "bob", Amount: dec("10"), Reason: "gift"})
	require.NoError(t, err)
	want = append(want, fmt.Sprintf("entry gifts ann -10 %s", tr.From.ID), fmt.Sprintf("entry gifts bob 10 %s", tr.To.ID))
	tick()
	rev, err := l.Reverse(ctx, "gifts", tr.To.ID, "returned")
	require.NoError(t, err)
	for _, e := range rev {
		want = append(want, fmt.Sprintf("entry gifts %s %s %s", e.UserID, e.Amount, e.ID))
	}
	tick()
	require.NoError(t, l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "cat", Floor: dec("-5")}))
	want = append(want, "limits bank cat -5")
	tick()
	h := mustHold(t, l, newHold("shop", "ann", "", "20"))
	want = append(want, fmt.Sprintf("hold_placed shop ann active %s", h.ID))
	tick()
	capture, err := l.Capture(ctx, "shop", h.ID, ledger.Capture{Amount: dec("7")})
	require.NoError(t, err)
	want = append(want, fmt.Sprintf("entry shop ann -7 %s", capture.ID)) // and nothing else
	tick()
	r := mustHold(t, l, newHold("shop", "ann", "", "1"))
	_, err = l.Release(ctx, "shop", r.ID)
	require.NoError(t, err)
	want = append(want, fmt.Sprintf("hold_placed shop ann active %s", r.ID), fmt.Sprintf("hold_released shop ann released %s", r.ID))
	tick()
	x := newHold("desk", "ann", "", "2")
	x.Expires = clk.Now().Add(time.Second)
	xh := mustHold(t, l, x)
	want = append(want, fmt.Sprintf("hold_placed desk ann active %s", xh.ID))
	clk.advance(time.Second)
	want = append(want, fmt.Sprintf("hold_expired desk ann expired %s", xh.ID))
	require.Eventually(t, func() bool {
		return len(collectChanges(t, l, ledger.ChangeQuery{})) == len(want)
	}, 10*time.Second, time.Millisecond, "the sweep records the expiry")

	got := collectChanges(t, l, ledger.ChangeQuery{})
	var gotS []string
	for _, c := range got {
		gotS = append(gotS, describe(c))
	}
	require.Equal(t, want, gotS)
	for i := 1; i < len(got); i++ {
		require.Less(t, got[i-1].Cursor, got[i].Cursor)
	}
	// The records, as the change left them.
	require.True(t, deposit.CreatedOn.Equal(got[0].At))
	require.Equal(t, deposit.ID, got[0].Entry.ID)
	require.Equal(t, buy.Item.Name, got[1].Entry.Item.Name)
	require.False(t, got[1].Entry.Item.Used, "the entry as written, though its item was used later")
	require.True(t, used.Item.UsedOn.Equal(got[4].At), "item_used At = UsedOn")
	require.Empty(t, got[6].Entry.ReversedBy, "as written, though reversed later")
	require.Equal(t, tr.To.ID, got[8].Entry.Reverses)
	require.Equal(t, "cat", got[9].Limits.UserID)
	require.Equal(t, ledger.HoldActive, got[10].Hold.State, "the hold as placed, though captured later")
	require.Empty(t, got[10].Hold.EntryID)
	require.Equal(t, h.ID, got[11].Entry.HoldID, "a capture is its entry")
	require.True(t, got[13].Hold.ClosedOn.Equal(got[13].At))
	require.True(t, xh.Expires.Equal(got[15].At), "hold_expired At = Expires")
	require.Equal(t, "desk", got[15].AuthorityID, "hold_expired: the hold's authority")
	requireVerified(t, l)
}

func testChangesResume(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns, ledger.WithPageSize(4))
	for i := range 23 {
		mustCreate(t, l, entryIn("bank", fmt.Sprint("u", i%5), "", "1"))
	}
	all := collectChanges(t, l, ledger.ChangeQuery{})
	require.Len(t, all, 23)
	for _, k := range []int{0, 1, 3, 4, 5, 22} {
		rest := collectChanges(t, l, ledger.ChangeQuery{After: all[k].Cursor})
		require.Len(t, rest, 22-k, "after %d", k)
		for i, c := range rest {
			require.Equal(t, all[k+1+i].Cursor, c.Cursor)
		}
	}
	page := collectChanges(t, l, ledger.ChangeQuery{After: all[2].Cursor, Limit: 5})
	require.Len(t, page, 5)
	require.Equal(t, all[3].Cursor, page[0].Cursor)
	// A reader that stops after any change and resumes from its cursor
	// sees every change exactly once.
	var seen []string
	after := ""
	for {
		var batch []ledger.Change
		for c, err := range l.Changes(context.Background(), ledger.ChangeQuery{After: after}) {
			require.NoError(t, err)
			batch = append(batch, c)
			if len(batch) == 3 {
				break // "crash" after handling three
			}
		}
		if len(batch) == 0 {
			break
		}
		for _, c := range batch {
			seen = append(seen, c.Entry.ID)
		}
		after = batch[len(batch)-1].Cursor
	}
	require.Len(t, seen, 23)
	for i, c := range all {
		require.Equal(t, c.Entry.ID, seen[i])
	}
}

func testChangesFollow(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns)
	mustCreate(t, l, entryIn("bank", "ann", "", "1"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan ledger.Change, 100)
	done := make(chan error, 1)
	go func() {
		for c, err := range l.Changes(ctx, ledger.ChangeQuery{Follow: true, Limit: 21}) {
			if err != nil {
				done <- err
				return
			}
			got <- c
		}
		done <- nil
	}()
	first := <-got
	require.Equal(t, ledger.ChangeEntry, first.Kind)
	// Each write wakes the follower: a store of one process is never
	// polled, so a missed wake-up would hang this test.
	for i := range 20 {
		e := mustCreate(t, l, entryIn("bank", "ann", "", "1"))
		select {
		case c := <-got:
			require.Equal(t, e.ID, c.Entry.ID, "change %d", i)
		case <-ctx.Done():
			t.Fatalf("the follower missed entry %d", i)
		}
	}
	require.NoError(t, <-done, "Limit ends a follow")
}

func testChangesFollowEnds(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns)
	mustCreate(t, l, entryIn("bank", "ann", "", "1"))
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() {
		n := 0
		for _, err := range l.Changes(ctx, ledger.ChangeQuery{Follow: true}) {
			if err != nil {
				errs <- err
				return
			}
			if n++; n == 1 {
				cancel()
			}
		}
		errs <- errors.New("the sequence ended without an error")
	}()
	select {
	case err := <-errs:
		require.ErrorIs(t, err, context.Canceled, "a follow ends with its context")
	case <-time.After(20 * time.Second):
		t.Fatal("the follow did not end with its context")
	}

	go func() {
		for _, err := range l.Changes(context.Background(), ledger.ChangeQuery{Follow: true}) {
			if err != nil {
				errs <- err
				return
			}
		}
		errs <- errors.New("the sequence ended without an error")
	}()
	time.Sleep(10 * time.Millisecond) // let it wait; any moment will do
	require.NoError(t, l.Close())
	select {
	case err := <-errs:
		require.ErrorIs(t, err, ledger.ErrClosed, "Close ends a follow")
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not end the follow")
	}
}

func testChangesInvalid(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns)
	for name, q := range map[string]ledger.ChangeQuery{
		"Limit": {Limit: -1},
		"After": {After: "NOT A CURSOR"},
	} {
		n := 0
		for _, err := range l.Changes(context.Background(), q) {
			var ie *ledger.InvalidError
			require.ErrorAs(t, err, &ie, name)
			require.Equal(t, name, ie.Field)
			n++
		}
		require.Equal(t, 1, n, "the error is yielded once")
	}
	require.Empty(t, collectChanges(t, l, ledger.ChangeQuery{After: strings.Repeat("z", 64)}))
}

// testChangesConcurrent runs writers of every kind while a follower
// follows: it sees every committed change exactly once, and the changes
// of each wallet in the order the wallet's entries were written.
func testChangesConcurrent(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	for _, u := range []string{"u0", "u1", "u2", "u3"} {
		mustCreate(t, l, entryIn("bank", u, "", "1000"))
	}
	fctx, cancel := context.WithCancel(ctx)
	var followed []ledger.Change
	done := make(chan error, 1)
	go func() {
		for c, err := range l.Changes(fctx, ledger.ChangeQuery{Follow: true}) {
			if err != nil {
				if errors.Is(err, context.Canceled) {
					err = nil
				}
				done <- err
				return
			}
			followed = append(followed, c)
		}
		done <- nil
	}()
	parallel(16, func(w int) {
		r := rand.New(rand.NewPCG(uint64(w), 4))
		u := fmt.Sprint("u", w%4)
		for i := range 15 {
			var err error
			switch r.IntN(4) {
			case 0:
				_, err = l.CreateEntry(ctx, entryIn("shop", u, "", "-1"))
			case 1:
				_, err = l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "gifts", FromUserID: u, ToUserID: fmt.Sprint("u", (w+1)%4), Amount: dec("1"), Reason: "g"})
			case 2:
				var h ledger.Hold
				if h, err = l.Hold(ctx, newHold("shop", u, "", "1")); err == nil {
					if i%2 == 0 {
						_, err = l.Capture(ctx, "shop", h.ID, ledger.Capture{})
					} else {
						_, err = l.Release(ctx, "shop", h.ID)
					}
				}
			case 3:
				err = l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: u, Floor: dec(fmt.Sprint(-i))})
			}
			if err != nil && !errors.Is(err, ledger.ErrNotEnoughFunds) {
				t.Error(err)
			}
		}
	})
	all := collectChanges(t, l, ledger.ChangeQuery{})
	cancel()
	require.NoError(t, <-done)
	// The follower stopped at some point; what it saw is a prefix of the
	// feed, each change once.
	require.LessOrEqual(t, len(followed), len(all))
	for i, c := range followed {
		require.Equal(t, all[i].Cursor, c.Cursor)
	}
	// Every entry has its change, and each wallet's entries come in the
	// order of their balances' history (IDs of a wallet increase with
	// commits).
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	n := 0
	last := map[string]string{}
	for _, c := range all {
		if c.Kind != ledger.ChangeEntry {
			continue
		}
		n++
		require.Greater(t, c.Entry.ID, last[c.Entry.UserID], "the changes of wallet %s in commit order", c.Entry.UserID)
		last[c.Entry.UserID] = c.Entry.ID
	}
	require.Equal(t, len(es), n)
	requireVerified(t, l)
}

// testChangesCancel writes under contexts that end at random moments:
// whatever committed is in the feed exactly once, and nothing else.
func testChangesCancel(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	parallel(8, func(w int) {
		r := rand.New(rand.NewPCG(uint64(w), 5))
		for range 20 {
			c, cancel := context.WithTimeout(ctx, time.Duration(r.IntN(300))*time.Microsecond)
			_, _ = l.CreateEntry(c, entryIn("bank", fmt.Sprint("u", w), "", "1"))
			cancel()
		}
	})
	// A commit whose callers gave up may still be running: a write that
	// waits for its own commit waits for it too.
	mustCreate(t, l, entryIn("bank", "last", "", "1"))
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	all := collectChanges(t, l, ledger.ChangeQuery{})
	require.Len(t, all, len(es))
	for i, c := range all {
		require.Equal(t, es[i].ID, c.Entry.ID)
	}
	requireVerified(t, l)
}

func testChangesExportImport(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns, ledger.WithHoldSweep(0))
	deposit := mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	item := entryIn("shop", "ann", "", "-1")
	item.Item = &ledger.Item{Name: "soda"}
	buy := mustCreate(t, l, item)
	_, err := l.UseItem(ctx, "arcade", buy.ID)
	require.NoError(t, err)
	require.NoError(t, l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "ann", Floor: dec("-1")}))
	h := mustHold(t, l, newHold("shop", "ann", "", "2"))
	_, err = l.Release(ctx, "shop", h.ID)
	require.NoError(t, err)
	_, err = l.Reverse(ctx, "bank", deposit.ID, "oops")
	require.NoError(t, err)
	var buf strings.Builder
	require.NoError(t, l.Export(ctx, &buf))
	require.Contains(t, buf.String(), `"version":6`)
	l2, _ := newLedger(t, ns, ledger.WithHoldSweep(0))
	require.NoError(t, ledger.Import(ctx, l2, strings.NewReader(buf.String())))
	a, b := collectChanges(t, l, ledger.ChangeQuery{}), collectChanges(t, l2, ledger.ChangeQuery{})
	require.Len(t, b, len(a))
	for i := range a {
		require.Equal(t, describe(a[i]), describe(b[i]), "change %d keeps its kind, record and authority", i)
		require.True(t, a[i].At.Equal(b[i].At), "change %d keeps its At", i)
	}
	requireVerified(t, l2)
	var again strings.Builder
	require.NoError(t, l2.Export(ctx, &again))
	require.Equal(t, buf.String(), again.String())
}
