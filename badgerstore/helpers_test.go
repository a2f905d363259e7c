package badgerstore_test

import (
	"context"
	"errors"
	"slices"
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

// requireIndexesMatch checks that every index scan of s yields exactly
// the entries a walk of all records selects, in order: by user, by user
// in each currency, by authority, by (authority, user), either way.
func requireIndexesMatch(t *testing.T, s ledger.Store) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		var all []ledger.Record
		for r, err := range tx.Entries(ctx, ledger.Scan{}) {
			require.NoError(t, err)
			all = append(all, r)
		}
		users, auths, curs := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, r := range all {
			users[r.UserID], auths[r.AuthorityID], curs[r.Currency] = true, true, true
		}
		var scans []ledger.Scan
		for u := range users {
			scans = append(scans, ledger.Scan{UserID: u})
			for c := range curs {
				scans = append(scans, ledger.Scan{UserID: u, InCurrency: true, Currency: c})
			}
			for a := range auths {
				scans = append(scans, ledger.Scan{UserID: u, AuthorityID: a})
			}
		}
		for a := range auths {
			scans = append(scans, ledger.Scan{AuthorityID: a})
		}
		for _, sc := range scans {
			for _, rev := range []bool{false, true} {
				sc.Reverse = rev
				var want, got []string
				for _, r := range all {
					if (sc.UserID == "" || r.UserID == sc.UserID) && (sc.AuthorityID == "" || r.AuthorityID == sc.AuthorityID) &&
						(!sc.InCurrency || r.Currency == sc.Currency) {
						want = append(want, r.ID)
					}
				}
				if rev {
					slices.Reverse(want)
				}
				for r, err := range tx.Entries(ctx, sc) {
					require.NoError(t, err)
					got = append(got, r.ID)
				}
				require.Equal(t, want, got, "scan %+v", sc)
			}
		}
		return nil
	}))
}
