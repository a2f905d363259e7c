package memstore_test

import (
	"testing"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
	"github.com/walletledger/ledger/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) ledger.Store { return memstore.New() })
}
