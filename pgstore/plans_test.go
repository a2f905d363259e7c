package pgstore_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/pgstore"
)

var updatePlans = flag.Bool("update", false, "rewrite EXPLAIN.md with the query plans TestQueryPlans finds")

// TestQueryPlans asks PostgreSQL how it runs every query pgstore sends,
// over a ledger of some thousands of entries, with the planner's default
// settings (pgstore's own sessions turn sequential scans off besides):
// each must be served by the index meant for it, in order, with no
// sequential scan and no sort, both as a custom plan (for the arguments
// given) and as the generic plan PostgreSQL caches for a prepared
// statement. go test -run TestQueryPlans -update rewrites EXPLAIN.md.
func TestQueryPlans(t *testing.T) {
	ctx := context.Background()
	schema := freshSchema(t)
	s := open(t, schema)

	const users, auths, n = 200, 5, 20000
	user := func(i int) string { return fmt.Sprintf("user-%03d", i%users) }
	auth := func(i int) string { return fmt.Sprintf("authority-%d", i%auths) }
	id := func(i int) string { return fmt.Sprintf("%016x%08x", int64(1_700_000_000_000_000_000)+int64(i)*1000, i) }
	currencies := []string{"", "", "gems", "coins"}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		for i := range n {
			r := ledger.Record{Entry: ledger.Entry{
				ID: id(i), AuthorityID: auth(i / 3), UserID: user(i), CreatedOn: time.Unix(0, int64(i)).UTC(),
				Amount: decimal.NewFromInt(1), Reason: "r", Balance: decimal.NewFromInt(int64(i)), Currency: currencies[i/7%4],
			}}
			if i%10 == 0 {
				r.Item = &ledger.Item{Name: "thing", Data: []byte(`{}`)}
			}
			if i%4 == 0 {
				r.IdempotencyKey = fmt.Sprint("key-", i)
			}
			if err := tx.InsertEntry(ctx, r); err != nil {
				return err
			}
		}
		for u := range users {
			for a := -1; a < auths; a++ {
				authority := ""
				if a >= 0 {
					authority = auth(a)
				}
				for _, c := range currencies[1:] {
					if err := tx.SetTotal(ctx, ledger.TotalKey{AuthorityID: authority, UserID: user(u), Currency: c}, ledger.Total{Value: decimal.NewFromInt(int64(u))}); err != nil {
						return err
					}
				}
			}
			for _, c := range currencies[1:] {
				l := ledger.StoredLimits{WalletLimits: ledger.WalletLimits{UserID: user(u), Currency: c, Floor: decimal.NewFromInt(-10)}, SetBy: auth(0), SetOn: time.Unix(0, 1).UTC()}
				if err := tx.SetLimits(ctx, l); err != nil {
					return err
				}
			}
		}
		return nil
	}))
	// Holds: ten per user, in the three currencies; three in four
	// active, and of those most expire, at times out of ID order.
	const nHolds = 2000
	holdID := func(i int) string { return fmt.Sprintf("%016x%08x", int64(1_710_000_000_000_000_000)+int64(i)*1000, i) }
	expiry := func(i int) time.Time {
		return time.Unix(0, 1_720_000_000_000_000_000+int64(i*7919%nHolds)*1_000_000).UTC()
	}
	states := []ledger.HoldState{ledger.HoldActive, ledger.HoldActive, ledger.HoldActive, ledger.HoldCaptured}
	require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
		for i := range nHolds {
			h := ledger.HoldRecord{Hold: ledger.Hold{
				ID: holdID(i), AuthorityID: auth(i / 3), UserID: user(i), Currency: currencies[i/7%4],
				Amount: decimal.NewFromInt(1), Reason: "r", CreatedOn: time.Unix(0, int64(i)).UTC(), State: states[i%4],
			}}
			if i%5 != 0 {
				h.Expires = expiry(i)
			}
			if h.State != ledger.HoldActive {
				h.ClosedOn, h.EntryID = time.Unix(0, int64(i)+1).UTC(), id(i)
			}
			if i%4 == 0 {
				h.IdempotencyKey = fmt.Sprint("key-", i)
			}
			if err := tx.InsertHold(ctx, h); err != nil {
				return err
			}
		}
		return nil
	}))
	// Changes: one per entry, in transactions of a hundred.
	for i := 0; i < n; i += 100 {
		require.NoError(t, s.Update(ctx, func(tx ledger.Tx) error {
			for j := i; j < i+100; j++ {
				c := ledger.ChangeRecord{Kind: ledger.ChangeEntry, At: time.Unix(0, int64(j)).UTC(), AuthorityID: auth(j / 3), Ref: id(j)}
				if err := tx.AppendChange(ctx, c); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	q := pgx.Identifier{schema}.Sanitize()
	_, err := adminPool(t).Exec(ctx, "ANALYZE "+q+".entries; ANALYZE "+q+".totals; ANALYZE "+q+".limits; ANALYZE "+q+".holds; ANALYZE "+q+".changes")
	require.NoError(t, err)

	type query struct {
		pgstore.Query
		scan   ledger.Scan
		isScan bool
		// loose: a currency filter on a shape the ledger does not send
		// with one, which any index may serve (see check).
		loose bool
	}
	var queries []query
	for _, lq := range pgstore.LookupQueries(s, id(40), auth(0), user(7), "gems", "key-40") {
		queries = append(queries, query{Query: lq})
	}
	// An expiry bound a quarter of the way through the holds' expiries,
	// and the (expires, ID) of an active hold as a next page's start.
	until := expiry(0).UnixNano() + nHolds/4*1_000_000
	queries = append(queries, func() []query {
		var out []query
		for _, hq := range pgstore.HoldQueries(s, holdID(41), auth(0), user(7), "gems", "key-40", until, expiry(41).UnixNano(), holdID(41)) {
			out = append(out, query{Query: hq})
		}
		return out
	}()...)
	for _, cq := range pgstore.ChangeQueries(s, n/2) {
		queries = append(queries, query{Query: cq})
	}
	start, end := id(n/4), id(n/2)
	// In a currency, a user's entries are a seek into entries_currency_user;
	// every other shape filters its own index by currency (or, for a
	// user's items, filters the wallet's history by item).
	for _, f := range []struct {
		name, user, auth  string
		currency, loose   bool
		index, itemsIndex string
	}{
		{"all", "", "", false, false, "entries_pkey", "entries_items"},
		{"by user", user(7), "", false, false, "entries_user", "entries_items_user"},
		{"by authority", "", auth(2), false, false, "entries_authority", "entries_items_authority"},
		{"by authority and user", user(7), auth(2), false, false, "entries_authority_user", "entries_authority_user"},
		{"all in a currency", "", "", true, true, "entries_pkey", "entries_items"},
		{"by user in a currency", user(7), "", true, false, "entries_currency_user", "entries_items_user|entries_currency_user"},
		{"by authority in a currency", "", auth(2), true, true, "entries_authority", "entries_items_authority"},
		{"by authority and user in a currency", user(7), auth(2), true, false, "entries_authority_user", "entries_authority_user"},
	} {
		for _, items := range []bool{false, true} {
			for _, b := range []struct {
				name       string
				start, end string
				reverse    bool
			}{
				{"", "", "", false},
				{", Start and End", start, end, false},
				{", Start and End, Reverse", start, end, true},
			} {
				sc := ledger.Scan{UserID: f.user, AuthorityID: f.auth, ItemsOnly: items, Start: b.start, End: b.end, Reverse: b.reverse}
				if f.currency {
					sc.InCurrency, sc.Currency = true, "gems"
				}
				name, index := "Entries "+f.name, f.index
				if items {
					name, index = "Items "+f.name, f.itemsIndex
				}
				sql, args := pgstore.ScanQuery(s, sc)
				loose := f.loose || f.currency && items
				queries = append(queries, query{Query: pgstore.Query{Name: name + b.name, SQL: sql, Args: args, Index: index}, scan: sc, isScan: true, loose: loose})
			}
		}
	}

	conn, err := adminPool(t).Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	explain := func(mode string, qu query) string {
		t.Helper()
		_, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode)
		require.NoError(t, err)
		var lines []string
		execute := "EXECUTE p"
		if len(qu.Args) > 0 {
			execute += "(" + literals(qu.Args) + ")"
		}
		rows, err := conn.Query(ctx, "EXPLAIN (COSTS OFF) "+execute)
		require.NoError(t, err)
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			lines = append(lines, line)
		}
		require.NoError(t, rows.Err())
		return strings.ReplaceAll(strings.Join(lines, "\n"), q+".", "")
	}

	var doc strings.Builder
	var sorted []string    // plans that sort what an index condition selected
	var elsewhere []string // loose plans served by another index
	doc.WriteString(explainHeader)
	for _, qu := range queries {
		_, err := conn.Exec(ctx, "PREPARE p AS "+qu.SQL)
		require.NoError(t, err, qu.Name)
		custom, generic := explain("force_custom_plan", qu), explain("force_generic_plan", qu)
		_, err = conn.Exec(ctx, "DEALLOCATE p; RESET plan_cache_mode")
		require.NoError(t, err)
		// A plan either walks the index meant for the query in order and
		// stops at the LIMIT, or, where the planner expects few rows or a
		// narrow ID range, fetches the rows an index condition selects and
		// sorts them. Never a sequential scan, and never an ordered walk of
		// another index that filters as it goes: that reads the whole
		// index when the rows it looks for are rare.
		// A loose scan (a currency filter on a shape the ledger does not
		// send with one: all entries, an authority's, or items only) may
		// be served by any index; those served by another are listed. An
		// INSERT ... ON CONFLICT finds its rows by probing its arbiter
		// index, which its plan names as such; a write by ctid reads no
		// index.
		check := func(what, plan string) {
			t.Helper()
			require.NotContains(t, plan, "Seq Scan", "%s, %s:\n%s", qu.Name, what, plan)
			if qu.loose && !strings.Contains(plan, " using "+strings.Split(qu.Index, "|")[0]+" on ") {
				elsewhere = append(elsewhere, fmt.Sprintf("%s (%s)", qu.Name, what))
				return
			}
			if strings.Contains(plan, "Sort") {
				require.Regexp(t, `(Index|Recheck) Cond`, plan, "%s, %s", qu.Name, what)
				sorted = append(sorted, fmt.Sprintf("%s (%s)", qu.Name, what))
				return
			}
			ok := false
			for _, index := range strings.Split(qu.Index, "|") {
				ok = ok || strings.Contains(plan, " using "+index+" on ") || strings.Contains(plan, "Conflict Arbiter Indexes: "+index) ||
					index == "ctid" && strings.Contains(plan, "Tid Scan on ")
			}
			require.True(t, ok, "%s, %s: not served by %s:\n%s", qu.Name, what, qu.Index, plan)
			if qu.Index == "changes_pkey" {
				require.Contains(t, plan, "Index Cond: (cursor >= ", "%s, %s: a range scan from the cursor", qu.Name, what)
			}
		}
		check("custom plan", custom)
		check("generic plan", generic)
		fmt.Fprintf(&doc, "## %s\n\n", qu.Name)
		if qu.isScan {
			fmt.Fprintf(&doc, "`%#v`\n\n", qu.scan)
		}
		fmt.Fprintf(&doc, "```sql\n%s\n```\n\nArguments: `%s`\n\n```\n%s\n```\n\nGeneric plan:\n\n```\n%s\n```\n\n",
			strings.ReplaceAll(qu.SQL, q+".", ""), literals(qu.Args), custom, generic)
	}
	fmt.Fprintf(&doc, "## Plans that sort\n\nWhere the planner expects few rows to match, or a narrow ID range, it may fetch the rows an index condition selects and sort them instead of walking an index in order. Over this data set it does so for:\n\n")
	for _, s := range sorted {
		fmt.Fprintf(&doc, "- %s\n", s)
	}
	fmt.Fprintf(&doc, "\n## Currency filters served by another index\n\nA currency is an index condition only for a user's entries (alone or with an authority): the scans the ledger sends for a balance as of an instant. Elsewhere it filters, and where the filter makes the planner expect few rows it may serve the scan from another index, walked whole and sorted. The ledger sends none of these shapes yet. Over this data set:\n\n")
	for _, s := range elsewhere {
		fmt.Fprintf(&doc, "- %s\n", s)
	}
	if *updatePlans {
		require.NoError(t, os.WriteFile("EXPLAIN.md", []byte(doc.String()), 0o644))
	}
}

// literals renders arguments as SQL literals for EXECUTE.
func literals(args []any) string {
	var out []string
	for _, a := range args {
		switch v := a.(type) {
		case string:
			out = append(out, "'"+strings.ReplaceAll(v, "'", "''")+"'")
		case []string:
			out = append(out, "ARRAY["+literals(toAny(v))+"]::text[]")
		case []bool:
			var bs []string
			for _, b := range v {
				bs = append(bs, fmt.Sprint(b))
			}
			out = append(out, "ARRAY["+strings.Join(bs, ", ")+"]::boolean[]")
		case []pgtype.TID:
			var tids []string
			for _, tid := range v {
				tids = append(tids, fmt.Sprintf("'(%d,%d)'", tid.BlockNumber, tid.OffsetNumber))
			}
			out = append(out, "ARRAY["+strings.Join(tids, ", ")+"]::tid[]")
		default:
			out = append(out, fmt.Sprint(v))
		}
	}
	return strings.Join(out, ", ")
}

const explainHeader = `# pgstore query plans

Every statement pgstore sends, and the plans PostgreSQL picks for it:
the custom plan for the arguments shown and the generic plan it caches
for a prepared statement. TestQueryPlans (plans_test.go) checks them on
every run, over a ledger of 20,000 entries (200 users, 5 authorities,
half in the default currency and a quarter in each of two others, one
entry in ten with an item, one in four with an idempotency key), 3,600
totals (each user's, over all authorities and per authority, in each
currency), 600 limits (each user's in each currency) and 2,000 holds
(ten per user, in the three currencies, three in four active, four in
five with an expiry) and 20,000 changes, after ANALYZE, with the planner's default settings
(pgstore's own sessions also set enable_seqscan=off). No plan may scan a
table sequentially; each walks the index meant for it in order and stops
at the LIMIT, or, where the planner expects few rows (or a narrow ID
range), fetches the rows that an index condition selects and sorts them
(listed at the end). What no plan may do is walk another index in order
and filter as it goes, which reads the whole index when the rows it
looks for are rare. This file is the test's output:
` + "`go test ./pgstore/ -run TestQueryPlans -update`" + ` rewrites it.

Scans read one page per statement (LIMIT $n: 16 rows, then 64, 256 and
1,024); the next page starts after the last ID read (` + "`id > $n`" + `, or
` + "`id < $n`" + ` in reverse): the same plan with another bound. The ORDER BY
names the columns of the index meant for the scan, and the leading
filter is written ` + "`col = ANY (ARRAY[$n])`" + `: equal in meaning to
` + "`col = $n`" + `, but it keeps the column in the required order, so that
the primary key's ID order does not satisfy it (see scanSQL in sql.go).

A user's entries in one currency (the wallet's history, which a
balance as of an instant seeks into) have their own index,
entries_currency_user (currency, user_id, id); currency leads it and is
the column written ` + "`= ANY (ARRAY[$n])`" + `, because PostgreSQL (up to 16)
takes an index scan with ANY on a later column to be unordered. In every
other shape a currency filters the rows of the shape's own index.

Holds are read the same way: a wallet's holds are a seek into
holds_user (user_id, currency, hold_id), with user_id written
` + "`= ANY (ARRAY[$n])`" + ` so that the primary key cannot serve them by
filtering; all holds, in a currency or not, walk the primary key; and
the expiring holds are a range scan of the partial index holds_expiring
(expires, hold_id), or for a wallet holds_expiring_user (user_id,
currency, expires, hold_id), both WHERE state = 'active' AND expires IS
NOT NULL, the next page starting after a row comparison
` + "`(expires, hold_id) > ($n, $m)`" + ` that is an index condition.

The changes after a cursor are a range scan of the primary key of
changes (` + "`cursor >= $1`" + `, the number after the cursor's), a page
at a time, as scans of entries are.

Writes are an INSERT into entries (of a lone entry, or of a group's
entries, their columns as arrays) or holds (their primary keys and unique idempotency
indexes refuse duplicates); an UPDATE by ctid of the totals a
transaction read and locked (one for a group's, as arrays); the upserts
of other totals (likewise) and of limits through their primary keys
(` + "`ON CONFLICT (authority_id, currency, user_id)`" + ` and
` + "`ON CONFLICT (user_id, currency)`" + `); and SetItemUsed, SetReversed
and CloseHold. The plans of the totals' writes, SetItemUsed, SetReversed
and CloseHold are among those below.

`

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
