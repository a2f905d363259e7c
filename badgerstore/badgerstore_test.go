package badgerstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
	"github.com/walletledger/ledger/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ledger.Store {
		s, err := badgerstore.Open("", badgerstore.WithInMemory())
		require.NoError(t, err)
		t.Cleanup(func() { closeStore(t, s) })
		return s
	})
}

func TestConformanceOnDisk(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ledger.Store {
		s, err := badgerstore.Open(t.TempDir())
		require.NoError(t, err)
		t.Cleanup(func() { closeStore(t, s) })
		return s
	})
}

// TestConformanceSmallFootprint runs the suite on a store that keeps no
// total in memory it need not (WithCachedTotals(0): every total written
// to Badger is dropped from memory, and read again when needed) and
// checkpoints every few commits or index postings, so that every rule
// holds through evictions, reloads and checkpoints, scans read index
// blocks, and Views of older snapshots read the totals and postings
// those held.
func TestConformanceSmallFootprint(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ledger.Store {
		s, err := badgerstore.Open("", badgerstore.WithInMemory(), badgerstore.WithCachedTotals(0), badgerstore.WithCheckpoints(5, 3),
			badgerstore.WithCheckpointPostings(4))
		require.NoError(t, err)
		t.Cleanup(func() { closeStore(t, s) })
		return s
	})
}
