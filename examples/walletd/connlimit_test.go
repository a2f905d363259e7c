package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// healthOn sends GET /api/v1/health on conn, keeping it alive, and
// returns the answer's status; the body is read in full.
func healthOn(t *testing.T, conn net.Conn, br *bufio.Reader) int {
	t.Helper()
	_, err := io.WriteString(conn, "GET /api/v1/health HTTP/1.1\r\nHost: walletd\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	res, err := http.ReadResponse(br, nil)
	require.NoError(t, err, "no answer")
	_, err = io.Copy(io.Discard, res.Body)
	require.NoError(t, err)
	res.Body.Close()
	require.False(t, res.Close, "kept alive")
	return res.StatusCode
}

// closedByServer reports, for each conn, whether the server has closed
// it: a read gets EOF at once. A connection still open gets nothing, and
// the read gives up at a deadline shared by all.
func closedByServer(t *testing.T, conns []net.Conn, readers []*bufio.Reader) []bool {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	closed := make([]bool, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		require.NoError(t, c.SetReadDeadline(deadline))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := readers[i].ReadByte()
			closed[i] = err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
		}()
	}
	wg.Wait()
	return closed
}

// TestConnectionCap (issue 10, item 12): with -max-conns 20, 40 clients
// that each send GET /health and keep their connection open idle all get
// their answer, but the server never holds more than 20 of them: to make
// room for each new one it closes the one idle the longest. A new client
// is still answered.
func TestConnectionCap(t *testing.T) {
	const max, clients = 20, 40
	env, _, addr := servedEnv(t, envOptions{}, func(s *server) { s.maxConns = max }, nil)
	var conns []net.Conn
	var readers []*bufio.Reader
	for i := range clients {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		br := bufio.NewReader(conn)
		require.Equal(t, http.StatusOK, healthOn(t, conn, br), "client %d", i)
		conns, readers = append(conns, conn), append(readers, br)
		// The server marks a connection idle just after its answer has
		// gone out: wait for it, so that the clients are idle in the
		// order they were answered.
		require.Eventually(t, func() bool { return env.srv.apiConns.Load().idleCount() == min(i+1, max) },
			5*time.Second, time.Millisecond, "client %d idle", i)
	}
	closed := closedByServer(t, conns, readers)
	for i, c := range closed {
		// The 20 oldest made room for the 20 newest.
		assert.Equal(t, i < clients-max, c, "client %d closed by the server", i)
	}
	env.assertMetric(`walletd_http_idle_connections_closed_total 20`)
	env.assertMetric(`walletd_http_connections 20`)

	res, err := http.Get("http://" + addr + "/api/v1/health")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, "a new client is answered")
}

// TestConnectionCapWaits (issue 10, item 12): when every connection under
// the cap is busy (here, each sending a request header that never ends),
// none is closed to make room: a new client waits until one frees, here
// when ReadHeaderTimeout drops the slow ones, and is then answered.
func TestConnectionCapWaits(t *testing.T) {
	const max = 20
	const timeout = 500 * time.Millisecond
	_, _, addr := servedEnv(t, envOptions{}, func(s *server) { s.maxConns, s.readHeaderTimeout = max, timeout }, nil)
	start := time.Now()
	var slow []net.Conn
	for range max {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		_, err = io.WriteString(conn, "GET /api/v1/health HTTP/1.1\r\nHost: walletd\r\n")
		require.NoError(t, err)
		slow = append(slow, conn)
	}
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, http.StatusOK, healthOn(t, conn, bufio.NewReader(conn)))
	waited := time.Since(start)
	assert.GreaterOrEqual(t, waited, timeout, "answered before any slow connection was dropped")
	t.Logf("answered after %v", waited)
	readers := make([]*bufio.Reader, len(slow))
	for i, c := range slow {
		readers[i] = bufio.NewReader(c)
	}
	for i, c := range closedByServer(t, slow, readers) {
		assert.True(t, c, "slow client %d dropped by ReadHeaderTimeout", i)
	}
}
