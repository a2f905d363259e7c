package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInvalidUTF8 (issue 10, item 15): a body whose JSON holds invalid
// UTF-8 or an unpaired UTF-16 surrogate escape, in any string, is refused
// with 400 and writes nothing. encoding/json alone would turn both into
// U+FFFD, so that different inputs became the same user, and would store
// raw invalid bytes in item data.
func TestInvalidUTF8(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	entry := func(userID, reason, item string) string {
		return `{"user_id": "` + userID + `", "amount": 1, "reason": "` + reason + `", "item": ` + item + `}`
	}
	const notUTF8, unpaired = "invalid request body: not valid UTF-8", "invalid request body: unpaired UTF-16 surrogate "
	for _, tc := range []struct {
		name, body string
		bad        string // the first bad bytes in body
		wantMsg    string // the message, without its " (byte N)"
	}{
		{"invalid byte in user_id", entry("u\xff", "r", "null"), "\xff", notUTF8},
		{"invalid byte in reason", entry("u", "r\xc3", "null"), "\xc3", notUTF8},
		{"overlong encoding", entry("\xc0\xaf", "r", "null"), "\xc0", notUTF8},
		{"surrogate encoded as UTF-8", entry("\xed\xa0\x80", "r", "null"), "\xed", notUTF8},
		{"invalid byte in item name", entry("u", "r", "{\"name\": \"n\x80\"}"), "\x80", notUTF8},
		{"invalid byte in item data", entry("u", "r", "{\"name\": \"n\", \"data\": {\"k\": [\"\xfe\"]}}"), "\xfe", notUTF8},
		{"invalid byte in a data key", entry("u", "r", "{\"name\": \"n\", \"data\": {\"\xfe\": 1}}"), "\xfe", notUTF8},
		{"lone high surrogate in user_id", entry(`\ud800`, "r", "null"), `\ud800`, unpaired + `\ud800`},
		{"lone low surrogate in reason", entry("u", `x\uDC00`, "null"), `\uDC00`, unpaired + `\uDC00`},
		{"high surrogate then a letter", entry(`\ud83dA`, "r", "null"), `\ud83d`, unpaired + `\ud83d`},
		{"high surrogate then an escaped letter", entry(`\ud83d\u0041`, "r", "null"), `\ud83d`, unpaired + `\ud83d`},
		{"two high surrogates", entry(`\ud83d\ud83d`, "r", "null"), `\ud83d`, unpaired + `\ud83d`},
		{"high surrogate at the end of a string", entry("u", "r", `{"name": "\ud83d"}`), `\ud83d`, unpaired + `\ud83d`},
		{"lone surrogate in item data", entry("u", "r", `{"name": "n", "data": ["ok", "\udfff"]}`), `\udfff`, unpaired + `\udfff`},
		{"lone surrogate after an escaped backslash", entry("u", `\\\ud800`, "null"), `\ud800`, unpaired + `\ud800`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := strings.Index(tc.body, tc.bad)
			require.GreaterOrEqual(t, at, 0)
			r := c.do(http.MethodPost, "/entry", nil, []byte(tc.body))
			requireError(t, r, http.StatusBadRequest, fmt.Sprintf("%s (byte %d)", tc.wantMsg, at))
		})
	}
	for _, tc := range []struct{ name, path, query string }{
		{"invalid byte in user_ids", "/wallet", "user_ids=u%FF&authority_ids="},
		{"invalid byte in entry_ids", "/entry/inventory", "entry_ids=%C3&user_ids="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireError(t, c.do(http.MethodGet, tc.path+"?"+tc.query, nil, nil), http.StatusBadRequest, "")
		})
	}
	// Nothing was written.
	assert.Empty(t, requireWallets(t, c.getWallets(nil, nil)))
	assert.Empty(t, requireInventory(t, c.getInventory(nil, nil, nil, nil)))

	// What is valid still passes, byte for byte: a surrogate pair, an
	// escaped backslash before a u, and UTF-8 beyond ASCII.
	for _, data := range []string{`"\ud83d\ude00"`, `"\\ud800"`, `"caf\u00e9 \u2603 ` + "é☃😀" + `"`} {
		r := c.do(http.MethodPost, "/entry", nil, []byte(entry("u", `\ud83d\ude00`, `{"name": "n", "data": `+data+`}`)))
		require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
		assert.Equal(t, "😀", requireEntry(t, r.body["entry"], true)["reason"])
		assert.True(t, strings.Contains(string(r.raw), `"data":`+data+`}`), "data %s comes back as sent: %s", data, r.raw)
	}
	assert.Equal(t, map[string]int64{"u": 3}, requireWallets(t, c.getWallets([]string{"u"}, nil)))
}

// TestDeepItemData (issue 10, item 14): item data nested deeper than the
// ledger's Limits.MaxDataDepth (64 by default) is refused with 400 and
// stored nowhere; Python's json, and so every SDK client's inventory
// listing, fails near 1,000 levels. Data at the limit is accepted. The
// limit is the ledger's rule: walletd only answers its ErrInvalid.
func TestDeepItemData(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	nested := func(depth int) string {
		return strings.Repeat(`[`, depth) + strings.Repeat(`]`, depth)
	}
	post := func(data string) resp {
		return c.do(http.MethodPost, "/entry", nil, []byte(`{"user_id": "u", "amount": 1, "reason": "r", "item": {"name": "n", "data": `+data+`}}`))
	}
	for _, depth := range []int{65, 1000, 9000} {
		r := post(nested(depth))
		requireError(t, r, http.StatusBadRequest, "")
		assert.Contains(t, r.body["error"], "item.data", "the message names the field")
	}
	r := post(`{"k": ` + nested(1000) + `}`)
	requireError(t, r, http.StatusBadRequest, "")
	assert.Empty(t, requireWallets(t, c.getWallets(nil, nil)), "nothing stored")
	assert.Empty(t, requireInventory(t, c.getInventory(nil, nil, nil, nil)), "nothing stored")

	r = post(nested(64))
	require.Equal(t, http.StatusOK, r.status, "data at the limit: body %s", r.raw)
	assert.Len(t, requireInventory(t, c.getInventory(nil, nil, nil, nil)), 1)
}
