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
	prefixIdemKey  = 'k'
	prefixTotal    = 'b' // since format 3: lp(authority) lp(currency) user
	prefixWallets  = 'x' // lp(user) currency: the user's non-default wallets
	prefixLimits   = 'l' // ordered(user) currency
	// Format 4: holds.
	prefixHold         = 'h' // id: the hold's record
	prefixHoldKey      = 'j' // lp(authority) key: the value is the hold ID
	prefixHoldWallet   = 'y' // lp(user) lp(currency) id
	prefixExpiry       = 'q' // expiry(expires) id: active holds that expire
	prefixWalletExpiry = 'r' // lp(user) lp(currency) expiry(expires) id
	// Format 5: the change feed.
	prefixChange = 'c' // seq: a change, under its sequence number
	// prefixOldTotal holds the totals of formats 1 and 2, lp(authority)
	// user, which Open moves under prefixTotal (see migrate.go).
	prefixOldTotal = 't'
)

// migrateKey is present while Open upgrades a directory of an older
// format (moves the totals of format 1 or 2 to their keys of format 3
// and later, and synthesizes the feed's past); its value is the format
// the directory had (a uvarint).
var migrateKey = []byte{prefixMeta, 'm', 'i', 'g', 'r', 'a', 't', 'e'}

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
	return appendKey(make([]byte, 0, n), prefix, parts...)
}

// appendKey appends [key](prefix, parts...) to dst.
func appendKey(dst []byte, prefix byte, parts ...string) []byte {
	dst = append(dst, prefix)
	for i, p := range parts {
		if i < len(parts)-1 {
			dst = binary.AppendUvarint(dst, uint64(len(p)))
		}
		dst = append(dst, p...)
	}
	return dst
}

// indexKeys returns the entry's own key, then the keys that index it
// for Entries among entries with items (its by-user, by-authority and
// by-(authority, user) postings are [entryPostings]).
func indexKeys(r *ledger.Record) [][]byte {
	ks := [][]byte{key(prefixEntry, r.ID)}
	if r.Item != nil {
		ks = append(ks,
			key(prefixItem, r.ID),
			key(prefixItemUser, r.UserID, r.ID),
			key(prefixItemAuth, r.AuthorityID, r.ID))
	}
	return ks
}

// userPrefix returns the prefix of the by-user index keys for the user's
// entries in currency, followed by an entry ID, and the lowest ID to
// start from. The default currency keeps the layout of formats 1 and 2,
// u lp(user) id; another currency adds it, u lp(user) lp(currency) id.
// The two cannot be confused: an ID starts with a lowercase hex digit
// (0x30 or more), a currency's length is 1 to 32. So a user's
// default-currency entries are the keys u lp(user) id with id >= "0"
// (lowest), and those in currency c the keys under u lp(user) lp(c).
func userPrefix(user, currency string) (prefix []byte, lowest string) {
	if currency == "" {
		return key(prefixUser, user, ""), string(rune(lowestID))
	}
	return key(prefixUser, user, currency, ""), ""
}

// lowestID is the least first byte of an entry ID ("0"-"9", "a"-"f");
// the currency length that follows lp(user) in a by-user key of another
// currency is below it.
const lowestID = '0'

// scanPrefix returns the prefix of the index that serves s, followed in
// each key by an entry ID, and the lowest ID to start from ("" for
// none). With UserID alone and no InCurrency it returns a nil prefix:
// the user's entries in every currency are a merge of the by-user
// index's ranges, one per currency (see [tx.userEntryIDs]). Under the
// entry prefix the values are the records; under the others they are
// empty. The index may hold more than s selects: [matches] filters the
// records.
func scanPrefix(s ledger.Scan) (prefix []byte, lowest string) {
	switch {
	case s.UserID != "" && s.AuthorityID != "":
		return key(prefixPair, s.AuthorityID, s.UserID, ""), ""
	case s.UserID != "" && s.ItemsOnly:
		return key(prefixItemUser, s.UserID, ""), ""
	case s.UserID != "" && s.InCurrency:
		return userPrefix(s.UserID, s.Currency)
	case s.UserID != "":
		return nil, ""
	case s.AuthorityID != "" && s.ItemsOnly:
		return key(prefixItemAuth, s.AuthorityID, ""), ""
	case s.AuthorityID != "":
		return key(prefixAuth, s.AuthorityID, ""), ""
	case s.ItemsOnly:
		return []byte{prefixItem}, ""
	}
	return []byte{prefixEntry}, ""
}

// matches reports whether r is selected by s. Every index scanPrefix
// chooses holds only entries of s's user and authority, so only
// ItemsOnly and the currency need checking.
func matches(s ledger.Scan, r *ledger.Record) bool {
	return (!s.ItemsOnly || r.Item != nil) && (!s.InCurrency || r.Currency == s.Currency)
}

// totalKey is the key of the running total k names.
func totalKey(k ledger.TotalKey) []byte {
	return key(prefixTotal, k.AuthorityID, k.Currency, k.UserID)
}

// appendTotalKey appends [totalKey](k) to dst.
func appendTotalKey(dst []byte, k ledger.TotalKey) []byte {
	return appendKey(dst, prefixTotal, k.AuthorityID, k.Currency, k.UserID)
}

// holdWalletKey is the key of the per-wallet index of holds.
func holdWalletKey(h *ledger.HoldRecord) []byte {
	return key(prefixHoldWallet, h.UserID, h.Currency, h.ID)
}

// expiryKeys returns the keys of an active hold in the expiry indexes,
// overall and per wallet, or nil for a hold not to be in them: one that
// is closed or never expires. The hold's Expires has passed timeNanos
// (encodeHold checked it).
func expiryKeys(h *ledger.HoldRecord) [][]byte {
	if h.State != ledger.HoldActive || h.Expires.IsZero() {
		return nil
	}
	at := string(expiry(h.Expires.UnixNano()))
	return [][]byte{
		key(prefixExpiry, at+h.ID),
		key(prefixWalletExpiry, h.UserID, h.Currency, at+h.ID),
	}
}

// expiryLen is the length of an expiry in an expiry index key.
const expiryLen = 8

// expiry encodes Unix nanoseconds so that the encodings sort as the
// instants do: big-endian, with the sign bit flipped.
func expiry(nanos int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(nanos)^1<<63)
}

// limitsKey is the key of the limits of the user's wallet in currency:
// the user ID in an order-preserving encoding, so that every limits in
// (user, currency) order is one walk of the prefix.
func limitsKey(user, currency string) []byte {
	return append(appendOrdered([]byte{prefixLimits}, user), currency...)
}

// appendOrdered appends s so that the encodings of two strings compare
// as the strings do and none is a prefix of another: 0x00 becomes 0x00
// 0xFF, and 0x00 0x01 ends it.
func appendOrdered(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			b = append(b, 0, 0xFF)
			continue
		}
		b = append(b, s[i])
	}
	return append(b, 0, 1)
}

// cutOrdered decodes a string appendOrdered encoded at the start of b
// and returns it and the rest of b.
func cutOrdered(b []byte) (s string, rest []byte, ok bool) {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] != 0 {
			out = append(out, b[i])
			continue
		}
		if i+1 == len(b) {
			return "", nil, false
		}
		switch b[i+1] {
		case 0xFF:
			out = append(out, 0)
			i++
		case 1:
			return string(out), b[i+2:], true
		default:
			return "", nil, false
		}
	}
	return "", nil, false
}

// cutLP decodes a length-prefixed component at the start of b.
func cutLP(b []byte) (s, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
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
