package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"time"

	"github.com/shopspring/decimal"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, as "sqlite"

	"github.com/walletledger/ledger"
)

// A SQLite ledger written by hand, as a user without this library might:
// a table of entries and a table of balances, one transaction per entry
// that reads the balance, checks it, inserts the entry and upserts the
// balance, with the decimal arithmetic in Go.
//
// The database runs in WAL mode with synchronous=FULL, so a committed
// entry survives a power cut, like badgerstore's default. SQLite admits
// one writer at a time, so the ledger uses a single connection
// (SetMaxOpenConns(1)): concurrent callers queue for it inside
// database/sql instead of failing with SQLITE_BUSY and retrying.
// Transactions start with BEGIN IMMEDIATE, and busy_timeout is set as a
// user would, though with one connection nothing waits on a lock.

// sqliteFile is the database's file name in its directory.
const sqliteFile = "ledger.db"

const sqliteSchema = `
CREATE TABLE entries (
	id           INTEGER PRIMARY KEY,
	authority_id TEXT NOT NULL,
	user_id      TEXT NOT NULL,
	amount       TEXT NOT NULL,
	reason       TEXT NOT NULL,
	created_on   INTEGER NOT NULL
);
CREATE TABLE balances (
	user_id TEXT PRIMARY KEY,
	total   TEXT NOT NULL
);`

// sqliteLedger is the hand-written SQLite ledger.
type sqliteLedger struct {
	db                          *sql.DB
	selectTotal, insert, upsert *sql.Stmt
}

func openSQLite(path string) (*sqliteLedger, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	s := &sqliteLedger{db: db}
	if err := s.prepare(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return s, nil
}

func (s *sqliteLedger) prepare() error {
	if _, err := s.db.Exec(sqliteSchema); err != nil {
		return err
	}
	var err error
	prep := func(query string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = s.db.Prepare(query)
		return st
	}
	s.selectTotal = prep(`SELECT total FROM balances WHERE user_id = ?`)
	s.insert = prep(`INSERT INTO entries (authority_id, user_id, amount, reason, created_on) VALUES (?, ?, ?, ?, ?)`)
	s.upsert = prep(`INSERT INTO balances (user_id, total) VALUES (?, ?)
		ON CONFLICT (user_id) DO UPDATE SET total = excluded.total`)
	return err
}

func (s *sqliteLedger) Close() error { return s.db.Close() }

// createEntry writes ne unless it is a spend the user cannot afford, and
// reports whether it did.
func (s *sqliteLedger) createEntry(ctx context.Context, ne ledger.NewEntry) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() // after Commit, a no-op

	var total string
	var bal decimal.Decimal
	err = tx.StmtContext(ctx, s.selectTotal).QueryRowContext(ctx, ne.UserID).Scan(&total)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return false, err
	default:
		if bal, err = decimal.NewFromString(total); err != nil {
			return false, err
		}
	}
	nb := bal.Add(ne.Amount)
	if ne.Amount.Sign() < 0 && nb.Sign() < 0 {
		return false, nil
	}
	_, err = tx.StmtContext(ctx, s.insert).ExecContext(ctx,
		ne.AuthorityID, ne.UserID, ne.Amount.String(), ne.Reason, time.Now().UnixNano())
	if err != nil {
		return false, err
	}
	if _, err = tx.StmtContext(ctx, s.upsert).ExecContext(ctx, ne.UserID, nb.String()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// sqliteWrites times the SQLite ledger in a fresh directory.
func (b *bench) sqliteWrites(ctx context.Context, workers int) (row, error) {
	dir, cleanup, err := b.tempDir("sqlite")
	if err != nil {
		return row{}, err
	}
	defer cleanup()
	s, err := openSQLite(filepath.Join(dir, sqliteFile))
	if err != nil {
		return row{}, err
	}
	res, err := runFor(ctx, b.duration, workers, 1, func() op {
		return func(ctx context.Context, r *rand.Rand) (int, error) {
			ok, err := s.createEntry(ctx, workload(r))
			if ok {
				return 1, err
			}
			return 0, err
		}
	})
	return b.diskRow(kindSQLite, dir, res, err, s.Close())
}
