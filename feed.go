package ledger

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"time"
)

// feed wakes the ledger's followers (see [ChangeQuery].Follow) when a
// commit wrote changes, and when the ledger closes.
type feed struct {
	mu      sync.Mutex
	ch      chan struct{} // closed at the next commit with changes
	waiting bool          // someone holds ch
	closed  chan struct{} // closed by Close
	once    sync.Once
}

func (f *feed) init() {
	f.ch = make(chan struct{})
	f.closed = make(chan struct{})
}

// wait returns a channel that is closed once a commit with changes
// follows this call.
func (f *feed) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waiting = true
	return f.ch
}

// notify wakes whoever waits: a commit with changes is visible.
func (f *feed) notify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.waiting {
		close(f.ch)
		f.ch, f.waiting = make(chan struct{}), false
	}
}

func (f *feed) close() { f.once.Do(func() { close(f.closed) }) }

// Changes yields the ledger's changes in feed order, from the first one
// or after q.After: every committed write makes its changes (an entry
// written, two for a transfer; an item used; limits set; a hold placed,
// released or expired; a capture is its entry), each exactly once, and
// nothing refused or rolled back appears. A change's Cursor sorts after
// those of every change that committed before it, so a reader that
// resumes with After = the last cursor it handled gets every later
// change exactly once, also after its own crash (cursors are as durable
// as the store), and also on a store shared by many processes.
//
// Without q.Follow the sequence ends after the last stored change (or
// q.Limit changes). With it, it then waits and yields new changes as
// they commit: at once for this ledger's own writes, and, on a store
// other processes write to ([SharedStore]), within its poll interval
// for theirs. It ends when ctx does, yielding ctx's error, or at
// [Ledger.Close], yielding [ErrClosed]. Changes are read a page at a
// time (see [WithPageSize]), each page in a store transaction of its
// own, and no transaction stays open while the caller works or while it
// waits. A negative Limit, or an After that is not a cursor, is
// [ErrInvalid], yielded once.
func (l *Ledger) Changes(ctx context.Context, q ChangeQuery) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		if q.Limit < 0 {
			yield(Change{}, invalid("Limit", "negative (%d)", q.Limit))
			return
		}
		if q.After != "" && !isCursor(q.After) {
			yield(Change{}, invalid("After", "%q is not a cursor", truncated(q.After)))
			return
		}
		var poll <-chan time.Time
		if s, ok := l.store.(SharedStore); ok && q.Follow && s.PollInterval() > 0 {
			t := time.NewTicker(s.PollInterval())
			defer t.Stop()
			poll = t.C
		}
		after, n := q.After, 0
		for {
			// Taken before the read, so that a commit between the read
			// and the wait still wakes it.
			woken := l.feed.wait()
			size := l.cfg.pageSize
			if q.Limit > 0 {
				size = min(size, q.Limit-n)
			}
			page, err := l.changePage(ctx, after, size)
			if err != nil {
				yield(Change{}, err)
				return
			}
			for _, c := range page {
				if !yield(c, nil) {
					return
				}
				after, n = c.Cursor, n+1
				if q.Limit > 0 && n == q.Limit {
					return
				}
			}
			if len(page) == size {
				continue
			}
			if !q.Follow {
				return
			}
			select {
			case <-woken:
			case <-poll:
			case <-ctx.Done():
				yield(Change{}, ctx.Err())
				return
			case <-l.feed.closed:
				yield(Change{}, ErrClosed)
				return
			}
		}
	}
}

// isCursor reports whether s has the form of a store's cursor.
func isCursor(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// changePage reads up to n changes after cursor after, with the records
// they name, in one store transaction.
func (l *Ledger) changePage(ctx context.Context, after string, n int) ([]Change, error) {
	if err := l.enter(ctx); err != nil {
		return nil, err
	}
	defer l.mu.RUnlock()
	var out []Change
	err := l.storeView(ctx, "changes", func(tx ReadTx) error {
		out = out[:0]
		var recs []ChangeRecord
		for c, err := range tx.Changes(ctx, after) {
			if err != nil {
				return err
			}
			recs = append(recs, c)
			if len(recs) == n {
				break
			}
		}
		entries, err := pageEntries(ctx, tx, recs)
		if err != nil {
			return err
		}
		for _, r := range recs {
			c, err := buildChange(ctx, tx, r, entries)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// pageEntries reads the entries that a page of changes names, when
// they lie close together, with one scan of their ID range instead of a
// read each (a round trip each on a database): the entries of recent
// changes are the recent entries. It stops scanning once the range
// proves sparse, and the rest are read one by one.
func pageEntries(ctx context.Context, tx ReadTx, recs []ChangeRecord) (map[string]Record, error) {
	var refs []string
	for _, r := range recs {
		if r.Kind == ChangeEntry || r.Kind == ChangeItemUsed {
			refs = append(refs, r.Ref)
		}
	}
	if len(refs) < 2 {
		return nil, nil
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)
	found := make(map[string]Record, len(refs))
	scanned := 0
	for e, err := range tx.Entries(ctx, Scan{Start: refs[0], End: refs[len(refs)-1] + "\x00"}) {
		if err != nil {
			return nil, err
		}
		if _, ok := slices.BinarySearch(refs, e.ID); ok {
			found[e.ID] = e
		}
		if scanned++; scanned > 2*len(refs)+16 {
			break
		}
	}
	return found, nil
}

// buildChange turns a change record into the change, with the record it
// names as the change left it.
func buildChange(ctx context.Context, tx ReadTx, r ChangeRecord, entries map[string]Record) (Change, error) {
	c := Change{Cursor: r.Cursor, Kind: r.Kind, At: r.At, AuthorityID: r.AuthorityID}
	switch r.Kind {
	case ChangeEntry, ChangeItemUsed:
		rec, ok := entries[r.Ref]
		var err error
		if ok {
			// Two changes of a page may name one entry (its writing
			// and its item's use): each gets its own copy.
			rec.Entry.Item, rec.Entry.Metadata = rec.Entry.Item.clone(), maps.Clone(rec.Entry.Metadata)
		} else {
			rec, err = tx.Entry(ctx, r.Ref)
		}
		if isNotFound(err) {
			return c, fmt.Errorf("ledger: change %s names entry %q, which does not exist: %w", r.Cursor, r.Ref, ErrInconsistent)
		}
		if err != nil {
			return c, err
		}
		e := rec.Entry
		// What later changes did to the entry is theirs: an entry
		// change shows it as written. (An entry whose item was used can
		// be neither reversed nor revoked.)
		e.ReversedBy = ""
		if e.Item != nil {
			e.Item.Revoked = false
			if r.Kind == ChangeEntry {
				e.Item.Used, e.Item.UsedOn, e.Item.UsedBy = false, time.Time{}, ""
			}
		}
		c.Entry = &e
	case ChangeHoldPlaced, ChangeHoldReleased, ChangeHoldExpired:
		rec, err := tx.Hold(ctx, r.Ref)
		if isNotFound(err) {
			return c, fmt.Errorf("ledger: change %s names hold %q, which does not exist: %w", r.Cursor, r.Ref, ErrInconsistent)
		}
		if err != nil {
			return c, err
		}
		h := rec.Hold
		if r.Kind == ChangeHoldPlaced {
			h.State, h.ClosedOn, h.EntryID = HoldActive, time.Time{}, ""
		}
		c.Hold = &h
	case ChangeLimits:
		if r.Limits == nil {
			return c, fmt.Errorf("ledger: limits change %s without limits: %w", r.Cursor, ErrInconsistent)
		}
		c.Limits = cloneLimits(r.Limits)
	default:
		return c, fmt.Errorf("ledger: change %s of unknown kind %q: %w", r.Cursor, r.Kind, ErrInconsistent)
	}
	return c, nil
}
