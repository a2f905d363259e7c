package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// countingStore records the largest store transaction a ledger asks for,
// in the bytes Limits.MaxBatchBytes counts: each entry as [ledger.Limits]
// says, each total as its IDs and EntryOverheadBytes.
type countingStore struct {
	ledger.Store
	mu      sync.Mutex
	largest int
}

type countingTx struct {
	ledger.Tx
	n *int
}

func (s *countingStore) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	n := 0
	err := s.Store.Update(ctx, func(tx ledger.Tx) error {
		n = 0 // a retry starts again
		return fn(countingTx{tx, &n})
	})
	s.mu.Lock()
	s.largest = max(s.largest, n)
	s.mu.Unlock()
	return err
}

func (tx countingTx) InsertEntry(ctx context.Context, r ledger.Record) error {
	*tx.n += ledger.EntryOverheadBytes + len(r.AuthorityID) + len(r.UserID) + len(r.Reason) + len(r.IdempotencyKey)
	if r.Item != nil {
		*tx.n += len(r.Item.Name) + len(r.Item.Data)
	}
	return tx.Tx.InsertEntry(ctx, r)
}

func (tx countingTx) SetTotal(ctx context.Context, k ledger.TotalKey, t ledger.Total) error {
	*tx.n += ledger.EntryOverheadBytes + len(k.AuthorityID) + len(k.UserID) + len(k.Currency)
	return tx.Tx.SetTotal(ctx, k, t)
}

// TestImportLargeItems imports 200 entries with 60 KiB of item data each
// into badgerstore in memory, whose transactions are limited to 9.6 MiB:
// Import must split its writing pass by Limits.MaxBatchBytes, not only by
// a count of entries.
func TestImportLargeItems(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	data := []byte(`"` + strings.Repeat("x", 60<<10-2) + `"`)
	for i := range 200 {
		_, err := src.CreateEntry(ctx, ledger.NewEntry{
			AuthorityID: "shop", UserID: fmt.Sprint("user-", i%3), Amount: dec("1"), Reason: "large",
			Item: &ledger.Item{Name: fmt.Sprint("item ", i), Data: data},
		})
		require.NoError(t, err)
	}
	out := export(t, src)

	bs, err := badgerstore.Open("", badgerstore.WithInMemory())
	require.NoError(t, err)
	cs := &countingStore{Store: bs}
	dst, err := ledger.New(cs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = dst.Close() })
	require.NoError(t, ledger.Import(ctx, dst, strings.NewReader(out)))
	require.Equal(t, out, export(t, dst))
	require.LessOrEqual(t, cs.largest, ledger.DefaultLimits().MaxBatchBytes, "no transaction beyond the ledger's budget")
	require.Greater(t, cs.largest, ledger.DefaultLimits().MaxBatchBytes/2, "transactions are not needlessly small")
}
