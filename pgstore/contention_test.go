package pgstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

// The contention test: mpProcesses child processes (TestContentionProcess)
// each open the schema through their own store and ledger and, from
// hotGoroutines goroutines, write credits and spends on hotUsers wallets
// for a few seconds, each call with an idempotency key of its own. Every call must succeed or be refused for lack of
// funds: none may fail to serialize, or fail in any other way. The
// children report what they wrote; the parent checks that the ledger
// verifies and that every wallet holds its initial funds plus what was
// reported, which is also the sum of its entries.
const (
	hotDurationEnv = "PGSTORE_HOT_DURATION"

	hotUsers      = 20
	hotGoroutines = 16
	hotFunds      = 100
)

func TestContention(t *testing.T) {
	url := dbURL(t)
	d := 4 * time.Second
	if testing.Short() {
		d = 1500 * time.Millisecond
	}
	if v := os.Getenv(hotDurationEnv); v != "" {
		// A longer run, to measure: PGSTORE_HOT_DURATION=30s.
		var err error
		d, err = time.ParseDuration(v)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+60*time.Second)
	defer cancel()
	schema := freshSchema(t)

	l := newLedgerIn(t, schema)
	for i := range hotUsers {
		_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: hotUser(i), Amount: decimal.NewFromInt(hotFunds), Reason: "initial funds"})
		require.NoError(t, err)
	}

	reports := runChildren(ctx, t, "TestContentionProcess", func(i int) []string {
		return []string{urlEnv + "=" + url, childSchemaEnv + "=" + schema, childWorkerEnv + "=" + strconv.Itoa(i), hotDurationEnv + "=" + d.String()}
	})

	sums := map[string]decimal.Decimal{}
	var written, refused, serialization, other, retries, deadlocks uint64
	var failures []string
	for _, r := range reports {
		f := strings.Fields(r)
		switch f[0] {
		case "sum": // sum user amount
			sums[f[1]] = sums[f[1]].Add(decimal.RequireFromString(f[2]))
		case "counts": // counts written refused serialization other
			n := make([]uint64, 4)
			for i := range n {
				var err error
				n[i], err = strconv.ParseUint(f[1+i], 10, 64)
				require.NoError(t, err)
			}
			written, refused, serialization, other = written+n[0], refused+n[1], serialization+n[2], other+n[3]
		case "stats": // stats updates retries deadlocks
			n, err := strconv.ParseUint(f[2], 10, 64)
			require.NoError(t, err)
			retries += n
			n, err = strconv.ParseUint(f[3], 10, 64)
			require.NoError(t, err)
			deadlocks += n
		case "failed":
			failures = append(failures, r)
		}
	}
	t.Logf("%d processes x %d goroutines on %d wallets for %v: %d entries written, %d spends refused for lack of funds; "+
		"%d calls failed to serialize, %d failed otherwise; %d retries in the stores, %d after deadlocks",
		mpProcesses, hotGoroutines, hotUsers, d, written, refused, serialization, other, retries, deadlocks)
	for i, f := range failures {
		if i == 5 {
			t.Logf("... and %d more", len(failures)-i)
			break
		}
		t.Log(f)
	}
	require.Positive(t, written)
	require.Positive(t, refused, "the spends asked for more than the wallets held, so some must be refused")
	require.Zero(t, serialization, "calls that failed to serialize")
	require.Zero(t, other, "calls that failed otherwise")
	require.Zero(t, deadlocks, "retries after deadlocks: the ledgers lock in one order")

	l = newLedgerIn(t, schema)
	require.NoError(t, l.Verify(ctx))
	users := make([]string, hotUsers)
	for i := range users {
		users[i] = hotUser(i)
	}
	ws, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: users})
	require.NoError(t, err)
	require.Len(t, ws, hotUsers)
	for _, w := range ws {
		want := decimal.NewFromInt(hotFunds).Add(sums[w.UserID])
		require.Truef(t, want.Equal(w.Total), "user %s: total %s, want the funds and what was reported, %s", w.UserID, w.Total, want)
		require.False(t, w.Total.IsNegative(), "user %s went negative", w.UserID)
		es, err := l.Entries(ctx, ledger.EntryQuery{UserIDs: []string{w.UserID}})
		require.NoError(t, err)
		sum := decimal.Zero
		for i, e := range es {
			sum = sum.Add(e.Amount)
			require.Truef(t, sum.Equal(e.Balance), "user %s: entry %s has balance %s, the sum so far is %s", w.UserID, e.ID, e.Balance, sum)
			if i > 0 {
				require.Less(t, es[i-1].ID, e.ID)
			}
		}
		require.Truef(t, sum.Equal(w.Total), "user %s: total %s, sum of entries %s", w.UserID, w.Total, sum)
	}
}

func hotUser(i int) string { return fmt.Sprintf("hot-%02d", i) }

// TestContentionProcess is one process of TestContention; on its own it
// skips.
func TestContentionProcess(t *testing.T) {
	schema, worker := os.Getenv(childSchemaEnv), os.Getenv(childWorkerEnv)
	if schema == "" || os.Getenv(hotDurationEnv) == "" {
		t.Skip("pgstore: run by TestContention")
	}
	url := dbURL(t)
	n, err := strconv.Atoi(worker)
	require.NoError(t, err)
	d, err := time.ParseDuration(os.Getenv(hotDurationEnv))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), d+45*time.Second)
	defer cancel()

	s, err := pgstore.Open(ctx, url, pgstore.WithSchema(schema))
	require.NoError(t, err)
	l, err := ledger.New(s)
	require.NoError(t, err)
	defer l.Close()

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

	var written, refused, serialization, other atomic.Uint64
	sums := make([]decimal.Decimal, hotUsers)
	var sumMu sync.Mutex
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for g := range hotGoroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(n), uint64(g)))
			calls := 0
			for time.Now().Before(deadline) {
				u := r.IntN(hotUsers)
				amount := decimal.NewFromInt(int64(1 + r.IntN(10)))
				if r.IntN(3) == 0 {
					amount = decimal.NewFromInt(int64(-1 - r.IntN(25)))
				}
				// A key per call, as a client that retries safely sends.
				calls++
				_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: fmt.Sprint("desk-", r.IntN(3)), UserID: hotUser(u), Amount: amount, Reason: "hot",
					IdempotencyKey: fmt.Sprintf("p%d-g%d-%d", n, g, calls)})
				var pe *pgconn.PgError
				switch {
				case err == nil:
					written.Add(1)
					sumMu.Lock()
					sums[u] = sums[u].Add(amount)
					sumMu.Unlock()
				case errors.Is(err, ledger.ErrNotEnoughFunds):
					refused.Add(1)
				case errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01"):
					serialization.Add(1)
					say("failed %v", err)
				default:
					other.Add(1)
					say("failed %v", err)
				}
			}
		}()
	}
	wg.Wait()
	for u, sum := range sums {
		say("sum %s %s", hotUser(u), sum)
	}
	say("counts %d %d %d %d", written.Load(), refused.Load(), serialization.Load(), other.Load())
	st := s.Stats()
	say("stats %d %d %d", st.Updates, st.Retries, st.Deadlocks)
}
