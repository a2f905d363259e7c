package storetest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
)

// runChangeContract checks what the Store contract holds for the change
// feed: records kept as given, cursors in commit order, seeks, rollback,
// and no gap filled behind a reader.
func runChangeContract(t *testing.T, ns NewStore) {
	t.Run("Records", func(t *testing.T) { testChangeRecords(t, ns) })
	t.Run("Cursors", func(t *testing.T) { testChangeCursors(t, ns) })
	t.Run("Rollback", func(t *testing.T) { testChangeRollback(t, ns) })
	t.Run("NoGapsBehindReaders", func(t *testing.T) { testChangeGaps(t, ns) })
}

var cursorForm = regexp.MustCompile(`^[0-9a-z]{1,64}$`)

// changeRecord builds a test change; n seeds its fields.
func changeRecord(n int) ledger.ChangeRecord {
	kinds := []ledger.ChangeKind{ledger.ChangeEntry, ledger.ChangeItemUsed, ledger.ChangeLimits,
		ledger.ChangeHoldPlaced, ledger.ChangeHoldReleased, ledger.ChangeHoldExpired}
	c := ledger.ChangeRecord{
		Kind:        kinds[n%len(kinds)],
		At:          time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n)*time.Second + time.Duration(n)),
		AuthorityID: fmt.Sprintf("auth-%d", n%3),
	}
	if c.Kind == ledger.ChangeLimits {
		c.Limits = &ledger.WalletLimits{UserID: fmt.Sprintf("u%d", n), Currency: []string{"", "gems"}[n%2], Floor: dec("-12.5")}
		if n%4 == 2 {
			c.Limits.Cap = ptr(dec("1000.01"))
		}
	} else {
		c.Ref = id(int64(n)<<20, uint32(n))
	}
	return c
}

func appendChanges(t *testing.T, s ledger.Store, cs ...ledger.ChangeRecord) {
	t.Helper()
	require.NoError(t, s.Update(context.Background(), func(tx ledger.Tx) error {
		for _, c := range cs {
			if err := tx.AppendChange(context.Background(), c); err != nil {
				return err
			}
		}
		return nil
	}))
}

func readChanges(t require.TestingT, s ledger.Store, after string) []ledger.ChangeRecord {
	var out []ledger.ChangeRecord
	require.NoError(t, s.View(context.Background(), func(tx ledger.ReadTx) error {
		for c, err := range tx.Changes(context.Background(), after) {
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	}))
	return out
}

func requireSameChange(t require.TestingT, want, got ledger.ChangeRecord) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	require.Equal(t, want.Kind, got.Kind)
	require.Truef(t, want.At.Equal(got.At), "At: got %v, want %v", got.At, want.At)
	require.Equal(t, time.UTC, got.At.Location())
	require.Equal(t, want.AuthorityID, got.AuthorityID)
	require.Equal(t, want.Ref, got.Ref)
	if want.Limits == nil {
		require.Nil(t, got.Limits)
		return
	}
	require.NotNil(t, got.Limits)
	require.Equal(t, want.Limits.UserID, got.Limits.UserID)
	require.Equal(t, want.Limits.Currency, got.Limits.Currency)
	require.Truef(t, want.Limits.Floor.Equal(got.Limits.Floor), "Floor: got %s, want %s", got.Limits.Floor, want.Limits.Floor)
	require.Equal(t, want.Limits.Cap == nil, got.Limits.Cap == nil, "Cap set")
	if want.Limits.Cap != nil {
		require.Truef(t, want.Limits.Cap.Equal(*got.Limits.Cap), "Cap: got %s, want %s", got.Limits.Cap, want.Limits.Cap)
	}
}

func testChangeRecords(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	var want []ledger.ChangeRecord
	for n := range 12 {
		want = append(want, changeRecord(n))
	}
	appendChanges(t, s, want[:5]...)
	appendChanges(t, s, want[5:]...)
	got := readChanges(t, s, "")
	require.Len(t, got, len(want))
	for i := range want {
		requireSameChange(t, want[i], got[i])
		require.Regexp(t, cursorForm, got[i].Cursor)
	}
	require.Empty(t, readChanges(t, newStore(t, ns), ""), "a new store has no changes")
}

func testChangeCursors(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	for n := range 40 {
		appendChanges(t, s, changeRecord(n), changeRecord(n+100)) // two per transaction
	}
	all := readChanges(t, s, "")
	require.Len(t, all, 80)
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1].Cursor, all[i].Cursor, "cursors sort in commit order, and in append order within one")
		require.Equal(t, changeRecord(i/2+100*(i%2)).Ref, all[i].Ref)
	}
	for _, i := range []int{0, 1, 37, 78, 79} {
		got := readChanges(t, s, all[i].Cursor)
		require.Len(t, got, 79-i, "after cursor %d", i)
		if len(got) > 0 {
			require.Equal(t, all[i+1].Cursor, got[0].Cursor)
		}
	}
	// Stopping early is allowed.
	require.NoError(t, s.View(context.Background(), func(tx ledger.ReadTx) error {
		for range tx.Changes(context.Background(), "") {
			break
		}
		return nil
	}))
	// Cursors survive later writes unchanged.
	appendChanges(t, s, changeRecord(500))
	again := readChanges(t, s, "")
	require.Len(t, again, 81)
	for i := range all {
		require.Equal(t, all[i].Cursor, again[i].Cursor)
	}
	require.Less(t, all[79].Cursor, again[80].Cursor)
}

func testChangeRollback(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	appendChanges(t, s, changeRecord(1))
	boom := errors.New("boom")
	err := s.Update(context.Background(), func(tx ledger.Tx) error {
		require.NoError(t, tx.AppendChange(context.Background(), changeRecord(2)))
		return boom
	})
	require.ErrorIs(t, err, boom)
	appendChanges(t, s, changeRecord(3))
	got := readChanges(t, s, "")
	require.Len(t, got, 2, "the rolled-back change is not in the feed")
	requireSameChange(t, changeRecord(1), got[0])
	requireSameChange(t, changeRecord(3), got[1])
	require.Less(t, got[0].Cursor, got[1].Cursor)
}

// testChangeGaps runs writers that append changes while readers read
// the feed from their last cursor: a reader must never find, later, a
// change whose cursor sorts before one it has already seen.
func testChangeGaps(t *testing.T, ns NewStore) {
	s := newStore(t, ns)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readerErr error
	var mu sync.Mutex
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seen []string
			last := ""
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Read everything, and check that what this reader saw
				// before is exactly the prefix of it up to last.
				var all []string
				err := s.View(context.Background(), func(tx ledger.ReadTx) error {
					for c, err := range tx.Changes(context.Background(), "") {
						if err != nil {
							return err
						}
						all = append(all, c.Cursor)
					}
					return nil
				})
				if err == nil {
					n := 0
					for n < len(all) && all[n] <= last {
						n++
					}
					if !slices.Equal(all[:n], seen) {
						err = fmt.Errorf("reader %d: a change appeared behind cursor %q", r, last)
					}
					seen = all
					if len(all) > 0 {
						last = all[len(all)-1]
					}
				}
				if err != nil {
					mu.Lock()
					readerErr = errors.Join(readerErr, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	var ww sync.WaitGroup
	for w := range writers {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for i := range each {
				err := s.Update(context.Background(), func(tx ledger.Tx) error {
					for k := range 1 + i%3 {
						if err := tx.AppendChange(context.Background(), changeRecord(w*1000+i*10+k)); err != nil {
							return err
						}
					}
					if i%2 == 0 {
						time.Sleep(time.Duration(i%5) * time.Millisecond) // hold the transaction open
					}
					return nil
				})
				if err != nil {
					mu.Lock()
					readerErr = errors.Join(readerErr, err)
					mu.Unlock()
				}
			}
		}()
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	require.NoError(t, readerErr)
	all := readChanges(t, s, "")
	want := 0
	for i := range each {
		want += writers * (1 + i%3)
	}
	require.Len(t, all, want)
}
