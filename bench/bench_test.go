package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestQuickRun runs the whole comparison in quick mode with a very short
// duration: every configuration must run, every row must show a rate,
// every target must be evaluated, and -out must get what stdout got. It
// checks no numbers: on a shared machine they mean nothing at this
// duration.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every configuration; skipped with -short")
	}
	out := filepath.Join(t.TempDir(), "results.md")
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-duration", "50ms", "-dir", t.TempDir(), "-out", out}
	if err := realMain(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("realMain(%q): %v\nstderr:\n%s", args, err, stderr.String())
	}
	report := stdout.String()

	b := &bench{pgURL: os.Getenv(pgURLEnv)}
	for _, c := range b.configs([]int{10_000, 100_000}) {
		if !strings.HasPrefix(c.key, "reads/") && !strings.Contains(report, "| "+c.name) {
			t.Errorf("no row for %s (%s)", c.key, c.name)
		}
	}
	for _, want := range []string{
		"read one wallet, ledger, memstore, 100,000 entries",
		"read one wallet, ledger, badgerstore relaxed, 100,000 entries",
		"## Targets",
		"- machine: ",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, line := range strings.Split(report, "\n") {
		if strings.Contains(line, " 0 entries/s") || strings.Contains(line, " 0 reads/s") {
			t.Errorf("a row measured nothing: %s", line)
		}
		if strings.Contains(line, "n/a (not run)") {
			t.Errorf("a target was not evaluated: %s", line)
		}
	}
	targets := 8
	if os.Getenv(pgURLEnv) != "" {
		targets++ // pgstore against the hand-written PostgreSQL ledger
	} else if !strings.Contains(report, "- postgres: "+noPostgres) {
		t.Errorf("report lacks the note that the PostgreSQL rows were skipped")
	}
	if n := strings.Count(report, "| PASS") + strings.Count(report, "| MISS"); n != targets {
		t.Errorf("got %d evaluated targets, want %d\n%s", n, targets, report)
	}
	file, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != report {
		t.Errorf("-out file differs from stdout")
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		want    string // in stdout
	}{
		{name: "list", args: []string{"-list"}, want: "badgerstore-durable/64"},
		{name: "list filtered", args: []string{"-list", "-run", "^sqlite/"}, want: "sqlite/64"},
		{name: "bad regexp", args: []string{"-run", "("}, wantErr: true},
		{name: "no match", args: []string{"-run", "nothing-matches"}, wantErr: true},
		{name: "bad duration", args: []string{"-duration", "0s"}, wantErr: true},
		{name: "stray argument", args: []string{"extra"}, wantErr: true},
		{name: "no rounds", args: []string{"-rounds", "0"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := realMain(context.Background(), tt.args, &stdout, &stderr)
			if (err != nil) != tt.wantErr {
				t.Fatalf("realMain(%q) error = %v, want error: %v", tt.args, err, tt.wantErr)
			}
			if !strings.Contains(stdout.String(), tt.want) {
				t.Errorf("realMain(%q) printed %q, want it to contain %q", tt.args, stdout.String(), tt.want)
			}
		})
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"commas small", commas(999), "999"},
		{"commas thousands", commas(1234.6), "1,235"},
		{"commas millions", commas(1234567), "1,234,567"},
		{"commas negative", commas(-1234), "-1,234"},
		{"times small", times(0.456), "0.46x"},
		{"times large", times(12.34), "12.3x"},
		{"sizeLabel 10k", sizeLabel(10_000), "10k"},
		{"sizeLabel 1M", sizeLabel(1_000_000), "1M"},
		{"sizeLabel odd", sizeLabel(1234), "1234"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestMedian checks that a row is its median round, with every round's
// rate kept in order.
func TestMedian(t *testing.T) {
	rows := []row{{key: "k", rate: 30, entries: 3}, {key: "k", rate: 10, entries: 1}, {key: "k", rate: 20, entries: 2}}
	m := median(rows)
	if m.rate != 20 || m.entries != 2 {
		t.Errorf("median of rates 30, 10, 20 = rate %v (entries %d), want the round of 20", m.rate, m.entries)
	}
	if !slices.Equal(m.rounds, []float64{30, 10, 20}) {
		t.Errorf("rounds %v, want 30, 10, 20", m.rounds)
	}
	if m := median(rows[:2]); m.rate != 10 {
		t.Errorf("median of rates 30, 10 = %v, want the lower middle, 10", m.rate)
	}
	if m := median(rows[:1]); m.rate != 30 || len(m.rounds) != 1 {
		t.Errorf("median of one round = %v %v", m.rate, m.rounds)
	}
}

// TestRounds runs a write configuration in two rounds and a read
// configuration once: the write row appears once in the table, its two
// rounds in the list of rates by round, and the reads only in the table.
func TestRounds(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-duration", "20ms", "-rounds", "2", "-run", "^map/1$|^reads/memstore", "-dir", t.TempDir()}
	if err := realMain(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("realMain(%q): %v\nstderr:\n%s", args, err, stderr.String())
	}
	report := stdout.String()
	if n := strings.Count(stderr.String(), "map/1: "); n != 2 {
		t.Errorf("map/1 ran %d times, want 2\n%s", n, stderr.String())
	}
	if n := strings.Count(stderr.String(), "reads/memstore: "); n != 1 {
		t.Errorf("reads/memstore ran %d times, want once\n%s", n, stderr.String())
	}
	if n := strings.Count(report, "| bare map + mutex (in-memory ceiling)"); n != 2 {
		t.Errorf("the bare map's row appears %d times, want twice (table and rounds)\n%s", n, report)
	}
	_, rounds, ok := strings.Cut(report, "Every round's rate:")
	if !ok {
		t.Fatalf("report lacks the rates by round\n%s", report)
	}
	rounds, _, _ = strings.Cut(rounds, "## Targets")
	for _, line := range strings.Split(rounds, "\n") {
		if strings.HasPrefix(line, "| bare map") && strings.Count(line, "entries/s") != 1 || strings.Contains(line, "read one wallet") {
			t.Errorf("rates by round: unexpected line %q", line)
		}
	}
	if !strings.Contains(report, ", 2 rounds") {
		t.Errorf("command line lacks the rounds\n%s", report)
	}
}
