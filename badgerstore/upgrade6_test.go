package badgerstore_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// balanceLines describes every wallet of users as
// testdata/format5.want.txt does, then the feed's length.
func balanceLines(t *testing.T, l *ledger.Ledger, users ...string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, u := range users {
		bs, err := l.Balances(ctx, u)
		require.NoError(t, err)
		for _, b := range bs {
			out = append(out, fmt.Sprintf("%s %q total=%s held=%s available=%s floor=%s", b.UserID, b.Currency, b.Total, b.Held, b.Available, b.Floor))
		}
	}
	n := 0
	for _, err := range l.Changes(ctx, ledger.ChangeQuery{}) {
		require.NoError(t, err)
		n++
	}
	return append(out, fmt.Sprintf("changes %d", n))
}

// TestUpgradeFormat5 opens a directory written by the release before
// totals lived in memory (format 5: testdata/format5.tar.gz, made by
// testdata/format5.go.txt, with two currencies, limits, a transfer, a
// reversal and an active hold) and finds every balance and the feed as
// that release read them (testdata/format5.want.txt), the ledger
// consistent, and the directory marked format 6. Entries written after
// the upgrade, whose totals are deferred, are there after a Close and
// after an Open that must rebuild them: the copy taken before Close has
// no checkpoint of them.
func TestUpgradeFormat5(t *testing.T) {
	ctx := context.Background()
	dir := untar(t, filepath.Join("testdata", "format5.tar.gz"))
	require.Equal(t, uint64(5), formatVersionOf(t, dir))
	b, err := os.ReadFile(filepath.Join("testdata", "format5.want.txt"))
	require.NoError(t, err)
	want := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	require.Len(t, want, 7)
	users := []string{"alice", "bob", "carol"}

	l := newLedger(t, open(t, dir))
	require.Equal(t, want, balanceLines(t, l, users...))
	require.NoError(t, l.Verify(ctx))
	for i := range 20 {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: users[i%3], Amount: dec("1.5"), Reason: "after"})
		require.NoError(t, err)
	}
	// A copy of the directory now holds the new entries but not their
	// totals (no checkpoint since): opening it rebuilds them.
	copied := copyDir(t, dir)
	got := balanceLines(t, l, users...)
	require.NoError(t, l.Close())
	require.Equal(t, uint64(badgerstore.FormatVersion), formatVersionOf(t, dir))
	require.NotEqual(t, want, got)

	for _, d := range []string{dir, copied} {
		l := newLedger(t, open(t, d))
		require.Equal(t, got, balanceLines(t, l, users...), "dir %s", d)
		require.NoError(t, l.Verify(ctx))
		require.NoError(t, l.Close())
	}
}

// copyDir copies the files of the store directory dir, open or not, as a
// crash at this moment would leave them (nothing writes meanwhile), into
// a new directory, and returns it. Badger's log files are large and
// mostly holes: cp keeps them so.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "copy")
	cmd := exec.Command("cp", "-R", "--sparse=always", dir, out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	return out
}
