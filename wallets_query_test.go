package ledger_test

import (
	"context"
	"slices"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// Wallets answers for each named user once, in user order, whatever the
// order of q.UserIDs, and leaves the caller's slice as it was; a limit
// and After page over the named users; one named user's answer is its
// own slice.
func TestWalletsNamedUsers(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	for i, u := range []string{"a", "b", "c"} {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "auth", UserID: u, Reason: "r", Amount: decimal.NewFromInt(int64(i + 1))})
		require.NoError(t, err)
	}
	for _, ids := range [][]string{{"c", "a", "c", "b", "zz"}, {"a", "b", "c", "zz"}} {
		given := slices.Clone(ids)
		require.Equal(t, "a=1 b=2 c=3 zz=0", wallets(t, l, ledger.WalletQuery{UserIDs: ids}), "%q", given)
		require.Equal(t, given, ids, "the caller's UserIDs changed")
		require.Equal(t, "b=2 c=3", wallets(t, l, ledger.WalletQuery{UserIDs: ids, After: "a", Limit: 2}), "%q", given)
		require.Equal(t, "c=3", wallets(t, l, ledger.WalletQuery{UserIDs: ids, After: "b", Limit: 1}), "%q", given)
	}
	one, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"a"}})
	require.NoError(t, err)
	other, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"b"}})
	require.NoError(t, err)
	one = append(one, ledger.WalletTotal{UserID: "x"})
	require.Equal(t, "b", other[0].UserID)
	require.Equal(t, []string{"a", "x"}, []string{one[0].UserID, one[1].UserID})
	none, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"a"}, After: "a"})
	require.NoError(t, err)
	require.NotNil(t, none)
	require.Empty(t, none)
}
