package badgerstore

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/walletledger/ledger"
)

// postingsModel is what the index scans of a store must yield: every
// entry committed, by ID.
type postingsModel struct {
	recs map[string]ledger.Record
}

func (m *postingsModel) clone() *postingsModel {
	c := &postingsModel{recs: make(map[string]ledger.Record, len(m.recs))}
	for k, v := range m.recs {
		c.recs[k] = v
	}
	return c
}

// want returns the IDs s selects, in its order.
func (m *postingsModel) want(s ledger.Scan) []string {
	var ids []string
	for id, r := range m.recs {
		if (s.UserID == "" || r.UserID == s.UserID) && (s.AuthorityID == "" || r.AuthorityID == s.AuthorityID) &&
			(!s.InCurrency || r.Currency == s.Currency) && (s.Start == "" || id >= s.Start) && (s.End == "" || id < s.End) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if s.Reverse {
		slices.Reverse(ids)
	}
	return ids
}

func scanIDs(ctx context.Context, tx ledger.ReadTx, s ledger.Scan) ([]string, error) {
	var ids []string
	for r, err := range tx.Entries(ctx, s) {
		if err != nil {
			return nil, err
		}
		ids = append(ids, r.ID)
	}
	return ids, nil
}

// heldView is a View kept open across other operations, with the model
// as of its start.
type heldView struct {
	model *postingsModel
	scans chan ledger.Scan
	got   chan []string
	errc  chan error
	once  sync.Once
	err   error
}

func holdView(s *Store, m *postingsModel) (*heldView, error) {
	v := &heldView{model: m.clone(), scans: make(chan ledger.Scan), got: make(chan []string), errc: make(chan error, 1)}
	started := make(chan struct{})
	go func() {
		v.errc <- s.View(context.Background(), func(tx ledger.ReadTx) error {
			close(started)
			for sc := range v.scans {
				ids, err := scanIDs(context.Background(), tx, sc)
				if err != nil {
					return err
				}
				v.got <- ids
			}
			return nil
		})
	}()
	select {
	case <-started:
		return v, nil
	case err := <-v.errc:
		return nil, err
	}
}

func (v *heldView) scan(sc ledger.Scan) ([]string, error) {
	select {
	case v.scans <- sc:
		return <-v.got, nil
	case err := <-v.errc:
		return nil, err
	}
}

// close ends the View (once: a test that fails calls it again, so that
// the store's Close does not wait for it).
func (v *heldView) close() error {
	v.once.Do(func() {
		close(v.scans)
		v.err = <-v.errc
	})
	return v.err
}

// TestPostingsModel writes entries, in order of ID and out of it, with
// and without their entry changes, in commits that keep their postings
// in memory and ones that move the checkpoint past themselves, while
// checkpoints flush postings to blocks (every few postings), Views stay
// open across them, the store rebuilds its memory from the feed (as
// after a commit of unknown outcome, and as Open does after a crash,
// which TestCrash causes with SIGKILL), or reopens; every scan by user,
// currency,
// authority and (authority, user), with any bounds, either way, yields
// what the model holds, and a View what the model held when it began.
func TestPostingsModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		dir := t.TempDir()
		every := rapid.IntRange(1, 9).Draw(rt, "postings per checkpoint")
		opts := []Option{WithSyncWrites(false), func(c *config) {
			c.checkpointPostings = every
			c.checkpointChanges = rapid.IntRange(2, 50).Draw(rt, "changes per checkpoint")
		}}
		s, err := Open(dir, opts...)
		require.NoError(rt, err)
		defer func() { _ = s.Close() }()
		m := &postingsModel{recs: map[string]ledger.Record{}}
		var views []*heldView
		defer func() {
			for _, v := range views {
				_ = v.close()
			}
		}()
		users := []string{"ann", "bo"}
		auths := []string{"bank", "shop"}
		curs := []string{"", "gems"}
		next := uint64(1 << 40) // the next ID above every one
		taken := map[uint64]bool{}
		id := func(n uint64) string { return fmt.Sprintf("%016x", n) }
		randomScan := func(rt *rapid.T) ledger.Scan {
			var sc ledger.Scan
			switch rapid.IntRange(0, 3).Draw(rt, "scan") {
			case 0:
				sc.UserID = rapid.SampledFrom(users).Draw(rt, "user")
			case 1:
				sc.UserID = rapid.SampledFrom(users).Draw(rt, "user")
				sc.InCurrency, sc.Currency = true, rapid.SampledFrom(curs).Draw(rt, "currency")
			case 2:
				sc.AuthorityID = rapid.SampledFrom(auths).Draw(rt, "authority")
			case 3:
				sc.UserID = rapid.SampledFrom(users).Draw(rt, "user")
				sc.AuthorityID = rapid.SampledFrom(auths).Draw(rt, "authority")
			}
			bound := func(label string) string {
				if rapid.Bool().Draw(rt, label+" set") {
					return id(next - rapid.Uint64Range(0, 40).Draw(rt, label))
				}
				return ""
			}
			sc.Start, sc.End = bound("start"), bound("end")
			sc.Reverse = rapid.Bool().Draw(rt, "reverse")
			return sc
		}
		check := func(rt *rapid.T, sc ledger.Scan) {
			var got []string
			require.NoError(rt, s.View(ctx, func(tx ledger.ReadTx) error {
				var err error
				got, err = scanIDs(ctx, tx, sc)
				return err
			}))
			require.Equal(rt, m.want(sc), got, "scan %+v", sc)
		}
		rt.Repeat(map[string]func(*rapid.T){
			"write": func(rt *rapid.T) {
				n := rapid.IntRange(1, 4).Draw(rt, "entries")
				forced := rapid.IntRange(0, 9).Draw(rt, "forced") == 0
				var recs []ledger.Record
				var changed []bool
				for range n {
					var num uint64
					if old := rapid.IntRange(0, 4).Draw(rt, "old") == 0; old && next > 1<<40+1 {
						num = rapid.Uint64Range(1<<40, next-1).Draw(rt, "old ID")
						if taken[num] {
							continue
						}
					} else {
						next += rapid.Uint64Range(1, 3).Draw(rt, "gap")
						num = next
					}
					taken[num] = true
					recs = append(recs, ledger.Record{Entry: ledger.Entry{
						ID: id(num), UserID: rapid.SampledFrom(users).Draw(rt, "user"),
						AuthorityID: rapid.SampledFrom(auths).Draw(rt, "authority"),
						Currency:    rapid.SampledFrom(curs).Draw(rt, "currency"), Amount: decimal.NewFromInt(1),
					}})
					changed = append(changed, rapid.IntRange(0, 5).Draw(rt, "no change") > 0)
				}
				require.NoError(rt, s.Update(ctx, func(tx ledger.Tx) error {
					for i, r := range recs {
						if err := tx.InsertEntry(ctx, r); err != nil {
							return err
						}
						if changed[i] {
							if err := tx.AppendChange(ctx, ledger.ChangeRecord{Kind: ledger.ChangeEntry, AuthorityID: r.AuthorityID, Ref: r.ID}); err != nil {
								return err
							}
						}
					}
					if forced {
						// A total no record explains: the commit moves the
						// checkpoint past itself.
						return tx.SetTotal(ctx, ledger.TotalKey{UserID: "zed"}, ledger.Total{Value: decimal.NewFromInt(int64(next % 7)), LastEntryID: "none"})
					}
					return nil
				}))
				for _, r := range recs {
					m.recs[r.ID] = r
				}
			},
			"scan": func(rt *rapid.T) { check(rt, randomScan(rt)) },
			"hold view": func(rt *rapid.T) {
				if len(views) >= 2 {
					rt.Skip("two held")
				}
				v, err := holdView(s, m)
				require.NoError(rt, err)
				views = append(views, v)
			},
			"scan held view": func(rt *rapid.T) {
				if len(views) == 0 {
					rt.Skip("none held")
				}
				v := views[rapid.IntRange(0, len(views)-1).Draw(rt, "view")]
				sc := randomScan(rt)
				got, err := v.scan(sc)
				require.NoError(rt, err)
				require.Equal(rt, v.model.want(sc), got, "held view, scan %+v", sc)
			},
			"end view": func(rt *rapid.T) {
				if len(views) == 0 {
					rt.Skip("none held")
				}
				require.NoError(rt, views[0].close())
				views = views[1:]
			},
			"checkpoint": func(rt *rapid.T) {
				require.NoError(rt, s.lockWrite(ctx))
				err := s.checkpoint()
				s.unlockWrite()
				require.NoError(rt, err)
			},
			"rebuild memory": func(rt *rapid.T) {
				// As if the last commits' postings never reached memory:
				// the rebuild finds them in the feed. Views read the
				// memory they began with, so none may be held.
				if len(views) > 0 {
					rt.Skip("views held")
				}
				require.NoError(rt, s.lockWrite(ctx))
				s.post = newMemPostings()
				s.recoverTotals()
				s.unlockWrite()
				require.NoError(rt, s.broken)
			},
			"reopen": func(rt *rapid.T) {
				if len(views) > 0 {
					rt.Skip("views held")
				}
				require.NoError(rt, s.Close())
				s, err = Open(dir, opts...)
				require.NoError(rt, err)
			},
		})
		for _, sc := range []ledger.Scan{{UserID: "ann"}, {UserID: "bo"}, {AuthorityID: "bank"}, {AuthorityID: "shop", UserID: "bo"}} {
			check(rt, sc)
		}
	})
}

// insertWithChanges inserts, in tx, entries of user u and authority a
// with the IDs, each with its entry change.
func insertWithChanges(ctx context.Context, tx ledger.Tx, ids ...string) error {
	for _, id := range ids {
		if err := tx.InsertEntry(ctx, ledger.Record{Entry: ledger.Entry{ID: id, UserID: "u", AuthorityID: "a"}}); err != nil {
			return err
		}
		if err := tx.AppendChange(ctx, ledger.ChangeRecord{Kind: ledger.ChangeEntry, AuthorityID: "a", Ref: id}); err != nil {
			return err
		}
	}
	return nil
}

// TestPostingsMemoryDropped: a checkpoint writes the postings in memory
// to Badger and drops them from memory, unless a View older than it is
// open: then they stay until the View ends and the next commit.
func TestPostingsMemoryDropped(t *testing.T) {
	ctx := context.Background()
	s, err := Open("", WithInMemory())
	require.NoError(t, err)
	defer s.Close()
	write := func(ids ...string) {
		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return insertWithChanges(ctx, tx, ids...) }))
	}
	checkpoint := func() {
		require.NoError(t, s.lockWrite(ctx))
		defer s.unlockWrite()
		require.NoError(t, s.checkpoint())
	}
	inMemory := func() int {
		n := 0
		for _, l := range s.post.lists {
			n += len(l.ids)
		}
		return n
	}
	write("10", "11")
	require.Equal(t, 6, inMemory(), "two entries, three postings each")
	checkpoint()
	require.Zero(t, inMemory())
	require.Zero(t, s.post.unflushed)

	write("12")
	v, err := holdView(s, &postingsModel{})
	require.NoError(t, err)
	defer v.close()
	checkpoint()
	require.Equal(t, 3, inMemory(), "kept for the View")
	write("13")
	require.Equal(t, 6, inMemory())
	got, err := v.scan(ledger.Scan{UserID: "u"})
	require.NoError(t, err)
	require.Equal(t, []string{"10", "11", "12"}, got)
	require.NoError(t, v.close())
	write("14")
	require.Equal(t, 6, inMemory(), "12 dropped, 13 and 14 unflushed")
	require.Equal(t, 6, s.post.unflushed)
}

// TestPostingsBlockCorrupt: a block whose bytes changed on disk fails the
// scan that reads it, naming it, instead of yielding wrong IDs.
func TestPostingsBlockCorrupt(t *testing.T) {
	ctx := context.Background()
	s, err := Open("", WithInMemory())
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return insertWithChanges(ctx, tx, "10", "11", "12") }))
	require.NoError(t, s.lockWrite(ctx))
	require.NoError(t, s.checkpoint())
	s.unlockWrite()
	k := key(prefixAuth, "a", "10")
	require.NoError(t, s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(k)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		require.Greater(t, len(v), 0, "a block")
		v[len(v)/2] ^= 1
		return txn.Set(k, v)
	}))
	err = s.View(ctx, func(tx ledger.ReadTx) error {
		_, err := scanIDs(ctx, tx, ledger.Scan{AuthorityID: "a"})
		return err
	})
	require.ErrorIs(t, err, errCorrupt)
	require.ErrorContains(t, err, "index block")
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		got, err := scanIDs(ctx, tx, ledger.Scan{UserID: "u"})
		require.Equal(t, []string{"10", "11", "12"}, got)
		return err
	}), "the other indexes read as before")
}

// BenchmarkPostingsMemory measures what the postings waiting in memory
// cost, with their IDs: the live heap with 40,000 entries' postings in
// memory, less the heap once a checkpoint has written them and dropped
// them (the totals staying), per posting. With a user per entry every
// by-user and pair posting has a list of its own (the worst case); with
// 1,000 users they share.
func BenchmarkPostingsMemory(b *testing.B) {
	for _, users := range []int{0, 1000} {
		name := "user-per-entry"
		if users > 0 {
			name = fmt.Sprintf("users-%d", users)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			const entries = 40_000
			for range b.N {
				s, err := Open("", WithInMemory(), func(c *config) {
					c.checkpointPostings, c.checkpointChanges, c.checkpointTotals = 1<<30, 1<<30, 1<<30
				})
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; i < entries; i += 1000 {
					err := s.Update(ctx, func(tx ledger.Tx) error {
						for j := i; j < i+1000; j++ {
							u := j
							if users > 0 {
								u = j % users
							}
							r := ledger.Record{Entry: ledger.Entry{ID: fmt.Sprintf("%024x", j+1), UserID: fmt.Sprintf("user-%07d", u),
								AuthorityID: "bank", Amount: decimal.NewFromInt(1)}}
							if err := tx.InsertEntry(ctx, r); err != nil {
								return err
							}
							if err := tx.AppendChange(ctx, ledger.ChangeRecord{Kind: ledger.ChangeEntry, AuthorityID: "bank", Ref: r.ID}); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				n := s.post.unflushed
				with := heapNow()
				if err := s.lockWrite(ctx); err != nil {
					b.Fatal(err)
				}
				err = s.checkpoint()
				s.unlockWrite()
				if err != nil {
					b.Fatal(err)
				}
				without := heapNow()
				b.ReportMetric((float64(with)-float64(without))/float64(n), "B/posting")
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestPostingsOlderIDs: entries with IDs below one stored (as an import
// writes them) are posted inside the blocks whose ranges hold them, or
// apart, never overlapping another key: also when they fall between
// postings still in memory, and in a commit that moves the checkpoint,
// whose checkpoint writes those postings to a block after the commit's
// transaction began.
func TestPostingsOlderIDs(t *testing.T) {
	ctx := context.Background()
	for _, forced := range []bool{false, true} {
		t.Run(fmt.Sprintf("forced=%v", forced), func(t *testing.T) {
			s, err := Open("", WithInMemory())
			require.NoError(t, err)
			defer s.Close()
			write := func(forced bool, ids ...string) {
				require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
					if err := insertWithChanges(ctx, tx, ids...); err != nil {
						return err
					}
					if forced {
						return tx.SetTotal(ctx, ledger.TotalKey{UserID: "zed"}, ledger.Total{Value: decimal.NewFromInt(1), LastEntryID: "none"})
					}
					return nil
				}))
			}
			write(false, "10", "20")
			require.NoError(t, s.lockWrite(ctx))
			require.NoError(t, s.checkpoint()) // a block [10, 20]
			s.unlockWrite()
			write(false, "30", "40")       // in memory
			write(forced, "15", "35", "5") // inside the block, inside memory, below both
			write(false, "50")
			want := []string{"10", "15", "20", "30", "35", "40", "5", "50"}
			for _, sc := range []ledger.Scan{{UserID: "u"}, {AuthorityID: "a"}, {AuthorityID: "a", UserID: "u"}} {
				for _, rev := range []bool{false, true} {
					sc.Reverse = rev
					w := slices.Clone(want)
					if rev {
						slices.Reverse(w)
					}
					require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
						got, err := scanIDs(ctx, tx, sc)
						require.Equal(t, w, got, "scan %+v", sc)
						return err
					}))
				}
			}
			// Every key under the by-authority prefix holds a range of its
			// own.
			prefix := key(prefixAuth, "a", "")
			require.NoError(t, s.db.View(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
				defer it.Close()
				last := ""
				for it.Rewind(); it.Valid(); it.Next() {
					k := it.Item().KeyCopy(nil)
					v, err := it.Item().ValueCopy(nil)
					require.NoError(t, err)
					ids, err := decodePostings(nil, k, string(k[len(prefix):]), v)
					require.NoError(t, err)
					require.Greater(t, ids[0], last, "key %q overlaps the one before it", k)
					last = ids[len(ids)-1]
				}
				return nil
			}))
		})
	}
}

// TestPostingsCheckpointBound: postings waiting in memory never pass the
// bound by more than one commit's: the commit that reaches it
// checkpoints them.
func TestPostingsCheckpointBound(t *testing.T) {
	ctx := context.Background()
	const bound = 10
	s, err := Open("", WithInMemory(), func(c *config) { c.checkpointPostings = bound })
	require.NoError(t, err)
	defer s.Close()
	flushes := 0
	for i := range 40 {
		id := fmt.Sprintf("%04d", 1000+i)
		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return insertWithChanges(ctx, tx, id) }))
		require.Less(t, s.post.unflushed, bound, "after entry %d", i)
		if s.post.unflushed == 0 {
			flushes++
		}
	}
	// Three postings an entry: every fourth entry reaches the bound.
	require.Equal(t, 40/((bound+2)/3), flushes, "a checkpoint each time the bound is reached")
}

// TestPostingsScanCancelled: a scan of an index, over blocks and postings
// in memory, ends with the context's error soon after the context ends,
// having yielded nothing more than 256 IDs later.
func TestPostingsScanCancelled(t *testing.T) {
	s, err := Open("", WithInMemory())
	require.NoError(t, err)
	defer s.Close()
	bg := context.Background()
	for half := range 2 {
		require.NoError(t, s.Update(bg, func(tx ledger.Tx) error {
			for i := range 500 {
				if err := insertWithChanges(bg, tx, fmt.Sprintf("%05d", 10000+half*500+i)); err != nil {
					return err
				}
			}
			return nil
		}))
		if half == 0 {
			require.NoError(t, s.lockWrite(bg))
			require.NoError(t, s.checkpoint()) // the first half in a block
			s.unlockWrite()
		}
	}
	for _, sc := range []ledger.Scan{{UserID: "u"}, {AuthorityID: "a", Reverse: true}} {
		ctx, cancel := context.WithCancel(bg)
		n := 0
		var last error
		require.NoError(t, s.View(bg, func(tx ledger.ReadTx) error {
			for _, err := range tx.Entries(ctx, sc) {
				if err != nil {
					last = err
					break
				}
				if n++; n == 10 {
					cancel()
				}
			}
			return nil
		}))
		cancel()
		require.ErrorIs(t, last, context.Canceled, "scan %+v", sc)
		require.LessOrEqual(t, n, 10+256, "scan %+v went on after the cancel", sc)
	}
}
