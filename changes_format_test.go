package ledger_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// TestExportChanges: the change lines of format 6 round-trip, and a
// stream whose changes disagree with its records is refused with
// nothing written.
func TestExportChanges(t *testing.T) {
	ctx := context.Background()
	src := holdsLedger(t)
	_, err := src.UseItem(ctx, "arcade", mustItem(t, src).ID)
	require.NoError(t, err)
	out := export(t, src)
	lines := strings.SplitAfter(out, "\n")
	lines = lines[:len(lines)-1]
	first := 0
	for first < len(lines) && !strings.HasPrefix(lines[first], `{"change":`) {
		first++
	}
	require.Less(t, first, len(lines)-1, "change lines before the end marker")
	n := len(lines) - 1 - first
	require.Contains(t, lines[len(lines)-1], `"changes":`)

	dst := newLedger(t, ledger.WithHoldSweep(0))
	require.NoError(t, ledger.Import(ctx, dst, strings.NewReader(out)))
	require.Equal(t, out, export(t, dst))

	change := func(i int) string { return lines[first+i] }
	join := func(ls ...[]string) string {
		var b strings.Builder
		for _, l := range ls {
			b.WriteString(strings.Join(l, ""))
		}
		return b.String()
	}
	with := func(i int, old, new string) string {
		ls := append([]string(nil), lines...)
		require.Contains(t, ls[first+i], old)
		ls[first+i] = strings.Replace(ls[first+i], old, new, 1)
		return strings.Join(ls, "")
	}
	ref := regexp.MustCompile(`"ref":"([0-9a-f]{24})"`)
	entryRef := ref.FindStringSubmatch(change(0))[1]
	end := lines[len(lines)-1]
	fewer := strings.Replace(end, `"changes":`+itoa(n), `"changes":`+itoa(n-1), 1)
	for _, tc := range []struct{ name, stream, want string }{
		{"a change in a version 5 stream", strings.Replace(out, `"version":6`, `"version":5`, 1), "a change in a version 5 stream"},
		{"an unknown kind", with(0, `"kind":"entry"`, `"kind":"deposit"`), "unknown kind"},
		{"a change naming no entry", with(0, entryRef, "000000000000000000000001"), "which does not exist"},
		{"an entry changed twice", join(lines[:first+1], []string{change(0)}, lines[first+1:len(lines)-1], []string{strings.Replace(end, `"changes":`+itoa(n), `"changes":`+itoa(n+1), 1)}), "a second entry change"},
		{"an entry without its change", join(lines[:first], lines[first+1:len(lines)-1], []string{fewer}), "have no entry change"},
		{"a use at another instant", with(n-1, `"at":"2026`, `"at":"2025`), "but the item was used at"},
		{"a record after the changes", join(lines[:first], lines[first:len(lines)-1], []string{lines[1]}, []string{end}), "a record after the changes"},
		{"the marker counts another change", join(lines[:len(lines)-1], []string{fewer}), "counts " + itoa(n-1) + " changes"},
		{"limits with a ref", with(2, `"limits":{`, `"ref":"000000000000000000000001","limits":{`), "no ref"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := newLedger(t)
			err := ledger.Import(ctx, dst, strings.NewReader(tc.stream))
			require.ErrorIs(t, err, ledger.ErrInvalid)
			require.Contains(t, err.Error(), tc.want)
			requireEmpty(t, dst)
		})
	}

	// A version 5 stream imports with the changes of its past.
	old := newLedger(t, ledger.WithHoldSweep(0))
	require.NoError(t, ledger.Import(ctx, old, strings.NewReader(asV5(out))))
	require.NoError(t, old.Verify(ctx))
	var kinds []string
	for c, err := range old.Changes(ctx, ledger.ChangeQuery{}) {
		require.NoError(t, err)
		kinds = append(kinds, string(c.Kind))
	}
	require.Len(t, kinds, n)
}

// mustItem writes an entry with an item for holdsLedger's user ann.
func mustItem(t *testing.T, l *ledger.Ledger) ledger.Entry {
	t.Helper()
	e, err := l.CreateEntry(context.Background(), ledger.NewEntry{AuthorityID: "shop", UserID: "ann", Amount: dec("-1"), Reason: "soda",
		Item: &ledger.Item{Name: "soda"}})
	require.NoError(t, err)
	return e
}

func itoa(n int) string { return strconv.Itoa(n) }
