package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
	"github.com/walletledger/ledger/storetest"
)

// The tests need a PostgreSQL database: LEDGER_PG_URL names it (any role
// that may create schemas will do), and every test that needs it skips
// without it. .ci/postgres.sh test starts a throwaway server and runs
// them. Each store a test makes lives in a fresh schema, dropped when the
// test ends, so tests can share one database, even concurrently.

const urlEnv = "LEDGER_PG_URL"

// dbURL returns the test database's URL or skips the test.
func dbURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv(urlEnv)
	if url == "" {
		t.Skip("pgstore: LEDGER_PG_URL not set; see README")
	}
	return url
}

var admin struct {
	once sync.Once
	pool *pgxpool.Pool
	err  error
}

// adminPool returns a pool on the test database for the tests' own SQL:
// dropping schemas, tampering, EXPLAIN.
func adminPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := dbURL(t)
	admin.once.Do(func() { admin.pool, admin.err = pgxpool.New(context.Background(), url) })
	require.NoError(t, admin.err)
	return admin.pool
}

func TestMain(m *testing.M) {
	code := m.Run()
	if admin.pool != nil {
		admin.pool.Close()
	}
	os.Exit(code)
}

// freshSchema returns the name of a schema that does not exist yet and
// is dropped, with whatever it holds, when the test ends.
func freshSchema(t testing.TB) string {
	t.Helper()
	pool := adminPool(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "pgstore_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// open opens a store in schema, closed when the test ends.
func open(t testing.TB, schema string, opts ...pgstore.Option) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), dbURL(t), append([]pgstore.Option{pgstore.WithSchema(schema)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newStore opens a store in a fresh schema.
func newStore(t testing.TB, opts ...pgstore.Option) *pgstore.Store {
	t.Helper()
	return open(t, freshSchema(t), opts...)
}

func TestConformance(t *testing.T) {
	dbURL(t)
	storetest.Run(t, func(t *testing.T) ledger.Store { return newStore(t) })
}
