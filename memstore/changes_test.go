package memstore_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

func appendChanges(t *testing.T, s ledger.Store, cs ...ledger.ChangeRecord) {
	t.Helper()
	require.NoError(t, s.Update(context.Background(), func(tx ledger.Tx) error {
		for _, c := range cs {
			if err := tx.AppendChange(context.Background(), c); err != nil {
				return err
			}
		}
		return nil
	}))
}

func readChanges(t *testing.T, s ledger.Store, after string) []ledger.ChangeRecord {
	t.Helper()
	var out []ledger.ChangeRecord
	require.NoError(t, s.View(context.Background(), func(tx ledger.ReadTx) error {
		for c, err := range tx.Changes(context.Background(), after) {
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	}))
	return out
}

// The store packs what the ledger appends; what does not pack (a kind it
// does not know, a ref that is not an entry ID as the ledger formats
// them, a time out of the nanosecond range, a ref beside limits) must
// come back as given all the same.
func TestChangesUnpacked(t *testing.T) {
	ceiling := decimal.RequireFromString("10")
	limits := &ledger.WalletLimits{UserID: "u", Currency: "gems", Floor: decimal.RequireFromString("-1"), Cap: &ceiling}
	at := time.Date(2026, 4, 1, 12, 0, 0, 5, time.UTC)
	id := ledger.FormatEntryID(at.UnixNano(), 7)
	for _, tc := range []struct {
		name string
		c    ledger.ChangeRecord
	}{
		{"packed", ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: at, AuthorityID: "a", Ref: id}},
		{"zero time, no authority", ledger.ChangeRecord{Kind: ledger.ChangeItemUsed, Ref: id}},
		{"limits", ledger.ChangeRecord{Kind: ledger.ChangeLimits, At: at, AuthorityID: "a", Limits: limits}},
		{"unknown kind", ledger.ChangeRecord{Kind: "audit", At: at, Ref: id}},
		{"uppercase ref", ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: at, Ref: "00000000000000FF00000001"}},
		{"short ref", ledger.ChangeRecord{Kind: ledger.ChangeHoldPlaced, At: at, Ref: "h1"}},
		{"ref and limits", ledger.ChangeRecord{Kind: ledger.ChangeLimits, At: at, Ref: id, Limits: limits}},
		{"year 3000", ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: time.Date(3000, 1, 1, 0, 0, 0, 1, time.UTC), Ref: id}},
		{"not UTC", ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: at.In(time.FixedZone("x", 3600)), Ref: id}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := memstore.New()
			t.Cleanup(func() { _ = s.Close() })
			appendChanges(t, s, tc.c, tc.c)
			got := readChanges(t, s, "")
			require.Len(t, got, 2)
			for _, g := range got {
				require.Equal(t, tc.c.Kind, g.Kind)
				require.Truef(t, tc.c.At.Equal(g.At), "At: got %v, want %v", g.At, tc.c.At)
				require.Equal(t, time.UTC, g.At.Location())
				require.Equal(t, tc.c.AuthorityID, g.AuthorityID)
				require.Equal(t, tc.c.Ref, g.Ref)
				require.Equal(t, tc.c.Limits, g.Limits)
			}
			if g := got[0]; g.Limits != nil {
				require.NotSame(t, tc.c.Limits.Cap, g.Limits.Cap, "a read returns its own Cap")
			}
		})
	}
}

// A rolled-back transaction's changes, limits and unpacked ones
// included, leave nothing behind, and the next change takes the
// sequence number they had.
func TestChangesRollback(t *testing.T) {
	s := memstore.New()
	t.Cleanup(func() { _ = s.Close() })
	lim := func(user string) *ledger.WalletLimits { return &ledger.WalletLimits{UserID: user} }
	appendChanges(t, s, ledger.ChangeRecord{Kind: ledger.ChangeLimits, Limits: lim("first")})
	boom := errors.New("boom")
	err := s.Update(context.Background(), func(tx ledger.Tx) error {
		for _, c := range []ledger.ChangeRecord{
			{Kind: ledger.ChangeLimits, Limits: lim("rolled back")},
			{Kind: "unknown", Ref: "x"},
		} {
			require.NoError(t, tx.AppendChange(context.Background(), c))
		}
		require.Len(t, readAll(t, tx), 3, "a transaction reads its own changes")
		return boom
	})
	require.ErrorIs(t, err, boom)
	appendChanges(t, s, ledger.ChangeRecord{Kind: ledger.ChangeLimits, Limits: lim("second")})
	got := readChanges(t, s, "")
	require.Len(t, got, 2)
	require.Equal(t, "first", got[0].Limits.UserID)
	require.Equal(t, "second", got[1].Limits.UserID)
	require.Equal(t, []string{"0000000000000001", "0000000000000002"}, []string{got[0].Cursor, got[1].Cursor})
}

func readAll(t *testing.T, tx ledger.ReadTx) []ledger.ChangeRecord {
	t.Helper()
	var out []ledger.ChangeRecord
	for c, err := range tx.Changes(context.Background(), "") {
		require.NoError(t, err)
		out = append(out, c)
	}
	return out
}

// Changes seeks after any string, not only a cursor it handed out.
func TestChangesSeek(t *testing.T) {
	s := memstore.New()
	t.Cleanup(func() { _ = s.Close() })
	var cs []ledger.ChangeRecord
	for range 40 {
		cs = append(cs, ledger.ChangeRecord{Kind: ledger.ChangeHoldPlaced, Ref: ledger.FormatEntryID(1, 1)})
	}
	appendChanges(t, s, cs...)
	for _, tc := range []struct {
		name, after string
		want        int // changes yielded
	}{
		{"empty", "", 40},
		{"below every cursor", "0", 40},
		{"the first", "0000000000000001", 39},
		{"the tenth", "000000000000000a", 30},
		{"between two", "0000000000000010z", 24},
		{"the last", "0000000000000028", 0},
		{"above every cursor", "1", 0},
		{"not a cursor", "zz", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readChanges(t, s, tc.after)
			require.Len(t, got, tc.want)
			for _, c := range got {
				require.Greater(t, c.Cursor, tc.after)
			}
		})
	}
}

// BenchmarkMemoryPerChange reports the heap a stored change costs: an
// entry's change (kind, time, one of three authorities, the entry ID),
// as the ledger appends one per entry written.
func BenchmarkMemoryPerChange(b *testing.B) {
	const n = 200_000
	ctx := context.Background()
	start := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	reportHeapPer(b, n, "B/change", func(s *memstore.Store) io.Closer {
		for i := 0; i < n; i += 1000 {
			err := s.Update(ctx, func(tx ledger.Tx) error {
				for j := i; j < i+1000; j++ {
					at := start.Add(time.Duration(j) * time.Millisecond)
					err := tx.AppendChange(ctx, ledger.ChangeRecord{
						Kind: ledger.ChangeEntry, At: at, AuthorityID: authorities[j%3],
						Ref: ledger.FormatEntryID(at.UnixNano(), uint32(j)),
					})
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		return s
	})
}
