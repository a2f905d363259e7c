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
	Index string // the index that should serve it; "a|b": either
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
	if sc.InCurrency {
		k |= scanCurrency
		args = append(args, encText(sc.Currency))
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

// LookupQueries returns the store's other reads, its item use and its
// reversal mark, with the given arguments.
func LookupQueries(s *Store, id, authority, user, currency, key string) []Query {
	return []Query{
		{"Entry by ID", s.q.entry, []any{id}, "entries_pkey"},
		{"Entry by idempotency key", s.q.entryByKey, []any{authority, key}, "entries_idempotency_key"},
		{"Total", s.q.total, []any{authority, currency, user}, "totals_pkey"},
		{"Totals of a group", s.q.totalsOf, []any{[]string{authority, "", ""}, []string{currency, currency, ""}, []string{user, user, user}}, "totals_pkey"},
		{"Totals, first page", s.q.totals[0], []any{authority, currency, "", firstPage}, "totals_pkey"},
		{"Totals, after a user", s.q.totals[1], []any{authority, currency, user, firstPage}, "totals_pkey"},
		{"Totals of all authorities, first page", s.q.totals[0], []any{"", currency, "", firstPage}, "totals_pkey"},
		{"Total groups", s.q.totalGroups, nil, "totals_pkey"},
		{"User totals, first page", s.q.userTotals[0], []any{user, "", firstPage}, "totals_user"},
		{"User totals, after a currency", s.q.userTotals[1], []any{user, currency, firstPage}, "totals_user"},
		{"Limits", s.q.limits, []any{user, currency}, "limits_pkey"},
		{"User limits, first page", s.q.userLimits[0], []any{user, "", firstPage}, "limits_pkey"},
		{"User limits, after a currency", s.q.userLimits[1], []any{user, currency, firstPage}, "limits_pkey"},
		{"All limits, first page", s.q.allLimits[0], []any{"", "", firstPage}, "limits_pkey"},
		{"All limits, after a wallet", s.q.allLimits[1], []any{user, currency, firstPage}, "limits_pkey"},
		{"SetItemUsed", s.q.use, []any{id, int64(1767225600123456789), authority, key}, "entries_pkey"},
		{"SetReversed", s.q.reverse, []any{id, id, true}, "entries_pkey"},
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
