package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// requestInfo is what inner handlers tell the request log.
type requestInfo struct {
	authority string
	// outcome is set when the answer did not reach the client whole: one
	// of the outcome constants.
	outcome string
}

// Outcomes of requests whose answer did not reach the client whole. They
// stand in the request log (outcome=...) and, instead of the status code,
// in the code label of walletd_http_requests_total, so that none of them
// counts as the status that was sent, if any: a list cut off midway is not
// a 200, and a client that hung up did not get a 500.
const (
	// outcomeAborted: the server failed after the answer had started
	// (the ledger failed on a later page of a list, or a handler
	// panicked), and cut the response off.
	outcomeAborted = "aborted"
	// outcomeWriteTimeout: the client read too slowly, so that a chunk of
	// the answer could not be written within WriteTimeout, and the
	// response was cut off.
	outcomeWriteTimeout = "write_timeout"
	// outcomeClientGone: the client went away (closed its connection)
	// before the answer was complete.
	outcomeClientGone = "client_gone"
)

// setOutcome records the outcome of r's answer, if r went through
// observe; the first one recorded stands.
func setOutcome(r *http.Request, outcome string) {
	if info := infoFrom(r.Context()); info != nil && info.outcome == "" {
		info.outcome = outcome
	}
}

// writeOutcome is the outcome of an answer whose writing failed with err.
func writeOutcome(err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return outcomeWriteTimeout
	}
	return outcomeClientGone
}

// maxLogPath bounds the path in log lines: a client chooses it, and a
// request line may be up to maxHeaderBytes long.
const maxLogPath = 256

// logPath is r's path for a log line, truncated to maxLogPath bytes.
func logPath(r *http.Request) string { return truncate(r.URL.Path, maxLogPath) }

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey{}).(*requestInfo)
	return info
}

// statusWriter remembers the status a handler wrote, how many bytes of
// body, and the first error writing them.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
	err    error
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe logs every request and records it in the metrics, by the route
// pattern that served it (a bounded label, unlike the path).
func (s *server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// Runs even when a panic cut the response off (see
			// recoverPanics); the status is then what reached the
			// client, or 0 if nothing did.
			d := time.Since(start)
			route := routeLabel(r.Pattern)
			if sw.err != nil {
				setOutcome(r, writeOutcome(sw.err))
			}
			code := strconv.Itoa(sw.status)
			if info.outcome != "" {
				code = info.outcome
			}
			s.metrics.observe(route, r.Method, code, d)
			level := slog.LevelInfo
			if sw.status >= 500 && info.outcome == "" || sw.status == 0 && info.outcome == "" ||
				info.outcome == outcomeAborted || info.outcome == outcomeWriteTimeout {
				level = slog.LevelWarn
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", logPath(r)),
				slog.String("route", route),
				slog.Int("status", sw.status),
				slog.Duration("duration", d),
				slog.Int("bytes", sw.bytes),
				slog.String("remote", r.RemoteAddr),
			}
			if info.authority != "" {
				attrs = append(attrs, slog.String("authority", info.authority))
			}
			if info.outcome != "" {
				attrs = append(attrs, slog.String("outcome", info.outcome))
			}
			s.log.LogAttrs(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(sw, r)
	})
}

// routeLabel is the route pattern without its method: the method has a
// label of its own.
func routeLabel(pattern string) string {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = path
	}
	if pattern == "" || pattern == "/" {
		return "unmatched"
	}
	return pattern
}

// recoverPanics turns a panic in next into a 500 JSON answer and a log
// line with the stack, so that one bad request never takes the process
// down. If the handler had started its answer, the connection is cut
// instead, since no valid answer can follow.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			log.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", logPath(r),
				"panic", p, "stack", string(debug.Stack()))
			if sw.status != 0 {
				setOutcome(r, outcomeAborted)
				panic(http.ErrAbortHandler)
			}
			writeError(sw, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(sw, r)
	})
}
