package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

// TestLocks makes two transactions read one total and then both write
// it: the second waits at its read for the first's lock, and reads what
// the first wrote, so that no update is lost and nothing is retried.
// The total is read by Total, or by TotalsOf, whose lock returns the
// total it locked; either way the second writes the row where the first
// left it.
func TestLocks(t *testing.T) {
	ctx := context.Background()
	k := ledger.TotalKey{AuthorityID: "", UserID: "u"}
	for _, tc := range []struct {
		name string
		read func(ledger.Tx) (ledger.Total, error)
	}{
		{"Total", func(tx ledger.Tx) (ledger.Total, error) {
			v, _, err := tx.Total(ctx, k)
			return v, err
		}},
		{"TotalsOf", func(tx ledger.Tx) (ledger.Total, error) {
			got, err := tx.(ledger.TotalsPrefetcher).TotalsOf(ctx, []ledger.TotalKey{k})
			return got[k], err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
				return tx.SetTotal(ctx, k, ledger.Total{Value: decimal.Zero})
			}))
			increment := func(tx ledger.Tx, between func()) error {
				v, err := tc.read(tx)
				if err != nil {
					return err
				}
				between()
				return tx.SetTotal(ctx, k, ledger.Total{Value: v.Value.Add(decimal.NewFromInt(1))})
			}
			read, release := make(chan struct{}), make(chan struct{})
			var secondRead atomic.Bool
			errs := make(chan error, 2)
			go func() {
				errs <- s.Update(ctx, func(tx ledger.Tx) error {
					return increment(tx, func() { close(read); <-release })
				})
			}()
			<-read
			go func() {
				errs <- s.Update(ctx, func(tx ledger.Tx) error {
					return increment(tx, func() { secondRead.Store(true) })
				})
			}()
			time.Sleep(200 * time.Millisecond) // the second's read, were it not waiting, would be done
			require.False(t, secondRead.Load(), "the second read the total while the first held it")
			close(release)
			require.NoError(t, <-errs)
			require.NoError(t, <-errs)
			require.True(t, secondRead.Load())
			require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
				total, _, err := tx.Total(ctx, k)
				require.Equal(t, "2", total.Value.String(), "no lost update")
				return err
			}))
			require.Equal(t, pgstore.Stats{Updates: 3, Retries: 0}, s.Stats())
		})
	}
}

// TestTotalsWrittenWhereRead writes totals that an update read, and
// totals it wrote since it read them, in every order: the first are
// written where they were read (by ctid), the others by key, and every
// write lands.
func TestTotalsWrittenWhereRead(t *testing.T) {
	ctx := context.Background()
	sent := &sqlRecorder{}
	s := newStore(t, pgstore.WithPoolConfig(func(pc *pgxpool.Config) { pc.ConnConfig.Tracer = sent }))
	k1 := ledger.TotalKey{AuthorityID: "", UserID: "u"}
	k2 := ledger.TotalKey{AuthorityID: "a", UserID: "u"}
	k3 := ledger.TotalKey{AuthorityID: "", UserID: "new"}
	total := func(v int64) ledger.Total {
		return ledger.Total{Value: decimal.NewFromInt(v), LastEntryID: fmt.Sprint("e", v), Held: decimal.NewFromInt(v % 2)}
	}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return tx.SetTotal(ctx, k1, total(1)) }))
	sent.reset()
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		got, err := tx.(ledger.TotalsPrefetcher).TotalsOf(ctx, []ledger.TotalKey{k1, k2, k3}) // k2 and k3 have no row
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.NoError(t, tx.SetTotal(ctx, k1, total(2))) // where read
		require.NoError(t, tx.SetTotal(ctx, k3, total(3))) // its placeholder, where read
		v, ok, err := tx.Total(ctx, k1)                    // sends both, and reads k1 where it is now
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "2", v.Value.String())
		require.NoError(t, tx.SetTotal(ctx, k1, total(4))) // where read again
		require.NoError(t, tx.SetTotal(ctx, k3, total(5))) // written since it was read: by key
		_, ok, err = tx.Total(ctx, k2)                     // sends them
		require.NoError(t, err)
		require.False(t, ok, "a placeholder reads as no total")
		return tx.SetTotal(ctx, k1, total(6)) // written since it was read: by key
	}))
	var at, by int
	for _, q := range sent.texts() {
		if !strings.Contains(q, ".totals") {
			continue
		}
		switch {
		case strings.HasPrefix(q, "UPDATE "):
			at++
		case strings.Contains(q, "DO UPDATE SET total = EXCLUDED.total"):
			by++
		}
	}
	require.Equal(t, 2, at, "writes where they were read")
	require.Equal(t, 2, by, "writes by key")
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for k, want := range map[ledger.TotalKey]ledger.Total{k1: total(6), k3: total(5)} {
			got, ok, err := tx.Total(ctx, k)
			require.NoError(t, err)
			require.True(t, ok, "%v", k)
			require.Equal(t, want.Value.String(), got.Value.String(), "%v", k)
			require.Equal(t, want.LastEntryID, got.LastEntryID, "%v", k)
			require.Equal(t, want.Held.String(), got.Held.String(), "%v", k)
		}
		_, ok, err := tx.Total(ctx, k2)
		require.NoError(t, err)
		require.False(t, ok, "the placeholder was deleted")
		return nil
	}))
}

// TestTotalsOfLockedBefore reads with TotalsOf totals the update has
// locked already, and written, beside totals it locks now: the first are
// read, the others come with their lock, and each reads as last written.
func TestTotalsOfLockedBefore(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	k1 := ledger.TotalKey{AuthorityID: "", UserID: "u"}
	k2 := ledger.TotalKey{AuthorityID: "a", UserID: "u"}
	k3 := ledger.TotalKey{AuthorityID: "", UserID: "v"}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		if err := tx.SetTotal(ctx, k1, ledger.Total{Value: decimal.NewFromInt(1), LastEntryID: "e1"}); err != nil {
			return err
		}
		return tx.SetTotal(ctx, k2, ledger.Total{Value: decimal.NewFromInt(2), LastEntryID: "e2"})
	}))
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		if _, _, err := tx.Total(ctx, k1); err != nil {
			return err
		}
		require.NoError(t, tx.SetTotal(ctx, k1, ledger.Total{Value: decimal.NewFromInt(5), LastEntryID: "e5"}))
		got, err := tx.(ledger.TotalsPrefetcher).TotalsOf(ctx, []ledger.TotalKey{k1, k2, k3})
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, "5", got[k1].Value.String(), "locked before, and written: read")
		require.Equal(t, "e5", got[k1].LastEntryID)
		require.Equal(t, "2", got[k2].Value.String(), "locked now: from the lock")
		require.Equal(t, "e2", got[k2].LastEntryID)
		return tx.SetTotal(ctx, k2, ledger.Total{Value: decimal.NewFromInt(3), LastEntryID: "e3"})
	}))
	require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
		for k, want := range map[ledger.TotalKey]string{k1: "5", k2: "3"} {
			got, ok, err := tx.Total(ctx, k)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, want, got.Value.String(), "%v", k)
		}
		_, ok, err := tx.Total(ctx, k3)
		require.NoError(t, err)
		require.False(t, ok)
		return nil
	}))
}

// TestKnownTotals locks totals that a Store knows to have a row without
// the placeholder insert, and recovers when one of them has no row after
// all (deleted by hand): the update runs again, with the insert, and
// reads no total.
func TestKnownTotals(t *testing.T) {
	ctx := context.Background()
	sent := &sqlRecorder{}
	schema := freshSchema(t)
	s := open(t, schema, pgstore.WithPoolConfig(func(pc *pgxpool.Config) { pc.ConnConfig.Tracer = sent }))
	known := ledger.TotalKey{AuthorityID: "", UserID: "u"}
	other := ledger.TotalKey{AuthorityID: "a", UserID: "u"}
	inserts := func() int {
		n := 0
		for _, q := range sent.texts() {
			if strings.HasPrefix(q, "INSERT INTO ") && strings.Contains(q, ".totals") && strings.Contains(q, "NOT EXISTS") {
				n++
			}
		}
		return n
	}
	read := func(k ledger.TotalKey) (ledger.Total, bool) {
		var total ledger.Total
		var ok bool
		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
			var err error
			total, ok, err = tx.Total(ctx, k)
			return err
		}))
		return total, ok
	}

	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		if _, _, err := tx.Total(ctx, known); err != nil {
			return err
		}
		return tx.SetTotal(ctx, known, ledger.Total{Value: decimal.NewFromInt(7), LastEntryID: "e"})
	}))
	_, ok := read(other) // locked, never written: its placeholder is deleted
	require.False(t, ok)
	sent.reset()
	total, ok := read(known)
	require.True(t, ok)
	require.Equal(t, "7", total.Value.String())
	require.Zero(t, inserts(), "no placeholder insert for a total known to have a row")
	_, ok = read(other)
	require.False(t, ok)
	require.Equal(t, 1, inserts(), "a placeholder insert for a total whose placeholder was deleted")

	_, err := adminPool(t).Exec(ctx, "DELETE FROM "+pgx.Identifier{schema}.Sanitize()+".totals")
	require.NoError(t, err)
	sent.reset()
	before := s.Stats().Retries
	_, ok = read(known)
	require.False(t, ok, "the total deleted by hand")
	require.Equal(t, before+1, s.Stats().Retries, "the lock found no row for a known total and ran again")
	require.Equal(t, 1, inserts(), "the second attempt inserts the placeholder")
}

// sqlRecorder records the text of every statement a pool sends.
type sqlRecorder struct {
	mu  sync.Mutex
	sql []string
}

func (r *sqlRecorder) add(sql string) {
	r.mu.Lock()
	r.sql = append(r.sql, sql)
	r.mu.Unlock()
}

func (r *sqlRecorder) reset() {
	r.mu.Lock()
	r.sql = nil
	r.mu.Unlock()
}

func (r *sqlRecorder) texts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sql)
}

func (r *sqlRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.add(d.SQL)
	return ctx
}
func (r *sqlRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *sqlRecorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (r *sqlRecorder) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.add(d.SQL)
}
func (r *sqlRecorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestRetry makes two transactions read one entry's unused item without
// a lock and then both mark it used: the second's mark finds the item
// used, a conflict, and Update runs its function again, which then finds
// the item used and marks nothing.
func TestRetry(t *testing.T) {
	ctx := context.Background()
	dbURL(t)
	for _, tc := range []struct {
		name       string
		maxRetries int
		wantRetry  bool
	}{
		{"retried", pgstore.DefaultMaxRetries, true},
		{"no retries", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, pgstore.WithMaxRetries(tc.maxRetries))
			r := ledger.Record{Entry: ledger.Entry{ID: "000000000000000100000001", AuthorityID: "a", UserID: "u",
				CreatedOn: time.Unix(0, 1), Amount: decimal.Zero, Balance: decimal.Zero, Item: &ledger.Item{Name: "thing"}}, AuthorityBalance: decimal.Zero}
			require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error { return tx.InsertEntry(ctx, r) }))
			var calls, marks atomic.Int32
			read := make(chan struct{})
			both := make(chan struct{})
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = s.Update(ctx, func(tx ledger.Tx) error {
						first := calls.Add(1) <= 2
						e, err := tx.Entry(ctx, r.ID)
						if err != nil {
							return err
						}
						if first {
							read <- struct{}{}
							<-both
						}
						if e.Item.Used {
							return nil // as the ledger refuses a used item
						}
						marks.Add(1)
						return tx.SetItemUsed(ctx, r.ID, ledger.ItemUse{AuthorityID: fmt.Sprint("shop-", i)})
					})
				}()
			}
			<-read
			<-read
			close(both)
			wg.Wait()

			if tc.wantRetry {
				require.NoError(t, errs[0])
				require.NoError(t, errs[1])
				require.Equal(t, int32(3), calls.Load(), "one function ran twice")
				require.Equal(t, int32(2), marks.Load(), "the retry found the item used")
				require.Equal(t, pgstore.Stats{Updates: 3, Retries: 1}, s.Stats())
				return
			}
			failed := errors.Join(errs...)
			require.Error(t, failed, "one of the two must find the item used")
			require.False(t, errs[0] != nil && errs[1] != nil, "only one fails")
			require.ErrorIs(t, failed, pgstore.ErrConflict)
			require.NotErrorIs(t, failed, ledger.ErrUnknownOutcome)
			require.Equal(t, int32(2), calls.Load())
		})
	}
}

// counter counts the statements and batches a pool sends: once the
// statements are prepared on the connection, each is one round trip.
type counter struct{ n atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *counter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *counter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *counter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestRoundTrips counts the round trips of the ledger's common calls:
// BEGIN travels with the first read, and the writes with COMMIT.
func TestRoundTrips(t *testing.T) {
	ctx := context.Background()
	c := &counter{}
	s := newStore(t, pgstore.WithPoolConfig(func(pc *pgxpool.Config) {
		pc.ConnConfig.Tracer = c
		pc.MaxConns = 1 // one connection, so that every statement is prepared once
	}))
	l, err := ledger.New(s)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })

	// Each case prepares (uncounted) and returns the call to count.
	n := 0
	create := func(key string, item bool) func() error {
		return func() error {
			n++
			ne := ledger.NewEntry{AuthorityID: "bank", UserID: fmt.Sprint("u", n%3), Amount: decimal.NewFromInt(5), Reason: "in"}
			if key != "" {
				ne.IdempotencyKey = fmt.Sprint(key, n)
			}
			if item {
				ne.Item = &ledger.Item{Name: "thing"}
			}
			_, err := l.CreateEntry(ctx, ne)
			return err
		}
	}
	use := func() func() error {
		e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "u", Amount: decimal.Zero, Reason: "grant", Item: &ledger.Item{Name: "thing"}})
		require.NoError(t, err)
		return func() error {
			_, err := l.UseItem(ctx, "shop", e.ID)
			return err
		}
	}
	for _, tc := range []struct {
		name    string
		prepare func() func() error
		want    int64
	}{
		{"CreateEntry: read both totals at once; write", func() func() error { return create("", false) }, 2},
		{"CreateEntry with a key: read the totals, the key; write", func() func() error { return create("k", true) }, 3},
		{"UseItem: read the entry; mark; commit", use, 3},
		{"Wallets of one user: read the total; end", func() func() error {
			return func() error {
				_, err := l.Wallets(ctx, ledger.WalletQuery{UserIDs: []string{"u1"}})
				return err
			}
		}, 2},
		{"Update that only writes", func() func() error {
			return func() error {
				return s.Update(ctx, func(tx ledger.Tx) error {
					return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "x", UserID: "y"}, ledger.Total{Value: decimal.NewFromInt(1)})
				})
			}
		}, 1},
		{"View that reads nothing", func() func() error {
			return func() error { return s.View(ctx, func(ledger.ReadTx) error { return nil }) }
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.prepare()(), "the first call prepares the statements")
			fn := tc.prepare()
			before := c.n.Load()
			require.NoError(t, fn())
			require.Equal(t, tc.want, c.n.Load()-before, "round trips")
		})
	}
}

// TestTxMisuse checks what a Tx does when its caller misbehaves.
func TestTxMisuse(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	l, err := ledger.New(s)
	require.NoError(t, err)
	e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "u", Amount: decimal.NewFromInt(1), Reason: "in"})
	require.NoError(t, err)
	rec := ledger.Record{Entry: e}

	t.Run("IgnoredWriteFailure", func(t *testing.T) {
		// The duplicate insert fails when the next read sends it; fn
		// ignores that and returns nil, but nothing may commit.
		fresh := rec
		fresh.ID = "ffffffffffffffffffffffff"
		err := s.Update(ctx, func(tx ledger.Tx) error {
			require.NoError(t, tx.InsertEntry(ctx, fresh))
			require.NoError(t, tx.InsertEntry(ctx, rec))
			_, err := tx.Entry(ctx, rec.ID)
			require.Error(t, err, "the read reports the failed insert")
			_, _, err = tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "u"})
			require.Error(t, err, "the transaction stays failed")
			return nil
		})
		require.Error(t, err)
		require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
			_, err := tx.Entry(ctx, fresh.ID)
			require.ErrorIs(t, err, ledger.ErrNotFound)
			return nil
		}))
	})

	t.Run("ItemErrorsAtNextRead", func(t *testing.T) {
		err := s.Update(ctx, func(tx ledger.Tx) error {
			require.NoError(t, tx.SetItemUsed(ctx, rec.ID, ledger.ItemUse{AuthorityID: "a"}))
			_, err := tx.Entry(ctx, rec.ID)
			require.ErrorIs(t, err, ledger.ErrNoItem)
			return err
		})
		require.ErrorIs(t, err, ledger.ErrNoItem)
	})

	t.Run("FailedUseCommitsNothing", func(t *testing.T) {
		// The item use is sent with the other writes and fails by its
		// result, not by an error: COMMIT must wait for it.
		fresh := rec
		fresh.ID = "fffffffffffffffffffffffe"
		for _, missing := range []string{"000000000000000000000000", rec.ID} {
			err := s.Update(ctx, func(tx ledger.Tx) error {
				require.NoError(t, tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "someone"}, ledger.Total{Value: decimal.NewFromInt(9)}))
				require.NoError(t, tx.InsertEntry(ctx, fresh))
				return tx.SetItemUsed(ctx, missing, ledger.ItemUse{})
			})
			require.Error(t, err)
			require.True(t, errors.Is(err, ledger.ErrNotFound) || errors.Is(err, ledger.ErrNoItem), "%v", err)
			require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
				_, err := tx.Entry(ctx, fresh.ID)
				require.ErrorIs(t, err, ledger.ErrNotFound, "the insert was committed")
				_, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "someone"})
				require.NoError(t, err)
				require.False(t, ok, "the total was committed")
				return nil
			}))
		}
	})

	t.Run("FailedCloseCommitsNothing", func(t *testing.T) {
		// A hold's close fails by its result, as an item use does, so
		// COMMIT must wait for it too; and a close of a hold inserted
		// just before, in the same batch, is sent after the insert.
		at := time.Date(2026, 3, 1, 0, 0, 0, 1, time.UTC)
		h := ledger.HoldRecord{Hold: ledger.Hold{ID: ledger.FormatEntryID(at.UnixNano(), 1), AuthorityID: "shop", UserID: "u",
			Amount: decimal.NewFromInt(1), Reason: "r", CreatedOn: at, Expires: at.Add(time.Hour)}}
		err := s.Update(ctx, func(tx ledger.Tx) error {
			require.NoError(t, tx.InsertHold(ctx, h))
			require.NoError(t, tx.SetTotal(ctx, ledger.TotalKey{UserID: "someone"}, ledger.Total{Held: decimal.NewFromInt(1)}))
			return tx.CloseHold(ctx, "000000000000000000000000", ledger.HoldClose{State: ledger.HoldReleased, ClosedOn: at})
		})
		require.ErrorIs(t, err, ledger.ErrNotFound)
		require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
			_, err := tx.Hold(ctx, h.ID)
			require.ErrorIs(t, err, ledger.ErrNotFound, "the insert was committed")
			_, ok, err := tx.Total(ctx, ledger.TotalKey{UserID: "someone"})
			require.NoError(t, err)
			require.False(t, ok, "the total was committed")
			return nil
		}))

		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
			require.NoError(t, tx.InsertHold(ctx, h))
			return tx.CloseHold(ctx, h.ID, ledger.HoldClose{State: ledger.HoldReleased, ClosedOn: at.Add(time.Second)})
		}))
		require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
			got, err := tx.Hold(ctx, h.ID)
			require.NoError(t, err)
			require.Equal(t, ledger.HoldReleased, got.State)
			require.Equal(t, at.Add(time.Second), got.ClosedOn)
			return nil
		}))
	})

	t.Run("UseAfterReturn", func(t *testing.T) {
		var kept ledger.ReadTx
		require.NoError(t, s.View(ctx, func(tx ledger.ReadTx) error {
			kept = tx
			_, err := tx.Entry(ctx, rec.ID)
			return err
		}))
		_, err := kept.Entry(ctx, rec.ID)
		require.Error(t, err)
		yielded := 0
		for _, err := range kept.Entries(ctx, ledger.Scan{}) {
			require.Error(t, err)
			yielded++
		}
		require.Equal(t, 1, yielded, "a scan of a finished transaction yields its error, once")
	})

	t.Run("CancelledMidScan", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		err := s.View(ctx, func(tx ledger.ReadTx) error {
			for _, err := range tx.Entries(ctx, ledger.Scan{}) {
				if err != nil {
					return err
				}
				cancel()
			}
			_, err := tx.Entry(ctx, rec.ID)
			return err
		})
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("Panic", func(t *testing.T) {
		require.Panics(t, func() {
			_ = s.Update(ctx, func(tx ledger.Tx) error {
				_, _, _ = tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "u"})
				panic("boom")
			})
		})
		// The connection went back clean: the store still works.
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		require.NoError(t, s.Ping(tctx))
		_, err := l.CreateEntry(tctx, ledger.NewEntry{AuthorityID: "bank", UserID: "u", Amount: decimal.NewFromInt(1), Reason: "in"})
		require.NoError(t, err)
	})

	require.NoError(t, l.Close())
	require.ErrorIs(t, s.Close(), ledger.ErrClosed)
}
