//go:build race

package pgstore_test

// raceEnabled: the race detector slows every process several times, so
// tests skip their bounds on latency.
const raceEnabled = true
