package ledger_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

// hookReader is a seekable stream that calls at before every Read with
// the pass it is in (1 until the first Seek, 2 after it) and the offset
// within the stream, so a test can act at a chosen point of an Import.
type hookReader struct {
	r    *strings.Reader
	pass int
	at   func(pass int, off int64)
}

func newHookReader(s string, at func(pass int, off int64)) *hookReader {
	return &hookReader{r: strings.NewReader(s), pass: 1, at: at}
}

func (h *hookReader) Read(p []byte) (int, error) {
	h.at(h.pass, h.r.Size()-int64(h.r.Len()))
	return h.r.Read(p)
}

func (h *hookReader) Seek(off int64, whence int) (int64, error) {
	h.pass++
	return h.r.Seek(off, whence)
}

// within waits for ch for at most a minute: a deadlock fails the test
// instead of hanging it.
func within(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(time.Minute):
		t.Fatalf("%s did not return within a minute", what)
		return nil
	}
}

// closeAndWait starts l.Close and returns once it waits for the calls in
// flight, the moment from which a call that took the ledger's lock a
// second time would deadlock.
func closeAndWait(l *ledger.Ledger) <-chan error {
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	for !l.CloseWaitingForTest() {
		runtime.Gosched()
	}
	return closed
}

// requireEmpty fails unless l holds no entry and no total.
func requireEmpty(t *testing.T, l *ledger.Ledger) {
	t.Helper()
	es, err := l.Entries(context.Background(), ledger.EntryQuery{})
	require.NoError(t, err)
	require.Empty(t, es, "nothing written")
	require.Equal(t, "", wallets(t, l, ledger.WalletQuery{}), "nothing written")
	for _, c := range []string{"", "gems"} {
		hs, err := l.Holds(context.Background(), ledger.HoldQuery{Currency: c})
		require.NoError(t, err)
		require.Empty(t, hs, "no hold written")
	}
}

func TestImportCloseDuringWritingPass(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	fill(t, src, 1500)
	out := export(t, src)

	// Not newLedger: its cleanup would call Close, which a deadlock would
	// hang.
	l, err := ledger.New(memstore.New())
	require.NoError(t, err)
	var closed <-chan error
	r := newHookReader(out, func(pass int, off int64) {
		if pass == 2 && closed == nil {
			closed = closeAndWait(l)
		}
	})
	imported := make(chan error, 1)
	go func() { imported <- ledger.Import(ctx, l, r) }()
	require.NoError(t, within(t, "Import", imported))
	require.NotNil(t, closed, "Close was called during the writing pass")
	require.NoError(t, within(t, "Close", closed))
	require.ErrorIs(t, l.Health(ctx), ledger.ErrClosed)
}

func TestImportCancelledDuringWritingPass(t *testing.T) {
	src := newLedger(t)
	fill(t, src, 2500) // several write transactions
	out := export(t, src)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dst := newLedger(t)
	r := newHookReader(out, func(pass int, off int64) {
		if pass == 2 && off >= int64(len(out)/2) {
			cancel()
		}
	})
	require.NoError(t, ledger.Import(ctx, dst, r), "once writing has started, Import finishes and reports success")
	require.ErrorIs(t, ctx.Err(), context.Canceled, "the cancel came during the writing pass")
	require.Equal(t, out, export(t, dst))
	require.NoError(t, dst.Verify(context.Background()))
}

func TestImportCancelAtRandom(t *testing.T) {
	src := newLedger(t)
	fill(t, src, 1200)
	out := export(t, src)
	n := int64(len(out))
	rng := rand.New(rand.NewPCG(10, 3))
	for i := range 24 {
		at := rng.Int64N(2*n + 1)
		// Every third run hides Seek, so Import spools the stream to a
		// temporary file (one pass over r).
		spool := i%3 == 0
		if spool {
			at %= n + 1
		}
		t.Run(fmt.Sprintf("at=%d/spool=%v", at, spool), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var r io.Reader = newHookReader(out, func(pass int, off int64) {
				if int64(pass-1)*n+off >= at {
					cancel()
				}
			})
			if spool {
				r = struct{ io.Reader }{r}
			}
			dst := newLedger(t)
			err := ledger.Import(ctx, dst, r)
			require.ErrorIs(t, ctx.Err(), context.Canceled, "the cancel came while Import read")
			if spool || at <= n {
				// In the check pass (or the spooling before it): nothing
				// written, and the error says why.
				require.ErrorIs(t, err, context.Canceled)
				requireEmpty(t, dst)
				require.NoError(t, ledger.Import(context.Background(), dst, strings.NewReader(out)), "a retry may start afresh")
			} else {
				require.NoError(t, err, "a cancel in the writing pass is too late to stop it")
			}
			require.Equal(t, out, export(t, dst))
		})
	}
}

// TestImportRefusesHugeLine: a line longer than any entry within the
// ledger's limits is refused, with its line number, before it is read
// whole.
func TestImportRefusesHugeLine(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	_, err := src.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err)
	var buf strings.Builder
	require.NoError(t, src.Export(ctx, &buf))
	lines := strings.SplitAfter(buf.String(), "\n")
	huge := `{"id":"` + strings.Repeat("x", 4<<20) + "\"}\n"
	stream := lines[0] + huge + strings.Join(lines[1:], "")
	dst := newLedger(t)
	err = ledger.Import(ctx, dst, strings.NewReader(stream))
	require.ErrorIs(t, err, ledger.ErrInvalid)
	require.ErrorContains(t, err, "line 2: longer than")
	es, err := dst.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Empty(t, es)
	// The largest entry the limits admit still imports.
	big := newLedger(t)
	lim := ledger.DefaultLimits()
	_, err = big.CreateEntry(ctx, ledger.NewEntry{AuthorityID: strings.Repeat("\x00", lim.MaxIDBytes), UserID: strings.Repeat("\x01", lim.MaxIDBytes),
		Amount: dec("1"), Reason: strings.Repeat("\x02", lim.MaxReasonBytes), IdempotencyKey: strings.Repeat("\x03", lim.MaxIDBytes),
		Item: &ledger.Item{Name: strings.Repeat("\x04", lim.MaxItemNameBytes), Data: []byte(`"` + strings.Repeat(`\u0000`, lim.MaxItemDataBytes/6-1) + `"`)}})
	require.NoError(t, err)
	buf.Reset()
	require.NoError(t, big.Export(ctx, &buf))
	require.NoError(t, ledger.Import(ctx, newLedger(t), strings.NewReader(buf.String())))
}
