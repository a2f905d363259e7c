package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/walletledger/ledger"
)

// migrations are the schema's versions, in order: migrations[i] takes a
// schema from version i to version i+1. Append only; never edit one that
// has shipped. In each, {schema} stands for the quoted schema name.
var migrations = [...]string{
	// 1: entries and running totals.
	`CREATE TABLE {schema}.entries (
	id                text COLLATE "C" PRIMARY KEY,
	authority_id      text COLLATE "C" NOT NULL,
	user_id           text COLLATE "C" NOT NULL,
	created_on        bigint NOT NULL,
	amount            numeric NOT NULL,
	reason            text COLLATE "C" NOT NULL,
	item_name         text COLLATE "C",
	item_used         boolean,
	item_data         bytea,
	balance           numeric NOT NULL,
	authority_balance numeric NOT NULL,
	idempotency_key   text COLLATE "C",
	CONSTRAINT entries_item_check CHECK ((item_name IS NULL) = (item_used IS NULL) AND (item_name IS NOT NULL OR item_data IS NULL))
);
CREATE UNIQUE INDEX entries_idempotency_key ON {schema}.entries (authority_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX entries_user ON {schema}.entries (user_id, id);
CREATE INDEX entries_authority ON {schema}.entries (authority_id, id);
CREATE INDEX entries_authority_user ON {schema}.entries (authority_id, user_id, id);
CREATE INDEX entries_items ON {schema}.entries (id) WHERE item_name IS NOT NULL;
CREATE INDEX entries_items_user ON {schema}.entries (user_id, id) WHERE item_name IS NOT NULL;
CREATE INDEX entries_items_authority ON {schema}.entries (authority_id, id) WHERE item_name IS NOT NULL;
CREATE TABLE {schema}.totals (
	authority_id text COLLATE "C" NOT NULL,
	user_id      text COLLATE "C" NOT NULL,
	total        numeric NOT NULL,
	last_entry   text COLLATE "C" NOT NULL,
	PRIMARY KEY (authority_id, user_id)
) WITH (fillfactor = 70);`,
	// 2: who used an item, when, and with which idempotency key. Adding
	// nullable columns without a default rewrites nothing, and the check
	// is NOT VALID so that it does not read the table: it holds for
	// every row written from now on, and every row before has NULLs.
	`ALTER TABLE {schema}.entries
	ADD COLUMN item_used_on        bigint,
	ADD COLUMN item_used_by        text COLLATE "C",
	ADD COLUMN use_idempotency_key text COLLATE "C",
	ADD CONSTRAINT entries_use_check CHECK (item_used IS TRUE OR (item_used_on IS NULL AND item_used_by IS NULL AND use_idempotency_key IS NULL)) NOT VALID;`,
	// 3: currencies, metadata, transfers, reversals and limits. The new
	// columns of entries rewrite nothing: currency has a constant default
	// (kept in the catalog, so every old row reads as the default
	// currency) and the others are nullable without one; the check is NOT
	// VALID for the reason above. Building entries_currency_user reads
	// the table once. Totals gain currency in their key: the primary key
	// is rebuilt, which reads the (much smaller) totals table.
	`ALTER TABLE {schema}.entries
	ADD COLUMN currency     text COLLATE "C" NOT NULL DEFAULT '',
	ADD COLUMN metadata     jsonb,
	ADD COLUMN transfer_id  text COLLATE "C",
	ADD COLUMN reverses     text COLLATE "C",
	ADD COLUMN reversed_by  text COLLATE "C",
	ADD COLUMN item_revoked boolean,
	ADD CONSTRAINT entries_revoked_check CHECK (item_revoked IS NULL OR item_name IS NOT NULL) NOT VALID;
CREATE INDEX entries_currency_user ON {schema}.entries (currency, user_id, id);
ALTER TABLE {schema}.totals
	ADD COLUMN currency text COLLATE "C" NOT NULL DEFAULT '',
	DROP CONSTRAINT totals_pkey,
	ADD CONSTRAINT totals_pkey PRIMARY KEY (authority_id, currency, user_id);
CREATE INDEX totals_user ON {schema}.totals (user_id, currency) WHERE authority_id = '';
CREATE TABLE {schema}.limits (
	user_id  text COLLATE "C" NOT NULL,
	currency text COLLATE "C" NOT NULL,
	floor    numeric NOT NULL,
	cap      numeric,
	set_by   text COLLATE "C" NOT NULL,
	set_on   bigint,
	PRIMARY KEY (user_id, currency)
);`,
	// 4: holds. The new columns rewrite nothing: entries.hold_id is
	// nullable without a default, totals.held has a constant default
	// (kept in the catalog, so every old total reads as holding
	// nothing). The holds table is new, so its indexes cost nothing to
	// build. Times are Unix nanoseconds, as in entries; NULL is the
	// zero time.
	`ALTER TABLE {schema}.entries ADD COLUMN hold_id text COLLATE "C";
ALTER TABLE {schema}.totals ADD COLUMN held numeric NOT NULL DEFAULT 0;
CREATE TABLE {schema}.holds (
	hold_id         text COLLATE "C" PRIMARY KEY,
	authority_id    text COLLATE "C" NOT NULL,
	user_id         text COLLATE "C" NOT NULL,
	currency        text COLLATE "C" NOT NULL,
	amount          numeric NOT NULL,
	reason          text COLLATE "C" NOT NULL,
	metadata        jsonb,
	created_on      bigint,
	expires         bigint,
	state           text COLLATE "C" NOT NULL,
	closed_on       bigint,
	entry_id        text COLLATE "C",
	idempotency_key text COLLATE "C",
	CONSTRAINT holds_state_check CHECK (state IN ('active', 'captured', 'released', 'expired'))
);
CREATE UNIQUE INDEX holds_idempotency_key ON {schema}.holds (authority_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX holds_user ON {schema}.holds (user_id, currency, hold_id);
CREATE INDEX holds_expiring ON {schema}.holds (expires, hold_id) WHERE state = 'active' AND expires IS NOT NULL;
CREATE INDEX holds_expiring_user ON {schema}.holds (user_id, currency, expires, hold_id) WHERE state = 'active' AND expires IS NOT NULL;`,
	// 5: the change feed. The changes table and the sequence its cursors
	// are taken from are new; the feed's past is synthesized from the
	// records, one change per entry, item use, stored limits, placed
	// hold and released or expired hold, numbered 1, 2, ... in the order
	// of a merge by time (ties: entries, uses, limits, placed holds,
	// closes; within one kind by ID, limits by user and currency; a use
	// without a time right after its entry), and the sequence goes on
	// after the last. This reads entries, limits and holds once and
	// writes a row per change, in the one migration transaction.
	`CREATE SEQUENCE {schema}.changes_cursor AS bigint MINVALUE 1 CACHE 1 NO CYCLE;
CREATE TABLE {schema}.changes (
	cursor          bigint PRIMARY KEY,
	kind            text COLLATE "C" NOT NULL,
	at              bigint,
	authority_id    text COLLATE "C" NOT NULL,
	ref             text COLLATE "C" NOT NULL,
	limits_user_id  text COLLATE "C",
	limits_currency text COLLATE "C",
	limits_floor    numeric,
	limits_cap      numeric,
	CONSTRAINT changes_limits_check CHECK ((limits_user_id IS NULL) = (limits_currency IS NULL)
		AND (limits_user_id IS NULL) = (limits_floor IS NULL) AND (limits_cap IS NULL OR limits_floor IS NOT NULL))
);
INSERT INTO {schema}.changes (cursor, kind, at, authority_id, ref, limits_user_id, limits_currency, limits_floor, limits_cap)
SELECT row_number() OVER (ORDER BY sort_at NULLS FIRST, rank, k1, k2, sub), kind, at, authority_id, ref, lu, lc, lf, lcap
FROM (
	SELECT created_on AS sort_at, 0 AS rank, id AS k1, ''::text COLLATE "C" AS k2, 0 AS sub,
		'entry' AS kind, created_on AS at, authority_id, id AS ref,
		NULL::text AS lu, NULL::text AS lc, NULL::numeric AS lf, NULL::numeric AS lcap
	FROM {schema}.entries
	UNION ALL
	SELECT coalesce(item_used_on, created_on), CASE WHEN item_used_on IS NULL THEN 0 ELSE 1 END, id, '', CASE WHEN item_used_on IS NULL THEN 1 ELSE 0 END,
		'item_used', item_used_on, coalesce(item_used_by, ''), id, NULL, NULL, NULL, NULL
	FROM {schema}.entries WHERE item_used
	UNION ALL
	SELECT set_on, 2, user_id, currency, 0, 'limits', set_on, set_by, '', user_id, currency, floor, cap
	FROM {schema}.limits
	UNION ALL
	SELECT created_on, 3, hold_id, '', 0, 'hold_placed', created_on, authority_id, hold_id, NULL, NULL, NULL, NULL
	FROM {schema}.holds
	UNION ALL
	SELECT closed_on, 4, hold_id, '', 0, 'hold_' || state, closed_on, authority_id, hold_id, NULL, NULL, NULL, NULL
	FROM {schema}.holds WHERE state IN ('released', 'expired')
) AS past;
SELECT setval('{schema}.changes_cursor', max(cursor)) FROM {schema}.changes;`,
}

// SchemaVersion is the version of the schema this package writes and
// reads. [Open] upgrades an older schema to it.
const SchemaVersion = 5

// SchemaVersion must count the migrations: the index is out of range,
// and the package does not compile, if it does not.
var _ = [1]struct{}{}[SchemaVersion-len(migrations)]

// ErrSchemaVersion is returned by [Open] when the schema was written by a
// newer version of pgstore than this one: its data may use a layout this
// version does not know. Upgrade the program.
var ErrSchemaVersion = errors.New("pgstore: schema written by a newer version of pgstore")

// checkSchemaName accepts a plain lower-case identifier that PostgreSQL
// would not reserve for itself.
func checkSchemaName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("pgstore: schema name %q: %s: %w", name, why, ledger.ErrInvalid)
	}
	switch {
	case name == "":
		return bad("empty")
	case len(name) > 63:
		return bad("longer than 63 bytes")
	case strings.HasPrefix(name, "pg_"):
		return bad("names starting with pg_ are reserved by PostgreSQL")
	case name[0] >= '0' && name[0] <= '9':
		return bad("starts with a digit")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return bad("only a-z, 0-9 and _ are allowed")
		}
	}
	return nil
}

// lockKey is the pg_advisory_xact_lock key that serializes migrations of
// one schema: a hash of the schema name, so that different schemas
// migrate independently.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("github.com/walletledger/ledger/pgstore\x00" + schema))
	return int64(h.Sum64())
}

// migrate brings the schema to [SchemaVersion]. A schema that is current
// costs two reads and no lock or DDL, so that a role without the right to
// create can open a schema made for it.
func (s *Store) migrate(ctx context.Context) error {
	v, found, err := s.readVersion(ctx, s.pool)
	if err != nil {
		return err
	}
	if found && v >= SchemaVersion {
		return s.checkVersion(v)
	}
	return s.upgrade(ctx)
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readVersion reads the schema's version; found is false when the schema
// has no meta table yet.
func (s *Store) readVersion(ctx context.Context, q querier) (v int, found bool, err error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1::text) IS NOT NULL`, s.q.schema+".meta").Scan(&exists); err != nil {
		return 0, false, fmt.Errorf("pgstore: open schema %q: %w", s.schema, err)
	}
	if !exists {
		return 0, false, nil
	}
	var text string
	err = q.QueryRow(ctx, `SELECT value FROM `+s.q.schema+`.meta WHERE key = 'version'`).Scan(&text)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, true, nil
	case err != nil:
		return 0, false, fmt.Errorf("pgstore: open schema %q: read version: %w", s.schema, err)
	}
	v, err = strconv.Atoi(text)
	if err != nil || v < 0 {
		return 0, false, fmt.Errorf("pgstore: open schema %q: version %q is not a version number", s.schema, text)
	}
	return v, true, nil
}

func (s *Store) checkVersion(v int) error {
	if v > SchemaVersion {
		return fmt.Errorf("pgstore: open schema %q: it is at version %d, this pgstore knows versions up to %d: %w",
			s.schema, v, SchemaVersion, ErrSchemaVersion)
	}
	return nil
}

// upgrade creates the schema or runs the migrations it lacks, in one
// transaction that holds the schema's advisory lock: processes opening
// at once queue on the lock, and each one after the first finds the work
// done. The transaction is READ COMMITTED so that every statement after
// the lock sees what the previous holder committed.
func (s *Store) upgrade(ctx context.Context) error {
	fail := func(step string, err error) error {
		return fmt.Errorf("pgstore: open schema %q: %s: %w", s.schema, step, err)
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fail("begin", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(s.schema)); err != nil {
		return fail("lock", err)
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+s.q.schema); err != nil {
		return fail("create schema", err)
	}
	_, err = tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.q.schema+`.meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL)`)
	if err != nil {
		return fail("create meta table", err)
	}
	v, _, err := s.readVersion(ctx, tx)
	if err != nil {
		return err
	}
	if err := s.checkVersion(v); err != nil {
		return err
	}
	if v == SchemaVersion {
		return nil
	}
	for i := v; i < SchemaVersion; i++ {
		if _, err := tx.Exec(ctx, strings.ReplaceAll(migrations[i], "{schema}", s.q.schema)); err != nil {
			return fail(fmt.Sprintf("migrate to version %d", i+1), err)
		}
	}
	_, err = tx.Exec(ctx, `INSERT INTO `+s.q.schema+`.meta (key, value) VALUES ('version', $1::text)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, strconv.Itoa(SchemaVersion))
	if err != nil {
		return fail("write version", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fail("commit", err)
	}
	return nil
}
