package ledger

import (
	"context"
	"sync"
	"time"
)

// commitContext is the context a commit runs under: the values of the
// leader's context, none of its cancellation, and the commit timeout's
// deadline. The committer reuses one from commit to commit (one commit
// runs at a time), so that a commit allocates neither a context nor a
// timer, as context.WithTimeout would.
type commitContext struct {
	mu       sync.Mutex
	parent   context.Context // for Value
	deadline time.Time
	done     chan struct{}
	err      error // set, and done closed, when the deadline passes
	timer    *time.Timer
}

// start readies c for a commit on behalf of parent, with the deadline
// timeout from now.
func (c *commitContext) start(parent context.Context, timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.parent, c.deadline = parent, time.Now().Add(timeout)
	if c.done == nil || c.err != nil {
		c.done, c.err = make(chan struct{}), nil
	}
	if c.timer == nil {
		c.timer = time.AfterFunc(timeout, c.expire)
	} else {
		c.timer.Reset(timeout)
	}
}

// stop ends the commit: c no longer expires, and lets go of parent.
func (c *commitContext) stop() {
	c.timer.Stop()
	c.mu.Lock()
	c.parent = nil
	c.mu.Unlock()
}

// expire ends c when its deadline has passed. A timer of an earlier
// commit that fires late finds a later deadline and does nothing.
func (c *commitContext) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && c.parent != nil && !time.Now().Before(c.deadline) {
		c.err = context.DeadlineExceeded
		close(c.done)
	}
}

func (c *commitContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

func (c *commitContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

func (c *commitContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
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
