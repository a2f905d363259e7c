package badgerstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Option configures a [Store] in [Open].
type Option func(*config)

type config struct {
	inMemory    bool
	syncWrites  bool
	logger      *slog.Logger
	tune        func(badger.Options) badger.Options
	gcInterval  time.Duration
	gcRatio     float64
	gcRound     func() // if set (by tests), called after each GC round
	cacheTotals int
	err         error

	// When to checkpoint (see checkpoint.go): tests lower them.
	checkpointChanges, checkpointTotals, checkpointPostings int

	// The migration's transaction size, and (if set, by tests) a call
	// after each of its transactions that can stop it.
	migrateBatch      int
	afterMigrateBatch func() error
}

// DefaultCachedTotals, the default of [WithCachedTotals], keeps every
// total in memory.
const DefaultCachedTotals = -1

func defaultConfig() config {
	return config{syncWrites: true, cacheTotals: DefaultCachedTotals, migrateBatch: migrateBatch,
		checkpointChanges: checkpointChanges, checkpointTotals: checkpointTotals, checkpointPostings: checkpointPostings}
}

// WithCachedTotals bounds how many running totals (a wallet's, and each
// authority's for it) an open store keeps in memory besides those it has
// not written to Badger yet (at most 16,384 between checkpoints; see the
// package doc): n >= 0 keeps at most about n, dropping others at random,
// and [DefaultCachedTotals] (-1) keeps every total. A total in memory
// costs about 240 bytes (measured: see the package doc). A
// write or read of a wallet whose totals are not in memory reads them
// from Badger first: a point lookup, which walks every level of its LSM
// tree that may hold the key. The smallest footprint is n = 0.
func WithCachedTotals(n int) Option {
	return func(c *config) {
		if n < -1 {
			c.fail(fmt.Errorf("badgerstore: WithCachedTotals(%d): below -1", n))
			return
		}
		c.cacheTotals = n
	}
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// WithInMemory keeps the whole database in memory, for tests: nothing
// reaches a disk and everything is lost on Close. [Open] must be given
// the directory "". In memory every value counts in full against
// Badger's transaction limit (15% of MemTableSize, 12 MiB here), so a
// 10,000-entry batch fits only if its items carry little data (about
// 550 bytes each); on disk large records cost a transaction a pointer
// only.
func WithInMemory() Option {
	return func(c *config) { c.inMemory = true }
}

// WithSyncWrites sets whether a commit waits for its data to reach the
// disk. With true, the default, when Update returns nil (and so when a
// ledger write returns) the commit has been fsynced and survives a crash
// of the process or of the machine. With false a commit returns once it
// is written to the operating system: it survives a crash of the process
// but a crash of the machine or a power cut may lose the last writes;
// the database is never corrupted and comes back as it was at some
// earlier commit, whole transactions only.
func WithSyncWrites(sync bool) Option {
	return func(c *config) { c.syncWrites = sync }
}

// WithLogger routes Badger's log output to l, at the matching levels
// (Badger's Errorf, Warningf, Infof and Debugf log at slog's Error,
// Warn, Info and Debug). Failures of the background value-log garbage
// collection are logged there too. By default the store logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithBadgerOptions lets f tune the badger.Options the store opens its
// database with (cache and table sizes, compression, and so on). It is
// applied after every other option. f must not change Dir, ValueDir,
// InMemory, ReadOnly or BypassLockGuard, which the store manages: Open
// fails if it does. f receives the store's checksum settings,
// VerifyValueChecksum true and ChecksumVerificationMode
// options.OnTableRead (see Corruption in the package doc); turning them
// off trades the detection of corrupt data for faster reads and Opens.
func WithBadgerOptions(f func(badger.Options) badger.Options) Option {
	return func(c *config) {
		if f == nil {
			c.fail(fmt.Errorf("badgerstore: WithBadgerOptions: nil function"))
			return
		}
		c.tune = f
	}
}

// WithValueLogGC runs Badger's value-log garbage collection in the
// background every interval, rewriting value-log files of which at least
// discardRatio (between 0 and 1, exclusive; 0.5 is typical) is garbage,
// such as records replaced when an item is used. Each round rewrites
// files until none qualifies. [Store.Close] stops it and waits for it.
// It cannot be combined with [WithInMemory], which has no value log.
func WithValueLogGC(interval time.Duration, discardRatio float64) Option {
	return func(c *config) {
		if interval <= 0 || !(discardRatio > 0 && discardRatio < 1) {
			c.fail(fmt.Errorf("badgerstore: WithValueLogGC(%v, %v): want interval > 0 and 0 < discardRatio < 1", interval, discardRatio))
			return
		}
		c.gcInterval, c.gcRatio = interval, discardRatio
	}
}

// slogLogger adapts a *slog.Logger to badger.Logger.
type slogLogger struct{ l *slog.Logger }

func (a slogLogger) Errorf(format string, args ...any) { a.log(slog.LevelError, format, args) }
func (a slogLogger) Warningf(format string, args ...any) {
	a.log(slog.LevelWarn, format, args)
}
func (a slogLogger) Infof(format string, args ...any)  { a.log(slog.LevelInfo, format, args) }
func (a slogLogger) Debugf(format string, args ...any) { a.log(slog.LevelDebug, format, args) }

func (a slogLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	// Badger ends most messages with a newline; slog adds its own.
	a.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)))
}
