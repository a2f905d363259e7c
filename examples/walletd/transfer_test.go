package main

import (
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMoveLedger moves a ledger out of a Badger directory with walletd
// export and into another directory, and into PostgreSQL when
// LEDGER_PG_URL is set, with walletd import; the copies export the same
// bytes and serve the same wallets and items.
func TestMoveLedger(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg := createAuthorityCLI(t, data)
	p := startWalletd(t, "-data", data)
	c := loadSDKClient(t, cfg, p.baseURL())
	require.Equal(t, http.StatusOK, c.createEntry("alice", 50, "payday", nil).status)
	r := c.createEntry("alice", -20, "sword", map[string]any{"name": "Sword", "data": []any{1, "two"}})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, http.StatusOK, c.useItem(requireEntry(t, r.body["entry"], true)["entry_id"].(string)).status)
	require.Equal(t, http.StatusOK, c.createEntry("bob", 7, "gift", map[string]any{"name": "Hat"}).status)
	require.Equal(t, 0, p.stop(syscall.SIGTERM))

	code, dump, stderr := runWalletd(t, "", "export", "-data", data)
	require.Equal(t, 0, code, "stderr: %s", stderr)
	require.Contains(t, dump, `"user_id":"alice"`)
	file := filepath.Join(t.TempDir(), "ledger.jsonl")
	require.NoError(t, os.WriteFile(file, []byte(dump), 0o600))

	targets := map[string][]string{"badger": {"-data", filepath.Join(t.TempDir(), "copy")}}
	if url := os.Getenv("LEDGER_PG_URL"); url != "" {
		targets["postgres"] = []string{"-data", url, "-pg-schema", tempSchema(t, url)}
	} else {
		t.Log("LEDGER_PG_URL not set: moving to PostgreSQL not tested")
	}
	for name, target := range targets {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runWalletd(t, "", append([]string{"import"}, append(target, file)...)...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			assert.Contains(t, stderr, "imported and verified")

			code, again, stderr := runWalletd(t, "", append([]string{"export"}, target...)...)
			require.Equal(t, 0, code, "stderr: %s", stderr)
			assert.Equal(t, dump, again, "the copy exports the same bytes")

			// Importing twice is refused: the target is no longer empty.
			code, _, stderr = runWalletd(t, dump, append([]string{"import"}, target...)...)
			assert.Equal(t, 1, code)
			assert.Contains(t, stderr, "not empty")

			q := startWalletd(t, append(target, "-authorities", filepath.Join(data, "authorities"))...)
			c := loadSDKClient(t, cfg, q.baseURL())
			assert.Equal(t, map[string]int64{"alice": 30, "bob": 7}, requireWallets(t, c.getWallets(nil, nil)))
			assert.Len(t, requireInventory(t, c.getInventory(nil, nil, nil, ptr(true))), 1, "the used flag came along")
			assert.Len(t, requireInventory(t, c.getInventory(nil, nil, nil, ptr(false))), 1)
			require.Equal(t, 0, q.stop(syscall.SIGTERM))
		})
	}
}
