package badgerstore

import (
	"encoding/binary"

	"github.com/walletledger/ledger"
)

// Key prefixes; the layout is described in the package documentation.
const (
	prefixMeta     = 'm'
	prefixEntry    = 'e'
	prefixUser     = 'u'
	prefixAuth     = 'a'
	prefixPair     = 'p'
	prefixItem     = 'i'
	prefixItemUser = 'v'
	prefixItemAuth = 'w'
	prefixTotal    = 't'
	prefixIdemKey  = 'k'
)

// formatKey holds the on-disk format version, a uvarint.
var formatKey = []byte{prefixMeta, 'f', 'o', 'r', 'm', 'a', 't'}

// key returns prefix followed by parts, each length-prefixed but the
// last, so that the keys under one prefix and leading parts sort by the
// last part, bytewise.
func key(prefix byte, parts ...string) []byte {
	n := 1
	for _, p := range parts {
		n += binary.MaxVarintLen64 + len(p)
	}
	b := make([]byte, 1, n)
	b[0] = prefix
	for i, p := range parts {
		if i < len(parts)-1 {
			b = binary.AppendUvarint(b, uint64(len(p)))
		}
		b = append(b, p...)
	}
	return b
}

// indexKeys returns the keys that index r for Entries, the entry's own
// key first.
func indexKeys(r *ledger.Record) [][]byte {
	ks := [][]byte{
		key(prefixEntry, r.ID),
		key(prefixUser, r.UserID, r.ID),
		key(prefixAuth, r.AuthorityID, r.ID),
		key(prefixPair, r.AuthorityID, r.UserID, r.ID),
	}
	if r.Item != nil {
		ks = append(ks,
			key(prefixItem, r.ID),
			key(prefixItemUser, r.UserID, r.ID),
			key(prefixItemAuth, r.AuthorityID, r.ID),
		)
	}
	return ks
}

// scanPrefix returns the prefix of the index that serves s, followed in
// each key by an entry ID, and whether that index selects exactly what s
// asks for: only the pair index needs its records filtered for
// ItemsOnly. Under the entry prefix the values are the records; under the
// others they are empty.
func scanPrefix(s ledger.Scan) (prefix []byte, exact bool) {
	switch {
	case s.UserID != "" && s.AuthorityID != "":
		return key(prefixPair, s.AuthorityID, s.UserID, ""), !s.ItemsOnly
	case s.UserID != "" && s.ItemsOnly:
		return key(prefixItemUser, s.UserID, ""), true
	case s.UserID != "":
		return key(prefixUser, s.UserID, ""), true
	case s.AuthorityID != "" && s.ItemsOnly:
		return key(prefixItemAuth, s.AuthorityID, ""), true
	case s.AuthorityID != "":
		return key(prefixAuth, s.AuthorityID, ""), true
	case s.ItemsOnly:
		return []byte{prefixItem}, true
	}
	return []byte{prefixEntry}, true
}

// successor returns the smallest key greater than every key with the
// given prefix, or nil if there is none (the prefix is all 0xFF bytes;
// ours never are).
func successor(prefix []byte) []byte {
	s := append([]byte(nil), prefix...)
	for len(s) > 0 {
		if s[len(s)-1] < 0xFF {
			s[len(s)-1]++
			return s
		}
		s = s[:len(s)-1]
	}
	return nil
}
