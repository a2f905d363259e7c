//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package badgerstore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ownLock reports that the store locks its directory itself, with the
// same flock Badger takes, so that a lock held elsewhere is recognized
// by its errno rather than by Badger's message.
const ownLock = true

// dirLock is an exclusive flock on a directory, held by an open file.
type dirLock struct{ f *os.File }

// lockDir locks dir or fails at once, with [ErrLocked] if another
// process (or another Store in this one) holds it.
func lockDir(dir string) (*dirLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: open %q: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %q: %w", ErrLocked, dir, err)
		}
		return nil, fmt.Errorf("badgerstore: lock %q: %w", dir, err)
	}
	return &dirLock{f: f}, nil
}

// release drops the lock; l may be nil.
func (l *dirLock) release() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}
