package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMetrics(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	require.Equal(t, http.StatusOK, c.createEntry("u", 10, "r", map[string]any{"name": "n"}).status)
	require.Equal(t, http.StatusOK, c.createEntry("u", 5, "r", nil).status)
	require.Equal(t, http.StatusPaymentRequired, c.createEntry("u", -100, "r", nil).status)
	id := requireInventory(t, c.getInventory(nil, nil, nil, nil))[0]["entry_id"].(string)
	require.Equal(t, http.StatusOK, c.useItem(id).status)
	require.Equal(t, http.StatusConflict, c.useItem(id).status)
	require.Equal(t, http.StatusForbidden, c.doAuth(http.MethodGet, "/wallet", nil, nil, "garbled").status)
	require.Equal(t, http.StatusNotFound, c.do(http.MethodGet, "/nope", nil, nil).status)
	require.Equal(t, http.StatusMethodNotAllowed, c.do("BREW", "/wallet", nil, nil).status)

	ms := httptest.NewServer(env.srv.MetricsHandler())
	defer ms.Close()
	res, err := http.Get(ms.URL + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	text := string(raw)
	lines := strings.Split(text, "\n")

	for _, want := range []string{
		`walletd_http_requests_total{code="200",method="POST",route="/api/v1/entry"} 2`,
		`walletd_http_requests_total{code="402",method="POST",route="/api/v1/entry"} 1`,
		`walletd_http_requests_total{code="200",method="POST",route="/api/v1/entry/{entry_id}/inventory/use"} 1`,
		`walletd_http_requests_total{code="409",method="POST",route="/api/v1/entry/{entry_id}/inventory/use"} 1`,
		`walletd_http_requests_total{code="403",method="GET",route="/api/v1/wallet"} 1`,
		`walletd_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`walletd_http_requests_total{code="405",method="OTHER",route="/api/v1/wallet"} 1`,
		`walletd_http_request_duration_seconds_count{method="POST",route="/api/v1/entry"} 3`,
		"walletd_entries_created_total 2",
		"walletd_not_enough_funds_total 1",
		"walletd_items_used_total 1",
		`walletd_auth_failures_total{reason="malformed"} 1`,
	} {
		assert.Contains(t, lines, want)
	}
	// The Go and process collectors.
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_open_fds"} {
		assert.True(t, slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, name+" ") }), "metric %s", name)
	}
	assert.False(t, strings.Contains(text, "BREW"), "methods outside the standard set are not labels")
}
