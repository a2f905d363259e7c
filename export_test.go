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

// LaneForTest returns the lane in which a create for userID commits: 0
// is the first.
func (l *Ledger) LaneForTest(userID string) int {
	c := l.laneFor(userID)
	for i, m := range l.more {
		if m == c {
			return i + 1
		}
	}
	return 0
}
