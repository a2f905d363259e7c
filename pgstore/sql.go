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

	entry, entryByKey, total, totalsOf, totalGroups string
	limits                                          string
	insertEntry, insertEntries, use, reverse        string
	setTotals, setLimits                            string
	setTotalsAt                                     string
	// ensureTotals, lockTotals and dropTotals lock the totals an update
	// reads, and delete those it locked but never wrote (see
	// tx.queueLocks).
	ensureTotals, lockTotals, dropTotals   string
	lockTotalsValues                       string
	hold, holdByKey, insertHold, closeHold string
	// holdScans[holdScanKey]: one page of Holds, after an ID.
	// expiring[wallet][next]: one page of ExpiringHolds, overall (0) or
	// of a wallet (1), the first page (0) or the next (1).
	holdScans [holdScanKeys]string
	expiring  [2][2]string
	// scans[scanKey], and for the paged reads [0] for the first page and
	// [1] for the next: see scanSQL, totalsSQL and the others below.
	scans                          [scanKeys]string
	totals, userTotals, userLimits [2]string
	allLimits                      [2]string
	// changes reads a page of changes from a cursor on; lockChanges and
	// appendChanges end a transaction that appended changes (see
	// tx.commit).
	changes, lockChanges, appendChanges string
}

// recordColumns are the columns scanRecord reads, in its order. Numerics
// are read as text: exact, and parsed by decimal.NewFromString.
const recordColumns = `id, authority_id, user_id, created_on, amount::text, reason, item_name, item_used, item_data, balance::text, authority_balance::text, idempotency_key, item_used_on, item_used_by, use_idempotency_key, currency, metadata::text, transfer_id, reverses, reversed_by, item_revoked, hold_id`

// holdColumns are the columns scanHold reads, in its order.
const holdColumns = `hold_id, authority_id, user_id, currency, amount::text, reason, metadata::text, created_on, expires, state, closed_on, entry_id, idempotency_key`

// limitsColumns are the columns scanLimits reads, in its order.
const limitsColumns = `user_id, currency, floor::text, cap::text, set_by, set_on`

// changeColumns are the columns scanChange reads, in its order.
const changeColumns = `cursor, kind, at, authority_id, ref, limits_user_id, limits_currency, limits_floor::text, limits_cap::text`

func newQueries(schema string) *queries {
	s := pgx.Identifier{schema}.Sanitize()
	q := &queries{schema: s}
	q.entry = `SELECT ` + recordColumns + ` FROM ` + s + `.entries WHERE id = $1`
	q.entryByKey = `SELECT ` + recordColumns + ` FROM ` + s + `.entries WHERE authority_id = $1 AND idempotency_key = $2`
	// Reads of totals also return the row's ctid, which an update that
	// locked the row writes it by (see setTotalsAt).
	q.total = `SELECT total::text, last_entry, held::text, ctid FROM ` + s + `.totals WHERE authority_id = $1 AND currency = $2 AND user_id = $3`
	// Many totals in one statement: an index lookup per key (a lateral
	// subquery with a LIMIT, which the planner cannot turn into a join
	// that scans the table); NULLs where a key has no total.
	// With each wallet's total over all authorities (authority ''), the
	// wallet's limits, in the same round trip: the ledger checks a
	// deposit against its cap, and TotalsOf caches them for Limits.
	// Each row names its key by its place in the arrays. A key whose n
	// is false is read for its limits only: the lock in front of the
	// read returned its total (see tx.queueLocks).
	q.totalsOf = `SELECT k.o, t.total::text, t.last_entry, t.held::text, t.ctid, l.user_id IS NOT NULL, l.floor::text, l.cap::text, l.set_by, l.set_on
FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[]) WITH ORDINALITY AS k(a, c, u, n, o)
LEFT JOIN LATERAL (SELECT total, last_entry, held, ctid FROM ` + s + `.totals
WHERE k.n AND authority_id = k.a COLLATE "C" AND currency = k.c COLLATE "C" AND user_id = k.u COLLATE "C" LIMIT 1) t ON true
LEFT JOIN LATERAL (SELECT user_id, floor, cap, set_by, set_on FROM ` + s + `.limits
WHERE k.a = '' AND user_id = k.u COLLATE "C" AND currency = k.c COLLATE "C" LIMIT 1) l ON true`
	// A recursive skip over the primary key's two leading columns: one
	// index probe per (authority, currency), however many totals each
	// has. The row comparison is an index condition.
	q.totalGroups = `WITH RECURSIVE g(a, c) AS (
(SELECT authority_id, currency FROM ` + s + `.totals ORDER BY authority_id, currency LIMIT 1)
UNION ALL
SELECT n.a, n.c FROM g, LATERAL (SELECT authority_id, currency FROM ` + s + `.totals
WHERE (authority_id, currency) > (g.a, g.c) ORDER BY authority_id, currency LIMIT 1) AS n(a, c))
SELECT a, c FROM g`
	q.limits = `SELECT ` + limitsColumns + ` FROM ` + s + `.limits WHERE user_id = $1 AND currency = $2`
	// One entry, and an entry per element of the arrays, inserted in
	// their order (see rows.go); numerics and metadata travel as text,
	// as elsewhere.
	q.insertEntry = `INSERT INTO ` + s + `.entries (id, authority_id, user_id, created_on, amount, reason, item_name, item_used, item_data, balance, authority_balance, idempotency_key, item_used_on, item_used_by, use_idempotency_key,
currency, metadata, transfer_id, reverses, reversed_by, item_revoked, hold_id)
VALUES ($1, $2, $3, $4, $5::numeric, $6, $7, $8, $9, $10::numeric, $11::numeric, $12, $13, $14, $15, $16, $17::jsonb, $18, $19, $20, $21, $22)`
	q.insertEntries = `INSERT INTO ` + s + `.entries (id, authority_id, user_id, created_on, amount, reason, item_name, item_used, item_data, balance, authority_balance, idempotency_key, item_used_on, item_used_by, use_idempotency_key,
currency, metadata, transfer_id, reverses, reversed_by, item_revoked, hold_id)
SELECT id, authority_id, user_id, created_on, amount::numeric, reason, item_name, item_used, item_data, balance::numeric, authority_balance::numeric, idempotency_key, item_used_on, item_used_by, use_idempotency_key,
currency, metadata::jsonb, transfer_id, reverses, reversed_by, item_revoked, hold_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::boolean[], $9::bytea[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::text[], $15::text[],
$16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::boolean[], $22::text[])
AS r(id, authority_id, user_id, created_on, amount, reason, item_name, item_used, item_data, balance, authority_balance, idempotency_key, item_used_on, item_used_by, use_idempotency_key,
currency, metadata, transfer_id, reverses, reversed_by, item_revoked, hold_id)`
	// One statement says whether the entry exists and has an item, so that
	// it can travel in a batch: marked is true when the item was marked,
	// found when the entry exists, item when it has an item. The mark is
	// conditional on what the ledger read: an item neither used nor
	// revoked. An entry found with an item but not marked was used or
	// revoked by a transaction that committed since the ledger read it
	// (an update reads without locking entries; see the package
	// documentation): a conflict, which Update retries. The EXISTS read
	// the statement's snapshot, from before the update.
	q.use = `WITH u AS (UPDATE ` + s + `.entries SET item_used = true, item_used_on = $2, item_used_by = $3, use_idempotency_key = $4
WHERE id = $1 AND item_used IS FALSE AND item_revoked IS NOT TRUE RETURNING 1)
SELECT EXISTS (SELECT FROM u), EXISTS (SELECT FROM ` + s + `.entries WHERE id = $1), EXISTS (SELECT FROM ` + s + `.entries WHERE id = $1 AND item_name IS NOT NULL)`
	// A reversal fails by its result, as a use does: found false means
	// no such entry, marked false with found a conflict: the entry was
	// reversed, or its item (to be revoked) used, since it was read. The
	// item is revoked only where there is one.
	q.reverse = `WITH r AS (UPDATE ` + s + `.entries SET reversed_by = $2,
item_revoked = CASE WHEN $3::boolean AND item_name IS NOT NULL THEN true ELSE item_revoked END
WHERE id = $1 AND reversed_by IS NULL AND (NOT $3::boolean OR item_used IS NOT TRUE) RETURNING 1)
SELECT EXISTS (SELECT FROM r), EXISTS (SELECT FROM ` + s + `.entries WHERE id = $1)`
	// A total per element of the arrays, which hold distinct keys (an
	// upsert cannot change a row twice), written in their order: the
	// order of the keys, as tx.queueTotals sorts them.
	q.setTotals = `INSERT INTO ` + s + `.totals (authority_id, currency, user_id, total, last_entry, held)
SELECT a, c, u, v::numeric, l, h::numeric FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS k(a, c, u, v, l, h)
ON CONFLICT (authority_id, currency, user_id) DO UPDATE SET total = EXCLUDED.total, last_entry = EXCLUDED.last_entry, held = EXCLUDED.held`
	// The totals an update locked and read, and has not written since,
	// are written where it read them: a TID scan per row, by the ctid
	// the read returned, instead of an upsert's probe of the primary key
	// and its conflict check. The row cannot have moved: it is the
	// latest version (the read's snapshot was taken after the lock was
	// granted), no other transaction can update or delete it while this
	// one holds the lock, and a live tuple keeps its ctid (pruning and
	// VACUUM move no live tuple; VACUUM FULL and CLUSTER wait for the
	// transaction). tx.queueTotals checks that every row was written.
	q.setTotalsAt = `UPDATE ` + s + `.totals t SET total = k.v::numeric, last_entry = k.l, held = k.h::numeric
FROM unnest($1::tid[], $2::text[], $3::text[], $4::text[]) AS k(tid, v, l, h) WHERE t.ctid = k.tid`
	// The totals an update reads are locked in the order of the arrays,
	// which tx.queueLocks sorts: first a row is made for each that has
	// none (a placeholder, with an empty last_entry, which only this
	// transaction sees; RETURNING names them), then each row is locked,
	// one after the other: a lateral subquery with FOR UPDATE per key,
	// which the planner cannot flatten or reorder.
	//
	// The NOT EXISTS skips, for the price of an index probe, the keys
	// that have a committed row, most of them, which an INSERT's conflict
	// check costs several times more; a key it does not see may still be
	// there, inserted by a transaction in flight, and the INSERT waits
	// for that one's outcome.
	q.ensureTotals = `INSERT INTO ` + s + `.totals (authority_id, currency, user_id, total, last_entry, held)
SELECT k.a, k.c, k.u, 0, '', 0 FROM unnest($1::text[], $2::text[], $3::text[]) AS k(a, c, u)
WHERE NOT EXISTS (SELECT FROM ` + s + `.totals t WHERE t.authority_id = k.a COLLATE "C" AND t.currency = k.c COLLATE "C" AND t.user_id = k.u COLLATE "C")
ON CONFLICT (authority_id, currency, user_id) DO NOTHING RETURNING authority_id, currency, user_id`
	q.lockTotals = `SELECT count(*) FROM unnest($1::text[], $2::text[], $3::text[]) AS k(a, c, u)
CROSS JOIN LATERAL (SELECT FROM ` + s + `.totals
WHERE authority_id = k.a COLLATE "C" AND currency = k.c COLLATE "C" AND user_id = k.u COLLATE "C" FOR UPDATE) t`
	// The same lock, returning what it locked, with the row's ctid: under
	// READ COMMITTED a row that another transaction updated while this
	// one waited for its lock is locked and returned in the version that
	// one committed (EvalPlanQual), so the lock reads what the read after
	// it would.
	q.lockTotalsValues = `SELECT k.o, t.total::text, t.last_entry, t.held::text, t.ctid
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(a, c, u, o)
CROSS JOIN LATERAL (SELECT total, last_entry, held, ctid FROM ` + s + `.totals
WHERE authority_id = k.a COLLATE "C" AND currency = k.c COLLATE "C" AND user_id = k.u COLLATE "C" FOR UPDATE) t`
	q.dropTotals = `DELETE FROM ` + s + `.totals t USING unnest($1::text[], $2::text[], $3::text[]) AS k(a, c, u)
WHERE t.authority_id = k.a COLLATE "C" AND t.currency = k.c COLLATE "C" AND t.user_id = k.u COLLATE "C"`
	q.setLimits = `INSERT INTO ` + s + `.limits (user_id, currency, floor, cap, set_by, set_on) VALUES ($1, $2, $3::numeric, $4::numeric, $5, $6)
ON CONFLICT (user_id, currency) DO UPDATE SET floor = EXCLUDED.floor, cap = EXCLUDED.cap, set_by = EXCLUDED.set_by, set_on = EXCLUDED.set_on`
	for k := range scanKey(scanKeys) {
		q.scans[k] = scanSQL(s, k)
	}
	q.changes = `SELECT ` + changeColumns + ` FROM ` + s + `.changes WHERE cursor >= $1 ORDER BY cursor LIMIT $2`
	q.lockChanges = `SELECT pg_advisory_xact_lock($1)`
	// The changes' numbers are taken in one statement: the CTE runs once
	// (MATERIALIZED), taking a number per change, and row_number matches
	// the smallest to the first change appended and so on, whatever order
	// nextval ran in. The count is the length of an array parameter,
	// whose row estimate is the same in every plan, so that PostgreSQL
	// settles on the generic plan and does not plan the statement again
	// at each commit, as it did for generate_series(1, n).
	q.appendChanges = `WITH n AS MATERIALIZED (SELECT nextval('` + s + `.changes_cursor') AS cursor FROM unnest($1::text[])),
o AS (SELECT cursor, row_number() OVER (ORDER BY cursor) AS ord FROM n)
INSERT INTO ` + s + `.changes (cursor, kind, at, authority_id, ref, limits_user_id, limits_currency, limits_floor, limits_cap)
SELECT o.cursor, c.kind, c.at, c.authority_id, c.ref, c.lu, c.lc, c.lf::numeric, c.lcap::numeric
FROM o JOIN unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
WITH ORDINALITY AS c(kind, at, authority_id, ref, lu, lc, lf, lcap, ord) ON c.ord = o.ord`
	q.hold = `SELECT ` + holdColumns + ` FROM ` + s + `.holds WHERE hold_id = $1`
	q.holdByKey = `SELECT ` + holdColumns + ` FROM ` + s + `.holds WHERE authority_id = $1 AND idempotency_key = $2`
	q.insertHold = `INSERT INTO ` + s + `.holds (hold_id, authority_id, user_id, currency, amount, reason, metadata, created_on, expires, state, closed_on, entry_id, idempotency_key)
VALUES ($1, $2, $3, $4, $5::numeric, $6, $7::jsonb, $8, $9, $10, $11, $12, $13)`
	// A close fails by its result, as a reversal does: found false means
	// no such hold, closed false with found a conflict: the hold was
	// closed since it was read.
	q.closeHold = `WITH c AS (UPDATE ` + s + `.holds SET state = $2, closed_on = $3, entry_id = $4 WHERE hold_id = $1 AND state = 'active' RETURNING 1)
SELECT EXISTS (SELECT FROM c), EXISTS (SELECT FROM ` + s + `.holds WHERE hold_id = $1)`
	for k := range holdScanKey(holdScanKeys) {
		q.holdScans[k] = holdScanSQL(s, k)
	}
	for wallet := range 2 {
		for next := range 2 {
			q.expiring[wallet][next] = expiringSQL(s, wallet == 1, next == 1)
		}
	}
	for i, op := range [2]string{">=", ">"} {
		q.totals[i] = totalsSQL(s, op)
		// A user's totals over all authorities, by currency, through the
		// partial index totals_user. user_id = ANY (...) keeps user_id in
		// the required order (see scanSQL), so that the primary key, in
		// currency order once authority_id = '' fixes its first column,
		// cannot serve it by filtering on the user.
		q.userTotals[i] = `SELECT currency, total::text, last_entry, held::text FROM ` + s + `.totals WHERE authority_id = '' AND user_id = ANY (ARRAY[$1::text]) AND currency ` + op +
			` $2 ORDER BY user_id, currency LIMIT $3`
		q.userLimits[i] = `SELECT ` + limitsColumns + ` FROM ` + s + `.limits WHERE user_id = $1 AND currency ` + op + ` $2 ORDER BY user_id, currency LIMIT $3`
		q.allLimits[i] = `SELECT ` + limitsColumns + ` FROM ` + s + `.limits WHERE (user_id, currency) ` + op + ` ($1, $2) ORDER BY user_id, currency LIMIT $3`
	}
	return q
}

// scanKey names the shape of one page of [ledger.ReadTx.Entries]: which
// filters are set, how the page is bounded and its direction.
type scanKey uint16

const (
	scanUser scanKey = 1 << iota
	scanAuthority
	scanItems
	scanCurrency
	scanStart // id >= $n
	scanAfter // id > $n (the next page of an ascending scan)
	scanEnd   // id < $n
	scanReverse
	scanKeys = 1 << iota
)

// scanSQL returns the query for one page of a scan. Its parameters are,
// in order and each only when the key has it: authority, user, currency,
// start or after, end, and last the page size. Each shape has its index:
//
//	user and authority  entries_authority_user (authority_id, user_id, id)
//	user in a currency  entries_currency_user (currency, user_id, id)
//	user                entries_user or, with items only, entries_items_user
//	authority           entries_authority or entries_items_authority
//	neither             entries_pkey (id) or entries_items
//
// A currency is an index condition only for a user's entries (with no
// authority and not items only): the wallet's history, which the
// ledger's balance as of an instant seeks into. In every other shape it
// filters the rows of the shape's index, as the Store contract allows.
//
// The ORDER BY names the index's columns, and the leading filter is
// written col = ANY (ARRAY[$n]) rather than col = $n. The two mean the
// same, but with a plain equality the planner drops the column from the
// required order, and may then prefer to walk the primary key in ID order
// and filter: a plan that reads most of the table when the authority's
// or user's entries are rare, or all at the far end. Written this way,
// only the index meant for the scan delivers the order. For a user's
// entries in a currency, currency leads the index and is the column so
// written: a second column compared with ANY would make PostgreSQL (up
// to 16) treat the index scan as unordered.
func scanSQL(schema string, k scanKey) string {
	n := 0
	param := func() string { n++; return "$" + strconv.Itoa(n) }
	var where, order []string
	walletSeek := k&(scanUser|scanCurrency|scanAuthority|scanItems) == scanUser|scanCurrency
	if k&scanAuthority != 0 {
		where = append(where, `authority_id = ANY (ARRAY[`+param()+`::text])`)
		order = append(order, "authority_id")
	}
	if k&scanUser != 0 {
		if k&scanAuthority != 0 || walletSeek {
			where = append(where, `user_id = `+param())
		} else {
			where = append(where, `user_id = ANY (ARRAY[`+param()+`::text])`)
		}
		order = append(order, "user_id")
	}
	if k&scanCurrency != 0 {
		if walletSeek {
			where = append(where, `currency = ANY (ARRAY[`+param()+`::text])`)
			order = append([]string{"currency"}, order...)
		} else {
			where = append(where, `currency = `+param())
		}
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
// served by the primary key of totals: authority, currency, user bound,
// page size. authority_id = ANY (...) keeps authority_id in the required
// order (see scanSQL), so that totals_user, in user order, cannot serve
// the authority "" by filtering on the currency.
func totalsSQL(schema, op string) string {
	return `SELECT user_id, total::text, last_entry, held::text FROM ` + schema + `.totals WHERE authority_id = ANY (ARRAY[$1::text]) AND currency = $2 AND user_id ` + op +
		` $3 ORDER BY authority_id, currency, user_id LIMIT $4`
}

// holdScanKey names the shape of one page of [ledger.ReadTx.Holds]:
// whether a user, a currency, or both are set.
type holdScanKey uint8

const (
	holdScanUser holdScanKey = 1 << iota
	holdScanCurrency
	holdScanKeys = 1 << iota
)

// holdScanSQL returns the query for one page of a hold scan. Its
// parameters are, in order and each only when the key has it: user,
// currency; then the ID the page starts after ("" for the first page:
// every ID sorts after it) and the page size. The shapes:
//
//	a wallet (user and currency)  holds_user (user_id, currency, hold_id): a seek
//	a user in any currency        holds_user, the user's holds sorted by ID
//	a currency, or neither        holds_pkey (hold_id), filtered by currency
//
// As in scanSQL, the user is compared with ANY (...) so that it stays in
// the required order and the primary key cannot serve a wallet's scan by
// filtering. A user's holds in every currency are not in ID order in
// holds_user, so that shape reads all of them after the bound and sorts
// them, page by page; the ledger asks for a wallet's holds, one
// currency at a time.
func holdScanSQL(schema string, k holdScanKey) string {
	n := 0
	param := func() string { n++; return "$" + strconv.Itoa(n) }
	var where, order []string
	if k&holdScanUser != 0 {
		where = append(where, `user_id = ANY (ARRAY[`+param()+`::text])`)
		order = append(order, "user_id")
	}
	if k&holdScanCurrency != 0 {
		where = append(where, `currency = `+param())
		if k&holdScanUser != 0 {
			order = append(order, "currency")
		}
	}
	where = append(where, `hold_id > `+param())
	order = append(order, "hold_id")
	return `SELECT ` + holdColumns + ` FROM ` + schema + `.holds WHERE ` + strings.Join(where, ` AND `) +
		` ORDER BY ` + strings.Join(order, ", ") + ` LIMIT ` + param()
}

// expiringSQL returns the query for one page of
// [ledger.ReadTx.ExpiringHolds]: a range scan of the partial index
// holds_expiring (expires, hold_id), or for a wallet of
// holds_expiring_user (user_id, currency, expires, hold_id), whose
// predicate the WHERE repeats. Its parameters are, in order: for a
// wallet the user and the currency; the instant until (Unix
// nanoseconds); for the next page the (expires, hold_id) the page starts
// after, a row comparison that is an index condition; and the page size.
// The user is compared with ANY (...), as in scanSQL, so that
// holds_expiring, in (expires, hold_id) order too once user and currency
// are fixed, cannot serve a wallet's scan by filtering.
func expiringSQL(schema string, wallet, next bool) string {
	n := 0
	param := func() string { n++; return "$" + strconv.Itoa(n) }
	where := []string{`state = 'active'`, `expires IS NOT NULL`}
	var order []string
	if wallet {
		where = append(where, `user_id = ANY (ARRAY[`+param()+`::text])`, `currency = `+param())
		order = append(order, "user_id", "currency")
	}
	where = append(where, `expires <= `+param())
	if next {
		where = append(where, `(expires, hold_id) > (`+param()+`, `+param()+`)`)
	}
	order = append(order, "expires", "hold_id")
	return `SELECT ` + holdColumns + ` FROM ` + schema + `.holds WHERE ` + strings.Join(where, ` AND `) +
		` ORDER BY ` + strings.Join(order, ", ") + ` LIMIT ` + param()
}
