package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

// The PostgreSQL rows: the ledger on pgstore, and a ledger written by
// hand on the same server with pgx, as a user without this library
// might. They run only when LEDGER_PG_URL names a database (any role
// that may create schemas will do); each configuration lives in a fresh
// schema, dropped when it ends. The server's settings are the server's:
// the report prints its version, fsync and synchronous_commit, which
// decide what a commit costs.

// pgURLEnv names the database of the PostgreSQL rows.
const pgURLEnv = "LEDGER_PG_URL"

// Keys of the PostgreSQL rows.
const (
	keyPgstoreMany = "pgstore/64"
	keyPgHandMany  = "pg-hand/64"
)

// pgConfigs returns the PostgreSQL configurations, or none without a
// database.
func (b *bench) pgConfigs() []config {
	if b.pgURL == "" {
		return nil
	}
	return []config{
		{keyPgstoreMany, "ledger, pgstore", manyWriters,
			one(func(ctx context.Context) (row, error) { return b.pgstoreWrites(ctx, manyWriters) })},
		{keyPgHandMany, "hand-written PostgreSQL ledger (pgx, SELECT ... FOR UPDATE)", manyWriters,
			one(func(ctx context.Context) (row, error) { return b.pgHandWrites(ctx, manyWriters) })},
	}
}

// describePostgres returns the server's version and the settings that
// decide what a commit costs.
func describePostgres(ctx context.Context, url string) (string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	var version, fsync, syncCommit string
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit')`).
		Scan(&version, &fsync, &syncCommit)
	if err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	return fmt.Sprintf("PostgreSQL %s, fsync=%s, synchronous_commit=%s", version, fsync, syncCommit), nil
}

// pgSchema creates a fresh schema for one configuration and returns its
// name, a pool on the database for the bench's own statements, and a
// func that drops the schema and closes the pool.
func (b *bench) pgSchema(ctx context.Context, prefix string) (string, *pgxpool.Pool, func(), error) {
	pool, err := pgxpool.New(ctx, b.pgURL)
	if err != nil {
		return "", nil, nil, fmt.Errorf("postgres: %w", err)
	}
	var r [6]byte
	_, _ = crand.Read(r[:])
	name := prefix + hex.EncodeToString(r[:])
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		pool.Close()
		return "", nil, nil, fmt.Errorf("postgres: %w", err)
	}
	drop := func() {
		// The run's context may have ended (an interrupt): drop anyway.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			b.progressf("(could not drop schema %s: %v) ", name, err)
		}
		pool.Close()
	}
	return name, pool, drop, nil
}

// schemaBytes returns the size of the tables in schema, their indexes
// and TOAST included.
func schemaBytes(ctx context.Context, pool *pgxpool.Pool, schema string) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1 AND c.relkind = 'r'`, schema).Scan(&n)
	return n, err
}

// pgRow ends a PostgreSQL configuration: the row with the rate and the
// growth of the schema's tables per entry written.
func pgRow(ctx context.Context, pool *pgxpool.Pool, schema string, before int64, res result) (row, error) {
	after, err := schemaBytes(ctx, pool, schema)
	if err != nil {
		return row{}, fmt.Errorf("postgres: size of schema %s: %w", schema, err)
	}
	return row{rate: res.rate(), unit: "entries/s", entries: res.written, mem: -1, disk: perEntry(uint64(before), uint64(after), res.written)}, nil
}

// pgstoreWrites times CreateEntry on a ledger over pgstore in a fresh
// schema.
func (b *bench) pgstoreWrites(ctx context.Context, workers int) (row, error) {
	schema, pool, drop, err := b.pgSchema(ctx, "bench_pgstore_")
	if err != nil {
		return row{}, err
	}
	defer drop()
	s, err := pgstore.Open(ctx, b.pgURL, pgstore.WithSchema(schema))
	if err != nil {
		return row{}, err
	}
	l, err := ledger.New(s)
	if err != nil {
		s.Close()
		return row{}, err
	}
	before, err := schemaBytes(ctx, pool, schema)
	if err != nil {
		l.Close()
		return row{}, err
	}
	res, err := runFor(ctx, b.duration, workers, 1, createEntryOp(l))
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return row{}, err
	}
	return pgRow(ctx, pool, schema, before, res)
}

// The hand-written PostgreSQL ledger: a table of balances and a table of
// entries, and one READ COMMITTED transaction per entry that makes sure
// the user's balance row exists, locks it with SELECT ... FOR UPDATE,
// checks the funds in Go with decimal arithmetic, updates the balance
// and inserts the entry: five statements and COMMIT, each a round trip,
// as a user writes it with pgx. Like the SQLite ledger, its entries have
// no index besides their primary key, so it does less than pgstore
// (which indexes entries by user, by authority and by both, keeps each
// authority's total and a change feed): a generous baseline. Its pool
// is pgx's default, as pgstore's is: max(4, number of CPUs) connections,
// unless the URL says otherwise (pool_max_conns).
const pgHandSchema = `
CREATE TABLE %[1]s.balances (
	user_id text PRIMARY KEY,
	balance numeric NOT NULL
);
CREATE TABLE %[1]s.entries (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	authority_id text NOT NULL,
	user_id      text NOT NULL,
	amount       numeric NOT NULL,
	reason       text NOT NULL,
	created_on   bigint NOT NULL
);`

// pgHandLedger is the hand-written PostgreSQL ledger.
type pgHandLedger struct {
	pool                                  *pgxpool.Pool
	ensure, lock, updateBalance, addEntry string
}

func openPgHand(ctx context.Context, url, schema string) (*pgHandLedger, error) {
	q := pgx.Identifier{schema}.Sanitize()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if _, err := pool.Exec(ctx, fmt.Sprintf(pgHandSchema, q)); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &pgHandLedger{
		pool:          pool,
		ensure:        `INSERT INTO ` + q + `.balances (user_id, balance) VALUES ($1, 0) ON CONFLICT (user_id) DO NOTHING`,
		lock:          `SELECT balance::text FROM ` + q + `.balances WHERE user_id = $1 FOR UPDATE`,
		updateBalance: `UPDATE ` + q + `.balances SET balance = $2::numeric WHERE user_id = $1`,
		addEntry:      `INSERT INTO ` + q + `.entries (authority_id, user_id, amount, reason, created_on) VALUES ($1, $2, $3::numeric, $4, $5)`,
	}, nil
}

func (h *pgHandLedger) Close() { h.pool.Close() }

// createEntry writes ne unless it is a spend the user cannot afford, and
// reports whether it did.
func (h *pgHandLedger) createEntry(ctx context.Context, ne ledger.NewEntry) (bool, error) {
	tx, err := h.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx) // after Commit, a no-op

	if _, err := tx.Exec(ctx, h.ensure, ne.UserID); err != nil {
		return false, err
	}
	var text string
	if err := tx.QueryRow(ctx, h.lock, ne.UserID).Scan(&text); err != nil {
		return false, err
	}
	bal, err := decimal.NewFromString(text)
	if err != nil {
		return false, err
	}
	nb := bal.Add(ne.Amount)
	if ne.Amount.Sign() < 0 && nb.Sign() < 0 {
		return false, tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, h.updateBalance, ne.UserID, nb.String()); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, h.addEntry, ne.AuthorityID, ne.UserID, ne.Amount.String(), ne.Reason, time.Now().UnixNano()); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// pgHandWrites times the hand-written PostgreSQL ledger in a fresh
// schema.
func (b *bench) pgHandWrites(ctx context.Context, workers int) (row, error) {
	schema, pool, drop, err := b.pgSchema(ctx, "bench_pghand_")
	if err != nil {
		return row{}, err
	}
	defer drop()
	h, err := openPgHand(ctx, b.pgURL, schema)
	if err != nil {
		return row{}, err
	}
	before, err := schemaBytes(ctx, pool, schema)
	if err != nil {
		h.Close()
		return row{}, err
	}
	res, err := runFor(ctx, b.duration, workers, 1, func() op {
		return func(ctx context.Context, r *rand.Rand) (int, error) {
			ok, err := h.createEntry(ctx, workload(r))
			if ok {
				return 1, err
			}
			return 0, err
		}
	})
	h.Close()
	if err != nil {
		return row{}, err
	}
	return pgRow(ctx, pool, schema, before, res)
}

// noPostgres is the report's note when the PostgreSQL rows did not run.
const noPostgres = "rows skipped: " + pgURLEnv + " is not set (see README.md)"
