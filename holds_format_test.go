package ledger_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// holdsLedger is a ledger with holds in every state, a capture's entry
// among its entries, and a wallet whose total exists for its hold alone.
func holdsLedger(t *testing.T) *ledger.Ledger {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	l := newLedger(t, ledger.WithClock(func() time.Time { return now }), ledger.WithHoldSweep(0))
	for _, ne := range []ledger.NewEntry{
		{AuthorityID: "bank", UserID: "ann", Amount: dec("100"), Reason: "deposit"},
		{AuthorityID: "bank", UserID: "bob", Currency: "gems", Amount: dec("50"), Reason: "deposit"},
	} {
		_, err := l.CreateEntry(ctx, ne)
		require.NoError(t, err)
	}
	require.NoError(t, l.SetLimits(ctx, "bank", ledger.WalletLimits{UserID: "cat", Floor: dec("-5")}))
	hold := func(nh ledger.NewHold) ledger.Hold {
		h, err := l.Hold(ctx, nh)
		require.NoError(t, err)
		return h
	}
	hold(ledger.NewHold{AuthorityID: "shop", UserID: "ann", Amount: dec("10"), Reason: "order 1", IdempotencyKey: "o1",
		Metadata: map[string]string{"order": "1"}, Expires: now.Add(time.Hour + 5)})
	c := hold(ledger.NewHold{AuthorityID: "shop", UserID: "bob", Currency: "gems", Amount: dec("7"), Reason: "order 2"})
	_, err := l.Capture(ctx, "shop", c.ID, ledger.Capture{Amount: dec("5")})
	require.NoError(t, err)
	r := hold(ledger.NewHold{AuthorityID: "shop", UserID: "ann", Amount: dec("1"), Reason: "order 3"})
	_, err = l.Release(ctx, "shop", r.ID)
	require.NoError(t, err)
	hold(ledger.NewHold{AuthorityID: "shop", UserID: "cat", Amount: dec("5"), Reason: "on credit"})
	return l
}

func TestExportHolds(t *testing.T) {
	ctx := context.Background()
	src := holdsLedger(t)
	out := export(t, src)
	lines := strings.SplitAfter(out, "\n")
	lines = lines[:len(lines)-1]
	require.Equal(t, `{"format":"walletledger-export","version":6}`+"\n", lines[0])
	require.Len(t, lines, 1+3+1+4+9+1, "a header, 3 entries, a limits line, 4 holds, 9 changes, an end marker")
	require.Contains(t, lines[3], `"hold_id":"`, "the capture's entry names its hold")
	for i, state := range []string{"active", "captured", "released", "active"} {
		require.Regexp(t, `^\{"hold":\{"hold_id":"[0-9a-f]{24}",.*"state":"`+state+`"`, lines[5+i])
	}
	require.Contains(t, lines[5], `"idempotency_key":"o1"`)
	require.Contains(t, lines[5], `"expires":"2026-06-01T01:00:00.000000005Z"`)
	require.Contains(t, lines[len(lines)-1], `"holds":4,"held":"15","changes":9`)

	// At the source's instant: its first hold has not expired yet.
	dst := newLedger(t, ledger.WithClock(func() time.Time { return time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) }), ledger.WithHoldSweep(0))
	require.NoError(t, ledger.Import(ctx, dst, strings.NewReader(out)))
	require.Equal(t, out, export(t, dst), "every field survives the round trip")
	for _, w := range []struct{ user, currency, held string }{{"ann", "", "10"}, {"bob", "gems", "0"}, {"cat", "", "5"}} {
		b, err := dst.Balance(ctx, w.user, w.currency)
		require.NoError(t, err)
		require.True(t, dec(w.held).Equal(b.Held), "%s holds %s, want %s", w.user, b.Held, w.held)
	}
	require.NoError(t, dst.Verify(ctx))

	hold := func(i int) string { return lines[5+i] }
	holdsOnly := strings.Join(lines[:5], "")
	with := func(i int, old, new string) string {
		ls := append([]string(nil), lines...)
		require.Contains(t, ls[5+i], old)
		ls[5+i] = strings.Replace(ls[5+i], old, new, 1)
		return strings.Join(ls, "")
	}
	id := regexp.MustCompile(`"hold_id":"([0-9a-f]{24})"`)
	activeID := id.FindStringSubmatch(hold(0))[1]
	for _, tc := range []struct{ name, stream, want string }{
		{"a hold in a version 4 stream", strings.Replace(out, `"version":6`, `"version":4`, 1), "line 4: entry"},
		{"holds before the limits", holdsOnly[:len(holdsOnly)-len(lines[4])] + hold(0) + lines[4] + strings.Join(lines[6:], ""), "line 6: limits or an entry after the holds"},
		{"holds out of order", holdsOnly + hold(1) + hold(0) + strings.Join(lines[7:], ""), "does not sort after"},
		{"an unknown state", with(0, `"state":"active"`, `"state":"frozen"`), "line 6"},
		{"an active hold with closed_on", with(0, `"state":"active"`, `"state":"active","closed_on":"2026-06-01T00:00:00Z"`), "active, with closed_on"},
		{"a released hold without closed_on", with(2, `"closed_on"`, `"closed_x"`), "line 8"},
		{"a captured hold without its entry", with(1, `"entry_id":"`, `"entry_id":"0`), "which does not name it"},
		{"an expired hold closed at another instant", with(0, `"state":"active"`, `"state":"expired","closed_on":"2026-06-01T00:00:00Z"`), "not its expires"},
		{"a non-positive amount", with(0, `"amount":"10"`, `"amount":"0"`), "Amount"},
		{"a reused key", with(3, `"reason":"on credit"`, `"reason":"on credit","idempotency_key":"o1"`), "reuses idempotency key"},
		{"the marker counts another hold", strings.Replace(out, `"holds":4`, `"holds":5`, 1), "counts 5 holds"},
		{"the marker's held differs", strings.Replace(out, `"held":"15"`, `"held":"16"`, 1), "held is 16"},
		{"a field beside the hold", with(0, `{"hold":{`, `{"amount":"1","hold":{`), "line 6"},
		{"a capture of an unknown hold", strings.Replace(out, `"hold_id":"`+id.FindStringSubmatch(hold(1))[1]+`"}`, `"hold_id":"`+activeID+`"}`, 1), "which does not name it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := newLedger(t)
			err := ledger.Import(ctx, dst, strings.NewReader(tc.stream))
			require.ErrorIs(t, err, ledger.ErrInvalid)
			require.Contains(t, err.Error(), tc.want)
			requireEmpty(t, dst)
		})
	}
}

// TestImportVersion4 reads a stream as the last release wrote it
// (testdata/export-v4.jsonl: currencies, limits, transfers, reversals,
// item uses; no holds) and exports it again as version 5: the same
// lines, a new header, an end marker that counts no holds.
func TestImportVersion4(t *testing.T) {
	ctx := context.Background()
	v4, err := os.ReadFile("testdata/export-v4.jsonl")
	require.NoError(t, err)
	l := newLedger(t)
	require.NoError(t, ledger.Import(ctx, l, strings.NewReader(string(v4))))
	require.NoError(t, l.Verify(ctx))
	want := strings.Replace(string(v4), `{"format":"walletledger-export","version":4}`, `{"format":"walletledger-export","version":5}`, 1)
	require.Equal(t, want, exportV5(t, l))
}
