package badgerstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/walletledger/ledger"
)

// migrateBatch is how many totals, or changes, one transaction of a
// migration writes: a few hundred KiB of writes, far below Badger's
// limit on a transaction.
const migrateBatch = 1000

// initFormat checks the format version, writing it into a new database,
// and upgrades an older format in place.
func (s *Store) initFormat(batch int, afterBatch func() error) error {
	var from uint64 // the format a migration starts from; 0: none
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
			// (with its ErrFormat), rather than read totals half moved
			// or write changes the feed would lack, and the next Open
			// finishes what this one may not. A directory whose
			// migration from format 1 or 2 a crash interrupted under a
			// release of format 3 or 4 keeps its marker, and so the
			// format its totals move from.
			if from, err = readMigrating(txn); err != nil {
				return fmt.Errorf("badgerstore: open %q: read migration marker: %w", s.name, err)
			}
			if from == 0 {
				from = v
				if err := txn.Set(migrateKey, binary.AppendUvarint(nil, v)); err != nil {
					return fmt.Errorf("badgerstore: open %q: mark migration from format %d: %w", s.name, v, err)
				}
			}
			if err := txn.Set(formatKey, binary.AppendUvarint(nil, formatVersion)); err != nil {
				return fmt.Errorf("badgerstore: open %q: upgrade format version %d to %d: %w", s.name, v, formatVersion, err)
			}
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
	if err != nil || from == 0 {
		return err
	}
	return s.migrate(from, batch, afterBatch)
}

// readMigrating returns the format a migration marked as in progress
// started from, or 0 if none is.
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
	if n <= 0 || n != len(b) || v < 1 || v >= formatVersion {
		return 0, fmt.Errorf("%w: migration marker %x", errCorrupt, b)
	}
	return v, nil
}

// migrate upgrades a directory of format from to format 5, in
// transactions of at most batch totals or changes, calling afterBatch
// (if set) after each committed one: it moves the totals of a directory
// of format 1 or 2 (see [Store.moveTotals]), then synthesizes the
// feed's past (see [Store.synthesizeChanges]), clearing the migration
// marker in its last transaction. Nothing else is rewritten: records,
// indexes and totals of formats 1 to 4 read as they are. Each step
// resumes where a crash stopped it, so the next Open, finding the
// marker, finishes the migration.
func (s *Store) migrate(from uint64, batch int, afterBatch func() error) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("badgerstore: open %q: upgrade format %d to %d (%s, Open again to resume): %w", s.name, from, formatVersion, what, err)
	}
	moved := 0
	if from < totalsKeyedByCurrency {
		var err error
		if moved, err = s.moveTotals(batch, afterBatch); err != nil {
			return fail(fmt.Sprintf("%d totals moved", moved), err)
		}
	}
	changes := 0
	if from < feedFormat {
		var err error
		if changes, err = s.synthesizeChanges(batch, afterBatch); err != nil {
			return fail(fmt.Sprintf("%d changes written", changes), err)
		}
	} else if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(migrateKey) }); err != nil {
		// Formats 5 and 6 to 7 rewrite nothing: every total is as it
		// is, and Open's rebuild finds no checkpoint (format 5) and
		// writes one; the index keys of both are single postings.
		return fail("clear the marker", err)
	}
	if s.log != nil {
		s.log.Info("badgerstore: upgraded the on-disk format", "dir", s.name, "from", from, "to", formatVersion,
			"totals", moved, "changes", changes)
	}
	return nil
}

// moveTotals moves the totals of formats 1 and 2, in transactions of at
// most batch totals, and returns how many it moved. Formats 1 and 2
// differ from 3 in the totals' keys, t lp(authority) user, which become
// b lp(authority) lp("") user: every total of those formats is in the
// default currency. Their records decode as they are, and their by-user
// index keys are already those of default-currency entries. No wallet
// index key is needed: it lists only other currencies.
//
// Each transaction writes the new keys of its totals and deletes the old
// ones, so a crash between two leaves every total under exactly one key,
// and the next Open moves those left.
func (s *Store) moveTotals(batch int, afterBatch func() error) (int, error) {
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
			if n = len(moves); n > 0 {
				after = moves[n-1].k
			}
			return nil
		})
		if err != nil || n == 0 {
			return moved, err
		}
		moved += n
		if afterBatch != nil {
			if err := afterBatch(); err != nil {
				return moved, err
			}
		}
	}
}

// The kinds of past changes, in the order synthesized changes at one
// instant take.
const (
	pastEntry = iota
	pastUse
	pastLimits
	pastPlaced
	pastClosed
)

// pastChange is a change synthesized from a record: its place in the
// order, (at, kind, id), and the change.
type pastChange struct {
	at   time.Time
	kind int
	id   string // the entry or hold ID; for limits, their key
	c    ledger.ChangeRecord
}

func comparePast(a, b *pastChange) int {
	return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.kind, b.kind), strings.Compare(a.id, b.id))
}

// synthesizeChanges writes the changes of a directory written before the
// feed, from its records, and clears the migration marker: a merge by
// time of
//   - every entry (kind entry, At its CreatedOn, AuthorityID its
//     authority, Ref its ID), in ID order, which is creation order;
//   - every used item's use (item_used, At Item.UsedOn, AuthorityID
//     Item.UsedBy, Ref the entry ID), but that a use without a time,
//     recorded before uses had times, comes right after its entry;
//   - every limits stored (limits, At SetOn, AuthorityID SetBy);
//   - every hold's placing (hold_placed, At CreatedOn, AuthorityID the
//     hold's, Ref its ID) and, for a hold released or expired, its close
//     (hold_released or hold_expired, At ClosedOn, AuthorityID the
//     hold's: who released it is not recorded). A capture has no change
//     of its own: its entry is one.
//
// At one instant entries come first, then uses, limits, placings and
// closes, each by ID (limits by user, then currency). Entries stream
// from the records, read once; the rest, far fewer, are collected and
// sorted in memory first. The changes take the sequence numbers from 1
// in that order, in transactions of at most batch changes, the last of
// which clears the marker. The order depends only on the records, which
// nothing else writes while Open migrates, so a migration a crash
// interrupted resumes after the last change it wrote: the changes
// before it are those it would write again.
//
// It returns how many changes it wrote, not counting those written
// before a crash.
func (s *Store) synthesizeChanges(batch int, afterBatch func() error) (int, error) {
	rtx := &tx{txn: s.db.NewTransaction(false)}
	defer rtx.txn.Discard()
	defer rtx.finish()
	done, err := lastSeq(rtx.txn)
	if err != nil {
		return 0, err
	}
	others, err := rtx.pastChanges()
	if err != nil {
		return 0, err
	}

	// Changes up to done are written; pending are those after them.
	var pending [][]byte
	seq, wrote := uint64(0), 0
	flush := func(last bool) error {
		err := s.db.Update(func(txn *badger.Txn) error {
			first := seq - uint64(len(pending)) + 1
			for i, b := range pending {
				if err := txn.Set(sealChange(b, first+uint64(i))); err != nil {
					return err
				}
			}
			if last {
				return txn.Delete(migrateKey)
			}
			return nil
		})
		if err != nil {
			return err
		}
		n := len(pending)
		wrote += n
		pending = pending[:0]
		if afterBatch != nil && n > 0 {
			return afterBatch()
		}
		return nil
	}
	emit := func(c *ledger.ChangeRecord) error {
		if seq++; seq <= done {
			return nil
		}
		b, err := encodeChange(c)
		if err != nil {
			return err
		}
		if pending = append(pending, b); len(pending) >= batch {
			return flush(false)
		}
		return nil
	}
	entry := pastChange{kind: pastEntry}
	load := func(_ []byte, item *badger.Item) (ledger.Record, error) { return decodeItem(item) }
	for r, err := range walk(context.Background(), rtx, []byte{prefixEntry}, "", "", false, load) {
		if err != nil {
			return wrote, err
		}
		entry.at, entry.id = r.CreatedOn, r.ID
		for len(others) > 0 && comparePast(&others[0], &entry) < 0 {
			if err := emit(&others[0].c); err != nil {
				return wrote, err
			}
			others = others[1:]
		}
		if err := emit(&ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: r.CreatedOn, AuthorityID: r.AuthorityID, Ref: r.ID}); err != nil {
			return wrote, err
		}
		if r.Item != nil && r.Item.Used && r.Item.UsedOn.IsZero() {
			if err := emit(&ledger.ChangeRecord{Kind: ledger.ChangeItemUsed, AuthorityID: r.Item.UsedBy, Ref: r.ID}); err != nil {
				return wrote, err
			}
		}
	}
	for i := range others {
		if err := emit(&others[i].c); err != nil {
			return wrote, err
		}
	}
	return wrote, flush(true)
}

// pastChanges returns the past changes but entries' (see
// [Store.synthesizeChanges]), sorted: timed uses, from the records of
// entries with items; limits; and holds' placings and closes.
func (t *tx) pastChanges() ([]pastChange, error) {
	var out []pastChange
	ctx := context.Background()
	items := walk(ctx, t, []byte{prefixItem}, "", "", false, func(id []byte, _ *badger.Item) (string, error) { return string(id), nil })
	for id, err := range items {
		if err != nil {
			return nil, err
		}
		r, err := t.indexed(key(prefixItem, id), id)
		if err != nil {
			return nil, err
		}
		if it := r.Item; it != nil && it.Used && !it.UsedOn.IsZero() {
			out = append(out, pastChange{at: it.UsedOn, kind: pastUse, id: id,
				c: ledger.ChangeRecord{Kind: ledger.ChangeItemUsed, At: it.UsedOn, AuthorityID: it.UsedBy, Ref: id}})
		}
	}
	for l, err := range t.limits(ctx, []byte{prefixLimits}) {
		if err != nil {
			return nil, err
		}
		lim := l.WalletLimits
		out = append(out, pastChange{at: l.SetOn, kind: pastLimits, id: string(limitsKey(l.UserID, l.Currency)),
			c: ledger.ChangeRecord{Kind: ledger.ChangeLimits, At: l.SetOn, AuthorityID: l.SetBy, Limits: &lim}})
	}
	holds := walk(ctx, t, []byte{prefixHold}, "", "", false, func(_ []byte, item *badger.Item) (ledger.HoldRecord, error) { return decodeHoldItem(item) })
	for h, err := range holds {
		if err != nil {
			return nil, err
		}
		out = append(out, pastChange{at: h.CreatedOn, kind: pastPlaced, id: h.ID,
			c: ledger.ChangeRecord{Kind: ledger.ChangeHoldPlaced, At: h.CreatedOn, AuthorityID: h.AuthorityID, Ref: h.ID}})
		kind := ledger.ChangeHoldReleased
		switch h.State {
		case ledger.HoldExpired:
			kind = ledger.ChangeHoldExpired
		case ledger.HoldReleased:
		default:
			continue
		}
		out = append(out, pastChange{at: h.ClosedOn, kind: pastClosed, id: h.ID,
			c: ledger.ChangeRecord{Kind: kind, At: h.ClosedOn, AuthorityID: h.AuthorityID, Ref: h.ID}})
	}
	slices.SortFunc(out, func(a, b pastChange) int { return comparePast(&a, &b) })
	return out, nil
}
