package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger/memstore"
)

// TestGracefulShutdown: when serve's context ends, a request in flight
// finishes with its answer, new connections are refused, and serve
// returns only after the request is done.
func TestGracefulShutdown(t *testing.T) {
	store := newFaultyStore()
	env := newTestEnv(t, envOptions{store: store}) // for the authority and its client
	c := env.newAuthority("a")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- env.srv.serve(ctx, ln, mln) }()
	c.apiURL = "http://" + ln.Addr().String() + "/api/v1"

	require.Equal(t, http.StatusOK, c.createEntry("u", 3, "r", nil).status)
	entered, release := store.blockNextView()
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // on failure too: the server's Close waits for the blocked call
	type answer struct {
		r   resp
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		r, err := c.tryGetWallets(nil, nil)
		answered <- answer{r, err}
	}()
	select {
	case <-entered: // the request is inside the ledger
	case a := <-answered:
		t.Fatalf("the request was answered without reaching the ledger: %d %s %v", a.r.status, a.r.raw, a.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the request did not reach the ledger within 30s")
	}

	cancel()
	// The listeners close at once ...
	require.Eventually(t, func() bool {
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	}, 10*time.Second, 5*time.Millisecond, "API listener closed")
	// ... but serve waits for the request in flight.
	select {
	case err := <-served:
		t.Fatalf("serve returned with a request in flight: %v", err)
	default:
	}
	unblock()
	a := <-answered // bounded by the client's timeout
	require.NoError(t, a.err)
	assert.Equal(t, map[string]int64{"u": 3}, requireWallets(t, a.r))
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(shutdownTimeout):
		t.Fatal("serve did not return after the last request finished")
	}
	// The ledger stays open until Close.
	require.NoError(t, env.srv.ledger.Health(context.Background()))
	require.NoError(t, env.srv.Close())
}

// TestServerTimeouts: the server drops a connection that does not finish
// its request header within ReadHeaderTimeout, and an idle keep-alive
// connection after IdleTimeout.
func TestServerTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	s, err := newServer(context.Background(), config{
		Data: memoryData, Authorities: t.TempDir(), Logger: discardLogger(),
		ReadHeaderTimeout: timeout, IdleTimeout: timeout,
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-served)
		assert.NoError(t, s.Close())
	})

	// awaitClose reads from conn until the server closes it, and fails if
	// that takes ten times the timeout.
	awaitClose := func(t *testing.T, conn net.Conn, r io.Reader) {
		t.Helper()
		start := time.Now()
		require.NoError(t, conn.SetReadDeadline(start.Add(10*timeout)))
		n, err := io.Copy(io.Discard, r)
		elapsed := time.Since(start)
		require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "connection still open after %v", elapsed)
		assert.Zero(t, n, "bytes after the close")
		t.Logf("closed after %v (err %v)", elapsed, err)
	}
	dial := func(t *testing.T) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	t.Run("half a request header", func(t *testing.T) {
		conn := dial(t)
		_, err := io.WriteString(conn, "GET /api/v1/health HTTP/1.1\r\nHost: walletd\r\n")
		require.NoError(t, err)
		awaitClose(t, conn, conn)
	})
	t.Run("idle connection", func(t *testing.T) {
		conn := dial(t)
		_, err := io.WriteString(conn, "GET /api/v1/health HTTP/1.1\r\nHost: walletd\r\n\r\n")
		require.NoError(t, err)
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, res.Body)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		require.False(t, res.Close, "the connection is kept alive")
		awaitClose(t, conn, br)
	})
}

// TestPanicAfterAnswerStarted: a handler that panics after its answer
// has started cannot get a 500; the response is cut off, so that the
// client sees a truncated body, the panic is logged and the server keeps
// serving.
func TestPanicAfterAnswerStarted(t *testing.T) {
	logs := &syncBuffer{}
	s := &server{log: slog.New(slog.NewTextHandler(logs, nil)), metrics: newMetrics()}
	ts := httptest.NewServer(s.observe(recoverPanics(s.log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fine" {
			writeError(w, http.StatusTeapot, "fine")
			return
		}
		setBodyHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"wallets":[`)
		http.NewResponseController(w).Flush()
		panic("after the answer started")
	}))))
	defer ts.Close()

	res, err := http.Get(ts.URL + "/boom")
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	body, err := io.ReadAll(res.Body)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the body is cut off")
	assert.Equal(t, `{"wallets":[`, string(body), "nothing follows what the handler wrote")
	assert.Contains(t, logs.String(), "handler panicked")
	assert.Contains(t, logs.String(), "after the answer started")
	assert.Contains(t, logs.String(), "outcome=aborted")

	res, err = http.Get(ts.URL + "/fine")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusTeapot, res.StatusCode, "still serving")
}

// TestServeClosesStore: serve closes the ledger's store when it stops,
// exits 0 and logs "stopped cleanly" only if that close worked, and exits
// 1 if it failed.
func TestServeClosesStore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		closeErr error
		code     int
	}{
		{"close works", nil, exitOK},
		{"close fails", errInjected, exitFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &closeStore{Store: memstore.New(), closeErr: tc.closeErr}
			authDir := t.TempDir()
			p := serveInProcess(t, func(ctx context.Context, stderr io.Writer) int {
				return runServer(ctx, config{
					Data: memoryData, Authorities: authDir, Store: store,
					Logger: slog.New(slog.NewTextHandler(stderr, nil)),
				}, "127.0.0.1:0", "")
			})
			res, err := http.Get("http://" + p.addr + "/api/v1/health")
			require.NoError(t, err)
			res.Body.Close()
			require.Equal(t, http.StatusOK, res.StatusCode)
			assert.False(t, store.closed.Load(), "closed while serving")

			assert.Equal(t, tc.code, p.stop(), "exit status")
			assert.True(t, store.closed.Load(), "store closed")
			logs := p.logs.String()
			if tc.closeErr == nil {
				assert.True(t, strings.HasSuffix(logs, "msg=\"stopped cleanly\"\n"), "last log line: %s", logs)
			} else {
				assert.Contains(t, logs, "cannot close the ledger")
				assert.Contains(t, logs, errInjected.Error())
				assert.NotContains(t, logs, "stopped cleanly")
			}
		})
	}
	// The same through the command line, on Badger: once serve has
	// returned, the ledger directory is free to open again.
	data := t.TempDir()
	p := serveInProcess(t, func(ctx context.Context, stderr io.Writer) int {
		return run(ctx, []string{"serve", "-data", data, "-addr", "127.0.0.1:0", "-metrics-addr", ""}, nil, io.Discard, stderr)
	})
	require.Equal(t, exitOK, p.stop())
	store, err := openStore(context.Background(), config{Data: data}, discardLogger())
	require.NoError(t, err, "the ledger directory is still locked")
	require.NoError(t, store.Close())
}
