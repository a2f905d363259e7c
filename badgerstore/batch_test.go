package badgerstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// bigBatch returns a batch of n entries, each for a user of its own,
// with an idempotency key and an item carrying dataLen bytes of data.
func bigBatch(n, dataLen int) []ledger.NewEntry {
	data := fmt.Appendf(nil, "%q", strings.Repeat("x", dataLen-2))
	es := make([]ledger.NewEntry, n)
	for i := range es {
		es[i] = ledger.NewEntry{
			AuthorityID: "authority-1", UserID: fmt.Sprintf("user-%05d", i), Amount: dec("1.25"),
			Reason: "a reason of forty bytes, give or take...", IdempotencyKey: fmt.Sprint("key-", i),
			Item: &ledger.Item{Name: "Soda Can", Data: data},
		}
	}
	return es
}

// TestLargestBatch commits a batch of the ledger's largest size,
// 10,000 entries within the byte budget, in one durable transaction on
// disk, in the default currency and in another (whose wallets take a
// key more each), each entry with its change: more keys than Badger's
// default MemTableSize lets a transaction write.
func TestLargestBatch(t *testing.T) {
	ctx := context.Background()
	n := ledger.DefaultLimits().MaxBatchEntries
	for _, currency := range []string{"", "gems"} {
		t.Run(fmt.Sprintf("64 bytes of item data, currency %q", currency), func(t *testing.T) {
			l := newLedger(t, open(t, t.TempDir()))
			batch := bigBatch(n, 64)
			for i := range batch {
				batch[i].Currency = currency
			}
			start := time.Now()
			es, err := l.CreateEntries(ctx, batch)
			require.NoError(t, err)
			require.Len(t, es, n)
			t.Logf("%d entries committed in %v", n, time.Since(start))
			inv, err := l.Inventory(ctx, ledger.InventoryQuery{UserIDs: []string{"user-09999"}})
			require.NoError(t, err)
			require.Len(t, inv, 1)
		})
	}
}

// TestTransactionTooLarge shows the error for a transaction beyond
// Badger's limit: in memory, where every value counts in full.
func TestTransactionTooLarge(t *testing.T) {
	ctx := context.Background()
	// The ledger's own budget refuses such a batch before it reaches the
	// store; one raised past what this store is configured for shows
	// the store's error.
	l := newLedger(t, open(t, "", badgerstore.WithInMemory()), ledger.WithLimits(ledger.Limits{MaxBatchBytes: 64 << 20}))
	_, err := l.CreateEntries(ctx, bigBatch(ledger.DefaultLimits().MaxBatchEntries, 1024))
	require.ErrorIs(t, err, badger.ErrTxnTooBig)
	require.ErrorContains(t, err, "badgerstore: transaction too large")
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Empty(t, es, "nothing of the batch is written")
}
