package pgstore

import (
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// queries holds the SQL text of every statement a Store sends, built once
// for its schema. pgx prepares each text once per connection and reuses
// it.
type queries struct {
	schema string // quoted

	entry, entryByKey, total, totalsOf, totalAuthorities string
	insert, use, setTotal                                string
	// scans[scanKey] and totals[after != ""]: see scanSQL and totalsSQL.
	scans  [scanKeys]string
	totals [2]string
}

// recordColumns are the columns scanRecord reads, in its order. Numerics
// are read as text: exact, and parsed by decimal.NewFromString.
const recordColumns = `id, authority_id, user_id, created_on, amount::text, reason, item_name, item_used, item_data, balance::text, authority_balance::text, idempotency_key, item_used_on, item_used_by, use_idempotency_key`

func newQueries(schema string) *queries {
	s := pgx.Identifier{schema}.Sanitize()
	q := &queries{schema: s}
	q.entry = `SELECT ` + recordColumns + ` FROM ` + s + `.entries WHERE id = $1`
	q.entryByKey = `SELECT ` + recordColumns + ` FROM ` + s + `.entries WHERE authority_id = $1 AND idempotency_key = $2`
	q.total = `SELECT total::text, last_entry FROM ` + s + `.totals WHERE authority_id = $1 AND user_id = $2`
	// Many totals in one statement: an index lookup per key (a lateral
	// subquery with a LIMIT, which the planner cannot turn into a join
	// that scans the table); NULLs where a key has no total.
	q.totalsOf = `SELECT k.a, k.u, t.total::text, t.last_entry FROM unnest($1::text[], $2::text[]) AS k(a, u)
LEFT JOIN LATERAL (SELECT total, last_entry FROM ` + s + `.totals
WHERE authority_id = k.a COLLATE "C" AND user_id = k.u COLLATE "C" LIMIT 1) t ON true`
	// A recursive skip over the primary key's leading column: one index
	// probe per authority, however many totals each has.
	q.totalAuthorities = `WITH RECURSIVE a(id) AS (
(SELECT authority_id FROM ` + s + `.totals ORDER BY authority_id LIMIT 1)
UNION ALL
SELECT (SELECT authority_id FROM ` + s + `.totals WHERE authority_id > a.id ORDER BY authority_id LIMIT 1) FROM a WHERE a.id IS NOT NULL)
SELECT id FROM a WHERE id IS NOT NULL`
	q.insert = `INSERT INTO ` + s + `.entries (id, authority_id, user_id, created_on, amount, reason, item_name, item_used, item_data, balance, authority_balance, idempotency_key, item_used_on, item_used_by, use_idempotency_key)
VALUES ($1, $2, $3, $4, $5::numeric, $6, $7, $8, $9, $10::numeric, $11::numeric, $12, $13, $14, $15)`
	// One statement says whether the entry exists and has an item, so that
	// it can travel in a batch: used is true when the item was marked,
	// found when the entry exists.
	q.use = `WITH u AS (UPDATE ` + s + `.entries SET item_used = true, item_used_on = $2, item_used_by = $3, use_idempotency_key = $4
WHERE id = $1 AND item_name IS NOT NULL RETURNING 1)
SELECT EXISTS (SELECT FROM u), EXISTS (SELECT FROM ` + s + `.entries WHERE id = $1)`
	q.setTotal = `INSERT INTO ` + s + `.totals (authority_id, user_id, total, last_entry) VALUES ($1, $2, $3::numeric, $4)
ON CONFLICT (authority_id, user_id) DO UPDATE SET total = EXCLUDED.total, last_entry = EXCLUDED.last_entry`
	for k := range scanKey(scanKeys) {
		q.scans[k] = scanSQL(s, k)
	}
	q.totals[0] = totalsSQL(s, ">=")
	q.totals[1] = totalsSQL(s, ">")
	return q
}

// scanKey names the shape of one page of [ledger.ReadTx.Entries]: which
// filters are set, how the page is bounded and its direction.
type scanKey uint8

const (
	scanUser scanKey = 1 << iota
	scanAuthority
	scanItems
	scanStart // id >= $n
	scanAfter // id > $n (the next page of an ascending scan)
	scanEnd   // id < $n
	scanReverse
	scanKeys = 1 << iota
)

// scanSQL returns the query for one page of a scan. Its parameters are,
// in order and each only when the key has it: authority, user, start or
// after, end, and last the page size. Each shape has its index:
//
//	user and authority  entries_authority_user (authority_id, user_id, id)
//	user                entries_user or, with items only, entries_items_user
//	authority           entries_authority or entries_items_authority
//	neither             entries_pkey (id) or entries_items
//
// The ORDER BY names the index's columns, and the leading filter is
// written col = ANY (ARRAY[$n]) rather than col = $n. The two mean the
// same, but with a plain equality the planner drops the column from the
// required order, and may then prefer to walk the primary key in ID order
// and filter: a plan that reads most of the table when the authority's
// or user's entries are rare, or all at the far end. Written this way,
// only the index meant for the scan delivers the order.
func scanSQL(schema string, k scanKey) string {
	n := 0
	param := func() string { n++; return "$" + strconv.Itoa(n) }
	var where, order []string
	if k&scanAuthority != 0 {
		where = append(where, `authority_id = ANY (ARRAY[`+param()+`::text])`)
		order = append(order, "authority_id")
	}
	if k&scanUser != 0 {
		if k&scanAuthority != 0 {
			where = append(where, `user_id = `+param())
		} else {
			where = append(where, `user_id = ANY (ARRAY[`+param()+`::text])`)
		}
		order = append(order, "user_id")
	}
	if k&scanItems != 0 {
		where = append(where, `item_name IS NOT NULL`)
	}
	switch {
	case k&scanAfter != 0:
		where = append(where, `id > `+param())
	case k&scanStart != 0:
		where = append(where, `id >= `+param())
	}
	if k&scanEnd != 0 {
		where = append(where, `id < `+param())
	}
	order = append(order, "id")
	if k&scanReverse != 0 {
		for i := range order {
			order[i] += " DESC"
		}
	}
	var b strings.Builder
	b.WriteString(`SELECT ` + recordColumns + ` FROM ` + schema + `.entries`)
	if len(where) > 0 {
		b.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	b.WriteString(` ORDER BY ` + strings.Join(order, ", ") + ` LIMIT ` + param())
	return b.String()
}

// totalsSQL returns the query for one page of [ledger.ReadTx.Totals],
// served by the primary key of totals: authority, user bound, page size.
func totalsSQL(schema, op string) string {
	return `SELECT user_id, total::text, last_entry FROM ` + schema + `.totals WHERE authority_id = $1 AND user_id ` + op +
		` $2 ORDER BY authority_id, user_id LIMIT $3`
}
