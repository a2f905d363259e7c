package badgerstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Index postings in blocks (format 7).
//
// The by-user (u), by-authority (a) and by-(authority, user) (p)
// indexes name, under one prefix per user (and currency), authority or
// pair, the IDs of its entries. Up to format 6 each entry had a key in
// each, prefix ID with an empty value: three keys at random places in
// Badger's memtable for every entry, which cost a write more than its
// record did. Since format 7 a key under an index prefix is prefix ID,
// and its value is either empty (a single posting: that ID, as format 6
// wrote them, and as a posting that cannot wait is still written) or a
// block: the IDs of several entries, ascending, of which the key's ID is
// the first. The ranges [first, last] of the keys under one prefix never
// overlap, so a scan reads them in key order (see [tx.postings]).
//
// The postings of the entries committed since the last checkpoint live
// in memory (memPostings), each list ascending and tagged, like the
// totals, with the generation of its commit; the checkpoint writes each
// prefix's as one block before it moves the checkpoint, so that after a
// crash Open finds every posting it lacks among the entries the feed
// names after the checkpoint. A scan merges Badger's keys with the
// postings in memory that its transaction may see, by ID, dropping
// repeats (a posting flushed stays in memory until no View older than
// the flush can need it).
//
// A posting stays in memory only when nothing else can find it after a
// crash: its entry's ID is above every ID stored (so that the list stays
// ascending and above the prefix's keys in Badger), its entry change is
// in the same commit (so that the feed names it), and the commit does
// not move the checkpoint past itself. Any other posting (an import's
// older ID, an entry a store test inserts without its change) is written
// to Badger in its commit, inside the block whose range holds it, or as
// a single key; the prefix's postings in memory above it go with it.
//
// A block is encoded as
//
//	version   byte (blockVersion)
//	count     uvarint: the IDs after the first
//	each      uvarint bytes shared with the ID before, then the rest
//	          as a string
//	checksum  4 bytes: the CRC-32C, big-endian, of the key and every
//	          byte before it
const blockVersion = 1

// checkpointPostings is how many postings may wait in memory: a commit
// that leaves more checkpoints. 48 to 100 bytes each with their IDs
// (measured: see the package doc), so at most about 13 MB.
const checkpointPostings = 1 << 17

// posting is one entry's ID in an index, with the generation of the
// commit that made it visible.
type posting struct {
	id  string
	gen uint64
}

// postingList is one index prefix's postings in memory, ascending by ID
// and so by generation. ids[:flushed] are in Badger for every snapshot
// from generation flushGen on. A View reads the slice it finds without
// the lock: the writer only appends past every length it published, or
// publishes a new slice.
type postingList struct {
	ids      []posting
	flushed  int
	flushGen uint64
}

// memPostings holds the postings not yet in Badger, and those flushed
// that a View in flight may still need. mu guards lists and users for
// Views; the writer (holding writeMu) reads them without it and changes
// them under it.
type memPostings struct {
	mu    sync.RWMutex
	lists map[string]*postingList
	// users maps a user to the currencies of its by-user lists in
	// memory ("" for the default currency), for userCurrencies.
	users map[string][]string

	// Owned by the writer.
	unflushed int      // postings not in Badger
	dirty     []string // prefixes with unflushed postings
	trim      []string // prefixes with flushed postings still in memory
}

func newMemPostings() *memPostings {
	return &memPostings{lists: make(map[string]*postingList), users: make(map[string][]string)}
}

// visible returns the postings under prefix a transaction may see: every
// one for the writer (all), those of generation gen or older for a View.
func (m *memPostings) visible(prefix []byte, gen uint64, all bool) []posting {
	m.mu.RLock()
	l := m.lists[string(prefix)]
	var ids []posting
	if l != nil {
		ids = l.ids
	}
	m.mu.RUnlock()
	if all || len(ids) == 0 || ids[len(ids)-1].gen <= gen {
		return ids
	}
	return ids[:sort.Search(len(ids), func(i int) bool { return ids[i].gen > gen })]
}

// userCurrencies returns the currencies of the user's by-user lists.
func (m *memPostings) userCurrencies(user string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.users[user])
}

// unflushedOf returns the postings under prefix not in Badger.
func (m *memPostings) unflushedOf(prefix string) []posting {
	if l := m.lists[prefix]; l != nil {
		return l.ids[l.flushed:]
	}
	return nil
}

// pendingPosting is a posting an Update's InsertEntry made: its entry's
// ID under an index prefix, and for a by-user posting the user and
// currency.
type pendingPosting struct {
	prefix         string
	id             string
	user, currency string
	byUser         bool
}

// add appends, as generation gen, postings above every ID in their
// lists. The caller holds snapMu (gen is the commit's).
func (m *memPostings) add(ps []pendingPosting, gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range ps {
		p := &ps[i]
		l := m.lists[p.prefix]
		if l == nil {
			l = &postingList{ids: make([]posting, 0, 8)}
			m.lists[p.prefix] = l
			if p.byUser {
				m.users[p.user] = append(m.users[p.user], p.currency)
			}
		}
		if l.flushed == len(l.ids) {
			m.dirty = append(m.dirty, p.prefix)
		}
		l.ids = append(l.ids, posting{id: p.id, gen: gen})
		m.unflushed++
	}
}

// markFlushed records that Badger holds, from generation gen on, every
// posting under prefixes. The caller holds snapMu.
func (m *memPostings) markFlushed(prefixes []string, gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range prefixes {
		l := m.lists[p]
		if l == nil || l.flushed == len(l.ids) {
			continue
		}
		if l.flushed == 0 {
			m.trim = append(m.trim, p)
		}
		m.unflushed -= len(l.ids) - l.flushed
		l.flushed, l.flushGen = len(l.ids), gen
	}
}

// drop removes from memory the flushed postings no View can need: every
// View in flight is of generation oldest or later (none, unless
// viewing). The caller holds snapMu, so that no View starts meanwhile.
func (m *memPostings) drop(oldest uint64, viewing bool) {
	if len(m.trim) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := m.trim[:0]
	for _, p := range m.trim {
		l := m.lists[p]
		switch {
		case l == nil || l.flushed == 0:
			continue
		case viewing && oldest < l.flushGen:
			keep = append(keep, p)
			continue
		case l.flushed == len(l.ids):
			delete(m.lists, p)
			m.forgetUser(p)
			continue
		}
		// A new slice: Views may be reading the old one.
		l.ids = slices.Clone(l.ids[l.flushed:])
		l.flushed = 0
	}
	clear(m.trim[len(keep):])
	m.trim = keep
}

// forgetUser removes the currency of the by-user prefix p from users.
// The caller holds mu.
func (m *memPostings) forgetUser(p string) {
	if p == "" || p[0] != prefixUser {
		return
	}
	user, rest, ok := cutLP([]byte(p[1:]))
	if !ok {
		return
	}
	cur := ""
	if len(rest) > 0 {
		c, _, ok := cutLP(rest)
		if !ok {
			return
		}
		cur = string(c)
	}
	curs := m.users[string(user)]
	if i := slices.Index(curs, cur); i >= 0 {
		curs = slices.Delete(curs, i, i+1)
	}
	if len(curs) == 0 {
		delete(m.users, string(user))
		return
	}
	m.users[string(user)] = curs
}

// entryPostings returns the index prefixes an entry of the user and the
// authority in currency is posted under: by user, by authority, by
// (authority, user).
func entryPostings(id, authority, user, currency string) [3]pendingPosting {
	// One buffer on the stack for the three keys: a string each.
	var buf [128]byte
	up := appendKey(buf[:0], prefixUser, user, "")
	if currency != "" {
		up = appendKey(buf[:0], prefixUser, user, currency, "")
	}
	p := [3]pendingPosting{{prefix: string(up), id: id, user: user, currency: currency, byUser: true}}
	p[1] = pendingPosting{prefix: string(appendKey(buf[:0], prefixAuth, authority, "")), id: id}
	p[2] = pendingPosting{prefix: string(appendKey(buf[:0], prefixPair, authority, user, "")), id: id}
	return p
}

// encodeBlock returns the value of the block of ids (ascending, more
// than one) under the key prefix ids[0].
func encodeBlock(prefix []byte, ids []string) []byte {
	n := 1 + binary.MaxVarintLen64 + checksumLen
	for _, id := range ids[1:] {
		n += 2*binary.MaxVarintLen64 + len(id)
	}
	b := make([]byte, 0, n)
	b = append(b, blockVersion)
	b = binary.AppendUvarint(b, uint64(len(ids)-1))
	for i, id := range ids[1:] {
		prev := ids[i]
		shared := 0
		for shared < len(prev) && shared < len(id) && prev[shared] == id[shared] {
			shared++
		}
		b = binary.AppendUvarint(b, uint64(shared))
		b = appendString(b, id[shared:])
	}
	sum := crc32.Update(crc32.Update(0, castagnoli, prefix), castagnoli, []byte(ids[0]))
	sum = crc32.Update(sum, castagnoli, b)
	return binary.BigEndian.AppendUint32(b, sum)
}

// decodePostings returns the IDs the key k (prefix first, then first)
// holds with value v: first alone for a single posting, or its block,
// appended to dst.
func decodePostings(dst []string, k []byte, first string, v []byte) ([]string, error) {
	dst = append(dst, first)
	if len(v) == 0 {
		return dst, nil
	}
	if len(v) < 1+checksumLen {
		return nil, fmt.Errorf("%w: index block %q: too short", errCorrupt, k)
	}
	body, sum := v[:len(v)-checksumLen], binary.BigEndian.Uint32(v[len(v)-checksumLen:])
	if crc32.Update(crc32.Update(0, castagnoli, k), castagnoli, body) != sum {
		return nil, fmt.Errorf("%w: index block %q: checksum mismatch", errCorrupt, k)
	}
	if body[0] != blockVersion {
		return nil, fmt.Errorf("%w: index block %q: version %d", errCorrupt, k, body[0])
	}
	d := decoder{b: body[1:]}
	n := d.uvarint()
	if n == 0 || n > uint64(len(body)) {
		return nil, fmt.Errorf("%w: index block %q: count %d", errCorrupt, k, n)
	}
	prev := first
	var sb strings.Builder
	for range n {
		shared := d.uvarint()
		rest := d.bytes()
		if d.err != nil {
			break
		}
		if shared > uint64(len(prev)) {
			return nil, fmt.Errorf("%w: index block %q: shares %d bytes of %q", errCorrupt, k, shared, prev)
		}
		sb.Reset()
		sb.Grow(int(shared) + len(rest))
		sb.WriteString(prev[:shared])
		sb.Write(rest)
		id := sb.String()
		if id <= prev {
			return nil, fmt.Errorf("%w: index block %q: %q after %q", errCorrupt, k, id, prev)
		}
		dst = append(dst, id)
		prev = id
	}
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("index block %q: %w", k, err)
	}
	return dst, nil
}
