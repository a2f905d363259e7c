package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

// execMainEnv makes the test binary run walletd's main instead of the
// tests, so that tests can run walletd as a subprocess without building
// it.
const execMainEnv = "WALLETD_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		os.Exit(runMain())
	}
	os.Exit(m.Run())
}

// testEnv is a walletd serving over loopback with httptest, and the
// authorities it knows.
type testEnv struct {
	t       *testing.T
	srv     *server
	ts      *httptest.Server
	authDir string
	opDir   string // the console's operators directory
	logs    *syncBuffer
	// now is the authorities' clock; tests move it with advance.
	now atomic.Int64
}

type envOptions struct {
	store    ledger.Store
	data     string // default ":memory:"
	pgSchema string // with a postgres:// data
	authDir  string // default a new temporary directory
	pageSize int    // default defaultPageSize
	// grantorOnly runs the ledger with WithGrantorOnlyItemUse.
	grantorOnly bool
	// keepAlive is the change streams' keep-alive interval; default
	// streamKeepAlive.
	keepAlive time.Duration
}

// newTestEnv starts walletd on a loopback port. The API base URL is known
// before the server starts, so authorities are created with the real
// api_base_url, as an administrator would.
func newTestEnv(t *testing.T, opts envOptions) *testEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	env := &testEnv{t: t, authDir: opts.authDir, opDir: t.TempDir(), logs: &syncBuffer{}}
	if env.authDir == "" {
		env.authDir = t.TempDir()
	}
	env.now.Store(time.Now().UnixNano())
	data := opts.data
	if data == "" {
		data = memoryData
	}
	s, err := newServer(context.Background(), config{
		Data:        data,
		PGSchema:    opts.pgSchema,
		Authorities: env.authDir,
		Operators:   env.opDir,
		Logger:      slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Store:       opts.store,
		Now:         func() time.Time { return time.Unix(0, env.now.Load()) },
		PageSize:    opts.pageSize,

		GrantorOnlyItemUse: opts.grantorOnly,
		StreamKeepAlive:    opts.keepAlive,
	})
	require.NoError(t, err)
	env.srv = s
	env.ts = httptest.NewUnstartedServer(s.Handler())
	env.ts.Listener.Close()
	env.ts.Listener = ln
	env.ts.Start()
	t.Cleanup(func() {
		s.endStreams() // else ts.Close waits for any stream left open
		env.ts.Close()
		if err := s.Close(); err != nil && !errors.Is(err, ledger.ErrClosed) {
			t.Errorf("close server: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", env.logs.String())
		}
	})
	return env
}

func (env *testEnv) advance(d time.Duration) { env.now.Add(int64(d)) }

// newAuthority creates an authority as create-authority does, moves the
// server's clock on so that it lists the authorities directory again on
// the next unknown token, and returns a client that uses the authority's
// configuration file.
func (env *testEnv) newAuthority(name string) *sdkClient {
	env.t.Helper()
	c := env.createAuthority(name)
	env.advance(rescanInterval)
	return c
}

// createAuthority is newAuthority without moving the clock: the server
// refuses the authority until its clock has moved on by rescanInterval.
func (env *testEnv) createAuthority(name string) *sdkClient {
	env.t.Helper()
	req, err := parseAuthorityRequest(strings.NewReader(`{"api_base_url": "` + env.ts.URL + `", "name": "` + name +
		`", "owner": {"contact": "ops@example.com", "nickname": "ops"}}`))
	require.NoError(env.t, err)
	cfg, err := createAuthority(env.authDir, req, time.Now())
	require.NoError(env.t, err)
	raw, err := json.Marshal(cfg)
	require.NoError(env.t, err)
	return loadSDKClient(env.t, raw, "")
}

// sdkClient does what the Python SDK's WalletClient does: an ES256 JWT
// with only sub, sent raw in the Authorization header; the SDK's
// paths and query strings.
type sdkClient struct {
	t           *testing.T
	apiURL      string
	authorityID string
	key         *ecdsa.PrivateKey
	token       string
	hc          *http.Client
}

// loadSDKClient reads an authority client configuration as
// WalletClient.LoadFromConfig does. baseURL, when set, replaces the
// configuration's api_base_url.
func loadSDKClient(t *testing.T, configJSON []byte, baseURL string) *sdkClient {
	t.Helper()
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(configJSON, &cfg))
	require.ElementsMatch(t, []string{"config_schema_version", "api_base_url", "authority_id", "private_key"},
		slices.Collect(maps.Keys(cfg)), "configuration keys")
	require.Equal(t, "0.1.0", cfg["config_schema_version"])
	block, _ := pem.Decode([]byte(cfg["private_key"].(string)))
	require.NotNil(t, block, "private_key is PEM")
	require.Equal(t, "EC PRIVATE KEY", block.Type)
	key, err := x509.ParseECPrivateKey(block.Bytes)
	require.NoError(t, err)
	if baseURL == "" {
		baseURL = cfg["api_base_url"].(string)
	}
	c := &sdkClient{
		t:           t,
		apiURL:      baseURL + "/api/v1",
		authorityID: cfg["authority_id"].(string),
		key:         key,
		hc:          &http.Client{Timeout: 30 * time.Second},
	}
	c.token = c.sign(jwt.MapClaims{"sub": c.authorityID})
	return c
}

// The client's calls come in two kinds. The plain ones (do, createEntry,
// ...) fail the test on an error and may only be called from the test's
// goroutine. The try ones (tryDo, tryCreateEntry, ...) return the error
// instead and are for other goroutines, which must not call t.FailNow:
// it would end the goroutine without its result, and the test would wait
// for it until the go test timeout.

func (c *sdkClient) sign(claims jwt.Claims) string {
	c.t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(c.key)
	require.NoError(c.t, err)
	return tok
}

// resp is an API answer: status, raw body, and the body decoded with
// numbers kept as written.
type resp struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// must fails the test if err is not nil, and returns r.
func (c *sdkClient) must(r resp, err error) resp {
	c.t.Helper()
	require.NoError(c.t, err)
	return r
}

func (c *sdkClient) do(method, path string, query url.Values, body []byte) resp {
	c.t.Helper()
	return c.must(c.tryDo(method, path, query, body))
}

func (c *sdkClient) doAuth(method, path string, query url.Values, body []byte, auth string) resp {
	c.t.Helper()
	return c.must(c.tryDoAuth(method, path, query, body, auth))
}

func (c *sdkClient) tryDo(method, path string, query url.Values, body []byte) (resp, error) {
	return c.tryDoAuth(method, path, query, body, c.token)
}

// tryDoAuth sends a request with the given Authorization header ("" for
// none) and reads the answer, which must be JSON (unless method is HEAD).
func (c *sdkClient) tryDoAuth(method, path string, query url.Values, body []byte, auth string) (resp, error) {
	u := c.apiURL + path
	if query != nil {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return resp{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("User-Agent", "wallet-service-py-sdk 1.1.0")
	r, err := c.hc.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer r.Body.Close()
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return resp{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	out := resp{status: r.StatusCode, header: r.Header, raw: raw}
	if method != http.MethodHead {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			return out, fmt.Errorf("%s %s: got Content-Type %q, want application/json; body %s", method, path, ct, raw)
		}
		if out.body, err = parseObject(raw); err != nil {
			return out, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return out, nil
}

func decodeObject(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	m, err := parseObject(raw)
	require.NoError(t, err)
	return m
}

// parseObject decodes a JSON object, numbers kept as written.
func parseObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("body %s: %w", raw, err)
	}
	if m == nil {
		return nil, fmt.Errorf("body %s is not a JSON object", raw)
	}
	return m, nil
}

// createEntry is the SDK's create_entry: the item key is always sent.
func (c *sdkClient) createEntry(userID string, amount int64, reason string, item map[string]any) resp {
	c.t.Helper()
	return c.must(c.tryCreateEntry(userID, amount, reason, item))
}

func (c *sdkClient) tryCreateEntry(userID string, amount int64, reason string, item map[string]any) (resp, error) {
	body, err := json.Marshal(map[string]any{"user_id": userID, "amount": amount, "reason": reason, "item": item})
	if err != nil {
		return resp{}, err
	}
	return c.tryDo(http.MethodPost, "/entry", nil, body)
}

// getWallets is the SDK's get_wallets: both lists always sent.
func (c *sdkClient) getWallets(userIDs, authorityIDs []string) resp {
	c.t.Helper()
	return c.must(c.tryGetWallets(userIDs, authorityIDs))
}

func (c *sdkClient) tryGetWallets(userIDs, authorityIDs []string) (resp, error) {
	return c.tryDo(http.MethodGet, "/wallet", url.Values{
		"user_ids":      {strings.Join(userIDs, ",")},
		"authority_ids": {strings.Join(authorityIDs, ",")},
	}, nil)
}

// getInventory is the SDK's get_inventory; used nil leaves the parameter
// out, as Python's requests does with None.
func (c *sdkClient) getInventory(entryIDs, userIDs, authorityIDs []string, used *bool) resp {
	c.t.Helper()
	q := url.Values{
		"entry_ids":     {strings.Join(entryIDs, ",")},
		"user_ids":      {strings.Join(userIDs, ",")},
		"authority_ids": {strings.Join(authorityIDs, ",")},
	}
	if used != nil {
		q.Set("used", map[bool]string{true: "true", false: "false"}[*used])
	}
	return c.do(http.MethodGet, "/entry/inventory", q, nil)
}

func (c *sdkClient) useItem(entryID string) resp {
	c.t.Helper()
	return c.must(c.tryUseItem(entryID))
}

func (c *sdkClient) tryUseItem(entryID string) (resp, error) {
	return c.tryDo(http.MethodPost, "/entry/"+url.PathEscape(entryID)+"/inventory/use", nil, nil)
}

func (c *sdkClient) checkServiceHealth() resp {
	c.t.Helper()
	return c.doAuth(http.MethodGet, "/health", nil, nil, "")
}

// awaitAccepted waits, up to a bound, until the server accepts c's
// token: a server that is running when an authority is created accepts
// it after its next rescan of the authorities directory, within
// rescanInterval. For servers on the real clock (subprocesses); tests of
// a testEnv move its clock instead.
func (c *sdkClient) awaitAccepted() {
	c.t.Helper()
	var last string
	ok := assert.Eventually(c.t, func() bool {
		r, err := c.tryGetWallets(nil, nil)
		last = fmt.Sprintf("%d %s %v", r.status, r.raw, err)
		return err == nil && r.status == http.StatusOK
	}, 5*rescanInterval, 10*time.Millisecond)
	require.True(c.t, ok, "authority %s not accepted within %v; last answer: %s", c.authorityID, 5*rescanInterval, last)
}

func ptr[T any](v T) *T { return &v }

// Shape checks: every object has exactly the listed keys.

func requireKeys(t *testing.T, v any, want ...string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	require.True(t, ok, "want a JSON object, got %#v", v)
	require.ElementsMatch(t, want, slices.Collect(maps.Keys(m)), "keys of %v", m)
	return m
}

func requireError(t *testing.T, r resp, status int, msg string) {
	t.Helper()
	require.Equal(t, status, r.status, "body %s", r.raw)
	m := requireKeys(t, r.body, "error")
	if msg != "" {
		require.Equal(t, msg, m["error"])
	}
	require.IsType(t, "", m["error"])
}

// requireEntry checks a wire Entry and returns it.
func requireEntry(t *testing.T, v any, withItem bool) map[string]any {
	t.Helper()
	keys := []string{"entry_id", "authority_id", "user_id", "created_on", "amount", "reason"}
	if withItem {
		keys = append(keys, "item")
	}
	e := requireKeys(t, v, keys...)
	for _, k := range []string{"entry_id", "authority_id", "user_id", "reason"} {
		require.IsType(t, "", e[k], k)
	}
	created, ok := e["created_on"].(json.Number)
	require.True(t, ok, "created_on is a number: %#v", e["created_on"])
	require.Contains(t, created.String(), ".", "created_on has a fraction")
	_, err := created.Float64()
	require.NoError(t, err)
	requireInteger(t, e["amount"])
	if withItem {
		requireItem(t, e["item"])
	}
	return e
}

func requireItem(t *testing.T, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	require.True(t, ok, "item is an object: %#v", v)
	if _, ok := m["data"]; ok {
		requireKeys(t, m, "name", "used", "data")
	} else {
		requireKeys(t, m, "name", "used")
	}
	require.IsType(t, "", m["name"])
	require.IsType(t, true, m["used"])
	return m
}

func requireInteger(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	require.True(t, ok, "want a JSON number, got %#v", v)
	require.NotContains(t, n.String(), ".", "integer")
	require.NotContains(t, strings.ToLower(n.String()), "e", "integer")
	i, err := n.Int64()
	require.NoError(t, err)
	return i
}

func requireWallets(t *testing.T, r resp) map[string]int64 {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	requireKeys(t, r.body, "wallets")
	list, ok := r.body["wallets"].([]any)
	require.True(t, ok, "wallets is a list: %s", r.raw)
	out := map[string]int64{}
	for _, w := range list {
		m := requireKeys(t, w, "user_id", "total")
		out[m["user_id"].(string)] = requireInteger(t, m["total"])
	}
	return out
}

func requireInventory(t *testing.T, r resp) []map[string]any {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	requireKeys(t, r.body, "inventory")
	list, ok := r.body["inventory"].([]any)
	require.True(t, ok, "inventory is a list: %s", r.raw)
	var out []map[string]any
	for _, v := range list {
		m := requireKeys(t, v, "entry_id", "authority_id", "user_id", "item")
		requireItem(t, m["item"])
		out = append(out, m)
	}
	return out
}

func entryIDs(items []map[string]any) []string {
	var ids []string
	for _, it := range items {
		ids = append(ids, it["entry_id"].(string))
	}
	return ids
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// faultyStore is a memstore that fails, panics or blocks on demand, and
// counts its read transactions.
type faultyStore struct {
	*memstore.Store
	failView, failUpdate, failPing, panicView atomic.Bool
	views                                     atomic.Int64 // View calls so far
	failViewsFrom                             atomic.Int64 // when > 0, the View calls from this one on fail

	mu      sync.Mutex
	entered chan struct{} // when set, View signals here and waits on release
	release chan struct{}
	// untilDone, when set, makes the next View signal here and wait until
	// its context is done, then fail with the context's error.
	untilDone chan struct{}
}

var errInjected = errors.New("faultyStore: injected failure")

func newFaultyStore() *faultyStore { return &faultyStore{Store: memstore.New()} }

func (s *faultyStore) View(ctx context.Context, fn func(ledger.ReadTx) error) error {
	n := s.views.Add(1)
	if s.panicView.Load() {
		panic("faultyStore: injected panic")
	}
	if from := s.failViewsFrom.Load(); s.failView.Load() || from > 0 && n >= from {
		return errInjected
	}
	s.mu.Lock()
	entered, release, untilDone := s.entered, s.release, s.untilDone
	s.entered, s.release, s.untilDone = nil, nil, nil
	s.mu.Unlock()
	if untilDone != nil {
		close(untilDone)
		<-ctx.Done()
		return ctx.Err()
	}
	if entered != nil {
		close(entered)
		<-release
	}
	return s.Store.View(ctx, fn)
}

func (s *faultyStore) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	if s.failUpdate.Load() {
		return errInjected
	}
	return s.Store.Update(ctx, fn)
}

// TryUpdate overrides memstore's, which the ledger would otherwise call
// instead of Update: it fails as Update does, and else lets the ledger
// use Update.
func (s *faultyStore) TryUpdate(ctx context.Context, fn func(ledger.Tx) error) (bool, error) {
	if s.failUpdate.Load() {
		return true, errInjected
	}
	return false, nil
}

func (s *faultyStore) Ping(ctx context.Context) error {
	if s.failPing.Load() {
		return errInjected
	}
	return s.Store.Ping(ctx)
}

// blockNextView makes the next View wait: entered closes when it starts,
// and it goes on when release is closed.
func (s *faultyStore) blockNextView() (entered, release chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entered, s.release = make(chan struct{}), make(chan struct{})
	return s.entered, s.release
}

// blockNextViewUntilDone makes the next View wait until its context is
// done and then fail with the context's error; entered closes when it
// starts waiting.
func (s *faultyStore) blockNextViewUntilDone() (entered chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.untilDone = make(chan struct{})
	return s.untilDone
}

// metricLines returns what the server's metrics handler serves, over
// loopback, a line each.
func (env *testEnv) metricLines() []string {
	env.t.Helper()
	ms := httptest.NewServer(env.srv.MetricsHandler())
	defer ms.Close()
	res, err := http.Get(ms.URL + "/metrics")
	require.NoError(env.t, err)
	defer res.Body.Close()
	require.Equal(env.t, http.StatusOK, res.StatusCode)
	raw, err := io.ReadAll(res.Body)
	require.NoError(env.t, err)
	return strings.Split(string(raw), "\n")
}

// walletdLines is the walletd_ lines of a metrics page, for messages.
func walletdLines(lines []string) string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, "walletd_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// assertMetric checks that the server's metrics have the line want.
func (env *testEnv) assertMetric(want string) {
	env.t.Helper()
	lines := env.metricLines()
	assert.True(env.t, slices.Contains(lines, want), "no metric line %s in:\n%s", want, walletdLines(lines))
}

// awaitMetric waits, up to a bound, until the server's metrics have the
// line want.
func (env *testEnv) awaitMetric(want string) {
	env.t.Helper()
	var lines []string
	ok := assert.Eventually(env.t, func() bool {
		lines = env.metricLines()
		return slices.Contains(lines, want)
	}, 10*time.Second, 5*time.Millisecond)
	require.True(env.t, ok, "no metric line %s in:\n%s", want, walletdLines(lines))
}

// closeStore is a memstore that records its Close and fails it on
// demand.
type closeStore struct {
	*memstore.Store
	closeErr error
	closed   atomic.Bool
}

func (s *closeStore) Close() error {
	s.closed.Store(true)
	if err := s.Store.Close(); err != nil {
		return err
	}
	return s.closeErr
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// inProcess is walletd serve running in a goroutine of the test.
type inProcess struct {
	addr string      // API listen address
	logs *syncBuffer // what serve logged
	// stop cancels serve's context and returns its exit status once it
	// has returned and its log has been read in full.
	stop func() int
}

// serveInProcess runs serve, a call of run or runServer that logs to
// stderr, until the test ends or stop is called, and waits until it logs
// where it listens.
func serveInProcess(t *testing.T, serve func(ctx context.Context, stderr io.Writer) int) *inProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	pr, pw := io.Pipe()
	listening := make(chan string, 1)
	logRead := make(chan struct{})
	go func() {
		defer close(logRead)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				listening <- m[1]
			}
		}
		io.Copy(io.Discard, pr)
	}()
	done := make(chan int, 1)
	go func() {
		code := serve(ctx, pw)
		pw.Close()
		<-logRead
		done <- code
	}()
	stop := sync.OnceValue(func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(shutdownTimeout + 10*time.Second):
			t.Errorf("serve did not return after its context ended")
			return -1
		}
	})
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("serve log:\n%s", logs.String())
		}
	})
	select {
	case addr := <-listening:
		return &inProcess{addr: addr, logs: logs, stop: stop}
	case code := <-done:
		done <- code // for stop
		t.Fatalf("serve returned %d before listening:\n%s", code, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start listening within 30s:\n%s", logs.String())
	}
	return nil
}

// loadTestData is the -data of the load test: a directory, so that the
// load runs on the durable Badger store walletd uses by default.
func loadTestData(t *testing.T) string { return t.TempDir() }
