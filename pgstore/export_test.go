package pgstore

import (
	"context"
	"net"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/walletledger/ledger"
)

// Internals for the external tests.

var (
	EncText      = encText
	EncDecimal   = encDecimal
	DecText      = decText
	FormatCursor = formatCursor
	FirstAfter   = firstAfter
	ErrConflict  = errConflict
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
	Index string // the index that should serve it; "a|b": either; "ctid": a TID scan
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
		{"Totals of a group", s.q.totalsOf, []any{[]string{authority, "", ""}, []string{currency, currency, ""}, []string{user, user, user}, []bool{true, false, true}}, "totals_pkey"},
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
		{"Placeholders of totals to lock", s.q.ensureTotals, []any{[]string{"", authority}, []string{currency, currency}, []string{user, user}}, "totals_pkey"},
		{"Lock totals", s.q.lockTotals, []any{[]string{"", authority}, []string{currency, currency}, []string{user, user}}, "totals_pkey"},
		{"Lock totals, reading them", s.q.lockTotalsValues, []any{[]string{"", authority}, []string{currency, currency}, []string{user, user}}, "totals_pkey"},
		{"Delete placeholder totals", s.q.dropTotals, []any{[]string{"", authority}, []string{currency, currency}, []string{user, user}}, "totals_pkey"},
		{"Write totals", s.q.setTotals, []any{[]string{"", authority}, []string{currency, currency}, []string{user, user},
			[]string{"3", "2"}, []string{id, id}, []string{"1", "0"}}, "totals_pkey"},
		{"Write totals where they were read", s.q.setTotalsAt, []any{[]pgtype.TID{{BlockNumber: 0, OffsetNumber: 1, Valid: true}, {BlockNumber: 2, OffsetNumber: 7, Valid: true}},
			[]string{"3", "2"}, []string{id, id}, []string{"1", "0"}}, "ctid"},
		{"SetItemUsed", s.q.use, []any{id, int64(1767225600123456789), authority, key}, "entries_pkey"},
		{"SetReversed", s.q.reverse, []any{id, id, true}, "entries_pkey"},
	}
}

// HoldQueries returns the store's reads of holds, and its close of a
// hold, with the given arguments: until is an expiry bound in Unix
// nanoseconds, after an (expires, ID) the next page of an expiry scan
// starts after.
func HoldQueries(s *Store, id, authority, user, currency, key string, until, afterExpires int64, afterID string) []Query {
	return []Query{
		{"Hold by ID", s.q.hold, []any{id}, "holds_pkey"},
		{"Hold by idempotency key", s.q.holdByKey, []any{authority, key}, "holds_idempotency_key"},
		{"Holds all", s.q.holdScans[0], []any{"", firstPage}, "holds_pkey"},
		{"Holds all, after an ID", s.q.holdScans[0], []any{afterID, firstPage}, "holds_pkey"},
		{"Holds in a currency", s.q.holdScans[holdScanCurrency], []any{currency, "", firstPage}, "holds_pkey"},
		{"Holds of a wallet", s.q.holdScans[holdScanUser|holdScanCurrency], []any{user, currency, "", firstPage}, "holds_user"},
		{"Holds of a wallet, after an ID", s.q.holdScans[holdScanUser|holdScanCurrency], []any{user, currency, afterID, firstPage}, "holds_user"},
		{"Holds of a user in any currency", s.q.holdScans[holdScanUser], []any{user, "", firstPage}, "holds_user"},
		{"Expiring holds", s.q.expiring[0][0], []any{until, firstPage}, "holds_expiring"},
		{"Expiring holds, next page", s.q.expiring[0][1], []any{until, afterExpires, afterID, firstPage}, "holds_expiring"},
		{"Expiring holds of a wallet", s.q.expiring[1][0], []any{user, currency, until, firstPage}, "holds_expiring_user"},
		{"Expiring holds of a wallet, next page", s.q.expiring[1][1], []any{user, currency, until, afterExpires, afterID, firstPage}, "holds_expiring_user"},
		{"CloseHold", s.q.closeHold, []any{id, "captured", int64(1767225600123456789), afterID}, "holds_pkey"},
	}
}

// ChangeQueries returns the store's read of changes, from the first
// and from change number from on.
func ChangeQueries(s *Store, from int64) []Query {
	return []Query{
		{"Changes from the first", s.q.changes, []any{int64(1), firstPage}, "changes_pkey"},
		{"Changes after a cursor", s.q.changes, []any{from, firstPage}, "changes_pkey"},
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
