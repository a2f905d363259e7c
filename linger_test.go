package ledger_test

import (
	"context"
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
type syncingStore struct {
	*memstore.Store
	wait    time.Duration
	commits atomic.Int64
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
	ctx := context.Background()

	var entries atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "a", UserID: fmt.Sprint("u", w),
					Amount: decimal.NewFromInt(1), Reason: "r"})
				if err != nil {
					t.Error(err)
					return
				}
				entries.Add(1)
			}
		}()
	}
	// Past the first commits, whose groups form as the writers start.
	time.Sleep(100 * time.Millisecond)
	e0, c0 := entries.Load(), s.commits.Load()
	time.Sleep(400 * time.Millisecond)
	e1, c1 := entries.Load(), s.commits.Load()
	close(stop)
	wg.Wait()

	perCommit := float64(e1-e0) / float64(c1-c0)
	t.Logf("%d entries in %d commits: %.1f a commit", e1-e0, c1-c0, perCommit)
	// Taking turns gives writers/2 a commit.
	require.Greater(t, perCommit, 0.75*writers, "entries a commit")
}
