package badgerstore

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"iter"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// The change feed: one key per change, c seq, where seq is the change's
// sequence number as 8 big-endian bytes, and its cursor is seq in 16
// lowercase hex digits, so that cursors sort as the keys do. Sequence
// numbers start at 1 and are taken in commit order: a Tx keeps the
// changes it appends, and Update gives them their numbers and writes
// their keys just before the commit, under Store.writeMu, which it holds
// until the commit has returned (see [Store.Update]). So a transaction
// with changes commits after every transaction that took lower numbers
// and before any that takes higher ones, and Badger makes a commit
// visible to the snapshots taken after it, with every earlier commit: a
// snapshot that holds a change holds every change numbered below it that
// will ever commit. A commit that fails keeps its numbers taken: they are
// skipped, never reused by a later commit, whatever the failure wrote.
// Open takes up numbering after the last change stored.

// changeKey is the key of the change with sequence number seq.
func changeKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 1+seqLen), prefixChange), seq)
}

// seqLen is the length of a sequence number in a change key.
const seqLen = 8

// cursorOf is the cursor of sequence number seq.
func cursorOf(seq uint64) string {
	return hex.EncodeToString(binary.BigEndian.AppendUint64(nil, seq))
}

// firstSeqAfter returns the least sequence number whose cursor sorts
// after after, bytewise, and false if none does. after need not be a
// cursor of this store (a cursor of another store, after an import,
// still has a place in the order): every string does.
func firstSeqAfter(after string) (uint64, bool) {
	var v uint64 // the hex digits of after read so far
	for i := range 2 * seqLen {
		shift := uint(4 * (2*seqLen - i))
		if i == len(after) {
			// after is a prefix of the cursors that start with it; the
			// least of them, padded with zeros, is longer, so after it.
			return v << shift, true
		}
		c := after[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uint64(c-'0')
			continue
		case 'a' <= c && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
			continue
		case c < '0':
			return v << shift, true // the digit '0' here sorts after c
		case c < 'a':
			return (v<<4 | 10) << (shift - 4), true // 'a' is the least digit above c
		}
		// c is above every hex digit: the next cursor after the i digits
		// read so far.
		if i == 0 || v == 1<<(4*i)-1 {
			return 0, false
		}
		return (v + 1) << shift, true
	}
	// after starts with a whole cursor (and is it, or longer).
	if v == 1<<64-1 {
		return 0, false
	}
	return v + 1, true
}

// Change values.
//
// A change is encoded as
//
//	version   byte (changeVersion)
//	flags     uvarint (changeFlag...)
//	kind      byte (the index of Kind in changeKinds)
//	At        varint Unix nanoseconds (absent under changeFlagZeroAt)
//	AuthorityID, Ref                   string
//	Limits    UserID, Currency string, Floor decimal, then Cap decimal
//	          under changeFlagCap (only under changeFlagLimits)
//	checksum  4 bytes: the CRC-32C, big-endian, of the change's key and
//	          every byte before it
//
// in the primitives of records. A change lives in the LSM tree, whose
// blocks Badger checks only when it opens a table (see the package doc);
// the checksum makes a change that changed on disk an error when it is
// read, and, as it covers the key, so is a change read under a key other
// than its own.
const changeVersion = 1

const (
	changeFlagZeroAt = 1 << iota
	changeFlagLimits
	changeFlagCap

	changeFlagsKnown = 1<<iota - 1
)

// changeKinds are the kinds a change encodes, by their byte; 0 is none.
var changeKinds = [...]ledger.ChangeKind{
	1: ledger.ChangeEntry,
	2: ledger.ChangeItemUsed,
	3: ledger.ChangeLimits,
	4: ledger.ChangeHoldPlaced,
	5: ledger.ChangeHoldReleased,
	6: ledger.ChangeHoldExpired,
}

// checksumLen is the length of a change's checksum.
const checksumLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeChange returns the encoding of c, without its checksum, after
// room for its key, and with room for the checksum: [sealChange] fills
// in both once the change has its sequence number, so that key and value
// share one allocation.
func encodeChange(c *ledger.ChangeRecord) ([]byte, error) {
	kind := 0
	for i, k := range changeKinds {
		if i > 0 && k == c.Kind {
			kind = i
		}
	}
	if kind == 0 {
		return nil, fmt.Errorf("badgerstore: change of kind %q: not a kind this store keeps", c.Kind)
	}
	nanos, zero, err := timeNanos(c.At)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: change of kind %q: At %w", c.Kind, err)
	}
	var flags uint64
	if zero {
		flags |= changeFlagZeroAt
	}
	l := c.Limits
	if l != nil {
		flags |= changeFlagLimits
		ds := []decimal.Decimal{l.Floor}
		if l.Cap != nil {
			flags |= changeFlagCap
			ds = append(ds, *l.Cap)
		}
		for _, d := range ds {
			if err := checkExponent(d); err != nil {
				return nil, fmt.Errorf("badgerstore: change of the limits of %q in %q: %w", l.UserID, l.Currency, err)
			}
		}
	}
	b := make([]byte, changeKeyLen, changeKeyLen+32+len(c.AuthorityID)+len(c.Ref))
	b = binary.AppendUvarint(append(b, changeVersion), flags)
	b = append(b, byte(kind))
	if !zero {
		b = binary.AppendVarint(b, nanos)
	}
	b = appendString(b, c.AuthorityID)
	b = appendString(b, c.Ref)
	if l != nil {
		b = appendString(b, l.UserID)
		b = appendString(b, l.Currency)
		b = appendDecimal(b, l.Floor)
		if l.Cap != nil {
			b = appendDecimal(b, *l.Cap)
		}
	}
	return b, nil
}

// sealChange completes an encoding from encodeChange as the change with
// sequence number seq, returning its key and value.
func sealChange(b []byte, seq uint64) (key, value []byte) {
	key = binary.BigEndian.AppendUint64(append(b[:0], prefixChange), seq)[:changeKeyLen:changeKeyLen]
	sum := crc32.Checksum(b, castagnoli) // the key and the body
	return key, binary.BigEndian.AppendUint32(b[changeKeyLen:], sum)
}

// changeKeyLen is the length of a change's key.
const changeKeyLen = 1 + seqLen

// decodeChange decodes the change stored under key (a change key) as b.
// The change shares no memory with key or b.
func decodeChange(key, b []byte) (ledger.ChangeRecord, error) {
	if len(key) != 1+seqLen || key[0] != prefixChange {
		return ledger.ChangeRecord{}, fmt.Errorf("%w: malformed change key %x", errCorrupt, key)
	}
	if len(b) < checksumLen {
		return ledger.ChangeRecord{}, fmt.Errorf("%w: change %x of %d bytes", errCorrupt, key[1:], len(b))
	}
	body := b[:len(b)-checksumLen]
	if sum := crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, body); sum != binary.BigEndian.Uint32(b[len(body):]) {
		return ledger.ChangeRecord{}, fmt.Errorf("%w: change %x fails its checksum", errCorrupt, key[1:])
	}
	d := decoder{b: body}
	c := ledger.ChangeRecord{Cursor: hex.EncodeToString(key[1:])}
	if v := d.byte(); d.err == nil && v != changeVersion {
		return ledger.ChangeRecord{}, fmt.Errorf("%w: change version %d, want %d", errCorrupt, v, changeVersion)
	}
	flags := d.uvarint()
	if d.err == nil && flags&^changeFlagsKnown != 0 {
		return ledger.ChangeRecord{}, fmt.Errorf("%w: unknown change flags %#x", errCorrupt, flags)
	}
	if k := int(d.byte()); d.err == nil {
		if k == 0 || k >= len(changeKinds) {
			d.fail("change kind %d", k)
		} else {
			c.Kind = changeKinds[k]
		}
	}
	if flags&changeFlagZeroAt == 0 {
		c.At = time.Unix(0, d.varint()).UTC()
	}
	c.AuthorityID = d.string()
	c.Ref = d.string()
	if flags&changeFlagLimits != 0 {
		c.Limits = &ledger.WalletLimits{UserID: d.string(), Currency: d.string(), Floor: d.decimal()}
		if flags&changeFlagCap != 0 {
			cp := d.decimal()
			c.Limits.Cap = &cp
		}
	} else if flags&changeFlagCap != 0 && d.err == nil {
		d.fail("cap flag without limits")
	}
	if err := d.end(); err != nil {
		return ledger.ChangeRecord{}, fmt.Errorf("badgerstore: read change %x: %w", key[1:], err)
	}
	return c, nil
}

// AppendChange implements [ledger.Tx]. It encodes c, so that a change
// the store cannot keep fails here, and keeps it for the commit, which
// gives it its sequence number (see the top of this file); c.Cursor is
// ignored. A change appended is not among the Tx's own Changes: it has
// no cursor until it commits.
func (t *tx) AppendChange(ctx context.Context, c ledger.ChangeRecord) error {
	if err := t.checkWrite(ctx); err != nil {
		return err
	}
	b, err := encodeChange(&c)
	if err != nil {
		return err
	}
	t.w.changes = append(t.w.changes, b)
	if c.Kind == ledger.ChangeEntry {
		if t.w.changed == nil {
			t.w.changed = make(map[string]struct{})
		}
		t.w.changed[c.Ref] = struct{}{}
	}
	return nil
}

// Changes implements [ledger.ReadTx]: a seek to the first key after
// after's place in the order, and a walk.
func (t *tx) Changes(ctx context.Context, after string) iter.Seq2[ledger.ChangeRecord, error] {
	return func(yield func(ledger.ChangeRecord, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.ChangeRecord{}, err)
			return
		}
		seq, ok := firstSeqAfter(after)
		if !ok {
			return
		}
		start := string(changeKey(seq)[1:])
		load := func(_ []byte, item *badger.Item) (ledger.ChangeRecord, error) {
			var c ledger.ChangeRecord
			err := item.Value(func(v []byte) error {
				var err error
				c, err = decodeChange(item.Key(), v)
				return err
			})
			return c, err
		}
		for c, err := range walk(ctx, t, []byte{prefixChange}, start, "", false, load) {
			if !yield(c, err) || err != nil {
				return
			}
		}
	}
}

// numberChanges gives the changes t appended their sequence numbers and
// writes their keys into t's transaction. The caller holds s.writeMu, and
// keeps it until the commit returns. The numbers are taken whether or
// not the commit succeeds.
func (s *Store) numberChanges(t *tx) error {
	seq := s.nextSeq
	s.nextSeq += uint64(len(t.w.changes))
	for i, b := range t.w.changes {
		k, v := sealChange(b, seq+uint64(i))
		// Not t.set: its message would be formatted for every change.
		if err := t.txn.Set(k, v); err != nil {
			return t.set(k, nil, "append change %s", cursorOf(seq+uint64(i)))
		}
	}
	return nil
}

// lastSeq returns the sequence number of the last change stored, 0 if
// none is.
func lastSeq(txn *badger.Txn) (uint64, error) {
	k := lastKey(txn, []byte{prefixChange})
	switch {
	case k == nil:
		return 0, nil
	case len(k) != 1+seqLen:
		return 0, fmt.Errorf("%w: malformed change key %x", errCorrupt, k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}
