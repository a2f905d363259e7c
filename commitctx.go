package ledger

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// commitContext is the context a commit runs under: the values of the
// leader's context, none of its cancellation, and the commit timeout's
// deadline. The committer reuses one from commit to commit (one commit
// runs at a time), so that a commit allocates neither a context nor a
// timer, as context.WithTimeout would.
//
// Err and Done, which a store may call for every read, take no lock.
// The timer is not reset for every commit: once armed, it fires at the
// deadline of the commit that armed it, and then expires the commit
// running, sleeps again until that commit's deadline, or, with no commit
// running, stays unarmed until the next one starts.
type commitContext struct {
	mu       sync.Mutex
	parent   context.Context // for Value; nil between commits
	deadline time.Time
	armed    bool // the timer will fire, at fireAt
	fireAt   time.Time
	timer    *time.Timer

	done    atomic.Pointer[chan struct{}]
	expired atomic.Bool // set, and done closed, when the deadline passes
}

// start readies c for a commit on behalf of parent, with the deadline
// timeout from now, a reading of time.Now.
func (c *commitContext) start(parent context.Context, now time.Time, timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.parent, c.deadline = parent, now.Add(timeout)
	if c.done.Load() == nil || c.expired.Load() {
		ch := make(chan struct{})
		c.done.Store(&ch)
		c.expired.Store(false)
	}
	if !c.armed || c.deadline.Before(c.fireAt) {
		c.arm(timeout)
	}
}

func (c *commitContext) arm(d time.Duration) {
	c.armed, c.fireAt = true, time.Now().Add(d)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.expire)
	} else {
		c.timer.Reset(d)
	}
}

// stop ends the commit: it lets go of parent, and c no longer expires.
func (c *commitContext) stop() {
	c.mu.Lock()
	c.parent = nil
	c.mu.Unlock()
}

// close stops the timer for good, when the ledger closes.
func (c *commitContext) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.armed, c.fireAt = true, time.Time{} // and never armed again
}

// expire runs when the timer fires: it ends the commit running if its
// deadline has passed, or waits for that deadline.
func (c *commitContext) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch now := time.Now(); {
	case c.parent == nil || c.expired.Load():
		c.armed = false
	case now.Before(c.deadline):
		c.arm(c.deadline.Sub(now))
	default:
		c.armed = false
		c.expired.Store(true)
		close(*c.done.Load())
	}
}

func (c *commitContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

func (c *commitContext) Done() <-chan struct{} {
	if p := c.done.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *commitContext) Err() error {
	if c.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *commitContext) Value(key any) any {
	c.mu.Lock()
	p := c.parent
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Value(key)
}
