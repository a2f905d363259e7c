package ledger

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// checkNewEntry validates e against the ledger's limits and returns the
// copy the ledger works with: the item is the ledger's own, and empty
// item data is nil.
func (l *Ledger) checkNewEntry(e NewEntry) (NewEntry, error) {
	if err := l.checkID("AuthorityID", e.AuthorityID); err != nil {
		return NewEntry{}, err
	}
	if err := l.checkID("UserID", e.UserID); err != nil {
		return NewEntry{}, err
	}
	amount, err := l.checkAmount("Amount", e.Amount)
	if err != nil {
		return NewEntry{}, err
	}
	e.Amount = amount
	if err := checkText("Reason", e.Reason, l.cfg.limits.MaxReasonBytes); err != nil {
		return NewEntry{}, err
	}
	if e.IdempotencyKey != "" {
		if err := l.checkID("IdempotencyKey", e.IdempotencyKey); err != nil {
			return NewEntry{}, err
		}
	}
	if err := checkCurrency("Currency", e.Currency); err != nil {
		return NewEntry{}, err
	}
	md, err := checkMetadata(e.Metadata)
	if err != nil {
		return NewEntry{}, err
	}
	e.Metadata = md
	if e.Item, err = l.checkItem(e.Item); err != nil {
		return NewEntry{}, err
	}
	return e, nil
}

// checkItem validates a new item and returns the ledger's own copy of
// it (nil for none), with empty data as nil.
func (l *Ledger) checkItem(it *Item) (*Item, error) {
	if it == nil {
		return nil, nil
	}
	if err := checkText("Item.Name", it.Name, l.cfg.limits.MaxItemNameBytes); err != nil {
		return nil, err
	}
	if it.Used {
		return nil, invalid("Item.Used", "a new item cannot be used already")
	}
	if !it.UsedOn.IsZero() {
		return nil, invalid("Item.UsedOn", "a new item cannot be used already")
	}
	if it.UsedBy != "" {
		return nil, invalid("Item.UsedBy", "a new item cannot be used already")
	}
	if it.Revoked {
		return nil, invalid("Item.Revoked", "a new item cannot be revoked already")
	}
	if n := len(it.Data); n > l.cfg.limits.MaxItemDataBytes {
		return nil, invalid("Item.Data", "%d bytes, limit %d", n, l.cfg.limits.MaxItemDataBytes)
	}
	if err := l.checkData("Item.Data", it.Data); err != nil {
		return nil, err
	}
	it = it.clone()
	if len(it.Data) == 0 {
		it.Data = nil
	}
	return it, nil
}

// checkID validates an ID-like string: authority, user and entry IDs and
// idempotency keys.
func (l *Ledger) checkID(field, s string) error {
	return checkText(field, s, l.cfg.limits.MaxIDBytes)
}

func checkText(field, s string, limit int) error {
	switch {
	case s == "":
		return invalid(field, "empty")
	case len(s) > limit:
		return invalid(field, "%d bytes, limit %d", len(s), limit)
	case !utf8.ValidString(s):
		return invalid(field, "not valid UTF-8")
	}
	return nil
}

// checkAmount refuses an amount the ledger cannot hold exactly and
// returns it in the form the ledger keeps: zero as plain 0 and no more
// than the allowed places after the point, so that an exponent written
// with the amount ("0e-10000", "1." followed by a thousand zeros) never
// reaches a store or a total. It works from the coefficient's digit count
// and the exponent, so that an amount such as 1e999999999 is refused
// without being expanded.
func (l *Ledger) checkAmount(field string, a decimal.Decimal) (decimal.Decimal, error) {
	if a.IsZero() {
		return decimal.Decimal{}, nil
	}
	if !l.fits(a) {
		return decimal.Decimal{}, invalid(field, "too large: magnitude must stay below 10^%d", l.cfg.digits-l.cfg.places)
	}
	if exp, places := int64(a.Exponent()), int64(l.cfg.places); exp < -places {
		// The digits past the allowed places must all be zero, and are
		// dropped.
		if -exp-places >= int64(a.NumDigits()) {
			return decimal.Decimal{}, invalid(field, "%s has more than %d decimal places", brief(a), places)
		}
		t := a.Truncate(int32(places))
		if !a.Equal(t) {
			return decimal.Decimal{}, invalid(field, "%s has more than %d decimal places", brief(a), places)
		}
		a = t
	}
	return a, nil
}

// checkData refuses item data that is not valid JSON in valid UTF-8, or
// that nests arrays and objects deeper than Limits.MaxDataDepth. Empty
// data is no data.
func (l *Ledger) checkData(field string, data []byte) error {
	switch {
	case len(data) == 0:
		return nil
	case !utf8.Valid(data):
		return invalid(field, "not valid UTF-8")
	case !json.Valid(data):
		return invalid(field, "not valid JSON")
	}
	if d := jsonDepth(data); d > l.cfg.limits.MaxDataDepth {
		return invalid(field, "nested %d levels deep, limit %d", d, l.cfg.limits.MaxDataDepth)
	}
	return nil
}

// jsonDepth returns how deeply valid JSON nests arrays and objects.
func jsonDepth(data []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// brief formats d for an error message, without expanding a value whose
// exponent or coefficient is huge (decimal.New(1, -999999999) would print
// as a billion digits).
func brief(d decimal.Decimal) string {
	if e := d.Exponent(); e < -64 || e > 64 || d.NumDigits() > 64 {
		return fmt.Sprintf("an amount of %d digits with exponent %d", d.NumDigits(), e)
	}
	return d.String()
}

// fits reports whether |d| < 10^(digits-places), the bound on every
// amount and total. |d| lies in [10^(n-1+exp), 10^(n+exp)) for a
// coefficient of n digits, so no arithmetic is needed.
func (l *Ledger) fits(d decimal.Decimal) bool {
	return d.IsZero() || int64(d.NumDigits())+int64(d.Exponent()) <= int64(l.cfg.digits-l.cfg.places)
}

// checkIDs validates a query's list of IDs and returns it sorted and
// without duplicates: ids itself when it already is (callers must not
// change it or keep it past the call), else a new slice.
func (l *Ledger) checkIDs(field string, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	for _, id := range ids {
		if err := l.checkID(field, id); err != nil {
			return nil, err
		}
	}
	if isStrictlySorted(ids) {
		return ids, nil
	}
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// isStrictlySorted reports whether ids are sorted without duplicates.
func isStrictlySorted(ids []string) bool {
	for i := 1; i < len(ids); i++ {
		if ids[i-1] >= ids[i] {
			return false
		}
	}
	return true
}

// checkPage validates a query's paging fields.
func (l *Ledger) checkPage(after string, limit int) error {
	if limit < 0 {
		return invalid("Limit", "negative (%d)", limit)
	}
	if after != "" {
		return l.checkID("After", after)
	}
	return nil
}

// entryBytes is what e counts towards Limits.MaxBatchBytes.
func entryBytes(e *NewEntry) int {
	n := EntryOverheadBytes + len(e.AuthorityID) + len(e.UserID) + len(e.Reason) + len(e.IdempotencyKey) + len(e.Currency)
	for k, v := range e.Metadata {
		n += len(k) + len(v)
	}
	if e.Item != nil {
		n += len(e.Item.Name) + len(e.Item.Data)
	}
	return n
}

// Limits of currency codes and metadata.
const (
	maxCurrencyBytes      = 32
	maxMetadataKeys       = 16
	maxMetadataKeyBytes   = 64
	maxMetadataValueBytes = 1024
)

// checkCurrency refuses a currency code other than "" (the default) or 1
// to 32 bytes of ASCII letters, digits, '_', '-' and '.'.
func checkCurrency(field, c string) error {
	if len(c) > maxCurrencyBytes {
		return invalid(field, "%d bytes, limit %d", len(c), maxCurrencyBytes)
	}
	for i := 0; i < len(c); i++ {
		switch b := c[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '_', b == '-', b == '.':
		default:
			return invalid(field, "%q: a currency code holds only ASCII letters, digits, '_', '-' and '.'", c)
		}
	}
	return nil
}

// checkMetadata refuses metadata beyond its limits and returns the copy
// the ledger keeps (nil for none).
func checkMetadata(md map[string]string) (map[string]string, error) {
	if len(md) == 0 {
		return nil, nil
	}
	if len(md) > maxMetadataKeys {
		return nil, invalid("Metadata", "%d keys, limit %d", len(md), maxMetadataKeys)
	}
	out := make(map[string]string, len(md))
	for _, k := range slices.Sorted(maps.Keys(md)) {
		v := md[k]
		switch {
		case k == "" || len(k) > maxMetadataKeyBytes:
			return nil, invalid("Metadata", "key %q: want 1 to %d bytes", truncated(k), maxMetadataKeyBytes)
		case !utf8.ValidString(k):
			return nil, invalid("Metadata", "key %q: not valid UTF-8", truncated(k))
		case len(v) > maxMetadataValueBytes:
			return nil, invalid("Metadata", "key %q: value of %d bytes, limit %d", k, len(v), maxMetadataValueBytes)
		case !utf8.ValidString(v):
			return nil, invalid("Metadata", "key %q: value not valid UTF-8", k)
		}
		out[k] = v
	}
	return out, nil
}

// truncated shortens s for an error message.
func truncated(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
