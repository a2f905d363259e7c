package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runHolds checks, through a ledger over the store, every rule of holds:
// what they reserve, capture, release, expiry with and without the
// sweep, idempotency, queries, bad input, and races.
func runHolds(t *testing.T, ns NewStore) {
	t.Run("Reserve", func(t *testing.T) { testHoldReserves(t, ns) })
	t.Run("NoSpendUsesHeldValue", func(t *testing.T) { testHeldValueUnspendable(t, ns) })
	t.Run("Capture", func(t *testing.T) { testCapture(t, ns) })
	t.Run("PartialCapture", func(t *testing.T) { testPartialCapture(t, ns) })
	t.Run("Release", func(t *testing.T) { testRelease(t, ns) })
	t.Run("Settlement", func(t *testing.T) { testSettlementErrors(t, ns) })
	t.Run("Expiry", func(t *testing.T) { testHoldExpiry(t, ns) })
	t.Run("Sweep", func(t *testing.T) { testHoldSweep(t, ns) })
	t.Run("Idempotency", func(t *testing.T) { testHoldIdempotency(t, ns) })
	t.Run("Query", func(t *testing.T) { testHoldQuery(t, ns) })
	t.Run("InvalidInput", func(t *testing.T) { testInvalidHolds(t, ns) })
	t.Run("History", func(t *testing.T) { testHoldHistory(t, ns) })
	t.Run("ExportImport", func(t *testing.T) { testHoldExportImport(t, ns) })
	t.Run("RacingSpends", func(t *testing.T) { testRacingHoldsAndSpends(t, ns) })
	t.Run("RacingSettlements", func(t *testing.T) { testRacingSettlements(t, ns) })
	t.Run("CancelAtRandom", func(t *testing.T) { testHoldCancelAtRandom(t, ns) })
	t.Run("ClockPast2262", func(t *testing.T) { testHoldClockPast2262(t, ns) })
}

// manualClock is a test clock that moves only when told to.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newHold(auth, user, currency, amount string) ledger.NewHold {
	return ledger.NewHold{AuthorityID: auth, UserID: user, Currency: currency, Amount: dec(amount), Reason: "hold " + amount}
}

func mustHold(t *testing.T, l *ledger.Ledger, nh ledger.NewHold) ledger.Hold {
	t.Helper()
	h, err := l.Hold(context.Background(), nh)
	require.NoError(t, err)
	return h
}

// requireWallet fails unless the wallet's Balance has the given total
// and held amount, and Available is their difference.
func requireWallet(t *testing.T, l *ledger.Ledger, user, currency, total, held string) ledger.Balance {
	t.Helper()
	b, err := l.Balance(context.Background(), user, currency)
	require.NoError(t, err)
	requireDecimal(t, total, b.Total, user, currency, "total")
	requireDecimal(t, held, b.Held, user, currency, "held")
	requireDecimal(t, dec(total).Sub(dec(held)).String(), b.Available, user, currency, "available")
	return b
}

func requireVerified(t *testing.T, l *ledger.Ledger) {
	t.Helper()
	require.NoError(t, l.Verify(context.Background()))
}

func testHoldReserves(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now))
	mustCreate(t, l, entryIn("bank", "ann", "", "100"))
	mustCreate(t, l, entryIn("bank", "ann", "gems", "5"))
	nh := newHold("shop", "ann", "", "30")
	nh.Metadata = map[string]string{"order": "o-1"}
	nh.Expires = clk.Now().Add(time.Hour + 7)
	h := mustHold(t, l, nh)
	require.Len(t, h.ID, 24)
	require.Equal(t, "shop", h.AuthorityID)
	require.Equal(t, "ann", h.UserID)
	require.Equal(t, "", h.Currency)
	requireDecimal(t, "30", h.Amount)
	require.Equal(t, "hold 30", h.Reason)
	require.Equal(t, map[string]string{"order": "o-1"}, h.Metadata)
	require.True(t, clk.Now().Equal(h.CreatedOn), "CreatedOn %v", h.CreatedOn)
	require.True(t, nh.Expires.Equal(h.Expires), "Expires kept to the nanosecond: %v", h.Expires)
	require.Equal(t, ledger.HoldActive, h.State)
	require.True(t, h.ClosedOn.IsZero())
	require.Empty(t, h.EntryID)

	requireWallet(t, l, "ann", "", "100", "30")
	requireWallet(t, l, "ann", "gems", "5", "0") // per currency
	mustHold(t, l, newHold("shop", "ann", "gems", "5"))
	requireWallet(t, l, "ann", "gems", "5", "5")
	bs, err := l.Balances(ctx, "ann")
	require.NoError(t, err)
	require.Len(t, bs, 2)
	requireDecimal(t, "70", bs[0].Available)
	requireDecimal(t, "0", bs[1].Available)

	// A hold writes no entry.
	es, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"ann"}})
	require.NoError(t, err)
	require.Len(t, es, 2)

	// Holds may take Available to exactly the floor, not below.
	mustHold(t, l, newHold("shop", "ann", "", "70"))
	requireWallet(t, l, "ann", "", "100", "100")
	_, err = l.Hold(ctx, newHold("shop", "ann", "", "0.01"))
	var nef *ledger.NotEnoughFundsError
	require.ErrorAs(t, err, &nef)
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	require.Equal(t, "ann", nef.UserID)
	requireDecimal(t, "100", nef.Balance)
	requireDecimal(t, "100", nef.Held)
	requireDecimal(t, "-0.01", nef.Amount)

	// A credit line lets a hold reach into it; a user with no entries can
	// then hold value.
	require.NoError(t, l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "cat", Floor: dec("-20")}))
	mustHold(t, l, newHold("shop", "cat", "", "20"))
	requireWallet(t, l, "cat", "", "0", "20")
	_, err = l.Hold(ctx, newHold("shop", "cat", "", "1"))
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	_, err = l.CreateEntry(ctx, entryIn("shop", "cat", "", "-1"))
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	bs, err = l.Balances(ctx, "cat")
	require.NoError(t, err)
	require.Len(t, bs, 1)
	requireDecimal(t, "-20", bs[0].Available)
	requireVerified(t, l)
	// Once its only hold closes, the wallet's total holds nothing, and
	// still verifies.
	hs, err := l.Holds(ctx, ledger.HoldQuery{UserIDs: []string{"cat"}})
	require.NoError(t, err)
	_, err = l.Release(ctx, "shop", hs[0].ID)
	require.NoError(t, err)
	requireWallet(t, l, "cat", "", "0", "0")
	requireVerified(t, l)
}

func testHeldValueUnspendable(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	deposit := mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	mustCreate(t, l, entryIn("bank", "bob", "", "10"))
	mustHold(t, l, newHold("shop", "ann", "", "8"))
	requireWallet(t, l, "ann", "", "10", "8")

	_, err := l.CreateEntry(ctx, entryIn("shop", "ann", "", "-3"))
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds, "an entry")
	_, err = l.CreateEntries(ctx, []ledger.NewEntry{entryIn("shop", "ann", "", "-1"), entryIn("shop", "ann", "", "-1.5")})
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds, "a batch")
	_, err = l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "shop", FromUserID: "ann", ToUserID: "bob", Amount: dec("3"), Reason: "gift"})
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds, "a transfer")
	_, err = l.Reverse(ctx, "bank", deposit.ID, "refund the deposit")
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds, "a reversal")
	_, err = l.Hold(ctx, newHold("other", "ann", "", "2.01"))
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds, "another hold")
	requireWallet(t, l, "ann", "", "10", "8")

	// What is not held is spendable, to the floor.
	mustCreate(t, l, entryIn("shop", "ann", "", "-2"))
	requireWallet(t, l, "ann", "", "8", "8")
	// A deposit is not a spend.
	mustCreate(t, l, entryIn("bank", "ann", "", "1"))
	requireWallet(t, l, "ann", "", "9", "8")
	requireVerified(t, l)
}

func testCapture(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	mustCreate(t, l, entryIn("bank", "ann", "gems", "50"))
	nh := newHold("shop", "ann", "gems", "20")
	nh.Metadata = map[string]string{"order": "o-7"}
	h := mustHold(t, l, nh)
	e, err := l.Capture(ctx, "shop", h.ID, ledger.Capture{})
	require.NoError(t, err)
	requireDecimal(t, "-20", e.Amount, "zero captures the whole hold")
	require.Equal(t, h.ID, e.HoldID)
	require.Equal(t, "shop", e.AuthorityID)
	require.Equal(t, "ann", e.UserID)
	require.Equal(t, "gems", e.Currency)
	require.Equal(t, "hold 20", e.Reason, "the hold's reason")
	require.Equal(t, map[string]string{"order": "o-7"}, e.Metadata, "the hold's metadata")
	requireDecimal(t, "30", e.Balance)
	requireWallet(t, l, "ann", "gems", "30", "0")

	hs, err := l.Holds(ctx, ledger.HoldQuery{HoldIDs: []string{h.ID}, Currency: "gems"})
	require.NoError(t, err)
	require.Len(t, hs, 1)
	require.Equal(t, ledger.HoldCaptured, hs[0].State)
	require.Equal(t, e.ID, hs[0].EntryID)
	require.True(t, e.CreatedOn.Equal(hs[0].ClosedOn), "closed when its entry was written")

	// A capture with its own reason and an item; the cap does not apply.
	require.NoError(t, l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "ann", Currency: "gems", Cap: ptr(dec("1"))}))
	h2 := mustHold(t, l, newHold("shop", "ann", "gems", "10"))
	e2, err := l.Capture(ctx, "shop", h2.ID, ledger.Capture{Reason: "sword delivered", Item: &ledger.Item{Name: "Sword", Data: []byte(`{"dmg":3}`)}})
	require.NoError(t, err)
	require.Equal(t, "sword delivered", e2.Reason)
	require.NotNil(t, e2.Item)
	require.Equal(t, "Sword", e2.Item.Name)
	inv, err := l.Inventory(ctx, ledger.InventoryQuery{UserIDs: []string{"ann"}})
	require.NoError(t, err)
	require.Len(t, inv, 1)
	require.Equal(t, e2.ID, inv[0].EntryID)
	requireWallet(t, l, "ann", "gems", "20", "0")

	// A capture may take a wallet to zero, and below it on a credit
	// line: the value was reserved.
	require.NoError(t, l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "bob", Floor: dec("-5")}))
	h3 := mustHold(t, l, newHold("shop", "bob", "", "5"))
	e3, err := l.Capture(ctx, "shop", h3.ID, ledger.Capture{})
	require.NoError(t, err)
	requireDecimal(t, "-5", e3.Balance)
	requireWallet(t, l, "bob", "", "-5", "0")
	requireVerified(t, l)
}

func testPartialCapture(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	h := mustHold(t, l, newHold("shop", "ann", "", "8"))
	_, err := l.Capture(ctx, "shop", h.ID, ledger.Capture{Amount: dec("8.01")})
	var ie *ledger.InvalidError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "Amount", ie.Field)
	_, err = l.Capture(ctx, "shop", h.ID, ledger.Capture{Amount: dec("-1")})
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "Amount", ie.Field)
	requireWallet(t, l, "ann", "", "10", "8")

	e, err := l.Capture(ctx, "shop", h.ID, ledger.Capture{Amount: dec("2.5")})
	require.NoError(t, err)
	requireDecimal(t, "-2.5", e.Amount)
	// The rest is released in the same step.
	requireWallet(t, l, "ann", "", "7.5", "0")
	mustCreate(t, l, entryIn("shop", "ann", "", "-7.5"))
	requireVerified(t, l)
}

func testRelease(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now))
	mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	h := mustHold(t, l, newHold("shop", "ann", "", "10"))
	clk.advance(time.Minute + 3)
	r, err := l.Release(ctx, "shop", h.ID)
	require.NoError(t, err)
	require.Equal(t, h.ID, r.ID)
	require.Equal(t, ledger.HoldReleased, r.State)
	require.True(t, clk.Now().Equal(r.ClosedOn), "ClosedOn %v", r.ClosedOn)
	require.Empty(t, r.EntryID)
	requireDecimal(t, "10", r.Amount)
	requireWallet(t, l, "ann", "", "10", "0")
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Len(t, es, 1, "a release writes no entry")
	mustCreate(t, l, entryIn("shop", "ann", "", "-10"))
	requireVerified(t, l)
}

func testSettlementErrors(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	h := mustHold(t, l, newHold("shop", "ann", "", "4"))

	_, err := l.Capture(ctx, "thief", h.ID, ledger.Capture{})
	require.ErrorIs(t, err, ledger.ErrForbidden)
	_, err = l.Release(ctx, "thief", h.ID)
	require.ErrorIs(t, err, ledger.ErrForbidden)
	unknown := id(1<<50, 1)
	_, err = l.Capture(ctx, "shop", unknown, ledger.Capture{})
	require.ErrorIs(t, err, ledger.ErrNotFound)
	_, err = l.Release(ctx, "shop", unknown)
	require.ErrorIs(t, err, ledger.ErrNotFound)
	requireWallet(t, l, "ann", "", "10", "4")

	_, err = l.Capture(ctx, "shop", h.ID, ledger.Capture{Amount: dec("1")})
	require.NoError(t, err)
	for name, op := range map[string]func() error{
		"capture": func() error { _, err := l.Capture(ctx, "shop", h.ID, ledger.Capture{}); return err },
		"release": func() error { _, err := l.Release(ctx, "shop", h.ID); return err },
	} {
		err := op()
		var hc *ledger.HoldClosedError
		require.ErrorAs(t, err, &hc, name)
		require.ErrorIs(t, err, ledger.ErrHoldClosed, name)
		require.Equal(t, h.ID, hc.HoldID)
		require.Equal(t, ledger.HoldCaptured, hc.State, name)
	}
	r := mustHold(t, l, newHold("shop", "ann", "", "1"))
	_, err = l.Release(ctx, "shop", r.ID)
	require.NoError(t, err)
	_, err = l.Capture(ctx, "shop", r.ID, ledger.Capture{})
	var hc *ledger.HoldClosedError
	require.ErrorAs(t, err, &hc)
	require.Equal(t, ledger.HoldReleased, hc.State)
	require.Contains(t, err.Error(), "released")
	requireWallet(t, l, "ann", "", "9", "0")
	requireVerified(t, l)
}

func testHoldExpiry(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	// No sweep: the rules alone must treat a due hold as expired.
	l, s := newLedger(t, ns, ledger.WithClock(clk.Now), ledger.WithHoldSweep(0))
	mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	nh := newHold("shop", "ann", "", "6")
	nh.Expires = clk.Now().Add(time.Minute)
	h := mustHold(t, l, nh)
	never := mustHold(t, l, newHold("shop", "ann", "", "1"))
	requireWallet(t, l, "ann", "", "10", "7")

	clk.advance(time.Minute - 1)
	requireWallet(t, l, "ann", "", "10", "7") // one nanosecond before
	_, err := l.CreateEntry(ctx, entryIn("shop", "ann", "", "-4"))
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)

	clk.advance(1) // the clock reads Expires: expired
	requireWallet(t, l, "ann", "", "10", "1")
	hs, err := l.Holds(ctx, ledger.HoldQuery{UserIDs: []string{"ann"}})
	require.NoError(t, err)
	require.Len(t, hs, 2)
	require.Equal(t, ledger.HoldExpired, hs[0].State, "reported expired before anything records it")
	require.True(t, h.Expires.Equal(hs[0].ClosedOn), "ClosedOn = Expires")
	require.Equal(t, ledger.HoldActive, hs[1].State)
	_, err = l.Capture(ctx, "shop", h.ID, ledger.Capture{})
	var hc *ledger.HoldClosedError
	require.ErrorAs(t, err, &hc)
	require.Equal(t, ledger.HoldExpired, hc.State)
	_, err = l.Release(ctx, "shop", h.ID)
	require.ErrorAs(t, err, &hc)
	require.Equal(t, ledger.HoldExpired, hc.State)
	for _, st := range []ledger.HoldState{ledger.HoldActive, ledger.HoldExpired} {
		got, err := l.Holds(ctx, ledger.HoldQuery{States: []ledger.HoldState{st}})
		require.NoError(t, err)
		require.Len(t, got, 1, st)
	}

	// The freed value is spendable, and new holds can use it, though the
	// store still counts the due hold until something records it.
	mustCreate(t, l, entryIn("shop", "ann", "", "-5"))
	_, err = l.Hold(ctx, newHold("shop", "ann", "", "4.01"))
	require.ErrorIs(t, err, ledger.ErrNotEnoughFunds)
	mustHold(t, l, newHold("shop", "ann", "", "4"))
	requireWallet(t, l, "ann", "", "5", "5")
	err = s.View(ctx, func(tx ledger.ReadTx) error {
		r, err := tx.Hold(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, ledger.HoldActive, r.State, "not recorded without a sweep")
		return nil
	})
	require.NoError(t, err)
	_, err = l.Release(ctx, "shop", never.ID)
	require.NoError(t, err)
	requireVerified(t, l)
}

func testHoldSweep(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	l, s := newLedger(t, ns, ledger.WithClock(clk.Now), ledger.WithHoldSweep(time.Millisecond))
	mustCreate(t, l, entryIn("bank", "ann", "", "1000"))
	mustCreate(t, l, entryIn("bank", "bob", "gems", "1000"))
	// More due holds than one sweep commit takes, in two wallets.
	var due []ledger.Hold
	for i := range 300 {
		nh := newHold("shop", []string{"ann", "bob"}[i%2], []string{"", "gems"}[i%2], "1")
		nh.Expires = clk.Now().Add(time.Duration(1+i%7) * time.Second)
		if i%3 == 0 {
			// The largest holds there are: a sweep commit must stay
			// within Limits.MaxBatchBytes.
			nh.Metadata = map[string]string{}
			for k := range 16 {
				nh.Metadata[fmt.Sprintf("%02d%s", k, strings.Repeat("k", 62))] = strings.Repeat("v", 1024)
			}
		}
		due = append(due, mustHold(t, l, nh))
	}
	keep := newHold("shop", "ann", "", "2")
	keep.Expires = clk.Now().Add(time.Hour)
	kept := mustHold(t, l, keep)
	requireWallet(t, l, "ann", "", "1000", "152")
	clk.advance(7 * time.Second)
	recorded := func() int {
		n := 0
		require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
			for r, err := range tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true}) {
				require.NoError(t, err)
				if r.State == ledger.HoldExpired {
					require.True(t, r.Expires.Equal(r.ClosedOn), "ClosedOn = Expires")
					n++
				}
			}
			return nil
		}))
		return n
	}
	require.Eventually(t, func() bool { return recorded() == len(due) }, 30*time.Second, 5*time.Millisecond, "the sweep records every due hold")
	requireWallet(t, l, "ann", "", "1000", "2")
	requireWallet(t, l, "bob", "gems", "1000", "0")
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		tot, _, err := tx.Total(ctx, ledger.TotalKey{UserID: "ann"})
		require.NoError(t, err)
		requireDecimal(t, "2", tot.Held, "the stored held amount is corrected")
		r, err := tx.Hold(ctx, kept.ID)
		require.NoError(t, err)
		require.Equal(t, ledger.HoldActive, r.State)
		return nil
	}))
	requireVerified(t, l)
	// Close stops the sweep: after it, nothing runs against the store.
	require.NoError(t, l.Close())
}

func testHoldIdempotency(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now), ledger.WithHoldSweep(0))
	mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	nh := newHold("shop", "ann", "", "4")
	nh.IdempotencyKey = "order-1"
	nh.Metadata = map[string]string{"order": "1"}
	nh.Expires = clk.Now().Add(time.Minute)
	h := mustHold(t, l, nh)
	again := mustHold(t, l, nh)
	require.Equal(t, h.ID, again.ID)
	requireWallet(t, l, "ann", "", "10", "4")

	for field, change := range map[string]func(*ledger.NewHold){
		"UserID":   func(n *ledger.NewHold) { n.UserID = "bob" },
		"Amount":   func(n *ledger.NewHold) { n.Amount = dec("5") },
		"Currency": func(n *ledger.NewHold) { n.Currency = "gems" },
		"Reason":   func(n *ledger.NewHold) { n.Reason = "other" },
		"Expires":  func(n *ledger.NewHold) { n.Expires = n.Expires.Add(1) },
		"Metadata": func(n *ledger.NewHold) { n.Metadata = nil },
	} {
		other := nh
		change(&other)
		_, err := l.Hold(ctx, other)
		var ic *ledger.IdempotencyConflictError
		require.ErrorAs(t, err, &ic, field)
		require.ErrorIs(t, err, ledger.ErrIdempotencyConflict)
		require.Equal(t, h.ID, ic.HoldID)
		require.Equal(t, []string{field}, ic.Fields)
	}
	// Another authority's key, and an entry's key, are other keys.
	other := nh
	other.AuthorityID = "arcade"
	require.NotEqual(t, h.ID, mustHold(t, l, other).ID)
	ne := entryIn("shop", "ann", "", "-1")
	ne.IdempotencyKey = "order-1"
	mustCreate(t, l, ne)

	// A retry returns the hold as it is now: captured, or expired (even
	// though its Expires has passed, which a new hold may not have).
	_, err := l.Capture(ctx, "shop", h.ID, ledger.Capture{})
	require.NoError(t, err)
	again = mustHold(t, l, nh)
	require.Equal(t, ledger.HoldCaptured, again.State)
	nh2 := newHold("shop", "ann", "", "1")
	nh2.IdempotencyKey = "order-2"
	nh2.Expires = clk.Now().Add(time.Second)
	h2 := mustHold(t, l, nh2)
	clk.advance(time.Second)
	again = mustHold(t, l, nh2)
	require.Equal(t, h2.ID, again.ID)
	require.Equal(t, ledger.HoldExpired, again.State)
	requireWallet(t, l, "ann", "", "5", "4") // arcade's 4 remain held
	requireVerified(t, l)
}

func testHoldQuery(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now), ledger.WithHoldSweep(0), ledger.WithPageSize(3))
	for _, u := range []string{"ann", "bob", "cat"} {
		mustCreate(t, l, entryIn("bank", u, "", "100"))
		mustCreate(t, l, entryIn("bank", u, "gems", "100"))
	}
	var all []ledger.Hold
	for i := range 18 {
		clk.advance(time.Millisecond)
		nh := newHold([]string{"shop", "arcade"}[i%2], []string{"ann", "bob", "cat"}[i%3], []string{"", "gems"}[i/9], "1")
		if i%4 == 0 {
			nh.Expires = clk.Now().Add(time.Second)
		}
		all = append(all, mustHold(t, l, nh))
	}
	_, err := l.Capture(ctx, "shop", all[2].ID, ledger.Capture{})
	require.NoError(t, err)
	_, err = l.Release(ctx, "arcade", all[3].ID)
	require.NoError(t, err)
	clk.advance(2 * time.Second) // every hold with an expiry is due
	state := func(i int) ledger.HoldState {
		switch {
		case i == 2:
			return ledger.HoldCaptured
		case i == 3:
			return ledger.HoldReleased
		case i%4 == 0:
			return ledger.HoldExpired
		}
		return ledger.HoldActive
	}
	want := func(f func(i int, h ledger.Hold) bool) []string {
		out := []string{}
		for i, h := range all {
			if f(i, h) {
				out = append(out, h.ID)
			}
		}
		return out
	}
	got := func(q ledger.HoldQuery) []string {
		t.Helper()
		hs, err := l.Holds(ctx, q)
		require.NoError(t, err)
		out := []string{}
		for _, h := range hs {
			i := indexOfHold(all, h.ID)
			require.Equal(t, state(i), h.State, "hold %d", i)
			out = append(out, h.ID)
		}
		var seq []string
		for h, err := range l.HoldsSeq(ctx, q) {
			require.NoError(t, err)
			seq = append(seq, h.ID)
		}
		if len(out) == 0 {
			require.Empty(t, seq)
		} else {
			require.Equal(t, out, seq, "HoldsSeq yields what Holds returns")
		}
		return out
	}
	require.Equal(t, want(func(i int, h ledger.Hold) bool { return h.Currency == "" }), got(ledger.HoldQuery{}))
	require.Equal(t, want(func(i int, h ledger.Hold) bool { return h.Currency == "gems" }), got(ledger.HoldQuery{Currency: "gems"}))
	require.Equal(t, want(func(i int, h ledger.Hold) bool { return h.Currency == "" && h.UserID != "bob" }),
		got(ledger.HoldQuery{UserIDs: []string{"cat", "ann", "ann"}}))
	require.Equal(t, want(func(i int, h ledger.Hold) bool { return h.Currency == "gems" && h.AuthorityID == "arcade" }),
		got(ledger.HoldQuery{Currency: "gems", AuthorityIDs: []string{"arcade"}}))
	require.Equal(t, want(func(i int, h ledger.Hold) bool { return h.Currency == "" && state(i) == ledger.HoldExpired }),
		got(ledger.HoldQuery{States: []ledger.HoldState{ledger.HoldExpired}}))
	require.Equal(t, want(func(i int, h ledger.Hold) bool {
		return h.Currency == "" && (state(i) == ledger.HoldActive || state(i) == ledger.HoldCaptured)
	}), got(ledger.HoldQuery{States: []ledger.HoldState{ledger.HoldCaptured, ledger.HoldActive}}))
	require.Equal(t, []string{all[1].ID, all[4].ID}, got(ledger.HoldQuery{HoldIDs: []string{all[4].ID, all[1].ID, all[12].ID, id(9, 9)}}),
		"by ID, in the query's currency, unknown IDs left out")
	require.Equal(t, want(func(i int, h ledger.Hold) bool { return h.Currency == "" && i > 4 }), got(ledger.HoldQuery{After: all[4].ID}))
	require.Equal(t, want(func(i int, h ledger.Hold) bool { return h.Currency == "" && i > 1 && i < 5 }), got(ledger.HoldQuery{After: all[1].ID, Limit: 3}))
	require.Equal(t, want(func(i int, h ledger.Hold) bool { return h.Currency == "" && h.UserID == "ann" && i > 0 && i < 7 }),
		got(ledger.HoldQuery{UserIDs: []string{"ann"}, After: all[0].ID, Limit: 2}))

	for name, q := range map[string]ledger.HoldQuery{
		"Limit":        {Limit: -1},
		"States":       {States: []ledger.HoldState{4}},
		"Currency":     {Currency: "not a currency"},
		"UserIDs":      {UserIDs: []string{""}},
		"AuthorityIDs": {AuthorityIDs: []string{strings.Repeat("a", 300)}},
		"HoldIDs":      {HoldIDs: []string{""}},
	} {
		_, err := l.Holds(ctx, q)
		var ie *ledger.InvalidError
		require.ErrorAs(t, err, &ie, name)
		require.Equal(t, name, ie.Field)
	}
}

func indexOfHold(all []ledger.Hold, id string) int {
	for i, h := range all {
		if h.ID == id {
			return i
		}
	}
	return -1
}

func testInvalidHolds(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	l, s := newLedger(t, ns, ledger.WithClock(clk.Now))
	mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	valid := newHold("shop", "ann", "", "1")
	for field, change := range map[string]func(*ledger.NewHold){
		"AuthorityID":    func(n *ledger.NewHold) { n.AuthorityID = "" },
		"UserID":         func(n *ledger.NewHold) { n.UserID = strings.Repeat("u", 257) },
		"Currency":       func(n *ledger.NewHold) { n.Currency = "€" },
		"Amount":         func(n *ledger.NewHold) { n.Amount = dec("0") },
		"Reason":         func(n *ledger.NewHold) { n.Reason = "" },
		"Metadata":       func(n *ledger.NewHold) { n.Metadata = map[string]string{"": "x"} },
		"IdempotencyKey": func(n *ledger.NewHold) { n.IdempotencyKey = "\xff" },
		"Expires":        func(n *ledger.NewHold) { n.Expires = clk.Now() },
	} {
		nh := valid
		change(&nh)
		_, err := l.Hold(ctx, nh)
		var ie *ledger.InvalidError
		require.ErrorAs(t, err, &ie, field)
		require.Equal(t, field, ie.Field)
	}
	for name, amount := range map[string]string{"negative": "-1", "too many places": "0.000000001", "too large": "1e30"} {
		nh := valid
		nh.Amount = dec(amount)
		_, err := l.Hold(ctx, nh)
		require.ErrorIs(t, err, ledger.ErrInvalid, name)
	}
	for name, exp := range map[string]time.Time{
		"in the past":   clk.Now().Add(-time.Hour),
		"before 1970":   time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
		"past 2262":     time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
		"the year 9999": time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
	} {
		nh := valid
		nh.Expires = exp
		_, err := l.Hold(ctx, nh)
		var ie *ledger.InvalidError
		require.ErrorAs(t, err, &ie, name)
		require.Equal(t, "Expires", ie.Field, name)
	}
	for name, c := range map[string]ledger.Capture{
		"Item.Name": {Item: &ledger.Item{}},
		"Item.Data": {Item: &ledger.Item{Name: "x", Data: []byte("{")}},
		"Item.Used": {Item: &ledger.Item{Name: "x", Used: true}},
		"Reason":    {Reason: "\xff"},
	} {
		h := mustHold(t, l, valid)
		_, err := l.Capture(ctx, "shop", h.ID, c)
		var ie *ledger.InvalidError
		require.ErrorAs(t, err, &ie, name)
		require.Equal(t, name, ie.Field)
		_, err = l.Release(ctx, "shop", h.ID)
		require.NoError(t, err, "the hold is still active")
	}
	_, err := l.Capture(ctx, "shop", "", ledger.Capture{})
	require.ErrorIs(t, err, ledger.ErrInvalid)
	_, err = l.Release(ctx, "", "x")
	require.ErrorIs(t, err, ledger.ErrInvalid)
	// Nothing but the released holds was written.
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		n := 0
		for h, err := range tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true}) {
			require.NoError(t, err)
			require.Equal(t, ledger.HoldReleased, h.State)
			n++
		}
		require.Equal(t, 4, n)
		return nil
	}))
	requireWallet(t, l, "ann", "", "10", "0")
	requireVerified(t, l)
}

func testHoldHistory(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now))
	mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	clk.advance(time.Second)
	before := clk.Now()
	h := mustHold(t, l, newHold("shop", "ann", "", "4"))
	clk.advance(time.Second)
	e, err := l.Capture(ctx, "shop", h.ID, ledger.Capture{Amount: dec("3")})
	require.NoError(t, err)
	clk.advance(time.Second)

	// AsOf answers Total: holds are reservations, not history.
	ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"ann"}, AsOf: before})
	require.NoError(t, err)
	require.Len(t, ws, 1)
	requireDecimal(t, "10", ws[0].Total)
	ws, err = l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"ann"}})
	require.NoError(t, err)
	requireDecimal(t, "7", ws[0].Total)
	// Entries lists the capture's entry like any other.
	es, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"ann"}})
	require.NoError(t, err)
	require.Len(t, es, 2)
	require.Equal(t, e.ID, es[1].ID)
	require.Equal(t, h.ID, es[1].HoldID)
	// Reversing the capture gives the value back, as for any entry.
	rev, err := l.Reverse(ctx, "shop", e.ID, "refund")
	require.NoError(t, err)
	require.Len(t, rev, 1)
	require.Empty(t, rev[0].HoldID)
	requireWallet(t, l, "ann", "", "10", "0")
	requireVerified(t, l)
}

func testHoldExportImport(t *testing.T, ns NewStore) {
	ctx := context.Background()
	clk := newManualClock()
	l, _ := newLedger(t, ns, ledger.WithClock(clk.Now), ledger.WithHoldSweep(0))
	mustCreate(t, l, entryIn("bank", "ann", "", "100"))
	mustCreate(t, l, entryIn("bank", "bob", "gems", "100"))
	require.NoError(t, l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "cat", Floor: dec("-3")}))
	active := newHold("shop", "ann", "", "10")
	active.IdempotencyKey = "k"
	active.Metadata = map[string]string{"order": "9"}
	active.Expires = clk.Now().Add(time.Hour + 1)
	mustHold(t, l, active)
	mustHold(t, l, newHold("shop", "cat", "", "3"))
	c := mustHold(t, l, newHold("shop", "bob", "gems", "7"))
	_, err := l.Capture(ctx, "shop", c.ID, ledger.Capture{Amount: dec("5"), Item: &ledger.Item{Name: "Gem pack"}})
	require.NoError(t, err)
	r := mustHold(t, l, newHold("shop", "ann", "", "1"))
	_, err = l.Release(ctx, "shop", r.ID)
	require.NoError(t, err)
	soon := newHold("shop", "ann", "", "2")
	soon.Expires = clk.Now().Add(time.Second)
	mustHold(t, l, soon)
	clk.advance(time.Second) // due, not recorded

	var buf strings.Builder
	require.NoError(t, l.Export(ctx, &buf))
	require.Contains(t, buf.String(), `"version":6`)
	l2, _ := newLedger(t, ns, ledger.WithClock(clk.Now), ledger.WithHoldSweep(0))
	require.NoError(t, ledger.Import(ctx, l2, strings.NewReader(buf.String())))
	for _, w := range []struct{ user, cur string }{{"ann", ""}, {"bob", "gems"}, {"cat", ""}} {
		a, err := l.Balance(ctx, w.user, w.cur)
		require.NoError(t, err)
		b, err := l2.Balance(ctx, w.user, w.cur)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(a), fmt.Sprint(b), "%s %q", w.user, w.cur)
	}
	requireWallet(t, l2, "ann", "", "100", "10")
	for _, cur := range []string{"", "gems"} {
		a, err := l.Holds(ctx, ledger.HoldQuery{Currency: cur})
		require.NoError(t, err)
		b, err := l2.Holds(ctx, ledger.HoldQuery{Currency: cur})
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(a), fmt.Sprint(b))
	}
	// The key came along, and the holds still settle.
	again, err := l2.Hold(ctx, active)
	require.NoError(t, err)
	_, err = l2.Capture(ctx, "shop", again.ID, ledger.Capture{})
	require.NoError(t, err)
	var buf2 strings.Builder
	require.NoError(t, l.Export(ctx, &buf2))
	require.Equal(t, buf.String(), buf2.String(), "export is deterministic")
	requireVerified(t, l2)
}

func testRacingHoldsAndSpends(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	require.NoError(t, l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "ann", Floor: dec("-10")}))
	mustCreate(t, l, entryIn("bank", "ann", "", "50"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var holds []ledger.Hold
	spent := dec("0")
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				var err error
				switch (g + i) % 4 {
				case 0, 1:
					var h ledger.Hold
					if h, err = l.Hold(ctx, newHold("shop", "ann", "", "3")); err == nil {
						mu.Lock()
						holds = append(holds, h)
						mu.Unlock()
					}
				case 2:
					if _, err = l.CreateEntry(ctx, entryIn("shop", "ann", "", "-2")); err == nil {
						mu.Lock()
						spent = spent.Add(dec("2"))
						mu.Unlock()
					}
				case 3:
					_, err = l.Transfer(ctx, ledger.NewTransfer{AuthorityID: "shop", FromUserID: "ann", ToUserID: "bob", Amount: dec("1"), Reason: "gift"})
					if err == nil {
						mu.Lock()
						spent = spent.Add(dec("1"))
						mu.Unlock()
					}
				}
				if err != nil && !errors.Is(err, ledger.ErrNotEnoughFunds) {
					t.Error(err)
				}
				b, err := l.Balance(ctx, "ann", "")
				if err != nil {
					t.Error(err)
					return
				}
				if b.Available.LessThan(dec("-10")) {
					t.Errorf("Available %s below the floor", b.Available)
				}
			}
		}()
	}
	wg.Wait()
	held := dec("0")
	for range holds {
		held = held.Add(dec("3"))
	}
	b := requireWallet(t, l, "ann", "", dec("50").Sub(spent).String(), held.String())
	require.False(t, b.Available.LessThan(dec("-10")), "Available %s", b.Available)
	require.True(t, b.Available.LessThan(dec("-9")), "the wallet was drained to within one spend of its floor: %s", b.Available)
	requireVerified(t, l)
}

func testRacingSettlements(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	mustCreate(t, l, entryIn("bank", "ann", "", "1000"))
	captured := 0
	for round := range 20 {
		h := mustHold(t, l, newHold("shop", "ann", "", "5"))
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, closed := 0, 0
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				capture := (g+round)%2 == 0
				if capture {
					_, err = l.Capture(ctx, "shop", h.ID, ledger.Capture{Amount: dec("2")})
				} else {
					_, err = l.Release(ctx, "shop", h.ID)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
					if capture {
						captured++
					}
				case errors.Is(err, ledger.ErrHoldClosed):
					closed++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 1, wins, "round %d: exactly one settlement wins", round)
		require.Equal(t, 7, closed)
	}
	requireWallet(t, l, "ann", "", fmt.Sprint(1000-2*captured), "0")
	requireVerified(t, l)
}

// testHoldCancelAtRandom places keyed holds and settles them under
// contexts that end at random moments. Every call has one of three
// outcomes, each true: success, the context's error alone (nothing
// written), or ErrUnknownOutcome, which a retry with the same key
// settles. Afterwards the wallet's held amount is exactly the sum of its
// active holds, and the ledger verifies.
func testHoldCancelAtRandom(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns)
	bg := context.Background()
	mustCreate(t, l, entryIn("bank", "ann", "", "100000"))
	const writers, each = 8, 20
	parallel(writers, func(w int) {
		r := rand.New(rand.NewPCG(uint64(w), 3))
		for i := range each {
			nh := newHold("shop", "ann", "", "1")
			nh.IdempotencyKey = fmt.Sprintf("w%d-%d", w, i)
			ctx, cancel := context.WithTimeout(bg, time.Duration(r.IntN(400))*time.Microsecond)
			h, err := l.Hold(ctx, nh)
			cancel()
			switch {
			case err == nil:
			case errors.Is(err, ledger.ErrUnknownOutcome), errors.Is(err, context.DeadlineExceeded):
				// Settle it: the retry returns the hold if the first
				// attempt committed, and places it if not.
				if h, err = l.Hold(bg, nh); err != nil {
					t.Errorf("retry of %s: %v", nh.IdempotencyKey, err)
					continue
				}
			default:
				t.Errorf("hold %s: %v", nh.IdempotencyKey, err)
				continue
			}
			ctx, cancel = context.WithTimeout(bg, time.Duration(r.IntN(400))*time.Microsecond)
			if i%2 == 0 {
				_, err = l.Capture(ctx, "shop", h.ID, ledger.Capture{})
			} else {
				_, err = l.Release(ctx, "shop", h.ID)
			}
			cancel()
			if err != nil && !errors.Is(err, ledger.ErrUnknownOutcome) && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("settle %s: %v", h.ID, err)
			}
		}
	})
	// A settlement whose caller gave up (ErrUnknownOutcome) may still be
	// committing: a write of its own commits after it, since commits
	// run in turn, so that the reads below see every settlement.
	mustCreate(t, l, entryIn("bank", "bob", "", "1"))
	hs, err := l.Holds(bg, ledger.HoldQuery{})
	require.NoError(t, err)
	require.Len(t, hs, writers*each, "one hold per key, none doubled")
	held, captured := decimal.Zero, decimal.Zero
	for _, h := range hs {
		switch h.State {
		case ledger.HoldActive:
			held = held.Add(h.Amount)
		case ledger.HoldCaptured:
			captured = captured.Add(h.Amount)
		}
	}
	requireWallet(t, l, "ann", "", decimal.NewFromInt(100000).Sub(captured).String(), held.String())
	requireVerified(t, l)
}

// testHoldClockPast2262: a hold may expire at the last instant the
// ledger records; once the clock reads past it (past what IDs encode),
// the hold holds nothing, and the sweep records it.
func testHoldClockPast2262(t *testing.T, ns NewStore) {
	ctx := context.Background()
	last := time.Unix(0, math.MaxInt64).UTC()
	clk := &manualClock{now: last.Add(-time.Hour)}
	l, s := newLedger(t, ns, ledger.WithClock(clk.Now), ledger.WithHoldSweep(time.Millisecond))
	mustCreate(t, l, entryIn("bank", "ann", "", "10"))
	nh := newHold("shop", "ann", "", "4")
	nh.Expires = last
	h := mustHold(t, l, nh)
	require.True(t, last.Equal(h.Expires))
	requireWallet(t, l, "ann", "", "10", "4")
	clk.advance(100 * 365 * 24 * time.Hour) // the year 2362
	requireWallet(t, l, "ann", "", "10", "0")
	hs, err := l.Holds(ctx, ledger.HoldQuery{})
	require.NoError(t, err)
	require.Equal(t, ledger.HoldExpired, hs[0].State)
	require.Eventually(t, func() bool {
		var st ledger.HoldState
		require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
			r, err := tx.Hold(ctx, h.ID)
			st = r.State
			return err
		}))
		return st == ledger.HoldExpired
	}, 10*time.Second, time.Millisecond, "the sweep records an expiry at the last instant")
	mustCreate(t, l, entryIn("shop", "ann", "", "-10"))
	requireVerified(t, l)
}
