package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runLimits checks that the ledger's documented limits combine: every
// batch within Limits.MaxBatchEntries and Limits.MaxBatchBytes commits on
// the store, whatever mix of long IDs, long text and large item data
// fills it, alone or as many callers grouped into one commit.
func runLimits(t *testing.T, ns NewStore) {
	lim := ledger.DefaultLimits()
	// Each shape fills one batch up to both budgets as far as its entry
	// size allows.
	shapes := []struct {
		name  string
		entry func(i int) ledger.NewEntry
	}{
		{"many small entries", func(i int) ledger.NewEntry {
			return ledger.NewEntry{AuthorityID: "a", UserID: fmt.Sprintf("u%05d", i), Amount: decimal.NewFromInt(1), Reason: "r"}
		}},
		{"longest IDs and keys", func(i int) ledger.NewEntry {
			return ledger.NewEntry{
				AuthorityID: pad(fmt.Sprint("a", i%7), lim.MaxIDBytes), UserID: pad(fmt.Sprint("u", i), lim.MaxIDBytes),
				IdempotencyKey: pad(fmt.Sprint("k", i), lim.MaxIDBytes), Amount: decimal.NewFromInt(1), Reason: "r",
				Item: &ledger.Item{Name: pad(fmt.Sprint("n", i), lim.MaxItemNameBytes), Data: []byte(`1`)},
			}
		}},
		{"longest reasons", func(i int) ledger.NewEntry {
			return ledger.NewEntry{AuthorityID: "a", UserID: fmt.Sprint("u", i), Amount: decimal.NewFromInt(1), Reason: pad("r", lim.MaxReasonBytes)}
		}},
		{"largest item data", func(i int) ledger.NewEntry {
			data := `"` + pad("d", lim.MaxItemDataBytes-2) + `"`
			return ledger.NewEntry{AuthorityID: "a", UserID: fmt.Sprint("u", i), Amount: decimal.NewFromInt(1), Reason: "r",
				Item: &ledger.Item{Name: "n", Data: []byte(data)}}
		}},
	}
	t.Run("ExtremeAmounts", func(t *testing.T) { testExtremeAmounts(t, ns) })
	for _, sh := range shapes {
		t.Run("Batch/"+sh.name, func(t *testing.T) {
			es := fill(sh.entry, lim)
			l, _ := newLedger(t, ns)
			ctx := context.Background()
			got, err := l.CreateEntries(ctx, es)
			require.NoError(t, err, "a batch of %d entries, %d bytes, is within the limits", len(es), size(es))
			require.Len(t, got, len(es))
			require.NoError(t, l.Verify(ctx))

			// One more entry takes it over a limit: refused, nothing
			// written.
			l2, _ := newLedger(t, ns)
			over := append(es[:len(es):len(es)], sh.entry(len(es)))
			_, err = l2.CreateEntries(ctx, over)
			require.ErrorIs(t, err, ledger.ErrInvalid)
			all, err := l2.Entries(ctx, ledger.EntryQuery{})
			require.NoError(t, err)
			require.Empty(t, all, "nothing of a refused batch is written")
		})
		t.Run("Grouped/"+sh.name, func(t *testing.T) {
			// Callers writing at once fill each commit up to the budget:
			// all of them commit.
			es := fill(sh.entry, lim)
			if len(es) > 2000 {
				es = es[:2000]
			}
			l, _ := newLedger(t, ns)
			ctx := context.Background()
			errs := make([]error, len(es))
			parallel(len(es), func(i int) { _, errs[i] = l.CreateEntry(ctx, es[i]) })
			for i, err := range errs {
				require.NoError(t, err, "entry %d", i)
			}
			require.NoError(t, l.Verify(ctx))
		})
	}
}

// testExtremeAmounts: amounts written with extreme exponents, among
// ordinary writes grouped into one commit, fail nobody's write: the
// ledger keeps such amounts in its own form before the store sees them.
func testExtremeAmounts(t *testing.T, ns NewStore) {
	ctx := context.Background()
	l, _ := newLedger(t, ns)
	odd := []decimal.Decimal{
		decimal.RequireFromString("0e-10000"), decimal.RequireFromString("0e5000"), decimal.New(0, -1e6),
		decimal.RequireFromString("1." + strings.Repeat("0", 1001)),
	}
	const n = 64
	errs := make([]error, n)
	parallel(n, func(i int) {
		amount := decimal.NewFromInt(2)
		if i%4 == 0 {
			amount = odd[i/4%len(odd)]
		}
		_, errs[i] = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: fmt.Sprint("u", i%5), Amount: amount, Reason: "r"})
	})
	for i, err := range errs {
		require.NoError(t, err, "entry %d", i)
	}
	require.NoError(t, l.Verify(ctx))
	ws, err := l.Wallets(ctx, ledger.WalletQuery{})
	require.NoError(t, err)
	for _, w := range ws {
		require.GreaterOrEqual(t, w.Total.Exponent(), int32(-ledger.DefaultPlaces), "user %s's total %s", w.UserID, w.Total)
	}
}

// fill returns entries made by entry until one more would take the batch
// over MaxBatchEntries or MaxBatchBytes.
func fill(entry func(i int) ledger.NewEntry, lim ledger.Limits) []ledger.NewEntry {
	var es []ledger.NewEntry
	bytes := 0
	for len(es) < lim.MaxBatchEntries {
		e := entry(len(es))
		n := entrySize(e)
		if bytes+n > lim.MaxBatchBytes {
			break
		}
		es = append(es, e)
		bytes += n
	}
	return es
}

// entrySize is an entry's size as Limits.MaxBatchBytes documents it.
func entrySize(e ledger.NewEntry) int {
	n := ledger.EntryOverheadBytes + len(e.AuthorityID) + len(e.UserID) + len(e.Reason) + len(e.IdempotencyKey) + len(e.Currency)
	for k, v := range e.Metadata {
		n += len(k) + len(v)
	}
	if e.Item != nil {
		n += len(e.Item.Name) + len(e.Item.Data)
	}
	return n
}

func size(es []ledger.NewEntry) int {
	n := 0
	for _, e := range es {
		n += entrySize(e)
	}
	return n
}

// pad returns s padded with dots to n bytes.
func pad(s string, n int) string { return s + strings.Repeat(".", n-len(s)) }
