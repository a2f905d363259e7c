package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestV2PythonPurchase drives a purchase with a payment provider from
// Python with requests, as a shop that is not written in Go would:
// testdata/v2_purchase.py credits a wallet, holds the price of two
// purchases, captures one (the payment succeeded) and releases the other
// (it failed), then refunds the first by reversing its entry, checking
// the balance through v2 at each step. It runs against a real walletd
// subprocess, through a proxy that checks every request and answer
// against openapi.json.
func TestV2PythonPurchase(t *testing.T) {
	const imports = "import jwt, requests, cryptography"
	if _, err := os.Stat(debianPython); err != nil {
		t.Skipf("%s not found (%v): install Debian's python3-jwt python3-requests python3-cryptography", debianPython, err)
	}
	if out, err := exec.Command(debianPython, "-c", imports).CombinedOutput(); err != nil {
		t.Skipf("%s cannot %q (%v): install Debian's python3-jwt python3-requests python3-cryptography\n%s", debianPython, imports, err, out)
	}

	authDir := filepath.Join(t.TempDir(), "authorities")
	p := startWalletd(t, "-data", ":memory:", "-authorities", authDir)
	proxy := validatingProxy(t, p.baseURL())
	cfgPath := filepath.Join(t.TempDir(), "shop.json")
	request := strings.Replace(authorityRequestJSON, "http://127.0.0.1:8000", proxy.URL, 1)
	code, _, stderr := runWalletd(t, request, "create-authority", "-data", ":memory:", "-authorities", authDir, "-o", cfgPath, "-")
	require.Equal(t, 0, code, "stderr: %s", stderr)
	cfg, err := os.ReadFile(cfgPath)
	require.NoError(t, err)
	loadSDKClient(t, cfg, p.baseURL()).awaitAccepted()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, filepath.Join("testdata", "v2_purchase.py"), proxy.URL, cfgPath)
	// Only Debian's own packages: no user site, no PYTHONPATH or
	// PYTHONHOME meant for another Python.
	cmd.Env = []string{"PYTHONNOUSERSITE=1", "PYTHONDONTWRITEBYTECODE=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PYTHONPATH=") && !strings.HasPrefix(kv, "PYTHONHOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "v2_purchase.py failed:\n%s", out)
	require.Contains(t, strings.Split(string(out), "\n"), "v2 purchase flow ok", "v2_purchase.py output:\n%s", out)
	t.Logf("v2_purchase.py output:\n%s", out)

	assert.Equal(t, 0, p.stop(syscall.SIGTERM), "clean exit on SIGTERM")
	assert.NotContains(t, p.stderr.String(), "status=500", "no request got a 500")
}
