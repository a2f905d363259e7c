package badgerstore

import (
	"bytes"
	"context"
	"iter"
	"slices"
	"sort"

	"github.com/dgraph-io/badger/v4"
)

// postings yields the IDs indexed under prefix that lie in [start, end)
// (end "" leaves it open), ascending or, if reverse, descending: the
// postings in Badger, merged with those in memory the transaction may
// see and, in an Update, those it made itself. Keys under prefix whose
// rest sorts below lowest belong to another index sharing the prefix
// (the by-user index of another currency) and are skipped; start is at
// least lowest.
func (t *tx) postings(ctx context.Context, prefix []byte, lowest, start, end string, reverse bool) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		mem := t.memPostings(prefix, start, end)
		var own []string
		if t.w != nil {
			own = t.w.ownPostings(string(prefix), start, end)
		}
		c, err := t.open(prefix, "", "", reverse)
		if err != nil {
			yield("", err)
			return
		}
		defer c.close()
		b := blockReader{c: c, lowest: lowest, start: start, end: end}
		if !reverse && start > lowest {
			// The block holding start begins at or before it.
			k, v, err := t.covering(prefix, start)
			if err == nil && k != nil && string(k[len(prefix):]) >= lowest {
				b.buf, err = decodePostings(b.buf[:0], k, string(k[len(prefix):]), v)
				b.skip = string(k)
			}
			if err != nil {
				yield("", err)
				return
			}
			b.trimFront()
		}
		// Indexes into mem and own, from their far end when reverse.
		mi, oi := 0, 0
		if reverse {
			mi, oi = len(mem)-1, len(own)-1
		}
		before := func(a, b string) bool { return a < b != reverse }
		for n := 1; ; n++ {
			if n%256 == 0 {
				if err := ctx.Err(); err != nil {
					yield("", err)
					return
				}
			}
			id, from := "", 0
			if bid, ok, err := b.peek(); err != nil {
				yield("", err)
				return
			} else if ok {
				id, from = bid, 1
			}
			if mi >= 0 && mi < len(mem) && (from == 0 || before(mem[mi].id, id)) {
				id, from = mem[mi].id, 2
			}
			if oi >= 0 && oi < len(own) && (from == 0 || before(own[oi], id)) {
				id, from = own[oi], 3
			}
			if from == 0 {
				return
			}
			// Every source holding id moves past it.
			if bid, ok, _ := b.peek(); ok && bid == id {
				b.next()
			}
			if mi >= 0 && mi < len(mem) && mem[mi].id == id {
				mi += step(reverse)
			}
			if oi >= 0 && oi < len(own) && own[oi] == id {
				oi += step(reverse)
			}
			if !yield(id, nil) {
				return
			}
		}
	}
}

func step(reverse bool) int {
	if reverse {
		return -1
	}
	return 1
}

// memPostings returns the transaction's postings in memory under prefix
// that lie in [start, end).
func (t *tx) memPostings(prefix []byte, start, end string) []posting {
	switch prefix[0] {
	case prefixUser, prefixAuth, prefixPair:
	default:
		return nil
	}
	ids := t.s.post.visible(prefix, t.gen, t.w != nil)
	lo := sort.Search(len(ids), func(i int) bool { return ids[i].id >= start })
	hi := len(ids)
	if end != "" {
		hi = sort.Search(len(ids), func(i int) bool { return ids[i].id >= end })
	}
	return ids[lo:max(lo, hi)]
}

// ownPostings returns the postings under prefix the Update made, in
// [start, end), ascending.
func (w *txWrite) ownPostings(prefix, start, end string) []string {
	var ids []string
	for i := range w.posts {
		p := &w.posts[i]
		if p.prefix == prefix && p.id >= start && (end == "" || p.id < end) {
			ids = append(ids, p.id)
		}
	}
	slices.Sort(ids)
	return ids
}

// covering returns the greatest key under prefix that is at most prefix
// id, and its value, or a nil key if there is none: the key whose range
// may hold id.
func (t *tx) covering(prefix []byte, id string) (k, v []byte, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done.Load() {
		return nil, nil, errTxDone
	}
	it := t.txn.NewIterator(badger.IteratorOptions{Reverse: true})
	defer it.Close()
	return seekCovering(it, prefix, id)
}

// seekCovering is covering with a reverse iterator of the caller's.
func seekCovering(it *badger.Iterator, prefix []byte, id string) (k, v []byte, err error) {
	it.Seek(append(slices.Clip(prefix), id...))
	if !it.ValidForPrefix(prefix) {
		return nil, nil, nil
	}
	item := it.Item()
	if v, err = item.ValueCopy(nil); err != nil {
		return nil, nil, err
	}
	return item.KeyCopy(nil), v, nil
}

// blockReader reads the IDs under a cursor's prefix, in its direction,
// from the keys whose ranges meet [start, end): a block's IDs outside
// it are skipped.
type blockReader struct {
	c                  *cursor
	lowest, start, end string
	skip               string   // a key already read (the covering block)
	buf                []string // the current key's IDs, in the cursor's direction, unread
	done               bool
}

// peek returns the next ID, without consuming it.
func (b *blockReader) peek() (string, bool, error) {
	for len(b.buf) == 0 {
		if b.done {
			return "", false, nil
		}
		if err := b.load(); err != nil {
			return "", false, err
		}
	}
	return b.buf[0], true, nil
}

func (b *blockReader) next() { b.buf = b.buf[1:] }

// trimFront drops the buffered IDs outside [start, end) (the buffer is
// ascending: only forward reads call it).
func (b *blockReader) trimFront() {
	i := 0
	for i < len(b.buf) && b.buf[i] < b.start {
		i++
	}
	b.buf = b.buf[i:]
	if b.end != "" {
		j := 0
		for j < len(b.buf) && b.buf[j] < b.end {
			j++
		}
		b.buf = b.buf[:j]
	}
}

// load reads the cursor's next key into buf, or sets done.
func (b *blockReader) load() error {
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.it == nil {
		return errTxDone
	}
	it := c.it
	if !c.started {
		c.started = true
		if !c.reverse {
			it.Seek(append(slices.Clip(c.prefix), b.start...))
		} else {
			// A reverse Seek lands on the greatest key <= the seek key:
			// skip that key if it is the (exclusive) upper bound itself
			// (a key of ID end holds nothing below end).
			upper := successor(c.prefix)
			if b.end != "" {
				upper = append(slices.Clip(c.prefix), b.end...)
			}
			for it.Seek(upper); it.Valid() && bytes.Compare(it.Item().Key(), upper) >= 0; {
				it.Next()
			}
		}
	} else {
		it.Next()
	}
	for ; it.ValidForPrefix(c.prefix); it.Next() {
		item := it.Item()
		k := item.Key()
		first := k[len(c.prefix):]
		if !c.reverse {
			if b.end != "" && string(first) >= b.end {
				break
			}
			if string(k) == b.skip {
				continue
			}
		} else if string(first) < b.lowest {
			break
		}
		var ids []string
		err := item.Value(func(v []byte) error {
			var err error
			ids, err = decodePostings(b.buf[:0], k, string(first), v)
			return err
		})
		if err != nil {
			return err
		}
		if !c.reverse {
			b.buf = ids
			b.trimFront()
			if len(b.buf) > 0 {
				return nil
			}
			continue
		}
		// Descending, within [start, end).
		slices.Reverse(ids)
		i := 0
		for i < len(ids) && b.end != "" && ids[i] >= b.end {
			i++
		}
		j := i
		for j < len(ids) && ids[j] >= b.start {
			j++
		}
		b.buf = ids[i:j]
		if string(first) < b.start {
			// No key below this one holds an ID in range.
			b.done = true
			return nil
		}
		if len(b.buf) > 0 {
			return nil
		}
	}
	b.done = true
	return nil
}

// hasPosting reports whether Badger holds the posting id under prefix,
// with a reverse iterator of the caller's.
func hasPosting(it *badger.Iterator, prefix []byte, id string) (bool, error) {
	k, v, err := seekCovering(it, prefix, id)
	if err != nil || k == nil {
		return false, err
	}
	first := string(k[len(prefix):])
	if first == id {
		return true, nil
	}
	if len(v) == 0 || first > id {
		return false, nil
	}
	ids, err := decodePostings(nil, k, first, v)
	if err != nil {
		return false, err
	}
	_, found := slices.BinarySearch(ids, id)
	return found, nil
}
