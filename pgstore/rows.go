package pgstore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Multi-row writes. A run of buffered entry inserts, and the totals'
// writes, each travel as one statement whose parameters are arrays, a
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
// queries.insertEntries, in its order.
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
	return []any{ids, auths, users, createdOn, amounts, reasons, itemNames, itemUsed, itemData,
		balances, authBalances, keys, usedOn, usedBy, useKeys,
		currencies, metadata, transfers, reverses, reversedBy, revoked, holdIDs}
}

// totalRow is a total's value columns, in their stored forms; its key
// is the write's a, c and u.
type totalRow struct{ value, last, held string }

// queueRows adds to b the statement that writes ws, a run of writes of
// one kind (entry inserts, or totals with distinct keys), and returns
// the reader of its result. Must hold t.mu.
func (t *tx) queueRows(b *pgx.Batch, ws []write) reader {
	n := len(ws)
	if ws[0].kind == writeInsert {
		rows := make([]*entryRow, n)
		for i, w := range ws {
			rows[i] = w.entry
		}
		b.Queue(t.s.q.insertEntries, entryArrays(rows)...)
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
	var a, c, u, values, lasts, helds = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, w := range ws {
		a[i], c[i], u[i] = w.a, w.c, w.u
		values[i], lasts[i], helds[i] = w.total.value, w.total.last, w.total.held
	}
	b.Queue(t.s.q.setTotals, a, c, u, values, lasts, helds)
	w := ws[0]
	return func(br pgx.BatchResults) error {
		ct, err := br.Exec()
		if err == nil && ct.RowsAffected() != int64(n) {
			err = fmt.Errorf("%d written", ct.RowsAffected())
		}
		switch {
		case err == nil:
			return nil
		case n == 1:
			return fmt.Errorf("pgstore: write total of user %q in currency %q for authority %q: %w", w.u, w.c, w.a, err)
		}
		return fmt.Errorf("pgstore: write %d totals: %s%w", n, detail(err), err)
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
