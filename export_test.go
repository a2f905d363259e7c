package ledger

// QueuedForTest returns how many writes wait for the next group commit.
func (l *Ledger) QueuedForTest() int {
	l.commits.mu.Lock()
	defer l.commits.mu.Unlock()
	return len(l.commits.queue)
}
