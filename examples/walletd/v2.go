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

import (
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/walletledger/ledger"
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

// v2CreateEntry serves POST /api/v2/entries.
func (s *server) v2CreateEntry(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req entryRequestV2
	if err := decodeV2(limitedBody(w, r), &req, entryFieldsV2); err != nil {
		return err
	}
	ne, err := req.newEntry("")
	if err != nil {
		return err
	}
	ne.AuthorityID, ne.IdempotencyKey = authorityID, key
	e, err := s.ledger.CreateEntry(r.Context(), ne)
	if err != nil {
		return err
	}
	s.metrics.entriesCreated.Inc()
	b, err := appendEntryV2(nil, &e)
	if err != nil {
		return err
	}
	created(w, "/api/v2/entries/"+e.ID, b)
	return nil
}

// batchFault is one entry of a batch that walletd refused.
type batchFault struct {
	index          int
	field, problem string
}

// batchError lists every entry of a batch that walletd refused, so that
// a client fixes the batch in one round trip.
type batchError []batchFault

func (e batchError) Error() string { return strconv.Itoa(len(e)) + " invalid entries in the batch" }

// v2CreateBatch serves POST /api/v2/entries/batch: all or nothing, in
// order. With an Idempotency-Key K, entry i is created with the key
// K#i, so that a retry of the batch replays every entry.
func (s *server) v2CreateBatch(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"entries": nil}); err != nil {
		return err
	}
	if req.Entries == nil {
		return invalidField("entries", "missing")
	}
	es := make([]ledger.NewEntry, len(req.Entries))
	var bad batchError
	for i, raw := range req.Entries {
		prefix := "entries[" + strconv.Itoa(i) + "]."
		var er entryRequestV2
		err := decodeV2(strings.NewReader(string(raw)), &er, entryFieldsV2)
		if err == nil {
			es[i], err = er.newEntry("")
		}
		if err != nil {
			var v2 *v2Error
			if errors.As(err, &v2) {
				bad = append(bad, batchFault{i, prefix + v2.field, v2.problem})
				continue
			}
			return err
		}
		es[i].AuthorityID, es[i].IdempotencyKey = authorityID, batchKey(key, i)
	}
	if len(bad) > 0 {
		return bad
	}
	out, err := s.ledger.CreateEntries(r.Context(), es)
	if err != nil {
		return err
	}
	s.metrics.entriesCreated.Add(float64(len(out)))
	b := append(make([]byte, 0, 256*len(out)), `{"entries":[`...)
	for i := range out {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendEntryV2(b, &out[i]); err != nil {
			return err
		}
	}
	writeV2(w, http.StatusCreated, append(b, "]}"...))
	return nil
}

// renameInvalid renames the field of an *ledger.InvalidError from
// to to, for a route that passes one ID as a list of one.
func renameInvalid(err error, from, to string) error {
	var inv *ledger.InvalidError
	if errors.As(err, &inv) && inv.Field == from {
		return &ledger.InvalidError{Field: to, Problem: inv.Problem}
	}
	return err
}

// v2GetEntry serves GET /api/v2/entries/{entry_id}.
func (s *server) v2GetEntry(w http.ResponseWriter, r *http.Request, _ string) error {
	if _, err := parseQueryV2(r.URL.RawQuery); err != nil {
		return err
	}
	id := r.PathValue("entry_id")
	es, err := s.ledger.Entries(r.Context(), ledger.EntryQuery{EntryIDs: []string{id}, Limit: 1})
	if err != nil {
		return renameInvalid(err, "EntryIDs", "EntryID")
	}
	if len(es) == 0 {
		return &v2Error{kind: probNotFound, problem: "no entry " + strconv.Quote(truncate(id, 64))}
	}
	b, err := appendEntryV2(nil, &es[0])
	if err != nil {
		return err
	}
	writeV2(w, http.StatusOK, b)
	return nil
}

// v2ListEntries serves GET /api/v2/entries.
func (s *server) v2ListEntries(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "entry_ids", "user_ids", "authority_ids", "currencies",
		"since", "until", "order", "limit", "cursor")
	if err != nil {
		return err
	}
	eq := ledger.EntryQuery{
		EntryIDs:     idList(q, "entry_ids"),
		UserIDs:      idList(q, "user_ids"),
		AuthorityIDs: idList(q, "authority_ids"),
	}
	if vs, ok := q["currencies"]; ok {
		// Every element counts, the empty one being the default currency.
		eq.Currencies = strings.Split(vs[0], ",")
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &eq.Since}, {"until", &eq.Until}} {
		if v := q.Get(t.name); v != "" {
			if *t.dst, err = parseTime(t.name, v); err != nil {
				return err
			}
		}
	}
	list := "entries.asc"
	switch o := q.Get("order"); o {
	case "", "oldest_first":
	case "newest_first":
		eq.Reverse, list = true, "entries.desc"
	default:
		return invalidField("order", "want oldest_first or newest_first, got %q", truncate(o, 40))
	}
	limit, err := parseLimitV2(q)
	if err != nil {
		return err
	}
	if eq.After, err = decodeCursor(list, q.Get("cursor")); err != nil {
		return err
	}
	eq.Limit = limit + 1
	es, err := s.ledger.Entries(r.Context(), eq)
	if err != nil {
		return err
	}
	return writePage(w, "entries", list, es, limit, func(e *ledger.Entry) string { return e.ID }, appendEntryV2)
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

// v2Reverse serves POST /api/v2/entries/{entry_id}/reversal: 201
// {"entries": [...]}, the reversal's entries (two for a transfer's).
// The ledger keeps no idempotency key for a reversal, and needs none: an
// entry is reversed at most once, and a retry after an unknown outcome
// answers already-reversed if the first attempt was committed.
func (s *server) v2Reverse(w http.ResponseWriter, r *http.Request, authorityID string) error {
	if _, err := idempotencyKey(r); err != nil {
		return err
	}
	var req struct {
		Reason *string `json:"reason"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"reason": nil}); err != nil {
		return err
	}
	if req.Reason == nil {
		return invalidField("reason", "missing")
	}
	es, err := s.ledger.Reverse(r.Context(), authorityID, r.PathValue("entry_id"), *req.Reason)
	if err != nil {
		return err
	}
	s.metrics.entriesCreated.Add(float64(len(es)))
	b := append(make([]byte, 0, 1024), `{"entries":[`...)
	for i := range es {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendEntryV2(b, &es[i]); err != nil {
			return err
		}
	}
	writeV2(w, http.StatusCreated, append(b, "]}"...))
	return nil
}

// v2UseItem serves POST /api/v2/entries/{entry_id}/item/use, with an
// optional body {"user_id"}: the owner check (ledger.ForUser). The
// Idempotency-Key header is the use's key (ledger.UseIdempotencyKey).
func (s *server) v2UseItem(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req struct {
		UserID *string `json:"user_id"`
	}
	if err := decodeOptional(w, r, &req, fields{"user_id": nil}); err != nil {
		return err
	}
	var opts []ledger.UseOption
	if req.UserID != nil {
		opts = append(opts, ledger.ForUser(*req.UserID))
	}
	if key != "" {
		opts = append(opts, ledger.UseIdempotencyKey(key))
	}
	e, err := s.ledger.UseItem(r.Context(), authorityID, r.PathValue("entry_id"), opts...)
	if err != nil {
		return err
	}
	s.metrics.itemsUsed.Inc()
	b, err := appendEntryV2(nil, &e)
	if err != nil {
		return err
	}
	writeV2(w, http.StatusOK, b)
	return nil
}

// v2Transfer serves POST /api/v2/transfers.
func (s *server) v2Transfer(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req struct {
		FromUserID *string           `json:"from_user_id"`
		ToUserID   *string           `json:"to_user_id"`
		Amount     json.RawMessage   `json:"amount"`
		Currency   string            `json:"currency"`
		Reason     *string           `json:"reason"`
		Metadata   map[string]string `json:"metadata"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"from_user_id": nil, "to_user_id": nil, "amount": nil,
		"currency": nil, "reason": nil, "metadata": nil}); err != nil {
		return err
	}
	for _, m := range []struct {
		name    string
		missing bool
	}{{"from_user_id", req.FromUserID == nil}, {"to_user_id", req.ToUserID == nil}, {"amount", req.Amount == nil}, {"reason", req.Reason == nil}} {
		if m.missing {
			return invalidField(m.name, "missing")
		}
	}
	amount, err := parseDecimal("amount", req.Amount)
	if err != nil {
		return err
	}
	t, err := s.ledger.Transfer(r.Context(), ledger.NewTransfer{
		AuthorityID: authorityID, FromUserID: *req.FromUserID, ToUserID: *req.ToUserID, Currency: req.Currency,
		Amount: amount, Reason: *req.Reason, Metadata: req.Metadata, IdempotencyKey: key,
	})
	if err != nil {
		return err
	}
	s.metrics.entriesCreated.Add(2)
	b := append(make([]byte, 0, 1024), `{"transfer_id":`...)
	b = appendString(b, t.ID)
	b = append(b, `,"from":`...)
	if b, err = appendEntryV2(b, &t.From); err != nil {
		return err
	}
	b = append(b, `,"to":`...)
	if b, err = appendEntryV2(b, &t.To); err != nil {
		return err
	}
	created(w, "/api/v2/entries/"+t.From.ID, append(b, '}'))
	return nil
}

// currencySegment reads the {currency} segment of a path.
func currencySegment(r *http.Request) string {
	c := r.PathValue("currency")
	if c == defaultCurrencySegment {
		return ""
	}
	return c
}

// asOf reads the optional as_of parameter.
func asOf(q url.Values) (time.Time, error) {
	v := q.Get("as_of")
	if v == "" {
		return time.Time{}, nil
	}
	return parseTime("as_of", v)
}

// totalAsOf is the total of userID in currency as it stood at t.
func (s *server) totalAsOf(r *http.Request, userID, currency string, t time.Time) (ledger.WalletTotal, error) {
	ws, err := s.ledger.Wallets(r.Context(), ledger.WalletQuery{UserIDs: []string{userID}, Currency: currency, AsOf: t})
	if err != nil {
		return ledger.WalletTotal{}, renameInvalid(err, "UserIDs", "UserID")
	}
	if len(ws) != 1 {
		return ledger.WalletTotal{}, errors.New("wallets as of: want one row")
	}
	return ws[0], nil
}

// appendBalanceAsOf appends {user_id, currency, total, as_of}: what the
// ledger knows of a wallet at a past instant (holds and limits keep no
// history).
func appendBalanceAsOf(b []byte, wt *ledger.WalletTotal, t time.Time) []byte {
	b = appendWalletV2(b, wt)
	b = append(b[:len(b)-1], `,"as_of":`...)
	b = appendTimeV2(b, t)
	return append(b, '}')
}

// v2Balances serves GET /api/v2/users/{user_id}/balances[?as_of=]: the
// user's wallets, one per currency (ledger.Balances); as of an instant,
// the totals then of the same currencies.
func (s *server) v2Balances(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "as_of")
	if err != nil {
		return err
	}
	at, err := asOf(q)
	if err != nil {
		return err
	}
	user := r.PathValue("user_id")
	bs, err := s.ledger.Balances(r.Context(), user)
	if err != nil {
		return err
	}
	b := append(make([]byte, 0, 1024), `{"balances":[`...)
	for i := range bs {
		if i > 0 {
			b = append(b, ',')
		}
		if at.IsZero() {
			b = appendBalanceV2(b, &bs[i])
			continue
		}
		wt, err := s.totalAsOf(r, user, bs[i].Currency, at)
		if err != nil {
			return err
		}
		b = appendBalanceAsOf(b, &wt, at)
	}
	b = append(b, ']')
	if !at.IsZero() {
		b = append(b, `,"as_of":`...)
		b = appendTimeV2(b, at)
	}
	writeV2(w, http.StatusOK, append(b, '}'))
	return nil
}

// v2Balance serves GET /api/v2/users/{user_id}/balances/{currency}
// [?as_of=]: one wallet (ledger.Balance), or its total as of an instant
// (ledger.WalletQuery.AsOf).
func (s *server) v2Balance(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "as_of")
	if err != nil {
		return err
	}
	at, err := asOf(q)
	if err != nil {
		return err
	}
	user, currency := r.PathValue("user_id"), currencySegment(r)
	if !at.IsZero() {
		wt, err := s.totalAsOf(r, user, currency, at)
		if err != nil {
			return err
		}
		writeV2(w, http.StatusOK, appendBalanceAsOf(nil, &wt, at))
		return nil
	}
	bal, err := s.ledger.Balance(r.Context(), user, currency)
	if err != nil {
		return err
	}
	writeV2(w, http.StatusOK, appendBalanceV2(nil, &bal))
	return nil
}

// writeLimits answers 200 {user_id, currency, floor, cap}.
func writeLimits(w http.ResponseWriter, bal *ledger.Balance) {
	b := append(make([]byte, 0, 128), `{"user_id":`...)
	b = appendString(b, bal.UserID)
	b = append(b, `,"currency":`...)
	b = appendString(b, bal.Currency)
	b = appendLimits(b, bal.Floor, bal.Cap)
	writeV2(w, http.StatusOK, append(b, '}'))
}

// v2GetLimits serves GET /api/v2/users/{user_id}/limits/{currency}.
func (s *server) v2GetLimits(w http.ResponseWriter, r *http.Request, _ string) error {
	if _, err := parseQueryV2(r.URL.RawQuery); err != nil {
		return err
	}
	bal, err := s.ledger.Balance(r.Context(), r.PathValue("user_id"), currencySegment(r))
	if err != nil {
		return err
	}
	writeLimits(w, &bal)
	return nil
}

// v2SetLimits serves PUT /api/v2/users/{user_id}/limits/{currency} with
// {"floor", "cap"}: floor "0" when left out, cap null (none) when left
// out or null. Setting limits is idempotent as it stands: an
// Idempotency-Key is checked and needs nothing more.
func (s *server) v2SetLimits(w http.ResponseWriter, r *http.Request, authorityID string) error {
	if _, err := idempotencyKey(r); err != nil {
		return err
	}
	var req struct {
		Floor json.RawMessage `json:"floor"`
		Cap   json.RawMessage `json:"cap"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"floor": nil, "cap": nil}); err != nil {
		return err
	}
	lim := ledger.WalletLimits{UserID: r.PathValue("user_id"), Currency: currencySegment(r)}
	if req.Floor != nil {
		f, err := parseDecimal("floor", req.Floor)
		if err != nil {
			return err
		}
		lim.Floor = f
	}
	if req.Cap != nil && string(req.Cap) != "null" {
		c, err := parseDecimal("cap", req.Cap)
		if err != nil {
			return err
		}
		lim.Cap = &c
	}
	if err := s.ledger.SetLimits(r.Context(), authorityID, lim); err != nil {
		return err
	}
	bal, err := s.ledger.Balance(r.Context(), lim.UserID, lim.Currency)
	if err != nil {
		return err
	}
	writeLimits(w, &bal)
	return nil
}

// v2Wallets serves GET /api/v2/wallets: ledger.Wallets, paged.
func (s *server) v2Wallets(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "user_ids", "authority_ids", "currency", "as_of", "limit", "cursor")
	if err != nil {
		return err
	}
	wq := ledger.WalletQuery{UserIDs: idList(q, "user_ids"), AuthorityIDs: idList(q, "authority_ids"), Currency: q.Get("currency")}
	if wq.AsOf, err = asOf(q); err != nil {
		return err
	}
	limit, err := parseLimitV2(q)
	if err != nil {
		return err
	}
	if wq.After, err = decodeCursor("wallets", q.Get("cursor")); err != nil {
		return err
	}
	wq.Limit = limit + 1
	ws, err := s.ledger.Wallets(r.Context(), wq)
	if err != nil {
		return err
	}
	return writePage(w, "wallets", "wallets", ws, limit, func(w *ledger.WalletTotal) string { return w.UserID }, noErr(appendWalletV2))
}

// v2PlaceHold serves POST /api/v2/holds.
func (s *server) v2PlaceHold(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req struct {
		UserID   *string           `json:"user_id"`
		Currency string            `json:"currency"`
		Amount   json.RawMessage   `json:"amount"`
		Reason   *string           `json:"reason"`
		Expires  *string           `json:"expires"`
		Metadata map[string]string `json:"metadata"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"user_id": nil, "currency": nil, "amount": nil, "reason": nil,
		"expires": nil, "metadata": nil}); err != nil {
		return err
	}
	switch {
	case req.UserID == nil:
		return invalidField("user_id", "missing")
	case req.Amount == nil:
		return invalidField("amount", "missing")
	case req.Reason == nil:
		return invalidField("reason", "missing")
	}
	amount, err := parseDecimal("amount", req.Amount)
	if err != nil {
		return err
	}
	nh := ledger.NewHold{AuthorityID: authorityID, UserID: *req.UserID, Currency: req.Currency, Amount: amount,
		Reason: *req.Reason, Metadata: req.Metadata, IdempotencyKey: key}
	if req.Expires != nil {
		if nh.Expires, err = parseTime("expires", *req.Expires); err != nil {
			return err
		}
	}
	h, err := s.ledger.Hold(r.Context(), nh)
	if err != nil {
		return err
	}
	created(w, "/api/v2/holds/"+h.ID, appendHoldV2(nil, &h))
	return nil
}

// v2GetHold serves GET /api/v2/holds/{hold_id}[?currency=]. The ledger
// looks holds up within one currency, the default unless currency says
// otherwise.
func (s *server) v2GetHold(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "currency")
	if err != nil {
		return err
	}
	id := r.PathValue("hold_id")
	hs, err := s.ledger.Holds(r.Context(), ledger.HoldQuery{HoldIDs: []string{id}, Currency: q.Get("currency"), Limit: 1})
	if err != nil {
		return renameInvalid(err, "HoldIDs", "HoldID")
	}
	if len(hs) == 0 {
		return &v2Error{kind: probNotFound, problem: "no hold " + strconv.Quote(truncate(id, 64)) + " in this currency"}
	}
	writeV2(w, http.StatusOK, appendHoldV2(nil, &hs[0]))
	return nil
}

// v2ListHolds serves GET /api/v2/holds.
func (s *server) v2ListHolds(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "hold_ids", "user_ids", "authority_ids", "currency", "states", "limit", "cursor")
	if err != nil {
		return err
	}
	hq := ledger.HoldQuery{HoldIDs: idList(q, "hold_ids"), UserIDs: idList(q, "user_ids"),
		AuthorityIDs: idList(q, "authority_ids"), Currency: q.Get("currency")}
	for _, st := range idList(q, "states") {
		var hs ledger.HoldState
		if err := hs.UnmarshalText([]byte(st)); err != nil {
			return invalidField("states", "want active, captured, released or expired, got %q", truncate(st, 40))
		}
		hq.States = append(hq.States, hs)
	}
	limit, err := parseLimitV2(q)
	if err != nil {
		return err
	}
	if hq.After, err = decodeCursor("holds", q.Get("cursor")); err != nil {
		return err
	}
	hq.Limit = limit + 1
	hs, err := s.ledger.Holds(r.Context(), hq)
	if err != nil {
		return err
	}
	return writePage(w, "holds", "holds", hs, limit, func(h *ledger.Hold) string { return h.ID }, noErr(appendHoldV2))
}

// v2Capture serves POST /api/v2/holds/{hold_id}/capture with an optional
// body {"amount", "reason", "item"}: 201 with the capture's entry. The
// ledger keeps no idempotency key for a capture, and needs none: a hold
// is captured at most once, and a retry after an unknown outcome answers
// hold-closed with state captured if the first attempt was committed.
func (s *server) v2Capture(w http.ResponseWriter, r *http.Request, authorityID string) error {
	if _, err := idempotencyKey(r); err != nil {
		return err
	}
	var req struct {
		Amount json.RawMessage `json:"amount"`
		Reason string          `json:"reason"`
		Item   *itemRequestV2  `json:"item"`
	}
	if err := decodeOptional(w, r, &req, fields{"amount": nil, "reason": nil, "item": itemFieldsV2}); err != nil {
		return err
	}
	c := ledger.Capture{Reason: req.Reason}
	if req.Amount != nil {
		a, err := parseDecimal("amount", req.Amount)
		if err != nil {
			return err
		}
		c.Amount = a
	}
	item, err := req.Item.item("")
	if err != nil {
		return err
	}
	c.Item = item
	e, err := s.ledger.Capture(r.Context(), authorityID, r.PathValue("hold_id"), c)
	if err != nil {
		return err
	}
	s.metrics.entriesCreated.Inc()
	b, err := appendEntryV2(nil, &e)
	if err != nil {
		return err
	}
	created(w, "/api/v2/entries/"+e.ID, b)
	return nil
}

// v2Release serves POST /api/v2/holds/{hold_id}/release: 200 with the
// released hold. As for captures, a hold is released at most once.
func (s *server) v2Release(w http.ResponseWriter, r *http.Request, authorityID string) error {
	if _, err := idempotencyKey(r); err != nil {
		return err
	}
	if err := decodeOptional(w, r, &struct{}{}, fields{}); err != nil {
		return err
	}
	h, err := s.ledger.Release(r.Context(), authorityID, r.PathValue("hold_id"))
	if err != nil {
		return err
	}
	writeV2(w, http.StatusOK, appendHoldV2(nil, &h))
	return nil
}

// v2Inventory serves GET /api/v2/inventory.
func (s *server) v2Inventory(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "entry_ids", "user_ids", "authority_ids", "used", "limit", "cursor")
	if err != nil {
		return err
	}
	iq := ledger.InventoryQuery{EntryIDs: idList(q, "entry_ids"), UserIDs: idList(q, "user_ids"), AuthorityIDs: idList(q, "authority_ids")}
	switch u := q.Get("used"); u {
	case "", "false":
		iq.Used = ledger.UnusedOnly
	case "true":
		iq.Used = ledger.UsedOnly
	case "any":
		iq.Used = ledger.UsedOrUnused
	default:
		return invalidField("used", "want false, true or any, got %q", truncate(u, 40))
	}
	limit, err := parseLimitV2(q)
	if err != nil {
		return err
	}
	if iq.After, err = decodeCursor("inventory", q.Get("cursor")); err != nil {
		return err
	}
	iq.Limit = limit + 1
	items, err := s.ledger.Inventory(r.Context(), iq)
	if err != nil {
		return err
	}
	return writePage(w, "items", "inventory", items, limit, func(it *ledger.InventoryItem) string { return it.EntryID }, appendInventoryItemV2)
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
