package badgerstore_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

// feedTime formats a change's time for feedLine.
func feedTime(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return t.Format(time.RFC3339Nano)
}

// feedLine describes a change as testdata/format4.want.txt does.
func feedLine(c ledger.ChangeRecord) string {
	if c.Kind == ledger.ChangeLimits {
		cp := "none"
		if c.Limits.Cap != nil {
			cp = c.Limits.Cap.String()
		}
		return fmt.Sprintf("limits at=%s auth=%q user=%q cur=%q floor=%s cap=%s", feedTime(c.At), c.AuthorityID,
			c.Limits.UserID, c.Limits.Currency, c.Limits.Floor, cp)
	}
	return fmt.Sprintf("%s at=%s auth=%q ref=%s", c.Kind, feedTime(c.At), c.AuthorityID, c.Ref)
}

// pastFeed returns the changes an upgrade synthesizes from the records
// s holds, as feedLine describes them, in the order the feed's brief
// gives: a merge by time of entries, uses, limits, placed holds and
// closes, ties in that order and within a kind by ID (limits by user,
// then currency), and a use without a time right after its entry. It
// sorts everything in memory, as the store's streaming merge does not.
func pastFeed(t *testing.T, s ledger.Store) []string {
	t.Helper()
	ctx := context.Background()
	type change struct {
		at      time.Time
		rank    int
		id, id2 string
		line    string
	}
	var cs []change
	untimed := map[string]string{} // entry ID -> its use without a time
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for r, err := range tx.Entries(ctx, ledger.Scan{}) {
			require.NoError(t, err)
			cs = append(cs, change{at: r.CreatedOn, id: r.ID,
				line: feedLine(ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: r.CreatedOn, AuthorityID: r.AuthorityID, Ref: r.ID})})
			if it := r.Item; it != nil && it.Used {
				line := feedLine(ledger.ChangeRecord{Kind: ledger.ChangeItemUsed, At: it.UsedOn, AuthorityID: it.UsedBy, Ref: r.ID})
				if it.UsedOn.IsZero() {
					untimed[r.ID] = line
					continue
				}
				cs = append(cs, change{at: it.UsedOn, rank: 1, id: r.ID, line: line})
			}
		}
		for l, err := range tx.AllLimits(ctx) {
			require.NoError(t, err)
			cs = append(cs, change{at: l.SetOn, rank: 2, id: l.UserID, id2: l.Currency,
				line: feedLine(ledger.ChangeRecord{Kind: ledger.ChangeLimits, At: l.SetOn, AuthorityID: l.SetBy, Limits: &l.WalletLimits})})
		}
		for h, err := range tx.Holds(ctx, ledger.HoldScan{AnyCurrency: true}) {
			require.NoError(t, err)
			cs = append(cs, change{at: h.CreatedOn, rank: 3, id: h.ID,
				line: feedLine(ledger.ChangeRecord{Kind: ledger.ChangeHoldPlaced, At: h.CreatedOn, AuthorityID: h.AuthorityID, Ref: h.ID})})
			kind := map[ledger.HoldState]ledger.ChangeKind{ledger.HoldReleased: ledger.ChangeHoldReleased, ledger.HoldExpired: ledger.ChangeHoldExpired}[h.State]
			if kind != "" {
				cs = append(cs, change{at: h.ClosedOn, rank: 4, id: h.ID,
					line: feedLine(ledger.ChangeRecord{Kind: kind, At: h.ClosedOn, AuthorityID: h.AuthorityID, Ref: h.ID})})
			}
		}
		return nil
	}))
	slices.SortFunc(cs, func(a, b change) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.rank, b.rank), strings.Compare(a.id, b.id), strings.Compare(a.id2, b.id2))
	})
	var out []string
	for _, c := range cs {
		out = append(out, c.line)
		if u, ok := untimed[c.id]; ok && c.rank == 0 {
			out = append(out, u)
		}
	}
	return out
}

// requireSynthesizedFeed checks that s's feed is want, change by change,
// numbered from 1, and returns it.
func requireSynthesizedFeed(t *testing.T, s ledger.Store, want []string) []ledger.ChangeRecord {
	t.Helper()
	feed := readFeed(t, s, "")
	got := make([]string, len(feed))
	for i, c := range feed {
		got[i] = feedLine(c)
		require.Equal(t, fmt.Sprintf("%016x", i+1), c.Cursor, "change %d: %s", i, got[i])
	}
	require.Equal(t, want, got)
	return feed
}

// TestUpgradeFormat4 opens a directory written by the release before
// the change feed (format 4: testdata/format4.tar.gz, made by
// testdata/format4.go.txt, with holds of every state, limits, uses and
// changes sharing an instant) and finds the feed's past synthesized from
// its records: the changes testdata/format4.want.txt lists, which that
// release's reads gave, in that order, with cursors from the first.
// The ledger verifies the feed against the records, and a new change
// follows the synthesized ones.
func TestUpgradeFormat4(t *testing.T) {
	ctx := context.Background()
	dir := untar(t, filepath.Join("testdata", "format4.tar.gz"))
	require.Equal(t, uint64(4), formatVersionOf(t, dir))
	b, err := os.ReadFile(filepath.Join("testdata", "format4.want.txt"))
	require.NoError(t, err)
	want := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	require.Len(t, want, 27)

	s := open(t, dir)
	require.Equal(t, want, pastFeed(t, s), "the test's own reading of the records agrees")
	feed := requireSynthesizedFeed(t, s, want)
	require.NoError(t, s.Close())
	require.Equal(t, uint64(badgerstore.FormatVersion), formatVersionOf(t, dir))

	l := newLedger(t, open(t, dir))
	require.NoError(t, l.Verify(ctx), "the synthesized feed agrees with the records")
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "alice", Amount: dec("1"), Reason: "after"})
	require.NoError(t, err)
	var got []ledger.Change
	for c, err := range l.Changes(ctx, ledger.ChangeQuery{After: feed[len(feed)-1].Cursor}) {
		require.NoError(t, err)
		got = append(got, c)
	}
	require.Len(t, got, 1)
	require.Equal(t, ledger.ChangeEntry, got[0].Kind)
	require.Equal(t, e.ID, got[0].Entry.ID)
	require.Equal(t, fmt.Sprintf("%016x", len(feed)+1), got[0].Cursor)
	require.NoError(t, l.Verify(ctx))
}

// TestUpgradeFeedOfOlderFormats: the fixtures of formats 1 to 3 (see
// TestUpgradeFormat1, 2 and 3) upgrade to 5, and each one's feed's past
// is its entries, uses and limits in the order of the brief; format 1's
// uses, without a time, right after their entries.
func TestUpgradeFeedOfOlderFormats(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		kinds   map[string]int
	}{
		{"format1.tar.gz", map[string]int{"entry": 4, "item_used": 2}},
		{"format2.tar.gz", map[string]int{"entry": 16, "item_used": 2}},
		{"format3.tar.gz", map[string]int{"entry": 22, "item_used": 2, "limits": 3}}, // as format3.want.txt lists
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			s := open(t, untar(t, filepath.Join("testdata", tc.fixture)))
			want := pastFeed(t, s)
			kinds := map[string]int{}
			for _, line := range want {
				kinds[strings.Fields(line)[0]]++
			}
			require.Equal(t, tc.kinds, kinds, "every entry, use and limits of the fixture")
			feed := requireSynthesizedFeed(t, s, want)
			for i, c := range feed {
				if c.Kind == ledger.ChangeItemUsed && c.At.IsZero() {
					require.Equal(t, ledger.ChangeEntry, feed[i-1].Kind, "a use without a time follows its entry")
					require.Equal(t, c.Ref, feed[i-1].Ref, "a use without a time follows its entry")
					require.Empty(t, c.AuthorityID)
				}
			}
			require.NoError(t, newLedger(t, s).Verify(context.Background()))
		})
	}
}

// TestUpgradeFeedInterrupted stops the synthesis of the feed of the
// format 4 fixture after a transaction, three times, as a crash would:
// each Open resumes it, with batches of another size, and the feed it
// finishes is the one an uninterrupted upgrade writes, cursor for
// cursor.
func TestUpgradeFeedInterrupted(t *testing.T) {
	ref := open(t, untar(t, filepath.Join("testdata", "format4.tar.gz")))
	want := readFeed(t, ref, "")
	require.Len(t, want, 27)

	dir := untar(t, filepath.Join("testdata", "format4.tar.gz"))
	crash := errors.New("crash")
	for i, batch := range []int{4, 7, 1} {
		_, err := badgerstore.Open(dir, badgerstore.WithMigration(batch, func() error { return crash }))
		require.ErrorIs(t, err, crash, "open %d", i)
		require.Equal(t, uint64(badgerstore.FormatVersion), formatVersionOf(t, dir))
	}
	batches := 0
	s := open(t, dir, badgerstore.WithMigration(5, func() error { batches++; return nil }))
	require.Equal(t, 3, batches, "12 changes written before, 15 left in batches of 5")
	require.Equal(t, want, readFeed(t, s, ""))
	l := newLedger(t, s)
	require.NoError(t, l.Verify(context.Background()))
}
