package ledger

// undoMap is a map of a group commit's state whose changes a savepoint
// can undo: set records what it replaces, rollback restores it. A
// value read from the store and cached with put is no change, and a
// rollback keeps it.
type undoMap[K comparable, V any] struct {
	m    map[K]V
	undo []undoStep[K, V]
}

type undoStep[K comparable, V any] struct {
	key  K
	prev V
	had  bool // the key was in the map before
}

func (u *undoMap[K, V]) init() { u.m = make(map[K]V) }

func (u *undoMap[K, V]) reset() {
	clear(u.m)
	clear(u.undo)
	u.undo = u.undo[:0]
}

func (u *undoMap[K, V]) get(k K) (V, bool) {
	v, ok := u.m[k]
	return v, ok
}

// put caches v, read from the store: nothing to undo.
func (u *undoMap[K, V]) put(k K, v V) { u.m[k] = v }

// set changes k to v, undoably.
func (u *undoMap[K, V]) set(k K, v V) {
	prev, had := u.m[k]
	u.undo = append(u.undo, undoStep[K, V]{k, prev, had})
	u.m[k] = v
}

// savepoint returns what rollback takes to undo every later set.
func (u *undoMap[K, V]) savepoint() int { return len(u.undo) }

func (u *undoMap[K, V]) rollback(sp int) {
	for i := len(u.undo) - 1; i >= sp; i-- {
		s := u.undo[i]
		if s.had {
			u.m[s.key] = s.prev
		} else {
			delete(u.m, s.key)
		}
	}
	clear(u.undo[sp:])
	u.undo = u.undo[:sp]
}
