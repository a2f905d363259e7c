package pgstore_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

// The multi-process test: the parent funds a few wallets and grants a few
// items, then runs its own test binary as several OS processes
// (TestChildProcess) that each open the same schema through their own
// pgstore and ledger and, from several goroutines at once, spend from
// the same wallets, use the same items and top the wallets up with the
// same idempotency keys; they place holds and settle them, and race each
// other to settle holds the parent placed. Each child prints what
// succeeded; the parent then checks the database against the sum of
// those reports.
const (
	childSchemaEnv = "PGSTORE_CHILD_SCHEMA"
	childWorkerEnv = "PGSTORE_CHILD_WORKER"
	childHoldsEnv  = "PGSTORE_CHILD_HOLDS"
	childPrefix    = "pgstore-child "

	mpProcesses  = 4
	mpGoroutines = 4
	mpOps        = 100 // per goroutine
	mpFunds      = 500
	mpTopUp      = 100
	mpTopUpKeys  = 8
	mpItems      = 3 // per user
	mpShared     = 8 // holds the children race to settle
	mpSharedHold = 10
)

var mpUsers = []string{"u0", "u1", "u2"}

// childDeadline bounds a child process's work in TestMultiProcess.
const childDeadline = 90 * time.Second

func TestMultiProcess(t *testing.T) {
	url := dbURL(t)
	// Generous: under the race detector, on a loaded machine, four
	// processes' work can take many times the second or two it takes
	// alone.
	ctx, cancel := context.WithTimeout(context.Background(), 2*childDeadline)
	defer cancel()
	schema := freshSchema(t)

	// Fund the wallets and grant the items.
	l := newLedgerIn(t, schema)
	for _, u := range mpUsers {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: u, Amount: decimal.NewFromInt(mpFunds), Reason: "initial funds"})
		require.NoError(t, err)
		for i := range mpItems {
			_, err := l.CreateEntry(ctx, ledger.NewEntry{
				AuthorityID: "grants", UserID: u, Amount: decimal.Zero, Reason: "grant",
				Item: &ledger.Item{Name: fmt.Sprintf("item %s/%d", u, i), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))},
			})
			require.NoError(t, err)
		}
	}
	var shared []string
	for i := range mpShared {
		h, err := l.Hold(ctx, ledger.NewHold{AuthorityID: "shop", UserID: mpUsers[i%len(mpUsers)], Amount: decimal.NewFromInt(mpSharedHold), Reason: "shared"})
		require.NoError(t, err)
		shared = append(shared, h.ID)
	}
	require.NoError(t, l.Close())
	// Statistics of tiny tables, as autovacuum would gather them on a
	// young ledger: they tempt the planner into sequential scans, which in
	// a serializable transaction conflict with every writer.
	q := pgx.Identifier{schema}.Sanitize()
	_, err := adminPool(t).Exec(ctx, "ANALYZE "+q+".entries; ANALYZE "+q+".totals")
	require.NoError(t, err)

	reports := runChildren(ctx, t, "TestChildProcess", func(i int) []string {
		return []string{urlEnv + "=" + url, childSchemaEnv + "=" + schema, childWorkerEnv + "=" + strconv.Itoa(i), childHoldsEnv + "=" + strings.Join(shared, ",")}
	})

	// Tally the reports.
	spent := map[string]decimal.Decimal{}
	spends := map[string]string{}    // entry ID -> user
	reversals := map[string]string{} // reversal's entry ID -> the spend's
	topUps := map[string]string{}    // key -> entry ID
	uses := map[string]int{}
	held := map[string]decimal.Decimal{} // user -> what the children's holds hold
	placed := map[string][]string{}      // hold ID -> user, amount
	settled := map[string]string{}       // hold ID -> "capture" or "release"
	sharedWins := map[string]int{}       // shared hold ID -> settlements
	var refused, retries, deadlocks uint64
	var starts, ends []int64
	for _, r := range reports {
		f := strings.Fields(r)
		switch f[0] {
		case "spend": // spend ID user amount
			require.NotContains(t, spends, f[1], "entry ID reported twice")
			spends[f[1]] = f[2]
			spent[f[2]] = spent[f[2]].Add(decimal.RequireFromString(f[3]))
		case "nofunds":
			refused++
		case "hold": // hold ID user amount
			require.NotContains(t, placed, f[1], "hold ID reported twice")
			placed[f[1]] = f[2:]
			held[f[2]] = held[f[2]].Add(decimal.RequireFromString(f[3]))
		case "capture", "release": // capture ID user amount; release ID user amount
			require.NotContains(t, settled, f[1], "hold %s settled twice", f[1])
			settled[f[1]] = f[0]
			held[f[2]] = held[f[2]].Sub(decimal.RequireFromString(f[3]))
			if f[0] == "capture" {
				spent[f[2]] = spent[f[2]].Add(decimal.RequireFromString(f[3]))
			}
		case "shared": // shared ID capture|release user
			sharedWins[f[1]]++
			settled[f[1]] = f[2]
			if f[2] == "capture" {
				spent[f[3]] = spent[f[3]].Add(decimal.NewFromInt(1))
			}
		case "use":
			uses[f[1]]++
		case "topup": // topup key ID
			if id, ok := topUps[f[1]]; ok {
				require.Equal(t, id, f[2], "idempotency key %s created two entries", f[1])
			}
			topUps[f[1]] = f[2]
		case "start", "end":
			n, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			if f[0] == "start" {
				starts = append(starts, n)
			} else {
				ends = append(ends, n)
			}
		case "reverse": // reverse ID spendID user amount
			require.NotContains(t, reversals, f[1], "reversal ID reported twice")
			reversals[f[1]] = f[2]
			spent[f[3]] = spent[f[3]].Sub(decimal.RequireFromString(f[4]))
		case "stats": // stats updates retries deadlocks
			n, err := strconv.ParseUint(f[2], 10, 64)
			require.NoError(t, err)
			retries += n
			n, err = strconv.ParseUint(f[3], 10, 64)
			require.NoError(t, err)
			deadlocks += n
		}
	}
	t.Logf("%d spends (%d refunded), %d refused for lack of funds, %d item uses, %d top-up keys; %d retries in all, %d after deadlocks",
		len(spends), len(reversals), refused, len(uses), len(topUps), retries, deadlocks)
	// Every process's ledger takes its locks in one order: no write
	// waited the server's deadlock_timeout for a deadlock to be broken.
	require.Zero(t, deadlocks, "retries after deadlocks")
	require.Len(t, starts, mpProcesses)
	require.Less(t, maxOf(starts), minOf(ends), "the processes must have run at the same time")
	require.Positive(t, refused, "the spends asked for more than the wallets held, so some must be refused")

	l = newLedgerIn(t, schema)
	require.NoError(t, l.Verify(ctx))
	t.Logf("%d holds placed, %d settled by their placer; %d shared holds settled", len(placed), len(settled)-len(sharedWins), len(sharedWins))
	require.NotEmpty(t, placed)

	// Of the processes racing to settle a shared hold, exactly one won,
	// and the hold's state is what the winner did.
	hs, err := l.Holds(ctx, ledger.HoldQuery{HoldIDs: shared})
	require.NoError(t, err)
	require.Len(t, hs, mpShared)
	for _, h := range hs {
		require.Equal(t, 1, sharedWins[h.ID], "shared hold %s settled %d times", h.ID, sharedWins[h.ID])
		want := map[string]ledger.HoldState{"capture": ledger.HoldCaptured, "release": ledger.HoldReleased}[settled[h.ID]]
		require.Equal(t, want, h.State, "shared hold %s", h.ID)
	}
	// The children's holds are as reported.
	for id, f := range placed {
		hs, err := l.Holds(ctx, ledger.HoldQuery{HoldIDs: []string{id}})
		require.NoError(t, err)
		require.Len(t, hs, 1)
		want := map[string]ledger.HoldState{"": ledger.HoldActive, "capture": ledger.HoldCaptured, "release": ledger.HoldReleased}[settled[id]]
		require.Equal(t, want, hs[0].State, "hold %s of %v", id, f)
	}
	for _, u := range mpUsers {
		b, err := l.Balance(ctx, u, "")
		require.NoError(t, err)
		require.Truef(t, held[u].Equal(b.Held), "user %s: held %s, reported %s", u, b.Held, held[u])
		require.False(t, b.Available.IsNegative(), "user %s: available %s", u, b.Available)
	}

	// Every wallet holds its funds and top-ups less what was reported
	// spent, and is not negative.
	ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: mpUsers})
	require.NoError(t, err)
	for i, w := range ws {
		want := decimal.NewFromInt(mpFunds).Sub(spent[w.UserID])
		for k := range topUps {
			if n, _ := strconv.Atoi(strings.TrimPrefix(k, "topup-")); n%len(mpUsers) == i {
				want = want.Add(decimal.NewFromInt(mpTopUp))
			}
		}
		require.Truef(t, want.Equal(w.Total), "user %s: got %s, want %s", w.UserID, w.Total, want)
		require.False(t, w.Total.IsNegative(), "user %s went negative", w.UserID)
	}

	// The entries are exactly the reported ones.
	shop, err := l.Entries(ctx, ledger.EntryQuery{AuthorityIDs: []string{"shop"}})
	require.NoError(t, err)
	sharedCaptures := 0
	for _, id := range shared {
		if settled[id] == "capture" {
			sharedCaptures++
		}
	}
	require.Len(t, shop, len(spends)+len(reversals)+sharedCaptures, "stored spends, their refunds, and captures of shared holds")
	refunded := map[string]string{} // spend -> its reversal
	for rev, spend := range reversals {
		refunded[spend] = rev
	}
	for _, e := range shop {
		if e.Reverses != "" {
			require.Equal(t, reversals[e.ID], e.Reverses, "refund %s was not reported", e.ID)
			continue
		}
		if e.HoldID != "" {
			require.Equal(t, "capture", settled[e.HoldID], "entry %s captures hold %s", e.ID, e.HoldID)
			continue
		}
		require.Equal(t, spends[e.ID], e.UserID, "spend %s was not reported", e.ID)
		require.Equal(t, refunded[e.ID], e.ReversedBy, "spend %s", e.ID)
	}
	bank, err := l.Entries(ctx, ledger.EntryQuery{AuthorityIDs: []string{"bank"}})
	require.NoError(t, err)
	require.Len(t, bank, len(mpUsers)+len(topUps), "one entry per top-up key")
	for k, id := range topUps {
		got, err := l.Entries(ctx, ledger.EntryQuery{EntryIDs: []string{id}})
		require.NoError(t, err)
		require.Len(t, got, 1, "top-up %s", k)
	}

	// Every item was used at most once, and the stored uses are the
	// reported ones.
	used, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOnly})
	require.NoError(t, err)
	require.Len(t, used, len(uses))
	for _, it := range used {
		require.Equal(t, 1, uses[it.EntryID], "item %s", it.EntryID)
	}
	for id, n := range uses {
		require.Equal(t, 1, n, "item %s used %d times", id, n)
	}
}

// runChildren runs mpProcesses child processes, each the test named
// test with the environment env(i) added, and returns their reports,
// once all have exited successfully. They start work together: each
// says "ready" once its store is open and waits for "go" on stdin.
func runChildren(ctx context.Context, t *testing.T, test string, env func(i int) []string) []string {
	t.Helper()
	type child struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		stderr bytes.Buffer
		lines  []string
	}
	children := make([]*child, mpProcesses)
	ready := make(chan bool, mpProcesses)
	var wg sync.WaitGroup
	for i := range children {
		c := &child{cmd: exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.timeout=10m")}
		c.cmd.Env = append(os.Environ(), env(i)...)
		c.cmd.Stderr = &c.stderr
		var err error
		c.stdin, err = c.cmd.StdinPipe()
		require.NoError(t, err)
		stdout, err := c.cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, c.cmd.Start())
		children[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(stdout)
			said := false
			for sc.Scan() {
				line, ok := strings.CutPrefix(sc.Text(), childPrefix)
				switch {
				case !ok:
					c.lines = append(c.lines, "output "+sc.Text())
				case line == "ready" && !said:
					said = true
					ready <- true
				default:
					c.lines = append(c.lines, line)
				}
			}
			if !said {
				ready <- false
			}
		}()
	}
	// fail ends every child and waits for its output to be copied before
	// it reads what each wrote.
	fail := func(msg string) {
		for _, c := range children {
			_ = c.cmd.Process.Kill()
		}
		wg.Wait()
		for _, c := range children {
			_ = c.cmd.Wait() // again, for one already waited for: harmless
		}
		for i, c := range children {
			t.Logf("child %d: %s\n%s", i, strings.Join(c.lines, "\n"), c.stderr.String())
		}
		t.Fatal(msg)
	}
	for range children {
		select {
		case ok := <-ready:
			if !ok {
				fail("a child exited before it was ready")
			}
		case <-ctx.Done():
			fail("children did not get ready in time")
		}
	}
	for _, c := range children {
		_, _ = io.WriteString(c.stdin, "go\n")
		_ = c.stdin.Close()
	}
	wg.Wait()
	var reports []string
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			fail(fmt.Sprintf("child %d: %v", i, err))
		}
		for _, l := range c.lines {
			if !strings.HasPrefix(l, "output ") {
				reports = append(reports, l)
			}
		}
	}
	return reports
}

// TestChildProcess is one process of TestMultiProcess; on its own it
// skips.
func TestChildProcess(t *testing.T) {
	schema, worker := os.Getenv(childSchemaEnv), os.Getenv(childWorkerEnv)
	if schema == "" {
		t.Skip("pgstore: run by TestMultiProcess")
	}
	url := dbURL(t)
	n, err := strconv.Atoi(worker)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), childDeadline)
	defer cancel()

	s, err := pgstore.Open(ctx, url, pgstore.WithSchema(schema))
	require.NoError(t, err)
	l, err := ledger.New(s)
	require.NoError(t, err)
	defer l.Close()
	items, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOrUnused})
	require.NoError(t, err)
	require.Len(t, items, mpItems*len(mpUsers))
	shared := strings.Split(os.Getenv(childHoldsEnv), ",")
	owners := map[string]string{}
	hs, err := l.Holds(ctx, ledger.HoldQuery{HoldIDs: shared})
	require.NoError(t, err)
	for _, h := range hs {
		owners[h.ID] = h.UserID
	}

	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, childPrefix+format+"\n", args...)
	}
	say("ready")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "go\n", line)

	say("start %d", time.Now().UnixNano())
	var wg sync.WaitGroup
	for g := range mpGoroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(n), uint64(g)))
			for range mpOps {
				switch op := r.IntN(6); {
				case op == 4: // a hold, then capture, release or leave it
					u, amount := mpUsers[r.IntN(len(mpUsers))], decimal.NewFromInt(int64(2+r.IntN(5)))
					h, err := l.Hold(ctx, ledger.NewHold{AuthorityID: fmt.Sprint("desk-", n), UserID: u, Amount: amount, Reason: "hold"})
					switch {
					case errors.Is(err, ledger.ErrNotEnoughFunds):
						say("nofunds %s", u)
						continue
					case err != nil:
						t.Errorf("hold: %v", err)
						continue
					}
					say("hold %s %s %s", h.ID, u, amount)
					switch r.IntN(3) {
					case 0:
						if _, err := l.Capture(ctx, h.AuthorityID, h.ID, ledger.Capture{}); err != nil {
							t.Errorf("capture %s: %v", h.ID, err)
						} else {
							say("capture %s %s %s", h.ID, u, amount)
						}
					case 1:
						if _, err := l.Release(ctx, h.AuthorityID, h.ID); err != nil {
							t.Errorf("release %s: %v", h.ID, err)
						} else {
							say("release %s %s %s", h.ID, u, amount)
						}
					}
				case op == 5: // race the others to settle a shared hold
					id := shared[r.IntN(len(shared))]
					var err error
					what := [2]string{"capture", "release"}[r.IntN(2)]
					if what == "capture" {
						_, err = l.Capture(ctx, "shop", id, ledger.Capture{Amount: decimal.NewFromInt(1)})
					} else {
						_, err = l.Release(ctx, "shop", id)
					}
					switch {
					case err == nil:
						say("shared %s %s %s", id, what, owners[id])
					case errors.Is(err, ledger.ErrHoldClosed):
					default:
						t.Errorf("%s %s: %v", what, id, err)
					}
				case op < 2: // spend
					u, amount := mpUsers[r.IntN(len(mpUsers))], decimal.NewFromInt(int64(3+r.IntN(10)))
					e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: u, Amount: amount.Neg(), Reason: "spend"})
					if b, err := l.Balance(ctx, u, ""); err != nil || b.Available.IsNegative() {
						t.Errorf("balance of %s: %+v, %v", u, b, err)
					}
					switch {
					case err == nil:
						say("spend %s %s %s", e.ID, u, amount)
						if r.IntN(4) == 0 { // refund it: the reversal writes the wallet another process may be writing
							rev, err := l.Reverse(ctx, "shop", e.ID, "refund")
							if err != nil {
								t.Errorf("reverse %s: %v", e.ID, err)
								break
							}
							say("reverse %s %s %s %s", rev[0].ID, e.ID, u, amount)
						}
					case errors.Is(err, ledger.ErrNotEnoughFunds):
						say("nofunds %s", u)
					default:
						t.Errorf("spend: %v", err)
					}
				case op == 2: // use an item
					id := items[r.IntN(len(items))].EntryID
					_, err := l.UseItem(ctx, "shop", id)
					switch {
					case err == nil:
						say("use %s", id)
					case errors.Is(err, ledger.ErrItemUsed):
					default:
						t.Errorf("use %s: %v", id, err)
					}
				default: // top up, once per key across all processes
					k := r.IntN(mpTopUpKeys)
					e, err := l.CreateEntry(ctx, ledger.NewEntry{
						AuthorityID: "bank", UserID: mpUsers[k%len(mpUsers)], Amount: decimal.NewFromInt(mpTopUp),
						Reason: fmt.Sprint("top-up ", k), IdempotencyKey: fmt.Sprint("topup-", k),
					})
					if err != nil {
						t.Errorf("top-up %d: %v", k, err)
						continue
					}
					say("topup topup-%d %s", k, e.ID)
				}
			}
		}()
	}
	wg.Wait()
	say("end %d", time.Now().UnixNano())
	st := s.Stats()
	say("stats %d %d %d", st.Updates, st.Retries, st.Deadlocks)
}

// newLedgerIn opens a ledger over a store in schema, closed when the test
// ends.
func newLedgerIn(t *testing.T, schema string) *ledger.Ledger {
	t.Helper()
	l, err := ledger.New(open(t, schema))
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func maxOf(xs []int64) int64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func minOf(xs []int64) int64 {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}
