package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// checkpointKey holds the checkpoint: the sequence number of the last
// change up to which Badger's totals are complete (a uvarint). A total
// that changed after it is deferred (see totals.go): the entries the
// feed names after the checkpoint rebuild it.
var checkpointKey = []byte{prefixMeta, 'c', 'h', 'e', 'c', 'k', 'p', 'o', 'i', 'n', 't'}

// When to checkpoint: after a commit that left this many totals dirty,
// or this many changes after the last checkpoint, whichever comes first.
// The first bounds memory no option can free and the write a checkpoint
// costs; the second how much of the feed Open reads after a crash.
const (
	checkpointTotals  = 1 << 14
	checkpointChanges = 1 << 16
	// checkpointBatch is how many totals one checkpoint transaction
	// writes, well within Badger's limit on a transaction.
	checkpointBatch = 10_000
)

// readCheckpoint returns the checkpoint and whether one is stored.
func readCheckpoint(txn *badger.Txn) (uint64, bool, error) {
	return readUvarint(txn, checkpointKey, "checkpoint")
}

// wantCheckpoint reports whether the writer should checkpoint now.
func (s *Store) wantCheckpoint() bool {
	return len(s.tot.dirty) >= s.checkpointTotals || s.post.unflushed >= s.checkpointPostings ||
		s.nextSeq-1-s.checkpointed >= uint64(s.checkpointChanges) && (len(s.tot.dirty) > 0 || s.post.unflushed > 0)
}

// checkpoint writes every dirty total to Badger, in transactions of
// checkpointBatch, and then the checkpoint: the last change numbered.
// The caller holds writeMu. A transaction that fails leaves its totals
// dirty and the checkpoint where it was: a total Badger holds ahead of
// the checkpoint is still one the records after it rebuild (they set it
// to what their last entry says, which is where it is).
func (s *Store) checkpoint() error {
	seq := s.nextSeq - 1
	// The postings first: once the checkpoint moves, Open no longer
	// finds the entries before it in the feed.
	if err := s.flushPostings(); err != nil {
		return err
	}
	keys := s.tot.dirty
	for start := 0; ; start += checkpointBatch {
		chunk := keys[start:min(start+checkpointBatch, len(keys))]
		last := start+checkpointBatch >= len(keys)
		if err := s.writeTotals(chunk, seq, last); err != nil {
			// What is left dirty: this chunk and the rest.
			s.tot.dirty = append(s.tot.dirty[:0], keys[start:]...)
			return fmt.Errorf("badgerstore: %q: checkpoint the totals: %w", s.name, err)
		}
		if last {
			break
		}
	}
	s.tot.dirty = nil
	s.checkpointed = seq
	return nil
}

// writeTotals writes the dirty totals among keys as they are in memory,
// and with mark the checkpoint seq, in one transaction.
func (s *Store) writeTotals(keys []string, seq uint64, mark bool) error {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	for _, k := range keys {
		e := s.tot.vals[k]
		if e == nil || !e.dirty {
			continue
		}
		v, err := encodeTotal(e.cur.val)
		if err != nil {
			return err
		}
		if err := txn.Set([]byte(k), v); err != nil {
			return err
		}
	}
	if mark {
		if err := txn.Set(checkpointKey, binary.AppendUvarint(nil, seq)); err != nil {
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		return commitError(err)
	}
	s.tot.snapMu.Lock()
	s.tot.persist(keys)
	s.tot.snapMu.Unlock()
	return nil
}

// rebuildTotals sets, in memory and as a new generation, the totals
// that changed after the checkpoint, and those under keys, as Badger
// holds them now: each total under keys as stored, then, in feed order,
// for each entry the feed names after the checkpoint, its wallet's
// total and its authority's set to its Balance and AuthorityBalance, as
// of its ID, the held amount staying as stored. The totals the entries
// set are dirty, the others clean. Open calls it with no keys;
// recoverTotals with every key in memory, which may be behind or ahead
// of Badger after a commit whose outcome is unknown. Views in flight
// keep reading the versions of their generations. A directory without
// a checkpoint (a new one, or one written by a release that wrote every
// total as it changed) gets one at the last change. The caller holds
// writeMu.
func (s *Store) rebuildTotals(keys []string) error {
	var marked bool
	var ws []written
	var posts []pendingPosting
	err := s.db.View(func(txn *badger.Txn) error {
		t := &tx{txn: txn, s: s}
		defer t.finish()
		pr := postingsRebuild{s: s, it: txn.NewIterator(badger.IteratorOptions{Reverse: true})}
		defer pr.it.Close()
		at := make(map[string]int) // index in ws
		stored := func(k []byte, tk ledger.TotalKey) (int, error) {
			if i, ok := at[string(k)]; ok {
				return i, nil
			}
			v, err := t.readTotal(k, tk)
			if err != nil {
				return 0, err
			}
			at[string(k)] = len(ws)
			ws = append(ws, written{key: string(k), val: v.val, through: true, absent: !v.exists})
			return len(ws) - 1, nil
		}
		for _, k := range keys {
			if _, err := stored([]byte(k), ledger.TotalKey{}); err != nil {
				return err
			}
		}
		seq, ok, err := readCheckpoint(txn)
		if err != nil {
			return fmt.Errorf("read the checkpoint: %w", err)
		}
		if !ok {
			s.checkpointed = s.nextSeq - 1
			return nil
		}
		marked = true
		s.checkpointed = seq
		for c, err := range t.Changes(context.Background(), cursorOf(seq)) {
			if err != nil {
				return err
			}
			if c.Kind != ledger.ChangeEntry {
				continue
			}
			r, err := t.entry(c.Ref)
			if errors.Is(err, ledger.ErrNotFound) {
				// No total was deferred on it: classify defers only on an
				// entry inserted with its change.
				continue
			}
			if err != nil {
				return fmt.Errorf("entry of change %s: %w", c.Cursor, err)
			}
			if err := pr.entry(&r); err != nil {
				return err
			}
			for _, k := range []struct {
				tk  ledger.TotalKey
				val decimal.Decimal
			}{
				{ledger.TotalKey{UserID: r.UserID, Currency: r.Currency}, r.Balance},
				{ledger.TotalKey{AuthorityID: r.AuthorityID, UserID: r.UserID, Currency: r.Currency}, r.AuthorityBalance},
			} {
				i, err := stored(totalKey(k.tk), k.tk)
				if err != nil {
					return err
				}
				w := &ws[i]
				w.val.Value, w.val.LastEntryID = k.val, r.ID
				w.through, w.absent = false, false
			}
		}
		posts = pr.postings()
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild the totals after the checkpoint: %w", err)
	}
	s.tot.snapMu.Lock()
	s.tot.apply(ws)
	s.post.add(posts, s.tot.gen)
	s.tot.snapMu.Unlock()
	if marked {
		return nil
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if err := txn.Set(checkpointKey, binary.AppendUvarint(nil, s.checkpointed)); err != nil {
		return fmt.Errorf("write the checkpoint: %w", err)
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("write the checkpoint: %w", commitError(err))
	}
	return nil
}

// lastEntryID returns the highest entry ID stored, "" if none is.
func lastEntryID(txn *badger.Txn) string {
	if k := lastKey(txn, []byte{prefixEntry}); k != nil {
		return string(k[1:])
	}
	return ""
}
