package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/walletledger/ledger"
)

// Holds: a record under h id, and index keys (see the package doc): the
// hold's idempotency key, the per-wallet index, and, while it is active
// and expires, the expiry indexes overall and per wallet. Index values
// are empty but the idempotency key's, which is the hold ID; scans of an
// index read each hold's record with a point lookup.

// hold reads the hold with the given ID.
func (t *tx) hold(id string) (ledger.HoldRecord, error) {
	item, err := t.txn.Get(key(prefixHold, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ledger.HoldRecord{}, fmt.Errorf("badgerstore: hold %q: %w", id, ledger.ErrNotFound)
	}
	if err != nil {
		return ledger.HoldRecord{}, fmt.Errorf("badgerstore: read hold %q: %w", id, err)
	}
	return decodeHoldItem(item)
}

// decodeHoldItem decodes the hold stored in item.
func decodeHoldItem(item *badger.Item) (ledger.HoldRecord, error) {
	return decodeValue(item, "hold", decodeHold)
}

// indexedHold reads the hold that an index names; index says which,
// for the message if the hold is missing.
func (t *tx) indexedHold(index func() string, id string) (ledger.HoldRecord, error) {
	h, err := t.hold(id)
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.HoldRecord{}, fmt.Errorf("%w: %s names missing hold %q", errCorrupt, index(), id)
	}
	return h, err
}

func (t *tx) Hold(ctx context.Context, id string) (ledger.HoldRecord, error) {
	if err := t.check(ctx); err != nil {
		return ledger.HoldRecord{}, err
	}
	return t.hold(id)
}

func (t *tx) HoldByIdempotencyKey(ctx context.Context, authorityID, k string) (ledger.HoldRecord, error) {
	if err := t.check(ctx); err != nil {
		return ledger.HoldRecord{}, err
	}
	ik := key(prefixHoldKey, authorityID, k)
	id, err := t.get(ik)
	if errors.Is(err, ledger.ErrNotFound) {
		return ledger.HoldRecord{}, fmt.Errorf("badgerstore: hold idempotency key %q of authority %q: %w", k, authorityID, ledger.ErrNotFound)
	}
	if err != nil {
		return ledger.HoldRecord{}, fmt.Errorf("badgerstore: read hold idempotency key %q of authority %q: %w", k, authorityID, err)
	}
	return t.indexedHold(func() string { return fmt.Sprintf("hold idempotency key %q of authority %q", k, authorityID) }, string(id))
}

// Holds implements [ledger.ReadTx]. Without a user it walks the records
// and filters them by currency; with a user and a currency it walks the
// wallet's index; with a user and AnyCurrency it merges, by ID, the
// user's wallets' ranges of that index, found by a seek each.
func (t *tx) Holds(ctx context.Context, s ledger.HoldScan) iter.Seq2[ledger.HoldRecord, error] {
	return func(yield func(ledger.HoldRecord, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.HoldRecord{}, err)
			return
		}
		start := ""
		if s.After != "" {
			start = s.After + "\x00"
		}
		if s.UserID == "" {
			load := func(_ []byte, item *badger.Item) (ledger.HoldRecord, error) { return decodeHoldItem(item) }
			for h, err := range walk(ctx, t, []byte{prefixHold}, start, "", false, load) {
				if err == nil && !s.AnyCurrency && h.Currency != s.Currency {
					continue
				}
				if !yield(h, err) || err != nil {
					return
				}
			}
			return
		}
		curs := []string{s.Currency}
		if s.AnyCurrency {
			var err error
			if curs, err = t.holdCurrencies(s.UserID); err != nil {
				yield(ledger.HoldRecord{}, err)
				return
			}
		}
		ranges := make([]iter.Seq2[string, error], len(curs))
		for i, c := range curs {
			ranges[i] = walk(ctx, t, key(prefixHoldWallet, s.UserID, c, ""), start, "", false,
				func(id []byte, _ *badger.Item) (string, error) { return string(id), nil })
		}
		for id, err := range mergeIDs(ranges) {
			var h ledger.HoldRecord
			if err == nil {
				h, err = t.indexedHold(func() string { return fmt.Sprintf("the hold index of user %q", s.UserID) }, id)
			}
			if !yield(h, err) || err != nil {
				return
			}
		}
	}
}

// holdCurrencies returns the currencies in which the user has holds,
// from the per-wallet index: one seek per currency, reading no value.
func (t *tx) holdCurrencies(user string) ([]string, error) {
	prefix := key(prefixHoldWallet, user, "")
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done.Load() {
		return nil, errTxDone
	}
	it := t.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var curs []string
	for it.Seek(prefix); it.ValidForPrefix(prefix); {
		k := it.Item().Key()
		c, _, ok := cutLP(k[len(prefix):])
		if !ok {
			return nil, fmt.Errorf("%w: malformed hold index key %q", errCorrupt, k)
		}
		curs = append(curs, string(c))
		it.Seek(successor(key(prefixHoldWallet, user, string(c), "")))
	}
	return curs, nil
}

// mergeIDs yields the IDs of ranges, each ascending, in ascending order.
// The ranges are few (a user's currencies): each next ID is picked
// linearly.
func mergeIDs(ranges []iter.Seq2[string, error]) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if len(ranges) == 1 {
			for id, err := range ranges[0] {
				if !yield(id, err) || err != nil {
					return
				}
			}
			return
		}
		type head struct {
			next func() (string, error, bool)
			stop func()
			id   string
		}
		heads := make([]*head, 0, len(ranges))
		defer func() {
			for _, h := range heads {
				h.stop()
			}
		}()
		// advance moves h to its next ID, dropping it at its end.
		advance := func(i int) error {
			h := heads[i]
			id, err, ok := h.next()
			switch {
			case err != nil:
				return err
			case !ok:
				h.stop()
				heads = append(heads[:i], heads[i+1:]...)
			}
			h.id = id
			return nil
		}
		for _, r := range ranges {
			next, stop := iter.Pull2(r)
			heads = append(heads, &head{next: next, stop: stop})
			if err := advance(len(heads) - 1); err != nil {
				yield("", err)
				return
			}
		}
		for len(heads) > 0 {
			best := 0
			for i, h := range heads {
				if h.id < heads[best].id {
					best = i
				}
			}
			if !yield(heads[best].id, nil) {
				return
			}
			if err := advance(best); err != nil {
				yield("", err)
				return
			}
		}
	}
}

// Time bounds of the expiry index: what Unix nanoseconds in an int64
// hold.
var (
	minExpiry = time.Unix(0, math.MinInt64)
	maxExpiry = time.Unix(0, math.MaxInt64)
)

// ExpiringHolds implements [ledger.ReadTx]: a seek to the start of the
// expiry index, overall or the wallet's, and a walk up to until.
func (t *tx) ExpiringHolds(ctx context.Context, userID, currency string, until time.Time) iter.Seq2[ledger.HoldRecord, error] {
	return func(yield func(ledger.HoldRecord, error) bool) {
		if err := t.check(ctx); err != nil {
			yield(ledger.HoldRecord{}, err)
			return
		}
		if until.Before(minExpiry) {
			return
		}
		end := ""
		if until.Before(maxExpiry) {
			end = string(expiry(until.UnixNano() + 1))
		}
		prefix := []byte{prefixExpiry}
		if userID != "" {
			prefix = key(prefixWalletExpiry, userID, currency, "")
		}
		load := func(rest []byte, item *badger.Item) (ledger.HoldRecord, error) {
			if len(rest) <= expiryLen {
				return ledger.HoldRecord{}, fmt.Errorf("%w: malformed expiry index key %q", errCorrupt, item.Key())
			}
			k := item.Key()
			return t.indexedHold(func() string { return fmt.Sprintf("expiry index key %q", k) }, string(rest[expiryLen:]))
		}
		for h, err := range walk(ctx, t, prefix, "", end, false, load) {
			if !yield(h, err) || err != nil {
				return
			}
		}
	}
}

func (t *tx) InsertHold(ctx context.Context, h ledger.HoldRecord) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	if h.ID == "" {
		return errors.New("badgerstore: insert hold: no ID")
	}
	k := key(prefixHold, h.ID)
	switch dup, err := t.exists(k); {
	case err != nil:
		return fmt.Errorf("badgerstore: insert hold %q: %w", h.ID, err)
	case dup:
		return fmt.Errorf("badgerstore: insert hold %q: a hold with this ID exists", h.ID)
	}
	var idemKey []byte
	if h.IdempotencyKey != "" {
		idemKey = key(prefixHoldKey, h.AuthorityID, h.IdempotencyKey)
		switch dup, err := t.exists(idemKey); {
		case err != nil:
			return fmt.Errorf("badgerstore: insert hold %q: %w", h.ID, err)
		case dup:
			return fmt.Errorf("badgerstore: insert hold %q: hold idempotency key %q of authority %q exists", h.ID, h.IdempotencyKey, h.AuthorityID)
		}
	}
	v, err := encodeHold(&h)
	if err != nil {
		return err
	}
	if err := t.set(k, v, "insert hold %q", h.ID); err != nil {
		return err
	}
	if err := t.set(holdWalletKey(&h), nil, "insert hold %q", h.ID); err != nil {
		return err
	}
	if idemKey != nil {
		if err := t.set(idemKey, []byte(h.ID), "insert hold %q", h.ID); err != nil {
			return err
		}
	}
	for _, ek := range expiryKeys(&h) {
		if err := t.set(ek, nil, "insert hold %q", h.ID); err != nil {
			return err
		}
	}
	return nil
}

// CloseHold implements [ledger.Tx]: it rewrites the record and deletes
// the hold's expiry index keys, if it has them.
func (t *tx) CloseHold(ctx context.Context, id string, c ledger.HoldClose) error {
	if err := t.check(ctx); err != nil {
		return err
	}
	if c.State == ledger.HoldActive || c.State > ledger.HoldExpired {
		return fmt.Errorf("badgerstore: close hold %q: %v is not a closed hold's state", id, c.State)
	}
	h, err := t.hold(id)
	if err != nil {
		return err
	}
	for _, ek := range expiryKeys(&h) {
		if err := t.del(ek, "close hold %q", id); err != nil {
			return err
		}
	}
	h.State, h.ClosedOn, h.EntryID = c.State, c.ClosedOn, c.EntryID
	v, err := encodeHold(&h)
	if err != nil {
		return err
	}
	return t.set(key(prefixHold, id), v, "close hold %q", id)
}
