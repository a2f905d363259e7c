package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
	"github.com/walletledger/ledger/memstore"
)

// Value-log garbage collection of the Badger store: using an item
// rewrites its entry's record, leaving the old one as garbage.
const (
	gcInterval = 10 * time.Minute
	gcRatio    = 0.5
)

// openStore opens the ledger's store for -data: memstore for ":memory:",
// otherwise badgerstore in data/ledger, durable (every write fsynced
// before it is answered). Badger's own log goes to log at Warn and above.
func openStore(data string, log *slog.Logger) (ledger.Store, error) {
	if data == memoryData {
		return memstore.New(), nil
	}
	dir := filepath.Join(data, "ledger")
	s, err := badgerstore.Open(dir,
		badgerstore.WithLogger(slog.New(minLevel{log.Handler(), slog.LevelWarn})),
		badgerstore.WithValueLogGC(gcInterval, gcRatio),
	)
	if errors.Is(err, badgerstore.ErrLocked) {
		return nil, fmt.Errorf("ledger directory %s is in use by another process (is another walletd serving -data %s?): %w", dir, data, err)
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
