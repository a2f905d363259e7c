package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/walletledger/ledger"
)

// streamKeepAlive is how often an idle change stream gets a keep-alive
// comment: often enough for proxies whose idle timeout is 30s or more,
// and below the write timeout, so that a client that stops reading is
// found out even when nothing changes.
const streamKeepAlive = 15 * time.Second

// keepAliveComment is the Server-Sent Events comment line sent on an
// idle stream. EventSource ignores it.
const keepAliveComment = ": keep-alive\n"

// changes serves GET /api/v1/changes[?after=CURSOR]: the ledger's change
// feed (ledger.Ledger.Changes, followed) as Server-Sent Events, one event
// a change:
//
//	id: <cursor>
//	event: <kind>
//	data: <the ledger.Change, marshalled by encoding/json on one line>
//
// The stream starts after the cursor in the Last-Event-ID header, which
// EventSource sends when it reconnects, or else after the one in the
// after parameter, or else at the first change; when both are given the
// header wins, so that a client that reconnects resumes from the last
// event it got rather than from where it first started. A value that is
// not a cursor is a 400, answered before the stream starts, as is
// anything the ledger refuses before it.
//
// Any authority may read the whole feed, other authorities' changes
// included: authorities are trusted applications, as they are when they
// list every wallet and every item.
//
// The stream runs until the client goes away or the server shuts down.
// Every event is flushed as it is written. A stream that has nothing to
// send for s.keepAlive gets a keep-alive comment, so that proxies do not
// cut it as idle. See streamChanges for the timeouts.
func (s *server) changes(w http.ResponseWriter, r *http.Request, _ string) {
	after, err := streamStart(r, "after")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.serveChanges(w, r, after, s.fail)
}

// serveChanges streams the changes after the cursor as changes
// describes, for API v1 and v2 alike; fail answers an error that comes
// before the stream starts, in the API's own form.
func (s *server) serveChanges(w http.ResponseWriter, r *http.Request, after streamCursor, fail func(http.ResponseWriter, *http.Request, error)) {
	// Read the first change before the 200, so that a cursor the ledger
	// refuses, or a ledger that cannot serve, gets an ordinary error
	// answer rather than a stream that ends at once.
	for _, err := range s.ledger.Changes(r.Context(), ledger.ChangeQuery{After: after.cursor, Limit: 1}) {
		if err != nil {
			var inv *ledger.InvalidError
			if errors.As(err, &inv) && inv.Field == "After" {
				err = &ledger.InvalidError{Field: after.from, Problem: inv.Problem}
			}
			fail(w, r, err)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on, do not buffer them
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	s.streamChanges(w, r, after.cursor)
}

// streamCursor is where a change stream starts, and which part of the
// request said so, for error messages.
type streamCursor struct {
	cursor string
	from   string // "Last-Event-ID" or the query parameter; "" for the start
}

// streamStart reads where a change stream starts: the Last-Event-ID
// header if it is given and not empty, else the query parameter param
// (v1's after, v2's cursor), the only one the query may hold.
func streamStart(r *http.Request, param string) (streamCursor, error) {
	q, err := parseQuery(r.URL.RawQuery, param)
	if err != nil {
		return streamCursor{}, err
	}
	if n := len(q[param]); n > 1 {
		return streamCursor{}, badRequest("invalid %s: given %d times", param, n)
	}
	ids := r.Header.Values("Last-Event-ID")
	if len(ids) > 1 {
		return streamCursor{}, badRequest("invalid Last-Event-ID: given %d times", len(ids))
	}
	// EventSource sends no header, not an empty one, before it has an
	// ID; an empty one means the same.
	if len(ids) == 1 && ids[0] != "" {
		return streamCursor{cursor: ids[0], from: "Last-Event-ID"}, nil
	}
	if v := q.Get(param); v != "" {
		return streamCursor{cursor: v, from: param}, nil
	}
	return streamCursor{}, nil
}

// streamChanges answers 200 and writes the changes after cursor as
// events until the client goes away, the server shuts down (see
// endStreams) or the ledger closes.
//
// The server's timeouts are made for requests that end, so a stream
// sets its own. The read deadline is lifted: the request has no body,
// and the read that notices a client hanging up must not time out
// (net/http lifts it too, for that read, but the stream does not rely
// on it).
// Every event and keep-alive is written by writeChunks, which moves the
// write deadline to WriteTimeout from now before it writes: a stream
// that is written, or kept alive, lives on, while a client that stops
// reading is cut off WriteTimeout after the first write that cannot go
// out, and the request ends with outcome write_timeout. A stream holds
// a connection that is never idle, so connLimiter never closes it to
// make room; it counts under -max-conns like any request in flight.
//
// A failure of the ledger once the stream has started is logged and
// aborts the response (see abortResponse): the client sees the stream
// cut, reconnects and resumes from its last event.
func (s *server) streamChanges(w http.ResponseWriter, r *http.Request, cursor string) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{}) // an error: no deadline to lift
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) error { return s.writeChunks(w, r, b) } // on error, the outcome is recorded
	// What net/http writes once the handler returns (the last chunk)
	// gets a deadline too.
	defer func() { _ = rc.SetWriteDeadline(time.Now().Add(s.writeTimeout)) }()
	if send(nil) != nil { // the header, at once: the client waits for it
		return
	}
	s.metrics.changeStreams.Inc()
	defer s.metrics.changeStreams.Dec()

	ctx, cancel := context.WithCancel(r.Context())
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: the deferred calls run last first
	defer cancel()
	defer context.AfterFunc(s.streamsCtx, cancel)()

	// The ledger's iterator blocks while it waits for changes, and the
	// handler must meanwhile keep the stream alive, so the changes come
	// from a goroutine of their own. Only the handler writes.
	type next struct {
		c   ledger.Change
		err error
	}
	feed := make(chan next)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for c, err := range s.ledger.Changes(ctx, ledger.ChangeQuery{After: cursor, Follow: true}) {
			select {
			case feed <- next{c, err}:
			case <-ctx.Done():
				return
			}
		}
	}()

	keepAlive := time.NewTimer(s.keepAlive)
	defer keepAlive.Stop()
	buf := make([]byte, 0, 1024)
	for {
		var err error
		select {
		case n := <-feed:
			if n.err != nil {
				if ctx.Err() != nil || errors.Is(n.err, ledger.ErrClosed) {
					return // the client went away, or the server is stopping
				}
				s.abortResponse(r, n.err)
			}
			if buf, err = appendEvent(buf[:0], &n.c); err != nil {
				s.abortResponse(r, err)
			}
			err = send(buf)
		case <-keepAlive.C:
			err = send([]byte(keepAliveComment))
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
		keepAlive.Reset(s.keepAlive)
	}
}

// appendEvent appends c as a Server-Sent Event: its cursor as the id,
// its kind as the event type, and c as JSON, which encoding/json writes
// on one line (it escapes every line break in a string), as data.
func appendEvent(b []byte, c *ledger.Change) ([]byte, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("change %s: %w", c.Cursor, err)
	}
	b = append(b, "id: "...)
	b = append(b, c.Cursor...) // a cursor is digits and lowercase letters
	b = append(b, "\nevent: "...)
	b = append(b, c.Kind...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...), nil
}

// endStreams ends every change stream, at once and for good: the server
// is shutting down, and a stream would otherwise hold the shutdown until
// its timeout.
func (s *server) endStreams() { s.stopStreams() }
