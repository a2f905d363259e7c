package badgerstore

import (
	"github.com/dgraph-io/badger/v4"

	"github.com/walletledger/ledger"
)

// Internals the external tests use.

// GCDone returns a channel closed when the value-log GC goroutine of s
// exits, nil if s runs none.
func GCDone(s *Store) <-chan struct{} { return s.gcDone }

// WithGCRoundHook calls f after each value-log GC round.
func WithGCRoundHook(f func()) Option { return func(c *config) { c.gcRound = f } }

// EncodeRecord and DecodeRecord expose the record codec.
func EncodeRecord(r ledger.Record) ([]byte, error) { return encodeRecord(nil, &r) }

func DecodeRecord(b []byte) (ledger.Record, error) { return decodeRecord(b) }

const FormatVersion = formatVersion

// ErrCorrupt is wrapped by the errors of values that fail to decode.
var ErrCorrupt = errCorrupt

// FormatKey is the key of the format version.
var FormatKey = formatKey

// BadgerOptions returns the options s's database runs with.
func BadgerOptions(s *Store) badger.Options { return s.db.Opts() }

// WithMigration makes Open's format migration move batch totals per
// transaction and call after once each has committed; an error from
// after stops the migration there, as a crash would, and Open returns it.
func WithMigration(batch int, after func() error) Option {
	return func(c *config) { c.migrateBatch, c.afterMigrateBatch = batch, after }
}

// MigrateKey is the key present while a migration is in progress.
var MigrateKey = migrateKey

// EncodeTotal, DecodeTotal, EncodeHold and DecodeHold expose the codecs
// of totals and holds.
func EncodeTotal(t ledger.Total) ([]byte, error) { return encodeTotal(t) }

func DecodeTotal(b []byte) (ledger.Total, error) { return decodeTotal(b) }

func EncodeHold(h ledger.HoldRecord) ([]byte, error) { return encodeHold(&h) }

func DecodeHold(b []byte) (ledger.HoldRecord, error) { return decodeHold(b) }

// EncodeChange and DecodeChange expose the change codec: the value of
// the change with sequence number seq, and its decoding.
func EncodeChange(seq uint64, c ledger.ChangeRecord) ([]byte, error) {
	b, err := encodeChange(&c)
	if err != nil {
		return nil, err
	}
	_, v := sealChange(b, seq)
	return v, nil
}

func DecodeChange(seq uint64, v []byte) (ledger.ChangeRecord, error) {
	return decodeChange(changeKey(seq), v)
}

// ChangeKey is the key of the change with sequence number seq, and
// FirstSeqAfter the least sequence number whose cursor sorts after a
// string.
func ChangeKey(seq uint64) []byte { return changeKey(seq) }

func FirstSeqAfter(after string) (uint64, bool) { return firstSeqAfter(after) }

// WithCheckpoints makes the store checkpoint its totals after this many
// changes, or this many dirty totals.
func WithCheckpoints(changes, totals int) Option {
	return func(c *config) { c.checkpointChanges, c.checkpointTotals = changes, totals }
}

// WithCheckpointPostings checkpoints once n index postings wait in
// memory.
func WithCheckpointPostings(n int) Option {
	return func(c *config) { c.checkpointPostings = n }
}
