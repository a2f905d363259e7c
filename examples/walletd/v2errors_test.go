package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// TestV2ProblemTypes checks the problem types the server knows against
// those the document lists, with their statuses and titles.
func TestV2ProblemTypes(t *testing.T) {
	spec, err := loadV2Spec()
	require.NoError(t, err)
	var doc struct {
		Types []struct {
			Type   string `json:"type"`
			Status int    `json:"status"`
			Title  string `json:"title"`
		} `json:"x-problem-types"`
	}
	require.NoError(t, json.Unmarshal(openAPIDocument, &doc))
	var got, want []string
	for _, k := range problemKinds {
		got = append(got, fmt.Sprintf("%s %d %s", problemBase+k.slug, k.status, k.title))
	}
	for _, k := range doc.Types {
		want = append(want, fmt.Sprintf("%s %d %s", k.Type, k.Status, k.Title))
	}
	assert.Equal(t, want, got)
	var enum []string
	for _, v := range spec.doc.Components.Schemas["Problem"].Value.Properties["type"].Value.Enum {
		enum = append(enum, v.(string))
	}
	for _, k := range problemKinds {
		assert.Contains(t, enum, problemBase+k.slug)
	}
	assert.Len(t, enum, len(problemKinds))
}

// TestV2SentinelsCovered checks that every sentinel error of the ledger
// (the Err variables of errors.go) has its problem type.
func TestV2SentinelsCovered(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(moduleRoot(t), "errors.go"), nil, 0)
	require.NoError(t, err)
	src, err := os.ReadFile("v2problem.go")
	require.NoError(t, err)
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, s := range g.Specs {
			for _, name := range s.(*ast.ValueSpec).Names {
				if strings.HasPrefix(name.Name, "Err") {
					n++
					assert.Contains(t, string(src), "{ledger."+name.Name+", prob", "no problem type for ledger.%s", name.Name)
				}
			}
		}
	}
	assert.Equal(t, n, len(sentinelProblems), "sentinelProblems has one row per sentinel")
	assert.Greater(t, n, 10)
}

// TestV2ProblemOfEveryError turns one error of every kind the ledger and
// walletd return into its problem, and checks it against the document's
// Problem schema: its type, status and extension members. The errors no
// route can provoke over HTTP on demand (an import's not-empty, a
// verification's inconsistent, an unknown outcome, a body read timing
// out) are covered here; TestV2ErrorsOverHTTP provokes the rest.
func TestV2ProblemOfEveryError(t *testing.T) {
	spec, err := loadV2Spec()
	require.NoError(t, err)
	schema := spec.doc.Components.Schemas["Problem"].Value
	d := decimal.RequireFromString
	tests := []struct {
		name string
		err  error
		slug string
		ext  map[string]any
	}{
		{"invalid", &ledger.InvalidError{Field: "FromUserID", Problem: "empty"}, "invalid",
			map[string]any{"field": "from_user_id", "problem": "empty"}},
		{"batch invalid", ledger.EntryErrors{{Index: 2, Err: &ledger.InvalidError{Field: "Amount", Problem: "too precise"}}}, "invalid",
			map[string]any{"errors": []any{map[string]any{"index": 2.0, "field": "entries[2].amount", "problem": "too precise"}}}},
		{"walletd invalid", invalidField("limit", "too big"), "invalid", map[string]any{"field": "limit", "problem": "too big"}},
		{"not enough funds", &ledger.EntryError{Index: 3, Err: &ledger.NotEnoughFundsError{UserID: "u", Currency: "EUR",
			Balance: d("10"), Amount: d("-12.5"), Floor: d("-1"), Held: d("2")}}, "not-enough-funds",
			map[string]any{"index": 3.0, "user_id": "u", "currency": "EUR", "balance": "10", "amount": "-12.5", "floor": "-1", "held": "2"}},
		{"cap exceeded", &ledger.CapExceededError{UserID: "u", Total: d("5"), Amount: d("6"), Cap: d("10")}, "cap-exceeded",
			map[string]any{"user_id": "u", "currency": "", "total": "5", "amount": "6", "cap": "10"}},
		{"idempotency conflict", &ledger.IdempotencyConflictError{AuthorityID: "a", Key: "k", HoldID: "h", Fields: []string{"Amount", "Item.Data"}},
			"idempotency-conflict", map[string]any{"idempotency_key": "k", "hold_id": "h", "fields": []any{"amount", "item.data"}}},
		{"hold closed", &ledger.HoldClosedError{HoldID: "h", State: ledger.HoldExpired}, "hold-closed",
			map[string]any{"hold_id": "h", "state": "expired"}},
		{"not found", fmt.Errorf("use: %w", ledger.ErrNotFound), "not-found", nil},
		{"no item", ledger.ErrNoItem, "no-item", nil},
		{"item used", ledger.ErrItemUsed, "item-used", nil},
		{"item revoked", ledger.ErrItemRevoked, "item-revoked", nil},
		{"forbidden", ledger.ErrForbidden, "forbidden", nil},
		{"already reversed", ledger.ErrAlreadyReversed, "already-reversed", nil},
		{"closed", ledger.ErrClosed, "unavailable", nil},
		{"not empty", ledger.ErrNotEmpty, "not-empty", nil},
		{"unknown outcome", fmt.Errorf("%w: %w", ledger.ErrUnknownOutcome, context.DeadlineExceeded), "unknown-outcome", nil},
		{"inconsistent", &ledger.VerifyError{Problems: []string{"x"}}, "inconsistent", nil},
		{"body timeout", readError(os.ErrDeadlineExceeded), "request-timeout", nil},
		{"body too large", readErrorV2(&http.MaxBytesError{Limit: 10}), "too-large", nil},
		{"store failure", errors.New("disk on fire"), "internal", nil},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := problemFor(tt.err)
			rec := httptest.NewRecorder()
			writeProblem(rec, httptest.NewRequest(http.MethodGet, "/api/v2/x", nil), p)
			require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
			var v map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &v))
			require.NoError(t, schema.VisitJSON(v, openapi3.EnableJSONSchema2020()), "%s", rec.Body)
			assert.Equal(t, problemBase+tt.slug, v["type"])
			assert.Equal(t, float64(rec.Code), v["status"])
			assert.Equal(t, "/api/v2/x", v["instance"])
			for k, want := range tt.ext {
				assert.Equal(t, want, v[k], k)
			}
			assert.NotContains(t, v["detail"], "ledger:")
			seen[tt.slug] = true
		})
	}
	for _, k := range problemKinds {
		switch k {
		case probUnauthorized, probMethodNotAllowed: // answered by the routes, not problemFor
		default:
			assert.True(t, seen[k.slug], "no test of %s", k.slug)
		}
	}
}

// TestV2ErrorsOverHTTP provokes the problems that a request can, through
// the validating client.
func TestV2ErrorsOverHTTP(t *testing.T) {
	store := newFaultyStore()
	env := newTestEnv(t, envOptions{store: store})
	c := env.v2Client(env.newAuthority("shop"))
	c.credit("alice", "5")
	post := func(raw string) v2Req {
		return v2Req{method: http.MethodPost, path: "/api/v2/entries", raw: []byte(raw), invalid: true}
	}
	// The validator decodes the first JSON value and stops.
	c.invalidProblem("body", v2Req{method: http.MethodPost, path: "/api/v2/entries", raw: []byte(`{"user_id":"alice","amount":"1","reason":"r"} {}`)})

	p := c.problem("unauthorized", v2Req{method: http.MethodGet, path: "/api/v2/wallets", noAuth: true, invalid: true})
	assert.Equal(t, http.StatusUnauthorized, p.status)
	assert.Equal(t, "Bearer", p.header.Get("WWW-Authenticate"))
	p = c.problem("forbidden", v2Req{method: http.MethodGet, path: "/api/v2/wallets", auth: "Bearer not.a.token"})
	assert.Equal(t, http.StatusForbidden, p.status)
	p = c.problem("not-found", v2Req{method: http.MethodGet, path: "/api/v2/nothing", invalid: true})
	assert.Equal(t, http.StatusNotFound, p.status)
	p = c.problem("method-not-allowed", v2Req{method: http.MethodDelete, path: "/api/v2/entries", invalid: true})
	assert.Equal(t, "POST, GET, HEAD", p.header.Get("Allow"))
	p = c.problem("method-not-allowed", v2Req{method: http.MethodPost, path: "/api/v2/wallets", invalid: true})
	assert.Equal(t, "GET, HEAD", p.header.Get("Allow"))
	big := `{"user_id":"alice","amount":"1","reason":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	p = c.problem("too-large", v2Req{method: http.MethodPost, path: "/api/v2/entries", raw: []byte(big), invalid: true})
	assert.Equal(t, http.StatusRequestEntityTooLarge, p.status)

	// Bad input names the field, and writes nothing.
	for _, tt := range []struct {
		name, body, field string
	}{
		{"amount a number", `{"user_id":"alice","amount":-1,"reason":"r"}`, "amount"},
		{"amount with exponent", `{"user_id":"alice","amount":"1e3","reason":"r"}`, "amount"},
		{"amount with plus", `{"user_id":"alice","amount":"+1","reason":"r"}`, "amount"},
		{"user_id a number", `{"user_id":7,"amount":"1","reason":"r"}`, "user_id"},
		{"item name a number", `{"user_id":"alice","amount":"1","reason":"r","item":{"name":1}}`, "item.name"},
		{"item without name", `{"user_id":"alice","amount":"1","reason":"r","item":{}}`, "item.name"},
		{"metadata not strings", `{"user_id":"alice","amount":"1","reason":"r","metadata":{"a":1}}`, "metadata"},
		{"unknown member", `{"user_id":"alice","amount":"1","reason":"r","colour":"red"}`, "colour"},
		{"member in other case", `{"USER_ID":"alice","amount":"1","reason":"r"}`, "USER_ID"},
		{"authority_id", `{"authority_id":"other","user_id":"alice","amount":"1","reason":"r"}`, "authority_id"},
		{"missing reason", `{"user_id":"alice","amount":"1"}`, "reason"},
		{"not JSON", `{"user_id":`, "body"},
		{"not an object", `["alice"]`, "body"},
		{"empty", ``, "body"},
	} {
		t.Run(tt.name, func(t *testing.T) { c.with(t).invalidProblem(tt.field, post(tt.body)) })
	}
	// What the document cannot say, the server still refuses.
	c.invalidProblem("amount", v2Req{method: http.MethodPost, path: "/api/v2/entries", raw: []byte(`{"user_id":"alice","amount":"1","amount":"2","reason":"r"}`)})
	c.invalidProblem("user_id", v2Req{method: http.MethodPost, path: "/api/v2/entries", json: map[string]any{"user_id": "", "amount": "1", "reason": "r"}, invalid: true})
	c.invalidProblem("amount", v2Req{method: http.MethodPost, path: "/api/v2/entries", json: map[string]any{"user_id": "alice", "amount": "0.5", "reason": "r"}})
	c.invalidProblem("Idempotency-Key", v2Req{method: http.MethodPost, path: "/api/v2/entries", key: strings.Repeat("k", 201),
		json: map[string]any{"user_id": "alice", "amount": "1", "reason": "r"}, invalid: true})
	c.invalidProblem("Idempotency-Key", v2Req{method: http.MethodPost, path: "/api/v2/entries", header: http.Header{"Idempotency-Key": {"a", "b"}},
		json: map[string]any{"user_id": "alice", "amount": "1", "reason": "r"}})
	c.invalidProblem("user_id", v2Req{method: http.MethodGet, path: "/api/v2/users/" + strings.Repeat("u", 257) + "/balances", invalid: true})
	total, _, _ := c.balance("alice", "")
	assert.Equal(t, "5", total, "nothing written")
	assert.Len(t, c.get("/api/v2/entries", nil).list(t, "entries"), 1)

	// A store that fails is a 500; health says 503.
	store.failView.Store(true)
	p = c.problem("internal", v2Req{method: http.MethodGet, path: "/api/v2/entries"})
	assert.Equal(t, http.StatusInternalServerError, p.status)
	assert.NotContains(t, string(p.raw), errInjected.Error(), "the cause stays in the log")
	store.failView.Store(false)
	store.failPing.Store(true)
	p = c.problem("unavailable", v2Req{method: http.MethodGet, path: "/api/v2/health", noAuth: true})
	assert.Equal(t, http.StatusServiceUnavailable, p.status)
	store.failPing.Store(false)

	// A closed ledger is unavailable.
	require.NoError(t, env.srv.ledger.Close())
	p = c.problem("unavailable", v2Req{method: http.MethodPost, path: "/api/v2/entries", json: map[string]any{"user_id": "alice", "amount": "1", "reason": "r"}})
	assert.Equal(t, http.StatusServiceUnavailable, p.status)
}
