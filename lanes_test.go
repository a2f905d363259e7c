package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/memstore"
)

// laneStore is memstore as a [ledger.ConcurrentStore] of the given lanes,
// whose Update, once armed, holds the next transaction that begins
// until it is released: before memstore's own lock, so that the other
// lanes' transactions can run meanwhile.
type laneStore struct {
	*memstore.Store
	lanes int

	mu   sync.Mutex
	gate *gate
}

type gate struct{ entered, release chan struct{} }

func (s *laneStore) CommitLanes() int { return s.lanes }

// TryUpdate declines, so that every write goes through Update.
func (s *laneStore) TryUpdate(context.Context, func(ledger.Tx) error) (bool, error) {
	return false, nil
}

func (s *laneStore) Update(ctx context.Context, fn func(ledger.Tx) error) error {
	s.mu.Lock()
	g := s.gate
	s.gate = nil
	s.mu.Unlock()
	if g != nil {
		close(g.entered)
		<-g.release
	}
	return s.Store.Update(ctx, fn)
}

// arm makes the next Update wait: entered is closed when it does, and
// release lets it go on.
func (s *laneStore) arm(t *testing.T) (entered <-chan struct{}, release func()) {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	s.mu.Lock()
	s.gate = g
	s.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(g.release) }) }
	t.Cleanup(release)
	return g.entered, release
}

func newLaneLedger(t *testing.T) (*ledger.Ledger, *laneStore) {
	t.Helper()
	s := &laneStore{Store: memstore.New(), lanes: 2}
	l, err := ledger.New(s)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l, s
}

// usersByLane returns a user, named prefix and a number, whose creates
// commit in the first lane and one whose creates commit in the second.
func usersByLane(t *testing.T, l *ledger.Ledger, prefix string) (first, second string) {
	t.Helper()
	for i := 0; first == "" || second == ""; i++ {
		require.Less(t, i, 1000, "no user in each lane")
		u := fmt.Sprint(prefix, i)
		switch lane := l.LaneForTest(u); {
		case lane == 0 && first == "":
			first = u
		case lane == 1 && second == "":
			second = u
		}
	}
	return first, second
}

func laneCredit(user string) ledger.NewEntry {
	return ledger.NewEntry{AuthorityID: "shop", UserID: user, Amount: dec("5"), Reason: "lanes"}
}

func waitFor(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not happen within a minute", what)
	}
}

// Over a ConcurrentStore, a create in one lane commits while the other
// lane's transaction is held open.
func TestLanesCommitAtOnce(t *testing.T) {
	ctx := context.Background()
	l, s := newLaneLedger(t)
	first, second := usersByLane(t, l, "user-")

	entered, release := s.arm(t)
	held := make(chan error, 1)
	go func() {
		_, err := l.CreateEntry(ctx, laneCredit(first))
		held <- err
	}()
	waitFor(t, "the first lane's Update", entered)

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	e, err := l.CreateEntry(cctx, laneCredit(second))
	require.NoError(t, err, "the second lane commits while the first is held")
	require.Equal(t, second, e.UserID)

	release()
	require.NoError(t, within(t, "the held create", held))
	require.NoError(t, l.Verify(ctx))
}

// Import holds every lane: a create in another lane waits until the
// import is over.
func TestImportHoldsEveryLane(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	fill(t, src, 50)
	out := export(t, src)

	l, s := newLaneLedger(t)
	_, second := usersByLane(t, l, "lane-user-") // not an imported user

	entered, release := s.arm(t)
	imported := make(chan error, 1)
	go func() { imported <- ledger.Import(ctx, l, strings.NewReader(out)) }()
	waitFor(t, "Import's first write", entered)

	created := make(chan error, 1)
	go func() {
		_, err := l.CreateEntry(ctx, laneCredit(second))
		created <- err
	}()
	select {
	case err := <-created:
		t.Fatalf("a create in the second lane returned (%v) while Import was writing", err)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	require.NoError(t, within(t, "Import", imported))
	require.NoError(t, within(t, "the create", created))
	require.NoError(t, l.Verify(ctx))
	es, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{second}})
	require.NoError(t, err)
	require.Len(t, es, 1)
}

// An Import whose context ends while it waits for a busy lane writes
// nothing and says so.
func TestImportStopsWaitingForABusyLane(t *testing.T) {
	ctx := context.Background()
	src := newLedger(t)
	fill(t, src, 50)
	out := export(t, src)

	l, s := newLaneLedger(t)
	_, second := usersByLane(t, l, "user-")
	entered, release := s.arm(t)
	created := make(chan error, 1)
	go func() {
		_, err := l.CreateEntry(ctx, laneCredit(second))
		created <- err
	}()
	waitFor(t, "the second lane's Update", entered)

	ictx, cancel := context.WithCancel(ctx)
	imported := make(chan error, 1)
	go func() { imported <- ledger.Import(ictx, l, strings.NewReader(out)) }()
	time.Sleep(50 * time.Millisecond) // Import is waiting for the second lane
	cancel()
	err := within(t, "Import", imported)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "stopped before writing anything")

	release()
	require.NoError(t, within(t, "the create", created))
	es, err := l.Entries(ctx, ledger.EntryQuery{})
	require.NoError(t, err)
	require.Len(t, es, 1, "only the create, nothing imported")
	require.Equal(t, second, es[0].UserID)
}
