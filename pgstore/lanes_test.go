package pgstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

func TestCommitLanes(t *testing.T) {
	dbURL(t)
	var _ ledger.ConcurrentStore = newStore(t)
	require.Equal(t, pgstore.DefaultCommitLanes, newStore(t).CommitLanes())
	for _, n := range []int{1, 16} {
		require.Equal(t, n, newStore(t, pgstore.WithCommitLanes(n)).CommitLanes())
	}
	for _, n := range []int{0, -1, 17} {
		_, err := pgstore.Open(context.Background(), dbURL(t), pgstore.WithSchema(freshSchema(t)), pgstore.WithCommitLanes(n))
		require.True(t, errors.Is(err, ledger.ErrInvalid), "commit lanes %d: %v", n, err)
		require.ErrorContains(t, err, "commit lanes")
	}
}
