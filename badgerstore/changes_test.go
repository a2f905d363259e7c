package badgerstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

func requireSameChange(t *testing.T, want, got ledger.ChangeRecord) {
	t.Helper()
	require.Equal(t, want.Kind, got.Kind, "Kind")
	require.Truef(t, want.At.Equal(got.At), "At: got %v, want %v", got.At, want.At)
	require.Equal(t, time.UTC, got.At.Location(), "At in UTC")
	require.Equal(t, want.AuthorityID, got.AuthorityID, "AuthorityID")
	require.Equal(t, want.Ref, got.Ref, "Ref")
	if want.Limits == nil {
		require.Nil(t, got.Limits, "Limits")
		return
	}
	require.NotNil(t, got.Limits, "Limits")
	require.Equal(t, want.Limits.UserID, got.Limits.UserID)
	require.Equal(t, want.Limits.Currency, got.Limits.Currency)
	requireSameDecimal(t, want.Limits.Floor, got.Limits.Floor, "Floor")
	require.Equal(t, want.Limits.Cap == nil, got.Limits.Cap == nil, "Cap set")
	if want.Limits.Cap != nil {
		requireSameDecimal(t, *want.Limits.Cap, *got.Limits.Cap, "Cap")
	}
}

func TestChangeRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	capped := dec("1000.00")
	tests := []struct {
		name string
		c    ledger.ChangeRecord
	}{
		{"entry", ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: at, AuthorityID: "shop", Ref: "18ebdfd4167cf5957da068ee"}},
		{"use without time", ledger.ChangeRecord{Kind: ledger.ChangeItemUsed, Ref: "18ebdfd4167cf5957da068ee"}},
		{"limits, floor", ledger.ChangeRecord{Kind: ledger.ChangeLimits, At: at, AuthorityID: "bank",
			Limits: &ledger.WalletLimits{UserID: "alice", Floor: dec("-12.50")}}},
		{"limits, cap", ledger.ChangeRecord{Kind: ledger.ChangeLimits, At: at, AuthorityID: "bank",
			Limits: &ledger.WalletLimits{UserID: "a\x00b", Currency: "gems", Cap: &capped}}},
		{"placed", ledger.ChangeRecord{Kind: ledger.ChangeHoldPlaced, At: at, AuthorityID: "shop", Ref: "18ebdfd4167cf5957da06800"}},
		{"released", ledger.ChangeRecord{Kind: ledger.ChangeHoldReleased, At: at, AuthorityID: "shop", Ref: "18ebdfd4167cf5957da06800"}},
		{"expired", ledger.ChangeRecord{Kind: ledger.ChangeHoldExpired, At: at, AuthorityID: "shop", Ref: "18ebdfd4167cf5957da06800"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := badgerstore.EncodeChange(42, tc.c)
			require.NoError(t, err)
			got, err := badgerstore.DecodeChange(42, v)
			require.NoError(t, err)
			requireSameChange(t, tc.c, got)
			require.Equal(t, "000000000000002a", got.Cursor)
			if tc.c.Limits == nil {
				// version, flags, kind, At (at most 10), two lengths, checksum.
				require.LessOrEqual(t, len(v), 1+1+1+10+2+len(tc.c.AuthorityID)+len(tc.c.Ref)+4, "a change is small")
			}
		})
	}
}

// TestChangeCorrupt: a change that changed, or that sits under the key
// of another change, fails to read, and the codec refuses what it
// cannot keep.
func TestChangeCorrupt(t *testing.T) {
	c := ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: time.Unix(0, 1).UTC(), AuthorityID: "shop", Ref: "18ebdfd4167cf5957da068ee"}
	v, err := badgerstore.EncodeChange(7, c)
	require.NoError(t, err)
	for i := range v {
		for _, bit := range []byte{1, 0x80} {
			w := append([]byte(nil), v...)
			w[i] ^= bit
			_, err := badgerstore.DecodeChange(7, w)
			require.ErrorIs(t, err, badgerstore.ErrCorrupt, "byte %d, bit %#x flipped", i, bit)
		}
	}
	for n := range len(v) {
		_, err := badgerstore.DecodeChange(7, v[:n])
		require.ErrorIs(t, err, badgerstore.ErrCorrupt, "truncated to %d bytes", n)
	}
	_, err = badgerstore.DecodeChange(8, v)
	require.ErrorIs(t, err, badgerstore.ErrCorrupt, "under another key")

	_, err = badgerstore.EncodeChange(1, ledger.ChangeRecord{Kind: "renamed"})
	require.Error(t, err, "an unknown kind")
	_, err = badgerstore.EncodeChange(1, ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.Error(t, err, "a time beyond Unix nanoseconds")
	_, err = badgerstore.EncodeChange(1, ledger.ChangeRecord{Kind: ledger.ChangeLimits,
		Limits: &ledger.WalletLimits{Floor: decimal.New(1, 5000)}})
	require.Error(t, err, "an exponent decoding would refuse")
}

// TestFirstSeqAfter checks the seek of Changes against the definition:
// the first sequence number whose cursor sorts after the string, for
// strings of every shape, cursors or not.
func TestFirstSeqAfter(t *testing.T) {
	cursor := func(seq uint64) string { return fmt.Sprintf("%016x", seq) }
	for _, tc := range []struct {
		after string
		want  uint64
		ok    bool
	}{
		{"", 0, true},
		{"0000000000000000", 1, true},
		{"000000000000002a", 43, true},
		{"000000000000002a0", 43, true},
		{"000000000000002", 0x20, true},
		{"00000000000000/", 0, true},
		{"00000000000000:", 0xa0, true},
		{"00000000000000g", 0x100, true},
		{"0g", 0x1000000000000000, true},
		{"fffffffffffffffe", 1<<64 - 1, true},
		{"ffffffffffffffff", 0, false},
		{"g", 0, false},
		{"fg", 0, false},
		{"~", 0, false},
	} {
		got, ok := badgerstore.FirstSeqAfter(tc.after)
		require.Equal(t, tc.ok, ok, "after %q", tc.after)
		require.Equal(t, tc.want, got, "after %q: got %s, want %s", tc.after, cursor(got), cursor(tc.want))
	}
	rapid.Check(t, func(t *rapid.T) {
		after := rapid.StringMatching(`[0-9a-z/:~]{0,18}`).Draw(t, "after")
		if rapid.Bool().Draw(t, "near a cursor") {
			after = cursor(rapid.Uint64().Draw(t, "seq"))[:rapid.IntRange(0, 16).Draw(t, "len")] + after
		}
		seq, ok := badgerstore.FirstSeqAfter(after)
		if ok {
			if cursor(seq) <= after {
				t.Fatalf("after %q: %s does not sort after it", after, cursor(seq))
			}
			if seq > 0 && cursor(seq-1) > after {
				t.Fatalf("after %q: %s sorts after it too, and is less", after, cursor(seq-1))
			}
		} else if strings.Repeat("f", 16) > after {
			t.Fatalf("after %q: none found, but the last cursor sorts after it", after)
		}
	})
}

// TestChangesReopen: cursors survive a reopen unchanged, a seek from
// any of them yields the rest, and numbering goes on after the last.
func TestChangesReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	appendChange := func(s ledger.Store, ref string) {
		t.Helper()
		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
			return tx.AppendChange(ctx, ledger.ChangeRecord{Kind: ledger.ChangeEntry, AuthorityID: "shop", Ref: ref})
		}))
	}
	for i := range 5 {
		appendChange(s, fmt.Sprint("r", i))
	}
	before := readFeed(t, s, "")
	require.NoError(t, s.Close())

	s = open(t, dir)
	require.Equal(t, before, readFeed(t, s, ""))
	appendChange(s, "r5")
	all := readFeed(t, s, "")
	require.Len(t, all, 6)
	require.Equal(t, before, all[:5])
	require.Less(t, all[4].Cursor, all[5].Cursor)
	require.Equal(t, "0000000000000006", all[5].Cursor, "numbering goes on from the last change")
	require.Equal(t, all[3:], readFeed(t, s, all[2].Cursor))
}

// readFeed reads s's changes after after.
func readFeed(t *testing.T, s ledger.Store, after string) []ledger.ChangeRecord {
	t.Helper()
	ctx := context.Background()
	var out []ledger.ChangeRecord
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for c, err := range tx.Changes(ctx, after) {
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	}))
	return out
}

// BenchmarkAppendChange measures what the feed adds to an Update: the
// Update with n changes, against the same Update without (n=0).
func BenchmarkAppendChange(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{0, 1, 100} {
		b.Run(fmt.Sprintf("changes=%d", n), func(b *testing.B) {
			s, err := badgerstore.Open("", badgerstore.WithInMemory())
			require.NoError(b, err)
			b.Cleanup(func() { _ = s.Close() })
			c := ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: time.Now().UTC(), AuthorityID: "authority-1", Ref: "18ebdfd4167cf5957da068ee"}
			b.ReportAllocs()
			for b.Loop() {
				err := s.Update(ctx, func(tx ledger.Tx) error {
					for range n {
						if err := tx.AppendChange(ctx, c); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			if n > 0 {
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "changes/s")
			}
		})
	}
}
