package badgerstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// migrateBatch is how many totals one transaction of the migration of
// formats 1 and 2 moves: a few hundred KiB of writes, far below Badger's limit
// on a transaction.
const migrateBatch = 1000

// initFormat checks the format version, writing it into a new database,
// and upgrades an older format in place.
func (s *Store) initFormat(batch int, afterBatch func() error) error {
	var from uint64     // the format whose totals move; 0: none
	var upgraded uint64 // the format marked up to formatVersion; 0: none
	err := s.db.Update(func(txn *badger.Txn) error {
		v, ok, err := readFormat(txn)
		switch {
		case err != nil:
			return fmt.Errorf("badgerstore: open %q: read format version: %w", s.name, err)
		case ok && (v < 1 || v > formatVersion):
			return fmt.Errorf("%w: %q has format version %d; this version of badgerstore reads versions 1 to %d", ErrFormat, s.name, v, formatVersion)
		case ok && v == formatVersion:
			// A migration a crash interrupted is finished now.
			from, err = readMigrating(txn)
			if err != nil {
				return fmt.Errorf("badgerstore: open %q: read migration marker: %w", s.name, err)
			}
			return nil
		case ok:
			// Marked first, in one transaction: from now on a release
			// that knows only the older formats refuses the directory
			// (with its ErrFormat), rather than read totals half moved,
			// and the next Open finishes what this one may not. A
			// directory of format 3 needs nothing else (format 4 only
			// adds), unless it is one whose move of totals from format
			// 1 or 2 a crash interrupted.
			if from, err = readMigrating(txn); err != nil {
				return fmt.Errorf("badgerstore: open %q: read migration marker: %w", s.name, err)
			}
			if from == 0 && v < totalsKeyedByCurrency {
				from = v
				if err := txn.Set(migrateKey, binary.AppendUvarint(nil, v)); err != nil {
					return fmt.Errorf("badgerstore: open %q: mark migration from format %d: %w", s.name, v, err)
				}
			}
			if err := txn.Set(formatKey, binary.AppendUvarint(nil, formatVersion)); err != nil {
				return fmt.Errorf("badgerstore: open %q: upgrade format version %d to %d: %w", s.name, v, formatVersion, err)
			}
			upgraded = v
			return nil
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		it.Rewind()
		foreign := it.Valid()
		it.Close()
		if foreign {
			return fmt.Errorf("%w: %q is a Badger database without a ledger format version", ErrNotLedger, s.name)
		}
		if err := txn.Set(formatKey, binary.AppendUvarint(nil, formatVersion)); err != nil {
			return fmt.Errorf("badgerstore: open %q: write format version: %w", s.name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if from == 0 {
		if upgraded != 0 && s.log != nil {
			s.log.Info("badgerstore: upgraded the on-disk format", "dir", s.name, "from", upgraded, "to", formatVersion)
		}
		return nil
	}
	return s.migrate(from, batch, afterBatch)
}

// readMigrating returns the format a migration marked as in progress
// started from (1 or 2: only their totals move), or 0 if none is.
func readMigrating(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get(migrateKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	b, err := item.ValueCopy(nil)
	if err != nil {
		return 0, err
	}
	v, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) || v < 1 || v >= totalsKeyedByCurrency {
		return 0, fmt.Errorf("%w: migration marker %x", errCorrupt, b)
	}
	return v, nil
}

// migrate moves a directory of format 1 or 2 to format 4, in
// transactions of at most batch totals, calling afterBatch (if set)
// after each committed one. Formats 1 and 2 differ from 3 only in the
// totals' keys (and 3 from 4 in nothing that exists in it), t lp(authority) user, which become b lp(authority)
// lp("") user: every total of those formats is in the default currency.
// Nothing else is rewritten. Their records decode as they are, and their
// by-user index keys are already those of default-currency entries. No
// wallet index key is needed: it lists only other currencies.
//
// Each transaction writes the new keys of its totals and deletes the old
// ones, so a crash between two leaves every total under exactly one key,
// and the migration, marked in progress until the last transaction
// clears the marker, resumes where it stopped on the next Open.
func (s *Store) migrate(from uint64, batch int, afterBatch func() error) error {
	moved := 0
	var after []byte // the last old key moved, to seek past its tombstone
	for {
		n := 0
		err := s.db.Update(func(txn *badger.Txn) error {
			type kv struct{ k, v []byte }
			var moves []kv
			prefix := []byte{prefixOldTotal}
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			start := prefix
			if after != nil {
				start = append(after, 0)
			}
			for it.Seek(start); it.ValidForPrefix(prefix) && len(moves) < batch; it.Next() {
				item := it.Item()
				v, err := item.ValueCopy(nil)
				if err != nil {
					it.Close()
					return fmt.Errorf("read total %q: %w", item.Key(), err)
				}
				moves = append(moves, kv{item.KeyCopy(nil), v})
			}
			it.Close()
			if len(moves) == 0 {
				return txn.Delete(migrateKey)
			}
			for _, m := range moves {
				a, user, ok := cutLP(m.k[1:])
				if !ok {
					return fmt.Errorf("%w: malformed total key %q", errCorrupt, m.k)
				}
				if _, err := decodeTotal(m.v); err != nil {
					return fmt.Errorf("total %q: %w", m.k, err)
				}
				if err := txn.Set(key(prefixTotal, string(a), "", string(user)), m.v); err != nil {
					return err
				}
				if err := txn.Delete(m.k); err != nil {
					return err
				}
			}
			n, after = len(moves), moves[len(moves)-1].k
			return nil
		})
		if err != nil {
			return fmt.Errorf("badgerstore: open %q: upgrade format %d to %d (%d totals moved, Open again to resume): %w", s.name, from, formatVersion, moved, err)
		}
		if n == 0 {
			if s.log != nil {
				s.log.Info("badgerstore: upgraded the on-disk format", "dir", s.name, "from", from, "to", formatVersion, "totals", moved)
			}
			return nil
		}
		moved += n
		if afterBatch != nil {
			if err := afterBatch(); err != nil {
				return fmt.Errorf("badgerstore: open %q: upgrade format %d to %d (%d totals moved, Open again to resume): %w", s.name, from, formatVersion, moved, err)
			}
		}
	}
}
