package badgerstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// closeStore closes s unless it is closed already.
func closeStore(t *testing.T, s ledger.Store) {
	t.Helper()
	if err := s.Close(); err != nil && !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("close: %v", err)
	}
}

// open opens the store in dir, closed when the test ends.
func open(t *testing.T, dir string, opts ...badgerstore.Option) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(dir, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { closeStore(t, s) })
	return s
}

// newLedger returns a ledger over s, closed (with s) when the test ends.
func newLedger(t *testing.T, s ledger.Store, opts ...ledger.Option) *ledger.Ledger {
	t.Helper()
	l, err := ledger.New(s, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, ledger.ErrClosed) {
			t.Errorf("close ledger: %v", err)
		}
	})
	return l
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// totals returns the wallets q selects as user -> total.
func totals(t *testing.T, l *ledger.Ledger, q ledger.WalletQuery) map[string]string {
	t.Helper()
	ws, err := l.Wallets(context.Background(), q)
	require.NoError(t, err)
	m := make(map[string]string, len(ws))
	for _, w := range ws {
		m[w.UserID] = w.Total.String()
	}
	return m
}

// requireNoNegativeWallet fails if any wallet of l is below zero.
func requireNoNegativeWallet(t *testing.T, l *ledger.Ledger) {
	t.Helper()
	ws, err := l.Wallets(context.Background(), ledger.WalletQuery{})
	require.NoError(t, err)
	for _, w := range ws {
		require.Falsef(t, w.Total.IsNegative(), "user %q has %s", w.UserID, w.Total)
	}
}
