package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSDKWalkthrough drives every endpoint the way the Python SDK does,
// following the SDK page's examples, and checks every body's exact shape.
func TestSDKWalkthrough(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("recycling center")
	shop := env.newAuthority("corner shop")

	// check_service_health
	h := c.checkServiceHealth()
	require.Equal(t, http.StatusOK, h.status)
	requireKeys(t, h.body, "ok", "version")
	assert.Equal(t, true, h.body["ok"])
	assert.Equal(t, "1.1.0", h.body["version"])

	// create_entry without item.
	r := c.createEntry("foobar123", 99, "returned a lot of cans", nil)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	requireKeys(t, r.body, "entry")
	e := requireEntry(t, r.body["entry"], false)
	assert.Equal(t, c.authorityID, e["authority_id"])
	assert.Equal(t, "foobar123", e["user_id"])
	assert.Equal(t, int64(99), requireInteger(t, e["amount"]))
	assert.Equal(t, "returned a lot of cans", e["reason"])

	// A spend from a user with no entries is refused, not a crash.
	r = shop.createEntry("bobcats9", -5, "bought a soda", map[string]any{"name": "Soda Can"})
	requireError(t, r, http.StatusPaymentRequired, "not enough funds")

	require.Equal(t, http.StatusOK, c.createEntry("bobcats9", 600, "payday", nil).status)
	r = shop.createEntry("bobcats9", -5, "bought a soda", map[string]any{"name": "Soda Can"})
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	soda := requireEntry(t, r.body["entry"], true)
	assert.Equal(t, int64(-5), requireInteger(t, soda["amount"]))
	assert.Equal(t, map[string]any{"name": "Soda Can", "used": false}, soda["item"])
	sodaID := soda["entry_id"].(string)

	// Item data as the SDK page shows it: a string holding JSON.
	r = shop.createEntry("1", 0, "bought sunglasses",
		map[string]any{"name": "Cool Shades", "data": `{ "internal_id": "001122" }`})
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	shades := requireEntry(t, r.body["entry"], true)
	assert.Equal(t, `{ "internal_id": "001122" }`, shades["item"].(map[string]any)["data"])

	// Item data that is an array comes back as that array, byte for byte.
	const arrayData = `[1, {"a": [2, 3], "b": null}, "x", [], {}]`
	body := `{"user_id": "bobcats9", "amount": -10, "reason": "bundle", "item": {"name": "Bundle", "data": ` + arrayData + `}}`
	r = shop.do(http.MethodPost, "/entry", nil, []byte(body))
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	bundle := requireEntry(t, r.body["entry"], true)
	assert.Contains(t, string(r.raw), `"data":`+arrayData+`}`, "data byte for byte")
	assert.IsType(t, []any{}, bundle["item"].(map[string]any)["data"])
	bundleID := bundle["entry_id"].(string)

	// get_wallets(): all users.
	w := requireWallets(t, c.getWallets(nil, nil))
	assert.Equal(t, map[string]int64{"foobar123": 99, "bobcats9": 585, "1": 0}, w)
	// get_wallets(user_ids=...): a named user with no entries gets total 0.
	w = requireWallets(t, c.getWallets([]string{"foobar123", "nobody"}, nil))
	assert.Equal(t, map[string]int64{"foobar123": 99, "nobody": 0}, w)
	// get_wallets(authority_ids=...): only that authority's entries count.
	w = requireWallets(t, c.getWallets(nil, []string{shop.authorityID}))
	assert.Equal(t, map[string]int64{"bobcats9": -15, "1": 0}, w)
	w = requireWallets(t, c.getWallets([]string{"bobcats9"}, []string{c.authorityID, shop.authorityID}))
	assert.Equal(t, map[string]int64{"bobcats9": 585}, w)

	// get_inventory(used=None): every item.
	inv := requireInventory(t, c.getInventory(nil, nil, nil, nil))
	assert.Equal(t, []string{sodaID, shades["entry_id"].(string), bundleID}, entryIDs(inv))
	for _, it := range inv {
		assert.Equal(t, shop.authorityID, it["authority_id"])
	}
	inv = requireInventory(t, c.getInventory([]string{sodaID, "0000000000000000deadbeef"}, nil, nil, nil))
	assert.Equal(t, []string{sodaID}, entryIDs(inv))
	inv = requireInventory(t, c.getInventory(nil, []string{"bobcats9"}, []string{shop.authorityID}, nil))
	assert.Equal(t, []string{sodaID, bundleID}, entryIDs(inv))
	assert.Contains(t, string(c.getInventory([]string{bundleID}, nil, nil, nil).raw), `"data":`+arrayData+`}`)
	inv = requireInventory(t, c.getInventory(nil, nil, []string{c.authorityID}, nil))
	assert.Empty(t, inv)

	// use_item: any authority may use any item.
	r = c.useItem(sodaID)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	requireKeys(t, r.body, "entry")
	used := requireEntry(t, r.body["entry"], true)
	assert.Equal(t, sodaID, used["entry_id"])
	assert.Equal(t, map[string]any{"name": "Soda Can", "used": true}, used["item"])
	assert.Equal(t, soda["created_on"], used["created_on"])

	// The used flag is saved, used absent means no filter, and
	// used=true|false filter both ways.
	inv = requireInventory(t, c.getInventory(nil, nil, nil, nil))
	assert.Equal(t, []string{sodaID, shades["entry_id"].(string), bundleID}, entryIDs(inv))
	assert.Equal(t, true, inv[0]["item"].(map[string]any)["used"])
	inv = requireInventory(t, c.getInventory(nil, nil, nil, ptr(true)))
	assert.Equal(t, []string{sodaID}, entryIDs(inv))
	assert.Equal(t, true, inv[0]["item"].(map[string]any)["used"])
	inv = requireInventory(t, c.getInventory(nil, nil, nil, ptr(false)))
	assert.Equal(t, []string{shades["entry_id"].(string), bundleID}, entryIDs(inv))
	// Python's spelling of a bool parameter.
	inv = requireInventory(t, c.do(http.MethodGet, "/entry/inventory", url.Values{"used": {"False"}}, nil))
	assert.Equal(t, []string{shades["entry_id"].(string), bundleID}, entryIDs(inv))
	inv = requireInventory(t, c.do(http.MethodGet, "/entry/inventory", url.Values{"used": {"True"}}, nil))
	assert.Equal(t, []string{sodaID}, entryIDs(inv))

	// 409 for an item used already and for an entry without item; 404 for
	// an unknown entry.
	requireError(t, c.useItem(sodaID), http.StatusConflict, "item already used")
	requireError(t, c.useItem(e["entry_id"].(string)), http.StatusConflict, "entry has no item")
	requireError(t, c.useItem("0000000000000000deadbeef"), http.StatusNotFound, "entry not found")
	requireError(t, c.useItem("no-such-entry"), http.StatusNotFound, "entry not found")
}

func TestCreatedOnIsExact(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	r := c.createEntry("u", 1, "r", nil)
	require.Equal(t, http.StatusOK, r.status)
	e := requireEntry(t, r.body["entry"], false)
	// The entry ID starts with CreatedOn in Unix nanoseconds (16 hex
	// digits); created_on must say the same instant.
	var nanos int64
	for _, c := range e["entry_id"].(string)[:16] {
		nanos = nanos<<4 | int64(strings.IndexRune("0123456789abcdef", c))
	}
	want := string(appendUnixSeconds(nil, time.Unix(0, nanos)))
	assert.Equal(t, want, e["created_on"].(json.Number).String())
}

func TestRoutes(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	for _, tc := range []struct {
		name, method, path string
		status             int
		allow              string
	}{
		{"unknown route", http.MethodGet, "/nope", http.StatusNotFound, ""},
		{"unknown API route", http.MethodGet, "/entries", http.StatusNotFound, ""},
		{"v0 path of the old SDK", http.MethodGet, "/wallets", http.StatusNotFound, ""},
		{"POST health", http.MethodPost, "/health", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"GET entry", http.MethodGet, "/entry", http.StatusMethodNotAllowed, "POST"},
		{"DELETE wallet", http.MethodDelete, "/wallet", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"POST inventory", http.MethodPost, "/entry/inventory", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"GET use", http.MethodGet, "/entry/x/inventory/use", http.StatusMethodNotAllowed, "POST"},
		// Unclean paths: 404, not ServeMux's redirect to the clean path.
		{"double slash", http.MethodGet, "//wallet", http.StatusNotFound, ""},
		{"dot", http.MethodGet, "/./wallet", http.StatusNotFound, ""},
		{"dot dot", http.MethodGet, "/entry/../wallet", http.StatusNotFound, ""},
		{"escaped dot dot", http.MethodGet, "/entry/%2e%2e/wallet", http.StatusNotFound, ""},
		{"trailing dot", http.MethodGet, "/wallet/.", http.StatusNotFound, ""},
		{"empty entry ID", http.MethodPost, "/entry//inventory/use", http.StatusNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(tc.method, tc.path, nil, nil)
			requireError(t, r, tc.status, "")
			assert.Equal(t, tc.allow, r.header.Get("Allow"))
		})
	}
	// Redirects are not followed: they would hide one.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/api/v1//wallet", "/api//v1/health", "/api/v1/entry/../wallet?user_ids=&authority_ids=", "//", "/."} {
		res, err := noRedirect.Get(env.ts.URL + path)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusNotFound, res.StatusCode, "GET %s", path)
		assert.Empty(t, res.Header.Get("Location"), "GET %s", path)
		assert.Equal(t, "application/json", res.Header.Get("Content-Type"), "GET %s", path)
	}
	// CONNECT, whose paths ServeMux does not clean, is no exception.
	conn, err := net.Dial("tcp", env.ts.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"))
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusNotFound, res.StatusCode, "CONNECT")
	assert.Equal(t, "application/json", res.Header.Get("Content-Type"), "CONNECT")
	// Outside /api/v1 too.
	res, err = http.Get(env.ts.URL + "/")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusNotFound, res.StatusCode)
	assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
}

// TestBadRequests sends input of every kind the API refuses: each is 400
// with {"error": ...} and writes nothing.
func TestBadRequests(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	require.Equal(t, http.StatusOK, c.createEntry("u", 10, "seed", map[string]any{"name": "thing"}).status)
	itemID := requireInventory(t, c.getInventory(nil, nil, nil, nil))[0]["entry_id"].(string)

	big := `{"user_id": "u", "amount": 1, "reason": "` + strings.Repeat("x", maxBodyBytes) + `", "item": null}`
	bigData := `{"user_id": "u", "amount": 1, "reason": "r", "item": {"name": "n", "data": "` + strings.Repeat("x", 70<<10) + `"}}`
	for _, tc := range []struct {
		name, body, wantMsg string
	}{
		{"malformed JSON", `{"user_id": "u",`, "invalid request body: truncated JSON"},
		{"not JSON", `user_id=u&amount=1`, ""},
		{"empty body", ``, "empty request body: want a JSON object"},
		{"array body", `[]`, ""},
		{"null body", `null`, "missing user_id"},
		{"unknown key", `{"user_id": "u", "amount": 1, "reason": "r", "item": null, "balance": 5}`, `invalid request body: unknown field "balance"`},
		{"unknown item key", `{"user_id": "u", "amount": 1, "reason": "r", "item": {"name": "n", "used": true}}`, `invalid request body: unknown field "used"`},
		{"key in upper case", `{"USER_ID": "u", "amount": 1, "reason": "r", "item": null}`, `invalid request body: unknown field "USER_ID"`},
		{"key capitalized", `{"user_id": "u", "Amount": 1, "reason": "r", "item": null}`, `invalid request body: unknown field "Amount"`},
		{"key in two cases", `{"user_id": "u", "User_Id": "v", "amount": 1, "reason": "r", "item": null}`, `invalid request body: unknown field "User_Id"`},
		{"item key capitalized", `{"user_id": "u", "amount": 1, "reason": "r", "item": {"Name": "n"}}`, `invalid request body: unknown field "Name"`},
		{"duplicate key", `{"user_id": "u", "amount": 1, "amount": 2, "reason": "r", "item": null}`, `invalid request body: duplicate field "amount"`},
		{"duplicate item", `{"user_id": "u", "amount": 1, "reason": "r", "item": null, "item": {"name": "n"}}`, `invalid request body: duplicate field "item"`},
		{"duplicate item key", `{"user_id": "u", "amount": 1, "reason": "r", "item": {"name": "n", "name": "m"}}`, `invalid request body: duplicate field "name"`},
		{"user_id number", `{"user_id": 5, "amount": 1, "reason": "r", "item": null}`, ""},
		{"reason null", `{"user_id": "u", "amount": 1, "reason": null, "item": null}`, "missing reason"},
		{"item not object", `{"user_id": "u", "amount": 1, "reason": "r", "item": "sword"}`, ""},
		{"amount string", `{"user_id": "u", "amount": "5", "reason": "r", "item": null}`, `invalid amount: want a JSON integer, got "5"`},
		{"amount fraction", `{"user_id": "u", "amount": 5.5, "reason": "r", "item": null}`, "invalid amount: want a JSON integer, got 5.5"},
		{"amount with .0", `{"user_id": "u", "amount": 5.0, "reason": "r", "item": null}`, ""},
		{"amount exponent", `{"user_id": "u", "amount": 1e3, "reason": "r", "item": null}`, ""},
		{"amount null", `{"user_id": "u", "amount": null, "reason": "r", "item": null}`, ""},
		{"amount beyond int64", `{"user_id": "u", "amount": 9223372036854775808, "reason": "r", "item": null}`, "invalid amount: 9223372036854775808 is out of range"},
		{"amount beyond ledger precision", `{"user_id": "u", "amount": 1000000000000000000, "reason": "r", "item": null}`, ""},
		{"missing user_id", `{"amount": 1, "reason": "r", "item": null}`, "missing user_id"},
		{"missing amount", `{"user_id": "u", "reason": "r", "item": null}`, "missing amount"},
		{"missing reason", `{"user_id": "u", "amount": 1, "item": null}`, "missing reason"},
		{"item without name", `{"user_id": "u", "amount": 1, "reason": "r", "item": {"data": 1}}`, "missing item.name"},
		{"empty item name", `{"user_id": "u", "amount": 1, "reason": "r", "item": {"name": ""}}`, "invalid item.name: empty"},
		{"empty user_id", `{"user_id": "", "amount": 1, "reason": "r", "item": null}`, "invalid user_id: empty"},
		{"empty reason", `{"user_id": "u", "amount": 1, "reason": "", "item": null}`, "invalid reason: empty"},
		{"trailing data", `{"user_id": "u", "amount": 1, "reason": "r", "item": null} {}`, "invalid request body: unexpected data after the JSON object"},
		{"body over the limit", big, "request body larger than 1048576 bytes"},
		{"item data over the ledger limit", bigData, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(http.MethodPost, "/entry", nil, []byte(tc.body))
			requireError(t, r, http.StatusBadRequest, tc.wantMsg)
		})
	}

	for _, tc := range []struct {
		name, path, query string
	}{
		{"used not a bool", "/entry/inventory", "used=maybe"},
		{"used twice", "/entry/inventory", "used=true&used=false"},
		{"unknown inventory parameter", "/entry/inventory", "user_ids=&page=5"},
		{"limit zero", "/entry/inventory", "limit=0"},
		{"limit negative", "/wallet", "limit=-1"},
		{"limit not a number", "/wallet", "limit=ten"},
		{"limit twice", "/wallet", "limit=1&limit=2"},
		{"after too long", "/wallet", "after=" + strings.Repeat("u", 300)},
		{"after twice", "/entry/inventory", "after=a&after=b"},
		{"unknown wallet parameter", "/wallet", "user_ids=&used=true"},
		{"malformed query", "/wallet", "user_ids=%zz"},
		{"empty element in a list", "/wallet", "user_ids=a,,b&authority_ids="},
		{"too long user ID", "/wallet", "user_ids=" + strings.Repeat("u", 300)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(http.MethodGet, tc.path+"?"+tc.query, nil, nil)
			requireError(t, r, http.StatusBadRequest, "")
		})
	}
	t.Run("too long entry ID", func(t *testing.T) {
		requireError(t, c.useItem(strings.Repeat("e", 300)), http.StatusBadRequest, "")
	})

	// Nothing was written by any of the above.
	assert.Equal(t, map[string]int64{"u": 10}, requireWallets(t, c.getWallets(nil, nil)))
	inv := requireInventory(t, c.getInventory(nil, nil, nil, nil))
	assert.Equal(t, []string{itemID}, entryIDs(inv))
}

// TestItemData checks what item data may be: any JSON value, kept byte
// for byte; null or absent means no data.
func TestItemData(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	for _, tc := range []struct {
		name, data string // data "" = no data key
		want       string // "" = no data in the answer
	}{
		{"absent", "", ""},
		{"null", `null`, ""},
		{"array", `[1,2,3]`, `[1,2,3]`},
		{"array with spaces", `[ 1 , [ ] , { } ]`, `[ 1 , [ ] , { } ]`},
		{"object keeps key order and duplicates", `{"b": 1, "a": 2, "b": 3}`, `{"b": 1, "a": 2, "b": 3}`},
		{"object keys are not checked", `{"Name": 1, "name": {"USER_ID": 2, "x": 3, "x": 4}}`, `{"Name": 1, "name": {"USER_ID": 2, "x": 3, "x": 4}}`},
		{"string", `"<b>&</b>"`, `"<b>&</b>"`},
		{"number", `1.50e+3`, `1.50e+3`},
		{"false", `false`, `false`},
		{"unicode escapes", `"\u00e9\ud83d\ude00"`, `"\u00e9\ud83d\ude00"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			item := `{"name": "n"}`
			if tc.data != "" {
				item = `{"name": "n", "data": ` + tc.data + `}`
			}
			r := c.do(http.MethodPost, "/entry", nil, []byte(`{"user_id": "u", "amount": 0, "reason": "r", "item": `+item+`}`))
			require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
			e := requireEntry(t, r.body["entry"], true)
			it := requireItem(t, e["item"])
			inv := c.getInventory([]string{e["entry_id"].(string)}, nil, nil, nil)
			if tc.want == "" {
				assert.NotContains(t, it, "data")
				assert.NotContains(t, string(inv.raw), `"data"`)
				return
			}
			assert.True(t, bytes.Contains(r.raw, []byte(`"data":`+tc.want+`}`)), "entry body %s", r.raw)
			assert.True(t, bytes.Contains(inv.raw, []byte(`"data":`+tc.want+`}`)), "inventory body %s", inv.raw)
		})
	}
}

// TestRequestLogTruncatesPath: a client chooses the path, up to the
// header limit; the request log keeps its first maxLogPath bytes.
func TestRequestLogTruncatesPath(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	long := "/" + strings.Repeat("x", 10_000)
	requireError(t, c.do(http.MethodGet, long, nil, nil), http.StatusNotFound, "not found")
	logs := env.logs.String()
	want := "path=" + truncate("/api/v1"+long, maxLogPath) + " "
	assert.True(t, strings.Contains(logs, want), "no request log line with the path cut to %d bytes", maxLogPath)
	for line := range strings.Lines(logs) {
		assert.Less(t, len(line), 2*maxLogPath, "log line %.200s...", line)
	}
}

func TestMissingAuthorization(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/entry"},
		{http.MethodGet, "/wallet"},
		{http.MethodGet, "/entry/inventory"},
		{http.MethodPost, "/entry/x/inventory/use"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			for _, auth := range []string{"", "   "} {
				r := c.doAuth(tc.method, tc.path, nil, []byte(`{}`), auth)
				requireError(t, r, http.StatusUnauthorized, "authorization data required")
			}
		})
	}
}

// TestFaults checks that store failures and handler panics are 500
// {"error": "internal error"}, logged, and that the server keeps serving.
func TestFaults(t *testing.T) {
	store := newFaultyStore()
	env := newTestEnv(t, envOptions{store: store})
	c := env.newAuthority("a")
	require.Equal(t, http.StatusOK, c.createEntry("u", 10, "seed", nil).status)

	store.failView.Store(true)
	requireError(t, c.getWallets(nil, nil), http.StatusInternalServerError, "internal error")
	requireError(t, c.getInventory(nil, nil, nil, nil), http.StatusInternalServerError, "internal error")
	store.failView.Store(false)
	assert.Contains(t, env.logs.String(), "faultyStore: injected failure")

	store.failUpdate.Store(true)
	requireError(t, c.createEntry("u", 5, "lost", nil), http.StatusInternalServerError, "internal error")
	requireError(t, c.useItem("0000000000000000deadbeef"), http.StatusInternalServerError, "internal error")
	store.failUpdate.Store(false)

	store.panicView.Store(true)
	requireError(t, c.getWallets(nil, nil), http.StatusInternalServerError, "internal error")
	store.panicView.Store(false)
	assert.Contains(t, env.logs.String(), "handler panicked")

	store.failPing.Store(true)
	h := c.checkServiceHealth()
	require.Equal(t, http.StatusServiceUnavailable, h.status)
	requireKeys(t, h.body, "ok", "version")
	assert.Equal(t, false, h.body["ok"])
	store.failPing.Store(false)

	// Still serving, and the failed write left no trace.
	assert.Equal(t, map[string]int64{"u": 10}, requireWallets(t, c.getWallets(nil, nil)))
	require.Equal(t, http.StatusOK, c.checkServiceHealth().status)

	// A ledger closed under the handler: 500, and health says so.
	require.NoError(t, env.srv.ledger.Close())
	requireError(t, c.createEntry("u", 1, "r", nil), http.StatusInternalServerError, "internal error")
	assert.Equal(t, http.StatusServiceUnavailable, c.checkServiceHealth().status)
}
