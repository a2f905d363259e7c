package badgerstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// Record values.
//
// A record is encoded as
//
//	version   byte (recordVersion)
//	flags     byte (flagItem, flagItemUsed, flagZeroTime, flagZeroUseTime)
//	ID, AuthorityID, UserID            string
//	CreatedOn varint Unix nanoseconds (absent under flagZeroTime)
//	Amount    decimal
//	Reason    string
//	Item.Name string, Item.Data bytes  (only under flagItem)
//	Balance, AuthorityBalance          decimal
//	IdempotencyKey                     string
//	Item.UsedOn varint Unix nanoseconds (only under flagItemUsed, and
//	                                   then absent under flagZeroUseTime)
//	Item.UsedBy, UseIdempotencyKey     string (only under flagItemUsed)
//	Currency   string (only under flagCurrency)
//	TransferID string (only under flagTransfer)
//	Reverses   string (only under flagReverses)
//	ReversedBy string (only under flagReversedBy)
//	Metadata   uvarint count, then each key and value as strings, keys
//	           strictly ascending (only under flagMetadata)
//	HoldID     string (only under flagHold)
//
// Version 4 (since holds) adds flagHold: Entry.HoldID, set on the entry
// of a capture. An entry without one costs what it did in version 3.
// In version 3 (since wallets have currencies) flags is a uvarint, and
// flagItemRevoked (under flagItem) is Item.Revoked. The new fields are
// present only when set, so an entry in the default currency without
// metadata or links costs what it did in version 2, and metadata's sorted
// keys make equal records encode equally. Version 2 (since item uses were
// recorded) is version 3 with one flags byte and none of the new flags.
// Version 1, written by releases before item uses were recorded, is
// version 2 without flagZeroUseTime and the three fields of a use: its
// used items decode with UsedOn zero and UsedBy and UseIdempotencyKey "".
// Versions 1 and 2 decode in the default currency, without metadata,
// links or revocation; versions 1 to 3 without a hold. Decoding reads
// every version; encoding writes version 4.
//
// where a string or bytes is a uvarint length and that many bytes, and a
// decimal is one kind byte and then, unless the kind is decZeroValue, the
// varint exponent and the coefficient's magnitude: a uvarint when it fits
// 64 bits (decPos, decNeg), else a uvarint length and that many big-endian
// bytes (decBigPos, decBigNeg). The coefficient and exponent are kept as
// they are, not normalized, so 1.50 comes back as 1.50. Totals are stored
// as a bare decimal.
//
// Decoding checks every length against what is left and refuses unknown
// versions, flags and kinds, and trailing bytes: garbage yields an error,
// never a panic or a huge allocation.

const recordVersion = 4

const (
	flagItem = 1 << iota
	flagItemUsed
	flagZeroTime
	flagZeroUseTime // version 2
	flagCurrency    // version 3
	flagTransfer
	flagReverses
	flagReversedBy
	flagMetadata
	flagItemRevoked
	flagHold // version 4
)

// flagsKnown are the flags of each record version.
var flagsKnown = [...]uint64{
	1: flagItem | flagItemUsed | flagZeroTime,
	2: flagItem | flagItemUsed | flagZeroTime | flagZeroUseTime,
	3: flagItem | flagItemUsed | flagZeroTime | flagZeroUseTime |
		flagCurrency | flagTransfer | flagReverses | flagReversedBy | flagMetadata | flagItemRevoked,
	4: flagItem | flagItemUsed | flagZeroTime | flagZeroUseTime |
		flagCurrency | flagTransfer | flagReverses | flagReversedBy | flagMetadata | flagItemRevoked | flagHold,
}

const (
	decZeroValue = iota // decimal.Decimal{}: nil coefficient, exponent 0
	decPos
	decNeg
	decBigPos
	decBigNeg
)

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("badgerstore: corrupt value")

// encodeRecord appends the encoding of r to dst.
func encodeRecord(dst []byte, r *ledger.Record) ([]byte, error) {
	var flags uint64
	used := r.Item != nil && r.Item.Used
	if r.Item != nil {
		flags |= flagItem
		if used {
			flags |= flagItemUsed
		}
		if r.Item.Revoked {
			flags |= flagItemRevoked
		}
	}
	for _, f := range [...]struct {
		set  bool
		flag uint64
	}{
		{r.Currency != "", flagCurrency},
		{r.TransferID != "", flagTransfer},
		{r.Reverses != "", flagReverses},
		{r.ReversedBy != "", flagReversedBy},
		{len(r.Metadata) > 0, flagMetadata},
		{r.HoldID != "", flagHold},
	} {
		if f.set {
			flags |= f.flag
		}
	}
	nanos, zero, err := timeNanos(r.CreatedOn)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: entry %q: CreatedOn %w", r.ID, err)
	}
	if zero {
		flags |= flagZeroTime
	}
	var useNanos int64
	if used {
		if useNanos, zero, err = timeNanos(r.Item.UsedOn); err != nil {
			return nil, fmt.Errorf("badgerstore: entry %q: Item.UsedOn %w", r.ID, err)
		}
		if zero {
			flags |= flagZeroUseTime
		}
	}
	for _, d := range [...]decimal.Decimal{r.Amount, r.Balance, r.AuthorityBalance} {
		if err := checkExponent(d); err != nil {
			return nil, fmt.Errorf("badgerstore: entry %q: %w", r.ID, err)
		}
	}
	b := binary.AppendUvarint(append(dst, recordVersion), flags)
	b = appendString(b, r.ID)
	b = appendString(b, r.AuthorityID)
	b = appendString(b, r.UserID)
	if flags&flagZeroTime == 0 {
		b = binary.AppendVarint(b, nanos)
	}
	b = appendDecimal(b, r.Amount)
	b = appendString(b, r.Reason)
	if r.Item != nil {
		b = appendString(b, r.Item.Name)
		b = binary.AppendUvarint(b, uint64(len(r.Item.Data)))
		b = append(b, r.Item.Data...)
	}
	b = appendDecimal(b, r.Balance)
	b = appendDecimal(b, r.AuthorityBalance)
	b = appendString(b, r.IdempotencyKey)
	if used {
		if flags&flagZeroUseTime == 0 {
			b = binary.AppendVarint(b, useNanos)
		}
		b = appendString(b, r.Item.UsedBy)
		b = appendString(b, r.UseIdempotencyKey)
	}
	for _, f := range [...]struct {
		flag uint64
		s    string
	}{{flagCurrency, r.Currency}, {flagTransfer, r.TransferID}, {flagReverses, r.Reverses}, {flagReversedBy, r.ReversedBy}} {
		if flags&f.flag != 0 {
			b = appendString(b, f.s)
		}
	}
	if flags&flagMetadata != 0 {
		b = appendMetadata(b, r.Metadata)
	}
	if flags&flagHold != 0 {
		b = appendString(b, r.HoldID)
	}
	return b, nil
}

// appendMetadata appends a non-empty metadata map: its count, then each
// key and value, keys ascending, so that equal maps encode equally.
func appendMetadata(b []byte, m map[string]string) []byte {
	keys := slices.Sorted(maps.Keys(m))
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(appendString(b, k), m[k])
	}
	return b
}

// timeNanos returns t in Unix nanoseconds, or zero for the zero time;
// it refuses an instant that Unix nanoseconds in an int64 cannot hold.
func timeNanos(t time.Time) (nanos int64, zero bool, err error) {
	if t.IsZero() {
		return 0, true, nil
	}
	nanos = t.UnixNano()
	if !time.Unix(0, nanos).Equal(t) {
		return 0, false, fmt.Errorf("%v is outside the years 1678 to 2262 that a store keeps", t)
	}
	return nanos, false, nil
}

// decodeRecord decodes a record encoded by encodeRecord. The record
// shares no memory with b.
func decodeRecord(b []byte) (ledger.Record, error) {
	d := decoder{b: b}
	var r ledger.Record
	v := d.byte()
	if d.err == nil && (v < 1 || v > recordVersion) {
		return ledger.Record{}, fmt.Errorf("%w: record version %d, want 1 to %d", errCorrupt, v, recordVersion)
	}
	var flags uint64
	if v < 3 {
		flags = uint64(d.byte())
	} else {
		flags = d.uvarint()
	}
	if d.err == nil && flags&^flagsKnown[v] != 0 {
		return ledger.Record{}, fmt.Errorf("%w: unknown record flags %#x in version %d", errCorrupt, flags, v)
	}
	r.ID = d.string()
	r.AuthorityID = d.string()
	r.UserID = d.string()
	if flags&flagZeroTime == 0 {
		r.CreatedOn = time.Unix(0, d.varint()).UTC()
	}
	r.Amount = d.decimal()
	r.Reason = d.string()
	if flags&flagItem != 0 {
		r.Item = &ledger.Item{Name: d.string(), Used: flags&flagItemUsed != 0}
		if data := d.bytes(); len(data) > 0 {
			r.Item.Data = append([]byte(nil), data...)
		}
	} else if flags&flagItemUsed != 0 && d.err == nil {
		d.fail("used flag without an item")
	}
	r.Balance = d.decimal()
	r.AuthorityBalance = d.decimal()
	r.IdempotencyKey = d.string()
	if v >= 2 && flags&flagItemUsed != 0 && d.err == nil {
		if flags&flagZeroUseTime == 0 {
			r.Item.UsedOn = time.Unix(0, d.varint()).UTC()
		}
		r.Item.UsedBy = d.string()
		r.UseIdempotencyKey = d.string()
	} else if flags&flagZeroUseTime != 0 && d.err == nil {
		d.fail("use time flag without a use")
	}
	if flags&flagItemRevoked != 0 && d.err == nil {
		if r.Item == nil {
			d.fail("revoked flag without an item")
		} else {
			r.Item.Revoked = true
		}
	}
	for _, f := range [...]struct {
		flag uint64
		s    *string
	}{{flagCurrency, &r.Currency}, {flagTransfer, &r.TransferID}, {flagReverses, &r.Reverses}, {flagReversedBy, &r.ReversedBy}} {
		if flags&f.flag != 0 {
			if *f.s = d.string(); *f.s == "" && d.err == nil {
				d.fail("empty field under flag %#x", f.flag)
			}
		}
	}
	if flags&flagMetadata != 0 {
		r.Metadata = d.metadata()
	}
	if flags&flagHold != 0 {
		if r.HoldID = d.string(); r.HoldID == "" && d.err == nil {
			d.fail("empty hold ID under its flag")
		}
	}
	if err := d.end(); err != nil {
		return ledger.Record{}, err
	}
	return r, nil
}

// Total values: Value as a decimal, LastEntryID as a string and, since
// format 4 and only when it is not zero, Held as a decimal. A total
// without a held amount (every total of an authority, and a wallet's
// while it has no active hold) encodes as it did in format 3, and a
// total of format 3 reads with Held zero. A zero Held is not kept: it
// reads as decimal.Decimal{} whatever its exponent (0.00 reads as 0).
func encodeTotal(t ledger.Total) ([]byte, error) {
	if err := checkTotal(t); err != nil {
		return nil, err
	}
	b := appendString(appendDecimal(nil, t.Value), t.LastEntryID)
	if t.Held.IsZero() {
		return b, nil
	}
	return appendDecimal(b, t.Held), nil
}

// checkTotal refuses a total encodeTotal cannot encode.
func checkTotal(t ledger.Total) error {
	if err := checkExponent(t.Value); err != nil {
		return fmt.Errorf("badgerstore: total: %w", err)
	}
	if !t.Held.IsZero() {
		if err := checkExponent(t.Held); err != nil {
			return fmt.Errorf("badgerstore: total: Held: %w", err)
		}
	}
	return nil
}

// checkExponent refuses a decimal whose exponent decoding would refuse.
func checkExponent(d decimal.Decimal) error {
	if e := d.Exponent(); e < -maxExponent || e > maxExponent {
		// Not d itself: printing it would expand it.
		return fmt.Errorf("decimal exponent %d beyond ±%d", e, maxExponent)
	}
	return nil
}

// decodeTotal decodes a total encoded by encodeTotal.
func decodeTotal(b []byte) (ledger.Total, error) {
	d := decoder{b: b}
	t := ledger.Total{Value: d.decimal(), LastEntryID: d.string()}
	if len(d.b) > 0 {
		if t.Held = d.decimal(); t.Held.IsZero() && d.err == nil {
			d.fail("zero held amount stored")
		}
	}
	if err := d.end(); err != nil {
		return ledger.Total{}, err
	}
	return t, nil
}

// Limits values: Floor as a decimal, then a byte 1 and Cap as a decimal
// or a byte 0 for no cap, SetBy as a string, and SetOn as varint Unix
// nanoseconds or, for the zero time, nothing. The user and currency are
// the key's.
func encodeLimits(l ledger.StoredLimits) ([]byte, error) {
	ds := []decimal.Decimal{l.Floor}
	if l.Cap != nil {
		ds = append(ds, *l.Cap)
	}
	for _, d := range ds {
		if err := checkExponent(d); err != nil {
			return nil, fmt.Errorf("badgerstore: limits of %q in %q: %w", l.UserID, l.Currency, err)
		}
	}
	nanos, zero, err := timeNanos(l.SetOn)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: limits of %q in %q: SetOn %w", l.UserID, l.Currency, err)
	}
	b := appendDecimal(nil, l.Floor)
	if l.Cap == nil {
		b = append(b, 0)
	} else {
		b = appendDecimal(append(b, 1), *l.Cap)
	}
	b = appendString(b, l.SetBy)
	if !zero {
		b = binary.AppendVarint(b, nanos)
	}
	return b, nil
}

// decodeLimits decodes limits encoded by encodeLimits, for the wallet
// (user, currency) of their key.
func decodeLimits(user, currency string, b []byte) (ledger.StoredLimits, error) {
	d := decoder{b: b}
	l := ledger.StoredLimits{WalletLimits: ledger.WalletLimits{UserID: user, Currency: currency, Floor: d.decimal()}}
	switch d.byte() {
	case 0:
	case 1:
		c := d.decimal()
		l.Cap = &c
	default:
		d.fail("bad cap marker")
	}
	l.SetBy = d.string()
	if len(d.b) > 0 {
		l.SetOn = time.Unix(0, d.varint()).UTC()
	}
	if err := d.end(); err != nil {
		return ledger.StoredLimits{}, err
	}
	return l, nil
}

// Hold values.
//
// A hold is encoded as
//
//	version   byte (holdVersion)
//	flags     uvarint (holdFlag...)
//	ID, AuthorityID, UserID            string
//	CreatedOn varint Unix nanoseconds (absent under holdFlagZeroTime)
//	Amount    decimal
//	Reason    string
//	State     byte (ledger.HoldState)
//	Expires   varint Unix nanoseconds (only under holdFlagExpires)
//	ClosedOn  varint Unix nanoseconds (only under holdFlagClosedOn)
//	Currency, EntryID, IdempotencyKey  string (each only under its flag)
//	Metadata  as in a record (only under holdFlagMetadata)
//
// in the primitives of records. Times are kept to the nanosecond and
// decode in UTC; a zero time is absent.
const holdVersion = 1

const (
	holdFlagZeroTime = 1 << iota
	holdFlagExpires
	holdFlagClosedOn
	holdFlagCurrency
	holdFlagEntry
	holdFlagKey
	holdFlagMetadata

	holdFlagsKnown = 1<<iota - 1
)

// encodeHold returns the encoding of h.
func encodeHold(h *ledger.HoldRecord) ([]byte, error) {
	if h.State > ledger.HoldExpired {
		return nil, fmt.Errorf("badgerstore: hold %q: %v is not a hold state", h.ID, h.State)
	}
	if err := checkExponent(h.Amount); err != nil {
		return nil, fmt.Errorf("badgerstore: hold %q: %w", h.ID, err)
	}
	var flags uint64
	var times [3]int64 // CreatedOn, Expires, ClosedOn
	for i, f := range [...]struct {
		name string
		t    time.Time
	}{{"CreatedOn", h.CreatedOn}, {"Expires", h.Expires}, {"ClosedOn", h.ClosedOn}} {
		nanos, zero, err := timeNanos(f.t)
		if err != nil {
			return nil, fmt.Errorf("badgerstore: hold %q: %s %w", h.ID, f.name, err)
		}
		times[i] = nanos
		switch {
		case i == 0 && zero:
			flags |= holdFlagZeroTime
		case i == 1 && !zero:
			flags |= holdFlagExpires
		case i == 2 && !zero:
			flags |= holdFlagClosedOn
		}
	}
	strs := [...]struct {
		flag uint64
		s    string
	}{{holdFlagCurrency, h.Currency}, {holdFlagEntry, h.EntryID}, {holdFlagKey, h.IdempotencyKey}}
	for _, f := range strs {
		if f.s != "" {
			flags |= f.flag
		}
	}
	if len(h.Metadata) > 0 {
		flags |= holdFlagMetadata
	}
	b := binary.AppendUvarint([]byte{holdVersion}, flags)
	b = appendString(b, h.ID)
	b = appendString(b, h.AuthorityID)
	b = appendString(b, h.UserID)
	if flags&holdFlagZeroTime == 0 {
		b = binary.AppendVarint(b, times[0])
	}
	b = appendDecimal(b, h.Amount)
	b = appendString(b, h.Reason)
	b = append(b, byte(h.State))
	if flags&holdFlagExpires != 0 {
		b = binary.AppendVarint(b, times[1])
	}
	if flags&holdFlagClosedOn != 0 {
		b = binary.AppendVarint(b, times[2])
	}
	for _, f := range strs {
		if flags&f.flag != 0 {
			b = appendString(b, f.s)
		}
	}
	if flags&holdFlagMetadata != 0 {
		b = appendMetadata(b, h.Metadata)
	}
	return b, nil
}

// decodeHold decodes a hold encoded by encodeHold. The hold shares no
// memory with b.
func decodeHold(b []byte) (ledger.HoldRecord, error) {
	d := decoder{b: b}
	var h ledger.HoldRecord
	if v := d.byte(); d.err == nil && v != holdVersion {
		return ledger.HoldRecord{}, fmt.Errorf("%w: hold version %d, want %d", errCorrupt, v, holdVersion)
	}
	flags := d.uvarint()
	if d.err == nil && flags&^holdFlagsKnown != 0 {
		return ledger.HoldRecord{}, fmt.Errorf("%w: unknown hold flags %#x", errCorrupt, flags)
	}
	h.ID = d.string()
	h.AuthorityID = d.string()
	h.UserID = d.string()
	if flags&holdFlagZeroTime == 0 {
		h.CreatedOn = time.Unix(0, d.varint()).UTC()
	}
	h.Amount = d.decimal()
	h.Reason = d.string()
	if h.State = ledger.HoldState(d.byte()); h.State > ledger.HoldExpired && d.err == nil {
		d.fail("hold state %d", h.State)
	}
	if flags&holdFlagExpires != 0 {
		h.Expires = time.Unix(0, d.varint()).UTC()
	}
	if flags&holdFlagClosedOn != 0 {
		h.ClosedOn = time.Unix(0, d.varint()).UTC()
	}
	for _, f := range [...]struct {
		flag uint64
		s    *string
	}{{holdFlagCurrency, &h.Currency}, {holdFlagEntry, &h.EntryID}, {holdFlagKey, &h.IdempotencyKey}} {
		if flags&f.flag != 0 {
			if *f.s = d.string(); *f.s == "" && d.err == nil {
				d.fail("empty hold field under flag %#x", f.flag)
			}
		}
	}
	if flags&holdFlagMetadata != 0 {
		h.Metadata = d.metadata()
	}
	if err := d.end(); err != nil {
		return ledger.HoldRecord{}, err
	}
	return h, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendDecimal(b []byte, v decimal.Decimal) []byte {
	if v == (decimal.Decimal{}) {
		return append(b, decZeroValue)
	}
	c := v.Coefficient() // a copy, ours to change
	neg := c.Sign() < 0
	c.Abs(c)
	kind := byte(decPos)
	if !c.IsUint64() {
		kind = decBigPos
	}
	if neg {
		kind++
	}
	b = append(b, kind)
	b = binary.AppendVarint(b, int64(v.Exponent()))
	if kind <= decNeg {
		return binary.AppendUvarint(b, c.Uint64())
	}
	mag := c.Bytes()
	b = binary.AppendUvarint(b, uint64(len(mag)))
	return append(b, mag...)
}

// decoder reads an encoding; after the first error every read returns a
// zero value and the error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns the next length-prefixed bytes, aliasing the input.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d beyond the %d bytes left", n, len(d.b))
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) string() string { return string(d.bytes()) }

// metadata reads what appendMetadata wrote: at least one key, keys
// strictly ascending.
func (d *decoder) metadata() map[string]string {
	n := d.uvarint()
	if d.err == nil && (n == 0 || n > uint64(len(d.b))/2) {
		d.fail("metadata of %d keys in %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return nil
	}
	m := make(map[string]string, n)
	last := ""
	for i := uint64(0); i < n && d.err == nil; i++ {
		k, v := d.string(), d.string()
		if i > 0 && k <= last && d.err == nil {
			d.fail("metadata keys out of order")
		}
		m[k], last = v, k
	}
	if d.err != nil {
		return nil
	}
	return m
}

// maxExponent bounds the exponents decimal decodes.
const maxExponent = 1000

func (d *decoder) decimal() decimal.Decimal {
	kind := d.byte()
	if d.err != nil {
		return decimal.Decimal{}
	}
	if kind == decZeroValue {
		return decimal.Decimal{}
	}
	if kind > decBigNeg {
		d.fail("unknown decimal kind %d", kind)
		return decimal.Decimal{}
	}
	exp := d.varint()
	// The ledger's precision (at most 1,000 digits) bounds every exponent
	// it writes; a larger one is corruption, and would make the first
	// arithmetic on the value expand it to billions of digits.
	if d.err == nil && (exp < -maxExponent || exp > maxExponent) {
		d.fail("decimal exponent %d out of range", exp)
	}
	neg := kind == decNeg || kind == decBigNeg
	if kind <= decNeg {
		mag := d.uvarint()
		if d.err != nil {
			return decimal.Decimal{}
		}
		if mag <= math.MaxInt64 {
			v := int64(mag)
			if neg {
				v = -v
			}
			return decimal.New(v, int32(exp))
		}
		c := new(big.Int).SetUint64(mag)
		if neg {
			c.Neg(c)
		}
		return decimal.NewFromBigInt(c, int32(exp))
	}
	mag := d.bytes()
	if d.err != nil {
		return decimal.Decimal{}
	}
	c := new(big.Int).SetBytes(mag)
	if neg {
		c.Neg(c)
	}
	return decimal.NewFromBigInt(c, int32(exp))
}
