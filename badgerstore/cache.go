package badgerstore

import (
	"sync"

	"github.com/walletledger/ledger"
)

// totalsCache keeps wallet totals that read transactions looked up, so
// that reading a wallet costs a map lookup rather than a walk of every
// level of Badger's LSM tree, where a total that is rewritten on every
// entry leaves versions in many tables. Only View uses it; Update reads
// Badger, so that Badger's conflict detection sees every read.
//
// A View may use the cache only while it agrees with the View's
// snapshot. Commits that write totals announce themselves before they
// commit (committing) and, once committed, drop the totals they wrote
// and advance gen. A View that starts while no such commit is in
// progress sees, in its snapshot, exactly the totals the cache holds for
// its gen; it uses the cache as long as gen has not moved, and fills it
// with what it read from its snapshot under the same condition.
type totalsCache struct {
	mu         sync.RWMutex
	vals       map[string]cachedTotal
	max        int
	gen        uint64
	committing int
}

type cachedTotal struct {
	val    ledger.Total
	exists bool
}

func newTotalsCache(max int) *totalsCache {
	if max <= 0 {
		return nil
	}
	return &totalsCache{vals: make(map[string]cachedTotal), max: max}
}

// snapshot is called as a View starts, with open creating the View's
// Badger transaction; it returns the generation the snapshot agrees with
// and whether the cache may be used at all.
func (c *totalsCache) snapshot(open func()) (gen uint64, ok bool) {
	if c == nil {
		open()
		return 0, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	open()
	return c.gen, c.committing == 0
}

// get returns the cached total under key if the cache still agrees with
// a snapshot of generation gen.
func (c *totalsCache) get(gen uint64, key []byte) (cachedTotal, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.gen != gen {
		return cachedTotal{}, false
	}
	v, ok := c.vals[string(key)]
	return v, ok
}

// fill caches a total read from a snapshot of generation gen, if that is
// still the latest.
func (c *totalsCache) fill(gen uint64, key []byte, v cachedTotal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.committing != 0 {
		return
	}
	if len(c.vals) >= c.max {
		// Evict an eighth (at least one), whichever keys the map yields
		// first.
		n := max(c.max/8, 1)
		for k := range c.vals {
			if n--; n < 0 {
				break
			}
			delete(c.vals, k)
		}
	}
	c.vals[string(key)] = v
}

// begin announces a commit that writes totals; end, called once it has
// committed or failed, drops the keys it wrote.
func (c *totalsCache) begin() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.committing++
	c.mu.Unlock()
}

func (c *totalsCache) end(keys [][]byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		delete(c.vals, string(k))
	}
	c.gen++
	c.committing--
}
