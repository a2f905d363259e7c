// Package storetest is the conformance suite for [ledger.Store]
// implementations. A store passes it with one test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) ledger.Store { return memstore.New() })
//	}
//
// The suite checks the Store contract directly (transactions, rollback,
// scans, totals, isolation under concurrency) and then every ledger rule
// through a [ledger.Ledger] over the store, including a rapid
// state-machine test against a plain model. A store that passes can back
// a ledger.
package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// NewStore returns a new, empty store. Each call must return a store of
// its own. The suite closes the stores it makes (through the ledger that
// owns them, or directly); a factory may also close them in a t.Cleanup,
// so Close must tolerate a second call.
type NewStore func(t *testing.T) ledger.Store

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	t.Run("Contract", func(t *testing.T) { runContract(t, newStore) })
	t.Run("Rules", func(t *testing.T) { runRules(t, newStore) })
	t.Run("Use", func(t *testing.T) { runUse(t, newStore) })
	t.Run("History", func(t *testing.T) { runHistory(t, newStore) })
	t.Run("Concurrency", func(t *testing.T) { runConcurrency(t, newStore) })
	t.Run("Property", func(t *testing.T) { runProperty(t, newStore) })
	t.Run("Limits", func(t *testing.T) { runLimits(t, newStore) })
	t.Run("Wallets", func(t *testing.T) { runWallets(t, newStore) })
	t.Run("Holds", func(t *testing.T) { runHolds(t, newStore) })
	t.Run("Changes", func(t *testing.T) { runChanges(t, newStore) })
}

// newStore makes a store that is closed when the test ends.
func newStore(t *testing.T, ns NewStore) ledger.Store {
	t.Helper()
	s := ns(t)
	require.NotNil(t, s, "NewStore returned nil")
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newLedger makes a ledger over a new store; both close when the test
// ends. The store is returned too, for tests that reach under the ledger.
func newLedger(t *testing.T, ns NewStore, opts ...ledger.Option) (*ledger.Ledger, ledger.Store) {
	t.Helper()
	s := ns(t)
	require.NotNil(t, s, "NewStore returned nil")
	l, err := ledger.New(s, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l, s
}

// clock is a test clock that moves forward by step on every reading.
type clock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func newClock() *clock {
	return &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), step: time.Second}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// id returns a well-formed entry ID for instant n (in nanoseconds) and
// sequence seq.
func id(n int64, seq uint32) string { return fmt.Sprintf("%016x%08x", n, seq) }

// requireDecimal fails unless got equals want numerically.
func requireDecimal(t require.TestingT, want string, got decimal.Decimal, msgAndArgs ...any) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	require.Truef(t, dec(want).Equal(got), "got %s, want %s %v", got, want, fmt.Sprint(msgAndArgs...))
}
