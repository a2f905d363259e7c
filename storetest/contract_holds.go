package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runHoldContract checks what the Store contract holds for holds: their
// records, keys, scans, the expiry index, closing, rollback, and the
// held part of a wallet's total.
func runHoldContract(t *testing.T, ns NewStore) {
	t.Run("Records", func(t *testing.T) { testHoldRecords(t, ns) })
	t.Run("IdempotencyKeys", func(t *testing.T) { testHoldKeys(t, ns) })
	t.Run("Scans", func(t *testing.T) { testHoldScans(t, ns) })
	t.Run("Expiring", func(t *testing.T) { testExpiringHolds(t, ns) })
	t.Run("Close", func(t *testing.T) { testCloseHold(t, ns) })
	t.Run("Rollback", func(t *testing.T) { testHoldRollback(t, ns) })
	t.Run("HeldTotals", func(t *testing.T) { testHeldTotals(t, ns) })
	t.Run("ReturnedMemoryIsCallers", func(t *testing.T) { testHoldMemory(t, ns) })
}

var holdBase = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// holdRecord builds a test hold; n orders it and seeds its fields.
// expiresIn is the expiry after holdBase, 0 for none.
func holdRecord(n int, user, auth, currency string, expiresIn time.Duration) ledger.HoldRecord {
	created := holdBase.Add(time.Duration(n)*time.Millisecond + 123)
	h := ledger.HoldRecord{Hold: ledger.Hold{
		ID:          id(created.UnixNano(), uint32(n)),
		AuthorityID: auth,
		UserID:      user,
		Currency:    currency,
		Amount:      decimal.New(int64(n*37%500+1), -2),
		Reason:      fmt.Sprintf("hold %d", n),
		CreatedOn:   created,
	}}
	if expiresIn != 0 {
		h.Expires = holdBase.Add(expiresIn + 456) // nanoseconds must survive
	}
	if n%2 == 0 {
		h.Metadata = map[string]string{"order": fmt.Sprintf("o-%d", n), "é": "ü\x00 \"q\""}
	}
	return h
}

func insertHolds(t *testing.T, s ledger.Store, hs ...ledger.HoldRecord) {
	t.Helper()
	require.NoError(t, s.Update(context.Background(), func(tx ledger.Tx) error {
		for _, h := range hs {
			if err := tx.InsertHold(context.Background(), h); err != nil {
				return err
			}
		}
		return nil
	}))
}

// requireSameHold fails unless got holds exactly what want holds.
func requireSameHold(t require.TestingT, want, got ledger.HoldRecord) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.AuthorityID, got.AuthorityID, want.ID)
	require.Equal(t, want.UserID, got.UserID, want.ID)
	require.Equal(t, want.Currency, got.Currency, want.ID)
	require.Truef(t, want.Amount.Equal(got.Amount), "%s Amount: got %s, want %s", want.ID, got.Amount, want.Amount)
	require.Equal(t, want.Reason, got.Reason, want.ID)
	if len(want.Metadata) == 0 {
		require.Empty(t, got.Metadata, "%s Metadata", want.ID)
	} else {
		require.Equal(t, want.Metadata, got.Metadata, "%s Metadata", want.ID)
	}
	for _, f := range []struct {
		name      string
		want, got time.Time
	}{{"CreatedOn", want.CreatedOn, got.CreatedOn}, {"Expires", want.Expires, got.Expires}, {"ClosedOn", want.ClosedOn, got.ClosedOn}} {
		require.Truef(t, f.want.Equal(f.got), "%s %s: got %v, want %v", want.ID, f.name, f.got, f.want)
		require.Equal(t, f.want.IsZero(), f.got.IsZero(), "%s %s zero", want.ID, f.name)
		if !f.got.IsZero() {
			require.Equal(t, time.UTC, f.got.Location(), "%s %s in UTC", want.ID, f.name)
		}
	}
	require.Equal(t, want.State, got.State, "%s State", want.ID)
	require.Equal(t, want.EntryID, got.EntryID, "%s EntryID", want.ID)
	require.Equal(t, want.IdempotencyKey, got.IdempotencyKey, "%s IdempotencyKey", want.ID)
}

func collectHolds(t *testing.T, seq func(func(ledger.HoldRecord, error) bool)) []ledger.HoldRecord {
	t.Helper()
	var out []ledger.HoldRecord
	for h, err := range seq {
		require.NoError(t, err)
		out = append(out, h)
	}
	return out
}

func holdIDs(hs []ledger.HoldRecord) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, h.ID)
	}
	return out
}

func testHoldRecords(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	a := holdRecord(1, "u", "shop", "", 0)
	b := holdRecord(2, "u", "shop", "gems", time.Hour)
	b.IdempotencyKey = "k-b"
	c := holdRecord(3, "v", "arcade", "a-very.long_currency-code-32byte", time.Minute)
	c.Amount = dec("12345678901234567890.12345678")
	// A closed hold, as Import writes it, is kept as given.
	d := holdRecord(4, "v", "shop", "", time.Hour)
	d.State, d.ClosedOn, d.EntryID = ledger.HoldCaptured, holdBase.Add(time.Minute+789), id(1<<41, 3)
	e := holdRecord(5, "w", "shop", "", time.Hour)
	e.State, e.ClosedOn = ledger.HoldExpired, e.Expires
	insertHolds(t, s, a, b, c, d, e)
	view(t, s, func(tx ledger.ReadTx) {
		for _, want := range []ledger.HoldRecord{a, b, c, d, e} {
			got, err := tx.Hold(ctx, want.ID)
			require.NoError(t, err)
			requireSameHold(t, want, got)
		}
		_, err := tx.Hold(ctx, id(1, 1))
		require.ErrorIs(t, err, ledger.ErrNotFound)
		// Inserted closed, they are not in the expiry index.
		require.Equal(t, []string{c.ID, b.ID}, holdIDs(collectHolds(t, tx.ExpiringHolds(ctx, "", "", holdBase.Add(2*time.Hour)))))
	})
}

func testHoldKeys(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	a := holdRecord(1, "u", "shop", "", 0)
	a.IdempotencyKey = "k"
	b := holdRecord(2, "u", "arcade", "", 0)
	b.IdempotencyKey = "k" // keys are per authority
	entry := record(3, "u", "shop", false)
	entry.IdempotencyKey = "k" // and holds' keys are apart from entries'
	insertHolds(t, s, a, b)
	insert(t, s, entry)
	view(t, s, func(tx ledger.ReadTx) {
		got, err := tx.HoldByIdempotencyKey(ctx, "shop", "k")
		require.NoError(t, err)
		requireSameHold(t, a, got)
		got, err = tx.HoldByIdempotencyKey(ctx, "arcade", "k")
		require.NoError(t, err)
		requireSameHold(t, b, got)
		_, err = tx.HoldByIdempotencyKey(ctx, "shop", "other")
		require.ErrorIs(t, err, ledger.ErrNotFound)
		_, err = tx.HoldByIdempotencyKey(ctx, "nobody", "k")
		require.ErrorIs(t, err, ledger.ErrNotFound)
		r, err := tx.EntryByIdempotencyKey(ctx, "shop", "k")
		require.NoError(t, err)
		require.Equal(t, entry.ID, r.ID)
	})

	dupID := holdRecord(1, "x", "other", "", 0)
	dupKey := holdRecord(9, "x", "shop", "", 0)
	dupKey.IdempotencyKey = "k"
	for name, h := range map[string]ledger.HoldRecord{"same ID": dupID, "same key": dupKey} {
		err := s.Update(ctx, func(tx ledger.Tx) error {
			if err := tx.InsertHold(ctx, h); err != nil {
				return err
			}
			// A store that batches writes may report it here instead.
			_, err := tx.Hold(ctx, h.ID)
			return err
		})
		require.Error(t, err, name)
		view(t, s, func(tx ledger.ReadTx) {
			require.Len(t, collectHolds(t, tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true})), 2, name)
		})
	}
}

func testHoldScans(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	var all []ledger.HoldRecord
	for n := range 30 {
		all = append(all, holdRecord(n, []string{"u", "v", "w"}[n%3], []string{"a", "b"}[n/5%2], []string{"", "gems"}[n/2%2], time.Duration(n%4)*time.Hour))
	}
	// Inserted in no particular order; scans are in ID order.
	insertHolds(t, s, all[17:]...)
	insertHolds(t, s, all[:17]...)
	want := func(f func(ledger.HoldRecord) bool) []string {
		out := []string{}
		for _, h := range all {
			if f(h) {
				out = append(out, h.ID)
			}
		}
		return out
	}
	view(t, s, func(tx ledger.ReadTx) {
		got := collectHolds(t, tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true}))
		require.Equal(t, want(func(ledger.HoldRecord) bool { return true }), holdIDs(got))
		for i, h := range got {
			requireSameHold(t, all[i], h)
		}
		for _, cur := range []string{"", "gems", "none"} {
			require.Equal(t, want(func(h ledger.HoldRecord) bool { return h.Currency == cur }),
				holdIDs(collectHolds(t, tx.Holds(ctx, ledger.HoldScan{Currency: cur}))), "currency %q", cur)
			for _, u := range []string{"u", "v", "nobody"} {
				require.Equal(t, want(func(h ledger.HoldRecord) bool { return h.Currency == cur && h.UserID == u }),
					holdIDs(collectHolds(t, tx.Holds(ctx, ledger.HoldScan{UserID: u, Currency: cur}))), "user %q currency %q", u, cur)
			}
		}
		require.Equal(t, want(func(h ledger.HoldRecord) bool { return h.UserID == "w" }),
			holdIDs(collectHolds(t, tx.Holds(ctx, ledger.HoldScan{UserID: "w", AnyCurrency: true}))))
		after := all[10].ID
		require.Equal(t, want(func(h ledger.HoldRecord) bool { return h.ID > after }),
			holdIDs(collectHolds(t, tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true, After: after}))))
		require.Equal(t, want(func(h ledger.HoldRecord) bool { return h.ID > after && h.UserID == "v" && h.Currency == "gems" }),
			holdIDs(collectHolds(t, tx.Holds(ctx, ledger.HoldScan{UserID: "v", Currency: "gems", After: after}))))
		// An After between IDs works too.
		require.Equal(t, want(func(h ledger.HoldRecord) bool { return h.ID > after }),
			holdIDs(collectHolds(t, tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true, After: after[:20]}))[1:]))

		// Stopping early is allowed.
		for range tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true}) {
			break
		}
	})
}

func testExpiringHolds(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	// Expiries out of ID order, some equal, some never.
	specs := []struct {
		user, cur string
		in        time.Duration
	}{
		{"u", "", 3 * time.Hour}, {"u", "", time.Hour}, {"v", "", time.Hour}, {"u", "gems", 2 * time.Hour},
		{"u", "", 0}, {"v", "", 30 * time.Minute}, {"u", "", time.Hour}, {"w", "gems", 400 * 24 * time.Hour},
	}
	var hs []ledger.HoldRecord
	for n, sp := range specs {
		hs = append(hs, holdRecord(n, sp.user, "shop", sp.cur, sp.in))
	}
	insertHolds(t, s, hs...)
	expiring := func(user, cur string, until time.Time) []string {
		var out []string
		view(t, s, func(tx ledger.ReadTx) {
			out = holdIDs(collectHolds(t, tx.ExpiringHolds(ctx, user, cur, until)))
		})
		return out
	}
	id := func(n int) string { return hs[n].ID }
	far := holdBase.Add(1000 * 24 * time.Hour)
	require.Equal(t, []string{id(5), id(1), id(2), id(6), id(3), id(0), id(7)}, expiring("", "", far), "(Expires, ID) order, never-expiring holds left out")
	require.Equal(t, []string{id(5), id(1), id(2), id(6)}, expiring("", "", hs[1].Expires), "until is inclusive")
	require.Equal(t, []string{id(5)}, expiring("", "", hs[1].Expires.Add(-1)))
	require.Empty(t, expiring("", "", holdBase))
	require.Equal(t, []string{id(1), id(6), id(0)}, expiring("u", "", far))
	require.Equal(t, []string{id(1), id(6)}, expiring("u", "", hs[1].Expires))
	require.Equal(t, []string{id(3)}, expiring("u", "gems", far))
	require.Equal(t, []string{id(5), id(2)}, expiring("v", "", far))
	require.Empty(t, expiring("v", "gems", far))
	require.Empty(t, expiring("nobody", "", far))

	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		if err := tx.CloseHold(ctx, id(1), ledger.HoldClose{State: ledger.HoldReleased, ClosedOn: holdBase.Add(time.Minute)}); err != nil {
			return err
		}
		// The transaction sees its own close.
		got := collectHolds(t, tx.ExpiringHolds(ctx, "u", "", far))
		require.Equal(t, []string{id(6), id(0)}, holdIDs(got))
		return tx.CloseHold(ctx, id(5), ledger.HoldClose{State: ledger.HoldExpired, ClosedOn: hs[5].Expires})
	}))
	require.Equal(t, []string{id(2), id(6), id(3), id(0), id(7)}, expiring("", "", far), "closed holds leave the index")
	require.Equal(t, []string{id(6), id(0)}, expiring("u", "", far))
	require.Equal(t, []string{id(2)}, expiring("v", "", far))
}

func testCloseHold(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	a := holdRecord(1, "u", "shop", "gems", time.Hour)
	a.IdempotencyKey = "k"
	b := holdRecord(2, "u", "shop", "", 0)
	c := holdRecord(3, "u", "shop", "", time.Hour)
	insertHolds(t, s, a, b, c)
	entryID := id(1<<42, 9)
	ca, cb := holdBase.Add(time.Minute+11), holdBase.Add(2*time.Minute+22)
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		if err := tx.CloseHold(ctx, a.ID, ledger.HoldClose{State: ledger.HoldCaptured, ClosedOn: ca, EntryID: entryID}); err != nil {
			return err
		}
		// Read your writes.
		got, err := tx.Hold(ctx, a.ID)
		require.NoError(t, err)
		require.Equal(t, ledger.HoldCaptured, got.State)
		return tx.CloseHold(ctx, b.ID, ledger.HoldClose{State: ledger.HoldReleased, ClosedOn: cb})
	}))
	a.State, a.ClosedOn, a.EntryID = ledger.HoldCaptured, ca, entryID
	b.State, b.ClosedOn = ledger.HoldReleased, cb
	view(t, s, func(tx ledger.ReadTx) {
		for _, want := range []ledger.HoldRecord{a, b, c} {
			got, err := tx.Hold(ctx, want.ID)
			require.NoError(t, err)
			requireSameHold(t, want, got)
		}
		got, err := tx.HoldByIdempotencyKey(ctx, "shop", "k")
		require.NoError(t, err)
		requireSameHold(t, a, got)
		scanned := collectHolds(t, tx.Holds(ctx, ledger.HoldScan{UserID: "u", Currency: "gems"}))
		require.Len(t, scanned, 1)
		requireSameHold(t, a, scanned[0])
	})

	err := s.Update(ctx, func(tx ledger.Tx) error {
		if err := tx.CloseHold(ctx, id(5, 5), ledger.HoldClose{State: ledger.HoldReleased, ClosedOn: cb}); err != nil {
			return err
		}
		_, err := tx.Hold(ctx, c.ID)
		return err
	})
	require.ErrorIs(t, err, ledger.ErrNotFound, "closing a hold that does not exist fails the transaction")
}

func testHoldRollback(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	kept := holdRecord(1, "u", "shop", "", time.Hour)
	insertHolds(t, s, kept)
	k := ledger.TotalKey{UserID: "u"}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		return tx.SetTotal(ctx, k, ledger.Total{Value: dec("10"), LastEntryID: id(7, 7), Held: kept.Amount})
	}))
	boom := errors.New("boom")
	lost := holdRecord(2, "u", "shop", "", time.Hour)
	lost.IdempotencyKey = "k"
	err := s.Update(ctx, func(tx ledger.Tx) error {
		require.NoError(t, tx.InsertHold(ctx, lost))
		require.NoError(t, tx.CloseHold(ctx, kept.ID, ledger.HoldClose{State: ledger.HoldReleased, ClosedOn: holdBase.Add(time.Second)}))
		require.NoError(t, tx.SetTotal(ctx, k, ledger.Total{Value: dec("10"), LastEntryID: id(7, 7), Held: lost.Amount}))
		return boom
	})
	require.ErrorIs(t, err, boom)
	view(t, s, func(tx ledger.ReadTx) {
		_, err := tx.Hold(ctx, lost.ID)
		require.ErrorIs(t, err, ledger.ErrNotFound)
		_, err = tx.HoldByIdempotencyKey(ctx, "shop", "k")
		require.ErrorIs(t, err, ledger.ErrNotFound)
		got, err := tx.Hold(ctx, kept.ID)
		require.NoError(t, err)
		requireSameHold(t, kept, got)
		require.Equal(t, []string{kept.ID}, holdIDs(collectHolds(t, tx.Holds(ctx, ledger.HoldScan{UserID: "u"}))))
		require.Equal(t, []string{kept.ID}, holdIDs(collectHolds(t, tx.ExpiringHolds(ctx, "u", "", holdBase.Add(2*time.Hour)))))
		tot, ok, err := tx.Total(ctx, k)
		require.NoError(t, err)
		require.True(t, ok)
		requireDecimal(t, kept.Amount.String(), tot.Held)
	})
}

func testHeldTotals(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	only := ledger.TotalKey{UserID: "credit", Currency: "gems"} // a hold on a credit line, no entry
	both := ledger.TotalKey{UserID: "u"}
	huge := dec("-99999999999999999999.99999999")
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		if err := tx.SetTotal(ctx, only, ledger.Total{Held: dec("2.5")}); err != nil {
			return err
		}
		return tx.SetTotal(ctx, both, ledger.Total{Value: huge, LastEntryID: id(3, 3), Held: dec("12345678901234567890.12345678")})
	}))
	view(t, s, func(tx ledger.ReadTx) {
		got, ok, err := tx.Total(ctx, only)
		require.NoError(t, err)
		require.True(t, ok, "a total stored for Held alone exists")
		requireDecimal(t, "0", got.Value)
		requireDecimal(t, "2.5", got.Held)
		require.Empty(t, got.LastEntryID)
		got, ok, err = tx.Total(ctx, both)
		require.NoError(t, err)
		require.True(t, ok)
		requireDecimal(t, huge.String(), got.Value)
		requireDecimal(t, "12345678901234567890.12345678", got.Held)
		require.Equal(t, id(3, 3), got.LastEntryID)

		var rows []string
		for r, err := range tx.Totals(ctx, "", "gems", "") {
			require.NoError(t, err)
			rows = append(rows, r.UserID+"="+r.Value.String()+"/"+r.Held.String())
		}
		require.Equal(t, []string{"credit=0/2.5"}, rows)
		var cur []string
		for r, err := range tx.UserTotals(ctx, "credit") {
			require.NoError(t, err)
			cur = append(cur, r.Currency+"="+r.Held.String())
		}
		require.Equal(t, []string{"gems=2.5"}, cur)
		if p, ok := tx.(ledger.TotalsPrefetcher); ok {
			m, err := p.TotalsOf(ctx, []ledger.TotalKey{only, both})
			require.NoError(t, err)
			requireDecimal(t, "2.5", m[only].Held)
			requireDecimal(t, "12345678901234567890.12345678", m[both].Held)
		}
	})
}

func testHoldMemory(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	ctx := context.Background()
	h := holdRecord(2, "u", "shop", "", time.Hour)
	md := h.Metadata
	insertHolds(t, s, h)
	md["order"] = "changed after insert"
	view(t, s, func(tx ledger.ReadTx) {
		got, err := tx.Hold(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, "o-2", got.Metadata["order"], "the store keeps its own copy")
		got.Metadata["order"] = "changed after read"
		again, err := tx.Hold(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, "o-2", again.Metadata["order"], "a read returns memory of the caller's")
	})
}
