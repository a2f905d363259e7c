package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendUnixSeconds(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Unix(1629578729, 0), "1629578729.0"},
		{time.Unix(1629578729, 123000000), "1629578729.123"},
		{time.Unix(1629578729, 1), "1629578729.000000001"},
		{time.Unix(1629578729, 999999999), "1629578729.999999999"},
		{time.Unix(1629578729, 100), "1629578729.0000001"},
		{time.Unix(0, 0), "0.0"},
		{time.Unix(0, 5e8), "0.5"},
		{time.Unix(-1, 0), "-1.0"},
		{time.Unix(-2, 75e7), "-1.25"},
		{time.Unix(0, -5e8), "-0.5"},
		{time.Unix(1<<33, 0).In(time.FixedZone("x", 3600)), "8589934592.0"},
	} {
		got := string(appendUnixSeconds(nil, tc.t))
		assert.Equal(t, tc.want, got, "time %v", tc.t)
		var f float64
		require.NoError(t, json.Unmarshal([]byte(got), &f), "valid JSON number")
	}
}

func TestParseAmount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"-0", 0, true},
		{"99", 99, true},
		{"-5", -5, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"-9223372036854775808", -9223372036854775808, true},
		{"9223372036854775808", 0, false},
		{"01", 0, false},
		{"1.0", 0, false},
		{"1e2", 0, false},
		{"+1", 0, false},
		{`"1"`, 0, false},
		{"true", 0, false},
		{"null", 0, false},
		{"[1]", 0, false},
		{strings.Repeat("9", 100), 0, false},
	} {
		d, err := parseAmount(json.RawMessage(tc.in))
		if !tc.ok {
			var bad *badRequestError
			assert.ErrorAs(t, err, &bad, "amount %s", tc.in)
			continue
		}
		require.NoError(t, err, "amount %s", tc.in)
		assert.Equal(t, tc.want, d.IntPart(), "amount %s", tc.in)
	}
}

// FuzzCheckText: checkText never panics, and JSON text it lets through
// decodes without encoding/json replacing anything by U+FFFD.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{`{"a": "\ud83d\ude00"}`, `"\ud800"`, "\"\xff\"", `"\\ud800"`, `"\`, `"\u12`, `"\ud800\u`, `["\udc00"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if checkText(raw) != nil || !json.Valid(raw) || bytes.Contains(raw, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(raw), []byte(`\ufffd`)) {
			return
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("valid JSON %q does not decode: %v", raw, err)
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(out, []byte("\uFFFD")) || bytes.Contains(out, []byte(`\ufffd`)) {
			t.Fatalf("checkText let %q through, which decodes with U+FFFD: %s", raw, out)
		}
	})
}
