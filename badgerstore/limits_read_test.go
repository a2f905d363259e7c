package badgerstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// A View answers a wallet's limits without reading Badger when no limits
// were ever stored for its user. Limits stored before Open, set in a
// later commit or refused with their commit, and a user's wallets
// without limits beside one with, must still read as Badger holds them
// in the View's snapshot.
func TestViewLimits(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	floor := dec("-10")
	lim := func(l *ledger.Ledger, user, cur string) ledger.Balance {
		t.Helper()
		b, err := l.Balance(ctx, user, cur)
		require.NoError(t, err)
		return b
	}

	s := open(t, dir)
	l := newLedger(t, s)
	require.NoError(t, l.SetLimits(ctx, "auth", ledger.WalletLimits{UserID: "u1", Floor: floor}))
	require.NoError(t, l.SetLimits(ctx, "auth", ledger.WalletLimits{UserID: "u1", Currency: "gems", Floor: dec("-1")}))
	require.True(t, floor.Equal(lim(l, "u1", "").Floor))
	require.True(t, lim(l, "u2", "").Floor.IsZero())
	require.NoError(t, l.Close())

	// Reopened: the limits come from Badger.
	s = open(t, dir)
	l = newLedger(t, s)
	require.True(t, floor.Equal(lim(l, "u1", "").Floor), "after reopening")
	require.True(t, dec("-1").Equal(lim(l, "u1", "gems").Floor), "after reopening")
	require.True(t, lim(l, "u1", "coins").Floor.IsZero(), "a wallet without limits of a user with some")
	require.True(t, lim(l, "u2", "").Floor.IsZero())
	bs, err := l.Balances(ctx, "u1")
	require.NoError(t, err)
	require.Len(t, bs, 2, "after reopening: %v", bs)
	require.True(t, floor.Equal(bs[0].Floor) && bs[1].Currency == "gems" && dec("-1").Equal(bs[1].Floor), "after reopening: %v", bs)

	// A View that began before limits were set reads its snapshot's
	// (none); one that begins after reads them.
	began, release := make(chan struct{}), make(chan struct{})
	viewed := make(chan error, 1)
	go func() {
		viewed <- s.View(ctx, func(tx ledger.ReadTx) error {
			close(began)
			<-release
			_, ok, err := tx.Limits(ctx, "u3", "")
			if err == nil && ok {
				t.Error("a View's snapshot from before SetLimits has the limits")
			}
			for l, err := range tx.UserLimits(ctx, "u3") {
				if err != nil {
					return err
				}
				t.Errorf("a View's snapshot from before SetLimits lists %v", l)
			}
			return err
		})
	}()
	<-began
	require.NoError(t, l.SetLimits(ctx, "auth", ledger.WalletLimits{UserID: "u3", Floor: floor}))
	close(release)
	require.NoError(t, <-viewed)
	require.True(t, floor.Equal(lim(l, "u3", "").Floor))
	err = s.View(ctx, func(tx ledger.ReadTx) error {
		got, ok, err := tx.Limits(ctx, "u3", "")
		require.True(t, ok)
		require.True(t, floor.Equal(got.Floor))
		n := 0
		for l, err := range tx.UserLimits(ctx, "u3") {
			require.NoError(t, err)
			require.True(t, floor.Equal(l.Floor))
			n++
		}
		require.Equal(t, 1, n)
		return err
	})
	require.NoError(t, err)
}

// Limits whose Update fails are not stored, and a View says so.
func TestViewLimitsOfFailedUpdate(t *testing.T) {
	ctx := context.Background()
	s := open(t, "", badgerstore.WithInMemory())
	err := s.Update(ctx, func(tx ledger.Tx) error {
		if err := tx.SetLimits(ctx, ledger.StoredLimits{WalletLimits: ledger.WalletLimits{UserID: "u", Floor: dec("-5")}, SetBy: "a"}); err != nil {
			return err
		}
		return ledger.ErrInvalid // the Update fails after setting them
	})
	require.ErrorIs(t, err, ledger.ErrInvalid)
	err = s.View(ctx, func(tx ledger.ReadTx) error {
		_, ok, err := tx.Limits(ctx, "u", "")
		require.False(t, ok)
		for l, err := range tx.UserLimits(ctx, "u") {
			require.NoError(t, err)
			t.Errorf("a failed Update's limits are listed: %v", l)
		}
		return err
	})
	require.NoError(t, err)
}
