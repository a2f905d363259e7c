package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/walletledger/ledger"
)

// createTestOperator creates an operator in dir through create-operator
// and returns its secret. Its hash has bcrypt's lowest cost, which
// keeps logins fast under the race detector.
func createTestOperator(t *testing.T, dir, name string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"create-operator", "-operators", dir, "-cost", "4", name}, nil, &stdout, &stderr)
	require.Equal(t, exitOK, code, "create-operator: %s", stderr.String())
	secret := strings.TrimSpace(stdout.String())
	require.Regexp(t, `^[A-Za-z0-9_-]{43}$`, secret)
	return secret
}

// consoleClient is a browser without JavaScript: a cookie jar, no
// redirects followed.
type consoleClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newConsoleClient(t *testing.T, env *testEnv) *consoleClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &consoleClient{t: t, base: env.ts.URL, hc: &http.Client{
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// page is a console answer.
type consolePage struct {
	status int
	header http.Header
	body   string
}

func (c *consoleClient) get(path string) consolePage {
	c.t.Helper()
	return c.do(http.MethodGet, path, nil)
}

// post posts form to path as a form of the page would, with an Origin
// header as browsers send.
func (c *consoleClient) post(path string, form url.Values) consolePage {
	c.t.Helper()
	return c.do(http.MethodPost, path, form)
}

func (c *consoleClient) do(method, path string, form url.Values) consolePage {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	require.NoError(c.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", c.base)
	}
	res, err := c.hc.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	return consolePage{status: res.StatusCode, header: res.Header, body: string(raw)}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the page's forms.
func (p consolePage) csrf(t *testing.T) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	require.NotNil(t, m, "no CSRF token in page:\n%s", p.body)
	return m[1]
}

// login logs in and returns the session's CSRF token.
func (c *consoleClient) login(name, secret string) string {
	c.t.Helper()
	p := c.tryLogin(name, secret)
	require.Equal(c.t, http.StatusSeeOther, p.status, "login: %s", p.body)
	require.Equal(c.t, "/console/", p.header.Get("Location"))
	home := c.get("/console/")
	require.Equal(c.t, http.StatusOK, home.status)
	return home.csrf(c.t)
}

func (c *consoleClient) tryLogin(name, secret string) consolePage {
	c.t.Helper()
	lp := c.get("/console/login")
	require.Equal(c.t, http.StatusOK, lp.status)
	return c.post("/console/login", url.Values{"csrf": {lp.csrf(c.t)}, "name": {name}, "secret": {secret}})
}

// newConsoleEnv is a walletd with an operator alice, and alice's secret.
func newConsoleEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	env := newTestEnv(t, envOptions{})
	return env, createTestOperator(t, env.opDir, "alice")
}

func mustEntry(t *testing.T, l *ledger.Ledger, ne ledger.NewEntry) ledger.Entry {
	t.Helper()
	e, err := l.CreateEntry(context.Background(), ne)
	require.NoError(t, err)
	return e
}

func TestCreateOperator(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "operators")
	secret := createTestOperator(t, dir, "alice")
	fi, err := os.Stat(filepath.Join(dir, "alice.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	raw, err := os.ReadFile(filepath.Join(dir, "alice.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(raw), secret, "the file holds the secret")
	of, err := readOperatorFile(dir, "alice")
	require.NoError(t, err)
	assert.Equal(t, "alice", of.Name)

	tests := []struct {
		name string
		args []string
		code int
	}{
		{"exists", []string{"-operators", dir, "alice"}, exitFailure},
		{"upper case", []string{"-operators", dir, "Alice"}, exitUsage},
		{"path", []string{"-operators", dir, "../x"}, exitUsage},
		{"colon", []string{"-operators", dir, "a:b"}, exitUsage},
		{"too long", []string{"-operators", dir, "a" + strings.Repeat("b", 32)}, exitUsage},
		{"no name", []string{"-operators", dir}, exitUsage},
		{"two names", []string{"-operators", dir, "bob", "carol"}, exitUsage},
		{"cost too low", []string{"-operators", dir, "-cost", "3", "bob"}, exitUsage},
		{"cost too high", []string{"-operators", dir, "-cost", "32", "bob"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"create-operator"}, tt.args...), nil, &stdout, &stderr)
			assert.Equal(t, tt.code, code, "stderr: %s", stderr.String())
			assert.Empty(t, stdout.String())
		})
	}

	t.Run("next to the authorities", func(t *testing.T) {
		data := t.TempDir()
		var stdout, stderr bytes.Buffer
		require.Equal(t, exitOK, run(context.Background(), []string{"create-operator", "-data", data, "bob"}, nil, &stdout, &stderr), stderr.String())
		of, err := readOperatorFile(filepath.Join(data, "operators"), "bob")
		require.NoError(t, err)
		cost, err := bcrypt.Cost([]byte(of.SecretHash))
		require.NoError(t, err)
		assert.Equal(t, bcrypt.DefaultCost, cost, "the default cost")
		assert.Equal(t, filepath.Join(data, "operators"), config{Data: data}.operatorsDir())
		assert.Equal(t, filepath.Join(defaultData, "operators"), config{Data: memoryData}.operatorsDir())
	})
}

func TestConsoleLogin(t *testing.T) {
	env, secret := newConsoleEnv(t)
	c := newConsoleClient(t, env)

	// Pages need a session.
	p := c.get("/console/user?id=u1")
	assert.Equal(t, http.StatusSeeOther, p.status)
	assert.Equal(t, "/console/login", p.header.Get("Location"))

	// The login page has the console's security headers.
	lp := c.get("/console/login")
	assert.Equal(t, "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'", lp.header.Get("Content-Security-Policy"))
	assert.Equal(t, "DENY", lp.header.Get("X-Frame-Options"))
	assert.Equal(t, "no-store", lp.header.Get("Cache-Control"))
	assert.Equal(t, "nosniff", lp.header.Get("X-Content-Type-Options"))
	assert.Equal(t, "text/html; charset=utf-8", lp.header.Get("Content-Type"))

	assert.Equal(t, http.StatusUnauthorized, c.tryLogin("alice", "wrong").status)
	assert.Equal(t, http.StatusUnauthorized, c.tryLogin("nobody", secret).status)

	lp = c.get("/console/login")
	res, err := c.hc.PostForm(c.base+"/console/login", url.Values{"csrf": {lp.csrf(t)}, "name": {"alice"}, "secret": {secret}})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	var sc *http.Cookie
	for _, ck := range res.Cookies() {
		if ck.Name == sessionCookie {
			sc = ck
		}
	}
	require.NotNil(t, sc, "no session cookie")
	assert.True(t, sc.HttpOnly, "HttpOnly")
	assert.Equal(t, http.SameSiteStrictMode, sc.SameSite)
	assert.False(t, sc.Secure, "Secure over plain HTTP") // see TestConsoleSecureCookie
	assert.Equal(t, int(sessionLifetime/time.Second), sc.MaxAge)
	assert.Equal(t, "/console/", sc.Path)
	assert.Len(t, sc.Value, 43)

	home := c.get("/console/")
	require.Equal(t, http.StatusOK, home.status)
	assert.Contains(t, home.body, "alice")

	// The session expires with the server's clock.
	env.advance(sessionLifetime)
	assert.Equal(t, http.StatusSeeOther, c.get("/console/").status, "after the session's lifetime")

	// Logout ends the session.
	csrf := c.login("alice", secret)
	p = c.post("/console/logout", url.Values{"csrf": {csrf}})
	assert.Equal(t, http.StatusSeeOther, p.status)
	assert.Equal(t, http.StatusSeeOther, c.get("/console/").status, "after logout")

	// Removing the operator's file ends its sessions at their next
	// request.
	c.login("alice", secret)
	require.NoError(t, os.Remove(filepath.Join(env.opDir, "alice.json")))
	assert.Equal(t, http.StatusSeeOther, c.get("/console/").status, "after the operator's removal")
	assert.Equal(t, http.StatusUnauthorized, c.tryLogin("alice", secret).status)
}

func TestConsoleSecureCookie(t *testing.T) {
	env, secret := newConsoleEnv(t)
	ts := newTLSServer(t, env)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	hc := ts.Client()
	hc.Jar = jar
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &consoleClient{t: t, base: ts.URL, hc: hc}
	lp := c.get("/console/login")
	res, err := hc.PostForm(ts.URL+"/console/login", url.Values{"csrf": {lp.csrf(t)}, "name": {"alice"}, "secret": {secret}})
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	found := false
	for _, ck := range res.Cookies() {
		if ck.Name == sessionCookie {
			found = true
			assert.True(t, ck.Secure, "Secure over TLS")
		}
	}
	assert.True(t, found, "no session cookie")
}

func TestConsoleLoginThrottle(t *testing.T) {
	env, secret := newConsoleEnv(t)
	createTestOperator(t, env.opDir, "bob")
	c := newConsoleClient(t, env)

	for i := range maxLoginFailures {
		require.Equal(t, http.StatusUnauthorized, c.tryLogin("alice", "wrong").status, "failure %d", i+1)
	}
	// Now even the right secret is refused, for a while.
	p := c.tryLogin("alice", secret)
	require.Equal(t, http.StatusTooManyRequests, p.status)
	ra, err := strconv.Atoi(p.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", p.header.Get("Retry-After"))
	assert.Equal(t, int(loginFailureWindow/time.Second), ra)
	// The IP is throttled too: bob cannot log in from it either.
	assert.Equal(t, http.StatusTooManyRequests, c.tryLogin("bob", "whatever").status)

	env.advance(loginFailureWindow - time.Minute)
	p = c.tryLogin("alice", secret)
	assert.Equal(t, http.StatusTooManyRequests, p.status)
	assert.Equal(t, "60", p.header.Get("Retry-After"))

	env.advance(time.Minute)
	c.login("alice", secret)
}

func TestConsoleThrottlePerName(t *testing.T) {
	now := time.Unix(1e9, 0)
	th := newThrottle(func() time.Time { return now })
	for range maxLoginFailures {
		th.fail("name:alice", "ip:10.0.0.1")
		now = now.Add(time.Minute)
	}
	// From another IP, alice is throttled still; another name from a
	// third IP is not.
	assert.Equal(t, loginFailureWindow-5*time.Minute, th.retryAfter("name:alice", "ip:10.0.0.2"))
	assert.Zero(t, th.retryAfter("name:bob", "ip:10.0.0.3"))
	now = now.Add(loginFailureWindow - 5*time.Minute)
	assert.Zero(t, th.retryAfter("name:alice", "ip:10.0.0.2"), "the first failure has expired")
	th.fail("name:alice")
	assert.Equal(t, time.Minute, th.retryAfter("name:alice"), "until the second one expires")
	th.succeed("name:alice")
	assert.Zero(t, th.retryAfter("name:alice"), "after a success")
}

// seedUser gives u1 a deposit and a purchase by authority shop.
func seedUser(t *testing.T, l *ledger.Ledger) (deposit, purchase ledger.Entry) {
	t.Helper()
	deposit = mustEntry(t, l, ledger.NewEntry{AuthorityID: "shop", UserID: "u1", Amount: decimal.NewFromInt(100), Reason: "top-up"})
	purchase = mustEntry(t, l, ledger.NewEntry{AuthorityID: "shop", UserID: "u1", Amount: decimal.NewFromInt(-30), Reason: "bought a hat"})
	return deposit, purchase
}

func TestConsoleCSRF(t *testing.T) {
	env, secret := newConsoleEnv(t)
	l := env.srv.ledger
	_, purchase := seedUser(t, l)
	c := newConsoleClient(t, env)
	csrf := c.login("alice", secret)
	form := url.Values{"entry": {purchase.ID}, "reason": {"customer asked"}, "confirm": {"yes"}}

	tests := []struct {
		name   string
		path   string
		form   url.Values
		origin string
	}{
		{"refund without a token", "/console/refund", form, ""},
		{"refund with a wrong token", "/console/refund", withField(form, "csrf", strings.Repeat("A", 43)), ""},
		{"refund with an empty token", "/console/refund", withField(form, "csrf", ""), ""},
		{"refund from another origin", "/console/refund", withField(form, "csrf", csrf), "https://evil.example"},
		{"logout without a token", "/console/logout", url.Values{}, ""},
		{"limits without a token", "/console/limits", url.Values{"user": {"u1"}, "floor": {"-50"}, "reason": {"x"}, "confirm": {"yes"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, c.base+tt.path, strings.NewReader(tt.form.Encode()))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			res, err := c.hc.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			assert.Equal(t, http.StatusForbidden, res.StatusCode, "body: %s", body)
			assert.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
		})
	}
	// Nothing changed: no reversal, no limits, and the session lives.
	es, err := l.Entries(context.Background(), ledger.EntryQuery{UserIDs: []string{"u1"}})
	require.NoError(t, err)
	assert.Len(t, es, 2)
	b, err := l.Balance(context.Background(), "u1", "")
	require.NoError(t, err)
	assert.True(t, b.Floor.IsZero(), "floor %s", b.Floor)
	assert.Equal(t, http.StatusOK, c.get("/console/").status)

	// The login form's token is checked too.
	c2 := newConsoleClient(t, env)
	c2.get("/console/login")
	p := c2.post("/console/login", url.Values{"name": {"alice"}, "secret": {secret}})
	assert.Equal(t, http.StatusForbidden, p.status)
}

func withField(v url.Values, k, val string) url.Values {
	out := url.Values{}
	for kk, vv := range v {
		out[kk] = vv
	}
	out.Set(k, val)
	return out
}

func TestConsoleUserPage(t *testing.T) {
	env, secret := newConsoleEnv(t)
	l := env.srv.ledger
	ctx := context.Background()
	seedUser(t, l)
	mustEntry(t, l, ledger.NewEntry{AuthorityID: "shop", UserID: "u1", Amount: decimal.NewFromInt(7), Reason: "euros", Currency: "EUR",
		Item: &ledger.Item{Name: "Gift card"}})
	_, err := l.Hold(ctx, ledger.NewHold{AuthorityID: "shop", UserID: "u1", Amount: decimal.NewFromInt(20), Reason: "pending order"})
	require.NoError(t, err)
	for i := range statementPageSize {
		mustEntry(t, l, ledger.NewEntry{AuthorityID: "shop", UserID: "u1", Amount: decimal.NewFromInt(1), Reason: "bonus " + strconv.Itoa(i)})
	}
	c := newConsoleClient(t, env)
	c.login("alice", secret)

	p := c.get("/console/user?id=u1")
	require.Equal(t, http.StatusOK, p.status)
	// Balances: default currency 100-30+25 = 95, 20 held, 75 available.
	assert.Contains(t, p.body, `<td class="num total">95</td>`)
	assert.Contains(t, p.body, `<td class="num held">20</td>`)
	assert.Contains(t, p.body, `<td class="num available">75</td>`)
	assert.Contains(t, p.body, `<td class="num total">7</td>`, "EUR")
	assert.Contains(t, p.body, "pending order")
	assert.Contains(t, p.body, "Gift card")
	// The statement: the newest first, a page of them, and a link to the
	// older ones.
	assert.Contains(t, p.body, "bonus 24")
	assert.NotContains(t, p.body, "top-up")
	m := regexp.MustCompile(`id="older" href="([^"]+)"`).FindStringSubmatch(p.body)
	require.NotNil(t, m, "no link to older entries")
	older := c.get(strings.ReplaceAll(m[1], "&amp;", "&"))
	require.Equal(t, http.StatusOK, older.status)
	assert.Contains(t, older.body, "top-up")
	assert.Contains(t, older.body, "bought a hat")
	assert.NotContains(t, older.body, "bonus 24")

	// What authorities write is escaped.
	mustEntry(t, l, ledger.NewEntry{AuthorityID: "shop", UserID: "u2", Amount: decimal.NewFromInt(1), Reason: `<script>alert(1)</script>`})
	p = c.get("/console/user?id=u2")
	assert.NotContains(t, p.body, "<script>alert")
	assert.Contains(t, p.body, "&lt;script&gt;alert(1)&lt;/script&gt;")

	assert.Equal(t, http.StatusBadRequest, c.get("/console/user?id=").status)
	assert.Equal(t, http.StatusNotFound, c.get("/console/static/").status, "a directory listing")
	css := c.get("/console/static/console.css")
	assert.Equal(t, http.StatusOK, css.status)
	assert.Equal(t, "text/css; charset=utf-8", css.header.Get("Content-Type"))
	p = c.get("/console/nowhere")
	assert.Equal(t, http.StatusNotFound, p.status)
	assert.Equal(t, "text/html; charset=utf-8", p.header.Get("Content-Type"))
}

func TestConsoleRefund(t *testing.T) {
	env, secret := newConsoleEnv(t)
	l := env.srv.ledger
	ctx := context.Background()
	_, purchase := seedUser(t, l)
	c := newConsoleClient(t, env)
	csrf := c.login("alice", secret)

	confirm := c.get("/console/refund?entry=" + purchase.ID)
	require.Equal(t, http.StatusOK, confirm.status)
	assert.Contains(t, confirm.body, "bought a hat")

	// Without a reason or the confirmation, nothing is done.
	for _, form := range []url.Values{
		{"csrf": {csrf}, "entry": {purchase.ID}, "confirm": {"yes"}},
		{"csrf": {csrf}, "entry": {purchase.ID}, "reason": {"  "}, "confirm": {"yes"}},
		{"csrf": {csrf}, "entry": {purchase.ID}, "reason": {"customer asked"}},
	} {
		p := c.post("/console/refund", form)
		assert.Equal(t, http.StatusBadRequest, p.status, "form %v", form)
	}
	es, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"u1"}})
	require.NoError(t, err)
	require.Len(t, es, 2)

	p := c.post("/console/refund", url.Values{"csrf": {csrf}, "entry": {purchase.ID}, "reason": {"customer asked"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, "body: %s", p.body)
	es, err = l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{"u1"}, Reverse: true, Limit: 1})
	require.NoError(t, err)
	rev := es[0]
	assert.Equal(t, purchase.ID, rev.Reverses)
	assert.Equal(t, "shop", rev.AuthorityID, "a reversal is the original authority's")
	assert.Equal(t, "console: operator alice: customer asked", rev.Reason)
	assert.True(t, rev.Amount.Equal(decimal.NewFromInt(30)))
	page := c.get(p.header.Get("Location"))
	assert.Contains(t, page.body, "Refunded entry "+purchase.ID)
	assert.Contains(t, page.body, `<td class="num total">100</td>`)
	assert.Contains(t, env.logs.String(), "console: entry refunded")

	// A second refund is refused by the ledger, and said so.
	p = c.post("/console/refund", url.Values{"csrf": {csrf}, "entry": {purchase.ID}, "reason": {"again"}, "confirm": {"yes"}})
	assert.Equal(t, http.StatusConflict, p.status)
	assert.Contains(t, p.body, "refunded before")
}

func TestConsoleReleaseAndLimits(t *testing.T) {
	env, secret := newConsoleEnv(t)
	l := env.srv.ledger
	ctx := context.Background()
	mustEntry(t, l, ledger.NewEntry{AuthorityID: "shop", UserID: "u1", Amount: decimal.NewFromInt(50), Reason: "top-up", Currency: "EUR"})
	h, err := l.Hold(ctx, ledger.NewHold{AuthorityID: "shop", UserID: "u1", Currency: "EUR", Amount: decimal.NewFromInt(20), Reason: "stuck order"})
	require.NoError(t, err)
	c := newConsoleClient(t, env)
	csrf := c.login("alice", secret)

	p := c.get("/console/release?hold=" + h.ID + "&currency=EUR")
	require.Equal(t, http.StatusOK, p.status)
	assert.Contains(t, p.body, "stuck order")
	p = c.post("/console/release", url.Values{"csrf": {csrf}, "hold": {h.ID}, "currency": {"EUR"}, "reason": {"order cancelled"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, "body: %s", p.body)
	b, err := l.Balance(ctx, "u1", "EUR")
	require.NoError(t, err)
	assert.True(t, b.Held.IsZero(), "held %s", b.Held)
	assert.True(t, b.Total.Equal(decimal.NewFromInt(50)), "total %s", b.Total)

	p = c.post("/console/limits", url.Values{"csrf": {csrf}, "user": {"u1"}, "currency": {"EUR"}, "floor": {"-10"}, "cap": {"500"},
		"reason": {"trusted customer"}, "confirm": {"yes"}})
	require.Equal(t, http.StatusSeeOther, p.status, "body: %s", p.body)
	b, err = l.Balance(ctx, "u1", "EUR")
	require.NoError(t, err)
	assert.True(t, b.Floor.Equal(decimal.NewFromInt(-10)), "floor %s", b.Floor)
	require.NotNil(t, b.Cap)
	assert.True(t, b.Cap.Equal(decimal.NewFromInt(500)), "cap %s", b.Cap)
	assert.True(t, b.Total.Equal(decimal.NewFromInt(50)), "a note moves no value: total %s", b.Total)

	// The ledger's history shows who did what, and why.
	var kinds []string
	var notes []ledger.Entry
	var limitsBy string
	for ch, err := range l.Changes(ctx, ledger.ChangeQuery{}) {
		require.NoError(t, err)
		kinds = append(kinds, string(ch.Kind))
		if ch.Kind == ledger.ChangeEntry && ch.Entry.AuthorityID == "console:alice" {
			notes = append(notes, *ch.Entry)
		}
		if ch.Kind == ledger.ChangeLimits {
			limitsBy = ch.AuthorityID
		}
	}
	assert.Equal(t, []string{"entry", "hold_placed", "hold_released", "entry", "limits", "entry"}, kinds)
	assert.Equal(t, "console:alice", limitsBy)
	require.Len(t, notes, 2)
	assert.True(t, notes[0].Amount.IsZero())
	assert.Equal(t, "console: operator alice: released hold "+h.ID+" of 20 EUR placed by shop: order cancelled", notes[0].Reason)
	assert.Equal(t, map[string]string{"console_action": "release", "console_operator": "alice", "hold_id": h.ID}, notes[0].Metadata)
	assert.Equal(t, "console: operator alice: set limits floor -10, cap 500 (were floor 0, cap none): trusted customer", notes[1].Reason)
	assert.Equal(t, "EUR", notes[1].Currency)

	// Releasing again is refused, and writes no note.
	p = c.post("/console/release", url.Values{"csrf": {csrf}, "hold": {h.ID}, "currency": {"EUR"}, "reason": {"again"}, "confirm": {"yes"}})
	assert.Equal(t, http.StatusConflict, p.status)
	// Bad limits are refused with the ledger's reason.
	p = c.post("/console/limits", url.Values{"csrf": {csrf}, "user": {"u1"}, "currency": {"EUR"}, "floor": {"5"},
		"reason": {"x"}, "confirm": {"yes"}})
	assert.Equal(t, http.StatusBadRequest, p.status)
	assert.Contains(t, p.body, "Floor")
	es, err := l.Entries(ctx, ledger.EntryQuery{AuthorityIDs: []string{"console:alice"}})
	require.NoError(t, err)
	assert.Len(t, es, 2)
}

func TestConsoleLiveEvents(t *testing.T) {
	env, secret := newConsoleEnv(t)
	l := env.srv.ledger
	seedUser(t, l)
	c := newConsoleClient(t, env)
	c.login("alice", secret)

	p := c.get("/console/live")
	require.Equal(t, http.StatusOK, p.status)
	assert.Contains(t, p.body, "bought a hat")
	after := regexp.MustCompile(`data-after="([^"]*)"`).FindStringSubmatch(p.body)
	require.NotNil(t, after)
	require.NotEmpty(t, after[1])

	// Without a session, the stream is refused.
	res, err := http.Get(c.base + "/console/live/events")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/console/live/events?after="+after[1], nil)
	require.NoError(t, err)
	res, err = c.hc.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))

	e := mustEntry(t, l, ledger.NewEntry{AuthorityID: "shop", UserID: "u1", Amount: decimal.NewFromInt(5), Reason: "line one\rid: 0\nline two"})
	sc := bufio.NewScanner(res.Body)
	var ev []string
	for sc.Scan() && sc.Text() != "" {
		ev = append(ev, sc.Text())
	}
	require.NoError(t, sc.Err())
	require.GreaterOrEqual(t, len(ev), 3, "event %q", ev)
	assert.Regexp(t, `^id: \S+$`, ev[0])
	assert.Equal(t, "event: change", ev[1])
	var data []string
	for _, line := range ev[2:] {
		require.True(t, strings.HasPrefix(line, "data: "), "line %q", line)
		data = append(data, strings.TrimPrefix(line, "data: "))
	}
	row := strings.Join(data, "\n")
	assert.Contains(t, row, e.ID)
	assert.Contains(t, row, "line one&#13;id: 0\nline two")
	assert.True(t, strings.HasPrefix(row, `<tr id="change-`), "row %q", row)
}

// newTLSServer serves env's handler over TLS as well.
func newTLSServer(t *testing.T, env *testEnv) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(env.srv.Handler())
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}
