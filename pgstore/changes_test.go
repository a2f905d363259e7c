package pgstore_test

import (
	"context"
	"errors"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

// TestFirstAfter checks where a string falls among the cursors, against
// a binary search over them (cursors sort as their numbers do): any
// string is a valid After, and Changes(after) yields exactly the changes
// whose cursors sort bytewise after it.
func TestFirstAfter(t *testing.T) {
	brute := func(after string) (int64, bool) {
		if pgstore.FormatCursor(math.MaxInt64) <= after {
			return 0, false
		}
		// The least n in [1, MaxInt64] whose cursor sorts after after.
		lo, hi := int64(1), int64(math.MaxInt64)
		for lo < hi {
			mid := lo + (hi-lo)/2
			if pgstore.FormatCursor(mid) > after {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		return lo, true
	}
	for _, tc := range []struct {
		name  string
		after string
		want  int64
		ok    bool
	}{
		{"empty", "", 1, true},
		{"a cursor", "000000000000002a", 43, true},
		{"the last cursor", "7fffffffffffffff", 0, false},
		{"past every cursor", "8", 0, false},
		{"a prefix", "00000000000001", 256, true},
		{"longer than a cursor", "000000000000002a0", 43, true},
		{"a letter past f", "00000000000000g", 256, true},
		{"an upper-case letter", "00000000000000A", 0xa0, true},
		{"zero", "0000000000000000", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := pgstore.FirstAfter(tc.after)
			require.Equal(t, tc.ok, ok)
			if ok {
				require.Equal(t, tc.want, n)
			}
			bn, bok := brute(tc.after)
			require.Equal(t, bok, ok, "brute force")
			require.Equal(t, bn, n, "brute force")
		})
	}
	rapid.Check(t, func(t *rapid.T) {
		// Cursors, bent: cut, extended, or with a byte replaced.
		after := pgstore.FormatCursor(rapid.Int64Range(1, math.MaxInt64).Draw(t, "n"))
		b := []byte(after)
		switch rapid.IntRange(0, 3).Draw(t, "how") {
		case 1:
			b = b[:rapid.IntRange(0, len(b)).Draw(t, "cut")]
		case 2:
			b = append(b, rapid.Byte().Draw(t, "more"))
		case 3:
			b[rapid.IntRange(0, len(b)-1).Draw(t, "at")] = rapid.SampledFrom([]byte("09afgz\x00\xffA~/")).Draw(t, "byte")
		}
		after = string(b)
		n, ok := pgstore.FirstAfter(after)
		bn, bok := brute(after)
		if ok != bok || n != bn {
			t.Fatalf("FirstAfter(%q) = %d, %v; want %d, %v", after, n, ok, bn, bok)
		}
	})
}

// TestChangesAfterAnyString reads a store's feed after strings that are
// not cursors: each yields the changes whose cursors sort after it.
func TestChangesAfterAnyString(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		for i := range 40 {
			c := ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: time.Unix(0, int64(i)).UTC(), AuthorityID: "a", Ref: ledger.FormatEntryID(int64(i), 1)}
			if err := tx.AppendChange(ctx, c); err != nil {
				return err
			}
		}
		return nil
	}))
	all := changeCursors(t, s, "")
	require.Len(t, all, 40)
	for _, after := range []string{"", "0", "00000000000000", "0000000000000010", "0000000000000010\x00", "000000000000001~", "000000000000001", "z", "\xff", all[39]} {
		want := all[sort.SearchStrings(all, after+"\x00"):] // those > after
		if len(want) == 0 {
			want = nil
		}
		require.Equal(t, want, changeCursors(t, s, after), "after %q", after)
	}
}

func changeCursors(t *testing.T, s ledger.Store, after string) []string {
	t.Helper()
	var out []string
	require.NoError(t, s.View(context.Background(), func(tx ledger.ReadTx) error {
		for c, err := range tx.Changes(context.Background(), after) {
			if err != nil {
				return err
			}
			out = append(out, c.Cursor)
		}
		return nil
	}))
	return out
}

// TestOwnChanges: a transaction's own changes have no cursor before it
// commits, so its reads of the feed do not yield them; a View cannot
// append.
func TestOwnChanges(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	c := ledger.ChangeRecord{Kind: ledger.ChangeHoldPlaced, AuthorityID: "a", Ref: "h"}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		require.NoError(t, tx.AppendChange(ctx, c))
		for c, err := range tx.Changes(ctx, "") {
			require.NoError(t, err)
			t.Fatalf("an uncommitted change in the feed: %+v", c)
		}
		return nil
	}))
	require.Len(t, changeCursors(t, s, ""), 1)
	err := s.View(ctx, func(rt ledger.ReadTx) error { return rt.(ledger.Tx).AppendChange(ctx, c) })
	require.Error(t, err)
}

func TestPollInterval(t *testing.T) {
	dbURL(t)
	require.Equal(t, pgstore.DefaultPollInterval, newStore(t).PollInterval())
	require.Equal(t, 7*time.Millisecond, newStore(t, pgstore.WithPollInterval(7*time.Millisecond)).PollInterval())
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := pgstore.Open(context.Background(), dbURL(t), pgstore.WithSchema(freshSchema(t)), pgstore.WithPollInterval(d))
		require.True(t, errors.Is(err, ledger.ErrInvalid), "poll interval %v: %v", d, err)
	}
	var _ ledger.SharedStore = newStore(t)
}
