package pgstore

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Multi-row writes. A run of buffered entry inserts, and the buffered
// totals, each travel as one statement whose parameters are arrays, a
// column each, which the statement unnests into rows in array order:
// one statement's overhead on the server (bind, executor start, the
// per-statement part of the trigger and index machinery) and one
// message on the wire per group commit, instead of one per row. The
// statement text does not depend on the number of rows, so each is
// prepared once per connection, as every other statement is.

// entryRow is an entry as the columns of entries, in their stored
// forms; nil stands for NULL.
type entryRow struct {
	id, authority, user       string
	createdOn                 int64
	amount, reason            string
	itemName                  *string
	itemUsed                  *bool
	itemData                  []byte // nil: NULL; empty: empty data
	balance, authorityBalance string
	key                       *string
	usedOn                    *int64
	usedBy, useKey            *string
	currency                  string
	metadata                  *string
	transfer, reverses        *string
	reversedBy                *string
	revoked                   *bool
	holdID                    *string
}

// entryArrays returns rows as the 22 array parameters of
// queries.insertEntries, in its order. Slices of pointers travel as
// pgtype.FlatArray, which pgx encodes without reflection.
func entryArrays(rows []*entryRow) []any {
	n := len(rows)
	var (
		ids, auths, users, amounts, reasons = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		balances, authBalances, currencies  = make([]string, n), make([]string, n), make([]string, n)
		createdOn                           = make([]int64, n)
		itemNames, keys, usedBy, useKeys    = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		metadata, transfers, reverses       = make([]*string, n), make([]*string, n), make([]*string, n)
		reversedBy, holdIDs                 = make([]*string, n), make([]*string, n)
		itemUsed, revoked                   = make([]*bool, n), make([]*bool, n)
		itemData                            = make([][]byte, n)
		usedOn                              = make([]*int64, n)
	)
	for i, r := range rows {
		ids[i], auths[i], users[i], createdOn[i] = r.id, r.authority, r.user, r.createdOn
		amounts[i], reasons[i], itemNames[i], itemUsed[i], itemData[i] = r.amount, r.reason, r.itemName, r.itemUsed, r.itemData
		balances[i], authBalances[i], keys[i] = r.balance, r.authorityBalance, r.key
		usedOn[i], usedBy[i], useKeys[i] = r.usedOn, r.usedBy, r.useKey
		currencies[i], metadata[i], transfers[i], reverses[i], reversedBy[i], revoked[i] = r.currency, r.metadata, r.transfer, r.reverses, r.reversedBy, r.revoked
		holdIDs[i] = r.holdID
	}
	type texts = pgtype.FlatArray[*string]
	return []any{ids, auths, users, createdOn, amounts, reasons, texts(itemNames), pgtype.FlatArray[*bool](itemUsed), pgtype.FlatArray[[]byte](itemData),
		balances, authBalances, texts(keys), pgtype.FlatArray[*int64](usedOn), texts(usedBy), texts(useKeys),
		currencies, texts(metadata), texts(transfers), texts(reverses), texts(reversedBy), pgtype.FlatArray[*bool](revoked), texts(holdIDs)}
}

// totalRow is a total's columns but its key, in their stored forms.
type totalRow struct{ value, last, held string }

// entryArgs returns r as the 22 parameters of queries.insertEntry.
func entryArgs(r *entryRow) []any {
	return []any{r.id, r.authority, r.user, r.createdOn, r.amount, r.reason, r.itemName, r.itemUsed, r.itemData,
		r.balance, r.authorityBalance, r.key, r.usedOn, r.usedBy, r.useKey,
		r.currency, r.metadata, r.transfer, r.reverses, r.reversedBy, r.revoked, r.holdID}
}

// queueEntries adds to b the statement that inserts the entries of ws,
// a run of entry inserts, and returns the reader of its result: a
// lone entry by a single-row INSERT, which costs the client less than
// 22 arrays of one. Must hold t.mu.
func (t *tx) queueEntries(b *pgx.Batch, ws []write) reader {
	n := len(ws)
	if n == 1 {
		b.Queue(t.s.q.insertEntry, entryArgs(ws[0].entry)...)
	} else {
		rows := make([]*entryRow, n)
		for i, w := range ws {
			rows[i] = w.entry
		}
		b.Queue(t.s.q.insertEntries, entryArrays(rows)...)
	}
	first, last := ws[0].id, ws[n-1].id
	return func(br pgx.BatchResults) error {
		ct, err := br.Exec()
		if err == nil && ct.RowsAffected() != int64(n) {
			err = fmt.Errorf("%d inserted", ct.RowsAffected())
		}
		switch {
		case err == nil:
			return nil
		case n == 1:
			return fmt.Errorf("pgstore: insert entry %s: %w", first, err)
		}
		return fmt.Errorf("pgstore: insert %d entries, %s to %s: %s%w", n, first, last, detail(err), err)
	}
}

// queueTotals adds to b the statements that write the buffered totals,
// in key order, and returns the readers of their results: one UPDATE of
// those the update read since it last wrote them, where it read them,
// and one upsert of the others (see queries.setTotalsAt and setTotals).
// Must hold t.mu.
func (t *tx) queueTotals(b *pgx.Batch) []reader {
	keys := slices.SortedFunc(maps.Keys(t.totals), storedKey.compare)
	var at, by []storedKey
	for _, k := range keys {
		if _, ok := t.at[k]; ok {
			at = append(at, k)
		} else {
			by = append(by, k)
		}
	}
	var rs []reader
	if n := len(at); n > 0 {
		tids := make([]pgtype.TID, n)
		cols := make([]string, 3*n) // one allocation for the three columns
		values, lasts, helds := cols[:n:n], cols[n:2*n:2*n], cols[2*n:]
		for i, k := range at {
			r := t.totals[k]
			tids[i], values[i], lasts[i], helds[i] = t.at[k], r.value, r.last, r.held
			delete(t.at, k) // written: a new version, elsewhere
		}
		b.Queue(t.s.q.setTotalsAt, tids, values, lasts, helds)
		rs = append(rs, totalsReader(at, " where they were read"))
	}
	if n := len(by); n > 0 {
		cols := make([]string, 6*n) // one allocation for the six columns
		a, c, u, values, lasts, helds := cols[:n:n], cols[n:2*n:2*n], cols[2*n:3*n:3*n], cols[3*n:4*n:4*n], cols[4*n:5*n:5*n], cols[5*n:]
		for i, k := range by {
			r := t.totals[k]
			a[i], c[i], u[i], values[i], lasts[i], helds[i] = k.a, k.c, k.u, r.value, r.last, r.held
		}
		b.Queue(t.s.q.setTotals, a, c, u, values, lasts, helds)
		rs = append(rs, totalsReader(by, ""))
	}
	return rs
}

// totalsReader returns the reader of a statement that writes the totals
// of keys; how says how, for errors.
func totalsReader(keys []storedKey, how string) reader {
	n := len(keys)
	return func(br pgx.BatchResults) error {
		ct, err := br.Exec()
		if err == nil && ct.RowsAffected() != int64(n) {
			err = fmt.Errorf("%d written", ct.RowsAffected())
		}
		switch {
		case err == nil:
			return nil
		case n == 1:
			k := keys[0]
			return fmt.Errorf("pgstore: write total of user %q in currency %q for authority %q%s: %w", k.u, k.c, k.a, how, err)
		}
		return fmt.Errorf("pgstore: write %d totals%s: %s%w", n, how, detail(err), err)
	}
}

// detail returns the detail of a server error, which names the row at
// fault in a statement that writes many (a duplicate's key, say),
// followed by ": ", or "" if it has none.
func detail(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Detail != "" {
		return strings.TrimSuffix(pe.Detail, ".") + ": "
	}
	return ""
}
