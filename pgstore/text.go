package pgstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// PostgreSQL's text type holds valid UTF-8 without NUL, while the ledger
// accepts any valid UTF-8 string, NUL included. Text columns therefore
// hold an escaped form: NUL is written \x01\x01 and \x01 is written
// \x01\x02; every other byte stands for itself. The three codes are
// prefix-free and in the order of the bytes they stand for, so the
// escaped strings sort bytewise (COLLATE "C") exactly as the originals
// do, bounds included, and a string without \x00 or \x01 (any string in
// practice) is stored as it is.

const escapeChars = "\x00\x01"

// encText returns the stored form of s.
func encText(s string) string {
	if !strings.ContainsAny(s, escapeChars) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b = append(b, 1, 1)
		case 1:
			b = append(b, 1, 2)
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

var errEscape = errors.New("malformed escape in stored text")

// decText reverses encText.
func decText(s string) (string, error) {
	if strings.IndexByte(s, 1) < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != 1 {
			b = append(b, c)
			continue
		}
		if i+1 == len(s) {
			return "", errEscape
		}
		i++
		switch s[i] {
		case 1:
			b = append(b, 0)
		case 2:
			b = append(b, 1)
		default:
			return "", errEscape
		}
	}
	return string(b), nil
}

// storable reports whether s can be stored in a text column (after
// encText): whether it is valid UTF-8. A lookup of a string that is not
// can find nothing.
func storable(s string) bool { return utf8.ValidString(s) }

// encDecimal returns d as numeric input, keeping its scale: 1.50 stays
// 1.50, so it comes back with the same coefficient and exponent.
func encDecimal(d decimal.Decimal) string {
	e := d.Exponent()
	if e <= 0 && e > -19 && d.NumDigits() <= 18 {
		// A coefficient that fits in an int64, formatted without the
		// big.Int arithmetic of StringFixed, which a group commit runs
		// hundreds of times; the same text.
		return fixedString(d.CoefficientInt64(), int(-e))
	}
	if e < 0 {
		return d.StringFixed(-e)
	}
	return d.String()
}

// fixedString returns c / 10^places in decimal with exactly places
// digits after the point (none, and no point, for 0), as
// decimal.Decimal.StringFixed writes it.
func fixedString(c int64, places int) string {
	u := uint64(c)
	if c < 0 {
		u = -u
	}
	var digits [20]byte
	ds := strconv.AppendUint(digits[:0], u, 10)
	var buf [48]byte
	out := buf[:0]
	if c < 0 {
		out = append(out, '-')
	}
	switch {
	case places == 0:
		out = append(out, ds...)
	case len(ds) <= places:
		out = append(out, '0', '.')
		for range places - len(ds) {
			out = append(out, '0')
		}
		out = append(out, ds...)
	default:
		out = append(out, ds[:len(ds)-places]...)
		out = append(out, '.')
		out = append(out, ds[len(ds)-places:]...)
	}
	return string(out)
}

// decDecimal parses numeric output (read as text: exact, never through a
// float).
func decDecimal(s string) (decimal.Decimal, error) { return decimal.NewFromString(s) }

// unixTime is the inverse of time.Time.UnixNano, in UTC, as the ledger
// makes CreatedOn.
func unixTime(nanos int64) time.Time { return time.Unix(0, nanos).UTC() }

// encMetadata returns the jsonb input for m: nil (NULL) for an empty map,
// otherwise a JSON object whose keys and values are stored as encText
// writes them, since jsonb refuses \u0000 as text does. Every string
// comes back as it was given; only the map's order, which Go does not
// keep either, is jsonb's own.
func encMetadata(m map[string]string) (*string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	enc := make(map[string]string, len(m))
	for k, v := range m {
		if !storable(k) || !storable(v) {
			return nil, fmt.Errorf("metadata key %q: not valid UTF-8", k)
		}
		enc[encText(k)] = encText(v)
	}
	b, err := json.Marshal(enc)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	j := string(b)
	return &j, nil
}

// decMetadata reverses encMetadata, from jsonb read as text.
func decMetadata(s string) (map[string]string, error) {
	var enc map[string]string
	if err := json.Unmarshal([]byte(s), &enc); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	m := make(map[string]string, len(enc))
	for k, v := range enc {
		dk, err := decText(k)
		if err != nil {
			return nil, fmt.Errorf("metadata key %q: %w", k, err)
		}
		dv, err := decText(v)
		if err != nil {
			return nil, fmt.Errorf("metadata key %q: %w", k, err)
		}
		m[dk] = dv
	}
	return m, nil
}
