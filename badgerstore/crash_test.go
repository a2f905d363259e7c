package badgerstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

const crashDirEnv = "BADGERSTORE_TEST_CRASH_DIR"

// crashCheckpointEnv, when set, has the child checkpoint every few
// commits.
const crashCheckpointEnv = "BADGERSTORE_TEST_CRASH_CHECKPOINTS"

// TestCrashChild is run by TestCrash in a child process that TestCrash
// kills: it writes through a ledger on a durable store as fast as it can,
// from a few goroutines, and after each acknowledged write prints
// "entry <id>" or "used <id>" on a line of its own. A follower of the
// change feed, from its start, prints "change <cursor> <kind> <entry
// ID>" for each change it is handed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	ctx := context.Background()
	_, err := os.Stdout.Write([]byte("opening\n"))
	require.NoError(t, err)
	var opts []badgerstore.Option
	if os.Getenv(crashCheckpointEnv) != "" {
		// Checkpoints every few commits: kills land during them too.
		opts = append(opts, badgerstore.WithCheckpoints(64, 8))
	}
	s, err := badgerstore.Open(dir, opts...)
	require.NoError(t, err)
	l, err := ledger.New(s)
	require.NoError(t, err)
	// A failure exits with a status of its own, which TestCrash reports
	// (t.FailNow does not work from these goroutines).
	check := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
	}
	say := func(format string, args ...any) {
		// One write per line: a pipe write this small is atomic, so a
		// line is either all out or not at all.
		_, err := os.Stdout.Write(fmt.Appendf(nil, format+"\n", args...))
		check(err)
	}
	unused, err := l.Inventory(ctx, ledger.InventoryQuery{Limit: 200})
	require.NoError(t, err)
	var mu sync.Mutex
	var items []string
	for _, it := range unused {
		items = append(items, it.EntryID)
	}
	users := []string{"ann", "ben", "cat", "dan", "eve"}
	auths := []string{"bank", "shop", "arcade"}
	amount := func(r *rand.Rand, max int) decimal.Decimal {
		return decimal.New(int64(1+r.IntN(max*100)), -2)
	}
	go func() {
		for c, err := range l.Changes(ctx, ledger.ChangeQuery{Follow: true}) {
			check(err)
			ref := "-"
			if c.Entry != nil {
				ref = c.Entry.ID
			}
			say("change %s %s %s", c.Cursor, c.Kind, ref)
		}
	}()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
			for {
				u := users[r.IntN(len(users))]
				switch op := r.IntN(10); {
				case op < 3: // credit, sometimes idempotent
					ne := ledger.NewEntry{AuthorityID: "bank", UserID: u, Amount: amount(r, 20), Reason: "pay"}
					if r.IntN(2) == 0 {
						ne.IdempotencyKey = fmt.Sprint("k", r.Uint64())
					}
					e, err := l.CreateEntry(ctx, ne)
					check(err)
					say("entry %s", e.ID)
				case op < 6: // debit, maybe with an item, maybe refused
					ne := ledger.NewEntry{AuthorityID: auths[1+r.IntN(2)], UserID: u, Amount: amount(r, 15).Neg(), Reason: "buy"}
					if r.IntN(2) == 0 {
						ne.Item = &ledger.Item{Name: "thing", Data: fmt.Appendf(nil, `{"n": %d, "tags": [ "a" ,"b"]}`, r.IntN(1000))}
					}
					e, err := l.CreateEntry(ctx, ne)
					if errors.Is(err, ledger.ErrNotEnoughFunds) {
						continue
					}
					check(err)
					say("entry %s", e.ID)
					if e.Item != nil {
						mu.Lock()
						items = append(items, e.ID)
						mu.Unlock()
					}
				case op < 8: // use an item, perhaps one another goroutine uses too
					mu.Lock()
					if len(items) == 0 {
						mu.Unlock()
						continue
					}
					id := items[r.IntN(len(items))]
					mu.Unlock()
					_, err := l.UseItem(ctx, "shop", id)
					if errors.Is(err, ledger.ErrItemUsed) {
						continue
					}
					check(err)
					say("used %s", id)
				default: // a batch: a transfer between two users
					from, to := users[r.IntN(len(users))], users[r.IntN(len(users))]
					a := amount(r, 10)
					es, err := l.CreateEntries(ctx, []ledger.NewEntry{
						{AuthorityID: "bank", UserID: from, Amount: a.Neg(), Reason: "transfer"},
						{AuthorityID: "bank", UserID: to, Amount: a, Reason: "transfer", Item: &ledger.Item{Name: "receipt"}},
					})
					if errors.Is(err, ledger.ErrNotEnoughFunds) {
						continue
					}
					check(err)
					say("entry %s", es[0].ID)
					say("entry %s", es[1].ID)
				}
			}
		}()
	}
	wg.Wait() // never returns: the child runs until it is killed
}

// crashRound runs TestCrashChild on dir and kills it once wait returns;
// wait is given a channel closed when the child starts opening the
// store. It adds what the child acknowledged to acked and used, and
// returns the changes its follower was handed, in order, as "<cursor>
// <kind> <entry ID>". env is added to the child's environment.
func crashRound(t *testing.T, dir string, wait func(opening <-chan struct{}), acked, used map[string]bool, env ...string) (entries int, feed []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), crashDirEnv+"="+dir), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	opening := make(chan struct{})
	lines := make(chan []string, 1)
	go func() {
		var ls []string
		for sc := bufio.NewScanner(stdout); sc.Scan(); {
			if sc.Text() == "opening" {
				close(opening)
				continue
			}
			ls = append(ls, sc.Text())
		}
		lines <- ls
	}()
	wait(opening)
	require.NoError(t, cmd.Process.Kill())
	out := <-lines
	err = cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	ws, ok := exit.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL,
		"the child must die by the kill, not on its own (%v):\n%s", err, stderr.String())
	for _, line := range out {
		switch kind, id, _ := strings.Cut(line, " "); kind {
		case "entry":
			acked[id] = true
			entries++
		case "used":
			used[id] = true
		case "change":
			feed = append(feed, id)
		default:
			t.Fatalf("unexpected child output %q\n%s", line, stderr.String())
		}
	}
	return entries, feed
}

// checkAfterCrash opens dir and checks that every acknowledged entry and
// use is there, that the ledger is consistent and no wallet negative,
// and that the changes handed out before the kill (feed, from the start
// of the feed) are still the feed's first ones, in order, with their
// cursors: none lost, none moved, none appearing between them.
func checkAfterCrash(t *testing.T, dir string, acked, used map[string]bool, feed []string) {
	t.Helper()
	ctx := context.Background()
	s, err := badgerstore.Open(dir)
	require.NoError(t, err, "reopen after the kill")
	l, err := ledger.New(s)
	require.NoError(t, err)
	defer l.Close()
	// (An empty EntryIDs would select every entry, including those
	// committed but not acknowledged before the kill.)
	if len(acked) > 0 {
		ids := make([]string, 0, len(acked))
		for id := range acked {
			ids = append(ids, id)
		}
		es, err := l.Entries(ctx, ledger.EntryQuery{EntryIDs: ids})
		require.NoError(t, err)
		require.Len(t, es, len(acked), "every acknowledged entry survives")
	}
	if len(used) > 0 {
		ids := make([]string, 0, len(used))
		for id := range used {
			ids = append(ids, id)
		}
		inv, err := l.Inventory(ctx, ledger.InventoryQuery{EntryIDs: ids, Used: ledger.UsedOnly})
		require.NoError(t, err)
		require.Len(t, inv, len(used), "every acknowledged use survives")
	}
	require.NoError(t, l.Verify(ctx))
	requireNoNegativeWallet(t, l)
	requireIndexesMatch(t, s)
	if len(feed) > 0 {
		var got []string
		for c, err := range l.Changes(ctx, ledger.ChangeQuery{Limit: len(feed)}) {
			require.NoError(t, err)
			got = append(got, fmt.Sprintf("%s %s %s", c.Cursor, c.Kind, c.Entry.ID))
		}
		require.Equal(t, feed, got, "the changes handed out before the kill, as they were")
	}
}

// TestCrash kills a child writing to a durable store at random moments,
// many times over the same directory (every other child checkpointing
// its totals every few commits, the others never), and checks after each kill that
// every write the child saw acknowledged is there, that the ledger is
// consistent, and that the changes the child's follower was handed are
// still the first of the feed, in order, under the same cursors. A SIGKILL ends the process, not the machine: the kernel's
// page cache survives it, so this test holds even with syncing off. That
// a durable store syncs (and so survives a power cut) rests on
// TestDefaults, which pins SyncWrites on, and on Badger's syncing of its
// logs when it is.
func TestCrash(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL")
	}
	const rounds = 24
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	acked := map[string]bool{}
	used := map[string]bool{}
	changes := 0
	start := time.Now()
	for round := range rounds {
		// Odd rounds checkpoint the totals every few commits, so that
		// kills land during checkpoints; even rounds never do, so that
		// the reopen rebuilds every total from the feed.
		var env []string
		if round%2 == 1 {
			env = append(env, crashCheckpointEnv+"=1")
		}
		n, feed := crashRound(t, dir, func(<-chan struct{}) {
			time.Sleep(time.Duration(50+r.IntN(251)) * time.Millisecond) // the moment of the crash
		}, acked, used, env...)
		if !t.Run(fmt.Sprint("after kill ", round), func(t *testing.T) { checkAfterCrash(t, dir, acked, used, feed) }) {
			t.FailNow()
		}
		changes += len(feed)
		t.Logf("round %d: %d entries acknowledged before the kill, %d in all, %d uses, %d changes followed", round, n, len(acked), len(used), len(feed))
	}
	require.NotEmpty(t, acked, "the children must have written something")
	require.NotZero(t, changes, "and followed the feed")
	t.Logf("%d rounds in %v", rounds, time.Since(start))
}

// TestCrashDuringCreation kills children while they create a ledger in a
// new directory, which Badger does in several steps, and checks that the
// directory opens afterwards.
func TestCrashDuringCreation(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL")
	}
	const rounds = 40
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := range rounds {
		dir := t.TempDir()
		acked, used := map[string]bool{}, map[string]bool{}
		_, feed := crashRound(t, dir, func(opening <-chan struct{}) {
			select {
			case <-opening:
			case <-time.After(30 * time.Second):
				t.Fatal("the child never started opening the store")
			}
			// Creating a ledger takes 10 to 60ms here.
			time.Sleep(time.Duration(r.IntN(25_000)) * time.Microsecond)
		}, acked, used)
		if !t.Run(fmt.Sprint("after kill ", round), func(t *testing.T) { checkAfterCrash(t, dir, acked, used, feed) }) {
			t.FailNow()
		}
	}
}
