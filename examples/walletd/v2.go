package main

// API v2: every capability of the ledger over HTTP, described by
// openapi.json (served at GET /api/v2/openapi.json). README.md has the
// tour; the conventions, in short:
//
//   - Resources are plural nouns under /api/v2 (entries, transfers,
//     holds, wallets, inventory, changes, users/{user_id}/balances,
//     users/{user_id}/limits); a one-time action on a resource is a POST
//     to a sub-resource named by a noun: entries/{id}/reversal,
//     holds/{id}/capture, holds/{id}/release, entries/{id}/item/use.
//   - JSON members are snake_case; amounts are decimal strings, times
//     RFC 3339 with nanoseconds (see v2wire.go).
//   - Every write takes an Idempotency-Key header.
//   - Lists answer {"<name>": [...], "next_cursor": "..." | null} and
//     take limit (1 to 1000, default 100) and cursor.
//   - Errors are application/problem+json (see v2problem.go).
//   - The authority is the token's, as in v1; a body never names it.
//
// This file holds the routes and what the handlers share; the handlers
// are in v2entries.go, v2wallets.go and v2holds.go, the wire format in
// v2wire.go.

import (
	_ "embed"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// apiVersionV2 is what GET /api/v2/health reports, and the version of
// the OpenAPI document.
const apiVersionV2 = "2.0.0"

// defaultCurrencySegment stands for the default currency ("") in a path,
// where a segment cannot be empty. '@' is not allowed in a currency
// name, so no currency is spelled the same.
const defaultCurrencySegment = "@default"

// openAPIDocument is the OpenAPI 3.1 description of API v2.
//
//go:embed openapi.json
var openAPIDocument []byte

// v2Handler serves a v2 request on behalf of the authority authorityID
// ("" for the routes that need no token). It writes a successful answer
// itself and returns the error that fails the request, which the caller
// answers as a problem.
type v2Handler func(w http.ResponseWriter, r *http.Request, authorityID string) error

// routesV2 adds the routes of API v2 to mux. Each path has one handler
// that picks the method's, so that a path with another method gets a 405
// problem with an Allow header; HEAD is served as GET.
func (s *server) routesV2(mux *http.ServeMux) {
	type route struct {
		method string
		h      http.HandlerFunc
	}
	var paths []string
	routes := map[string][]route{}
	add := func(method, path string, h http.HandlerFunc) {
		if _, ok := routes[path]; !ok {
			paths = append(paths, path)
		}
		routes[path] = append(routes[path], route{method, h})
	}
	public := func(h v2Handler) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r, ""); err != nil {
				s.failV2(w, r, err)
			}
		}
	}
	authed := func(h v2Handler) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id, err := s.authenticate(r)
			if err != nil {
				p := problem{kind: probForbidden, detail: "the token does not verify"}
				if errors.Is(err, errMissingAuth) {
					p = problem{kind: probUnauthorized, detail: "authorization data required: an ES256 authority token"}
					w.Header().Set("WWW-Authenticate", "Bearer")
				}
				writeProblem(w, r, p)
				return
			}
			if err := h(w, r, id); err != nil {
				s.failV2(w, r, err)
			}
		}
	}
	const p = "/api/v2"
	add(http.MethodGet, p+"/health", public(s.v2Health))
	add(http.MethodGet, p+"/openapi.json", public(s.v2OpenAPI))
	add(http.MethodPost, p+"/entries", authed(s.v2CreateEntry))
	add(http.MethodGet, p+"/entries", authed(s.v2ListEntries))
	add(http.MethodPost, p+"/entries/batch", authed(s.v2CreateBatch))
	add(http.MethodGet, p+"/entries/{entry_id}", authed(s.v2GetEntry))
	add(http.MethodPost, p+"/entries/{entry_id}/reversal", authed(s.v2Reverse))
	add(http.MethodPost, p+"/entries/{entry_id}/item/use", authed(s.v2UseItem))
	add(http.MethodPost, p+"/transfers", authed(s.v2Transfer))
	add(http.MethodGet, p+"/wallets", authed(s.v2Wallets))
	add(http.MethodGet, p+"/users/{user_id}/balances", authed(s.v2Balances))
	add(http.MethodGet, p+"/users/{user_id}/balances/{currency}", authed(s.v2Balance))
	add(http.MethodGet, p+"/users/{user_id}/limits/{currency}", authed(s.v2GetLimits))
	add(http.MethodPut, p+"/users/{user_id}/limits/{currency}", authed(s.v2SetLimits))
	add(http.MethodPost, p+"/holds", authed(s.v2PlaceHold))
	add(http.MethodGet, p+"/holds", authed(s.v2ListHolds))
	add(http.MethodGet, p+"/holds/{hold_id}", authed(s.v2GetHold))
	add(http.MethodPost, p+"/holds/{hold_id}/capture", authed(s.v2Capture))
	add(http.MethodPost, p+"/holds/{hold_id}/release", authed(s.v2Release))
	add(http.MethodGet, p+"/inventory", authed(s.v2Inventory))
	add(http.MethodGet, p+"/changes", authed(s.v2Changes))

	for _, path := range paths {
		rs := routes[path]
		var allow []string
		for _, rt := range rs {
			allow = append(allow, rt.method)
			if rt.method == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			m := r.Method
			if m == http.MethodHead {
				m = http.MethodGet
			}
			for _, rt := range rs {
				if rt.method == m {
					rt.h(w, r)
					return
				}
			}
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, r, problem{kind: probMethodNotAllowed, detail: r.Method + " is not served here; see Allow"})
		})
	}
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problem{kind: probNotFound, detail: "no such resource: see /api/v2/openapi.json"})
	})
}

// v2Health serves GET /api/v2/health: 200 {"status": "ok", "version"}
// when the ledger can serve, else a 503 unavailable problem.
func (s *server) v2Health(w http.ResponseWriter, r *http.Request, _ string) error {
	if err := s.ledger.Health(r.Context()); err != nil {
		s.log.ErrorContext(r.Context(), "health check failed", "err", err)
		writeProblem(w, r, problem{kind: probUnavailable, detail: "the ledger cannot serve"})
		return nil
	}
	writeJSON(w, http.StatusOK, struct {
		Status  string `json:"status"`
		Version string `json:"version"`
	}{"ok", apiVersionV2})
	return nil
}

// v2OpenAPI serves GET /api/v2/openapi.json.
func (s *server) v2OpenAPI(w http.ResponseWriter, r *http.Request, _ string) error {
	h := w.Header()
	setBodyHeaders(h)
	h.Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
	w.WriteHeader(http.StatusOK)
	w.Write(openAPIDocument)
	return nil
}

// writeV2 answers status with the JSON body b.
func writeV2(w http.ResponseWriter, status int, b []byte) { writeBody(w, status, b) }

// created answers 201 with the resource b, found at location.
func created(w http.ResponseWriter, location string, b []byte) {
	w.Header().Set("Location", location)
	writeV2(w, http.StatusCreated, b)
}

// limitedBody is r.Body, cut off at maxBodyBytes.
func limitedBody(w http.ResponseWriter, r *http.Request) io.Reader {
	return http.MaxBytesReader(w, r.Body, maxBodyBytes)
}

// decodeOptional is decodeV2 for a body that may be left out: an empty
// body means {}.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any, want fields) error {
	raw, err := io.ReadAll(limitedBody(w, r))
	if err != nil {
		return readErrorV2(err)
	}
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil
	}
	return decodeV2(strings.NewReader(string(raw)), v, want)
}

// writePage answers 200 {"<name>": rows[:limit], "next_cursor"}: a
// cursor after the last row answered when rows has more than limit (the
// caller asks the ledger for limit+1), else null.
func writePage[T any](w http.ResponseWriter, name, list string, rows []T, limit int,
	key func(*T) string, add func([]byte, *T) ([]byte, error)) error {
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = encodeCursor(list, key(&rows[limit-1]))
	}
	b := append(make([]byte, 0, 4096), `{"`+name+`":[`...)
	var err error
	for i := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = add(b, &rows[i]); err != nil {
			return err
		}
	}
	b = append(b, `],"next_cursor":`...)
	if next == "" {
		b = append(b, "null"...)
	} else {
		b = appendString(b, next)
	}
	writeV2(w, http.StatusOK, append(b, '}'))
	return nil
}

// noErr adapts an append function that cannot fail to writePage.
func noErr[T any](add func([]byte, *T) []byte) func([]byte, *T) ([]byte, error) {
	return func(b []byte, v *T) ([]byte, error) { return add(b, v), nil }
}

// v2Changes serves GET /api/v2/changes[?cursor=]: the change feed as
// Server-Sent Events, exactly as GET /api/v1/changes streams it (see
// server.changes), resumed after the Last-Event-ID header or else the
// cursor parameter.
func (s *server) v2Changes(w http.ResponseWriter, r *http.Request, _ string) error {
	if _, err := parseQueryV2(r.URL.RawQuery, "cursor"); err != nil {
		return err
	}
	start, err := streamStart(r, "cursor") // the query is good: only the header can be wrong
	if err != nil {
		return invalidField("Last-Event-ID", "given more than once")
	}
	s.serveChanges(w, r, start, s.failV2)
	return nil
}

// parseQueryV2 parses a query string that may hold only the given keys,
// each at most once.
func parseQueryV2(raw string, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, invalidField("query", "malformed: %v", err)
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return nil, invalidField(truncate(k, 40), "unknown query parameter")
		}
		if len(vs) > 1 {
			return nil, invalidField(k, "given %d times", len(vs))
		}
		if !utf8.ValidString(vs[0]) {
			return nil, invalidField(k, "not valid UTF-8")
		}
	}
	return q, nil
}

// parseLimitV2 reads limit: 1 to v2MaxLimit, v2DefaultLimit when absent.
func parseLimitV2(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return v2DefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > v2MaxLimit {
		return 0, invalidField("limit", "want an integer from 1 to %d, got %q", v2MaxLimit, truncate(v, 40))
	}
	return n, nil
}
