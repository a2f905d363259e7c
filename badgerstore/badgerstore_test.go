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
