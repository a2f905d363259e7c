package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/walletledger/ledger"
)

// apiVersion is what GET /api/v1/health reports, the version of the
// original service that the Python SDK 1.1.0 was written for; the SDK
// checks it against the API version it knows.
const apiVersion = "1.1.0"

// memoryData is the -data value that runs the ledger in memory.
const memoryData = ":memory:"

// Server timeouts.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// shutdownTimeout bounds the wait for in-flight requests on SIGINT or
	// SIGTERM; requests still running then are cut off.
	shutdownTimeout = 20 * time.Second
)

// config is what a server is made from.
type config struct {
	// Data is the data directory, ":memory:", or a postgres:// URL.
	Data string
	// StoreKind is -store: "badger", "memory" or "postgres"; "" means
	// what Data looks like.
	StoreKind string
	// PG and PGSchema are -pg and -pg-schema: the database and the schema
	// of a postgres store ("" for pgstore's default schema).
	PG, PGSchema string
	// Authorities is the authorities directory; "" means Data/authorities,
	// or ./walletd-data/authorities when the ledger is not in a directory.
	Authorities string
	Logger      *slog.Logger
	// Store, when set, is used instead of opening Data; for tests.
	Store ledger.Store
	// Now is the clock of the authority miss cache; nil means time.Now.
	Now func() time.Time
}

// server is walletd: the API handler over a ledger, its authorities and
// its metrics. Create one with newServer and release it with Close.
type server struct {
	log     *slog.Logger
	ledger  *ledger.Ledger
	auths   *authorities
	metrics *metrics
	api     http.Handler
}

// newServer opens the ledger and loads the authorities that cfg names.
func newServer(ctx context.Context, cfg config) (*server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	auths, err := loadAuthorities(ctx, cfg.authoritiesDir(), log, now)
	if err != nil {
		return nil, err
	}
	store := cfg.Store
	if store == nil {
		if store, err = openStore(ctx, cfg, log); err != nil {
			return nil, err
		}
	}
	l, err := ledger.New(store, ledger.WithPrecision(0, 18))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	s := &server{log: log, ledger: l, auths: auths, metrics: newMetrics()}
	s.api = s.routes()
	return s, nil
}

// authoritiesDir is where authorities live: -authorities, else
// DIR/authorities for a ledger in -data DIR, else
// ./walletd-data/authorities.
func (cfg config) authoritiesDir() string {
	switch {
	case cfg.Authorities != "":
		return cfg.Authorities
	case cfg.storeKind() != storeBadger:
		return filepath.Join(defaultData, "authorities")
	}
	return filepath.Join(cfg.Data, "authorities")
}

// Close closes the ledger, after the calls in flight.
func (s *server) Close() error {
	if err := s.ledger.Close(); err != nil {
		return fmt.Errorf("close ledger: %w", err)
	}
	return nil
}

// Handler returns the API handler, middleware included.
func (s *server) Handler() http.Handler { return s.api }

// MetricsHandler returns the handler of the metrics listener.
func (s *server) MetricsHandler() http.Handler { return s.metrics.handler() }

// serve serves the API on ln and, if mln is not nil, the metrics on mln,
// until ctx is done or a listener fails. It then shuts down gracefully:
// it stops accepting, waits up to shutdownTimeout for requests in flight
// and returns. It does not close the ledger; Close does.
func (s *server) serve(ctx context.Context, ln, mln net.Listener) error {
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	api := &http.Server{
		Handler:           s.api,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
	servers := []*http.Server{api}
	errc := make(chan error, 2)
	go func() { errc <- fmt.Errorf("api server: %w", api.Serve(ln)) }()
	if mln != nil {
		m := &http.Server{
			Handler:           s.MetricsHandler(),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          errLog,
		}
		servers = append(servers, m)
		go func() { errc <- fmt.Errorf("metrics server: %w", m.Serve(mln)) }()
	}

	var failed error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down: finishing requests in flight", "timeout", shutdownTimeout)
	case failed = <-errc:
		s.log.Error("server failed; shutting down", "err", failed)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	errs := []error{failed}
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
	}
	return errors.Join(errs...)
}

// routes builds the API handler. Every route answers in JSON; a known
// path with another method gets 405 with an Allow header, an unknown
// path 404.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	route := func(method, path string, h http.HandlerFunc) {
		mux.Handle(method+" "+path, h)
		mux.Handle(path, methodNotAllowed(method))
	}
	route(http.MethodGet, "/api/v1/health", s.health)
	route(http.MethodPost, "/api/v1/entry", s.authed(s.createEntry))
	route(http.MethodGet, "/api/v1/wallet", s.authed(s.wallets))
	route(http.MethodGet, "/api/v1/entry/inventory", s.authed(s.inventory))
	route(http.MethodPost, "/api/v1/entry/{entry_id}/inventory/use", s.authed(s.useItem))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
	return s.observe(recoverPanics(s.log, mux))
}

func methodNotAllowed(allow string) http.HandlerFunc {
	if allow == http.MethodGet {
		allow += ", " + http.MethodHead
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// authedHandler is a handler that runs on behalf of an authority.
type authedHandler func(w http.ResponseWriter, r *http.Request, authorityID string)

// authed checks the request's token before h runs: 401 without an
// Authorization header, 403 for any token that does not verify.
func (s *server) authed(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := s.auths.authenticate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			reason := authFailureReason(err)
			s.metrics.authFailures.WithLabelValues(reason).Inc()
			s.log.InfoContext(r.Context(), "authentication failed", "reason", reason, "err", err)
			if errors.Is(err, errMissingAuth) {
				writeError(w, http.StatusUnauthorized, "authorization data required")
				return
			}
			writeError(w, http.StatusForbidden, "forbidden")
			return
		}
		if info := infoFrom(r.Context()); info != nil {
			info.authority = id
		}
		h(w, r, id)
	}
}

// health reports whether the ledger can serve: 200 {"ok": true, ...}, or
// 503 {"ok": false, ...} with the same keys. The Python SDK's
// check_service_health returns True on the first and raises
// WalletAPIError on the second, as it does for any failure.
func (s *server) health(w http.ResponseWriter, r *http.Request) {
	type health struct {
		OK      bool   `json:"ok"`
		Version string `json:"version"`
	}
	if err := s.ledger.Health(r.Context()); err != nil {
		s.log.ErrorContext(r.Context(), "health check failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, health{OK: false, Version: apiVersion})
		return
	}
	writeJSON(w, http.StatusOK, health{OK: true, Version: apiVersion})
}

// createEntry serves POST /api/v1/entry.
func (s *server) createEntry(w http.ResponseWriter, r *http.Request, authorityID string) {
	ne, err := decodeEntryRequest(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ne.AuthorityID = authorityID
	e, err := s.ledger.CreateEntry(r.Context(), ne)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.metrics.entriesCreated.Inc()
	s.writeEntry(w, r, &e)
}

// useItem serves POST /api/v1/entry/{entry_id}/inventory/use.
func (s *server) useItem(w http.ResponseWriter, r *http.Request, authorityID string) {
	e, err := s.ledger.UseItem(r.Context(), authorityID, r.PathValue("entry_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.metrics.itemsUsed.Inc()
	s.writeEntry(w, r, &e)
}

func (s *server) writeEntry(w http.ResponseWriter, r *http.Request, e *ledger.Entry) {
	b := append(make([]byte, 0, 512), `{"entry":`...)
	b, err := appendEntry(b, e)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, append(b, '}'))
}

// wallets serves GET /api/v1/wallet?user_ids=&authority_ids=.
func (s *server) wallets(w http.ResponseWriter, r *http.Request, _ string) {
	q, err := parseQuery(r.URL.RawQuery, "user_ids", "authority_ids")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ws, err := s.ledger.Wallets(r.Context(), ledger.WalletQuery{
		UserIDs:      idList(q, "user_ids"),
		AuthorityIDs: idList(q, "authority_ids"),
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(s, w, r, "wallets", ws, 48, appendWallet)
}

// inventory serves GET
// /api/v1/entry/inventory?entry_ids=&user_ids=&authority_ids=&used=.
func (s *server) inventory(w http.ResponseWriter, r *http.Request, _ string) {
	q, err := parseQuery(r.URL.RawQuery, "entry_ids", "user_ids", "authority_ids", "used")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	used, err := usedFilter(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	items, err := s.ledger.Inventory(r.Context(), ledger.InventoryQuery{
		EntryIDs:     idList(q, "entry_ids"),
		UserIDs:      idList(q, "user_ids"),
		AuthorityIDs: idList(q, "authority_ids"),
		Used:         used,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(s, w, r, "inventory", items, 160, appendInventoryItem)
}

// writeList answers 200 with {"name": [...]}, each element written by
// add; size guesses an element's bytes.
func writeList[T any](s *server, w http.ResponseWriter, r *http.Request, name string, xs []T, size int,
	add func([]byte, *T) ([]byte, error)) {
	b := append(make([]byte, 0, 64+size*len(xs)), `{"`+name+`":[`...)
	var err error
	for i := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = add(b, &xs[i]); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeBody(w, http.StatusOK, append(b, "]}"...))
}

// parseQuery parses a query string that may hold only the given keys.
func parseQuery(raw string, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("malformed query string: %v", err)
	}
	for k := range q {
		if !slices.Contains(allowed, k) {
			return nil, badRequest("unknown query parameter %q (want %s)", truncate(k, 40), strings.Join(allowed, ", "))
		}
	}
	return q, nil
}

// idList reads a comma-separated list; empty means no filter. A key may
// repeat. Empty elements of a non-empty list are passed on for the ledger
// to refuse.
func idList(q url.Values, key string) []string {
	var ids []string
	for _, v := range q[key] {
		if v != "" {
			ids = append(ids, strings.Split(v, ",")...)
		}
	}
	return ids
}

// usedFilter reads used=true|false; absent or empty means no filter.
// Python's spellings True and False are accepted too, since Python's
// requests library writes a bool parameter that way.
func usedFilter(q url.Values) (ledger.UsedFilter, error) {
	vs := q["used"]
	if len(vs) > 1 {
		return 0, badRequest("invalid used: given %d times", len(vs))
	}
	v := ""
	if len(vs) == 1 {
		v = vs[0]
	}
	switch v {
	case "":
		return ledger.UsedOrUnused, nil
	case "true", "True":
		return ledger.UsedOnly, nil
	case "false", "False":
		return ledger.UnusedOnly, nil
	}
	return 0, badRequest("invalid used: want true or false, got %q", truncate(v, 40))
}

// fail answers a request that failed with err: 400 for bad input, 402,
// 404 and 409 for the ledger's refusals, and 500, logged, for the rest.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var bad *badRequestError
	var inv *ledger.InvalidError
	switch {
	case errors.As(err, &bad):
		writeError(w, http.StatusBadRequest, bad.msg)
	case errors.As(err, &inv):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid %s: %s", wireField(inv.Field), inv.Problem))
	case errors.Is(err, ledger.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ledger.ErrNotEnoughFunds):
		s.metrics.notEnoughFunds.Inc()
		writeError(w, http.StatusPaymentRequired, "not enough funds")
	case errors.Is(err, ledger.ErrNotFound):
		writeError(w, http.StatusNotFound, "entry not found")
	case errors.Is(err, ledger.ErrItemUsed):
		writeError(w, http.StatusConflict, "item already used")
	case errors.Is(err, ledger.ErrNoItem):
		writeError(w, http.StatusConflict, "entry has no item")
	case errors.Is(err, ledger.ErrForbidden):
		writeError(w, http.StatusForbidden, "forbidden")
	default:
		level := slog.LevelError
		if r.Context().Err() != nil {
			level = slog.LevelInfo // the client went away
		}
		s.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// wireField names a ledger field as the wire does.
func wireField(f string) string {
	switch f {
	case "UserID":
		return "user_id"
	case "AuthorityID":
		return "authority_id"
	case "EntryID":
		return "entry_id"
	case "Amount":
		return "amount"
	case "Reason":
		return "reason"
	case "Item.Name":
		return "item.name"
	case "Item.Data":
		return "item.data"
	case "UserIDs":
		return "user_ids"
	case "AuthorityIDs":
		return "authority_ids"
	case "EntryIDs":
		return "entry_ids"
	}
	return f
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only ever called with plain structs
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	writeBody(w, status, b)
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
