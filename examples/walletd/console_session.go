package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"sync"
	"time"
)

// Console sessions and login throttling.
const (
	// sessionLifetime is how long a console session lasts after its
	// login, however active: an operator logs in again each working day.
	sessionLifetime = 8 * time.Hour
	// maxSessions bounds the sessions kept at once; a login beyond it
	// ends the oldest.
	maxSessions = 10000
	// loginFailureWindow and maxLoginFailures: after maxLoginFailures
	// failed logins within loginFailureWindow, for one operator name or
	// from one client IP, further logins for that name or from that IP
	// are refused with 429 until the oldest failure is loginFailureWindow
	// old.
	loginFailureWindow = 15 * time.Minute
	maxLoginFailures   = 5
	// maxThrottleKeys bounds the names and IPs whose failures are
	// remembered. When it is reached, the keys whose failures have all
	// expired are forgotten, and if none have, new keys are throttled
	// at once: an attacker with many addresses gets less, not more.
	maxThrottleKeys = 100000
)

// Cookie names: the session, and the login form's CSRF token, which
// lives in a cookie of its own because there is no session yet.
const (
	sessionCookie   = "walletd_console"
	loginCSRFCookie = "walletd_console_login"
)

// session is a logged-in operator.
type session struct {
	operator string
	// secretHash is the operator file's hash at login: a session whose
	// operator file is gone or holds another hash has ended.
	secretHash string
	// csrf is the token every form of the session carries.
	csrf    string
	expires time.Time
	// flash is a message for the next page the session sees, then
	// cleared; guarded by sessions.mu.
	flash string
}

// sessions holds the console's sessions in memory, keyed by the SHA-256
// of their token, so that finding a session takes no time that depends
// on how much of a guessed token matches a real one. A restart ends
// every session. It is safe for concurrent use.
type sessions struct {
	now func() time.Time

	mu   sync.Mutex
	byID map[[32]byte]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, byID: map[[32]byte]*session{}}
}

// randomToken returns 32 random bytes in unpadded base64url.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session for operator and returns its token.
func (ss *sessions) create(operator, secretHash string) (string, *session) {
	tok := randomToken()
	now := ss.now()
	s := &session{operator: operator, secretHash: secretHash, csrf: randomToken(), expires: now.Add(sessionLifetime)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.byID) >= maxSessions {
		var oldest [32]byte
		var first time.Time
		for k, s := range ss.byID {
			if !now.Before(s.expires) {
				delete(ss.byID, k)
			} else if first.IsZero() || s.expires.Before(first) {
				oldest, first = k, s.expires
			}
		}
		if len(ss.byID) >= maxSessions {
			delete(ss.byID, oldest)
		}
	}
	ss.byID[sha256.Sum256([]byte(tok))] = s
	return tok, s
}

// get returns the unexpired session of tok, or nil.
func (ss *sessions) get(tok string) *session {
	if tok == "" {
		return nil
	}
	k := sha256.Sum256([]byte(tok))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[k]
	if s != nil && !ss.now().Before(s.expires) {
		delete(ss.byID, k)
		return nil
	}
	return s
}

// end forgets the session of tok.
func (ss *sessions) end(tok string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, sha256.Sum256([]byte(tok)))
}

// setFlash and takeFlash keep one message for the session's next page.
func (ss *sessions) setFlash(s *session, msg string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s.flash = msg
}

func (ss *sessions) takeFlash(s *session) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	msg := s.flash
	s.flash = ""
	return msg
}

// tokensEqual compares two tokens in constant time.
func tokensEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// throttle counts failed logins per key ("name:..." or "ip:...") within
// loginFailureWindow. It is safe for concurrent use.
type throttle struct {
	now func() time.Time

	mu       sync.Mutex
	failures map[string][]time.Time // oldest first, all within the window
}

func newThrottle(now func() time.Time) *throttle {
	return &throttle{now: now, failures: map[string][]time.Time{}}
}

// retryAfter returns how long until the first of keys may try again: 0
// if every one of them may try now.
func (t *throttle) retryAfter(keys ...string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		fs := t.live(k, now)
		if len(fs) >= maxLoginFailures {
			wait = max(wait, fs[len(fs)-maxLoginFailures].Add(loginFailureWindow).Sub(now))
		}
	}
	if wait == 0 && len(t.failures) >= maxThrottleKeys {
		for _, k := range keys {
			if _, ok := t.failures[k]; !ok {
				return loginFailureWindow // no room to count this key's failures
			}
		}
	}
	return wait
}

// fail records a failed login for each of keys.
func (t *throttle) fail(keys ...string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		fs := t.live(k, now)
		if fs == nil && len(t.failures) >= maxThrottleKeys {
			t.prune(now)
			if len(t.failures) >= maxThrottleKeys {
				continue
			}
		}
		t.failures[k] = append(fs, now)
	}
}

// succeed forgets the failures of key, after a successful login.
func (t *throttle) succeed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.failures, key)
}

// live returns key's failures within the window at now, forgetting the
// older ones. t.mu is held.
func (t *throttle) live(key string, now time.Time) []time.Time {
	fs := t.failures[key]
	i := 0
	for i < len(fs) && !now.Before(fs[i].Add(loginFailureWindow)) {
		i++
	}
	switch {
	case i == len(fs):
		delete(t.failures, key)
		return nil
	case i > 0:
		fs = append(fs[:0], fs[i:]...)
		t.failures[key] = fs
	}
	return fs
}

// prune forgets every key whose failures have all expired. t.mu is held.
func (t *throttle) prune(now time.Time) {
	for k := range t.failures {
		t.live(k, now)
	}
}

// clientIP is the address the request came from: the connection's peer.
// Forwarding headers (X-Forwarded-For and the like) are not trusted: any
// client can write them, and a login throttle they could steer would
// throttle nobody. Behind a proxy, every login shares the proxy's
// address and the per-IP limit applies to them together.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
