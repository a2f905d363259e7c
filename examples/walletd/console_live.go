package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/walletledger/ledger"
)

// liveEvents serves GET /console/live/events[?after=CURSOR]: the change
// feed after the cursor (or after the one in Last-Event-ID, which wins,
// as in GET /api/v1/changes) as Server-Sent Events for the live page,
// one event a change:
//
//	id: <cursor>
//	event: change
//	data: <the change's table row, HTML rendered by the change-row template>
//
// The row is rendered here, by the template that renders the page's own
// rows, so that the page's script inserts markup that html/template has
// escaped and never builds any itself. It is authenticated by the
// session cookie, which EventSource sends to its own origin. Streams
// are kept alive, timed out and ended at shutdown as those of GET
// /api/v1/changes are (see streamChanges).
func (c *console) liveEvents(w http.ResponseWriter, r *http.Request, _ *session) {
	start, err := streamStart(r, "after")
	if err == nil && start.cursor != "" {
		for _, err = range c.s.ledger.Changes(r.Context(), ledger.ChangeQuery{After: start.cursor, Limit: 1}) {
			break
		}
	}
	if err != nil {
		var bad *badRequestError
		var inv *ledger.InvalidError
		if errors.As(err, &bad) || errors.As(err, &inv) {
			http.Error(w, "bad cursor", http.StatusBadRequest)
			return
		}
		c.s.log.ErrorContext(r.Context(), "console: cannot start the live stream", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) error { return c.s.writeChunks(w, r, b) }
	defer func() { _ = rc.SetWriteDeadline(time.Now().Add(c.s.writeTimeout)) }()
	if send(nil) != nil {
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	defer context.AfterFunc(c.s.streamsCtx, cancel)()
	type next struct {
		c   ledger.Change
		err error
	}
	feed := make(chan next)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ch, err := range c.s.ledger.Changes(ctx, ledger.ChangeQuery{After: start.cursor, Follow: true}) {
			select {
			case feed <- next{ch, err}:
			case <-ctx.Done():
				return
			}
		}
	}()
	keepAlive := time.NewTimer(c.s.keepAlive)
	defer keepAlive.Stop()
	var row, ev bytes.Buffer
	for {
		var err error
		select {
		case n := <-feed:
			if n.err != nil {
				if ctx.Err() != nil || errors.Is(n.err, ledger.ErrClosed) {
					return
				}
				c.s.abortResponse(r, n.err)
			}
			row.Reset()
			if err := c.row.Execute(&row, &n.c); err != nil {
				c.s.abortResponse(r, err)
			}
			ev.Reset()
			ev.WriteString("id: " + n.c.Cursor + "\nevent: change\n")
			// One data line per line of the row: EventSource joins them
			// with newlines again.
			// A CR would end a line for EventSource too: written as a
			// character reference, it means the same in HTML.
			for line := range bytes.Lines(bytes.ReplaceAll(row.Bytes(), []byte("\r"), []byte("&#13;"))) {
				ev.WriteString("data: ")
				ev.Write(bytes.TrimRight(line, "\r\n"))
				ev.WriteByte('\n')
			}
			ev.WriteByte('\n')
			err = send(ev.Bytes())
		case <-keepAlive.C:
			err = send([]byte(keepAliveComment))
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
		keepAlive.Reset(c.s.keepAlive)
	}
}
