package badgerstore

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/walletledger/ledger"
)

// TestCommitError checks how Update classifies the errors of
// txn.Commit. A failure of Badger's writer cannot be produced on a
// healthy disk, so the errors are made here: Badger's refusals, and an
// I/O error as its writer would return it (wrapped as its y.Wrapf
// wraps, which keeps only the text).
func TestCommitError(t *testing.T) {
	eio := &fs.PathError{Op: "sync", Path: "000001.vlog", Err: syscall.EIO}
	for _, tc := range []struct {
		name    string
		err     error
		unknown bool
	}{
		{name: "conflict", err: badger.ErrConflict},
		{name: "too big", err: badger.ErrTxnTooBig},
		{name: "blocked writes", err: badger.ErrBlockedWrites},
		{name: "closed", err: badger.ErrDBClosed},
		{name: "sync failed", err: eio, unknown: true},
		{name: "write failed, text only", err: fmt.Errorf("writeRequests err: %v", eio), unknown: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := commitError(tc.err)
			if got := errors.Is(err, ledger.ErrUnknownOutcome); got != tc.unknown {
				t.Errorf("errors.Is(%v, ErrUnknownOutcome) = %v, want %v", err, got, tc.unknown)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tc.err)
			}
		})
	}
}
