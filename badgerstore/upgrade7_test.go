package badgerstore_test

import (
	"context"
	"encoding/json"
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

// The users, authorities and currencies of testdata/format6.tar.gz.
var (
	format6Users = []string{"alice", "bob", "carol"}
	format6Auths = []string{"bank", "shop"}
	format6Curs  = []string{"", "gems"}
)

// format6Scan is one query of testdata/format6.want.txt: an entry query
// or, with items set, an inventory query.
type format6Scan struct {
	label   string
	entries ledger.EntryQuery
	items   *ledger.InventoryQuery
}

// format6Scans returns the queries whose IDs testdata/format6.want.txt
// lists, in its order.
func format6Scans() []format6Scan {
	ss := []format6Scan{{label: "entries all"}}
	for _, u := range format6Users {
		us := []string{u}
		ss = append(ss,
			format6Scan{label: "entries user=" + u, entries: ledger.EntryQuery{UserIDs: us}},
			format6Scan{label: "entries user=" + u + " reverse", entries: ledger.EntryQuery{UserIDs: us, Reverse: true}})
		for _, a := range format6Auths {
			ss = append(ss, format6Scan{label: "entries user=" + u + " authority=" + a,
				entries: ledger.EntryQuery{UserIDs: us, AuthorityIDs: []string{a}}})
		}
		ss = append(ss, format6Scan{label: "entries user=" + u + " currency=gems",
			entries: ledger.EntryQuery{UserIDs: us, Currencies: []string{"gems"}}})
	}
	for _, a := range format6Auths {
		ss = append(ss, format6Scan{label: "entries authority=" + a, entries: ledger.EntryQuery{AuthorityIDs: []string{a}}})
	}
	for _, u := range format6Users {
		ss = append(ss, format6Scan{label: "items user=" + u,
			items: &ledger.InventoryQuery{UserIDs: []string{u}, Used: ledger.UsedOrUnused}})
	}
	return append(ss,
		format6Scan{label: "items used", items: &ledger.InventoryQuery{Used: ledger.UsedOnly}},
		format6Scan{label: "items unused", items: &ledger.InventoryQuery{}})
}

// format6Lines describes l as testdata/format6.go.txt printed it (the
// lines of testdata/format6.want.txt): balanceLines' balances, each
// authority's totals in each currency, the IDs of format6Scans and of
// the holds of each currency, and balanceLines' feed length.
func format6Lines(t *testing.T, l *ledger.Ledger) []string {
	t.Helper()
	ctx := context.Background()
	bal := balanceLines(t, l, format6Users...)
	n := len(bal) - 1
	out := bal[:n:n]
	for _, a := range format6Auths {
		for _, c := range format6Curs {
			ws, err := l.Wallets(ctx, ledger.WalletQuery{AuthorityIDs: []string{a}, Currency: c})
			require.NoError(t, err)
			var ts []string
			for _, w := range ws {
				ts = append(ts, w.String())
			}
			out = append(out, fmt.Sprintf("wallets authority=%s currency=%q:%s", a, c, format6Join(ts)))
		}
	}
	for _, s := range format6Scans() {
		var ids []string
		if s.items != nil {
			its, err := l.Inventory(ctx, *s.items)
			require.NoError(t, err)
			for _, it := range its {
				ids = append(ids, it.EntryID)
			}
		} else {
			es, err := l.Entries(ctx, s.entries)
			require.NoError(t, err)
			for _, e := range es {
				ids = append(ids, e.ID)
			}
		}
		out = append(out, s.label+":"+format6Join(ids))
	}
	for _, c := range format6Curs {
		hs, err := l.Holds(ctx, ledger.HoldQuery{Currency: c})
		require.NoError(t, err)
		var ids []string
		for _, h := range hs {
			ids = append(ids, h.ID+"="+h.State.String())
		}
		out = append(out, fmt.Sprintf("holds currency=%q:%s", c, format6Join(ids)))
	}
	return append(out, bal[n])
}

// format6Join returns each of ss after a space.
func format6Join(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return " " + strings.Join(ss, " ")
}

// format6IDs returns the IDs that lines list for label.
func format6IDs(t *testing.T, lines []string, label string) []string {
	t.Helper()
	for _, s := range lines {
		if l, ids, ok := strings.Cut(s, ":"); ok && l == label {
			return strings.Fields(ids)
		}
	}
	t.Fatalf("no line %q", label)
	return nil
}

// format6Expect returns the IDs scan s should list: those it listed in
// the fixture (old, where usedAfter are old items used since) and the
// entries of added that match it, in ID order.
func format6Expect(s format6Scan, old []string, usedAfter []string, added []ledger.Entry) []string {
	var ids []string
	if s.items != nil {
		q := s.items
		for _, id := range old {
			if q.Used != ledger.UnusedOnly || !slices.Contains(usedAfter, id) {
				ids = append(ids, id)
			}
		}
		if q.Used == ledger.UsedOnly {
			ids = append(ids, usedAfter...)
		}
		for _, e := range added {
			if e.Item == nil || len(q.UserIDs) > 0 && !slices.Contains(q.UserIDs, e.UserID) ||
				q.Used == ledger.UnusedOnly && (e.Item.Used || e.Item.Revoked) || q.Used == ledger.UsedOnly && !e.Item.Used {
				continue
			}
			ids = append(ids, e.ID)
		}
		slices.Sort(ids)
		return ids
	}
	q := s.entries
	for _, e := range added {
		if len(q.UserIDs) > 0 && !slices.Contains(q.UserIDs, e.UserID) ||
			len(q.AuthorityIDs) > 0 && !slices.Contains(q.AuthorityIDs, e.AuthorityID) ||
			len(q.Currencies) > 0 && !slices.Contains(q.Currencies, e.Currency) {
			continue
		}
		ids = append(ids, e.ID)
	}
	if q.Reverse {
		slices.Reverse(ids)
		return append(ids, old...)
	}
	return append(slices.Clone(old), ids...)
}

// TestUpgradeFormat6 opens a directory written by the release before
// the index layout changed (format 6: testdata/format6.tar.gz, made by
// testdata/format6.go.txt, with 49 entries in two currencies from two
// authorities for three users, items used, unused and revoked, limits,
// transfers, a reversal and holds) and finds every balance, every
// authority's totals, what each entry, inventory and hold query lists,
// and the feed, as that release read them (testdata/format6.want.txt),
// the ledger consistent, its idempotency keys and item states kept, and
// the directory marked with the current format. Entries written after
// the upgrade, for the same users and authorities, list after the old
// ones in every query, after a Close and in a copy taken before Close,
// as a crash would leave the directory.
func TestUpgradeFormat6(t *testing.T) {
	ctx := context.Background()
	dir := untar(t, filepath.Join("testdata", "format6.tar.gz"))
	require.Equal(t, uint64(6), formatVersionOf(t, dir))
	b, err := os.ReadFile(filepath.Join("testdata", "format6.want.txt"))
	require.NoError(t, err)
	want := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	require.Len(t, want, 36)

	// After the fixture's clock, which stopped before 13:00:01.
	now := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	clock := ledger.WithClock(func() time.Time { now = now.Add(time.Millisecond); return now })
	// Postings checkpointed every few entries: scans merge the format 6
	// keys with blocks, and with postings in memory.
	l := newLedger(t, open(t, dir, badgerstore.WithCheckpointPostings(7)), clock, ledger.WithHoldSweep(0))
	require.Equal(t, want, format6Lines(t, l))
	require.NoError(t, l.Verify(ctx))

	// The fixture's first entry was deposit 0, with a key: a retry
	// finds it, and different fields conflict.
	first := format6IDs(t, want, "entries all")[0]
	deposit0 := ledger.NewEntry{AuthorityID: "bank", UserID: "alice", Amount: dec("10.25"), Reason: "deposit",
		IdempotencyKey: "deposit-0", Metadata: map[string]string{"order": "o-0"}}
	e, err := l.CreateEntry(ctx, deposit0)
	require.NoError(t, err)
	require.Equal(t, first, e.ID, "a retry of a format 6 entry returns it")
	conflict := deposit0
	conflict.Amount = dec("11")
	_, err = l.CreateEntry(ctx, conflict)
	require.ErrorIs(t, err, ledger.ErrIdempotencyConflict)

	// Old items keep their states: alice's sword used, carol's ticket
	// revoked; bob's shield is used now.
	sword := format6IDs(t, want, "items used")[0]
	_, err = l.UseItem(ctx, "bank", sword)
	require.ErrorIs(t, err, ledger.ErrItemUsed)
	ticket := format6IDs(t, want, "items user=carol")[1]
	_, err = l.UseItem(ctx, "bank", ticket)
	require.ErrorIs(t, err, ledger.ErrItemRevoked)
	shield := format6IDs(t, want, "items user=bob")[0]
	_, err = l.UseItem(ctx, "shop", shield)
	require.NoError(t, err)

	// 26 new entries: 24 for every user, currency and authority (every
	// fourth granting an item, the first of which is used), one with a
	// key, and the reversal of bob's first bank entry, an old one.
	var added []ledger.Entry
	for i := range 24 {
		ne := ledger.NewEntry{AuthorityID: format6Auths[(i/2)%2], UserID: format6Users[i%3], Currency: format6Curs[i%2],
			Amount: dec(fmt.Sprintf("1.%d", 5+i%5)), Reason: "after"}
		if i%4 == 3 {
			ne.Item = &ledger.Item{Name: fmt.Sprintf("badge-%d", i), Data: json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`)}
		}
		e, err := l.CreateEntry(ctx, ne)
		require.NoError(t, err)
		added = append(added, e)
	}
	_, err = l.UseItem(ctx, added[3].AuthorityID, added[3].ID)
	require.NoError(t, err)
	added[3].Item.Used = true
	e, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "carol", Currency: "gems", Amount: dec("2"),
		Reason: "after", IdempotencyKey: "after-0"})
	require.NoError(t, err)
	added = append(added, e)
	old := format6IDs(t, want, "entries user=bob authority=bank")[0]
	rev, err := l.Reverse(ctx, "bank", old, "after")
	require.NoError(t, err)
	require.Len(t, rev, 1)
	added = append(added, rev...)
	all := format6IDs(t, want, "entries all")
	for _, e := range added {
		require.Greater(t, e.ID, all[len(all)-1], "a new entry sorts after the old ones")
	}

	// A copy of the directory now holds the new entries as a crash would
	// leave them.
	copied := copyDir(t, dir)
	got := format6Lines(t, l)
	require.NotEqual(t, want, got)
	for _, s := range format6Scans() {
		require.Equal(t, format6Expect(s, format6IDs(t, want, s.label), []string{shield}, added), format6IDs(t, got, s.label), s.label)
	}
	require.NoError(t, l.Verify(ctx))
	require.NoError(t, l.Close())
	require.Equal(t, uint64(badgerstore.FormatVersion), formatVersionOf(t, dir))

	for _, d := range []string{dir, copied} {
		s := open(t, d)
		requireIndexesMatch(t, s)
		l := newLedger(t, s, clock, ledger.WithHoldSweep(0))
		require.Equal(t, got, format6Lines(t, l), "dir %s", d)
		require.NoError(t, l.Verify(ctx), "dir %s", d)
		es, err := l.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{old}})
		require.NoError(t, err)
		require.Len(t, es, 1)
		require.Equal(t, rev[0].ID, es[0].ReversedBy, "dir %s", d)
		e, err := l.CreateEntry(ctx, deposit0)
		require.NoError(t, err)
		require.Equal(t, first, e.ID, "dir %s", d)
		require.NoError(t, l.Close())
	}
}
