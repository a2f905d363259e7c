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

func BenchmarkLedger(b *testing.B) {
	storetest.Benchmark(b, func(*testing.B) ledger.Store { return memstore.New() })
}
