package main

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

// requestInfo is what inner handlers tell the request log.
type requestInfo struct {
	authority string
	// aborted is set when the answer was cut off after it had started.
	aborted bool
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

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
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
			s.metrics.observe(route, r.Method, sw.status, d)
			level := slog.LevelInfo
			if sw.status >= 500 || sw.status == 0 || info.aborted {
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
			if info.aborted {
				attrs = append(attrs, slog.Bool("aborted", true))
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
				if info := infoFrom(r.Context()); info != nil {
					info.aborted = true
				}
				panic(http.ErrAbortHandler)
			}
			writeError(sw, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(sw, r)
	})
}
