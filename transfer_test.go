package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
	"github.com/walletledger/ledger/memstore"
	"github.com/walletledger/ledger/pgstore"
)

// fill writes a varied history: credits, spends, items with odd data,
// used items, idempotency keys, several authorities.
func fill(t *testing.T, l *ledger.Ledger, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		ne := ledger.NewEntry{
			AuthorityID: fmt.Sprint("auth-", i%3), UserID: fmt.Sprint("user-", i%7),
			Amount: dec(fmt.Sprintf("%d.%02d", 10+i%5, i%100)), Reason: fmt.Sprint("reason ", i),
		}
		if i%4 == 0 {
			ne.Item = &ledger.Item{Name: fmt.Sprint("item ", i), Data: []byte(fmt.Sprintf("[%d, {\"k\": \"<v>\"},\n  \"\\u00e9\"]", i))}
		}
		if i%5 == 0 {
			ne.IdempotencyKey = fmt.Sprint("key-", i)
		}
		if i%6 == 5 && i >= 14 {
			ne.Amount = ne.Amount.Neg().Div(dec("2")).Round(2)
		}
		e, err := l.CreateEntry(ctx, ne)
		require.NoError(t, err)
		if i%8 == 0 {
			var opts []ledger.UseOption
			if i%16 == 0 {
				opts = append(opts, ledger.UseIdempotencyKey(fmt.Sprint("use-", i)))
			}
			_, err = l.UseItem(ctx, "auth-0", e.ID, opts...)
			require.NoError(t, err)
		}
	}
}

// exportV5 returns l's export as version 5 wrote it: without the change
// feed's lines and the end marker's count of them, which is what most
// format tests edit. (Import gives such a stream the changes of its
// past.)
func exportV5(t *testing.T, l *ledger.Ledger) string {
	t.Helper()
	return asV5(export(t, l))
}

var changesCount = regexp.MustCompile(`,"changes":\d+`)

// asV5 turns a version 6 stream into version 5.
func asV5(out string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(out, "\n") {
		if !strings.HasPrefix(line, `{"change":`) {
			b.WriteString(line)
		}
	}
	s := strings.Replace(b.String(), `{"format":"walletledger-export","version":6}`, `{"format":"walletledger-export","version":5}`, 1)
	return changesCount.ReplaceAllString(s, "")
}

func export(t *testing.T, l *ledger.Ledger) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, l.Export(context.Background(), &buf))
	return buf.String()
}

func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	fill(t, src, 2500) // more than one import batch
	out := exportV5(t, src)
	require.Equal(t, 2502, strings.Count(out, "\n"), "a header, one line per entry, an end marker")

	// Through a plain reader, so Import has to spool it.
	dst := newLedger(t)
	require.NoError(t, ledger.Import(ctx, dst, io.MultiReader(strings.NewReader(out))))
	require.Equal(t, out, exportV5(t, dst), "the round trip preserves every field")
	require.Equal(t, wallets(t, src, ledger.WalletQuery{}), wallets(t, dst, ledger.WalletQuery{}))
	require.Equal(t, wallets(t, src, ledger.WalletQuery{AuthorityIDs: []string{"auth-1"}}), wallets(t, dst, ledger.WalletQuery{AuthorityIDs: []string{"auth-1"}}))

	// Idempotency keys came along: a retry is recognised on the target.
	es, err := dst.Entries(ctx, ledger.EntryQuery{Limit: 1})
	require.NoError(t, err)
	again, err := dst.CreateEntry(ctx, ledger.NewEntry{
		AuthorityID: es[0].AuthorityID, UserID: es[0].UserID, Amount: es[0].Amount, Reason: es[0].Reason,
		Item: &ledger.Item{Name: es[0].Item.Name, Data: es[0].Item.Data}, IdempotencyKey: "key-0",
	})
	require.NoError(t, err)
	require.Equal(t, es[0].ID, again.ID)

	// New entries sort after the imported ones, even with a clock behind.
	back := newLedger(t, ledger.WithClock(func() time.Time { return time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) }))
	require.NoError(t, ledger.Import(ctx, back, strings.NewReader(out)))
	e, err := back.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "after"})
	require.NoError(t, err)
	all, err := back.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Equal(t, e.ID, all[len(all)-1].ID)
}

func TestImportRefusals(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	fill(t, src, 1200)
	good := strings.SplitAfter(exportV5(t, src), "\n")
	good = good[:len(good)-1] // drop the empty string after the last newline
	edit := func(line int, from, to string) string {
		lines := append([]string(nil), good...)
		require.Contains(t, lines[line-1], from)
		lines[line-1] = strings.Replace(lines[line-1], from, to, 1)
		return strings.Join(lines, "")
	}
	swap := func(a, b int) string {
		lines := append([]string(nil), good...)
		lines[a-1], lines[b-1] = lines[b-1], lines[a-1]
		return strings.Join(lines, "")
	}
	for _, tc := range []struct {
		name, stream, want string
		also               string
	}{
		{"empty stream", "", "empty stream", ""},
		{"not an export", `{"format":"csv","version":1}` + "\n", "line 1: not a walletledger export", ""},
		{"malformed line", edit(1100, `{"id"`, `{"id`), "line 1100: ", ""},
		{"unknown field", edit(3, `"reason"`, `"color":"red","reason"`), `line 3: json: unknown field "color"`, ""},
		{"two values on a line", edit(4, "}\n", "} {}\n"), "line 4: ", ""},
		// Before limits (version 3 and older), no wallet went below zero;
		// from version 4 a floor may allow it.
		{"negative balance", strings.Replace(edit(1150, `"amount":"`, `"amount":"-99999`), `"version":5`, `"version":3`, 1), "line 1150: entry", "below zero"},
		{"balance that disagrees", edit(7, `"balance":"`, `"balance":"1`), "line 7: entry", "records balance"},
		{"IDs out of order", swap(10, 11), "line 11: entry", "does not sort after"},
		{"bad ID", edit(5, `{"id":"`, `{"id":"z`), "line 5: malformed entry ID", ""},
		{"created_on not the ID's", edit(6, `"created_on":"20`, `"created_on":"19`), "disagrees with its ID", ""},
		{"invalid field", edit(8, `"reason":"`, `"reason":"`+strings.Repeat("r", 5000)), "line 8: entry", "invalid Reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := newLedger(t)
			err := ledger.Import(ctx, dst, strings.NewReader(tc.stream))
			require.ErrorIs(t, err, ledger.ErrInvalid)
			require.Contains(t, err.Error(), tc.want)
			require.Contains(t, err.Error(), tc.also)
			require.Equal(t, "", wallets(t, dst, ledger.WalletQuery{}), "a refused import writes nothing")
			es, err := dst.Entries(ctx, ledger.EntryQuery{})
			require.NoError(t, err)
			require.Empty(t, es)
		})
	}
	t.Run("non-empty target", func(t *testing.T) {
		dst := newLedger(t)
		fill(t, dst, 1)
		err := ledger.Import(ctx, dst, strings.NewReader(strings.Join(good, "")))
		require.ErrorIs(t, err, ledger.ErrNotEmpty)
		es, err := dst.Entries(ctx, ledger.EntryQuery{})
		require.NoError(t, err)
		require.Len(t, es, 1)
	})
	t.Run("duplicate idempotency key", func(t *testing.T) {
		lines := append([]string(nil), good...)
		require.Contains(t, lines[1], `"authority_id":"auth-0"`)
		require.Contains(t, lines[1], `"idempotency_key":"key-0"`)
		require.Contains(t, lines[4], `"authority_id":"auth-0"`)
		require.NotContains(t, lines[4], "idempotency_key")
		lines[4] = strings.Replace(lines[4], `,"balance"`, `,"idempotency_key":"key-0","balance"`, 1)
		err := ledger.Import(ctx, newLedger(t), strings.NewReader(strings.Join(lines, "")))
		require.ErrorIs(t, err, ledger.ErrInvalid)
		require.Contains(t, err.Error(), "line 5: entry")
		require.Contains(t, err.Error(), "reuses idempotency key")
	})
	t.Run("closed", func(t *testing.T) {
		l, err := ledger.New(memstore.New())
		require.NoError(t, err)
		require.NoError(t, l.Close())
		require.ErrorIs(t, ledger.Import(ctx, l, strings.NewReader(strings.Join(good, ""))), ledger.ErrClosed)
	})
}

// TestExportImportAcrossStores moves one ledger memstore -> badgerstore
// -> pgstore -> memstore (pgstore when LEDGER_PG_URL is set) and checks
// that every hop exports the same bytes and verifies.
func TestExportImportAcrossStores(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	fill(t, src, 1500)
	want := export(t, src)

	hops := []struct {
		name string
		open func(t *testing.T) ledger.Store
	}{
		{"badgerstore", func(t *testing.T) ledger.Store {
			s, err := badgerstore.Open(filepath.Join(t.TempDir(), "ledger"))
			require.NoError(t, err)
			return s
		}},
	}
	if url := os.Getenv("LEDGER_PG_URL"); url != "" {
		hops = append(hops, struct {
			name string
			open func(t *testing.T) ledger.Store
		}{"pgstore", func(t *testing.T) ledger.Store {
			schema := fmt.Sprintf("transfer_%d", time.Now().UnixNano())
			s, err := pgstore.Open(ctx, url, pgstore.WithSchema(schema))
			require.NoError(t, err)
			t.Cleanup(func() {
				conn, err := pgx.Connect(ctx, url)
				require.NoError(t, err)
				defer conn.Close(ctx)
				_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
				require.NoError(t, err)
			})
			return s
		}})
	} else {
		t.Log("LEDGER_PG_URL not set: the pgstore hop is skipped")
	}
	hops = append(hops, struct {
		name string
		open func(t *testing.T) ledger.Store
	}{"memstore", func(*testing.T) ledger.Store { return memstore.New() }})

	stream := want
	for _, hop := range hops {
		l, err := ledger.New(hop.open(t))
		require.NoError(t, err, hop.name)
		require.NoError(t, ledger.Import(ctx, l, strings.NewReader(stream)), hop.name)
		stream = export(t, l)
		require.Equal(t, want, stream, "%s exports what it imported", hop.name)
		require.NoError(t, l.Close())
	}
}
