package ledger

import "context"

// QueuedForTest returns how many writes wait for the next group commit.
func (l *Ledger) QueuedForTest() int {
	l.commits.mu.Lock()
	defer l.commits.mu.Unlock()
	return len(l.commits.queue)
}

// ExpireHoldsForTest runs a hold sweep now, as WithHoldSweep's ticker
// does.
func (l *Ledger) ExpireHoldsForTest(ctx context.Context) (int, error) { return l.expireHolds(ctx) }
