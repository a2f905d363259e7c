package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// servedEnv is a testEnv whose server also runs through serve, with the
// given config changes, on a loopback listener of its own: the real
// http.Server with its timeouts, as walletd serve runs it. It returns the
// env, whose client c talks to the served address.
// wrap, when not nil, wraps the listener the server gets.
func servedEnv(t *testing.T, opts envOptions, tweak func(*server), wrap func(net.Listener) net.Listener) (*testEnv, *sdkClient, string) {
	t.Helper()
	env := newTestEnv(t, opts)
	c := env.newAuthority("a")
	if tweak != nil {
		tweak(env.srv)
	}
	var ln net.Listener
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if wrap != nil {
		ln = wrap(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- env.srv.serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-served)
	})
	c.apiURL = "http://" + ln.Addr().String() + "/api/v1"
	return env, c, ln.Addr().String()
}

// TestBodyNeverFinishes (issue 10, item 16): a request whose body stops
// coming gets 408 with a fixed message when ReadTimeout passes, not a 400
// whose message shows the server's and the client's socket addresses.
func TestBodyNeverFinishes(t *testing.T) {
	const timeout = 300 * time.Millisecond
	env, c, addr := servedEnv(t, envOptions{}, func(s *server) { s.readTimeout = timeout }, nil)
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /api/v1/entry HTTP/1.1\r\nHost: walletd\r\nAuthorization: "+c.token+
		"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user_id\": ")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*timeout)))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "no answer within %v", 20*timeout)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusRequestTimeout, res.StatusCode, "body %s", raw)
	assert.JSONEq(t, `{"error": "request body not received in time"}`, string(raw))
	assert.NotContains(t, string(raw), "127.0.0.1")
	assert.Empty(t, requireWallets(t, c.getWallets(nil, nil)), "nothing written")
	env.awaitMetric(`walletd_http_requests_total{code="408",method="POST",route="/api/v1/entry"} 1`)
}

// TestClientGone (issue 10, item 16): a request whose client hangs up
// while the ledger works on it is logged and counted as client_gone, not
// as a 500.
func TestClientGone(t *testing.T) {
	store := newFaultyStore()
	env, c, _ := servedEnv(t, envOptions{store: store}, nil, nil)
	entered := store.blockNextViewUntilDone()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.apiURL+"/wallet?user_ids=&authority_ids=", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", c.token)
	done := make(chan error, 1)
	go func() {
		res, err := c.hc.Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("answered before reaching the ledger: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the request did not reach the ledger within 30s")
	}
	cancel() // the client hangs up
	require.ErrorIs(t, <-done, context.Canceled)

	env.awaitMetric(`walletd_http_requests_total{code="client_gone",method="GET",route="/api/v1/wallet"} 1`)
	for _, l := range env.metricLines() {
		assert.NotContains(t, l, `code="500"`)
	}
	logs := env.logs.String()
	assert.Contains(t, logs, "outcome=client_gone")
	assert.NotContains(t, logs, "status=500")
	assert.NotContains(t, logs, "level=ERROR")
	assert.Len(t, requireWallets(t, c.getWallets(nil, nil)), 0, "still serving")
}

// TestAuthFailureReasons (issue 10, item 16): tokens of another algorithm
// than ES256, the marks of an algorithm-confusion attempt, are counted as
// wrong_algorithm, apart from signatures that do not verify.
func TestAuthFailureReasons(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	sub := jwt.MapClaims{"sub": c.authorityID}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	sign := func(m jwt.SigningMethod, key any) string {
		t.Helper()
		s, err := jwt.NewWithClaims(m, sub).SignedString(key)
		require.NoError(t, err)
		return s
	}
	// An unknown algorithm: a header jwt cannot even name.
	parts := strings.Split(c.token, ".")
	hdr, err := json.Marshal(map[string]string{"alg": "XS999", "typ": "JWT"})
	require.NoError(t, err)
	unknownAlg := base64.RawURLEncoding.EncodeToString(hdr) + "." + parts[1] + "." + parts[2]
	for _, tc := range []struct{ name, token string }{
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)},
		{"HS256", sign(jwt.SigningMethodHS256, []byte("public key bytes"))},
		{"RS256", sign(jwt.SigningMethodRS256, rsaKey)},
		{"unknown alg", unknownAlg},
	} {
		requireError(t, c.doAuth(http.MethodGet, "/wallet", nil, nil, tc.token), http.StatusForbidden, "forbidden")
	}
	requireError(t, c.doAuth(http.MethodGet, "/wallet", nil, nil, sign(jwt.SigningMethodES256, otherKey)), http.StatusForbidden, "forbidden")

	env.assertMetric(`walletd_auth_failures_total{reason="wrong_algorithm"} 4`)
	env.assertMetric(`walletd_auth_failures_total{reason="bad_signature"} 1`)
	assert.Contains(t, env.logs.String(), `reason=wrong_algorithm`)
}

// smallSendBuffers is a listener whose connections have small kernel send
// buffers, so that an answer much larger than them waits for its reader.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(32 << 10)
	}
	return c, err
}

// TestSlowReader (issue 10, item 13): WriteTimeout bounds each chunk of a
// list answer, not the whole of it. A client that reads a long list
// slowly, but steadily, gets all of it even though that takes several
// times WriteTimeout; a client that stops reading is cut off, and its
// request is logged and counted as write_timeout, not as a 200.
func TestSlowReader(t *testing.T) {
	const timeout = 500 * time.Millisecond
	env, c, addr := servedEnv(t, envOptions{pageSize: 2}, func(s *server) { s.writeTimeout = timeout },
		func(ln net.Listener) net.Listener { return smallSendBuffers{ln} })
	data := `"` + strings.Repeat("d", 50<<10) + `"`
	const items = 50
	for i := range items {
		r := c.do(http.MethodPost, "/entry", nil, []byte(fmt.Sprintf(`{"user_id": "u%02d", "amount": 0, "reason": "r", "item": {"name": "n", "data": %s}}`, i, data)))
		require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	}
	path := "/api/v1/entry/inventory?entry_ids=&user_ids=&authority_ids="
	full := c.do(http.MethodGet, "/entry/inventory?entry_ids=&user_ids=&authority_ids=", nil, nil)
	require.Len(t, requireInventory(t, full), items)
	require.Greater(t, len(full.raw), items*(50<<10))

	t.Run("slow but steady", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if tc, ok := conn.(*net.TCPConn); ok {
					tc.SetReadBuffer(32 << 10)
				}
				return conn, err
			},
			DisableCompression: true,
		}}
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", c.token)
		start := time.Now()
		res, err := hc.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		var got []byte
		buf := make([]byte, 16<<10)
		for range 10 * len(full.raw) / len(buf) { // bounded: ten times the reads the body needs
			n, err := res.Body.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				require.ErrorIs(t, err, io.EOF, "after %d of %d bytes, %v", len(got), len(full.raw), time.Since(start))
				break
			}
			time.Sleep(10 * time.Millisecond) // the slow reader
		}
		elapsed := time.Since(start)
		assert.Equal(t, string(full.raw), string(got), "the whole list")
		assert.Greater(t, elapsed, 2*timeout, "the reading took longer than WriteTimeout, or the test proves nothing")
		t.Logf("read %d bytes in %v with WriteTimeout %v", len(got), elapsed, timeout)
		env.awaitMetric(`walletd_http_requests_total{code="200",method="GET",route="/api/v1/entry/inventory"} 2`)
	})

	t.Run("stalled", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		conn.(*net.TCPConn).SetReadBuffer(32 << 10)
		_, err = io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: walletd\r\nAuthorization: "+c.token+"\r\n\r\n")
		require.NoError(t, err)
		// Nothing is read until the server has given up.
		env.awaitMetric(`walletd_http_requests_total{code="write_timeout",method="GET",route="/api/v1/entry/inventory"} 1`)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		got, _ := io.ReadAll(conn)
		assert.Less(t, len(got), len(full.raw), "the answer was cut off")
		logs := env.logs.String()
		assert.Contains(t, logs, "outcome=write_timeout")
		assert.Regexp(t, `level=WARN msg=request method=GET path=/api/v1/entry/inventory .*status=200 .*outcome=write_timeout`, logs)
	})
}
