package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// row is one configuration's measurements.
type row struct {
	key, name string
	writers   int
	unit      string    // "entries/s" or "reads/s"
	rate      float64   // operations per second
	entries   int64     // entries written, or the ledger's size for reads
	mem       float64   // heap bytes per entry; < 0 when not measured
	disk      float64   // bytes on disk per entry after Close; < 0 when not measured
	own       float64   // bytes of an entry's own fields; 0 when not measured
	rounds    []float64 // the rate of every round, in order, when there were several
}

// report is a run's results.
type report struct {
	machine   machine
	command   string
	duration  time.Duration
	rounds    int // how many times each write configuration ran
	readSizes []int
	quick     bool
	rows      []row
	elapsed   time.Duration
	fixed     map[string]int64 // bytes of an empty store after Close, by kind
	postgres  string           // the PostgreSQL server, or why its rows did not run
}

// comparison is a row's ratio to the ceiling it is judged against.
type comparison struct{ of, to, label string }

// comparisons lists each row's ceilings. Rows not listed are ceilings or
// baselines themselves.
var comparisons = []comparison{
	{"memstore/1", keyMap, "bare map"},
	{"memstore/64", keyMap, "bare map"},
	{"memstore/1", "map-entries/1", "map with entries"},
	{"memstore/1", keyMapCeiling, "map ceiling"},
	{keyMapCeiling, keyMap, "bare map"},
	{"memstore/64", "map-entries/1", "map with entries"},
	{"map-entries/1", keyMap, "bare map"},
	{"badgerstore-relaxed/1", "badger-nosync/1", "raw Badger sync off, 1 writer"},
	{"badgerstore-relaxed/64", "badger-nosync/64", "raw Badger sync off, 64 writers"},
	{"badgerstore-durable/1", keyRawSync1, "raw Badger sync on, 1 writer"},
	{"badgerstore-durable/1", keySQLite1, "SQLite, 1 writer"},
	{"badgerstore-durable/64", keyRawSync1, "raw Badger sync on, 1 writer"},
	{"badgerstore-durable/64", keySQLite1, "SQLite, 1 writer"},
	{keyDurableBatch, keyRawSyncBatch, "raw Badger 1,000/txn"},
	{"badger-sync/64", keyRawSync1, "raw Badger sync on, 1 writer"},
	{"sqlite/64", keySQLite1, "SQLite, 1 writer"},
	{keyPgstoreMany, keyPgHandMany, "hand-written PostgreSQL, 64 writers"},
}

func (rep *report) find(key string) (row, bool) {
	for _, r := range rep.rows {
		if r.key == key {
			return r, true
		}
	}
	return row{}, false
}

// ratio returns the rate of row of over that of row to.
func (rep *report) ratio(of, to string) (float64, bool) {
	a, ok1 := rep.find(of)
	b, ok2 := rep.find(to)
	if !ok1 || !ok2 || b.rate == 0 {
		return 0, false
	}
	return a.rate / b.rate, true
}

// readGrowth returns how much slower a single-wallet read is at the
// largest ledger size than at the smallest, by latency.
func (rep *report) readGrowth(prefix string) (float64, bool) {
	small := prefix + sizeLabel(rep.readSizes[0])
	large := prefix + sizeLabel(rep.readSizes[len(rep.readSizes)-1])
	return rep.ratio(small, large) // latency ratio large/small = rate small/large
}

// vs is a row's "vs ceiling" cell.
func (rep *report) vs(r row) string {
	var parts []string
	for _, c := range comparisons {
		if c.of != r.key {
			continue
		}
		if x, ok := rep.ratio(c.of, c.to); ok {
			parts = append(parts, fmt.Sprintf("%s %s", times(x), c.label))
		}
	}
	for _, prefix := range []string{keyReadsMemPrefix, keyReadsBadPrefix} {
		large := prefix + sizeLabel(rep.readSizes[len(rep.readSizes)-1])
		if r.key == large {
			if x, ok := rep.readGrowth(prefix); ok {
				parts = append(parts, fmt.Sprintf("latency %s the %s read", times(x), commas(float64(rep.readSizes[0]))))
			}
		}
	}
	return strings.Join(parts, "; ")
}

// target is one of the performance targets (issues 5 and 14), evaluated.
type target struct {
	what     string
	measured string
	want     string
	met      bool
	known    bool // false when its rows did not run
}

func (rep *report) targets() []target {
	var ts []target
	atLeast := func(what, of, to string, min float64, label string) {
		t := target{what: what, want: fmt.Sprintf(">= %s %s", times(min), label)}
		if x, ok := rep.ratio(of, to); ok {
			t.measured, t.met, t.known = fmt.Sprintf("%s %s", times(x), label), x >= min, true
		}
		ts = append(ts, t)
	}
	atLeast("memstore, 1 goroutine", keyMemstore1, keyMapCeiling, 0.5, "map + mutex with entries appended as structs")
	atLeast("badgerstore relaxed, 1 goroutine", keyRelaxed1, keyRawNoSync1, 0.7, "raw Badger sync off, 1 txn/entry")
	atLeast("badgerstore durable, 64 writers", keyDurableMany, keyRawSync1, 10, "raw Badger sync on, 1 txn/entry, 1 writer")
	atLeast("badgerstore durable, 64 writers", keyDurableMany, keySQLite1, 10, "SQLite ledger, 1 writer")
	atLeast("badgerstore durable, CreateEntries of 1,000", keyDurableBatch, keyRawSyncBatch, 0.7, "raw Badger 1,000 entries/txn, sync on")
	if rep.postgres != noPostgres {
		atLeast("pgstore, 64 callers", keyPgstoreMany, keyPgHandMany, 3, "hand-written PostgreSQL ledger, 64 callers")
	}

	small, large := rep.readSizes[0], rep.readSizes[len(rep.readSizes)-1]
	for _, s := range []struct{ name, prefix string }{{"memstore", keyReadsMemPrefix}, {"badgerstore", keyReadsBadPrefix}} {
		t := target{
			what: fmt.Sprintf("single-wallet read at %s entries vs %s, %s", commas(float64(large)), commas(float64(small)), s.name),
			want: "latency <= 1.30x",
		}
		if x, ok := rep.readGrowth(s.prefix); ok {
			t.measured, t.met, t.known = "latency "+times(x), x <= 1.3, true
		}
		ts = append(ts, t)
	}

	// Memory: from the largest memstore read fill, or else from the
	// one-goroutine write row.
	t := target{what: "memstore memory per entry", want: "<= 2x the entry's own field bytes"}
	best, ok := rep.find(keyReadsMemPrefix + sizeLabel(large))
	if !ok {
		best, ok = rep.find(keyMemstore1)
	}
	if ok && best.mem >= 0 && best.own > 0 {
		t.measured = fmt.Sprintf("%.0f B = %s own fields (%.0f B), %s entries",
			best.mem, times(best.mem/best.own), best.own, commas(float64(best.entries)))
		t.met, t.known = best.mem <= 2*best.own, true
	}
	return append(ts, t)
}

// markdown renders the report.
func (rep *report) markdown() string {
	var b strings.Builder
	m := rep.machine
	fmt.Fprintf(&b, "# Ledger comparison\n\n")
	fmt.Fprintf(&b, "- machine: %s, %d cores (GOMAXPROCS %d), %s %s\n", m.cpu, m.cores, m.gomaxprocs, m.goVersion, m.osArch)
	fmt.Fprintf(&b, "- date: %s\n", m.date.Format("2006-01-02 15:04 UTC"))
	if m.library != "" {
		fmt.Fprintf(&b, "- library: commit %s\n", m.library)
	}
	fmt.Fprintf(&b, "- temp dir: %s, %s; fsync rate %s/s (100-byte append + fsync)\n", m.tempDir, m.fs, commas(m.fsyncs))
	if rep.postgres != "" {
		fmt.Fprintf(&b, "- postgres: %s\n", rep.postgres)
	}
	fmt.Fprintf(&b, "- command: `cd bench && %s` (%v per configuration", rep.command, rep.duration)
	if rep.rounds > 1 {
		fmt.Fprintf(&b, ", %d rounds", rep.rounds)
	}
	if rep.quick {
		fmt.Fprintf(&b, ", quick mode")
	}
	fmt.Fprintf(&b, "; the run took %.0fs)\n\n", rep.elapsed.Seconds())

	t := table{header: []string{"configuration", "goroutines", "rate", "vs ceiling", "entries", "memory B/entry", "disk B/entry"},
		right: []bool{false, true, true, false, true, true, true}}
	for _, r := range rep.rows {
		mem := "-"
		if r.mem >= 0 {
			mem = fmt.Sprintf("%.0f", r.mem)
			if r.own > 0 {
				mem += fmt.Sprintf(" (own fields %.0f)", r.own)
			}
		}
		disk := "-"
		if r.disk >= 0 {
			disk = fmt.Sprintf("%.0f", r.disk)
		}
		t.add(r.name, fmt.Sprint(r.writers), commas(r.rate)+" "+r.unit, rep.vs(r), commas(float64(r.entries)), mem, disk)
	}
	b.WriteString(t.String())

	if rep.rounds > 1 {
		fmt.Fprintf(&b, "\nEach write configuration ran %d times, in rotation (the whole list,\n"+
			"then again), each time on a fresh store; a row above is its median\n"+
			"round, and ratios are between medians. Every round's rate:\n\n", rep.rounds)
		rt := table{header: []string{"configuration", "goroutines", "rates by round"}, right: []bool{false, true, false}}
		for _, r := range rep.rows {
			if len(r.rounds) < 2 {
				continue
			}
			var rates []string
			for _, x := range r.rounds {
				rates = append(rates, commas(x))
			}
			rt.add(r.name, fmt.Sprint(r.writers), strings.Join(rates, ", ")+" "+r.unit)
		}
		b.WriteString(rt.String())
	}

	b.WriteString("\n## Targets\n\n")
	tt := table{header: []string{"target", "measured", "wanted", "result"}}
	for _, x := range rep.targets() {
		res, measured := "n/a (not run)", "-"
		if x.known {
			res, measured = "MISS", x.measured
			if x.met {
				res = "PASS"
			}
		}
		tt.add(x.what, measured, x.want, res)
	}
	b.WriteString(tt.String())
	b.WriteString(`
Rates count every call, a refused spend included. "entries" is what a
write configuration wrote (refused spends write nothing) or the size of the
ledger a read configuration read from. Memory is the growth of the live
heap (after a full GC) per entry written; "own fields" is the bytes of an
entry's ID, authority, user and reason, 8 for CreatedOn and the amount's
coefficient. Disk is the size of the store's files after Close, less that
of an empty store of the same kind, per entry.
`)
	if rep.postgres != noPostgres {
		b.WriteString("For the PostgreSQL rows it is the growth of the schema's tables, indexes and TOAST included.\n")
	}
	if len(rep.fixed) > 0 {
		kinds := slices.Sorted(maps.Keys(rep.fixed))
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s %s B", k, commas(float64(rep.fixed[k]))))
		}
		fmt.Fprintf(&b, "Empty stores after Close (subtracted): %s.\n", strings.Join(parts, ", "))
	}
	return b.String()
}

// table is a Markdown table whose columns line up in a terminal too.
type table struct {
	header []string
	right  []bool // right-align column i
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i < len(t.right) && t.right[i] {
				fmt.Fprintf(&b, " %s%s |", pad, c)
			} else {
				fmt.Fprintf(&b, " %s%s |", c, pad)
			}
		}
		b.WriteString("\n")
	}
	line(t.header)
	b.WriteString("|")
	for i, w := range width {
		dashes := strings.Repeat("-", max(w, 3))
		if i < len(t.right) && t.right[i] {
			dashes = dashes[1:] + ":"
		}
		fmt.Fprintf(&b, " %s |", dashes)
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

// commas formats x rounded to an integer with thousands separators.
func commas(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return fmt.Sprint(x)
	}
	s := fmt.Sprintf("%.0f", math.Abs(x))
	var b strings.Builder
	if x <= -0.5 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// times formats a ratio: 0.62x, 12.3x.
func times(x float64) string {
	if x >= 10 {
		return fmt.Sprintf("%.1fx", x)
	}
	return fmt.Sprintf("%.2fx", x)
}
