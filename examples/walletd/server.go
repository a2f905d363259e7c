package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/walletledger/ledger"
)

// apiVersion is what GET /api/v1/health reports, the version of the
// original service that the Python SDK 1.1.0 was written for; the SDK
// checks it against the API version it knows.
const apiVersion = "1.1.0"

// memoryData is the -data value that runs the ledger in memory.
const memoryData = ":memory:"

// Server timeouts: the defaults of the config fields of the same names.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	// idleTimeout is short: an idle keep-alive connection holds a file
	// descriptor and a place under the connection cap (see connLimiter).
	idleTimeout    = 30 * time.Second
	maxHeaderBytes = 64 << 10
	// shutdownTimeout bounds the wait for in-flight requests on SIGINT or
	// SIGTERM; requests still running then are cut off.
	shutdownTimeout = 20 * time.Second
)

// defaultPageSize is how many rows GET /api/v1/wallet and GET
// /api/v1/entry/inventory read from the ledger at a time
// (ledger.WithPageSize) and hold before writing them, and so about how
// many rows of a list answer are in memory at once.
const defaultPageSize = 1000

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
	// or ./walletd-data/authorities when Data is ":memory:" or a
	// postgres:// URL. StoreKind plays no part: create-authority, which
	// has no -store, must find the same directory as serve.
	Authorities string
	// Operators is the console's operators directory; "" means
	// Data/operators, or ./walletd-data/operators, as for Authorities.
	Operators string
	Logger    *slog.Logger
	// Store, when set, is used instead of opening Data; for tests.
	Store ledger.Store
	// Now is the clock that times rescans of the authorities directory,
	// and the console's sessions and login throttle; nil means time.Now.
	Now func() time.Time
	// PageSize is how many rows list answers read from the ledger at a
	// time; 0 means defaultPageSize.
	PageSize int
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are
	// those of the API and metrics servers (see http.Server); 0 means the
	// default, the constant of the same name.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// StreamKeepAlive is how often an idle change stream gets a
	// keep-alive comment (see server.changes); 0 means streamKeepAlive.
	StreamKeepAlive time.Duration
	// MaxConns caps the API listener's open connections (see
	// connLimiter); 0 means defaultMaxConns.
	MaxConns int
	// GrantorOnlyItemUse lets only the authority that granted an item use
	// it (ledger.WithGrantorOnlyItemUse).
	GrantorOnlyItemUse bool
}

// server is walletd: the API handler over a ledger, its authorities and
// its metrics. Create one with newServer and release it with Close.
type server struct {
	log      *slog.Logger
	ledger   *ledger.Ledger
	auths    *authorities
	metrics  *metrics
	api      http.Handler
	pageSize int
	maxConns int
	apiConns atomic.Pointer[connLimiter] // the API listener's, once serving
	// The timeouts of the HTTP servers, defaults filled in.
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	keepAlive                                                 time.Duration // of change streams
	// streamsCtx ends with stopStreams (see endStreams), and with it
	// every change stream.
	streamsCtx  context.Context
	stopStreams context.CancelFunc
	// operatorsDir and now are the console's (see routesConsole).
	operatorsDir string
	now          func() time.Time
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
	opts := []ledger.Option{ledger.WithPrecision(0, 18), ledger.WithPageSize(orDefault(cfg.PageSize, defaultPageSize))}
	if cfg.GrantorOnlyItemUse {
		opts = append(opts, ledger.WithGrantorOnlyItemUse())
	}
	l, err := ledger.New(store, opts...)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	s := &server{
		log:               log,
		ledger:            l,
		auths:             auths,
		metrics:           newMetrics(),
		pageSize:          orDefault(cfg.PageSize, defaultPageSize),
		maxConns:          orDefault(cfg.MaxConns, defaultMaxConns),
		readHeaderTimeout: orDefault(cfg.ReadHeaderTimeout, readHeaderTimeout),
		readTimeout:       orDefault(cfg.ReadTimeout, readTimeout),
		writeTimeout:      orDefault(cfg.WriteTimeout, writeTimeout),
		idleTimeout:       orDefault(cfg.IdleTimeout, idleTimeout),
		keepAlive:         orDefault(cfg.StreamKeepAlive, streamKeepAlive),
		operatorsDir:      cfg.operatorsDir(),
		now:               now,
	}
	s.streamsCtx, s.stopStreams = context.WithCancel(context.Background())
	s.api = s.routes()
	return s, nil
}

// orDefault is v, or def when v is not positive.
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// authoritiesDir is where authorities live: -authorities, else
// ./walletd-data/authorities when -data is ":memory:" or a postgres://
// URL, else DIR/authorities for -data DIR. It depends on -data alone,
// never on -store, so that serve and create-authority (which has no
// -store) agree: serve -store postgres -pg URL -data DIR and
// create-authority -data DIR both use DIR/authorities.
func (cfg config) authoritiesDir() string {
	switch {
	case cfg.Authorities != "":
		return cfg.Authorities
	case cfg.Data == memoryData || isPostgresURL(cfg.Data):
		return filepath.Join(defaultData, "authorities")
	}
	return filepath.Join(cfg.Data, "authorities")
}

// Close ends the change streams and closes the ledger, after the calls
// in flight.
func (s *server) Close() error {
	s.endStreams()
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
// it stops accepting, ends the change streams (which would never end on
// their own), waits up to shutdownTimeout for the other requests in
// flight and returns. It does not close the ledger; Close does.
func (s *server) serve(ctx context.Context, ln, mln net.Listener) error {
	api := s.httpServer(s.api)
	api.RegisterOnShutdown(s.endStreams)
	servers := []*http.Server{api}
	errc := make(chan error, 2)
	lim := newConnLimiter(ln, s.maxConns,
		func(d int) { s.metrics.connections.Add(float64(d)) },
		s.metrics.idleClosed.Inc)
	s.apiConns.Store(lim)
	ln = lim
	go func() { errc <- fmt.Errorf("api server: %w", api.Serve(ln)) }()
	if mln != nil {
		m := s.httpServer(s.MetricsHandler())
		servers = append(servers, m)
		mln = newConnLimiter(mln, metricsMaxConns, nil, nil)
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

// httpServer returns an HTTP server of h with the server's timeouts, for
// a connLimiter listener.
func (s *server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.readHeaderTimeout,
		ReadTimeout:       s.readTimeout,
		WriteTimeout:      s.writeTimeout,
		IdleTimeout:       s.idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         connState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// routes builds the API handler. Every route answers in JSON; a known
// path with another method gets 405 with an Allow header, an unknown
// path 404, and so does a path that is not clean (see refuseUncleanPaths).
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
	route(http.MethodGet, "/api/v1/changes", s.authed(s.changes))
	s.routesV2(mux)
	s.routesConsole(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	})
	return s.observe(recoverPanics(s.log, refuseUncleanPaths(mux)))
}

// refuseUncleanPaths answers 404 to a request whose path is not clean
// (with "//", "/./", "/../" or a trailing "/."), which http.ServeMux would
// redirect to the clean path with a 307 and an HTML body; no API path is
// unclean, and an API client has no use for the redirect. CONNECT, whose
// paths ServeMux does not clean, gets 404 as well: walletd is no proxy.
func refuseUncleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect || !isCleanPath(r.URL.EscapedPath()) {
			writeError(w, http.StatusNotFound, "not found")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isCleanPath says whether ServeMux leaves p as it is: p is absolute and
// path.Clean changes nothing in it but a trailing slash.
func isCleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	c := path.Clean(p)
	return c == p || c != "/" && c+"/" == p
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
		id, err := s.authenticate(r)
		if err != nil {
			if errors.Is(err, errMissingAuth) {
				writeError(w, http.StatusUnauthorized, "authorization data required")
				return
			}
			writeError(w, http.StatusForbidden, "forbidden")
			return
		}
		h(w, r, id)
	}
}

// authenticate returns the ID of the authority whose token r carries,
// and tells the request log; a failure is counted and logged, and
// matches errMissingAuth when r has no token at all.
func (s *server) authenticate(r *http.Request) (string, error) {
	id, err := s.auths.authenticate(r.Context(), r.Header.Get("Authorization"))
	if err != nil {
		reason := authFailureReason(err)
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		s.log.InfoContext(r.Context(), "authentication failed", "reason", reason, "err", err)
		return "", err
	}
	if info := infoFrom(r.Context()); info != nil {
		info.authority = id
	}
	return id, nil
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

// wallets serves GET /api/v1/wallet?user_ids=&authority_ids=&limit=&after=.
func (s *server) wallets(w http.ResponseWriter, r *http.Request, _ string) {
	q, err := parseQuery(r.URL.RawQuery, "user_ids", "authority_ids", "limit", "after")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	pg, err := parsePaging(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	wq := ledger.WalletQuery{
		UserIDs:      idList(q, "user_ids"),
		AuthorityIDs: idList(q, "authority_ids"),
	}
	wq.After, wq.Limit = pg.after, pg.limit
	streamList(s, w, r, "wallets", s.ledger.WalletsSeq(r.Context(), wq), appendWallet)
}

// inventory serves GET
// /api/v1/entry/inventory?entry_ids=&user_ids=&authority_ids=&used=&limit=&after=.
func (s *server) inventory(w http.ResponseWriter, r *http.Request, _ string) {
	q, err := parseQuery(r.URL.RawQuery, "entry_ids", "user_ids", "authority_ids", "used", "limit", "after")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	used, err := usedFilter(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	pg, err := parsePaging(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	iq := ledger.InventoryQuery{
		EntryIDs:     idList(q, "entry_ids"),
		UserIDs:      idList(q, "user_ids"),
		AuthorityIDs: idList(q, "authority_ids"),
		Used:         used,
	}
	iq.After, iq.Limit = pg.after, pg.limit
	streamList(s, w, r, "inventory", s.ledger.InventorySeq(r.Context(), iq), appendInventoryItem)
}

// paging is what a list request asks for with its optional limit and
// after parameters. The zero value, both absent, is the whole list, as
// the SDK asks for it.
type paging struct {
	// after is the key of the row the list starts after (a user ID for
	// wallets, an entry ID for inventory); "" starts at the beginning.
	after string
	// limit caps the rows answered; 0 means no cap.
	limit int
}

// parsePaging reads limit (a positive integer; absent or empty means no
// cap) and after (a user ID or entry ID; absent or empty means from the
// beginning).
func parsePaging(q url.Values) (paging, error) {
	var pg paging
	for _, k := range []string{"limit", "after"} {
		if n := len(q[k]); n > 1 {
			return paging{}, badRequest("invalid %s: given %d times", k, n)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return paging{}, badRequest("invalid limit: want a positive integer, got %q", truncate(v, 40))
		}
		pg.limit = n
	}
	pg.after = q.Get("after") // the ledger checks it as an ID
	return pg, nil
}

// writeChunkBytes is how much of an answer streamList writes at a time,
// each write with a deadline of its own.
const writeChunkBytes = 64 << 10

// streamList answers 200 with {"name": [...]}: the rows that rows
// yields (one of the ledger's iterator forms, which reads the ledger a
// page at a time), each written by add. Every pageSize rows it writes
// what it has, so that a list holds about one page in memory however
// long it is. The bytes are those of the whole list written at once.
//
// A list of at most pageSize rows is answered like any other body, with a
// Content-Length. A longer one goes out chunked, flushed page by page.
// Nothing is written before the first pageSize rows are in hand, so that
// a failure there (bad input, the ledger closed) gets an ordinary error
// answer. A failure later comes after the status and part of the list
// have gone out, when no error answer can follow: it is logged and the
// response is aborted with panic(http.ErrAbortHandler), which cuts the
// connection (HTTP/1.1) or resets the stream (HTTP/2). The client then
// sees a truncated body, never a well-formed list with rows missing.
//
// The answer is written in chunks of writeChunkBytes, and the write
// deadline is moved to WriteTimeout from now before each (see
// writeChunks): WriteTimeout bounds how long one chunk may take to go
// out, not the whole list, so a slow reader gets a long list in full,
// and a reader that stops reading is cut off after WriteTimeout.
//
// The ledger reads each page in a read transaction of its own, so a long
// list is not a snapshot: a row appears once and in order, but rows
// written while the list is read may or may not be in it.
func streamList[T any](s *server, w http.ResponseWriter, r *http.Request, name string,
	rows iter.Seq2[T, error], add func([]byte, *T) ([]byte, error)) {
	b := append(make([]byte, 0, 4096), `{"`+name+`":[`...)
	n, started := 0, false
	for row, err := range rows {
		if err == nil {
			if n > 0 {
				b = append(b, ',')
			}
			b, err = add(b, &row)
		}
		if err != nil {
			if !started {
				s.fail(w, r, err)
				return
			}
			s.abortResponse(r, err)
		}
		if n++; n%s.pageSize == 0 {
			if !started {
				setBodyHeaders(w.Header())
				w.WriteHeader(http.StatusOK)
				started = true
			}
			if err := s.writeChunks(w, r, b); err != nil {
				return // the answer's outcome is recorded
			}
			b = b[:0]
		}
	}
	b = append(b, "]}\n"...)
	if !started {
		setBodyHeaders(w.Header())
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
	}
	_ = s.writeChunks(w, r, b) // on error, the answer's outcome is recorded
}

// writeChunks writes b to w, writeChunkBytes at a time, and flushes it to
// the connection. Before each chunk, and before the flush, it moves the
// connection's write deadline to WriteTimeout from now. If writing fails
// (the deadline passed, or the client went away), it records the
// request's outcome (write_timeout or client_gone) and returns the error.
func (s *server) writeChunks(w http.ResponseWriter, r *http.Request, b []byte) error {
	rc := http.NewResponseController(w)
	extend := func() {
		// An error means the writer has no deadline to move (as under
		// httptest's HTTP/2): nothing to extend.
		_ = rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	}
	for len(b) > 0 {
		n := min(len(b), writeChunkBytes)
		extend()
		if _, err := w.Write(b[:n]); err != nil {
			setOutcome(r, writeOutcome(err))
			return err
		}
		b = b[n:]
	}
	extend()
	// The flush matters for the last bytes too: left in the buffers, they
	// would be written after the handler returns, where a failure goes
	// unseen.
	if err := rc.Flush(); err != nil {
		setOutcome(r, writeOutcome(err))
		return err
	}
	return nil
}

// abortResponse ends a request whose answer has started and cannot be
// finished because of err: it logs err and aborts the response (see
// streamList). It does not return.
func (s *server) abortResponse(r *http.Request, err error) {
	level, outcome := slog.LevelError, outcomeAborted
	if r.Context().Err() != nil {
		level, outcome = slog.LevelInfo, outcomeClientGone
	}
	s.log.Log(r.Context(), level, "request failed after its answer started; response aborted",
		"method", r.Method, "path", logPath(r), "err", err)
	setOutcome(r, outcome)
	panic(http.ErrAbortHandler)
}

// parseQuery parses a query string that may hold only the given keys.
func parseQuery(raw string, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("malformed query string: %v", err)
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return nil, badRequest("unknown query parameter %q (want %s)", truncate(k, 40), strings.Join(allowed, ", "))
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return nil, badRequest("invalid %s: not valid UTF-8", k)
			}
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

// fail answers a request that failed with err: 400 (or 408) for bad
// input, 402, 404 and 409 for the ledger's refusals, and 500, logged, for
// the rest, unless the client has gone away: then nothing is written, and
// the request counts as client_gone.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var bad *badRequestError
	var inv *ledger.InvalidError
	switch {
	case errors.As(err, &bad):
		writeError(w, bad.statusCode(), bad.msg)
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
	case r.Context().Err() != nil:
		// The client went away, and the failure is likely the ledger
		// giving up on the request's context. No answer can reach the
		// client: this is no server error, and is not counted as one.
		s.log.InfoContext(r.Context(), "request abandoned by the client", "method", r.Method, "path", logPath(r), "err", err)
		setOutcome(r, outcomeClientGone)
	default:
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", logPath(r), "err", err)
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
	case "After":
		return "after"
	case "Limit":
		return "limit"
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

// writeBody answers with status and the JSON body b and a newline.
func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	setBodyHeaders(h)
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// setBodyHeaders sets the headers of every JSON answer.
func setBodyHeaders(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
}
