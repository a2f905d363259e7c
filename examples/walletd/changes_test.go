package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// sseEvent is one thing read from a change stream: an event, or a
// comment line.
type sseEvent struct {
	id, event, data string
	// comment is the text after the colon of a comment line; the other
	// fields are then empty.
	comment   string
	isComment bool
}

// sseStream is a client's open GET /api/v1/changes, read and parsed as
// Server-Sent Events by a goroutine of its own.
type sseStream struct {
	t      *testing.T
	res    *http.Response
	cancel context.CancelFunc
	events chan sseEvent // closed at the end of the stream
	done   chan struct{} // closed after events, once err is set
	err    error         // how the stream ended: nil for a clean end
}

// changesRequest sends GET /api/v1/changes with the given query and
// Last-Event-ID ("" for none) and authorization, on a connection of its
// own, and returns the answer with its body unread.
func changesRequest(t *testing.T, ctx context.Context, c *sdkClient, query url.Values, lastEventID, auth string) *http.Response {
	t.Helper()
	u := c.apiURL + "/changes"
	if query != nil {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	res, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	return res
}

// openStream opens a change stream as c and checks its headers.
func openStream(t *testing.T, c *sdkClient, query url.Values, lastEventID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	res := changesRequest(t, ctx, c, query, lastEventID, c.token)
	if res.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("GET /changes: got %d, want 200; body %s", res.StatusCode, raw)
	}
	assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	assert.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
	assert.Equal(t, "no", res.Header.Get("X-Accel-Buffering"))
	s := &sseStream{t: t, res: res, cancel: cancel, events: make(chan sseEvent, 1024), done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.close)
	return s
}

// read parses the stream as the Server-Sent Events specification says,
// for the fields the server sends: lines end with LF or CRLF, a blank
// line dispatches an event with data, a line that starts with a colon
// is a comment, and one space after a field's colon is dropped.
func (s *sseStream) read() {
	defer close(s.done)
	defer close(s.events)
	r := bufio.NewReader(s.res.Body)
	var ev sseEvent
	var data []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) || line != "" {
				s.err = fmt.Errorf("read stream: %w (after %q)", err, line)
			}
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if len(data) > 0 {
				ev.data = strings.Join(data, "\n")
				s.events <- ev
			}
			ev, data = sseEvent{}, nil
			continue
		}
		if text, ok := strings.CutPrefix(line, ":"); ok {
			s.events <- sseEvent{comment: text, isComment: true}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			data = append(data, value)
		default:
			s.err = fmt.Errorf("unexpected field %q in line %q", field, line)
			return
		}
	}
}

// next returns the next event, comments skipped, failing the test if
// none comes within 10s or the stream ends.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				<-s.done
				s.t.Fatalf("the stream ended (%v) while an event was awaited", s.err)
			}
			if !ev.isComment {
				return ev
			}
		case <-timeout:
			s.t.Fatal("no event within 10s")
		}
	}
}

// nextN returns the next n events.
func (s *sseStream) nextN(n int) []sseEvent {
	s.t.Helper()
	var evs []sseEvent
	for range n {
		evs = append(evs, s.next())
	}
	return evs
}

// awaitEnd waits, up to d, for the server to end the stream, and
// returns how it ended (nil: cleanly) and what it sent meanwhile.
func (s *sseStream) awaitEnd(d time.Duration) ([]sseEvent, error) {
	s.t.Helper()
	var evs []sseEvent
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				<-s.done
				return evs, s.err
			}
			evs = append(evs, ev)
		case <-timeout:
			s.t.Fatalf("the stream did not end within %v", d)
		}
	}
}

// close hangs up, as a client that goes away does.
func (s *sseStream) close() {
	s.cancel()
	s.res.Body.Close()
	for range s.events { // let read return
	}
}

// feed is every change the ledger has, as Ledger.Changes yields them.
func feed(t *testing.T, l *ledger.Ledger) []ledger.Change {
	t.Helper()
	var out []ledger.Change
	for c, err := range l.Changes(context.Background(), ledger.ChangeQuery{}) {
		require.NoError(t, err)
		out = append(out, c)
	}
	return out
}

// requireEvents checks that evs are exactly the changes want, in order:
// id the cursor, event the kind, data the change as encoding/json
// writes it.
func requireEvents(t *testing.T, want []ledger.Change, evs []sseEvent) {
	t.Helper()
	require.Len(t, evs, len(want), "events")
	for i, c := range want {
		b, err := json.Marshal(c)
		require.NoError(t, err)
		require.Equal(t, c.Cursor, evs[i].id, "event %d: id", i)
		require.Equal(t, string(c.Kind), evs[i].event, "event %d: event", i)
		require.Equal(t, string(b), evs[i].data, "event %d: data", i)
	}
}

// writeEveryKind makes changes of every kind the API and the library
// can make without a clock: entries (v1), an item use (v1), limits, a
// hold placed and released, one captured, a transfer and a reversal.
// It returns how many changes it made.
func writeEveryKind(t *testing.T, env *testEnv, c *sdkClient, user string) int {
	t.Helper()
	ctx := context.Background()
	l := env.srv.ledger
	require.Equal(t, http.StatusOK, c.createEntry(user, 100, "payday", nil).status)
	r := c.createEntry(user, -5, "soda", map[string]any{"name": "Soda Can", "data": map[string]any{"size": "<330 ml>"}})
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	require.Equal(t, http.StatusOK, c.useItem(r.body["entry"].(map[string]any)["entry_id"].(string)).status)
	require.NoError(t, l.SetLimits(ctx, c.authorityID, ledger.WalletLimits{UserID: user, Floor: decimal.NewFromInt(-50)}))
	h, err := l.Hold(ctx, ledger.NewHold{AuthorityID: c.authorityID, UserID: user, Amount: decimal.NewFromInt(10), Reason: "pre-auth"})
	require.NoError(t, err)
	_, err = l.Release(ctx, c.authorityID, h.ID)
	require.NoError(t, err)
	h, err = l.Hold(ctx, ledger.NewHold{AuthorityID: c.authorityID, UserID: user, Amount: decimal.NewFromInt(20), Reason: "ticket"})
	require.NoError(t, err)
	_, err = l.Capture(ctx, c.authorityID, h.ID, ledger.Capture{})
	require.NoError(t, err)
	_, err = l.Transfer(ctx, ledger.NewTransfer{AuthorityID: c.authorityID, FromUserID: user, ToUserID: user + "-friend",
		Amount: decimal.NewFromInt(7), Reason: "gift"})
	require.NoError(t, err)
	r = c.createEntry(user, 3, "mistake", nil)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	_, err = l.Reverse(ctx, c.authorityID, r.body["entry"].(map[string]any)["entry_id"].(string), "undo")
	require.NoError(t, err)
	// entry, entry, item_used, limits, hold_placed, hold_released,
	// hold_placed, entry (capture), entry x2 (transfer), entry, entry
	// (reversal).
	return 12
}

// TestChangesStream (issue 13): a client reads the feed with net/http,
// hangs up midway while writes go on, resumes with Last-Event-ID, and in
// the end has had every change exactly once, in order, as
// Ledger.Changes yields them. The server runs as serve runs it, with
// read and write timeouts far shorter than the stream and a connection
// cap of 2: none of them cuts a stream that is written or kept alive.
func TestChangesStream(t *testing.T) {
	const timeout = 300 * time.Millisecond
	env, c, _ := servedEnv(t, envOptions{keepAlive: timeout / 3}, func(s *server) {
		s.readTimeout, s.writeTimeout, s.maxConns = timeout, timeout, 2
	}, nil)
	n := writeEveryKind(t, env, c, "u1")
	require.Len(t, feed(t, env.srv.ledger), n)

	// From the start; hang up after 5 events, with more already sent.
	s := openStream(t, c, nil, "")
	got := s.nextN(5)
	env.awaitMetric("walletd_change_streams 1")
	s.close()
	env.awaitMetric("walletd_change_streams 0")

	// Writes go on while the client is away.
	n += writeEveryKind(t, env, c, "u2")

	// Resume: everything after the last event handled, once.
	s = openStream(t, c, nil, got[len(got)-1].id)
	got = append(got, s.nextN(n-len(got))...)
	requireEvents(t, feed(t, env.srv.ledger), got)

	// Idle for many times the read and write timeouts: keep-alives
	// come, and the stream lives on.
	start := time.Now()
	var comments int
	for time.Since(start) < 6*timeout {
		select {
		case ev, ok := <-s.events:
			require.True(t, ok, "the stream ended while idle: %v", s.err)
			require.True(t, ev.isComment, "an event on an idle stream: %+v", ev)
			assert.Equal(t, " keep-alive", ev.comment)
			comments++
		case <-time.After(3 * timeout): // three keep-alive intervals
			t.Fatalf("no keep-alive within %v", 3*timeout)
		}
	}
	assert.GreaterOrEqual(t, comments, 3, "keep-alives in %v, one due every %v", 6*timeout, timeout/3)

	// A new client at the connection cap closes an idle connection to
	// make room (the SDK client's), never the stream.
	res := changesRequest(t, context.Background(), c, url.Values{"after": {"bogus!"}}, "", c.token)
	res.Body.Close()
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)

	// New changes follow as they commit. The SDK client's connection
	// may be the one closed for room: drop it rather than race the
	// server's close with a POST, which the client would not retry.
	c.hc.CloseIdleConnections()
	n += writeEveryKind(t, env, c, "u3")
	got = append(got, s.nextN(n-len(got))...)
	all := feed(t, env.srv.ledger)
	require.Len(t, all, n)
	requireEvents(t, all, got)
	seen := map[string]bool{}
	for i, ev := range got {
		require.False(t, seen[ev.id], "event %d: cursor %s twice", i, ev.id)
		seen[ev.id] = true
		if i > 0 {
			require.Less(t, got[i-1].id, ev.id, "event %d: cursors sort in feed order", i)
		}
	}
	s.close()
	env.awaitMetric("walletd_change_streams 0")
}

// TestChangesAfter: ?after= starts after its cursor as Last-Event-ID
// does, and when both are given Last-Event-ID wins, as EventSource
// needs when it reconnects to the URL it was opened with. Nothing is
// left out or added: the event after the expected ones is the next
// change written.
func TestChangesAfter(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	writeEveryKind(t, env, c, "u")
	all := feed(t, env.srv.ledger)
	tests := []struct {
		name        string
		query       url.Values
		lastEventID string
		from        int // index of the first change expected
	}{
		{"no cursor", nil, "", 0},
		{"after", url.Values{"after": {all[2].Cursor}}, "", 3},
		{"empty after", url.Values{"after": {""}}, "", 0},
		{"Last-Event-ID", nil, all[4].Cursor, 5},
		{"both: Last-Event-ID wins", url.Values{"after": {all[1].Cursor}}, all[6].Cursor, 7},
		{"after the last", url.Values{"after": {all[len(all)-1].Cursor}}, "", len(all)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStream(t, c, tt.query, tt.lastEventID)
			want := all[tt.from:]
			got := s.nextN(len(want))
			require.Equal(t, http.StatusOK, c.createEntry("other", 1, tt.name, nil).status)
			got = append(got, s.next())
			all = feed(t, env.srv.ledger)
			requireEvents(t, append(want, all[len(all)-1]), got)
		})
	}
}

// TestChangesKeepAlive: an idle stream gets keep-alive comments, and
// then the change that ends its idleness. The read and write timeouts
// are shorter than the keep-alive interval: each write has a deadline
// of its own, and the idle time between writes counts for none.
func TestChangesKeepAlive(t *testing.T) {
	const timeout = 100 * time.Millisecond
	env, c, _ := servedEnv(t, envOptions{keepAlive: 3 * timeout}, func(s *server) {
		s.readTimeout, s.writeTimeout = timeout, timeout
	}, nil)
	s := openStream(t, c, nil, "")
	for i := range 4 {
		select {
		case ev, ok := <-s.events:
			require.True(t, ok, "the stream ended: %v", s.err)
			require.Equal(t, sseEvent{comment: " keep-alive", isComment: true}, ev, "item %d", i)
		case <-time.After(10 * time.Second):
			t.Fatal("no keep-alive within 10s")
		}
	}
	require.Equal(t, http.StatusOK, c.createEntry("u", 1, "r", nil).status)
	requireEvents(t, feed(t, env.srv.ledger), []sseEvent{s.next()})
}

// TestChangesAuth: the stream is authenticated like every other call,
// with the same answers, and a HEAD gets the stream's headers alone.
func TestChangesAuth(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	unknown := c.sign(jwt.MapClaims{"sub": "0123456789abcdef0123456789abcdef"})
	for _, tt := range []struct {
		name, auth string
		status     int
		msg        string
	}{
		{"no Authorization", "", http.StatusUnauthorized, "authorization data required"},
		{"garbage", "not a token", http.StatusForbidden, "forbidden"},
		{"unknown authority", unknown, http.StatusForbidden, "forbidden"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stream := c.doAuth(http.MethodGet, "/changes", nil, nil, tt.auth)
			requireError(t, stream, tt.status, tt.msg)
			wallets := c.doAuth(http.MethodGet, "/wallet", nil, nil, tt.auth)
			assert.Equal(t, wallets.status, stream.status)
			assert.Equal(t, wallets.raw, stream.raw)
		})
	}
	h := c.doAuth(http.MethodHead, "/changes", nil, nil, c.token)
	assert.Equal(t, http.StatusOK, h.status)
	assert.Equal(t, "text/event-stream", h.header.Get("Content-Type"))
	assert.Empty(t, h.raw)
	r := c.do(http.MethodPost, "/changes", nil, nil)
	requireError(t, r, http.StatusMethodNotAllowed, "method not allowed")
	assert.Equal(t, "GET, HEAD", r.header.Get("Allow"))
}

// TestChangesBadRequest: a cursor that is not one, from either place, or
// a bad query, is a 400 in the v1 error style, before any stream.
func TestChangesBadRequest(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	require.Equal(t, http.StatusOK, c.createEntry("u", 1, "r", nil).status)
	good := feed(t, env.srv.ledger)[0].Cursor
	for _, tt := range []struct {
		name        string
		query       url.Values
		lastEventID string
		msg         string
	}{
		{"after", url.Values{"after": {"not a cursor"}}, "", `invalid after: "not a cursor" is not a cursor`},
		{"Last-Event-ID", nil, "NOPE", `invalid Last-Event-ID: "NOPE" is not a cursor`},
		{"bad Last-Event-ID wins over a good after", url.Values{"after": {good}}, "x-y", `invalid Last-Event-ID: "x-y" is not a cursor`},
		{"after twice", url.Values{"after": {good, good}}, "", "invalid after: given 2 times"},
		{"unknown parameter", url.Values{"since": {good}}, "", `unknown query parameter "since" (want after)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := changesRequest(t, context.Background(), c, tt.query, tt.lastEventID, c.token)
			defer res.Body.Close()
			raw, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
			requireError(t, resp{status: res.StatusCode, raw: raw, body: decodeObject(t, raw)}, http.StatusBadRequest, tt.msg)
		})
	}
}

// TestChangesShutdown: graceful shutdown ends an open stream at once,
// cleanly, rather than waiting shutdownTimeout for it, and serve
// returns.
func TestChangesShutdown(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- env.srv.serve(ctx, ln, nil) }()
	c.apiURL = "http://" + ln.Addr().String() + "/api/v1"

	require.Equal(t, http.StatusOK, c.createEntry("u", 1, "r", nil).status)
	s := openStream(t, c, nil, "")
	s.next()
	start := time.Now()
	cancel()
	evs, err := s.awaitEnd(5 * time.Second)
	require.NoError(t, err, "the stream ends cleanly")
	assert.Empty(t, evs)
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return within 5s of the shutdown")
	}
	assert.Less(t, time.Since(start), shutdownTimeout/4)
	env.assertMetric("walletd_change_streams 0")
}

// TestChangesStalledClient: a client that stops reading is cut off once
// a write of the stream waits longer than the write timeout, and the
// request counts as write_timeout.
func TestChangesStalledClient(t *testing.T) {
	const timeout = 200 * time.Millisecond
	env, c, addr := servedEnv(t, envOptions{}, func(s *server) { s.writeTimeout = timeout }, nil)
	// More than the socket buffers of both ends hold.
	data := `"` + strings.Repeat("x", 60<<10) + `"`
	for i := range 300 {
		_, err := env.srv.ledger.CreateEntry(context.Background(), ledger.NewEntry{
			AuthorityID: c.authorityID, UserID: "u", Reason: fmt.Sprint(i),
			Item: &ledger.Item{Name: "big", Data: json.RawMessage(data)},
		})
		require.NoError(t, err)
	}
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(4<<10))
	_, err = io.WriteString(conn, "GET /api/v1/changes HTTP/1.1\r\nHost: walletd\r\nAuthorization: "+c.token+"\r\n\r\n")
	require.NoError(t, err)
	// Read nothing.
	env.awaitMetric(`walletd_http_requests_total{code="write_timeout",method="GET",route="/api/v1/changes"} 1`)
	env.awaitMetric("walletd_change_streams 0")
}

// TestChangesSIGTERM: walletd serve, a process of its own on the
// default Badger store, ends an open stream at once on SIGTERM and
// exits 0 without waiting for it; after a restart on the same
// directory, the stream resumes from the last event's cursor.
func TestChangesSIGTERM(t *testing.T) {
	data := t.TempDir()
	cfg := createAuthorityCLI(t, data)
	p := startWalletd(t, "-data", data)
	c := loadSDKClient(t, cfg, p.baseURL())
	require.Equal(t, http.StatusOK, c.createEntry("u", 5, "first", nil).status)
	s := openStream(t, c, nil, "")
	first := s.next()
	assert.Equal(t, "entry", first.event)

	start := time.Now()
	require.Equal(t, 0, p.stop(syscall.SIGTERM))
	evs, err := s.awaitEnd(5 * time.Second)
	require.NoError(t, err, "the stream ends cleanly")
	assert.Empty(t, evs)
	assert.Less(t, time.Since(start), shutdownTimeout/4, "walletd waited for the stream")

	p = startWalletd(t, "-data", data)
	c = loadSDKClient(t, cfg, p.baseURL())
	s = openStream(t, c, nil, first.id)
	require.Equal(t, http.StatusOK, c.createEntry("u", 6, "second", nil).status)
	ev := s.next()
	assert.Greater(t, ev.id, first.id)
	assert.Contains(t, ev.data, `"reason":"second"`, "the next event is the entry written after the restart")
	s.close()
	require.Equal(t, 0, p.stop(syscall.SIGTERM))
}

// TestPostgresChanges: a stream served by one walletd replica carries
// the changes written through another, as the stream of the writing
// replica does: the same events, cursors and all.
func TestPostgresChanges(t *testing.T) {
	url := os.Getenv("LEDGER_PG_URL")
	if url == "" {
		t.Skip("walletd: LEDGER_PG_URL not set; see README")
	}
	schema := tempSchema(t, url)
	authDir := filepath.Join(t.TempDir(), "authorities")
	code, cfg, stderr := runWalletd(t, authorityRequestJSON, "create-authority", "-authorities", authDir, "-")
	require.Equal(t, 0, code, "stderr: %s", stderr)
	a := startWalletd(t, "-data", url, "-pg-schema", schema, "-authorities", authDir)
	b := startWalletd(t, "-data", url, "-pg-schema", schema, "-authorities", authDir)
	viaA := loadSDKClient(t, []byte(cfg), a.baseURL())
	viaB := loadSDKClient(t, []byte(cfg), b.baseURL())

	onB := openStream(t, viaB, nil, "")
	r := viaA.createEntry("alice", 0, "prize", map[string]any{"name": "ticket"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	require.Equal(t, http.StatusOK, viaA.useItem(r.body["entry"].(map[string]any)["entry_id"].(string)).status)
	require.Equal(t, http.StatusOK, viaB.createEntry("alice", 3, "payday", nil).status)
	got := onB.nextN(3)
	onA := openStream(t, viaA, nil, "")
	assert.Equal(t, onA.nextN(3), got)
	assert.Equal(t, []string{"entry", "item_used", "entry"}, []string{got[0].event, got[1].event, got[2].event})
	onA.close()
	onB.close()
	require.Equal(t, 0, a.stop(syscall.SIGTERM))
	require.Equal(t, 0, b.stop(syscall.SIGTERM))
}
