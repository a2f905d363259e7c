package ledger

import (
	"container/heap"
	"errors"
	"iter"
)

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// merge yields the values of several sequences, each sorted by key, in
// key order (descending if desc, as each sequence then is). It stops at
// the first error.
func merge[T any](seqs []iter.Seq2[T, error], key func(T) string, desc bool) iter.Seq2[T, error] {
	if len(seqs) == 1 {
		return seqs[0]
	}
	return func(yield func(T, error) bool) {
		h := &mergeHeap[T]{key: key, desc: desc}
		for _, seq := range seqs {
			next, stop := iter.Pull2(seq)
			defer stop()
			v, err, ok := next()
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			if ok {
				h.items = append(h.items, mergeItem[T]{v, next})
			}
		}
		heap.Init(h)
		for len(h.items) > 0 {
			top := &h.items[0]
			if !yield(top.v, nil) {
				return
			}
			v, err, ok := top.next()
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			if ok {
				top.v = v
				heap.Fix(h, 0)
			} else {
				heap.Pop(h)
			}
		}
	}
}

type mergeItem[T any] struct {
	v    T
	next func() (T, error, bool)
}

type mergeHeap[T any] struct {
	items []mergeItem[T]
	key   func(T) string
	desc  bool
}

func (h *mergeHeap[T]) Len() int { return len(h.items) }
func (h *mergeHeap[T]) Less(i, j int) bool {
	a, b := h.key(h.items[i].v), h.key(h.items[j].v)
	if h.desc {
		return a > b
	}
	return a < b
}
func (h *mergeHeap[T]) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *mergeHeap[T]) Push(x any)    { h.items = append(h.items, x.(mergeItem[T])) }
func (h *mergeHeap[T]) Pop() any {
	last := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return last
}
