package badgerstore

import (
	"cmp"
	"fmt"
	"slices"
	"sort"

	"github.com/dgraph-io/badger/v4"

	"github.com/walletledger/ledger"
)

// routePostings decides where each posting of the Update t goes (see
// postings.go): it writes into t's transaction those that go to Badger
// and returns those that stay in memory, ascending by ID, and the
// prefixes whose postings in memory it wrote to Badger with them (to be
// marked flushed once the commit lands). forced is set when the commit
// moves the checkpoint past itself. The caller holds writeMu.
func (s *Store) routePostings(t *tx, forced bool) (mem []pendingPosting, spilled []string, err error) {
	ps := t.w.posts
	if len(ps) == 0 {
		return nil, nil, nil
	}
	// An entry's postings are next to each other: one lookup each.
	lastID, lastFast := "", false
	fast := func(p *pendingPosting) bool {
		if forced || p.id <= s.maxEntryID {
			return false
		}
		if p.id != lastID {
			_, lastFast = t.w.changed[p.id]
			lastID = p.id
		}
		return lastFast
	}
	byID := func(a, b pendingPosting) int { return cmp.Compare(a.id, b.id) }
	if !slices.ContainsFunc(ps, func(p pendingPosting) bool { return !fast(&p) }) {
		if !slices.IsSortedFunc(ps, byID) {
			slices.SortStableFunc(ps, byID)
		}
		return ps, nil, nil
	}
	slices.SortFunc(ps, func(a, b pendingPosting) int {
		return cmp.Or(cmp.Compare(a.prefix, b.prefix), cmp.Compare(a.id, b.id))
	})
	// Read with a snapshot of every commit: a forced commit's checkpoint
	// committed blocks after t's transaction began. Only this group's
	// own writes touch its prefix, and none before its reads.
	var rd *badger.Txn
	var it *badger.Iterator
	defer func() {
		if rd != nil {
			it.Close()
			rd.Discard()
		}
	}()
	for i := 0; i < len(ps); {
		j := i + 1
		for j < len(ps) && ps[j].prefix == ps[i].prefix {
			j++
		}
		group := ps[i:j]
		i = j
		if !slices.ContainsFunc(group, func(p pendingPosting) bool { return !fast(&p) }) {
			mem = append(mem, group...)
			continue
		}
		if rd == nil && group[0].id <= s.maxEntryID {
			rd = s.db.NewTransaction(false)
			it = rd.NewIterator(badger.IteratorOptions{Reverse: true})
		}
		spill, err := s.writePostings(t, it, group)
		if err != nil {
			return nil, nil, err
		}
		if spill {
			spilled = append(spilled, group[0].prefix)
		}
	}
	slices.SortStableFunc(mem, byID)
	return mem, spilled, nil
}

// writePostings writes the postings of group, one prefix's, ascending,
// into t's transaction, keeping the ranges of the prefix's keys apart:
// those above the first of the prefix's postings in memory go into one
// block with those (spill reports it); those above every ID stored
// into one block; and each other one into the block whose range holds
// it (it, a reverse iterator over the committed keys, finds it), or a
// key of its own.
func (s *Store) writePostings(t *tx, it *badger.Iterator, group []pendingPosting) (spill bool, err error) {
	p := group[0].prefix
	prefix := []byte(p)
	ids := make([]string, len(group))
	for i := range group {
		ids[i] = group[i].id
	}
	above := sort.SearchStrings(ids, s.maxEntryID+"\x00") // ids[above:] > maxEntryID
	if inMem := s.post.unflushedOf(p); len(inMem) > 0 && ids[len(ids)-1] > inMem[0].id {
		above = sort.SearchStrings(ids, inMem[0].id)
		block := make([]string, 0, len(inMem)+len(ids)-above)
		for _, q := range inMem {
			block = append(block, q.id)
		}
		block = append(block, ids[above:]...)
		slices.Sort(block)
		spill = true
		if err := t.set(append(slices.Clip(prefix), block[0]...), encodeBlock(prefix, block), "index entries from %q", block[0]); err != nil {
			return false, err
		}
	} else if n := len(ids) - above; n > 0 {
		var v []byte
		if n > 1 {
			v = encodeBlock(prefix, ids[above:])
		}
		if err := t.set(append(slices.Clip(prefix), ids[above]...), v, "index entries from %q", ids[above]); err != nil {
			return false, err
		}
	}
	// The rest, at most maxEntryID: into the blocks that hold them.
	blocks := map[string][]string{}
	var order []string
	for _, id := range ids[:above] {
		k, v, err := seekCovering(it, prefix, id)
		if err != nil {
			return false, fmt.Errorf("badgerstore: index entry %q: %w", id, err)
		}
		if k != nil && len(v) > 0 {
			in, ok := blocks[string(k)]
			if !ok {
				if in, err = decodePostings(nil, k, string(k[len(prefix):]), v); err != nil {
					return false, err
				}
			}
			if in[len(in)-1] > id {
				at, _ := slices.BinarySearch(in, id)
				if !ok {
					order = append(order, string(k))
				}
				blocks[string(k)] = slices.Insert(in, at, id)
				continue
			}
		}
		if err := t.set(append(slices.Clip(prefix), id...), nil, "index entry %q", id); err != nil {
			return false, err
		}
	}
	for _, k := range order {
		if err := t.set([]byte(k), encodeBlock(prefix, blocks[k]), "index block %q", k); err != nil {
			return false, err
		}
	}
	return spill, nil
}

// flushPostings writes every prefix's postings in memory to Badger, one
// block (or single key) each, in transactions of checkpointBatch keys,
// and marks them flushed. The caller holds writeMu. A transaction that
// fails leaves its prefixes unflushed, to be written by the next
// checkpoint.
func (s *Store) flushPostings() error {
	m := s.post
	for len(m.dirty) > 0 {
		chunk := m.dirty[:min(checkpointBatch, len(m.dirty))]
		if err := s.writeBlocks(chunk); err != nil {
			return fmt.Errorf("badgerstore: %q: checkpoint the index postings: %w", s.name, err)
		}
		m.dirty = m.dirty[len(chunk):]
	}
	m.dirty = nil
	return nil
}

// writeBlocks writes the postings in memory under prefixes in one
// transaction, and marks them flushed.
func (s *Store) writeBlocks(prefixes []string) error {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	var ids []string
	for _, p := range prefixes {
		u := s.post.unflushedOf(p)
		if len(u) == 0 {
			continue
		}
		k := append([]byte(p), u[0].id...)
		var v []byte
		if len(u) > 1 {
			ids = ids[:0]
			for _, q := range u {
				ids = append(ids, q.id)
			}
			v = encodeBlock([]byte(p), ids)
		}
		if err := txn.Set(k, v); err != nil {
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		return commitError(err)
	}
	s.tot.snapMu.Lock()
	defer s.tot.snapMu.Unlock()
	s.tot.persist(nil)
	s.post.markFlushed(prefixes, s.tot.gen)
	oldest, _, viewing := s.tot.viewRange()
	s.post.drop(oldest, viewing)
	return nil
}

// postingsRebuild collects, for rebuildTotals, the postings of the
// entries after the checkpoint that neither memory nor Badger holds:
// those of commits that landed after the last checkpoint (or whose
// outcome was unknown) and were in memory only.
type postingsRebuild struct {
	s   *Store
	it  *badger.Iterator // reverse, for hasPosting
	out []pendingPosting
}

// entry adds r's postings, those it lacks.
func (b *postingsRebuild) entry(r *ledger.Record) error {
	for _, p := range entryPostings(r.ID, r.AuthorityID, r.UserID, r.Currency) {
		if ids := b.s.post.unflushedOf(p.prefix); len(ids) > 0 && ids[len(ids)-1].id >= p.id {
			// In memory already (after a failed commit: memory holds
			// every earlier commit's postings).
			continue
		}
		switch in, err := hasPosting(b.it, []byte(p.prefix), p.id); {
		case err != nil:
			return fmt.Errorf("index postings of entry %q: %w", r.ID, err)
		case in:
			continue
		}
		b.out = append(b.out, p)
	}
	return nil
}

// postings returns the postings found, ascending by ID.
func (b *postingsRebuild) postings() []pendingPosting {
	slices.SortStableFunc(b.out, func(a, b pendingPosting) int { return cmp.Compare(a.id, b.id) })
	return b.out
}
