package ledger

// CloseWaitingForTest reports whether a Close is waiting for the calls
// in flight to end. From then on sync.RWMutex lets no new reader in, so a
// call in flight that took l.mu for reading a second time would deadlock.
// It is meant to be polled from inside such a call.
func (l *Ledger) CloseWaitingForTest() bool {
	if l.mu.TryRLock() {
		l.mu.RUnlock()
		return false
	}
	return true
}

// ExportBufferForTest is how many bytes Export may hold back from its
// writer: a cancel that comes once the rest of the stream sits in the
// buffer is too late to stop it.
const ExportBufferForTest = exportBuffer
