package pgstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
	"github.com/walletledger/ledger/pgstore"
)

// awkward are strings whose order a database gets wrong unless it
// compares bytes: case, punctuation and accents that a linguistic
// collation reorders, and NUL and \x01, which pgstore escapes.
var awkward = []string{
	"a", "B", "Z", "_", "b", "aa", "a b", "a-b", "ab", "A", "é", "e", "f", "ä", "日本", "\U0001F600", "~",
	"a\x00", "a\x00b", "a\x01", "a\x01\x01", "a\x01\x02", "a\x02", "\x00", "\x01", "\x01\x02", "\x7f", "ab\x00",
}

// TestBytewiseOrder runs the same writes and reads through memstore and
// pgstore and requires the same answers: every order is bytewise, and
// every bound (with NUL in it or not) means what it means in Go. The
// ledger builds bounds such as after+"\x00" itself.
func TestBytewiseOrder(t *testing.T) {
	ctx := context.Background()
	pg := newStore(t)
	mem := memstore.New()
	t.Cleanup(func() { _ = mem.Close() })

	// IDs are the ledger's 24 hex digits (the contract lets a store rely
	// on that), chosen to share prefixes that the bounds below split.
	var recs []ledger.Record
	var ids []string
	for i := range awkward {
		id := fmt.Sprintf("%016x%08x", int64(0x1a)<<56+int64(i%4)<<52+int64(i), i)
		ids = append(ids, id)
		r := ledger.Record{Entry: ledger.Entry{
			ID:          id,
			AuthorityID: awkward[(i*7)%len(awkward)],
			UserID:      awkward[(i*3)%5],
			CreatedOn:   time.Unix(0, int64(i)).UTC(),
			Amount:      decimal.NewFromInt(int64(i)),
			Reason:      "r\x00" + awkward[i],
		}}
		if i%2 == 0 {
			r.Item = &ledger.Item{Name: "n\x01" + awkward[i], Data: []byte(`"` + fmt.Sprint(i) + `"`)}
		}
		recs = append(recs, r)
	}
	for _, s := range []ledger.Store{pg, mem} {
		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
			for _, r := range recs {
				if err := tx.InsertEntry(ctx, r); err != nil {
					return err
				}
			}
			for i, u := range awkward {
				for _, a := range []string{"", "a\x00", "B"} {
					if err := tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: a, UserID: u}, ledger.Total{Value: decimal.NewFromInt(int64(i))}); err != nil {
						return err
					}
				}
			}
			return nil
		}))
	}

	read := func(s ledger.Store, fn func(tx ledger.ReadTx) []string) []string {
		var out []string
		require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
			out = fn(tx)
			return nil
		}))
		return out
	}
	same := func(what string, fn func(tx ledger.ReadTx) []string) {
		t.Helper()
		want, got := read(mem, fn), read(pg, fn)
		require.Equalf(t, want, got, "%s", what)
	}
	entries := func(sc ledger.Scan) func(tx ledger.ReadTx) []string {
		return func(tx ledger.ReadTx) []string {
			var out []string
			for r, err := range tx.Entries(ctx, sc) {
				require.NoError(t, err)
				item := "-"
				if r.Item != nil {
					item = r.Item.Name + "/" + string(r.Item.Data)
				}
				out = append(out, fmt.Sprintf("%q %q %q %q %s", r.ID, r.UserID, r.AuthorityID, r.Reason, item))
			}
			return out
		}
	}
	totals := func(a, after string) func(tx ledger.ReadTx) []string {
		return func(tx ledger.ReadTx) []string {
			var out []string
			for r, err := range tx.Totals(ctx, a, "", after) {
				require.NoError(t, err)
				out = append(out, fmt.Sprintf("%q=%s", r.UserID, r.Value))
			}
			return out
		}
	}

	// The plain orders first, so that a failure says the simplest thing.
	sorted := slices.Sorted(slices.Values(awkward))
	var want []string
	for _, u := range sorted {
		want = append(want, fmt.Sprintf("%q=%d", u, slices.Index(awkward, u)))
	}
	require.Equal(t, want, read(pg, totals("", "")), "totals in bytewise user order")
	users := read(pg, func(tx ledger.ReadTx) []string {
		var out []string
		for _, u := range sorted {
			for r, err := range tx.Entries(ctx, ledger.Scan{UserID: u}) {
				require.NoError(t, err)
				out = append(out, r.UserID)
			}
		}
		return out
	})
	require.Len(t, users, len(awkward), "every entry found by its user")

	bounds := append([]string{""}, awkward...)
	for _, id := range ids[:8] {
		bounds = append(bounds, id, id+"\x00", id[:3], id[:3]+"\x00", id[:3]+"\x01", strings.ToUpper(id[:3]))
	}
	for _, a := range []string{"", "a\x00", "B", "nobody"} {
		for _, after := range bounds {
			same(fmt.Sprintf("Totals(%q, %q)", a, after), totals(a, after))
		}
	}
	var scans []ledger.Scan
	for _, b := range bounds {
		scans = append(scans, ledger.Scan{Start: b}, ledger.Scan{End: b})
	}
	for i, start := range bounds {
		for j := i % 7; j < len(bounds); j += 7 {
			scans = append(scans, ledger.Scan{Start: start, End: bounds[j]})
		}
	}
	for _, sc := range scans {
		for _, rev := range []bool{false, true} {
			sc.Reverse = rev
			same(fmt.Sprintf("%+v", sc), entries(sc))
		}
	}
	for _, u := range awkward[:6] {
		for _, a := range append([]string{""}, awkward[:8]...) {
			for _, items := range []bool{false, true} {
				sc := ledger.Scan{UserID: u, AuthorityID: a, ItemsOnly: items, Start: "a\x00", Reverse: items}
				same(fmt.Sprintf("%+v", sc), entries(sc))
			}
		}
	}
	for _, id := range append([]string{"nobody", ids[0] + "\x00", ids[0][:23]}, ids...) {
		same(fmt.Sprintf("Entry(%q)", id), func(tx ledger.ReadTx) []string {
			r, err := tx.Entry(ctx, id)
			return []string{fmt.Sprintf("%q %v", r.ID, err)}
		})
	}
}

// TestEscape checks the stored form of text without a database: it
// round-trips, and it keeps bytewise order.
func TestEscape(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		gen := rapid.StringOf(rapid.SampledFrom([]rune{0, 1, 2, 'a', 0x7f, 'é', '日'}))
		a, b := gen.Draw(rt, "a"), gen.Draw(rt, "b")
		ea, eb := pgstore.EncText(a), pgstore.EncText(b)
		if strings.ContainsRune(ea, 0) {
			rt.Fatalf("%q encodes to %q, with a NUL", a, ea)
		}
		if d, err := pgstore.DecText(ea); err != nil || d != a {
			rt.Fatalf("%q encodes to %q, decodes to %q, %v", a, ea, d, err)
		}
		if c1, c2 := strings.Compare(a, b), strings.Compare(ea, eb); c1 != c2 {
			rt.Fatalf("compare(%q, %q) = %d, but compare(%q, %q) = %d", a, b, c1, ea, eb, c2)
		}
	})
	for _, bad := range []string{"\x01", "a\x01", "\x01\x03", "\x01\x00"} {
		_, err := pgstore.DecText(bad)
		require.Error(t, err, "%q", bad)
	}
}
