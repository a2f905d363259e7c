package ledger

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

// Lanes' generators that share a mark hand out IDs that increase in the
// order they are handed out, whichever lane hands them out, under a
// clock that stands still or goes back, with groups rolled back (a
// generator restored to a savepoint) and IDs observed from the store.
func TestLaneIDsIncreaseAcrossLanes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		mark := &idMark{}
		gens := make([]idGen, rapid.IntRange(2, 4).Draw(t, "lanes"))
		for i := range gens {
			gens[i].shared = mark
		}
		saved := make([]idGen, len(gens))
		copy(saved, gens)
		clock := time.Unix(0, rapid.Int64Range(1, 1e18).Draw(t, "start"))

		last := ""
		for i := range rapid.IntRange(1, 200).Draw(t, "steps") {
			g := &gens[rapid.IntRange(0, len(gens)-1).Draw(t, "lane")]
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0:
				clock = clock.Add(time.Duration(rapid.Int64Range(-1000, 1000).Draw(t, "step")))
				if clock.UnixNano() < 10 {
					clock = time.Unix(0, 10) // IDs start at 1970
				}
			case 1: // a group rolled back
				lane := rapid.IntRange(0, len(gens)-1).Draw(t, "rolled back")
				shared := gens[lane].shared
				gens[lane] = saved[lane]
				gens[lane].shared = shared
			case 2: // a savepoint
				copy(saved, gens)
			case 3: // a wallet's last entry, written by another process
				id := FormatEntryID(max(0, clock.UnixNano()+rapid.Int64Range(-5, 5).Draw(t, "ahead")), rapid.Uint32().Draw(t, "seq"))
				g.observe(id)
				next, _ := g.next(clock)
				if next <= id {
					t.Fatalf("step %d: %s after observing %s", i, next, id)
				}
				last = maxID(last, next)
			default:
				id, _ := g.next(clock)
				if id <= last {
					t.Fatalf("step %d: %s handed out after %s", i, id, last)
				}
				last = id
			}
		}
	})
}

func maxID(a, b string) string {
	if a > b {
		return a
	}
	return b
}

// Without the mark the test above fails: two lanes at one instant.
func TestLaneIDsNeedTheMark(t *testing.T) {
	now := time.Unix(0, 1e18)
	for range 100 {
		var a, b idGen
		x, _ := a.next(now)
		y, _ := b.next(now)
		if y <= x {
			return // what the mark prevents
		}
	}
	t.Fatal("two unmarked generators at one instant kept increasing: the test above proves nothing")
}
