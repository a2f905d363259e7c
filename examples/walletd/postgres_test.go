package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestPostgresReplicas runs two walletd processes on one PostgreSQL
// ledger, as two replicas behind a load balancer: each sees the other's
// writes at once, and racing through both neither overdraws a wallet nor
// uses an item twice.
func TestPostgresReplicas(t *testing.T) {
	url := os.Getenv("LEDGER_PG_URL")
	if url == "" {
		t.Skip("walletd: LEDGER_PG_URL not set; see README")
	}
	schema := tempSchema(t, url)
	// Two walletd processes, one named by -store and -pg, the other by a
	// postgres:// -data, sharing the authorities directory.
	authDir := filepath.Join(t.TempDir(), "authorities")
	code, cfg, stderr := runWalletd(t, authorityRequestJSON, "create-authority", "-authorities", authDir, "-")
	require.Equal(t, 0, code, "stderr: %s", stderr)
	a := startWalletd(t, "-store", "postgres", "-pg", url, "-pg-schema", schema, "-authorities", authDir)
	b := startWalletd(t, "-data", url, "-pg-schema", schema, "-authorities", authDir)
	viaA := loadSDKClient(t, []byte(cfg), a.baseURL())
	viaB := *loadSDKClient(t, []byte(cfg), b.baseURL())

	r := viaA.createEntry("alice", 100, "payday", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	r = viaB.getWallets([]string{"alice"}, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"wallets": [{"user_id": "alice", "total": 100}]}`, string(r.raw), "B sees A's entry at once")

	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := viaA
			if i%2 == 1 {
				c = &viaB
			}
			r, err := c.tryCreateEntry("alice", -7, "spend", nil)
			switch {
			case err != nil:
				t.Errorf("spend: %v", err)
			case r.status == http.StatusOK:
				ok.Add(1)
			case r.status == http.StatusPaymentRequired:
				refused.Add(1)
			default:
				t.Errorf("spend: %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(14), ok.Load(), "100 affords fourteen spends of 7 across both replicas")
	require.Equal(t, int64(6), refused.Load())
	for _, c := range []*sdkClient{viaA, &viaB} {
		r := c.getWallets([]string{"alice"}, nil)
		require.JSONEq(t, `{"wallets": [{"user_id": "alice", "total": 2}]}`, string(r.raw))
	}

	item := viaA.createEntry("bob", 0, "prize", map[string]any{"name": "ticket"})
	require.Equal(t, http.StatusOK, item.status)
	id := item.body["entry"].(map[string]any)["entry_id"].(string)
	var used, conflicts atomic.Int64
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := viaA
			if i%2 == 1 {
				c = &viaB
			}
			r, err := c.tryUseItem(id)
			switch {
			case err != nil:
				t.Errorf("use: %v", err)
			case r.status == http.StatusOK:
				used.Add(1)
			case r.status == http.StatusConflict:
				conflicts.Add(1)
			default:
				t.Errorf("use: %d %s", r.status, r.raw)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(1), used.Load(), "the item is used once across both replicas")
	require.Equal(t, int64(9), conflicts.Load())
	require.Equal(t, 0, a.stop(syscall.SIGTERM))
	require.Equal(t, 0, b.stop(syscall.SIGTERM))
}

// tempSchema names a new PostgreSQL schema for a test in the database at
// url, and drops it when the test ends.
func tempSchema(t *testing.T, url string) string {
	t.Helper()
	schema := fmt.Sprintf("walletd_test_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		require.NoError(t, err)
	})
	return schema
}

// TestRedactedData: a password in a postgres:// -data never reaches the
// logs.
func TestRedactedData(t *testing.T) {
	require.Equal(t, "postgres://wallet:xxxxx@db.example/wallet", redacted("postgres://wallet:s3cret@db.example/wallet"))
	require.Equal(t, "walletd-data", redacted("walletd-data"))
	require.Equal(t, ":memory:", redacted(":memory:"))
}
