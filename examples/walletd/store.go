package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
	"github.com/walletledger/ledger/memstore"
	"github.com/walletledger/ledger/pgstore"
)

// Value-log garbage collection of the Badger store: using an item
// rewrites its entry's record, leaving the old one as garbage.
const (
	gcInterval = 10 * time.Minute
	gcRatio    = 0.5
)

// The stores walletd can run on, for -store.
const (
	storeBadger   = "badger"
	storeMemory   = "memory"
	storePostgres = "postgres"
)

// storeKind says which store cfg names: -store when given, else what
// -data looks like (":memory:", a postgres:// URL, or a directory).
func (cfg config) storeKind() string {
	switch {
	case cfg.StoreKind != "":
		return cfg.StoreKind
	case cfg.Data == memoryData:
		return storeMemory
	case isPostgresURL(cfg.Data):
		return storePostgres
	}
	return storeBadger
}

// redacted is -data as it may be logged: a postgres:// URL without its
// password.
func redacted(data string) string {
	if !isPostgresURL(data) {
		return data
	}
	u, err := url.Parse(data)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// postgresURL is the database of a postgres store: -pg, else -data.
func (cfg config) postgresURL() string {
	if cfg.PG != "" {
		return cfg.PG
	}
	return cfg.Data
}

// openStore opens the ledger's store: memstore, pgstore (in schema
// cfg.PGSchema of the database), or badgerstore in data/ledger, durable
// (every write fsynced before it is answered), with Badger's own log at
// Warn and above.
func openStore(ctx context.Context, cfg config, log *slog.Logger) (ledger.Store, error) {
	switch cfg.storeKind() {
	case storeMemory:
		return memstore.New(), nil
	case storePostgres:
		url := cfg.postgresURL()
		if !isPostgresURL(url) {
			return nil, fmt.Errorf("-store postgres needs a postgres:// URL in -pg (or -data)")
		}
		opts := []pgstore.Option{}
		if cfg.PGSchema != "" {
			opts = append(opts, pgstore.WithSchema(cfg.PGSchema))
		}
		s, err := pgstore.Open(ctx, url, opts...)
		if err != nil {
			return nil, fmt.Errorf("open ledger store: %w", err)
		}
		return s, nil
	case storeBadger:
	default:
		return nil, fmt.Errorf("unknown -store %q: want badger, memory or postgres", cfg.StoreKind)
	}
	dir := filepath.Join(cfg.Data, "ledger")
	s, err := badgerstore.Open(dir,
		badgerstore.WithLogger(slog.New(minLevel{log.Handler(), slog.LevelWarn})),
		badgerstore.WithValueLogGC(gcInterval, gcRatio),
	)
	if errors.Is(err, badgerstore.ErrLocked) {
		return nil, fmt.Errorf("ledger directory %s is in use by another process (is another walletd serving -data %s?): %w", dir, cfg.Data, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open ledger store: %w", err)
	}
	return s, nil
}

// minLevel passes on records at or above level only.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}
