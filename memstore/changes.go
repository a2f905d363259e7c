package memstore

import (
	"context"
	"iter"
	"strings"
	"time"

	"github.com/walletledger/ledger"
)

// changeLog holds the change feed. A change's cursor is its sequence
// number, its position in the log plus one, which the log need not
// store: changes are only appended, one writer at a time, and a rollback
// removes only the changes its transaction appended, which are the last.
// So a committed change keeps its position, and a reader (who holds the
// store's lock) never sees an uncommitted one.
//
// Each change is a 24-byte change in chunks that hold no pointers (the
// collector does not scan them), and its kind and flags are one byte in
// a parallel chunk: 25 bytes a change. Limits, which few changes carry,
// are kept in limits; the kind, ref and time of the rare change in which
// one of them does not pack are kept in spill.
type changeLog struct {
	recs  []*[chunkSize]change
	kinds []*[chunkSize]uint8 // the kind code and the flags of recs[i][j]
	n     uint64              // changes in the log

	limits []*ledger.WalletLimits          // the store's copies, in the order of the changes that carry them
	spill  map[uint64]*ledger.ChangeRecord // by position: the Kind, At and Ref of a change flagged changeSpilled
}

// change is one stored change, 24 bytes.
type change struct {
	at  int64 // Unix nanoseconds; noTime for the zero time
	ref int64 // the ref, an entry or hold ID: its nanoseconds
	// seq is the ref's sequence number; for a change flagged
	// changeHasLimits, the position of its limits in changeLog.limits.
	seq  uint32
	auth uint32 // interned, or noName for ""
}

// The low bits of a change's kind byte are its kind's code, the others
// its flags.
const (
	changeKindMask = 7
	// changeNoRef: the ref is "".
	changeNoRef = 1 << 3
	// changeHasLimits: the change carries limits.
	changeHasLimits = 1 << 4
	// changeSpilled: the change's kind, ref and time are in
	// changeLog.spill, and at, ref and seq mean nothing (seq but for
	// changeHasLimits).
	changeSpilled = 1 << 5
)

// changeKinds maps kind codes to kinds; code 0 is for none (a spilled
// kind).
var changeKinds = [...]ledger.ChangeKind{
	1: ledger.ChangeEntry,
	2: ledger.ChangeItemUsed,
	3: ledger.ChangeLimits,
	4: ledger.ChangeHoldPlaced,
	5: ledger.ChangeHoldReleased,
	6: ledger.ChangeHoldExpired,
}

func kindCode(k ledger.ChangeKind) uint8 {
	for code, kind := range changeKinds {
		if code > 0 && kind == k {
			return uint8(code)
		}
	}
	return 0
}

// at returns the change at position pos and its kind byte.
func (l *changeLog) at(pos uint64) (*change, *uint8) {
	c, i := pos>>chunkShift, pos&(chunkSize-1)
	return &l.recs[c][i], &l.kinds[c][i]
}

// push adds a slot at the end of the log and returns its position.
func (l *changeLog) push() uint64 {
	if l.n>>chunkShift == uint64(len(l.recs)) {
		l.recs = append(l.recs, new([chunkSize]change))
		l.kinds = append(l.kinds, new([chunkSize]uint8))
	}
	l.n++
	return l.n - 1
}

// cursorLen is the length of a cursor: 16 lowercase hex digits, so that
// cursors sort bytewise as their sequence numbers do.
const cursorLen = 16

// cursor returns the cursor of the change at position pos.
func cursor(pos uint64) [cursorLen]byte {
	const digits = "0123456789abcdef"
	var b [cursorLen]byte
	v := pos + 1
	for i := cursorLen - 1; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return b
}

// seek returns the position of the first change whose cursor sorts after
// after, by binary search: after may be any string, not only a cursor.
func (l *changeLog) seek(after string) uint64 {
	lo, hi := uint64(0), l.n
	for lo < hi {
		m := lo + (hi-lo)/2
		if c := cursor(m); string(c[:]) > after {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// packTime returns t as Unix nanoseconds (noTime for the zero time), and
// false if it has none: out of the range int64 nanoseconds cover.
func packTime(t time.Time) (int64, bool) {
	if t.IsZero() {
		return noTime, true
	}
	n := t.UnixNano()
	return n, n != noTime && time.Unix(0, n).Equal(t)
}

// packRef returns ref as an entry ID's two numbers, and false if it is
// not an ID as ledger.FormatEntryID makes them (ParseEntryID accepts
// only those, so formatting the numbers gives ref back).
func packRef(ref string) (int64, uint32, bool) { return ledger.ParseEntryID(ref) }

func (t *tx) AppendChange(ctx context.Context, in ledger.ChangeRecord) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	s := t.s
	l := &s.changes
	pos := l.push()
	c, kind := l.at(pos)
	*c = change{auth: noName}
	*kind = kindCode(in.Kind)
	if in.AuthorityID != "" {
		c.auth = s.names.intern(in.AuthorityID)
	}
	at, atOK := packTime(in.At)
	ok := *kind != 0 && atOK
	c.at = at
	switch {
	case in.Ref == "":
		*kind |= changeNoRef
	case in.Limits == nil:
		var refOK bool
		c.ref, c.seq, refOK = packRef(in.Ref)
		ok = ok && refOK
	default:
		ok = false // seq holds the limits' position
	}
	if in.Limits != nil {
		lim := *in.Limits
		lim.UserID, lim.Currency = strings.Clone(lim.UserID), strings.Clone(lim.Currency)
		if lim.Cap != nil {
			cp := *lim.Cap
			lim.Cap = &cp
		}
		*kind |= changeHasLimits
		c.seq = uint32(len(l.limits))
		l.limits = append(l.limits, &lim)
	}
	if !ok {
		*kind |= changeSpilled
		if l.spill == nil {
			l.spill = make(map[uint64]*ledger.ChangeRecord)
		}
		l.spill[pos] = &ledger.ChangeRecord{Kind: ledger.ChangeKind(strings.Clone(string(in.Kind))), At: in.At.UTC(), Ref: strings.Clone(in.Ref)}
	}
	t.undo = append(t.undo, undo{kind: undoChange})
	return nil
}

// unappendChange undoes an AppendChange: it removes the last change.
func (s *Store) unappendChange() {
	l := &s.changes
	pos := l.n - 1
	c, kind := l.at(pos)
	if *kind&changeHasLimits != 0 {
		l.limits[len(l.limits)-1] = nil
		l.limits = l.limits[:len(l.limits)-1]
	}
	if *kind&changeSpilled != 0 {
		delete(l.spill, pos)
	}
	*c, *kind = change{}, 0
	l.n = pos
}

// changeRecord returns the change at position pos as a record its
// caller may modify.
func (s *Store) changeRecord(pos uint64) ledger.ChangeRecord {
	l := &s.changes
	c, kind := l.at(pos)
	cur := cursor(pos)
	out := ledger.ChangeRecord{Cursor: string(cur[:])}
	if c.auth != noName {
		out.AuthorityID = s.names.names[c.auth]
	}
	if *kind&changeSpilled != 0 {
		sp := l.spill[pos]
		out.Kind, out.At, out.Ref = sp.Kind, sp.At, sp.Ref
	} else {
		out.Kind = changeKinds[*kind&changeKindMask]
		if c.at != noTime {
			out.At = time.Unix(0, c.at).UTC()
		}
		if *kind&changeNoRef == 0 {
			out.Ref = ledger.FormatEntryID(c.ref, c.seq)
		}
	}
	if *kind&changeHasLimits != 0 {
		lim := *l.limits[c.seq]
		if lim.Cap != nil {
			cp := *lim.Cap
			lim.Cap = &cp
		}
		out.Limits = &lim
	}
	return out
}

func (t *tx) Changes(ctx context.Context, after string) iter.Seq2[ledger.ChangeRecord, error] {
	return func(yield func(ledger.ChangeRecord, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.ChangeRecord{}, err)
			return
		}
		l := &t.s.changes
		// l.n is read again at each step: in an Update, the caller may
		// append changes as it walks, and is given them too.
		for pos := l.seek(after); pos < l.n; pos++ {
			if !yield(t.s.changeRecord(pos), nil) {
				return
			}
		}
	}
}
