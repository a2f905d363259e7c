package ledger

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Entry IDs are 24 lowercase hex digits: 16 of CreatedOn in Unix
// nanoseconds, then 8 of a sequence number. Within one ledger the
// sequence starts at a random value below 2^31 on each new nanosecond and
// counts up within it, so IDs increase strictly and stay unique across
// processes writing one store. A ledger that commits in several lanes (a
// [ConcurrentStore]) has a generator per lane, and they share the last
// ID any of them handed out: each new ID sorts after it, so IDs increase
// in the order they are handed out across lanes too. Because an ID
// starts with its time, a time bound is an ID bound: queries by time
// seek instead of scanning.
const idLen = 24

// idGen hands out entry IDs in increasing order. It is not safe for
// concurrent use: only the committer's current leader calls it.
type idGen struct {
	nanos int64
	seq   uint32
	last  string // the ID of (nanos, seq), once next or observe set them
	// shared is the lanes' high-water mark; nil with one lane.
	shared *idMark
}

// markStep bounds the step by which a lane continues after the mark.
const markStep = 1 << 24

// idMark is the greatest ID a ledger's lanes handed out.
type idMark struct {
	mu    sync.Mutex
	nanos int64
	seq   uint32
}

// observe makes the generator continue after id, if id is a valid entry
// ID later than the last one handed out.
func (g *idGen) observe(id string) {
	if id <= g.last {
		// IDs sort as their numbers do: nothing later. (Most wallets'
		// last entries were handed out here, and need no parsing.)
		return
	}
	n, s, ok := ParseEntryID(id)
	if ok && (n > g.nanos || n == g.nanos && s > g.seq) {
		g.nanos, g.seq, g.last = n, s, id
	}
}

// next returns a new ID for an entry created at now, and the CreatedOn
// that the ID encodes: now, or the previous entry's time if the clock is
// behind it.
func (g *idGen) next(now time.Time) (string, time.Time) {
	n := unixNano(now)
	switch {
	case n > g.nanos:
		g.nanos, g.seq = n, rand.Uint32()>>1
	case g.seq < math.MaxUint32:
		g.seq++
	case g.nanos < math.MaxInt64:
		g.nanos, g.seq = g.nanos+1, rand.Uint32()>>1
	default:
		// 2^31 entries or more at the last instant IDs encode: start
		// again at its first sequence number rather than overflow.
		// IDs would repeat, and the store refuses the duplicate.
		g.seq = 0
	}
	if m := g.shared; m != nil {
		m.mu.Lock()
		if g.nanos < m.nanos || g.nanos == m.nanos && g.seq <= m.seq {
			// Another lane, or a group since rolled back, handed out a
			// later ID: continue after it, at its time (that of a lane
			// whose clock read came later), by a random step, not by
			// one: another process that wrote the ID the mark holds, or
			// observed it, counts on from it by one, and must not meet
			// this one.
			step := 1 + rand.Uint32N(markStep)
			switch {
			case m.seq <= math.MaxUint32-step:
				g.nanos, g.seq = m.nanos, m.seq+step
			case m.nanos < math.MaxInt64:
				g.nanos, g.seq = m.nanos+1, rand.Uint32()>>1
			}
		}
		m.nanos, m.seq = g.nanos, g.seq
		m.mu.Unlock()
	}
	g.last = FormatEntryID(g.nanos, g.seq)
	return g.last, time.Unix(0, g.nanos).UTC()
}

// FormatEntryID returns the entry ID of an entry created nanos Unix
// nanoseconds into the epoch with sequence number seq: 24 lowercase hex
// digits, which sort as (nanos, seq) do. Stores that keep IDs compactly
// use it with [ParseEntryID]; applications never need to.
func FormatEntryID(nanos int64, seq uint32) string {
	var raw [12]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(nanos))
	binary.BigEndian.PutUint32(raw[8:], seq)
	var out [idLen]byte
	hex.Encode(out[:], raw[:])
	return string(out[:])
}

// ParseEntryID splits an entry ID into the Unix nanoseconds of its
// CreatedOn and its sequence number; ok is false if id is not an entry ID
// as [FormatEntryID] makes them.
func ParseEntryID(id string) (nanos int64, seq uint32, ok bool) {
	if len(id) != idLen {
		return 0, 0, false
	}
	var hi, lo uint64
	var bad byte
	for i := range 16 {
		d := hexDigit[id[i]]
		bad |= d
		hi = hi<<4 | uint64(d&0xf)
	}
	for i := 16; i < idLen; i++ {
		d := hexDigit[id[i]]
		bad |= d
		lo = lo<<4 | uint64(d&0xf)
	}
	if bad&notHex != 0 || hi > math.MaxInt64 {
		return 0, 0, false
	}
	return int64(hi), uint32(lo), true
}

// hexDigit maps a lowercase hex digit to its value and every other byte
// to notHex.
var hexDigit = func() (t [256]byte) {
	for i := range t {
		t[i] = notHex
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

const notHex = 0x10

// timeBound returns the ID prefix of instant t: every ID of an entry
// whose CreatedOn is before t sorts below it, and every other ID sorts
// above it. Past the last instant IDs encode, the bound sorts above every
// ID, so that entries stamped with that instant (see unixNano) are
// before it, as their CreatedOn is.
func timeBound(t time.Time) string {
	n := uint64(unixNano(t))
	if t.After(maxTime) {
		n = math.MaxInt64 + 1
	}
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], n)
	return hex.EncodeToString(raw[:])
}

var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(0, math.MaxInt64)
)

// unixNano is t.UnixNano clamped to the range IDs can encode, 1970 to
// 2262.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return 0
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}
