package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// testCancelAtRandom: writers whose contexts end at random moments
// (before they start, while queued, while their commit runs) each learn
// one of three outcomes, and each outcome is true: success means written,
// the context's error alone means nothing written, ErrUnknownOutcome
// means either, and a retry with the same idempotency key settles it.
// No write is lost or doubled, and the ledger verifies.
func testCancelAtRandom(t *testing.T, ns NewStore) {
	l, _ := newLedger(t, ns)
	bg := context.Background()
	const writers, each = 16, 20
	var mu sync.Mutex
	written, unknown, refused := map[string]bool{}, map[string]bool{}, map[string]bool{}
	parallel(writers, func(w int) {
		r := rand.New(rand.NewPCG(uint64(w), 1))
		for i := range each {
			key := fmt.Sprintf("w%d-%d", w, i)
			ctx, cancel := context.WithTimeout(bg, time.Duration(r.IntN(400))*time.Microsecond)
			var err error
			if i%4 == 0 {
				_, err = l.CreateEntries(ctx, []ledger.NewEntry{{AuthorityID: "a", UserID: fmt.Sprint("u", w%3), Amount: decimal.NewFromInt(1), Reason: "r", IdempotencyKey: key}})
			} else {
				_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: fmt.Sprint("u", w%3), Amount: decimal.NewFromInt(1), Reason: "r", IdempotencyKey: key})
			}
			cancel()
			mu.Lock()
			switch {
			case err == nil:
				written[key] = true
			case errors.Is(err, ledger.ErrUnknownOutcome):
				require.ErrorIs(t, err, context.DeadlineExceeded)
				unknown[key] = true
			case errors.Is(err, context.DeadlineExceeded):
				refused[key] = true
			default:
				t.Errorf("write %s: unexpected error %v", key, err)
			}
			mu.Unlock()
		}
	})
	t.Logf("written %d, unknown %d, refused %d", len(written), len(unknown), len(refused))
	require.Equal(t, writers*each, len(written)+len(unknown)+len(refused))

	stored := map[string]bool{}
	var rows []ledger.Entry
	// Settle the unknowns first: a retry with the key returns the entry
	// if the first attempt committed, and writes it if it did not.
	for key := range unknown {
		_, err := l.CreateEntry(bg, ledger.NewEntry{AuthorityID: "a", UserID: "x", Amount: decimal.NewFromInt(1), Reason: "r", IdempotencyKey: key})
		if errors.Is(err, ledger.ErrIdempotencyConflict) {
			stored[key] = true // the first attempt committed (for its own user)
			continue
		}
		require.NoError(t, err)
	}
	rows, err := l.Entries(bg, ledger.EntryQuery{UserIDs: []string{"u0", "u1", "u2"}})
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, e := range rows {
		k := fmt.Sprint(e.Reason, e.ID)
		require.False(t, seen[k])
		seen[k] = true
	}
	// Each committed write is one entry of u0..u2; refused ones none.
	require.Equal(t, len(written)+len(stored), len(rows), "entries of the writers' users")
	require.NoError(t, l.Verify(bg))
	ws, err := l.Wallets(bg, ledger.WalletQuery{UserIDs: []string{"u0", "u1", "u2"}})
	require.NoError(t, err)
	sum := decimal.Zero
	for _, w := range ws {
		sum = sum.Add(w.Total)
	}
	require.Equal(t, int64(len(rows)), sum.IntPart())
}
