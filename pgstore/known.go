package pgstore

import (
	"slices"
	"sync"
)

// knownTotalsMax bounds how many totals a [Store] remembers as having a
// row: about 4 MB of keys at most.
const knownTotalsMax = 1 << 15

// knownTotals remembers totals that have a committed row, learned from
// the updates that committed them, so that an update that locks them
// need not send the placeholder insert for them (see tx.queueLocks). A
// committed total is never deleted: only placeholders are, by the
// transaction that made them, before it commits. Should a remembered
// total have no row all the same (the table emptied by hand, say), the
// lock finds fewer rows than it was given, and the update fails with a
// conflict, forgets every total and runs again, with the placeholder
// insert for all its keys. When full, it forgets an arbitrary total for
// each one it learns. The zero value is empty and ready; it is safe for
// concurrent use.
type knownTotals struct {
	mu   sync.Mutex
	keys map[storedKey]struct{}
}

// unknown returns the keys of ks, which are sorted, that k does not
// remember, in their order.
func (k *knownTotals) unknown(ks []storedKey) []storedKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.keys) == 0 {
		return ks
	}
	var out []storedKey
	for _, key := range ks {
		if _, ok := k.keys[key]; !ok {
			out = append(out, key)
		}
	}
	return out
}

// learn remembers that the totals of keys have a committed row, but for
// those of dropped, whose placeholders the commit deleted.
func (k *knownTotals) learn(keys, dropped []storedKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[storedKey]struct{}, min(len(keys), knownTotalsMax))
	}
	for _, key := range keys {
		if slices.Contains(dropped, key) {
			continue
		}
		if _, ok := k.keys[key]; ok {
			continue
		}
		if len(k.keys) >= knownTotalsMax {
			for old := range k.keys {
				delete(k.keys, old)
				break
			}
		}
		k.keys[key] = struct{}{}
	}
}

// forget forgets every total.
func (k *knownTotals) forget() {
	k.mu.Lock()
	clear(k.keys)
	k.mu.Unlock()
}
