package pgstore_test

import (
	"testing"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/storetest"
)

// BenchmarkLedger runs the ledger's benchmarks over pgstore, each store
// in a fresh schema of the LEDGER_PG_URL database.
func BenchmarkLedger(b *testing.B) {
	dbURL(b)
	storetest.Benchmark(b, func(b *testing.B) ledger.Store { return newStore(b) })
}
