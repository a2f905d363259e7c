package badgerstore

import (
	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// pendingTotal is a total an Update set: its value before the Update
// (prev) and now (val), and whether SetTotal wrote it to Badger already
// (a total not stored before).
type pendingTotal struct {
	key     string
	tk      ledger.TotalKey
	prev    totalVersion
	val     ledger.Total
	written bool
}

// pendingTotals are the totals an Update set, in the order it first set
// them: a slice searched linearly while it is short (an Update of one
// entry sets two), indexed by a map once it grows.
type pendingTotals struct {
	list  []pendingTotal
	index map[string]int
}

const pendingIndexFrom = 16

func (p *pendingTotals) get(k []byte) *pendingTotal {
	if p.index != nil {
		if i, ok := p.index[string(k)]; ok {
			return &p.list[i]
		}
		return nil
	}
	for i := range p.list {
		if p.list[i].key == string(k) {
			return &p.list[i]
		}
	}
	return nil
}

func (p *pendingTotals) add(k []byte, tk ledger.TotalKey, prev totalVersion) *pendingTotal {
	if p.list == nil {
		p.list = make([]pendingTotal, 0, 4) // an entry's two, a transfer's four
	}
	p.list = append(p.list, pendingTotal{key: string(k), tk: tk, prev: prev})
	switch n := len(p.list); {
	case p.index != nil:
		p.index[string(k)] = n - 1
	case n >= pendingIndexFrom:
		p.index = make(map[string]int, 2*n)
		for i := range p.list {
			p.index[p.list[i].key] = i
		}
	}
	return &p.list[len(p.list)-1]
}

// insertedEntry is what classify needs of an entry an Update inserted.
type insertedEntry struct {
	id, user, currency, authority string
	balance, authorityBalance     decimal.Decimal
}

// classify decides, for each total the Update set, whether Badger must
// hold it (written through) or may be left behind (deferred, rebuilt
// from the records if the process stops before a checkpoint), and
// reports whether the commit must also make Badger's totals complete
// (forced): when a total it set is one the records cannot rebuild.
//
// Rebuilding a total after a checkpoint (see rebuildTotals) sets its
// value and last entry ID from the last entry the feed names after the
// checkpoint: the record's Balance for the wallet's total, its
// AuthorityBalance for its authority's; the held amount always comes
// from Badger. So a total may be deferred when it was stored before
// (scans of totals walk Badger's keys), its held amount did not change,
// and its value and last entry ID are those of an entry this Update
// inserted and appended the entry change of. It is consistent (the
// records rebuild it) when it may be deferred, or when Badger holds it,
// held aside, as the records do: a wallet's first total, a hold's
// change of the held amount alone, or a capture, which does both. A
// total that is not consistent (a store test's arbitrary total, an
// import that sets one its records do not match) forces the commit to
// write every total and move the checkpoint past itself, so that no
// rebuild ever reads the records it contradicts.
func (t *tx) classify() (ws []written, forced bool) {
	var byID map[string]int
	if len(t.w.inserted) >= pendingIndexFrom {
		byID = make(map[string]int, len(t.w.inserted))
		for i := range t.w.inserted {
			byID[t.w.inserted[i].id] = i
		}
	}
	find := func(id string) *insertedEntry {
		if byID != nil {
			if i, ok := byID[id]; ok {
				return &t.w.inserted[i]
			}
			return nil
		}
		for i := len(t.w.inserted) - 1; i >= 0; i-- {
			if t.w.inserted[i].id == id {
				return &t.w.inserted[i]
			}
		}
		return nil
	}
	ws = make([]written, 0, len(t.w.totals.list))
	for i := range t.w.totals.list {
		p := &t.w.totals.list[i]
		derivable := false
		if r := find(p.val.LastEntryID); r != nil && r.user == p.tk.UserID && r.currency == p.tk.Currency {
			if _, ok := t.w.changed[r.id]; ok {
				switch p.tk.AuthorityID {
				case "":
					derivable = same(r.balance, p.val.Value)
				case r.authority:
					derivable = same(r.authorityBalance, p.val.Value)
				}
			}
		}
		sameHeld := same(p.prev.val.Held, p.val.Held)
		deferred := derivable && p.prev.exists && sameHeld
		consistent := derivable ||
			p.prev.exists && same(p.prev.val.Value, p.val.Value) && p.prev.val.LastEntryID == p.val.LastEntryID
		if !consistent {
			forced = true
		}
		ws = append(ws, written{key: p.key, val: p.val, through: !deferred})
	}
	return ws, forced
}

// same reports whether a and b are the same decimal, exponent and all:
// what a rebuild reads must be what was set, to the digit.
func same(a, b decimal.Decimal) bool {
	return a.Exponent() == b.Exponent() && a.Equal(b)
}
