package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

// These tests freeze or end the server processes (backends) serving one
// store's connections, and only those: the store connects with an
// application_name of its own, by which the tests find its backends in
// pg_stat_activity. Other tests, and other users of the cluster, are
// untouched. A stopped backend is always continued when the test ends.

// appStore opens a store in a fresh schema whose connections carry a
// unique application_name, which it returns.
func appStore(t *testing.T, opts ...pgstore.Option) (*pgstore.Store, string, string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	app := "pgstore_test_" + hex.EncodeToString(b[:])
	u := urlWith(t, map[string]string{"application_name": app})
	schema := freshSchema(t)
	s, err := pgstore.Open(context.Background(), u.String(), append([]pgstore.Option{pgstore.WithSchema(schema)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, app, schema
}

// urlWith returns the test database's URL with params set in its
// query.
func urlWith(t *testing.T, params map[string]string) *url.URL {
	t.Helper()
	u, err := url.Parse(dbURL(t))
	require.NoError(t, err)
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u
}

// backends returns the PIDs of the backends serving the connections of
// application app, whose state (pg_stat_activity's) matches state, or
// any state if it is "".
func backends(t *testing.T, app, state string) []int {
	t.Helper()
	rows, err := adminPool(t).Query(context.Background(),
		`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND ($2 = '' OR state = $2)`, app, state)
	require.NoError(t, err)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	out := make([]int, len(pids))
	for i, p := range pids {
		out[i] = int(p)
	}
	return out
}

// stop freezes the processes pids with SIGSTOP and waits until the
// kernel reports them stopped. They are continued when the test ends,
// if cont has not continued them before.
func stop(t *testing.T, pids []int) (cont func()) {
	t.Helper()
	require.NotEmpty(t, pids, "no backends to stop")
	cont = func() {
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
				t.Errorf("SIGCONT %d: %v", pid, err)
			}
		}
	}
	t.Cleanup(cont)
	for _, pid := range pids {
		require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	}
	for _, pid := range pids {
		require.Eventuallyf(t, func() bool { return procState(pid) == 'T' }, 5*time.Second, time.Millisecond,
			"backend %d did not stop", pid)
	}
	return cont
}

// procState returns the state letter of process pid from /proc.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ...: comm may hold spaces, so look after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// requireServes checks that s answers a write and a read again.
func requireServes(t *testing.T, s *pgstore.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "a", UserID: "after"}, ledger.Total{Value: decimal.New(2, 0), LastEntryID: "x"})
	}), "Update after the backends resumed")
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		_, found, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "a", UserID: "after"})
		if err == nil && !found {
			err = errors.New("total not found")
		}
		return err
	}), "View after the backends resumed")
}

// TestStalledServer freezes the backend of a transaction in the middle
// of it, and checks that the store returns soon after the caller's
// context ends (a 2s deadline, within 3s), with an error matching
// context.DeadlineExceeded, and serves again once the backend resumes.
func TestStalledServer(t *testing.T) {
	dbURL(t)
	const deadline, bound = 2 * time.Second, 3 * time.Second
	// then is what fn does once its backend is frozen.
	type then func(ctx context.Context, tx ledger.ReadTx) error
	read := func(ctx context.Context, tx ledger.ReadTx) error {
		_, _, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "a", UserID: "u"})
		return err
	}
	wait := func(ctx context.Context, _ ledger.ReadTx) error {
		<-ctx.Done()
		return ctx.Err()
	}
	for _, tc := range []struct {
		name   string
		update bool
		then   then
		// unknown: the failure must also match ErrUnknownOutcome.
		unknown bool
	}{
		{name: "Update, read in flight", update: true, then: read},
		{name: "Update, ctx ends between statements", update: true, then: wait},
		{name: "Update, COMMIT in flight", update: true, unknown: true, then: func(ctx context.Context, tx ledger.ReadTx) error {
			return tx.(ledger.Tx).SetTotal(ctx, ledger.TotalKey{AuthorityID: "a", UserID: "u"}, ledger.Total{Value: decimal.New(1, 0), LastEntryID: "x"})
		}},
		{name: "View, read in flight", then: read},
		{name: "View, ctx ends between statements", then: wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, app, _ := appStore(t)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			var cont func()
			fn := func(tx ledger.ReadTx) error {
				if err := read(ctx, tx); err != nil { // BEGIN: the transaction holds its connection
					return err
				}
				cont = stop(t, backends(t, app, "idle in transaction"))
				return tc.then(ctx, tx)
			}
			start := time.Now()
			var err error
			if tc.update {
				err = s.Update(ctx, func(tx ledger.Tx) error { return fn(tx) })
			} else {
				err = s.View(ctx, fn)
			}
			took := time.Since(start)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			if tc.unknown {
				require.ErrorIs(t, err, ledger.ErrUnknownOutcome)
			} else {
				require.NotErrorIs(t, err, ledger.ErrUnknownOutcome)
			}
			require.Lessf(t, took, bound, "returned after %v with a %v deadline", took, deadline)
			require.NotNil(t, cont, "fn did not stop the backend")
			cont()
			requireServes(t, s)
		})
	}
}

// TestStalledIdleConnection freezes the backends of a store's idle
// connections: the pool's ping finds them dead within
// DefaultPingTimeout, and the store serves on a new connection instead
// of waiting for the frozen one as long as the caller's context lasts.
func TestStalledIdleConnection(t *testing.T) {
	dbURL(t)
	// pgxpool pings a connection idle for a second or more; ping every
	// one, rather than wait for a second to pass.
	s, app, _ := appStore(t, pgstore.WithPoolConfig(func(c *pgxpool.Config) {
		c.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
	}))
	stop(t, backends(t, app, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := s.Update(ctx, func(tx ledger.Tx) error {
		return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "a", UserID: "u"}, ledger.Total{Value: decimal.New(1, 0), LastEntryID: "x"})
	})
	took := time.Since(start)
	require.NoError(t, err)
	require.Lessf(t, took, pgstore.DefaultPingTimeout+3*time.Second, "Update took %v", took)
}

// TestCommitTerminated ends the backend with pg_terminate_backend while
// it runs COMMIT (made slow by a deferred trigger): the store cannot
// know whether the transaction committed, and says so.
func TestCommitTerminated(t *testing.T) {
	dbURL(t)
	s, app, schema := appStore(t, pgstore.WithMaxRetries(0))
	fast := slowCommit(t, schema)
	done := make(chan error, 1)
	go func() {
		ctx := context.Background()
		done <- s.Update(ctx, func(tx ledger.Tx) error {
			return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "a", UserID: "u"}, ledger.Total{Value: decimal.New(1, 0), LastEntryID: "x"})
		})
	}()
	var pid int
	require.Eventually(t, func() bool {
		var pids []int32
		rows, err := adminPool(t).Query(context.Background(),
			`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query = 'COMMIT'`, app)
		if err == nil {
			pids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
		}
		if err != nil || len(pids) != 1 {
			return false
		}
		pid = int(pids[0])
		return true
	}, 10*time.Second, 5*time.Millisecond, "COMMIT never ran")
	var ok bool
	require.NoError(t, adminPool(t).QueryRow(context.Background(), `SELECT pg_terminate_backend($1)`, pid).Scan(&ok))
	require.True(t, ok)
	select {
	case err := <-done:
		require.ErrorIs(t, err, ledger.ErrUnknownOutcome)
	case <-time.After(10 * time.Second):
		t.Fatal("Update did not return after its backend was terminated")
	}
	fast()
	requireServes(t, s)
}

// TestCommitDeadline lets the caller's context end while the server runs
// COMMIT: the outcome is unknown, and the error says why.
func TestCommitDeadline(t *testing.T) {
	dbURL(t)
	s, _, schema := appStore(t)
	slowCommit(t, schema)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.Update(ctx, func(tx ledger.Tx) error {
		return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "a", UserID: "u"}, ledger.Total{Value: decimal.New(1, 0), LastEntryID: "x"})
	})
	require.ErrorIs(t, err, ledger.ErrUnknownOutcome)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// TestCommitRefusedIsKnown checks that a transaction the server refuses
// at COMMIT (a unique violation, sent with COMMIT) is reported as not
// committed rather than unknown.
func TestCommitRefusedIsKnown(t *testing.T) {
	dbURL(t)
	s := newStore(t)
	ctx := context.Background()
	r := ledger.Record{Entry: ledger.Entry{ID: "000000000000000100000001", AuthorityID: "a", UserID: "u",
		CreatedOn: time.Unix(0, 1), Amount: decimal.New(1, 0), Balance: decimal.New(1, 0)}, AuthorityBalance: decimal.New(1, 0)}
	insert := func(tx ledger.Tx) error { return tx.InsertEntry(ctx, r) }
	require.NoError(t, s.Update(ctx, insert))
	err := s.Update(ctx, insert)
	require.Error(t, err)
	require.NotErrorIs(t, err, ledger.ErrUnknownOutcome)
}

// slowCommit makes every COMMIT that wrote a total in schema sleep for
// a minute, by a deferred constraint trigger, until undo.
func slowCommit(t *testing.T, schema string) (undo func()) {
	t.Helper()
	q := pgx.Identifier{schema}.Sanitize()
	_, err := adminPool(t).Exec(context.Background(), `
CREATE FUNCTION `+q+`.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow AFTER INSERT OR UPDATE ON `+q+`.totals
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION `+q+`.slow();`)
	require.NoError(t, err)
	return func() {
		_, err := adminPool(t).Exec(context.Background(), `DROP TRIGGER slow ON `+q+`.totals`)
		require.NoError(t, err)
	}
}

// TestStalledServerLedger is issue 10's item 11 as a user meets it: with
// the backends of a ledger's store frozen, a CreateEntry with a 2 s
// deadline returns within 3 s (ErrUnknownOutcome if its commit had begun,
// else its context's error), a second writer queued behind it too, and
// once the backends resume the ledger writes again and the retry with the
// same idempotency key settles the first write.
func TestStalledServerLedger(t *testing.T) {
	dbURL(t)
	s, app, _ := appStore(t)
	l, err := ledger.New(s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	bg := context.Background()
	ne := ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: decimal.New(5, 0), Reason: "r", IdempotencyKey: "k"}
	_, err = l.CreateEntry(bg, ledger.NewEntry{AuthorityID: "a", UserID: "u", Amount: decimal.New(1, 0), Reason: "warm"})
	require.NoError(t, err)
	cont := stop(t, backends(t, app, ""))

	ctx, cancel := context.WithTimeout(bg, 2*time.Second)
	defer cancel()
	start := time.Now()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := l.CreateEntry(ctx, ne)
			errs <- err
		}()
	}
	for range 2 {
		err := <-errs
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	took := time.Since(start)
	require.Lessf(t, took, 3*time.Second, "returned after %v with a 2s deadline", took)

	cont()
	ctx2, cancel2 := context.WithTimeout(bg, 30*time.Second)
	defer cancel2()
	e, err := l.CreateEntry(ctx2, ne)
	require.NoError(t, err, "the ledger writes again once its backends resume")
	ws, err := l.Wallets(ctx2, ledger.WalletQuery{UserIDs: []string{"u"}})
	require.NoError(t, err)
	require.Equal(t, "6", ws[0].Total.String(), "the keyed write counted once")
	require.True(t, e.Amount.Equal(decimal.New(5, 0)))
	require.NoError(t, l.Verify(ctx2))
}
