package badgerstore

import (
	"sync"

	"github.com/walletledger/ledger"
)

// The running totals live in memory. The Store is the only writer of its
// directory (it holds it locked) and runs its Updates one at a time, so
// it knows every total's latest value without reading Badger: an entry
// reads no total and, in the common case, writes none either. A total an
// Update changes is written to Badger only when its value cannot be
// rebuilt from the entries (see [tx.classify]): a wallet's first total,
// a change of the held amount, or a value that no entry of the same
// commit records. Every other change is deferred: the total is marked
// dirty, and the change feed's entry change, written in the same commit
// as the entry, records where to rebuild it from. A checkpoint (see
// checkpoint.go) writes the dirty totals and the sequence number up to
// which Badger's totals are complete; Open rebuilds the later ones from
// the records the feed names after it.
//
// Views read the totals of their snapshot: each committed change of a
// total is a version tagged with the generation of the commit, and a
// View reads the newest version no younger than the generation it
// started at. Older versions are kept while a View may read them.

// memTotals is the Store's totals in memory. Its generation counts the
// commits that changed what a View may read (totals, or the totals
// Badger holds); a View records the generation it started at.
//
// Locking: snapMu is held by a View while it takes its snapshot and
// generation, and by the writer while it commits and applies its totals,
// so a View's snapshot and generation always agree. mu guards vals (the
// writer reads it without the lock: it is the only one that changes
// it), viewsMu the count of Views by generation.
type memTotals struct {
	snapMu sync.Mutex
	gen    uint64 // guarded by snapMu; read by the writer freely

	mu   sync.RWMutex
	vals map[string]*memTotal

	viewsMu sync.Mutex
	views   map[uint64]int

	// Owned by the writer (under Store.writeMu).
	dirty []string // keys of the totals Badger does not hold as they are
	clean int      // totals in vals that are not dirty
	max   int      // clean totals to keep; -1 keeps all
}

// memTotal is one total in memory: its latest version and the older ones
// a View may still read.
type memTotal struct {
	cur totalVersion
	old []totalVersion // oldest first, all older than cur
	// dirty is set while Badger does not hold cur; persisted is the
	// generation from which every snapshot holds cur in Badger.
	dirty     bool
	persisted uint64
}

// totalVersion is a total as of a generation: exists is false for a
// total known not to be stored.
type totalVersion struct {
	gen    uint64
	val    ledger.Total
	exists bool
}

func newMemTotals(max int) *memTotals {
	return &memTotals{vals: make(map[string]*memTotal), views: make(map[uint64]int), max: max}
}

// latest returns the latest version of the total under k and whether it
// is in memory. Only the writer calls it.
func (m *memTotals) latest(k []byte) (totalVersion, bool) {
	e, ok := m.vals[string(k)]
	if !ok {
		return totalVersion{}, false
	}
	return e.cur, true
}

// at returns the total under k as a View of generation gen reads it, and
// false if memory cannot tell: the View then reads its snapshot, which
// holds the total as of gen (a total not in memory, or in memory only
// from a later generation, was not changed under deferral since gen).
func (m *memTotals) at(k []byte, gen uint64) (totalVersion, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.vals[string(k)]
	if !ok {
		return totalVersion{}, false
	}
	if e.cur.gen <= gen {
		return e.cur, true
	}
	for i := len(e.old) - 1; i >= 0; i-- {
		if e.old[i].gen <= gen {
			return e.old[i], true
		}
	}
	return totalVersion{}, false
}

// load keeps a total the writer read from Badger, where it is as the
// latest generation holds it.
func (m *memTotals) load(k []byte, v ledger.Total, exists bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vals[string(k)]; ok {
		return
	}
	m.vals[string(k)] = &memTotal{cur: totalVersion{gen: m.gen, val: v, exists: exists}, persisted: m.gen}
	m.clean++
}

// beginView registers a View: open takes its snapshot. It returns the
// generation the snapshot agrees with; endView unregisters it.
func (m *memTotals) beginView(open func()) uint64 {
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	gen := m.gen
	m.viewsMu.Lock()
	m.views[gen]++
	m.viewsMu.Unlock()
	open()
	return gen
}

func (m *memTotals) endView(gen uint64) {
	m.viewsMu.Lock()
	defer m.viewsMu.Unlock()
	if m.views[gen]--; m.views[gen] <= 0 {
		delete(m.views, gen)
	}
}

// viewRange returns the generations of the oldest and the newest View
// in flight, and false if there is none.
func (m *memTotals) viewRange() (oldest, newest uint64, viewing bool) {
	m.viewsMu.Lock()
	defer m.viewsMu.Unlock()
	for g := range m.views {
		if !viewing || g < oldest {
			oldest = g
		}
		if !viewing || g > newest {
			newest = g
		}
		viewing = true
	}
	return oldest, newest, viewing
}

// written is a total a commit changed: its key, its value and whether
// Badger now holds it (written through) or not (deferred); absent, for a
// rebuild, marks a total known not to be stored.
type written struct {
	key     string
	val     ledger.Total
	through bool
	absent  bool
}

// apply makes a commit's totals the latest, as the next generation. The
// caller holds snapMu, around the commit and this.
func (m *memTotals) apply(ws []written) {
	oldest, newest, viewing := m.viewRange()
	next := m.gen + 1
	m.mu.Lock()
	for _, w := range ws {
		e, ok := m.vals[w.key]
		if !ok {
			e = &memTotal{}
			m.vals[w.key] = e
			m.clean++
		} else {
			// A View of cur's generation or later reads cur until now.
			if viewing && newest >= e.cur.gen {
				e.old = append(e.old, e.cur)
			}
			e.old = prune(e.old, next, oldest, viewing)
		}
		e.cur = totalVersion{gen: next, val: w.val, exists: !w.absent}
		switch {
		case w.through && e.dirty:
			// Still on the dirty list: a checkpoint writes it again,
			// which is harmless.
			e.dirty = false
			e.persisted = next
			m.clean++
		case w.through:
			e.persisted = next
		case !e.dirty:
			e.dirty = true
			m.clean--
			m.dirty = append(m.dirty, w.key)
		}
	}
	m.mu.Unlock()
	m.gen = next
	if m.max >= 0 && m.clean > m.max {
		m.evict(oldest, viewing)
	}
}

// prune drops the versions in old (each valid until the next, the last
// until generation next) that no View in flight can read: a View reads
// the newest version no younger than its generation, and every View in
// flight is of generation oldest or later.
func prune(old []totalVersion, next, oldest uint64, viewing bool) []totalVersion {
	if !viewing {
		return old[:0]
	}
	keep := len(old)
	for i := range old {
		until := next
		if i+1 < len(old) {
			until = old[i+1].gen
		}
		if until > oldest {
			keep = i
			break
		}
	}
	if keep == 0 {
		return old
	}
	n := copy(old, old[keep:])
	clear(old[n:])
	return old[:n]
}

// evict drops clean totals, with no older versions, that every View in
// flight would read from its snapshot alike, until at most max clean
// totals are left (or none can go).
func (m *memTotals) evict(oldest uint64, viewing bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.vals {
		if m.clean <= m.max-m.max/8 {
			return
		}
		if e.dirty || len(e.old) > 0 || viewing && e.persisted > oldest {
			continue
		}
		delete(m.vals, k)
		m.clean--
	}
}

// persist records that Badger holds, from generation gen on, the totals
// under keys as they are now (a checkpoint wrote them), and advances the
// generation past the checkpoint's commit. The caller holds snapMu.
func (m *memTotals) persist(keys []string) {
	next := m.gen + 1
	m.mu.Lock()
	for _, k := range keys {
		if e, ok := m.vals[k]; ok && e.dirty {
			e.dirty = false
			e.persisted = next
			m.clean++
		}
	}
	m.mu.Unlock()
	m.gen = next
}
