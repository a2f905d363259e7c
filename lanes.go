package ledger

import (
	"context"
	"hash/maphash"
)

// Lanes. Over a [ConcurrentStore] the ledger runs several committers,
// each with its own queue, group and store transaction: a lane's group
// commits while another's is being built and sent, which keeps a
// database server busy that one transaction at a time leaves idle
// between round trips. Lanes are to each other what processes sharing
// the store are: the store keeps their transactions isolated (pgstore
// locks the rows a transaction writes, in one order), but their ID
// generators share the last ID handed out, so that IDs increase in the
// order they are handed out, whichever lane hands them out. Creates
// go to the lane their user hashes to; every other write, and the hold
// sweep, to the first; Import holds every lane while it runs.

// maxLanes bounds [ConcurrentStore.CommitLanes].
const maxLanes = 16

// laneFor returns the committer of a create whose (first) entry is for
// userID: over a [ConcurrentStore], the lane userID hashes to, so that
// one user's writes queue in one lane and the lanes' transactions rarely
// wait for each other's row locks; else the only one.
func (l *Ledger) laneFor(userID string) *committer {
	if len(l.more) == 0 {
		return &l.commits
	}
	if i := maphash.String(l.laneSeed, userID) % uint64(len(l.more)+1); i > 0 {
		return l.more[i-1]
	}
	return &l.commits
}

// observe makes every lane's ID generator continue after id. Only New
// and Import, which holds every lane, call it.
func (l *Ledger) observe(id string) {
	l.commits.ids.observe(id)
	for _, c := range l.more {
		c.ids.observe(id)
	}
}

// holdLanes makes every lane but the first, whose leader is the caller,
// wait until release is called: each leads a request that blocks. If
// ctx ends first, it releases those it holds and returns ctx's error.
func (l *Ledger) holdLanes(ctx context.Context) (release func(), err error) {
	var holds []laneHold
	release = func() {
		for _, h := range holds {
			close(h.release)
			<-h.ended
		}
	}
	for _, c := range l.more {
		h := laneHold{held: make(chan struct{}), release: make(chan struct{}), ended: make(chan error, 1)}
		r := newRequest(ctx, opExclusive)
		r.fn = func() error {
			close(h.held)
			<-h.release
			return nil
		}
		go func() {
			c.submit(r) // an exclusive request is never given up: r is ours
			err := r.err
			r.release()
			h.ended <- err
		}()
		select {
		case <-h.held:
			holds = append(holds, h)
		case err := <-h.ended: // left the queue as ctx ended
			release()
			return nil, err
		}
	}
	return release, nil
}

type laneHold struct {
	held, release chan struct{}
	ended         chan error
}
