package pgstore

import (
	"context"
	"net"

	"github.com/walletledger/ledger"
)

// Internals for the external tests.

var (
	EncText = encText
	DecText = decText
)

// Migrations are the schema's migrations, in order; {schema} stands for
// the quoted schema name.
var Migrations = migrations

// Page sizes of scans: the LIMIT of the first page and of the largest.
const (
	FirstPage = firstPage
	MaxPage   = maxPage
)

// Query is a statement a Store sends, with sample arguments, for
// EXPLAIN.
type Query struct {
	Name  string
	SQL   string
	Args  []any
	Index string // the index that should serve it
}

// ScanQuery returns the query of the first page of sc, with its
// arguments.
func ScanQuery(s *Store, sc ledger.Scan) (string, []any) {
	var k scanKey
	var args []any
	if sc.AuthorityID != "" {
		k |= scanAuthority
		args = append(args, encText(sc.AuthorityID))
	}
	if sc.UserID != "" {
		k |= scanUser
		args = append(args, encText(sc.UserID))
	}
	if sc.ItemsOnly {
		k |= scanItems
	}
	if sc.Reverse {
		k |= scanReverse
	}
	if sc.Start != "" {
		k |= scanStart
		args = append(args, encText(sc.Start))
	}
	if sc.End != "" {
		k |= scanEnd
		args = append(args, encText(sc.End))
	}
	return s.q.scans[k], append(args, firstPage)
}

// LookupQueries returns the store's other reads and its item use, with
// the given arguments.
func LookupQueries(s *Store, id, authority, user, key string) []Query {
	return []Query{
		{"Entry by ID", s.q.entry, []any{id}, "entries_pkey"},
		{"Entry by idempotency key", s.q.entryByKey, []any{authority, key}, "entries_idempotency_key"},
		{"Total", s.q.total, []any{authority, user}, "totals_pkey"},
		{"Totals of a group", s.q.totalsOf, []any{[]string{authority, ""}, []string{user, user}}, "totals_pkey"},
		{"Totals, first page", s.q.totals[0], []any{authority, "", firstPage}, "totals_pkey"},
		{"Totals, after a user", s.q.totals[1], []any{authority, user, firstPage}, "totals_pkey"},
		{"SetItemUsed", s.q.use, []any{id, int64(1767225600123456789), authority, key}, "entries_pkey"},
	}
}

// WithNetConn calls f with the network connection of one of s's
// connections.
func WithNetConn(ctx context.Context, s *Store, f func(net.Conn) error) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return f(c.Conn().PgConn().Conn())
}
