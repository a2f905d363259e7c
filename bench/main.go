// Command bench compares the ledger with what a user could use instead,
// on one workload, and checks the performance targets of issue 5.
//
// It runs from its own module, so that its dependencies (SQLite, and
// Badger used directly) stay out of the library's:
//
//	cd bench && go run .                  # the full comparison, under 2 minutes
//	cd bench && go run . -out results.md  # also write the report as Markdown
//	cd bench && go run . -quick           # a smoke run of a few seconds
//
// # Workload
//
// Every write is an entry for a random user among 1,000 from one of three
// authorities, of 0.01 to 100.00, one in three a spend; a spend is applied
// only if the user can afford it. Every call counts as an operation,
// refused or not, and rates are operations per second.
//
// # Systems
//
//   - a bare Go map of totals behind a mutex, with no entries kept: the
//     ceiling in memory (and, for reference, the same map keeping its
//     entries in a slice);
//   - the ledger on memstore, and on badgerstore relaxed (sync off) and
//     durable (sync on), with 1 and 64 writers, and durable
//     CreateEntries of 1,000 credits;
//   - raw Badger doing the workload's reads and writes with no rules, one
//     transaction per entry (sync off and on, 1 and 64 writers) and 1,000
//     entries per transaction (sync on): the ceiling for badgerstore;
//   - a SQLite ledger written by hand (modernc.org/sqlite, WAL,
//     synchronous=FULL, a balances table), 1 and 64 writers;
//   - when LEDGER_PG_URL names a PostgreSQL database, the ledger on
//     pgstore and a PostgreSQL ledger written by hand with pgx (a balance
//     row locked with SELECT ... FOR UPDATE per entry), 64 writers each;
//   - single-wallet reads from ledgers of 10,000 and 1,000,000 entries,
//     on memstore and badgerstore.
//
// Each configuration runs for -duration on a fresh store in a fresh
// temporary directory, and the write configurations do so -rounds times
// (3 by default), in rotation, each row reporting its median round: on a
// shared machine one round of one configuration can run at half the
// speed of the next. The report gives each rate, its ratio to the
// ceiling it is judged against, the heap bytes per entry of in-memory
// ledgers and the bytes on disk per entry, then the targets, each PASS or
// MISS. Ratios compare within one run; the machine it ran on is printed
// at the top.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// bench holds what every configuration needs.
type bench struct {
	duration time.Duration
	parent   string // where temporary directories go
	progress io.Writer
	fixed    map[string]int64 // bytes of an empty store after Close, by kind
	pgURL    string           // the database of the PostgreSQL rows; "": none
}

// tempDir makes a fresh directory for one configuration and returns a
// func that removes it.
func (b *bench) tempDir(name string) (string, func(), error) {
	dir, err := os.MkdirTemp(b.parent, "ledger-bench-"+name+"-")
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

func (b *bench) progressf(format string, args ...any) {
	fmt.Fprintf(b.progress, format, args...)
}

// config is one configuration of the comparison: one row of the table,
// or, for reads, one row per ledger size.
type config struct {
	key     string // names the configuration for -run, and its row for ratios
	name    string
	writers int
	run     func(context.Context) ([]row, error)
}

// once reports whether c runs in the first round only: the reads, whose
// ledger sizes already take turns within one run, and whose fills are
// the longest part of it.
func (c config) once() bool { return strings.HasPrefix(c.key, "reads/") }

// one adapts a configuration that makes one row.
func one(f func(context.Context) (row, error)) func(context.Context) ([]row, error) {
	return func(ctx context.Context) ([]row, error) {
		r, err := f(ctx)
		return []row{r}, err
	}
}

// manyWriters is the writer count of the concurrent configurations.
const manyWriters = 64

// Keys of the rows that others are compared with.
const (
	keyMap            = "map/1"
	keyMapEntries     = "map-entries/1"
	keyMapCeiling     = "map-ceiling/1"
	keyMemstore1      = "memstore/1"
	keyRelaxed1       = "badgerstore-relaxed/1"
	keyDurableMany    = "badgerstore-durable/64"
	keyDurableBatch   = "badgerstore-durable/batch1000"
	keyRawNoSync1     = "badger-nosync/1"
	keyRawSync1       = "badger-sync/1"
	keyRawSyncBatch   = "badger-sync/batch1000"
	keySQLite1        = "sqlite/1"
	keyReadsMemPrefix = "reads/memstore/"
	keyReadsBadPrefix = "reads/badgerstore/"
)

// configs lists the comparison's configurations in the order they run
// and print.
func (b *bench) configs(readSizes []int) []config {
	cs := []config{
		{keyMap, "bare map + mutex (in-memory ceiling)", 1,
			one(func(ctx context.Context) (row, error) { return b.bareMap(ctx, 1) })},
		{keyMapEntries, "bare map + mutex, entries kept in a slice (reference)", 1,
			one(func(ctx context.Context) (row, error) { return b.mapWithEntries(ctx, 1) })},
		{keyMapCeiling, "map + mutex, entries appended as plain structs (issue 14's ceiling)", 1,
			one(func(ctx context.Context) (row, error) { return b.mapCeilingWrites(ctx, 1) })},
	}
	for _, w := range []int{1, manyWriters} {
		cs = append(cs, config{fmt.Sprintf("memstore/%d", w), "ledger, memstore", w,
			one(func(ctx context.Context) (row, error) { return b.memstoreWrites(ctx, w) })})
	}
	for _, durable := range []bool{false, true} {
		kind, name := "relaxed", "ledger, badgerstore relaxed (sync off)"
		if durable {
			kind, name = "durable", "ledger, badgerstore durable"
		}
		for _, w := range []int{1, manyWriters} {
			cs = append(cs, config{fmt.Sprintf("badgerstore-%s/%d", kind, w), name, w,
				one(func(ctx context.Context) (row, error) { return b.badgerstoreWrites(ctx, durable, w, 0) })})
		}
	}
	cs = append(cs, config{keyDurableBatch, "ledger, badgerstore durable, CreateEntries of 1,000", 1,
		one(func(ctx context.Context) (row, error) { return b.badgerstoreWrites(ctx, true, 1, 1000) })})
	for _, sync := range []bool{false, true} {
		kind, name := "nosync", "raw Badger, sync off, 1 txn/entry"
		if sync {
			kind, name = "sync", "raw Badger, sync on, 1 txn/entry"
		}
		for _, w := range []int{1, manyWriters} {
			cs = append(cs, config{fmt.Sprintf("badger-%s/%d", kind, w), name, w,
				one(func(ctx context.Context) (row, error) { return b.rawBadgerWrites(ctx, sync, w, 0) })})
		}
	}
	cs = append(cs, config{keyRawSyncBatch, "raw Badger, sync on, 1,000 entries/txn", 1,
		one(func(ctx context.Context) (row, error) { return b.rawBadgerWrites(ctx, true, 1, 1000) })})
	for _, w := range []int{1, manyWriters} {
		cs = append(cs, config{fmt.Sprintf("sqlite/%d", w), "SQLite ledger (WAL, synchronous=FULL)", w,
			one(func(ctx context.Context) (row, error) { return b.sqliteWrites(ctx, w) })})
	}
	cs = append(cs, b.pgConfigs()...)
	for _, disk := range []bool{false, true} {
		key, name := "reads/memstore", "single-wallet reads, ledger, memstore"
		if disk {
			key, name = "reads/badgerstore", "single-wallet reads, ledger, badgerstore relaxed"
		}
		cs = append(cs, config{key, name, 1,
			func(ctx context.Context) ([]row, error) { return b.walletReads(ctx, disk, readSizes) }})
	}
	return cs
}

// median returns the row of the median rate among rows, one per round
// (the lower of the two middle ones for an even count), with every
// round's rate in its rounds.
func median(rows []row) row {
	sorted := slices.SortedFunc(slices.Values(rows), func(a, b row) int { return cmp.Compare(a.rate, b.rate) })
	m := sorted[(len(sorted)-1)/2]
	m.rounds = nil
	for _, r := range rows {
		m.rounds = append(m.rounds, r.rate)
	}
	return m
}

// sizeLabel names a ledger size in keys: 10k, 1M.
func sizeLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// realMain runs the program with the given arguments.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		duration = fs.Duration("duration", 3*time.Second, "how long each configuration runs")
		quick    = fs.Bool("quick", false, "smoke run: 300ms per configuration (unless -duration is set) and reads at 10,000 and 100,000 entries")
		out      = fs.String("out", "", "also write the report to this `file`, as Markdown")
		only     = fs.String("run", "", "run only the configurations whose key matches this `regexp` (keys are listed with -list)")
		list     = fs.Bool("list", false, "list the configurations' keys and exit")
		dir      = fs.String("dir", os.TempDir(), "make the stores' temporary directories in this `directory`")
		cpuprof  = fs.String("cpuprofile", "", "write a CPU profile of the whole run to this `file`")
		rounds   = fs.Int("rounds", 3, "run the write configurations this many `times`, in rotation, and report each one's median round (1 with -quick unless set)")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run . [flags]  (from the bench directory)\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	readSizes := []int{10_000, 1_000_000}
	if *quick {
		readSizes = []int{10_000, 100_000}
		if !set["duration"] {
			*duration = 300 * time.Millisecond
		}
		if !set["rounds"] {
			*rounds = 1
		}
	}
	if *duration <= 0 {
		return fmt.Errorf("-duration must be positive")
	}
	if *rounds < 1 {
		return fmt.Errorf("-rounds must be at least 1")
	}
	filter, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("-run: %w", err)
	}

	b := &bench{duration: *duration, parent: *dir, progress: stderr, pgURL: os.Getenv(pgURLEnv)}
	var cs []config
	for _, c := range b.configs(readSizes) {
		if filter.MatchString(c.key) {
			cs = append(cs, c)
		}
	}
	if *list {
		for _, c := range cs {
			fmt.Fprintf(stdout, "%-32s %s, %d goroutine(s)\n", c.key, c.name, c.writers)
		}
		return nil
	}
	if len(cs) == 0 {
		return fmt.Errorf("-run %q matches no configuration (see -list)", *only)
	}

	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	probe := 500 * time.Millisecond
	if *quick {
		probe = 100 * time.Millisecond
	}
	rep := report{
		machine:   describeMachine(*dir, probe),
		command:   strings.Join(append([]string{"go run ."}, args...), " "),
		duration:  *duration,
		rounds:    *rounds,
		readSizes: readSizes,
		quick:     *quick,
	}
	rep.postgres = noPostgres
	if b.pgURL != "" {
		if rep.postgres, err = describePostgres(ctx, b.pgURL); err != nil {
			return err
		}
	}
	start := time.Now()
	var (
		keys   []string             // in the order the rows first came
		byKey  = map[string][]row{} // every round's row of each key
		nTotal = 0
	)
	for _, c := range cs {
		if c.once() {
			nTotal++
		} else {
			nTotal += *rounds
		}
	}
	n := 0
	for round := 1; round <= *rounds; round++ {
		for _, c := range cs {
			if c.once() && round > 1 {
				continue
			}
			n++
			b.progressf("[%d/%d] %s: %s, %d goroutine(s) ... ", n, nTotal, c.key, c.name, c.writers)
			t := time.Now()
			rows, err := c.run(ctx)
			if err != nil {
				b.progressf("failed\n")
				return fmt.Errorf("%s: %w", c.key, err)
			}
			var rates []string
			for _, r := range rows {
				if r.key == "" {
					r.key, r.name, r.writers = c.key, c.name, c.writers
				}
				if _, seen := byKey[r.key]; !seen {
					keys = append(keys, r.key)
				}
				byKey[r.key] = append(byKey[r.key], r)
				rates = append(rates, commas(r.rate)+" "+r.unit)
			}
			b.progressf("%s (%.1fs)\n", strings.Join(rates, ", "), time.Since(t).Seconds())
		}
	}
	for _, k := range keys {
		rep.rows = append(rep.rows, median(byKey[k]))
	}
	rep.elapsed = time.Since(start)
	rep.fixed = b.fixed

	text := rep.markdown()
	if _, err := io.WriteString(stdout, text); err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}
