package badgerstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// format3Dump is the dump of testdata/format3.go.txt, which wrote
// testdata/format3.want.txt with the release before holds: every
// record, total and limits s reads, one a line, decimals exactly and
// times with their location. It also checks what that program could
// not print: that no record reads with a hold and no total with a held
// amount.
func format3Dump(t *testing.T, s ledger.Store) []string {
	t.Helper()
	ctx := context.Background()
	d := func(v decimal.Decimal) string { return fmt.Sprintf("%se%d", v.Coefficient(), v.Exponent()) }
	tm := func(t time.Time) string {
		if t.IsZero() {
			return "zero"
		}
		return t.Format(time.RFC3339Nano) + "/" + t.Location().String()
	}
	var out []string
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for r, err := range tx.Entries(ctx, ledger.Scan{}) {
			require.NoError(t, err)
			require.Empty(t, r.HoldID, "entry %s of format 3 has no hold", r.ID)
			line := fmt.Sprintf("entry %s auth=%q user=%q cur=%q created=%s amount=%s reason=%q balance=%s authbalance=%s key=%q transfer=%q reverses=%q reversedby=%q",
				r.ID, r.AuthorityID, r.UserID, r.Currency, tm(r.CreatedOn), d(r.Amount), r.Reason, d(r.Balance), d(r.AuthorityBalance),
				r.IdempotencyKey, r.TransferID, r.Reverses, r.ReversedBy)
			for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
				line += fmt.Sprintf(" meta[%q]=%q", k, r.Metadata[k])
			}
			if it := r.Item; it != nil {
				line += fmt.Sprintf(" item=%q data=%q used=%t usedon=%s usedby=%q revoked=%t usekey=%q",
					it.Name, []byte(it.Data), it.Used, tm(it.UsedOn), it.UsedBy, it.Revoked, r.UseIdempotencyKey)
			}
			out = append(out, line)
		}
		var groups []ledger.TotalGroup
		for g, err := range tx.TotalGroups(ctx) {
			require.NoError(t, err)
			groups = append(groups, g)
		}
		slices.SortFunc(groups, func(a, b ledger.TotalGroup) int {
			return strings.Compare(a.AuthorityID+"\x00"+a.Currency, b.AuthorityID+"\x00"+b.Currency)
		})
		for _, g := range groups {
			for tot, err := range tx.Totals(ctx, g.AuthorityID, g.Currency, "") {
				require.NoError(t, err)
				require.Equal(t, decimal.Decimal{}, tot.Held, "total of %q in %q from %q has no held amount", tot.UserID, g.Currency, g.AuthorityID)
				out = append(out, fmt.Sprintf("total auth=%q cur=%q user=%q value=%s last=%s", g.AuthorityID, g.Currency, tot.UserID, d(tot.Value), tot.LastEntryID))
			}
		}
		for lim, err := range tx.AllLimits(ctx) {
			require.NoError(t, err)
			c := "none"
			if lim.Cap != nil {
				c = d(*lim.Cap)
			}
			out = append(out, fmt.Sprintf("limits user=%q cur=%q floor=%s cap=%s setby=%q seton=%s", lim.UserID, lim.Currency, d(lim.Floor), c, lim.SetBy, tm(lim.SetOn)))
		}
		return nil
	}))
	return out
}

func format3Want(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "format3.want.txt"))
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestUpgradeFormat3 opens a directory written by the release before
// holds (format 3: testdata/format3.tar.gz, made by
// testdata/format3.go.txt, with entries in three currencies, limits,
// items used and unused, transfers and reversals) and reads every
// record, total and limits as that release read them, with no hold
// and no held amount. The directory is format 4 from then on, and takes
// holds and held totals.
func TestUpgradeFormat3(t *testing.T) {
	ctx := context.Background()
	dir := untar(t, filepath.Join("testdata", "format3.tar.gz"))
	require.Equal(t, uint64(3), formatVersionOf(t, dir))
	want := format3Want(t)
	require.Len(t, want, 51)

	s := open(t, dir)
	require.Equal(t, want, format3Dump(t, s))
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		r, err := tx.EntryByIdempotencyKey(ctx, "shop", "order-1")
		require.NoError(t, err, "an entry's idempotency key of format 3 still answers")
		require.Equal(t, "Soda Can", r.Item.Name)
		_, err = tx.HoldByIdempotencyKey(ctx, "shop", "order-1")
		require.ErrorIs(t, err, ledger.ErrNotFound, "holds' keys are not entries'")
		for h, err := range tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true}) {
			require.NoError(t, err)
			t.Fatalf("a format 3 directory has no hold, got %s", h.ID)
		}
		return nil
	}))
	require.NoError(t, s.Close())
	require.Equal(t, uint64(badgerstore.FormatVersion), formatVersionOf(t, dir), "Open marked the directory with the new format")

	l := newLedger(t, open(t, dir))
	require.NoError(t, l.Verify(ctx))
	require.NoError(t, l.Close())

	// Holds on the upgraded directory, with their wallet's held amount.
	s = open(t, dir)
	wallet := ledger.TotalKey{UserID: "alice", Currency: "gems"}
	at := time.Date(2026, 10, 1, 0, 0, 0, 5, time.UTC)
	a := ledger.HoldRecord{Hold: ledger.Hold{
		ID: "18d2000000000000000000a1", AuthorityID: "shop", UserID: "alice", Currency: "gems", Amount: dec("3.50"),
		Reason: "pending order", CreatedOn: at, Expires: at.Add(time.Hour),
	}, IdempotencyKey: "order-1"}
	b := ledger.HoldRecord{Hold: ledger.Hold{
		ID: "18d2000000000000000000a2", AuthorityID: "shop", UserID: "alice", Currency: "gems", Amount: dec("1.25"),
		Reason: "deposit", CreatedOn: at.Add(time.Second),
	}}
	var before ledger.Total
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		tot, ok, err := tx.Total(ctx, wallet)
		require.NoError(t, err)
		require.True(t, ok)
		before = tot
		require.NoError(t, tx.InsertHold(ctx, a))
		require.NoError(t, tx.InsertHold(ctx, b))
		tot.Held = a.Amount.Add(b.Amount)
		return tx.SetTotal(ctx, wallet, tot)
	}))
	require.NoError(t, s.Close())

	s = open(t, dir)
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		got, err := tx.HoldByIdempotencyKey(ctx, "shop", "order-1")
		require.NoError(t, err)
		requireSameHold(t, a, got)
		var ids []string
		for h, err := range tx.Holds(ctx, ledger.HoldScan{UserID: "alice", AnyCurrency: true}) {
			require.NoError(t, err)
			ids = append(ids, h.ID)
		}
		require.Equal(t, []string{a.ID, b.ID}, ids)
		var expiring []string
		for h, err := range tx.ExpiringHolds(ctx, "alice", "gems", at.Add(time.Hour)) {
			require.NoError(t, err)
			expiring = append(expiring, h.ID)
		}
		require.Equal(t, []string{a.ID}, expiring)
		tot, ok, err := tx.Total(ctx, wallet)
		require.NoError(t, err)
		require.True(t, ok)
		requireSameDecimal(t, before.Value, tot.Value, "Value")
		require.Equal(t, before.LastEntryID, tot.LastEntryID)
		requireSameDecimal(t, dec("4.75"), tot.Held, "Held")
		return nil
	}))
}

// TestUpgradeFormat3Interrupted opens a directory whose move of totals
// from format 2 to 3 a crash interrupted (format 3 marked, the marker
// present, no total moved yet) with this version: it finishes the move
// and marks the directory format 4.
func TestUpgradeFormat3Interrupted(t *testing.T) {
	ref := newLedger(t, open(t, untar(t, filepath.Join("testdata", "format2.tar.gz"))))
	want := requireFormat2Data(t, ref)

	dir := untar(t, filepath.Join("testdata", "format2.tar.gz"))
	writeBadger(t, dir, badgerstore.MigrateKey, binary.AppendUvarint(nil, 2))
	writeBadger(t, dir, badgerstore.FormatKey, binary.AppendUvarint(nil, 3))
	l := newLedger(t, open(t, dir))
	require.Equal(t, want, requireFormat2Data(t, l))
	require.NoError(t, l.Close())
	require.Equal(t, uint64(badgerstore.FormatVersion), formatVersionOf(t, dir))
}
