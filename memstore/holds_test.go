package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

var holdBase = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// hold makes an active hold numbered n (which orders it) in the wallet
// (user, currency), expiring expiresIn after holdBase (0: never).
func hold(n int, user, currency string, expiresIn time.Duration) ledger.HoldRecord {
	created := holdBase.Add(time.Duration(n) * time.Millisecond)
	h := ledger.HoldRecord{Hold: ledger.Hold{
		ID: ledger.FormatEntryID(created.UnixNano(), 0), AuthorityID: "a", UserID: user, Currency: currency,
		Amount: decimal.NewFromInt(int64(n)), CreatedOn: created,
	}}
	if expiresIn != 0 {
		h.Expires = holdBase.Add(expiresIn)
	}
	return h
}

func holdIDs(hs ...ledger.HoldRecord) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, h.ID)
	}
	return out
}

// holdViews reads what every hold index serves for the wallet (user,
// currency): the user's and the wallet's holds, and what expires
// overall and in the wallet.
func holdViews(t *testing.T, s *memstore.Store, user, currency string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	far := holdBase.Add(1000 * time.Hour)
	out := map[string][]string{}
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for name, seq := range map[string]func(func(ledger.HoldRecord, error) bool){
			"all":             tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true}),
			"user":            tx.Holds(ctx, ledger.HoldScan{UserID: user, AnyCurrency: true}),
			"wallet":          tx.Holds(ctx, ledger.HoldScan{UserID: user, Currency: currency}),
			"expiring":        tx.ExpiringHolds(ctx, "", "", far),
			"wallet expiring": tx.ExpiringHolds(ctx, user, currency, far),
		} {
			out[name] = []string{}
			for h, err := range seq {
				require.NoError(t, err)
				out[name] = append(out[name], h.ID)
			}
		}
		return nil
	}))
	return out
}

// A rolled-back Update leaves every hold index as it was: holds
// inserted out of order leave the ID-ordered lists, and a closed hold
// gets its state back and its place in both expiry indexes.
func TestHoldWritesRollBack(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	a, b, c := hold(1, "u", "gems", 2*time.Hour), hold(3, "u", "gems", time.Hour), hold(5, "u", "", 0)
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		for _, h := range []ledger.HoldRecord{a, b, c} {
			require.NoError(t, tx.InsertHold(ctx, h))
		}
		return nil
	}))
	before := holdViews(t, s, "u", "gems")
	require.Equal(t, []string{b.ID, a.ID}, before["wallet expiring"])

	err := s.Update(ctx, func(tx ledger.Tx) error {
		// Between a and b, and after c: both inserts are undone.
		mid, late := hold(2, "u", "gems", time.Hour), hold(7, "u", "gems", 3*time.Hour)
		mid.IdempotencyKey = "k"
		require.NoError(t, tx.InsertHold(ctx, mid))
		require.NoError(t, tx.InsertHold(ctx, late))
		require.NoError(t, tx.CloseHold(ctx, b.ID, ledger.HoldClose{State: ledger.HoldCaptured, ClosedOn: holdBase.Add(time.Minute), EntryID: "e"}))
		require.NoError(t, tx.CloseHold(ctx, c.ID, ledger.HoldClose{State: ledger.HoldReleased, ClosedOn: holdBase.Add(time.Minute)}))
		// A hold inserted and closed in the same transaction.
		require.NoError(t, tx.CloseHold(ctx, mid.ID, ledger.HoldClose{State: ledger.HoldReleased, ClosedOn: holdBase.Add(time.Minute)}))
		return errRollback
	})
	require.ErrorIs(t, err, errRollback)
	require.Equal(t, before, holdViews(t, s, "u", "gems"))
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for _, want := range []ledger.HoldRecord{b, c} {
			got, err := tx.Hold(ctx, want.ID)
			require.NoError(t, err)
			require.Equal(t, ledger.HoldActive, got.State)
			require.True(t, got.ClosedOn.IsZero())
			require.Empty(t, got.EntryID)
		}
		_, err := tx.HoldByIdempotencyKey(ctx, "a", "k")
		require.ErrorIs(t, err, ledger.ErrNotFound)
		return nil
	}))
}

// A caller may close the holds ExpiringHolds yields as it walks them,
// as an expiry sweep does, and may place holds while walking Holds:
// each is yielded once.
func TestHoldWalksSurviveWrites(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	var hs []ledger.HoldRecord
	for n := range 6 {
		hs = append(hs, hold(2*n, "u", "", time.Duration(6-n)*time.Hour))
	}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		for _, h := range hs {
			require.NoError(t, tx.InsertHold(ctx, h))
		}
		var swept []string
		for h, err := range tx.ExpiringHolds(ctx, "u", "", holdBase.Add(4*time.Hour)) {
			require.NoError(t, err)
			swept = append(swept, h.ID)
			require.NoError(t, tx.CloseHold(ctx, h.ID, ledger.HoldClose{State: ledger.HoldExpired, ClosedOn: h.Expires}))
		}
		require.Equal(t, holdIDs(hs[5], hs[4], hs[3], hs[2]), swept, "until is inclusive")

		var walked []string
		for h, err := range tx.Holds(ctx, ledger.HoldScan{UserID: "u"}) {
			require.NoError(t, err)
			walked = append(walked, h.ID)
			if h.ID == hs[1].ID {
				// Sorts before the hold just yielded: not yielded, and
				// it shifts nothing into being yielded twice.
				require.NoError(t, tx.InsertHold(ctx, hold(1, "u", "", 0)))
			}
		}
		require.Equal(t, holdIDs(hs...), walked)
		return nil
	}))
}

// A total's Held, kept apart from its value, rolls back with it: to its
// value before, to zero, or with a total stored for Held alone, away.
func TestHeldRollsBack(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	withHeld, without := ledger.TotalKey{UserID: "u"}, ledger.TotalKey{UserID: "v"}
	only := ledger.TotalKey{UserID: "w", Currency: "gems"}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		require.NoError(t, tx.SetTotal(ctx, withHeld, ledger.Total{Value: decimal.NewFromInt(5), LastEntryID: "e1", Held: decimal.NewFromInt(2)}))
		return tx.SetTotal(ctx, without, ledger.Total{Value: decimal.NewFromInt(7), LastEntryID: "e2"})
	}))
	err := s.Update(ctx, func(tx ledger.Tx) error {
		require.NoError(t, tx.SetTotal(ctx, withHeld, ledger.Total{Value: decimal.NewFromInt(5), LastEntryID: "e1"}))
		require.NoError(t, tx.SetTotal(ctx, without, ledger.Total{Value: decimal.NewFromInt(7), LastEntryID: "e2", Held: decimal.NewFromInt(3)}))
		require.NoError(t, tx.SetTotal(ctx, only, ledger.Total{Held: decimal.NewFromInt(4)}))
		got, ok, err := tx.Total(ctx, withHeld)
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, got.Held.IsZero(), "a Held set to zero reads as zero: got %s", got.Held)
		return errRollback
	})
	require.ErrorIs(t, err, errRollback)
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for _, tc := range []struct {
			name string
			k    ledger.TotalKey
			held string
		}{{"held restored", withHeld, "2"}, {"held back to zero", without, "0"}} {
			got, ok, err := tx.Total(ctx, tc.k)
			require.NoError(t, err)
			require.True(t, ok, tc.name)
			require.Equal(t, tc.held, got.Held.String(), tc.name)
		}
		_, ok, err := tx.Total(ctx, only)
		require.NoError(t, err)
		require.False(t, ok, "a total stored for Held alone is gone")
		for range tx.UserTotals(ctx, "w") {
			t.Error("UserTotals yields a rolled-back total")
		}
		return nil
	}))
}

// An entry's HoldID leaves with the entry when its insert is rolled
// back: the next entry, which takes its slot, has none.
func TestHoldIDRollsBack(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	captured := rec(1, "u", "")
	captured.HoldID = "hold-1"
	insert(t, s, true, captured)
	next := rec(2, "u", "")
	insert(t, s, false, next)
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		got, err := tx.Entry(ctx, next.ID)
		require.NoError(t, err)
		require.Empty(t, got.HoldID)
		_, err = tx.Entry(ctx, captured.ID)
		require.ErrorIs(t, err, ledger.ErrNotFound)
		return nil
	}))
}
