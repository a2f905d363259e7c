package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of API v2. Every request goes through a v2Client, which checks
// it and its answer against openapi.json (see v2helpers_test.go).

func newV2Env(t *testing.T) (*testEnv, *v2Client) {
	t.Helper()
	env := newTestEnv(t, envOptions{})
	return env, env.v2Client(env.newAuthority("shop"))
}

// post sends a POST with a JSON body and an Idempotency-Key ("" for
// none), and requires status want.
func (c *v2Client) post(want int, path, key string, body any) v2Resp {
	c.t.Helper()
	return c.ok(want, v2Req{method: http.MethodPost, path: path, key: key, json: body})
}

func (c *v2Client) get(path string, query url.Values) v2Resp {
	c.t.Helper()
	return c.ok(http.StatusOK, v2Req{method: http.MethodGet, path: path, query: query})
}

// credit writes an entry of amount for user and returns it.
func (c *v2Client) credit(user, amount string) v2Resp {
	c.t.Helper()
	return c.post(http.StatusCreated, "/api/v2/entries", "", map[string]any{"user_id": user, "amount": amount, "reason": "credit"})
}

// balance returns the user's total, held and available in currency.
func (c *v2Client) balance(user, currency string) (total, held, available string) {
	c.t.Helper()
	if currency == "" {
		currency = defaultCurrencySegment
	}
	r := c.get("/api/v2/users/"+user+"/balances/"+currency, nil)
	return r.str(c.t, "total"), r.str(c.t, "held"), r.str(c.t, "available")
}

func ids(rows []map[string]any, key string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[key].(string))
	}
	return out
}

func TestV2HealthAndDocument(t *testing.T) {
	_, c := newV2Env(t)
	r := c.ok(http.StatusOK, v2Req{method: http.MethodGet, path: "/api/v2/health", noAuth: true})
	assert.Equal(t, map[string]any{"status": "ok", "version": apiVersionV2}, r.body)

	r = c.ok(http.StatusOK, v2Req{method: http.MethodGet, path: "/api/v2/openapi.json", noAuth: true})
	assert.Equal(t, openAPIDocument, r.raw, "the embedded document, byte for byte")
	assert.Equal(t, "3.1.0", r.body["openapi"])
	assert.Equal(t, apiVersionV2, r.body["info"].(map[string]any)["version"])

	// Every operation of the document is served: without a token, each
	// answers 401 (or, if public, not 404 or 405).
	for path, item := range c.spec.doc.Paths.Map() {
		for method, op := range item.Operations() {
			concrete := strings.NewReplacer("{entry_id}", "e1", "{hold_id}", "h1", "{user_id}", "u1", "{currency}", "EUR").Replace(path)
			rq := v2Req{method: method, path: concrete, noAuth: true, invalid: op.Security == nil || len(*op.Security) > 0}
			if method == http.MethodGet && path == "/api/v2/changes" {
				continue // a stream: covered by TestV2Changes
			}
			r := c.do(rq)
			if op.Security != nil && len(*op.Security) == 0 {
				assert.Equal(t, http.StatusOK, r.status, "%s %s", method, path)
				continue
			}
			assert.Equal(t, http.StatusUnauthorized, r.status, "%s %s: %s", method, path, r.raw)
		}
	}
}

func TestV2Entries(t *testing.T) {
	env, c := newV2Env(t)
	other := env.v2Client(env.newAuthority("arcade"))

	e := c.post(http.StatusCreated, "/api/v2/entries", "pay-1", map[string]any{
		"user_id": "alice", "amount": "100", "reason": "payday", "currency": "EUR",
		"metadata": map[string]string{"order": "o-1"},
	})
	id := e.str(t, "entry_id")
	assert.Equal(t, "/api/v2/entries/"+id, e.header.Get("Location"))
	assert.Equal(t, c.id, e.body["authority_id"], "the token's authority")
	assert.Equal(t, "EUR", e.body["currency"])
	assert.Equal(t, "100", e.body["balance"])
	assert.Equal(t, map[string]any{"order": "o-1"}, e.body["metadata"])
	created, err := time.Parse(time.RFC3339Nano, e.str(t, "created_on"))
	require.NoError(t, err)
	assert.Len(t, strings.TrimSuffix(strings.SplitN(e.str(t, "created_on"), ".", 2)[1], "Z"), 9, "nine digits of fraction")
	assert.WithinDuration(t, time.Now(), created, time.Minute)

	// A retry with the key answers the first entry; other fields conflict.
	again := c.post(http.StatusCreated, "/api/v2/entries", "pay-1", map[string]any{
		"user_id": "alice", "amount": "100", "reason": "payday", "currency": "EUR",
		"metadata": map[string]string{"order": "o-1"},
	})
	assert.Equal(t, e.raw, again.raw)
	p := c.problem("idempotency-conflict", v2Req{method: http.MethodPost, path: "/api/v2/entries", key: "pay-1",
		json: map[string]any{"user_id": "alice", "amount": "101", "reason": "payday", "currency": "EUR"}})
	assert.Equal(t, http.StatusConflict, p.status)
	assert.Equal(t, "pay-1", p.body["idempotency_key"])
	assert.Equal(t, id, p.body["entry_id"])
	assert.Contains(t, p.body["fields"], "amount")

	// Item data comes back byte for byte.
	it := c.ok(http.StatusCreated, v2Req{method: http.MethodPost, path: "/api/v2/entries",
		raw: []byte(`{"user_id":"alice","amount":"-5","reason":"soda","currency":"EUR","item":{"name":"Soda","data":{"b": [1, 2.50],"a":"\u00e9"}}}`)})
	assert.Contains(t, string(it.raw), `"data":{"b": [1, 2.50],"a":"\u00e9"}`)
	assert.Equal(t, "95", it.body["balance"])

	got := c.get("/api/v2/entries/"+id, nil)
	assert.Equal(t, e.raw, got.raw)
	c.problem("not-found", v2Req{method: http.MethodGet, path: "/api/v2/entries/18edbd2f3979c9dd60dc04ca"})

	// Lists: filters and both orders, paged.
	for i := range 5 {
		other.credit("bob", strings.Repeat("1", i+1))
	}
	c.credit("bob", "7")
	all := c.get("/api/v2/entries", nil).list(t, "entries")
	require.Len(t, all, 8)
	var want []string
	for _, r := range all {
		want = append(want, r["entry_id"].(string))
	}
	assert.True(t, slices.IsSorted(want), "oldest first by default")

	bobs := c.get("/api/v2/entries", url.Values{"user_ids": {"bob"}, "authority_ids": {other.id}}).list(t, "entries")
	assert.Len(t, bobs, 5)
	eur := c.get("/api/v2/entries", url.Values{"currencies": {"EUR"}}).list(t, "entries")
	assert.Len(t, eur, 2)
	def := c.get("/api/v2/entries", url.Values{"currencies": {""}}).list(t, "entries")
	assert.Len(t, def, 6, "an empty currencies element is the default currency")
	assert.Len(t, c.get("/api/v2/entries", url.Values{"currencies": {",EUR"}}).list(t, "entries"), 8)
	assert.Empty(t, c.get("/api/v2/entries", url.Values{"until": {all[0]["created_on"].(string)}}).list(t, "entries"))
	assert.Len(t, c.get("/api/v2/entries", url.Values{"since": {all[7]["created_on"].(string)}}).list(t, "entries"), 1)

	for _, order := range []string{"oldest_first", "newest_first"} {
		var paged []string
		q := url.Values{"order": {order}, "limit": {"3"}}
		for pages := 0; ; pages++ {
			require.Less(t, pages, 5)
			r := c.get("/api/v2/entries", q)
			rows := r.list(t, "entries")
			paged = append(paged, ids(rows, "entry_id")...)
			next, ok := r.body["next_cursor"].(string)
			if !ok {
				require.Nil(t, r.body["next_cursor"])
				assert.Len(t, rows, 2, "the last page")
				break
			}
			require.Len(t, rows, 3)
			q.Set("cursor", next)
		}
		w := slices.Clone(want)
		if order == "newest_first" {
			slices.Reverse(w)
		}
		assert.Equal(t, w, paged, order)
	}
	// A cursor belongs to its list and order.
	r := c.get("/api/v2/entries", url.Values{"limit": {"1"}})
	c.invalidProblem("cursor", v2Req{method: http.MethodGet, path: "/api/v2/entries",
		query: url.Values{"order": {"newest_first"}, "cursor": {r.str(t, "next_cursor")}}})
	c.invalidProblem("cursor", v2Req{method: http.MethodGet, path: "/api/v2/wallets", query: url.Values{"cursor": {r.str(t, "next_cursor")}}})
	c.invalidProblem("limit", v2Req{method: http.MethodGet, path: "/api/v2/entries", query: url.Values{"limit": {"1001"}}, invalid: true})
	c.invalidProblem("limit", v2Req{method: http.MethodGet, path: "/api/v2/entries", query: url.Values{"limit": {"0"}}, invalid: true})
	assert.Len(t, c.get("/api/v2/entries", url.Values{"limit": {"1000"}}).list(t, "entries"), 8)
	c.invalidProblem("order", v2Req{method: http.MethodGet, path: "/api/v2/entries", query: url.Values{"order": {"sideways"}}, invalid: true})
	c.invalidProblem("since", v2Req{method: http.MethodGet, path: "/api/v2/entries", query: url.Values{"since": {"yesterday"}}, invalid: true})
	c.invalidProblem("nope", v2Req{method: http.MethodGet, path: "/api/v2/entries", query: url.Values{"nope": {"1"}}})
}

func TestV2Batch(t *testing.T) {
	_, c := newV2Env(t)
	c.credit("alice", "10")

	// All or nothing: the second entry overdraws, so none is written.
	p := c.problem("not-enough-funds", v2Req{method: http.MethodPost, path: "/api/v2/entries/batch", json: map[string]any{
		"entries": []any{
			map[string]any{"user_id": "alice", "amount": "-6", "reason": "a"},
			map[string]any{"user_id": "alice", "amount": "-6", "reason": "b"},
		}}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.status)
	assert.Equal(t, json.Number("1"), p.body["index"])
	assert.Equal(t, "4", p.body["balance"], "the first entry of the batch counts")
	assert.Equal(t, "-6", p.body["amount"])
	total, _, _ := c.balance("alice", "")
	assert.Equal(t, "10", total, "nothing written")

	// Every bad entry is listed at once.
	p = c.problem("invalid", v2Req{method: http.MethodPost, path: "/api/v2/entries/batch", invalid: true, json: map[string]any{
		"entries": []any{
			map[string]any{"user_id": "alice", "amount": 5, "reason": "a"},
			map[string]any{"user_id": "alice", "amount": "1", "reason": "ok"},
			map[string]any{"user_id": "alice", "reason": "c"},
		}}})
	errs := p.list(t, "errors")
	require.Len(t, errs, 2)
	assert.Equal(t, "entries[0].amount", errs[0]["field"])
	assert.Equal(t, "entries[2].amount", errs[1]["field"])
	// The ledger's own checks are listed the same way.
	p = c.problem("invalid", v2Req{method: http.MethodPost, path: "/api/v2/entries/batch", json: map[string]any{
		"entries": []any{
			map[string]any{"user_id": "alice", "amount": "1.5", "reason": "a"},
			map[string]any{"user_id": "alice", "amount": "1", "reason": "ok"},
			map[string]any{"user_id": "alice", "amount": "1", "reason": "c", "currency": "EUR", "metadata": map[string]string{"": "x"}},
		}}, invalid: true})
	errs = p.list(t, "errors")
	require.Len(t, errs, 2, "%s", p.raw)
	assert.Equal(t, "entries[0].amount", errs[0]["field"])
	assert.Equal(t, json.Number("2"), errs[1]["index"])

	// With a key, each entry gets KEY#i: a retry replays the whole batch.
	body := map[string]any{"entries": []any{
		map[string]any{"user_id": "alice", "amount": "-3", "reason": "a"},
		map[string]any{"user_id": "bob", "amount": "3", "reason": "b"},
	}}
	first := c.post(http.StatusCreated, "/api/v2/entries/batch", "batch-1", body)
	require.Len(t, first.list(t, "entries"), 2)
	again := c.post(http.StatusCreated, "/api/v2/entries/batch", "batch-1", body)
	assert.Equal(t, first.raw, again.raw)
	one := c.post(http.StatusCreated, "/api/v2/entries", "batch-1#1", map[string]any{"user_id": "bob", "amount": "3", "reason": "b"})
	assert.Equal(t, first.list(t, "entries")[1]["entry_id"], one.body["entry_id"])
	total, _, _ = c.balance("alice", "")
	assert.Equal(t, "7", total)
	c.invalidProblem("entries", v2Req{method: http.MethodPost, path: "/api/v2/entries/batch", json: map[string]any{}, invalid: true})
}

func TestV2TransfersAndReversals(t *testing.T) {
	env, c := newV2Env(t)
	other := env.v2Client(env.newAuthority("arcade"))
	c.credit("alice", "50")
	dep := c.credit("carol", "20")

	tr := c.post(http.StatusCreated, "/api/v2/transfers", "t-1", map[string]any{
		"from_user_id": "alice", "to_user_id": "bob", "amount": "30", "reason": "gift", "metadata": map[string]string{"note": "hi"}})
	tid := tr.str(t, "transfer_id")
	from, to := tr.body["from"].(map[string]any), tr.body["to"].(map[string]any)
	assert.Equal(t, "-30", from["amount"])
	assert.Equal(t, "30", to["amount"])
	assert.Equal(t, tid, to["transfer_id"])
	again := c.post(http.StatusCreated, "/api/v2/transfers", "t-1", map[string]any{
		"from_user_id": "alice", "to_user_id": "bob", "amount": "30", "reason": "gift", "metadata": map[string]string{"note": "hi"}})
	assert.Equal(t, tr.raw, again.raw)
	p := c.problem("not-enough-funds", v2Req{method: http.MethodPost, path: "/api/v2/transfers",
		json: map[string]any{"from_user_id": "alice", "to_user_id": "bob", "amount": "21", "reason": "too much"}})
	assert.Equal(t, "20", p.body["balance"])
	assert.Equal(t, "alice", p.body["user_id"])
	c.invalidProblem("to_user_id", v2Req{method: http.MethodPost, path: "/api/v2/transfers",
		json: map[string]any{"from_user_id": "alice", "to_user_id": "alice", "amount": "1", "reason": "self"}})
	c.invalidProblem("amount", v2Req{method: http.MethodPost, path: "/api/v2/transfers",
		json: map[string]any{"from_user_id": "alice", "to_user_id": "bob", "amount": "-1", "reason": "back"}})

	// Reversing an entry of a transfer reverses both.
	rev := c.post(http.StatusCreated, "/api/v2/entries/"+to["entry_id"].(string)+"/reversal", "r-1", map[string]any{"reason": "undo"})
	es := rev.list(t, "entries")
	require.Len(t, es, 2)
	for _, e := range es {
		assert.NotEmpty(t, e["reverses"])
	}
	total, _, _ := c.balance("alice", "")
	assert.Equal(t, "50", total)
	c.problem("already-reversed", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + to["entry_id"].(string) + "/reversal",
		key: "r-1", json: map[string]any{"reason": "undo"}})
	c.invalidProblem("entry_id", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + es[0]["entry_id"].(string) + "/reversal",
		json: map[string]any{"reason": "undo the undo"}})
	p = other.problem("forbidden", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + dep.str(t, "entry_id") + "/reversal",
		json: map[string]any{"reason": "not mine"}})
	assert.Equal(t, http.StatusForbidden, p.status)
	c.problem("not-found", v2Req{method: http.MethodPost, path: "/api/v2/entries/18edbd2f3979c9dd60dc04ca/reversal",
		json: map[string]any{"reason": "none"}})
	c.invalidProblem("reason", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + dep.str(t, "entry_id") + "/reversal",
		json: map[string]any{}, invalid: true})

	// Reversing a deposit that was spent fails for funds.
	c.post(http.StatusCreated, "/api/v2/entries", "", map[string]any{"user_id": "carol", "amount": "-15", "reason": "spent"})
	p = c.problem("not-enough-funds", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + dep.str(t, "entry_id") + "/reversal",
		json: map[string]any{"reason": "refund"}})
	assert.Equal(t, "5", p.body["balance"])
	assert.Equal(t, "-20", p.body["amount"])
}

func TestV2BalancesLimitsWallets(t *testing.T) {
	env, c := newV2Env(t)
	other := env.v2Client(env.newAuthority("arcade"))
	c.credit("alice", "10")
	before := c.get("/api/v2/entries", nil).list(t, "entries")[0]["created_on"].(string)
	other.credit("alice", "5")
	c.post(http.StatusCreated, "/api/v2/entries", "", map[string]any{"user_id": "alice", "amount": "7", "reason": "eur", "currency": "EUR"})
	c.credit("bob", "1")

	r := c.get("/api/v2/users/alice/balances", nil)
	bs := r.list(t, "balances")
	require.Len(t, bs, 2)
	assert.Equal(t, map[string]any{"user_id": "alice", "currency": "", "total": "15", "held": "0", "available": "15", "floor": "0", "cap": nil}, bs[0])
	assert.Equal(t, "EUR", bs[1]["currency"])
	r = c.get("/api/v2/users/alice/balances", url.Values{"as_of": {before}})
	bs = r.list(t, "balances")
	assert.Equal(t, "10", bs[0]["total"], "as of the first entry")
	assert.Equal(t, "0", bs[1]["total"])
	assert.Equal(t, before, r.body["as_of"])
	one := c.get("/api/v2/users/alice/balances/EUR", nil)
	assert.Equal(t, "7", one.body["total"])
	one = c.get("/api/v2/users/alice/balances/@default", url.Values{"as_of": {before}})
	assert.Equal(t, map[string]any{"user_id": "alice", "currency": "", "total": "10", "as_of": before}, one.body)
	c.invalidProblem("as_of", v2Req{method: http.MethodGet, path: "/api/v2/users/alice/balances", query: url.Values{"as_of": {"noon"}}, invalid: true})
	c.invalidProblem("currency", v2Req{method: http.MethodGet, path: "/api/v2/users/alice/balances/E%20R", invalid: true})

	// Limits: a cap refuses a deposit above it, a floor below zero is a
	// credit line.
	l := c.ok(http.StatusOK, v2Req{method: http.MethodPut, path: "/api/v2/users/alice/limits/@default", key: "lim-1",
		json: map[string]any{"floor": "-5", "cap": "20"}})
	assert.Equal(t, map[string]any{"user_id": "alice", "currency": "", "floor": "-5", "cap": "20"}, l.body)
	assert.Equal(t, l.raw, c.get("/api/v2/users/alice/limits/@default", nil).raw)
	p := c.problem("cap-exceeded", v2Req{method: http.MethodPost, path: "/api/v2/entries", json: map[string]any{"user_id": "alice", "amount": "6", "reason": "x"}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.status)
	for k, v := range map[string]string{"user_id": "alice", "currency": "", "total": "15", "amount": "6", "cap": "20"} {
		assert.Equal(t, v, p.body[k], k)
	}
	c.post(http.StatusCreated, "/api/v2/entries", "", map[string]any{"user_id": "alice", "amount": "-20", "reason": "on credit"})
	p = c.problem("not-enough-funds", v2Req{method: http.MethodPost, path: "/api/v2/entries", json: map[string]any{"user_id": "alice", "amount": "-1", "reason": "x"}})
	assert.Equal(t, "-5", p.body["floor"])
	assert.Equal(t, "-5", p.body["balance"])
	l = c.ok(http.StatusOK, v2Req{method: http.MethodPut, path: "/api/v2/users/alice/limits/@default", json: map[string]any{"cap": nil}})
	assert.Equal(t, map[string]any{"user_id": "alice", "currency": "", "floor": "0", "cap": nil}, l.body)
	c.invalidProblem("floor", v2Req{method: http.MethodPut, path: "/api/v2/users/alice/limits/EUR", json: map[string]any{"floor": "1"}})
	c.invalidProblem("cap", v2Req{method: http.MethodPut, path: "/api/v2/users/alice/limits/EUR", json: map[string]any{"cap": 3}, invalid: true})

	// Wallets: one currency, counted authorities, as of, paged.
	w := c.get("/api/v2/wallets", nil).list(t, "wallets")
	assert.Equal(t, []map[string]any{{"user_id": "alice", "currency": "", "total": "-5"}, {"user_id": "bob", "currency": "", "total": "1"}}, w)
	w = c.get("/api/v2/wallets", url.Values{"currency": {"EUR"}}).list(t, "wallets")
	assert.Equal(t, []map[string]any{{"user_id": "alice", "currency": "EUR", "total": "7"}}, w)
	w = c.get("/api/v2/wallets", url.Values{"authority_ids": {other.id}}).list(t, "wallets")
	assert.Equal(t, []map[string]any{{"user_id": "alice", "currency": "", "total": "5"}}, w)
	w = c.get("/api/v2/wallets", url.Values{"as_of": {before}}).list(t, "wallets")
	assert.Equal(t, []map[string]any{{"user_id": "alice", "currency": "", "total": "10"}}, w)
	w = c.get("/api/v2/wallets", url.Values{"user_ids": {"bob,zed"}}).list(t, "wallets")
	assert.Equal(t, []string{"bob", "zed"}, ids(w, "user_id"))
	page := c.get("/api/v2/wallets", url.Values{"limit": {"1"}})
	assert.Equal(t, []string{"alice"}, ids(page.list(t, "wallets"), "user_id"))
	page = c.get("/api/v2/wallets", url.Values{"limit": {"1"}, "cursor": {page.str(t, "next_cursor")}})
	assert.Equal(t, []string{"bob"}, ids(page.list(t, "wallets"), "user_id"))
	assert.Nil(t, page.body["next_cursor"])
}

func TestV2Holds(t *testing.T) {
	env, c := newV2Env(t)
	other := env.v2Client(env.newAuthority("arcade"))
	c.credit("alice", "100")

	h := c.post(http.StatusCreated, "/api/v2/holds", "h-1", map[string]any{
		"user_id": "alice", "amount": "60", "reason": "order 1", "metadata": map[string]string{"order": "1"},
		"expires": time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)})
	hid := h.str(t, "hold_id")
	assert.Equal(t, "/api/v2/holds/"+hid, h.header.Get("Location"))
	assert.Equal(t, "active", h.body["state"])
	again := c.post(http.StatusCreated, "/api/v2/holds", "h-1", map[string]any{
		"user_id": "alice", "amount": "60", "reason": "order 1", "metadata": map[string]string{"order": "1"},
		"expires": h.str(t, "expires")})
	assert.Equal(t, hid, again.body["hold_id"])
	p := c.problem("idempotency-conflict", v2Req{method: http.MethodPost, path: "/api/v2/holds", key: "h-1",
		json: map[string]any{"user_id": "alice", "amount": "61", "reason": "order 1"}})
	assert.Equal(t, hid, p.body["hold_id"])

	total, held, avail := c.balance("alice", "")
	assert.Equal(t, []string{"100", "60", "40"}, []string{total, held, avail})
	p = c.problem("not-enough-funds", v2Req{method: http.MethodPost, path: "/api/v2/entries", json: map[string]any{"user_id": "alice", "amount": "-41", "reason": "x"}})
	assert.Equal(t, "60", p.body["held"])
	c.problem("not-enough-funds", v2Req{method: http.MethodPost, path: "/api/v2/holds", json: map[string]any{"user_id": "alice", "amount": "41", "reason": "x"}})

	assert.Equal(t, h.raw, c.get("/api/v2/holds/"+hid, nil).raw)
	c.problem("not-found", v2Req{method: http.MethodGet, path: "/api/v2/holds/" + hid, query: url.Values{"currency": {"EUR"}}})

	h2 := c.post(http.StatusCreated, "/api/v2/holds", "", map[string]any{"user_id": "alice", "amount": "10", "reason": "order 2"})
	eur := c.post(http.StatusCreated, "/api/v2/entries", "", map[string]any{"user_id": "alice", "amount": "5", "reason": "eur", "currency": "EUR"})
	_ = eur
	h3 := c.post(http.StatusCreated, "/api/v2/holds", "", map[string]any{"user_id": "alice", "amount": "5", "reason": "eur", "currency": "EUR"})
	assert.Equal(t, h3.raw, c.get("/api/v2/holds/"+h3.str(t, "hold_id"), url.Values{"currency": {"EUR"}}).raw)

	// Capture part of the first: the rest is released.
	p = other.problem("forbidden", v2Req{method: http.MethodPost, path: "/api/v2/holds/" + hid + "/capture"})
	c.invalidProblem("amount", v2Req{method: http.MethodPost, path: "/api/v2/holds/" + hid + "/capture", json: map[string]any{"amount": "61"}})
	capt := c.post(http.StatusCreated, "/api/v2/holds/"+hid+"/capture", "cap-1", map[string]any{"amount": "45", "item": map[string]any{"name": "Ticket"}})
	assert.Equal(t, "-45", capt.body["amount"])
	assert.Equal(t, hid, capt.body["hold_id"])
	assert.Equal(t, "order 1", capt.body["reason"])
	assert.Equal(t, map[string]any{"order": "1"}, capt.body["metadata"])
	total, held, avail = c.balance("alice", "")
	assert.Equal(t, []string{"55", "10", "45"}, []string{total, held, avail})
	p = c.problem("hold-closed", v2Req{method: http.MethodPost, path: "/api/v2/holds/" + hid + "/capture", key: "cap-1", json: map[string]any{"amount": "45"}})
	assert.Equal(t, map[string]any{"hold_id": hid, "state": "captured"}, map[string]any{"hold_id": p.body["hold_id"], "state": p.body["state"]})
	c.problem("hold-closed", v2Req{method: http.MethodPost, path: "/api/v2/holds/" + hid + "/release"})

	// Release the second, with no body at all.
	rel := c.post(http.StatusOK, "/api/v2/holds/"+h2.str(t, "hold_id")+"/release", "rel-1", nil)
	assert.Equal(t, "released", rel.body["state"])
	assert.NotEmpty(t, rel.body["closed_on"])
	p = c.problem("hold-closed", v2Req{method: http.MethodPost, path: "/api/v2/holds/" + h2.str(t, "hold_id") + "/release", key: "rel-1"})
	assert.Equal(t, "released", p.body["state"])
	c.problem("not-found", v2Req{method: http.MethodPost, path: "/api/v2/holds/18edbd2f3979c9dd60dc04ca/release"})

	// Lists.
	all := c.get("/api/v2/holds", nil).list(t, "holds")
	assert.Equal(t, []string{hid, h2.str(t, "hold_id")}, ids(all, "hold_id"))
	assert.Equal(t, []string{"captured", "released"}, ids(all, "state"))
	rel2 := c.get("/api/v2/holds", url.Values{"states": {"released,expired"}}).list(t, "holds")
	assert.Equal(t, []string{h2.str(t, "hold_id")}, ids(rel2, "hold_id"))
	assert.Len(t, c.get("/api/v2/holds", url.Values{"currency": {"EUR"}, "states": {"active"}, "user_ids": {"alice"}}).list(t, "holds"), 1)
	page := c.get("/api/v2/holds", url.Values{"limit": {"1"}})
	page = c.get("/api/v2/holds", url.Values{"limit": {"1"}, "cursor": {page.str(t, "next_cursor")}})
	assert.Equal(t, []string{h2.str(t, "hold_id")}, ids(page.list(t, "holds"), "hold_id"))
	c.invalidProblem("states", v2Req{method: http.MethodGet, path: "/api/v2/holds", query: url.Values{"states": {"open"}}, invalid: true})

	c.invalidProblem("expires", v2Req{method: http.MethodPost, path: "/api/v2/holds",
		json: map[string]any{"user_id": "alice", "amount": "1", "reason": "past", "expires": "2001-01-01T00:00:00Z"}})
	c.invalidProblem("amount", v2Req{method: http.MethodPost, path: "/api/v2/holds",
		json: map[string]any{"user_id": "alice", "amount": "0", "reason": "zero"}})
}

func TestV2Items(t *testing.T) {
	env, c := newV2Env(t)
	other := env.v2Client(env.newAuthority("arcade"))
	c.credit("alice", "10")
	grant := func(user, name string) string {
		return c.post(http.StatusCreated, "/api/v2/entries", "", map[string]any{"user_id": user, "amount": "-1", "reason": "buy",
			"item": map[string]any{"name": name, "data": []int{1}}}).str(t, "entry_id")
	}
	soda, chips, gum := grant("alice", "Soda"), grant("alice", "Chips"), grant("alice", "Gum")
	plain := c.credit("alice", "1").str(t, "entry_id")

	inv := c.get("/api/v2/inventory", url.Values{"user_ids": {"alice"}})
	assert.Equal(t, []string{soda, chips, gum}, ids(inv.list(t, "items"), "entry_id"))

	// The owner check: another user's entry is not found.
	c.problem("not-found", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + soda + "/item/use", json: map[string]any{"user_id": "bob"}})
	used := c.post(http.StatusOK, "/api/v2/entries/"+soda+"/item/use", "use-1", map[string]any{"user_id": "alice"})
	item := used.body["item"].(map[string]any)
	assert.Equal(t, true, item["used"])
	assert.Equal(t, c.id, item["used_by"])
	assert.NotEmpty(t, item["used_on"])
	again := c.post(http.StatusOK, "/api/v2/entries/"+soda+"/item/use", "use-1", map[string]any{"user_id": "alice"})
	assert.Equal(t, used.raw, again.raw, "a retry with the key replays the use")
	c.problem("item-used", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + soda + "/item/use"})
	other.problem("item-used", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + soda + "/item/use", key: "use-1"})
	c.problem("no-item", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + plain + "/item/use"})
	c.problem("item-used", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + soda + "/reversal", json: map[string]any{"reason": "refund"}})

	// A reversed entry's unused item is revoked.
	c.post(http.StatusCreated, "/api/v2/entries/"+chips+"/reversal", "", map[string]any{"reason": "refund"})
	c.problem("item-revoked", v2Req{method: http.MethodPost, path: "/api/v2/entries/" + chips + "/item/use"})

	assert.Equal(t, []string{gum}, ids(c.get("/api/v2/inventory", nil).list(t, "items"), "entry_id"))
	assert.Equal(t, []string{soda}, ids(c.get("/api/v2/inventory", url.Values{"used": {"true"}}).list(t, "items"), "entry_id"))
	anyItems := c.get("/api/v2/inventory", url.Values{"used": {"any"}, "limit": {"2"}})
	assert.Equal(t, []string{soda, chips}, ids(anyItems.list(t, "items"), "entry_id"))
	assert.Equal(t, true, anyItems.list(t, "items")[1]["item"].(map[string]any)["revoked"])
	rest := c.get("/api/v2/inventory", url.Values{"used": {"any"}, "limit": {"2"}, "cursor": {anyItems.str(t, "next_cursor")}})
	assert.Equal(t, []string{gum}, ids(rest.list(t, "items"), "entry_id"))
	c.invalidProblem("used", v2Req{method: http.MethodGet, path: "/api/v2/inventory", query: url.Values{"used": {"maybe"}}, invalid: true})
}

func TestV2Changes(t *testing.T) {
	_, c := newV2Env(t)
	e := c.credit("alice", "10")
	c.post(http.StatusCreated, "/api/v2/holds", "", map[string]any{"user_id": "alice", "amount": "4", "reason": "hold"})
	c.ok(http.StatusOK, v2Req{method: http.MethodPut, path: "/api/v2/users/alice/limits/@default", json: map[string]any{"cap": "100"}})

	evs := c.stream(v2Req{method: http.MethodGet, path: "/api/v2/changes"}, 3)
	require.Len(t, evs, 3)
	assert.Equal(t, []string{"entry", "hold_placed", "limits"}, []string{evs[0].event, evs[1].event, evs[2].event})
	assert.Contains(t, evs[0].data, `"entry_id":"`+e.str(t, "entry_id")+`"`)

	// Resumable: after the cursor parameter, or Last-Event-ID, which wins.
	rest := c.stream(v2Req{method: http.MethodGet, path: "/api/v2/changes", query: url.Values{"cursor": {evs[0].id}}}, 2)
	assert.Equal(t, evs[1:], rest)
	rest = c.stream(v2Req{method: http.MethodGet, path: "/api/v2/changes", query: url.Values{"cursor": {evs[0].id}},
		header: http.Header{"Last-Event-ID": {evs[1].id}}}, 1)
	assert.Equal(t, evs[2:], rest)
	// A change made while the stream is open arrives.
	live := c.openStream(v2Req{method: http.MethodGet, path: "/api/v2/changes", query: url.Values{"cursor": {evs[2].id}}})
	c.credit("bob", "1")
	ev := live.next(1)
	live.close()
	assert.Equal(t, "entry", ev[0].event)
	assert.Contains(t, ev[0].data, `"user_id":"bob"`)

	c.invalidProblem("cursor", v2Req{method: http.MethodGet, path: "/api/v2/changes", query: url.Values{"cursor": {"not a cursor"}}})
	c.invalidProblem("Last-Event-ID", v2Req{method: http.MethodGet, path: "/api/v2/changes", header: http.Header{"Last-Event-ID": {"zz!"}}})
	c.invalidProblem("after", v2Req{method: http.MethodGet, path: "/api/v2/changes", query: url.Values{"after": {evs[0].id}}})
}
