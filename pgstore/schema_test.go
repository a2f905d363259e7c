package pgstore_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

func TestSchemas(t *testing.T) {
	ctx := context.Background()
	dbURL(t)

	t.Run("Separate", func(t *testing.T) {
		a, b := newLedgerIn(t, freshSchema(t)), newLedgerIn(t, freshSchema(t))
		_, err := a.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "alice", Amount: decimal.NewFromInt(5), Reason: "in a"})
		require.NoError(t, err)
		_, err = b.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "bob", Amount: decimal.NewFromInt(7), Reason: "in b"})
		require.NoError(t, err)
		for _, tc := range []struct {
			name string
			l    *ledger.Ledger
			want string
		}{{"a", a, "alice=5"}, {"b", b, "bob=7"}} {
			ws, err := tc.l.Wallets(ctx, ledger.WalletQuery{})
			require.NoError(t, err)
			require.Len(t, ws, 1, tc.name)
			require.Equal(t, tc.want, ws[0].UserID+"="+ws[0].Total.String(), tc.name)
			es, err := tc.l.Entries(ctx, ledger.EntryQuery{})
			require.NoError(t, err)
			require.Len(t, es, 1, tc.name)
			require.NoError(t, tc.l.Verify(ctx), tc.name)
		}
	})

	t.Run("ConcurrentOpen", func(t *testing.T) {
		// Without the advisory lock, sessions creating one schema at once
		// fail on each other's CREATE SCHEMA or CREATE TABLE.
		schema := freshSchema(t)
		const n = 8
		stores := make([]*pgstore.Store, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				stores[i], errs[i] = pgstore.Open(ctx, dbURL(t), pgstore.WithSchema(schema))
			}()
		}
		close(start)
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i], "open %d", i)
			t.Cleanup(func() { _ = stores[i].Close() })
		}
		var version string
		err := adminPool(t).QueryRow(ctx, "SELECT value FROM "+pgx.Identifier{schema}.Sanitize()+".meta WHERE key = 'version'").Scan(&version)
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(pgstore.SchemaVersion), version)
		// One writes, another reads it.
		require.NoError(t, stores[0].Update(ctx, func(tx ledger.Tx) error {
			return tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: "", UserID: "u"}, ledger.Total{Value: decimal.NewFromInt(3)})
		}))
		require.NoError(t, stores[n-1].View(ctx, func(tx ledger.ReadTx) error {
			v, ok, err := tx.Total(ctx, ledger.TotalKey{AuthorityID: "", UserID: "u"})
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "3", v.Value.String())
			return nil
		}))
	})

	t.Run("NewerVersion", func(t *testing.T) {
		schema := freshSchema(t)
		s, err := pgstore.Open(ctx, dbURL(t), pgstore.WithSchema(schema))
		require.NoError(t, err)
		require.NoError(t, s.Close())
		_, err = adminPool(t).Exec(ctx, "UPDATE "+pgx.Identifier{schema}.Sanitize()+".meta SET value = '99' WHERE key = 'version'")
		require.NoError(t, err)
		_, err = pgstore.Open(ctx, dbURL(t), pgstore.WithSchema(schema))
		require.ErrorIs(t, err, pgstore.ErrSchemaVersion)
		t.Log(err)
	})

	t.Run("ExistingTables", func(t *testing.T) {
		// A schema that holds someone else's table named entries is not
		// taken over: the migration fails and leaves nothing behind.
		schema := freshSchema(t)
		q := pgx.Identifier{schema}.Sanitize()
		_, err := adminPool(t).Exec(ctx, "CREATE SCHEMA "+q+"; CREATE TABLE "+q+".entries (x int)")
		require.NoError(t, err)
		_, err = pgstore.Open(ctx, dbURL(t), pgstore.WithSchema(schema))
		require.Error(t, err)
		var meta *string
		require.NoError(t, adminPool(t).QueryRow(ctx, "SELECT to_regclass($1::text)::text", q+".meta").Scan(&meta))
		require.Nil(t, meta, "a failed migration leaves no meta table")
	})

	t.Run("Options", func(t *testing.T) {
		_, err := pgstore.Open(ctx, dbURL(t), pgstore.WithSchema(freshSchema(t)), pgstore.WithMaxRetries(-1))
		require.ErrorIs(t, err, ledger.ErrInvalid)
		_, err = pgstore.Open(ctx, "postgres://u:secret@127.0.0.1:1/db?sslmode=bogus")
		require.Error(t, err)
		require.NotContains(t, err.Error(), "secret", "the password must not appear in errors")
	})
}

// TestSchemaNames needs no database: names are checked before
// connecting.
func TestSchemaNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"walletledger", true},
		{"ledger_2", true},
		{"_x", true},
		{strings.Repeat("a", 63), true},
		{"", false},
		{strings.Repeat("a", 64), false},
		{"Ledger", false},
		{"two words", false},
		{"dash-ed", false},
		{`quo"te`, false},
		{"x; DROP TABLE y", false},
		{"1ledger", false},
		{"pg_ledger", false},
		{"lédger", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pgstore.Open(context.Background(), "postgres://127.0.0.1:1/none?connect_timeout=1", pgstore.WithSchema(tc.name))
			if tc.ok {
				// Valid: Open gets as far as connecting, and fails there.
				require.NotErrorIs(t, err, ledger.ErrInvalid)
				return
			}
			require.ErrorIs(t, err, ledger.ErrInvalid)
		})
	}
}
