package badgerstore_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/walletledger/ledger"
	"github.com/walletledger/ledger/badgerstore"
)

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeBadger writes key = value into a plain Badger database in dir.
func writeBadger(t *testing.T, dir string, key, value []byte) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	require.NoError(t, err)
	require.NoError(t, db.Update(func(txn *badger.Txn) error { return txn.Set(key, value) }))
	require.NoError(t, db.Close())
}

func TestOpenBadDirectories(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the path to open
		want  error                     // sentinel, or nil for any error
	}{
		{"empty file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "ledger")
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			return p
		}, badgerstore.ErrNotLedger},
		{"garbage files", func(t *testing.T) string {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "000001.vlog"), randomBytes(r, 4096), 0o600))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), randomBytes(r, 100), 0o600))
			return dir
		}, badgerstore.ErrNotLedger},
		{"someone's subdirectory", func(t *testing.T) string {
			dir := t.TempDir()
			require.NoError(t, os.Mkdir(filepath.Join(dir, "photos"), 0o700))
			return dir
		}, badgerstore.ErrNotLedger},
		{"garbage MANIFEST", func(t *testing.T) string {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "MANIFEST"), randomBytes(r, 1000), 0o600))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "000001.sst"), randomBytes(r, 1000), 0o600))
			return dir
		}, nil},
		{"empty MANIFEST", func(t *testing.T) string {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "MANIFEST"), nil, 0o600))
			return dir
		}, nil},
		{"ledger with garbage value log", func(t *testing.T) string {
			dir := t.TempDir()
			s, err := badgerstore.Open(dir)
			require.NoError(t, err)
			require.NoError(t, s.Close())
			vlogs, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
			require.NoError(t, err)
			require.NotEmpty(t, vlogs)
			for _, v := range vlogs {
				require.NoError(t, os.WriteFile(v, randomBytes(r, 4096), 0o600))
			}
			return dir
		}, nil},
		{"newer format", func(t *testing.T) string {
			dir := t.TempDir()
			writeBadger(t, dir, badgerstore.FormatKey, binary.AppendUvarint(nil, 99))
			return dir
		}, badgerstore.ErrFormat},
		{"foreign Badger database", func(t *testing.T) string {
			dir := t.TempDir()
			writeBadger(t, dir, []byte("users/1"), []byte(`{"name":"x"}`))
			return dir
		}, badgerstore.ErrNotLedger},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			var s *badgerstore.Store
			var err error
			require.NotPanics(t, func() { s, err = badgerstore.Open(path) })
			if err == nil {
				closeStore(t, s)
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), path, "the error names the directory")
			for _, sentinel := range []error{badgerstore.ErrNotLedger, badgerstore.ErrFormat, badgerstore.ErrLocked} {
				require.Equalf(t, sentinel == tt.want, errors.Is(err, sentinel), "errors.Is(%v, %v)", err, sentinel)
			}
		})
	}
}

// A crash while Badger creates a database can leave only the manifest it
// was about to rename into place.
func TestOpenAfterInterruptedCreation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "MANIFEST-REWRITE"), []byte("Bdg"), 0o600))
	l := newLedger(t, open(t, dir))
	_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err)
	require.NoError(t, l.Close())
	l = newLedger(t, open(t, dir))
	require.Equal(t, map[string]string{"u": "1"}, totals(t, l, ledger.WalletQuery{}))
}

// A crash when Badger has just created a log file leaves it empty.
func TestOpenRemovesEmptyLogs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := newLedger(t, open(t, dir))
	_, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "u", Amount: dec("1"), Reason: "r"})
	require.NoError(t, err)
	require.NoError(t, l.Close())
	for _, name := range []string{"00009.mem", "000009.vlog"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o600))
	}
	h := &recordingHandler{}
	l = newLedger(t, open(t, dir, badgerstore.WithLogger(slog.New(h))))
	require.Equal(t, map[string]string{"u": "1"}, totals(t, l, ledger.WalletQuery{}))
	require.Equal(t, 2, h.count("badgerstore: removed an empty log file left by a crash"))
}

func TestOpenFormatVersion(t *testing.T) {
	dir := t.TempDir()
	writeBadger(t, dir, badgerstore.FormatKey, binary.AppendUvarint(nil, 99))
	_, err := badgerstore.Open(dir)
	require.ErrorIs(t, err, badgerstore.ErrFormat)
	require.ErrorContains(t, err, "99", "the message names the version found")
	require.ErrorContains(t, err, "1", "and the version supported")

	// A new ledger records the version this package writes.
	dir = t.TempDir()
	s, err := badgerstore.Open(dir)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(badgerstore.FormatKey)
		require.NoError(t, err)
		v, err := item.ValueCopy(nil)
		require.NoError(t, err)
		got, n := binary.Uvarint(v)
		require.Equal(t, len(v), n)
		require.Equal(t, uint64(badgerstore.FormatVersion), got)
		return nil
	}))
}

func TestOpenArguments(t *testing.T) {
	tests := []struct {
		name string
		dir  func(t *testing.T) string
		opts []badgerstore.Option
	}{
		{"no directory", func(*testing.T) string { return "" }, nil},
		{"in memory with a directory", func(t *testing.T) string { return t.TempDir() }, []badgerstore.Option{badgerstore.WithInMemory()}},
		{"GC in memory", func(*testing.T) string { return "" }, []badgerstore.Option{badgerstore.WithInMemory(), badgerstore.WithValueLogGC(time.Second, 0.5)}},
		{"GC interval", func(t *testing.T) string { return t.TempDir() }, []badgerstore.Option{badgerstore.WithValueLogGC(0, 0.5)}},
		{"GC ratio", func(t *testing.T) string { return t.TempDir() }, []badgerstore.Option{badgerstore.WithValueLogGC(time.Second, 1)}},
		{"nil Badger options", func(t *testing.T) string { return t.TempDir() }, []badgerstore.Option{badgerstore.WithBadgerOptions(nil)}},
		{"Badger options move the directory", func(t *testing.T) string { return t.TempDir() }, []badgerstore.Option{
			badgerstore.WithBadgerOptions(func(o badger.Options) badger.Options { return o.WithDir(o.Dir + "x") }),
		}},
		{"Badger options take the lock", func(t *testing.T) string { return t.TempDir() }, []badgerstore.Option{
			badgerstore.WithBadgerOptions(func(o badger.Options) badger.Options { return o.WithBypassLockGuard(!o.BypassLockGuard) }),
		}},
		{"Badger options applied", func(t *testing.T) string { return t.TempDir() }, []badgerstore.Option{
			badgerstore.WithBadgerOptions(func(o badger.Options) badger.Options { return o.WithValueLogFileSize(1) }),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := badgerstore.Open(tt.dir(t), tt.opts...)
			if err == nil {
				closeStore(t, s)
			}
			require.ErrorContains(t, err, "badgerstore:")
		})
	}
}

// skipUnlessFlock skips on systems where the store leaves the directory
// lock to Badger and so cannot report ErrLocked.
func skipUnlessFlock(t *testing.T) {
	switch runtime.GOOS {
	case "linux", "darwin", "freebsd", "netbsd", "openbsd", "dragonfly":
	default:
		t.Skip("ErrLocked is reported on systems with flock only")
	}
}

func TestOpenLockedInProcess(t *testing.T) {
	skipUnlessFlock(t)
	dir := t.TempDir()
	s := open(t, dir)
	_, err := badgerstore.Open(dir)
	require.ErrorIs(t, err, badgerstore.ErrLocked)
	require.ErrorContains(t, err, dir)
	require.NoError(t, s.Close())
	s2 := open(t, dir) // released by Close
	require.NoError(t, s2.Close())
}

const lockDirEnv = "BADGERSTORE_TEST_LOCK_DIR"

// TestLockChild is run by TestOpenLockedByProcess in a child process: it
// opens the store, says so, and holds it until killed or stdin closes.
func TestLockChild(t *testing.T) {
	dir := os.Getenv(lockDirEnv)
	if dir == "" {
		t.Skip("run by TestOpenLockedByProcess")
	}
	s, err := badgerstore.Open(dir)
	require.NoError(t, err)
	_, err = os.Stdout.Write([]byte("opened\n"))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, os.Stdin)
	require.NoError(t, s.Close())
}

func TestOpenLockedByProcess(t *testing.T) {
	skipUnlessFlock(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockDirEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "child output %q", line)
	require.Equal(t, "opened\n", line)

	start := time.Now()
	_, err = badgerstore.Open(dir)
	elapsed := time.Since(start)
	require.ErrorIs(t, err, badgerstore.ErrLocked)
	require.ErrorContains(t, err, dir)
	require.Less(t, elapsed, time.Second, "Open must fail at once")

	// The lock dies with the process.
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	s := open(t, dir)
	require.NoError(t, s.Close())
}

func TestModes(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		dir    func(t *testing.T) string
		opts   []badgerstore.Option
		reopen bool
	}{
		{"in memory", func(*testing.T) string { return "" }, []badgerstore.Option{badgerstore.WithInMemory()}, false},
		{"durable", func(t *testing.T) string { return t.TempDir() }, nil, true},
		{"relaxed sync", func(t *testing.T) string { return t.TempDir() }, []badgerstore.Option{badgerstore.WithSyncWrites(false)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			s, err := badgerstore.Open(dir, tt.opts...)
			require.NoError(t, err)
			l, err := ledger.New(s)
			require.NoError(t, err)
			require.NoError(t, l.Health(ctx))
			_, err = l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "bank", UserID: "u", Amount: dec("5"), Reason: "r"})
			require.NoError(t, err)
			e, err := l.CreateEntry(ctx, ledger.NewEntry{AuthorityID: "shop", UserID: "u", Amount: dec("-2"), Reason: "r", Item: &ledger.Item{Name: "i"}})
			require.NoError(t, err)
			_, err = l.UseItem(ctx, "shop", e.ID)
			require.NoError(t, err)
			require.Equal(t, map[string]string{"u": "3"}, totals(t, l, ledger.WalletQuery{}))
			require.NoError(t, l.Close())
			if !tt.reopen {
				return
			}
			l = newLedger(t, open(t, dir, tt.opts...))
			require.Equal(t, map[string]string{"u": "3"}, totals(t, l, ledger.WalletQuery{}))
			inv, err := l.Inventory(ctx, ledger.InventoryQuery{Used: ledger.UsedOnly})
			require.NoError(t, err)
			require.Len(t, inv, 1)
			require.NoError(t, l.Verify(ctx))
		})
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	s, err := badgerstore.Open("", badgerstore.WithInMemory())
	require.NoError(t, err)
	require.NoError(t, s.Ping(ctx))
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Close(), ledger.ErrClosed)
	require.ErrorIs(t, s.Ping(ctx), ledger.ErrClosed)
	require.ErrorIs(t, s.View(ctx, func(ledger.ReadTx) error { return nil }), ledger.ErrClosed)
	require.ErrorIs(t, s.Update(ctx, func(ledger.Tx) error { return nil }), ledger.ErrClosed)
}

// recordingHandler is a slog.Handler that keeps the records it handles.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Message == msg {
			n++
		}
	}
	return n
}

func (h *recordingHandler) levels() map[slog.Level]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := map[slog.Level]int{}
	for _, r := range h.records {
		m[r.Level]++
	}
	return m
}

func TestLogger(t *testing.T) {
	h := &recordingHandler{}
	s := open(t, t.TempDir(), badgerstore.WithLogger(slog.New(h)))
	require.NoError(t, s.Close())
	require.Positive(t, h.levels()[slog.LevelInfo], "Badger logs at Info when it opens and closes")
	for _, r := range h.records {
		require.NotEmpty(t, r.Message)
		require.NotEqual(t, '\n', rune(r.Message[len(r.Message)-1]), "trailing newline in %q", r.Message)
	}

	// Silent by default: Badger's default logger would write to the
	// stderr of the moment, which the store must not let it do.
	r, w, err := os.Pipe()
	require.NoError(t, err)
	stderr := os.Stderr
	os.Stderr = w
	func() {
		defer func() { os.Stderr = stderr }()
		s, err = badgerstore.Open(t.TempDir())
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}()
	require.NoError(t, w.Close())
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Empty(t, string(out))
}

func TestDefaults(t *testing.T) {
	o := badgerstore.BadgerOptions(open(t, t.TempDir()))
	require.True(t, o.SyncWrites, "durable by default")
	require.Nil(t, o.Logger, "silent by default")
	require.Less(t, o.ValueThreshold, int64(1024), "large records go to the value log")

	o = badgerstore.BadgerOptions(open(t, t.TempDir(), badgerstore.WithSyncWrites(false)))
	require.False(t, o.SyncWrites)

	o = badgerstore.BadgerOptions(open(t, t.TempDir(), badgerstore.WithSyncWrites(false),
		badgerstore.WithBadgerOptions(func(o badger.Options) badger.Options { return o.WithSyncWrites(true) })))
	require.True(t, o.SyncWrites, "WithBadgerOptions is applied last")
}
