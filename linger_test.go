package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

// syncingStore is memstore whose every commit also costs a fixed wait,
// as a commit that ends with an fsync does, and which counts its commits.
// With keepOpen, Close leaves memstore open, to be read after the ledger
// closed.
type syncingStore struct {
	*memstore.Store
	wait     time.Duration
	commits  atomic.Int64
	keepOpen bool
}

func (s *syncingStore) Close() error {
	if s.keepOpen {
		return nil
	}
	return s.Store.Close()
}

// TryUpdate declines, so that every write goes through Update.
func (s *syncingStore) TryUpdate(context.Context, func(ledger.Tx) error) (bool, error) {
	return false, nil
}

func (s *syncingStore) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	err := s.Store.Update(ctx, fn)
	time.Sleep(s.wait)
	s.commits.Add(1)
	return err
}

// writeInLoops starts writers goroutines, each creating entries for its
// own user as soon as it has the last one's result and handing each to
// took, until took returns false or the ledger is closed. The returned
// function waits for them.
func writeInLoops(ctx context.Context, t *testing.T, l *ledger.Ledger, writers int, took func(ledger.Entry) bool) (wait func()) {
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: fmt.Sprint("u", w),
					Amount: decimal.NewFromInt(1), Reason: "r"})
				if errors.Is(err, ledger.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if !took(e) {
					return
				}
			}
		}()
	}
	return wg.Wait
}

// Callers that write again as soon as they have their result must not
// settle into two groups that take turns, each paying the commit's fixed
// cost for half of them: the leader waits for the last group's callers
// to queue again, and a slow store's commits carry all of them.
func TestGroupsGatherCallersThatWriteAgain(t *testing.T) {
	const writers = 16
	s := &syncingStore{Store: memstore.New(), wait: 3 * time.Millisecond}
	l, err := ledger.New(s)
	require.NoError(t, err)
	defer l.Close()

	var entries atomic.Int64
	var stop atomic.Bool
	wait := writeInLoops(context.Background(), t, l, writers, func(ledger.Entry) bool {
		entries.Add(1)
		return !stop.Load()
	})
	// Past the first commits, whose groups form as the writers start.
	time.Sleep(100 * time.Millisecond)
	e0, c0 := entries.Load(), s.commits.Load()
	time.Sleep(400 * time.Millisecond)
	e1, c1 := entries.Load(), s.commits.Load()
	stop.Store(true)
	wait()

	perCommit := float64(e1-e0) / float64(c1-c0)
	t.Logf("%d entries in %d commits: %.1f a commit", e1-e0, c1-c0, perCommit)
	// Taking turns gives writers/2 a commit.
	require.Greater(t, perCommit, 0.75*writers, "entries a commit")
}

// Close while groups wait for company and commit: every writer returns,
// with its entry or ErrClosed, and every entry acknowledged is stored.
func TestCloseWhileGroupsGather(t *testing.T) {
	const writers = 16
	s := &syncingStore{Store: memstore.New(), wait: time.Millisecond, keepOpen: true}
	l, err := ledger.New(s)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background()) // callers that can give up lead detached
	defer cancel()

	var mu sync.Mutex
	acked := map[string]bool{}
	wait := writeInLoops(ctx, t, l, writers, func(e ledger.Entry) bool {
		mu.Lock()
		acked[e.ID] = true
		mu.Unlock()
		return true
	})
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, l.Close())
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writers still waiting 10s after Close")
	}

	l2, err := ledger.New(s.Store)
	require.NoError(t, err)
	defer l2.Close()
	es, err := l2.Entries(context.Background(), ledger.EntryQuery{Limit: 100000})
	require.NoError(t, err)
	stored := map[string]bool{}
	for _, e := range es {
		stored[e.ID] = true
	}
	require.NotEmpty(t, acked)
	for id := range acked {
		require.True(t, stored[id], "acknowledged entry %s not stored", id)
	}
}
