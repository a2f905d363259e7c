package main

// The ops console, /console: server-rendered pages for support staff
// (operators, see console_operator.go), who find a user, read the
// user's balances, statement, holds and inventory, follow the change
// feed live, and refund an entry, release a hold or set a wallet's
// limits.
//
// Security, in short: operators log in with a name and a secret and get
// a session cookie (HttpOnly, SameSite=Strict, Secure over TLS, path
// /console/, 8 hours); failed logins are throttled per name and per
// client IP; every form carries a per-session CSRF token, and net/http's
// CrossOriginProtection refuses cross-origin POSTs besides; every page
// has a Content-Security-Policy that allows only the console's own
// assets, cannot be framed and is not cached. See the README.

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
	"golang.org/x/crypto/bcrypt"

	"github.com/walletledger/ledger"
)

//go:embed console/templates/*.html
var consoleTemplates embed.FS

//go:embed console/static
var consoleStatic embed.FS

// Console page sizes.
const (
	statementPageSize = 25
	// consoleListMax bounds the holds and inventory items a user page
	// shows.
	consoleListMax = 100
	// liveRows is how many changes the live page shows.
	liveRows = 50
	// maxFormBytes bounds a console form's body.
	maxFormBytes = 64 << 10
	// maxReasonBytes bounds an operator's reason; with the prefix the
	// console adds it stays far below the ledger's MaxReasonBytes.
	maxReasonBytes = 1000
)

// consoleCSP allows the console's own scripts, styles, images and
// EventSource connections, and nothing else: no inline script or style,
// no framing, no plugins, and forms that post only to the console.
const consoleCSP = "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'"

// console is the ops console's state. It is safe for concurrent use.
type console struct {
	s        *server
	dir      string // the operators directory
	sessions *sessions
	throttle *throttle
	pages    map[string]*template.Template
	row      *template.Template // the change-row template, for the live stream
	cop      *http.CrossOriginProtection
	tail     changeTail
}

// routesConsole registers the console's routes on mux. Every answer is
// HTML (or, for the event stream, text/event-stream), with the console's
// security headers; a path under /console/ that is no page is an HTML
// 404.
func (s *server) routesConsole(mux *http.ServeMux) {
	c := newConsole(s)
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, c.headers(h)) }
	static, _ := fs.Sub(consoleStatic, "console/static")
	files := http.StripPrefix("/console/static/", http.FileServerFS(static))
	handle("GET /console/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			c.errorPage(w, r, nil, http.StatusNotFound, "There is no such page.")
			return
		}
		files.ServeHTTP(w, r)
	}))
	handle("GET /console/login", http.HandlerFunc(c.loginPage))
	handle("POST /console/login", c.cop.Handler(http.HandlerFunc(c.login)))
	handle("POST /console/logout", c.authed(c.logout))
	handle("GET /console/{$}", c.authed(c.home))
	handle("GET /console/user", c.authed(c.user))
	handle("GET /console/refund", c.authed(c.refundPage))
	handle("POST /console/refund", c.authed(c.refund))
	handle("GET /console/release", c.authed(c.releasePage))
	handle("POST /console/release", c.authed(c.release))
	handle("GET /console/limits", c.authed(c.limitsPage))
	handle("POST /console/limits", c.authed(c.setLimits))
	handle("GET /console/live", c.authed(c.live))
	handle("GET /console/live/events", c.authed(c.liveEvents))
	handle("/console/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, nil, http.StatusNotFound, "There is no such page.")
	}))
}

func newConsole(s *server) *console {
	funcs := template.FuncMap{
		"fmtTime": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"cur": func(c string) string {
			if c == "" {
				return "(default)"
			}
			return c
		},
		"capOf": func(c *decimal.Decimal) string {
			if c == nil {
				return "none"
			}
			return c.String()
		},
		// fullTime is a time with all its precision, for a title.
		"fullTime":   func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
		"refundable": refundable,
	}
	base := template.Must(template.New("").Funcs(funcs).ParseFS(consoleTemplates, "console/templates/layout.html"))
	pages := map[string]*template.Template{}
	for _, name := range []string{"login", "home", "error", "user", "confirm", "live"} {
		t := template.Must(base.Clone())
		pages[name] = template.Must(t.ParseFS(consoleTemplates, "console/templates/"+name+".html"))
	}
	c := &console{
		s:        s,
		dir:      s.operatorsDir,
		sessions: newSessions(s.now),
		throttle: newThrottle(s.now),
		pages:    pages,
		row:      base.Lookup("change-row"),
		cop:      http.NewCrossOriginProtection(),
	}
	c.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.s.log.WarnContext(r.Context(), "console: cross-origin request refused", "path", logPath(r), "origin", truncate(r.Header.Get("Origin"), 100))
		c.errorPage(w, r, nil, http.StatusForbidden, "Cross-origin requests are refused.")
	}))
	return c
}

// refundable says whether the console offers to refund e: not a
// reversal, not reversed, not a console note, and not zero.
func refundable(e ledger.Entry) bool {
	return e.Reverses == "" && e.ReversedBy == "" && !e.Amount.IsZero() && !strings.HasPrefix(e.AuthorityID, consoleAuthorityPrefix)
}

// headers sets the security headers of every console answer.
func (c *console) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer") // user IDs stand in console URLs
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// consoleHandler is a handler that runs for a logged-in operator.
type consoleHandler func(w http.ResponseWriter, r *http.Request, sess *session)

// authed runs h for the request's session. Without one, a page request
// is sent to the login page and anything else gets 401. A POST must
// come from the console's own origin (CrossOriginProtection) and carry
// the session's CSRF token in its csrf field, or it gets 403 and h does
// not run.
func (c *console) authed(h consoleHandler) http.Handler {
	return c.cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess := c.session(r)
		if sess == nil {
			if r.Method == http.MethodGet && r.URL.Path != "/console/live/events" {
				http.Redirect(w, r, "/console/login", http.StatusSeeOther)
				return
			}
			c.errorPage(w, r, nil, http.StatusUnauthorized, "Log in first.")
			return
		}
		if info := infoFrom(r.Context()); info != nil {
			info.authority = consoleAuthorityPrefix + sess.operator
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				c.errorPage(w, r, sess, http.StatusBadRequest, "The form could not be read.")
				return
			}
			if !tokensEqual(r.PostForm.Get("csrf"), sess.csrf) {
				c.s.log.WarnContext(r.Context(), "console: form refused: missing or wrong CSRF token",
					"operator", sess.operator, "path", logPath(r))
				c.errorPage(w, r, sess, http.StatusForbidden, "The form was refused: its CSRF token is missing or wrong. Reload the page and try again.")
				return
			}
		}
		h(w, r, sess)
	}))
}

// session returns the request's unexpired session, or nil. A session
// whose operator file is gone, or holds a new secret, is ended.
func (c *console) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	sess := c.sessions.get(ck.Value)
	if sess == nil {
		return nil
	}
	of, err := readOperatorFile(c.dir, sess.operator)
	if err != nil || of.SecretHash != sess.secretHash {
		c.sessions.end(ck.Value)
		c.s.log.InfoContext(r.Context(), "console: session ended: operator removed or secret replaced", "operator", sess.operator, "err", err)
		return nil
	}
	return sess
}

// page is what every console template gets.
type page struct {
	Title    string
	Operator string
	CSRF     string
	Flash    string
	Error    string
	Data     any
}

// render answers status with the page template name; sess may be nil.
func (c *console) render(w http.ResponseWriter, r *http.Request, sess *session, status int, name string, p page) {
	if sess != nil {
		p.Operator, p.CSRF = sess.operator, sess.csrf
		if p.Flash == "" {
			p.Flash = c.sessions.takeFlash(sess)
		}
	}
	var b bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		c.s.log.ErrorContext(r.Context(), "console: cannot render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(b.Bytes())
	}
}

// errorPage answers status with an HTML page that says msg.
func (c *console) errorPage(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string) {
	c.render(w, r, sess, status, "error", page{Title: http.StatusText(status), Data: struct {
		Status        int
		Text, Message string
	}{status, http.StatusText(status), msg}})
}

// failPage answers a ledger failure: a 404 for ErrNotFound, a 400 for
// bad input, a 500 (logged) for the rest.
func (c *console) failPage(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	var inv *ledger.InvalidError
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		c.errorPage(w, r, sess, http.StatusNotFound, "Not found.")
	case errors.As(err, &inv):
		c.errorPage(w, r, sess, http.StatusBadRequest, fmt.Sprintf("Invalid %s: %s.", inv.Field, inv.Problem))
	default:
		c.s.log.ErrorContext(r.Context(), "console: request failed", "path", logPath(r), "err", err)
		c.errorPage(w, r, sess, http.StatusInternalServerError, "The ledger could not answer; try again.")
	}
}

// loginPage serves GET /console/login: the login form, whose CSRF token
// is a random value also set in a cookie of its own (double submit),
// since there is no session yet to hold it.
func (c *console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != nil {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return
	}
	c.renderLogin(w, r, http.StatusOK, "")
}

func (c *console) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	tok := randomToken()
	http.SetCookie(w, &http.Cookie{
		Name: loginCSRFCookie, Value: tok, Path: "/console/login",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		MaxAge: int(time.Hour / time.Second),
	})
	c.render(w, r, nil, status, "login", page{Title: "Log in", CSRF: tok, Error: msg})
}

// login serves POST /console/login. A login for a name or from an IP
// with maxLoginFailures failures within loginFailureWindow is refused
// with 429 and Retry-After before its secret is looked at. A wrong
// secret and an unknown name get the same answer, after the same bcrypt
// work.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	ck, err := r.Cookie(loginCSRFCookie)
	if err != nil || !tokensEqual(r.PostForm.Get("csrf"), ck.Value) {
		c.s.log.WarnContext(r.Context(), "console: login refused: missing or wrong CSRF token", "remote", r.RemoteAddr)
		c.renderLogin(w, r, http.StatusForbidden, "The form was refused: its CSRF token is missing or wrong. Try again.")
		return
	}
	name, secret := r.PostForm.Get("name"), r.PostForm.Get("secret")
	nameKey, ipKey := "name:"+truncate(name, 64), "ip:"+clientIP(r)
	if wait := c.throttle.retryAfter(nameKey, ipKey); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		c.s.log.WarnContext(r.Context(), "console: login throttled", "name", truncate(name, 64), "remote", r.RemoteAddr, "retry_after_s", secs)
		c.renderLogin(w, r, http.StatusTooManyRequests,
			fmt.Sprintf("Too many failed logins. Try again in %d minutes.", (secs+59)/60))
		return
	}
	of, err := readOperatorFile(c.dir, name)
	hash := []byte(of.SecretHash)
	if err != nil {
		if !errors.Is(err, errNoOperator) {
			c.s.log.ErrorContext(r.Context(), "console: cannot read operator file", "name", name, "err", err)
		}
		hash = dummyHash()
	}
	// bcrypt refuses secrets over 72 bytes; a real one has 43.
	ok := len(secret) <= 72 && bcrypt.CompareHashAndPassword(hash, []byte(secret)) == nil && err == nil
	if !ok {
		c.throttle.fail(nameKey, ipKey)
		c.s.log.WarnContext(r.Context(), "console: login failed", "name", truncate(name, 64), "remote", r.RemoteAddr)
		c.renderLogin(w, r, http.StatusUnauthorized, "Wrong operator name or secret.")
		return
	}
	c.throttle.succeed(nameKey)
	if old, err := r.Cookie(sessionCookie); err == nil {
		c.sessions.end(old.Value) // a login always starts a new session
	}
	tok, _ := c.sessions.create(of.Name, of.SecretHash)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: tok, Path: "/console/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		MaxAge: int(sessionLifetime / time.Second),
	})
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Path: "/console/login", MaxAge: -1})
	c.s.log.InfoContext(r.Context(), "console: operator logged in", "operator", of.Name, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

// logout serves POST /console/logout.
func (c *console) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.sessions.end(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/console/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	c.s.log.InfoContext(r.Context(), "console: operator logged out", "operator", sess.operator)
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// home serves GET /console/: find a user.
func (c *console) home(w http.ResponseWriter, r *http.Request, sess *session) {
	c.render(w, r, sess, http.StatusOK, "home", page{Title: "Find a user"})
}

// userData is what the user page shows.
type userData struct {
	UserID        string
	Balances      []ledger.Balance
	Holds         []ledger.Hold
	HoldsMore     bool
	Entries       []ledger.Entry
	After, Older  string // this page's cursor, and the next page's URL
	Inventory     []ledger.InventoryItem
	InventoryMore bool
}

// user serves GET /console/user?id=USER[&before=ENTRY]: the user's
// balances, active holds, statement (newest first, a page at a time,
// older pages before the entry named by before) and inventory.
func (c *console) user(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	d := userData{UserID: strings.TrimSpace(q.Get("id")), After: q.Get("before")}
	if d.UserID == "" {
		c.render(w, r, sess, http.StatusBadRequest, "home", page{Title: "Find a user", Error: "Give a user ID."})
		return
	}
	ctx := r.Context()
	l := c.s.ledger
	var err error
	if d.Balances, err = l.Balances(ctx, d.UserID); err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	for _, b := range d.Balances {
		hs, err := l.Holds(ctx, ledger.HoldQuery{UserIDs: []string{d.UserID}, Currency: b.Currency,
			States: []ledger.HoldState{ledger.HoldActive}, Limit: consoleListMax + 1 - len(d.Holds)})
		if err != nil {
			c.failPage(w, r, sess, err)
			return
		}
		d.Holds = append(d.Holds, hs...)
		if len(d.Holds) > consoleListMax {
			d.Holds, d.HoldsMore = d.Holds[:consoleListMax], true
			break
		}
	}
	d.Entries, err = l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{d.UserID}, Reverse: true, After: d.After, Limit: statementPageSize + 1})
	if err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	if len(d.Entries) > statementPageSize {
		d.Entries = d.Entries[:statementPageSize]
		d.Older = "/console/user?" + url.Values{"id": {d.UserID}, "before": {d.Entries[len(d.Entries)-1].ID}}.Encode()
	}
	d.Inventory, err = l.Inventory(ctx, ledger.InventoryQuery{UserIDs: []string{d.UserID}, Used: ledger.UsedOrUnused, Limit: consoleListMax + 1})
	if err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	if len(d.Inventory) > consoleListMax {
		d.Inventory, d.InventoryMore = d.Inventory[:consoleListMax], true
	}
	c.render(w, r, sess, http.StatusOK, "user", page{Title: "User " + d.UserID, Data: d})
}

// userURL is the user page of userID.
func userURL(userID string) string { return "/console/user?" + url.Values{"id": {userID}}.Encode() }

// fact is a row of a confirmation page's table; field a hidden field of
// its form.
type (
	fact  struct{ Label, Value string }
	field struct{ Name, Value string }
)

// confirmData is what a confirmation page shows: the facts of what the
// action acts on, what it will do, and a form that asks for a reason and
// a ticked confirm box.
type confirmData struct {
	Heading     string
	Facts       []fact
	Effect      string
	Post        string
	Hidden      []field
	Limits      *limitsForm
	Reason      string
	ConfirmText string
	Button      string
	Back        string
}

type limitsForm struct{ Floor, Cap string }

// actionInput reads an action form's reason and confirm box. It returns
// the reason and "" or, if either is missing or bad, what to tell the
// operator.
func actionInput(r *http.Request) (reason, problem string) {
	reason = strings.TrimSpace(r.PostForm.Get("reason"))
	switch {
	case reason == "":
		return reason, "Give a reason: it is recorded in the ledger."
	case len(reason) > maxReasonBytes:
		return reason, fmt.Sprintf("The reason is too long: at most %d bytes.", maxReasonBytes)
	case !utf8.ValidString(reason):
		return reason, "The reason is not valid text."
	case r.PostForm.Get("confirm") != "yes":
		return reason, "Tick the confirmation box to go ahead."
	}
	return reason, ""
}

// entryByID reads one entry.
func (c *console) entryByID(ctx context.Context, id string) (ledger.Entry, error) {
	if id == "" {
		return ledger.Entry{}, ledger.ErrNotFound
	}
	es, err := c.s.ledger.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{id}, Limit: 1})
	if err != nil {
		return ledger.Entry{}, err
	}
	if len(es) == 0 {
		return ledger.Entry{}, ledger.ErrNotFound
	}
	return es[0], nil
}

func refundConfirm(e ledger.Entry, reason string) confirmData {
	return confirmData{
		Heading: "Refund entry " + e.ID,
		Facts: []fact{
			{"User", e.UserID}, {"Entry", e.ID}, {"Written", e.CreatedOn.UTC().Format(time.RFC3339Nano)},
			{"Authority", e.AuthorityID}, {"Amount", e.Amount.String() + " " + currencyName(e.Currency)}, {"Reason", e.Reason},
		},
		Effect: fmt.Sprintf("The refund reverses the entry: it writes an entry of %s %s to %s's wallet, on behalf of authority %s, "+
			"whose reason names you and your reason.", e.Amount.Neg(), currencyName(e.Currency), e.UserID, e.AuthorityID),
		Post:        "/console/refund",
		Hidden:      []field{{"entry", e.ID}},
		Reason:      reason,
		ConfirmText: "I have checked the entry and want to refund it.",
		Button:      "Refund",
		Back:        userURL(e.UserID),
	}
}

// refundPage serves GET /console/refund?entry=ID: the confirmation page.
func (c *console) refundPage(w http.ResponseWriter, r *http.Request, sess *session) {
	e, err := c.entryByID(r.Context(), r.URL.Query().Get("entry"))
	if err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	c.render(w, r, sess, http.StatusOK, "confirm", page{Title: "Refund", Data: refundConfirm(e, "")})
}

// refund serves POST /console/refund: it reverses the entry on behalf of
// the authority that wrote it (the only one the ledger lets reverse it),
// with the reason "console: operator NAME: REASON".
func (c *console) refund(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	e, err := c.entryByID(ctx, r.PostForm.Get("entry"))
	if err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	reason, problem := actionInput(r)
	if problem != "" {
		c.render(w, r, sess, http.StatusBadRequest, "confirm", page{Title: "Refund", Error: problem, Data: refundConfirm(e, reason)})
		return
	}
	rev, err := c.s.ledger.Reverse(ctx, e.AuthorityID, e.ID, consoleReason(sess.operator, reason))
	if err != nil {
		if msg := refusal(err); msg != "" {
			c.render(w, r, sess, http.StatusConflict, "confirm", page{Title: "Refund", Error: "The ledger refused the refund: " + msg, Data: refundConfirm(e, reason)})
			return
		}
		c.failPage(w, r, sess, err)
		return
	}
	ids := make([]string, len(rev))
	for i, x := range rev {
		ids[i] = x.ID
	}
	c.s.log.InfoContext(ctx, "console: entry refunded", "operator", sess.operator, "entry", e.ID, "user", e.UserID,
		"authority", e.AuthorityID, "reversal", strings.Join(ids, ","), "reason", reason)
	c.sessions.setFlash(sess, fmt.Sprintf("Refunded entry %s: reversal %s.", e.ID, strings.Join(ids, ", ")))
	http.Redirect(w, r, userURL(e.UserID), http.StatusSeeOther)
}

// refusal describes the ledger's refusals of an operator's action, or
// returns "" for other errors.
func refusal(err error) string {
	var nef *ledger.NotEnoughFundsError
	var capErr *ledger.CapExceededError
	var inv *ledger.InvalidError
	switch {
	case errors.As(err, &nef):
		return fmt.Sprintf("not enough funds: the wallet has %s (%s held, floor %s).", nef.Balance, nef.Held, nef.Floor)
	case errors.As(err, &capErr):
		return fmt.Sprintf("the wallet's cap is %s.", capErr.Cap)
	case errors.Is(err, ledger.ErrAlreadyReversed):
		return "the entry was refunded before."
	case errors.Is(err, ledger.ErrItemUsed):
		return "the entry's item was used."
	case errors.Is(err, ledger.ErrHoldClosed):
		return "the hold is no longer active."
	case errors.Is(err, ledger.ErrForbidden):
		return "forbidden."
	case errors.As(err, &inv):
		return fmt.Sprintf("invalid %s: %s.", inv.Field, inv.Problem)
	}
	return ""
}

func currencyName(c string) string {
	if c == "" {
		return "(default currency)"
	}
	return c
}

// holdByID reads one hold of the given currency.
func (c *console) holdByID(ctx context.Context, id, currency string) (ledger.Hold, error) {
	if id == "" {
		return ledger.Hold{}, ledger.ErrNotFound
	}
	hs, err := c.s.ledger.Holds(ctx, ledger.HoldQuery{HoldIDs: []string{id}, Currency: currency, Limit: 1})
	if err != nil {
		return ledger.Hold{}, err
	}
	if len(hs) == 0 {
		return ledger.Hold{}, ledger.ErrNotFound
	}
	return hs[0], nil
}

func releaseConfirm(h ledger.Hold, reason string) confirmData {
	expires := "never"
	if !h.Expires.IsZero() {
		expires = h.Expires.UTC().Format(time.RFC3339Nano)
	}
	return confirmData{
		Heading: "Release hold " + h.ID,
		Facts: []fact{
			{"User", h.UserID}, {"Hold", h.ID}, {"State", h.State.String()}, {"Placed", h.CreatedOn.UTC().Format(time.RFC3339Nano)},
			{"Authority", h.AuthorityID}, {"Amount", h.Amount.String() + " " + currencyName(h.Currency)}, {"Reason", h.Reason}, {"Expires", expires},
		},
		Effect: fmt.Sprintf("Releasing frees the %s %s the hold reserves, on behalf of authority %s, and writes a note "+
			"(an entry of 0) to the wallet, whose reason names you and your reason.", h.Amount, currencyName(h.Currency), h.AuthorityID),
		Post:        "/console/release",
		Hidden:      []field{{"hold", h.ID}, {"currency", h.Currency}},
		Reason:      reason,
		ConfirmText: "I have checked the hold and want to release it.",
		Button:      "Release",
		Back:        userURL(h.UserID),
	}
}

// releasePage serves GET /console/release?hold=ID&currency=C.
func (c *console) releasePage(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	h, err := c.holdByID(r.Context(), q.Get("hold"), q.Get("currency"))
	if err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	c.render(w, r, sess, http.StatusOK, "confirm", page{Title: "Release", Data: releaseConfirm(h, "")})
}

// release serves POST /console/release: it releases the hold on behalf
// of the authority that placed it (the only one the ledger lets release
// it), then writes a console note to the wallet.
func (c *console) release(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	h, err := c.holdByID(ctx, r.PostForm.Get("hold"), r.PostForm.Get("currency"))
	if err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	reason, problem := actionInput(r)
	if problem != "" {
		c.render(w, r, sess, http.StatusBadRequest, "confirm", page{Title: "Release", Error: problem, Data: releaseConfirm(h, reason)})
		return
	}
	if _, err := c.s.ledger.Release(ctx, h.AuthorityID, h.ID); err != nil {
		if msg := refusal(err); msg != "" {
			c.render(w, r, sess, http.StatusConflict, "confirm", page{Title: "Release", Error: "The ledger refused the release: " + msg, Data: releaseConfirm(h, reason)})
			return
		}
		c.failPage(w, r, sess, err)
		return
	}
	c.s.log.InfoContext(ctx, "console: hold released", "operator", sess.operator, "hold", h.ID, "user", h.UserID,
		"authority", h.AuthorityID, "amount", h.Amount.String(), "currency", h.Currency, "reason", reason)
	text := fmt.Sprintf("released hold %s of %s %s placed by %s: %s", h.ID, h.Amount, currencyName(h.Currency), h.AuthorityID, reason)
	n, err := c.note(ctx, sess.operator, h.UserID, h.Currency, "release", text, "release:"+h.ID, map[string]string{"hold_id": h.ID})
	msg := fmt.Sprintf("Released hold %s; note %s.", h.ID, n.ID)
	if err != nil {
		c.s.log.ErrorContext(ctx, "console: hold released, but its note was not written", "operator", sess.operator, "hold", h.ID, "err", err)
		msg = fmt.Sprintf("Released hold %s, but the note recording it could not be written (see the server log).", h.ID)
	}
	c.sessions.setFlash(sess, msg)
	http.Redirect(w, r, userURL(h.UserID), http.StatusSeeOther)
}

func limitsConfirm(userID, currency string, cur ledger.Balance, f limitsForm, reason string) confirmData {
	capText := "none"
	if cur.Cap != nil {
		capText = cur.Cap.String()
	}
	return confirmData{
		Heading: "Set limits of " + userID + " in " + currencyName(currency),
		Facts: []fact{
			{"User", userID}, {"Currency", currencyName(currency)}, {"Total", cur.Total.String()}, {"Available", cur.Available.String()},
			{"Floor now", cur.Floor.String()}, {"Cap now", capText},
		},
		Effect: "Setting limits records you (as console:NAME) as who set them, and writes a note (an entry of 0) to the wallet, " +
			"whose reason names you, the old and new limits and your reason. Limits never refuse a write that moves the wallet toward them.",
		Post:        "/console/limits",
		Hidden:      []field{{"user", userID}, {"currency", currency}},
		Limits:      &f,
		Reason:      reason,
		ConfirmText: "I have checked the limits and want to set them.",
		Button:      "Set limits",
		Back:        userURL(userID),
	}
}

// limitsPage serves GET /console/limits?user=U&currency=C.
func (c *console) limitsPage(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	userID, currency := q.Get("user"), q.Get("currency")
	b, err := c.s.ledger.Balance(r.Context(), userID, currency)
	if err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	f := limitsForm{Floor: b.Floor.String()}
	if b.Cap != nil {
		f.Cap = b.Cap.String()
	}
	c.render(w, r, sess, http.StatusOK, "confirm", page{Title: "Set limits", Data: limitsConfirm(userID, currency, b, f, "")})
}

// setLimits serves POST /console/limits: it sets the limits as authority
// console:NAME, then writes a console note to the wallet.
func (c *console) setLimits(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	userID, currency := r.PostForm.Get("user"), r.PostForm.Get("currency")
	old, err := c.s.ledger.Balance(ctx, userID, currency)
	if err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	f := limitsForm{Floor: strings.TrimSpace(r.PostForm.Get("floor")), Cap: strings.TrimSpace(r.PostForm.Get("cap"))}
	reason, problem := actionInput(r)
	lim := ledger.WalletLimits{UserID: userID, Currency: currency}
	if problem == "" && f.Floor != "" {
		if lim.Floor, err = decimal.NewFromString(f.Floor); err != nil {
			problem = fmt.Sprintf("The floor %q is not a number.", truncate(f.Floor, 40))
		}
	}
	if problem == "" && f.Cap != "" {
		cp, err := decimal.NewFromString(f.Cap)
		if err != nil {
			problem = fmt.Sprintf("The cap %q is not a number.", truncate(f.Cap, 40))
		}
		lim.Cap = &cp
	}
	if problem == "" {
		if err := c.s.ledger.SetLimits(ctx, consoleAuthorityPrefix+sess.operator, lim); err != nil {
			if problem = refusal(err); problem == "" {
				c.failPage(w, r, sess, err)
				return
			}
			problem = "The ledger refused the limits: " + problem
		}
	}
	if problem != "" {
		c.render(w, r, sess, http.StatusBadRequest, "confirm", page{Title: "Set limits", Error: problem, Data: limitsConfirm(userID, currency, old, f, reason)})
		return
	}
	capOf := func(c *decimal.Decimal) string {
		if c == nil {
			return "none"
		}
		return c.String()
	}
	c.s.log.InfoContext(ctx, "console: limits set", "operator", sess.operator, "user", userID, "currency", currency,
		"floor", lim.Floor.String(), "cap", capOf(lim.Cap), "old_floor", old.Floor.String(), "old_cap", capOf(old.Cap), "reason", reason)
	text := fmt.Sprintf("set limits floor %s, cap %s (were floor %s, cap %s): %s", lim.Floor, capOf(lim.Cap), old.Floor, capOf(old.Cap), reason)
	md := map[string]string{"floor": lim.Floor.String(), "cap": capOf(lim.Cap)}
	n, err := c.note(ctx, sess.operator, userID, currency, "limits", text, "", md)
	msg := fmt.Sprintf("Limits set; note %s.", n.ID)
	if err != nil {
		c.s.log.ErrorContext(ctx, "console: limits set, but their note was not written", "operator", sess.operator, "user", userID, "err", err)
		msg = "Limits set, but the note recording it could not be written (see the server log)."
	}
	c.sessions.setFlash(sess, msg)
	http.Redirect(w, r, userURL(userID), http.StatusSeeOther)
}

// consoleAuthorityPrefix begins the authority IDs of the console's own
// records: console:NAME for operator NAME. walletd's authorities have IDs
// of 32 hex digits, so none is ever taken for another.
const consoleAuthorityPrefix = "console:"

// consoleReason is the ledger reason of an operator's action.
func consoleReason(operator, reason string) string {
	return "console: operator " + operator + ": " + reason
}

// note writes a console note: an entry of 0 to the wallet (userID,
// currency), as authority console:OPERATOR, whose reason says what the
// operator did and why, and whose metadata names the action and the
// operator. A note moves no value, so no limit refuses it and no total
// changes; it puts the action in the wallet's statement and in the
// change feed, where the ledger itself has no place for a reason (a
// release, limits). key, when set, makes it an idempotency key (scoped
// to the operator), so that the same action is never noted twice.
func (c *console) note(ctx context.Context, operator, userID, currency, action, text, key string, md map[string]string) (ledger.Entry, error) {
	meta := map[string]string{"console_action": action, "console_operator": operator}
	for k, v := range md {
		meta[k] = v
	}
	ne := ledger.NewEntry{
		AuthorityID: consoleAuthorityPrefix + operator,
		UserID:      userID,
		Currency:    currency,
		Reason:      consoleReason(operator, text),
		Metadata:    meta,
	}
	if key != "" {
		ne.IdempotencyKey = "console:" + key
	}
	return c.s.ledger.CreateEntry(ctx, ne)
}

// changeTail is the latest changes of the feed, for the live page. The
// feed is read forwards only, so the first live page reads it all, once;
// later ones read only what came after. It is safe for concurrent use.
type changeTail struct {
	mu     sync.Mutex
	latest []ledger.Change // oldest first, at most liveRows
}

// catchUp reads the changes after the latest it has and returns the
// latest, newest first.
func (t *changeTail) catchUp(ctx context.Context, l *ledger.Ledger) ([]ledger.Change, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	after := ""
	if n := len(t.latest); n > 0 {
		after = t.latest[n-1].Cursor
	}
	for ch, err := range l.Changes(ctx, ledger.ChangeQuery{After: after}) {
		if err != nil {
			return nil, err
		}
		if len(t.latest) == 2*liveRows {
			t.latest = append(t.latest[:0], t.latest[liveRows:]...)
		}
		t.latest = append(t.latest, ch)
	}
	if len(t.latest) > liveRows {
		t.latest = append(t.latest[:0], t.latest[len(t.latest)-liveRows:]...)
	}
	out := make([]ledger.Change, len(t.latest))
	for i, ch := range t.latest {
		out[len(out)-1-i] = ch
	}
	return out, nil
}

// live serves GET /console/live: the latest changes, newest first; its
// script (live.js) prepends new ones from /console/live/events.
func (c *console) live(w http.ResponseWriter, r *http.Request, sess *session) {
	changes, err := c.tail.catchUp(r.Context(), c.s.ledger)
	if err != nil {
		c.failPage(w, r, sess, err)
		return
	}
	d := struct {
		Changes []ledger.Change
		After   string
	}{Changes: changes}
	if len(changes) > 0 {
		d.After = changes[0].Cursor
	}
	c.render(w, r, sess, http.StatusOK, "live", page{Title: "Live feed", Data: d})
}
