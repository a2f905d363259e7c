package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

// hookWriter collects what it is given and calls at before every Write
// with the number of bytes written once that Write is done.
type hookWriter struct {
	buf bytes.Buffer
	at  func(end int)
}

func (h *hookWriter) Write(p []byte) (int, error) {
	h.at(h.buf.Len() + len(p))
	return h.buf.Write(p)
}

func TestImportRefusesTruncatedExport(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	fill(t, src, 40)
	out := exportV5(t, src)
	require.NoError(t, ledger.Import(ctx, newLedger(t), strings.NewReader(out)), "the whole stream imports")

	lines := strings.SplitAfter(out, "\n")
	lines = lines[:len(lines)-1] // the empty string after the last newline

	refuse := func(t *testing.T, stream string) error {
		t.Helper()
		dst := newLedger(t)
		err := ledger.Import(ctx, dst, strings.NewReader(stream))
		require.ErrorIs(t, err, ledger.ErrInvalid)
		requireEmpty(t, dst)
		return err
	}
	t.Run("every line boundary", func(t *testing.T) {
		for n := range len(lines) { // the first n lines
			err := refuse(t, strings.Join(lines[:n], ""))
			if n > 1 {
				require.Contains(t, err.Error(), fmt.Sprintf("stream ends after line %d without its end marker", n))
			}
		}
	})
	require.Len(t, lines, 42, "a header, 40 entries, an end marker")
	end := lines[41]
	require.Equal(t, `{"end":{"entries":40,"items":10,"used_items":5,"total":"`, end[:strings.Index(end, `"total":"`)+9])
	for _, tc := range []struct{ name, stream, want string }{
		{"blank line after the end marker", out + "\n", "line 43: data after the end marker"},
		{"a second copy after the end marker", out + out, "line 43: data after the end marker"},
		{"an entry after the end marker", strings.Join(append(append(lines[:40:40], end), lines[40]), ""), "line 42: data after the end marker"},
		{"end marker counts another entry", strings.Join(lines[:41], "") + strings.Replace(end, `"entries":40`, `"entries":41`, 1), "line 42: the end marker counts 41 entries, the stream holds 40"},
		{"end marker counts another item", strings.Join(lines[:41], "") + strings.Replace(end, `"items":10`, `"items":9`, 1), "line 42: the end marker counts 9 items, the stream holds 10"},
		{"end marker counts another use", strings.Join(lines[:41], "") + strings.Replace(end, `"used_items":5`, `"used_items":6`, 1), "line 42: the end marker counts 6 used items, the stream holds 5"},
		{"end marker's total differs", strings.Join(lines[:41], "") + strings.Replace(end, `"total":"`, `"total":"1`, 1), "line 42: the end marker's total is 1"},
		{"end marker with an entry's field", strings.Join(lines[:41], "") + strings.Replace(end, `{"end"`, `{"id":"","end"`, 1), `line 42: json: unknown field "id"`},
		{"end marker without counts", strings.Join(lines[:41], "") + `{"end":{}}` + "\n", "line 42: the end marker counts 0 entries, the stream holds 40"},
		{"end marker in a version 1 stream", strings.Replace(withoutUses(out), `"version":5`, `"version":1`, 1), "line 42: an end marker in a version 1 stream"},
		{"a use in a version 2 stream", strings.Replace(out, `"version":5`, `"version":2`, 1), "line 2: entry " + lines[1][7:31] + ": an item use in a version 2 stream"},
		{"a newer version", strings.Replace(out, `"version":5`, `"version":7`, 1), "line 1: not a walletledger export this library reads (format \"walletledger-export\" version 7)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, refuse(t, tc.stream).Error(), tc.want)
		})
	}
}

// TestImportVersion1 reads a stream as the release before end markers
// wrote it (testdata/export-v1.jsonl: 60 entries by fill), and exports it
// again in the current version: the same entry lines, a new header and an
// end marker.
func TestImportVersion1(t *testing.T) {
	ctx := context.Background()
	v1, err := os.ReadFile("testdata/export-v1.jsonl")
	require.NoError(t, err)
	l := newLedger(t)
	require.NoError(t, ledger.Import(ctx, l, bytes.NewReader(v1)))
	require.NoError(t, l.Verify(ctx))

	old := strings.SplitAfter(string(v1), "\n")
	got := strings.SplitAfter(exportV5(t, l), "\n")
	require.Len(t, old, 62, "a header, 60 entries, and the empty string after the last newline")
	require.Len(t, got, 63, "a header, 60 entries, an end marker, and the empty string")
	require.Equal(t, `{"format":"walletledger-export","version":1}`+"\n", old[0])
	require.Equal(t, `{"format":"walletledger-export","version":5}`+"\n", got[0])
	require.Equal(t, old[1:61], got[1:61], "every entry as it was")
	total := decimal.Zero
	ws, err := l.Wallets(ctx, ledger.WalletQuery{})
	require.NoError(t, err)
	for _, w := range ws {
		total = total.Add(w.Total)
	}
	require.Equal(t, fmt.Sprintf(`{"end":{"entries":60,"items":15,"used_items":8,"total":"%s"}}`+"\n", total), got[61])
}

func TestExportCancelAtRandom(t *testing.T) {
	src := newLedger(t)
	fill(t, src, 3000)
	full := export(t, src)
	rng := rand.New(rand.NewPCG(10, 1))
	for range 24 {
		at := rng.IntN(len(full))
		t.Run(fmt.Sprint("at=", at), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &hookWriter{at: func(end int) {
				if end > at { // the Write that carries byte at
					cancel()
				}
			}}
			err := src.Export(ctx, w)
			got := w.buf.String()
			require.True(t, strings.HasPrefix(full, got))
			if err == nil {
				// Only a cancel once every entry was encoded comes too
				// late: the rest sat in Export's buffer.
				require.Greater(t, at, len(full)-ledger.ExportBufferForTest-512)
				require.Equal(t, full, got)
				return
			}
			require.ErrorIs(t, err, context.Canceled)
			require.ErrorContains(t, err, "ledger: export: ")
			// What a failed export wrote has no end marker: Import
			// refuses it.
			dst := newLedger(t)
			require.ErrorIs(t, ledger.Import(context.Background(), dst, strings.NewReader(got)), ledger.ErrInvalid)
			requireEmpty(t, dst)
		})
	}
}

func TestExportClose(t *testing.T) {
	ctx := context.Background()
	l, err := ledger.New(memstore.New()) // closed by the test
	require.NoError(t, err)
	fill(t, l, 1500)
	want := export(t, l)

	var closed <-chan error
	w := &hookWriter{at: func(int) {
		if closed == nil {
			closed = closeAndWait(l)
		}
	}}
	exported := make(chan error, 1)
	go func() { exported <- l.Export(ctx, w) }()
	require.NoError(t, within(t, "Export", exported))
	require.NotNil(t, closed, "Close was called during the export")
	require.NoError(t, within(t, "Close", closed))
	require.Equal(t, want, w.buf.String(), "an export in flight completes")

	var buf bytes.Buffer
	require.ErrorIs(t, l.Export(ctx, &buf), ledger.ErrClosed)
	require.Zero(t, buf.Len(), "an export after Close writes nothing")
	if err := ledger.Import(ctx, l, strings.NewReader(want)); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("Import after Close: got %v, want ErrClosed", err)
	}
}

// usesIn matches an item's use in an export line.
var usesIn = regexp.MustCompile(`,"used_on":"[^"]*","used_by":"[^"]*"(,"use_idempotency_key":"[^"]*")?`)

// withoutUses returns an export stream as a release before version 3
// wrote it: the same lines without the items' uses.
func withoutUses(stream string) string { return usesIn.ReplaceAllString(stream, "") }

// TestExportUses checks how an item's use travels: used_on to the
// nanosecond, used_by and the use's key, on used items only.
func TestExportUses(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 7, 8, 9, 10, 11, 123456789, time.UTC)
	l, err := ledger.New(memstore.New(), ledger.WithClock(func() time.Time { return at }))
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	keyed := mustCreate(t, l, &ledger.Item{Name: "keyed"})
	bare := mustCreate(t, l, &ledger.Item{Name: "bare"})
	unused := mustCreate(t, l, &ledger.Item{Name: "unused"})
	_, err = l.UseItem(ctx, "arcade", keyed.ID, ledger.UseIdempotencyKey("use-1"))
	require.NoError(t, err)
	_, err = l.UseItem(ctx, "shop", bare.ID)
	require.NoError(t, err)
	out := exportV5(t, l)
	lines := strings.SplitAfter(out, "\n")
	require.Contains(t, lines[1], `"item":{"name":"keyed","used":true,"used_on":"2026-07-08T09:10:11.123456789Z","used_by":"arcade","use_idempotency_key":"use-1"}`)
	require.Contains(t, lines[2], `"item":{"name":"bare","used":true,"used_on":"2026-07-08T09:10:11.123456789Z","used_by":"shop"}`)
	require.Contains(t, lines[3], `"item":{"name":"unused","used":false}`)
	require.Contains(t, lines[3], unused.ID)

	// Refused uses: each stream differs from out in one line.
	for _, tc := range []struct{ name, from, to, want string }{
		{"a use on an unused item", `"used":false}`, `"used":false,"used_on":"2026-07-08T09:10:11Z","used_by":"x"}`, "line 4: entry " + unused.ID + ": an unused item with a use"},
		{"used_on without used_by", `,"used_by":"shop"`, ``, "line 3: entry " + bare.ID + ": an item use needs both used_on and used_by"},
		{"used_by without used_on", `"used_on":"2026-07-08T09:10:11.123456789Z","used_by":"shop"`, `"used_by":"shop"`, "an item use needs both used_on and used_by"},
		{"a key without the use", `"used_on":"2026-07-08T09:10:11.123456789Z","used_by":"arcade",`, ``, "line 2: entry " + keyed.ID + ": an item use needs both used_on and used_by"},
		{"used_on past 2262", `"used_on":"2026-07-08T09:10:11.123456789Z","used_by":"shop"`, `"used_on":"2300-01-01T00:00:00Z","used_by":"shop"`, "outside the years 1970 to 2262"},
		{"used_on before 1970", `"used_on":"2026-07-08T09:10:11.123456789Z","used_by":"shop"`, `"used_on":"1969-12-31T23:59:59Z","used_by":"shop"`, "outside the years 1970 to 2262"},
		{"used_by too long", `"used_by":"shop"`, `"used_by":"` + strings.Repeat("s", 1000) + `"`, "invalid Item.UsedBy"},
		{"use key too long", `"use_idempotency_key":"use-1"`, `"use_idempotency_key":"` + strings.Repeat("k", 1000) + `"`, "invalid UseIdempotencyKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := strings.Replace(out, tc.from, tc.to, 1)
			require.NotEqual(t, out, stream)
			dst := newLedger(t)
			err := ledger.Import(ctx, dst, strings.NewReader(stream))
			require.ErrorIs(t, err, ledger.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
			requireEmpty(t, dst)
		})
	}

	// A use given in another zone imports in UTC.
	dst := newLedger(t)
	require.NoError(t, ledger.Import(ctx, dst, strings.NewReader(strings.Replace(out, `"2026-07-08T09:10:11.123456789Z","used_by":"shop"`, `"2026-07-08T11:10:11.123456789+02:00","used_by":"shop"`, 1))))
	es, err := dst.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{bare.ID}})
	require.NoError(t, err)
	require.Equal(t, at, es[0].Item.UsedOn)
}

// TestImportVersion2 reads a stream as the release before item uses
// wrote it: version 2, used items without their use. They import used,
// with no use recorded, and export again as they were.
func TestImportVersion2(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	fill(t, src, 40)
	v2 := strings.Replace(withoutUses(exportV5(t, src)), `"version":5`, `"version":2`, 1)
	require.Contains(t, v2, `"version":2`)
	require.NotContains(t, v2, "used_on")
	l := newLedger(t)
	require.NoError(t, ledger.Import(ctx, l, strings.NewReader(v2)))
	require.NoError(t, l.Verify(ctx))
	inv, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOnly})
	require.NoError(t, err)
	require.Len(t, inv, 5)
	for _, it := range inv {
		require.True(t, it.Item.UsedOn.IsZero())
		require.Empty(t, it.Item.UsedBy)
	}
	require.Equal(t, strings.Replace(v2, `"version":2`, `"version":5`, 1), exportV5(t, l))
}

func mustCreate(t *testing.T, l *ledger.Ledger, it *ledger.Item) ledger.Entry {
	t.Helper()
	e, err := l.CreateEntry(context.Background(), ledger.NewEntry{AuthorityID: "shop", UserID: "u", Amount: decimal.Zero, Reason: "r", Item: it})
	require.NoError(t, err)
	return e
}
