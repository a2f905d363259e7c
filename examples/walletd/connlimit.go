package main

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Connection caps: the default of -max-conns, for the API listener, and
// the fixed cap of the metrics listener, which only a scraper should use.
const (
	defaultMaxConns = 1024
	metricsMaxConns = 64
)

// connLimiter is a listener that holds at most max connections open at
// once, so that clients cannot make the server run out of file
// descriptors (each open connection is one).
//
// When a connection arrives with max open, the limiter makes room by
// closing the connection that has been idle the longest: an HTTP
// keep-alive connection between requests, which the server reports as
// http.StateIdle through connState. Closing one is what IdleTimeout does
// anyway, and an HTTP client opens a new connection when it finds its
// idle one closed. If none is idle (every open connection is reading a
// request or has one in flight), the new connection waits, accepted but
// not served, until one closes or goes idle; ReadHeaderTimeout,
// ReadTimeout and WriteTimeout bound that wait. Meanwhile later arrivals
// wait in the kernel's accept queue. So at most max+1 connections are
// open at any time, and a new client, such as a health check, is
// answered as soon as any connection is idle.
//
// A connLimiter is safe for concurrent use. Its connections must be
// served by an http.Server whose ConnState is connState.
type connLimiter struct {
	net.Listener
	max int
	// opened and evicted, when not nil, are told of every change in the
	// number of open connections and of every idle connection closed to
	// make room.
	opened  func(delta int)
	evicted func()

	mu   sync.Mutex
	open int
	idle map[*limitedConn]time.Time // open connections the server reports idle, since when
	// room gets a value, without blocking, whenever a connection closes
	// or goes idle, for an Accept that waits.
	room      chan struct{}
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

func newConnLimiter(ln net.Listener, max int, opened func(int), evicted func()) *connLimiter {
	return &connLimiter{
		Listener: ln, max: max, opened: opened, evicted: evicted,
		idle: map[*limitedConn]time.Time{},
		room: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

// idleCount returns how many open connections the server reports idle.
func (l *connLimiter) idleCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.idle)
}

// Accept waits for a connection and for room for it (see connLimiter).
func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	for {
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.mu.Unlock()
			if l.opened != nil {
				l.opened(1)
			}
			return lc, nil
		}
		victim := l.longestIdle()
		l.mu.Unlock()
		if victim != nil {
			victim.Close() // makes room at once
			if l.evicted != nil {
				l.evicted()
			}
			continue
		}
		select {
		case <-l.room:
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

// longestIdle returns the connection idle the longest, or nil. l.mu is
// held.
func (l *connLimiter) longestIdle() *limitedConn {
	var victim *limitedConn
	var since time.Time
	for c, t := range l.idle {
		if victim == nil || t.Before(since) {
			victim, since = c, t
		}
	}
	return victim
}

// Close closes the listener; an Accept waiting for room returns
// net.ErrClosed. Open connections stay open: the http.Server closes them.
func (l *connLimiter) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *connLimiter) signalRoom() {
	select {
	case l.room <- struct{}{}:
	default:
	}
}

// connState is the http.Server.ConnState of servers of connLimiter
// listeners: it tells the limiter which connections are idle.
func connState(c net.Conn, state http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l := lc.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.closed {
		return
	}
	if state == http.StateIdle {
		l.idle[lc] = time.Now()
		l.signalRoom()
		return
	}
	delete(l.idle, lc)
}

// limitedConn is a connection of a connLimiter, which counts it open
// until it is closed.
type limitedConn struct {
	net.Conn
	l      *connLimiter
	closed bool // guarded by l.mu
}

// Close closes the connection and frees its place.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	l := c.l
	l.mu.Lock()
	first := !c.closed
	if first {
		c.closed = true
		l.open--
		delete(l.idle, c)
		l.signalRoom()
	}
	l.mu.Unlock()
	if first && l.opened != nil {
		l.opened(-1)
	}
	return err
}
