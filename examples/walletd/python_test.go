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

// debianPython is Debian's own Python, for which the Debian packages
// below install the SDK's dependencies. A python3 earlier on the PATH
// (such as a pyenv build) does not have them.
const (
	debianPython     = "/usr/bin/python3"
	pythonSDKImports = "import jwt, requests, voluptuous, cryptography"
	pythonSDKPkgs    = "python3-jwt python3-requests python3-voluptuous python3-cryptography"
)

// TestPythonSDKClient drives a real walletd subprocess over loopback HTTP
// with testdata/sdk_client.py, a Python client that does what the
// original SDK does: PyJWT ES256 tokens, requests on the wire, strict
// voluptuous schemas on every answer. The authorities' configuration
// files are used as create-authority prints them.
func TestPythonSDKClient(t *testing.T) {
	if _, err := os.Stat(debianPython); err != nil {
		t.Skipf("%s not found (%v): install Debian's %s (CI installs them)", debianPython, err, pythonSDKPkgs)
	}
	if out, err := exec.Command(debianPython, "-c", pythonSDKImports).CombinedOutput(); err != nil {
		t.Skipf("%s cannot %q (%v): install Debian's %s (CI installs them)\n%s",
			debianPython, pythonSDKImports, err, pythonSDKPkgs, out)
	}

	// The server starts first, so that its real address can go into the
	// authorities' api_base_url; it picks them up without a restart.
	authDir := filepath.Join(t.TempDir(), "authorities")
	p := startWalletd(t, "-data", ":memory:", "-authorities", authDir)
	request := strings.Replace(authorityRequestJSON, "http://127.0.0.1:8000", p.baseURL(), 1)
	require.Contains(t, request, p.baseURL())
	dir := t.TempDir()
	var configs []string
	var clients []*sdkClient
	for _, name := range []string{"corner-shop.json", "other-shop.json"} {
		code, cfg, stderr := runWalletd(t, request, "create-authority", "-data", ":memory:", "-authorities", authDir, "-")
		require.Equal(t, 0, code, "stderr: %s", stderr)
		clients = append(clients, loadSDKClient(t, []byte(cfg), "")) // at the config's own api_base_url
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
		configs = append(configs, path)
	}
	for _, c := range clients {
		c.awaitAccepted()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, append([]string{filepath.Join("testdata", "sdk_client.py")}, configs...)...)
	// Only Debian's own packages: no user site, no PYTHONPATH or
	// PYTHONHOME meant for another Python.
	env := []string{"PYTHONNOUSERSITE=1", "PYTHONDONTWRITEBYTECODE=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PYTHONPATH=") && !strings.HasPrefix(kv, "PYTHONHOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("sdk_client.py did not finish within 60s:\n%s", out)
	}
	require.NoError(t, err, "sdk_client.py failed:\n%s", out)
	require.Contains(t, strings.Split(string(out), "\n"), "sdk walkthrough ok", "sdk_client.py output:\n%s", out)
	t.Logf("sdk_client.py output:\n%s", out)

	assert.Equal(t, 0, p.stop(syscall.SIGTERM), "clean exit on SIGTERM")
	assert.NotContains(t, p.stderr.String(), "status=500", "no request got a 500")
}
