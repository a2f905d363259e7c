package main

import (
	"context"
	"errors"
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

// originalSDKDir is where the original Python SDK (the folder that holds
// the wallet_sdk package) sits, relative to the repository's root: CI
// puts a copy of shared/ beside the clone.
var originalSDKDir = filepath.Join("..", "shared", "seed", "original", "py-sdk")

// moduleRoot returns the directory of the go.mod above the working
// directory: the repository's root.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for range 64 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	t.Fatalf("no go.mod above the working directory")
	return ""
}

// TestPythonSDKClient drives a real walletd subprocess over loopback HTTP
// with the original Python SDK (wallet_sdk 1.1.0), unchanged, through
// testdata/sdk_walkthrough.py: the SDK page's walk-through, with every
// answer checked by the SDK's own voluptuous schemas. The authorities'
// configuration files are used as create-authority -o writes them.
func TestPythonSDKClient(t *testing.T) {
	sdk, err := filepath.Abs(filepath.Join(moduleRoot(t), originalSDKDir))
	require.NoError(t, err)
	if _, err := os.Stat(filepath.Join(sdk, "wallet_sdk", "__init__.py")); err != nil {
		t.Skipf("the original Python SDK is not at %s (%v): put a copy of shared/ beside the repository", sdk, err)
	}
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
		path := filepath.Join(dir, name)
		code, _, stderr := runWalletd(t, request, "create-authority", "-data", ":memory:", "-authorities", authDir, "-o", path, "-")
		require.Equal(t, 0, code, "stderr: %s", stderr)
		cfg, err := os.ReadFile(path)
		require.NoError(t, err)
		clients = append(clients, loadSDKClient(t, cfg, "")) // at the config's own api_base_url
		configs = append(configs, path)
	}
	for _, c := range clients {
		c.awaitAccepted()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, append([]string{filepath.Join("testdata", "sdk_walkthrough.py")}, configs...)...)
	// Only Debian's own packages and the SDK: no user site, no
	// PYTHONPATH or PYTHONHOME meant for another Python.
	env := []string{"PYTHONNOUSERSITE=1", "PYTHONDONTWRITEBYTECODE=1", "PYTHONPATH=" + sdk}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PYTHONPATH=") && !strings.HasPrefix(kv, "PYTHONHOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("sdk_walkthrough.py did not finish within 60s:\n%s", out)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("sdk_walkthrough.py failed (%v):\n%s", err, out)
	}
	require.NoError(t, err)
	lines := strings.Split(string(out), "\n")
	want, err := filepath.EvalSymlinks(filepath.Join(sdk, "wallet_sdk", "__init__.py"))
	require.NoError(t, err)
	assert.Contains(t, lines, "wallet_sdk: "+want, "the walk-through ran the original SDK")
	require.Contains(t, lines, "sdk walkthrough ok", "sdk_walkthrough.py output:\n%s", out)
	t.Logf("sdk_walkthrough.py output:\n%s", out)

	assert.Equal(t, 0, p.stop(syscall.SIGTERM), "clean exit on SIGTERM")
	assert.NotContains(t, p.stderr.String(), "status=500", "no request got a 500")
}
