package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// walletdProcess is walletd running as a subprocess: the test binary
// re-executed with execMainEnv set.
type walletdProcess struct {
	t           *testing.T
	cmd         *exec.Cmd
	stderr      *syncBuffer
	addr        string // API listen address
	metricsAddr string
	exited      chan struct{}
	waitErr     error
}

// walletdCommand returns a command that runs walletd with args.
func walletdCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), execMainEnv+"=1")
	return cmd
}

// runWalletd runs a walletd command to completion and returns its exit
// status, standard output and standard error.
func runWalletd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := walletdCommand(t, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	require.NoError(t, err)
	return 0, stdout.String(), stderr.String()
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+) metrics_addr=(\S+)`)

// startWalletd starts walletd serve with args on loopback ports of the
// kernel's choosing, and waits until it logs where it listens.
func startWalletd(t *testing.T, args ...string) *walletdProcess {
	t.Helper()
	args = append([]string{"serve", "-addr", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0"}, args...)
	p := &walletdProcess{t: t, cmd: walletdCommand(t, args...), stderr: &syncBuffer{}, exited: make(chan struct{})}
	pipe, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	listening := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.Write([]byte(line + "\n"))
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				listening <- m
			}
		}
		io.Copy(io.Discard, pipe)
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("walletd %v stderr:\n%s", args, p.stderr.String())
		}
	})
	select {
	case m := <-listening:
		p.addr, p.metricsAddr = m[1], m[2]
	case <-p.exited:
		t.Fatalf("walletd exited before listening: %v\n%s", p.waitErr, p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("walletd did not start listening within 30s:\n%s", p.stderr.String())
	}
	return p
}

// stop sends sig and returns the exit status.
func (p *walletdProcess) stop(sig os.Signal) int {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(sig))
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("walletd did not exit within 30s of %v:\n%s", sig, p.stderr.String())
	}
	var exit *exec.ExitError
	if errors.As(p.waitErr, &exit) {
		return exit.ExitCode()
	}
	require.NoError(p.t, p.waitErr)
	return 0
}

func (p *walletdProcess) baseURL() string { return "http://" + p.addr }

const authorityRequestJSON = `{"api_base_url": "http://127.0.0.1:8000", "name": "corner shop", "owner": {"contact": "ops@example.com", "nickname": "ops"}}`

// createAuthorityCLI runs walletd create-authority on data and returns
// the configuration it prints.
func createAuthorityCLI(t *testing.T, data string) []byte {
	t.Helper()
	req := filepath.Join(t.TempDir(), "request.json")
	require.NoError(t, os.WriteFile(req, []byte(authorityRequestJSON), 0o600))
	code, stdout, stderr := runWalletd(t, "", "create-authority", "-data", data, req)
	require.Equal(t, 0, code, "stderr: %s", stderr)
	return []byte(stdout)
}

// TestRestart: entries and authorities survive stopping walletd with
// SIGTERM (a clean exit) and starting it again on the same directory; an
// authority created while walletd runs works within rescanInterval,
// without restart.
func TestRestart(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg := createAuthorityCLI(t, data) // before the first serve

	p := startWalletd(t, "-data", data)
	c := loadSDKClient(t, cfg, p.baseURL())
	require.Equal(t, http.StatusOK, c.checkServiceHealth().status)
	require.Equal(t, http.StatusOK, c.createEntry("alice", 50, "payday", nil).status)
	r := c.createEntry("alice", -20, "sword", map[string]any{"name": "Sword", "data": []any{1, "two"}})
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	sword := requireEntry(t, r.body["entry"], true)

	// A second authority, created while the server runs on the same
	// directory, is usable without a restart.
	late := loadSDKClient(t, createAuthorityCLI(t, data), p.baseURL())
	late.awaitAccepted()
	r = late.useItem(sword["entry_id"].(string))
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	require.Equal(t, http.StatusOK, late.createEntry("bob", 7, "late", nil).status)

	// A second server on the same directory is refused.
	code, _, stderr := runWalletd(t, "", "serve", "-data", data, "-addr", "127.0.0.1:0", "-metrics-addr", "")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "in use by another process")

	assert.Equal(t, 0, p.stop(syscall.SIGTERM), "clean exit on SIGTERM")
	assert.Contains(t, p.stderr.String(), "stopped cleanly")

	third := createAuthorityCLI(t, data) // between runs, for good measure
	p2 := startWalletd(t, "-data", data)
	c = loadSDKClient(t, cfg, p2.baseURL())
	late = loadSDKClient(t, third, p2.baseURL())
	late2 := loadSDKClient(t, cfg, p2.baseURL())
	assert.Equal(t, map[string]int64{"alice": 30, "bob": 7}, requireWallets(t, c.getWallets(nil, nil)))
	inv := requireInventory(t, late.getInventory(nil, nil, nil, ptr(true)))
	require.Len(t, inv, 1)
	assert.Equal(t, sword["entry_id"], inv[0]["entry_id"])
	assert.Equal(t, map[string]any{"name": "Sword", "used": true, "data": []any{json.Number("1"), "two"}}, inv[0]["item"])
	require.Equal(t, http.StatusOK, late2.createEntry("alice", -30, "all in", nil).status)
	requireError(t, c.createEntry("alice", -1, "one more", nil), http.StatusPaymentRequired, "not enough funds")

	assert.Equal(t, 0, p2.stop(syscall.SIGINT), "clean exit on SIGINT")
}

// TestMemoryData runs serve -data :memory: with authorities from
// -authorities.
func TestMemoryData(t *testing.T) {
	authDir := filepath.Join(t.TempDir(), "auths")
	code, cfg, stderr := runWalletd(t, authorityRequestJSON, "create-authority", "-data", ":memory:", "-authorities", authDir, "-")
	require.Equal(t, 0, code, "stderr: %s", stderr)
	p := startWalletd(t, "-data", ":memory:", "-authorities", authDir)
	c := loadSDKClient(t, []byte(cfg), p.baseURL())
	require.Equal(t, http.StatusOK, c.createEntry("u", 1, "r", nil).status)
	assert.Equal(t, map[string]int64{"u": 1}, requireWallets(t, c.getWallets(nil, nil)))
	assert.Equal(t, 0, p.stop(syscall.SIGTERM))
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	req := filepath.Join(dir, "request.json")
	require.NoError(t, os.WriteFile(req, []byte(authorityRequestJSON), 0o600))
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"api_base_url": "http://x", "owner": {"contact": "c", "nickname": "n"}, "extra": 1}`), 0o600))
	noName := filepath.Join(dir, "noname.json")
	require.NoError(t, os.WriteFile(noName, []byte(`{"api_base_url": "http://x", "owner": {"contact": "c", "nickname": "n"}}`), 0o600))
	data := filepath.Join(dir, "data")

	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		wantStderr string
	}{
		{"no command", nil, exitUsage, "usage:"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"help", []string{"help"}, exitOK, ""},
		{"serve bad flag", []string{"serve", "-port", "80"}, exitUsage, "flag provided but not defined: -port"},
		{"serve extra argument", []string{"serve", "now"}, exitUsage, "unexpected arguments"},
		{"serve -h", []string{"serve", "-h"}, exitOK, "-metrics-addr"},
		{"serve bad address", []string{"serve", "-data", ":memory:", "-authorities", dir + "/a", "-addr", "nope"}, exitFailure, "cannot listen"},
		{"create-authority without file", []string{"create-authority", "-data", data}, exitUsage, "want one REQUEST.json"},
		{"create-authority two files", []string{"create-authority", "-data", data, req, req}, exitUsage, "want one REQUEST.json"},
		{"create-authority missing file", []string{"create-authority", "-data", data, filepath.Join(dir, "missing.json")}, exitFailure, "no such file"},
		{"create-authority unknown key", []string{"create-authority", "-data", data, bad}, exitUsage, `unknown field "extra"`},
		{"create-authority missing name", []string{"create-authority", "-data", data, noName}, exitUsage, "missing or empty name"},
		{"create-authority unwritable dir", []string{"create-authority", "-authorities", req + "/sub", req}, exitFailure, "write authority"},
		{"create-authority -o to an existing file", []string{"create-authority", "-data", data, "-o", req, req}, exitFailure, "file exists"},
		{"create-authority -o to a missing directory", []string{"create-authority", "-data", data, "-o", filepath.Join(dir, "no", "cfg.json"), req}, exitFailure, "no such file"},
		{"revoke-authority without ID", []string{"revoke-authority", "-data", data}, exitUsage, "want one AUTHORITY_ID"},
		{"revoke-authority malformed ID", []string{"revoke-authority", "-data", data, "../x"}, exitUsage, "is not an authority ID"},
		{"revoke-authority unknown ID", []string{"revoke-authority", "-data", data, strings.Repeat("0", 32)}, exitFailure, "no authority 000"},
		{"serve -max-conns 0", []string{"serve", "-max-conns", "0"}, exitUsage, "-max-conns must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
			assert.Equal(t, tc.code, code, "stderr: %s", stderr.String())
			assert.Contains(t, stderr.String(), tc.wantStderr)
			if tc.code != exitOK {
				assert.Empty(t, stdout.String())
			}
		})
	}
	// No authority was written by the failed runs.
	_, err := os.Stat(filepath.Join(data, "authorities"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "authorities directory: %v", err)

	// Flags may follow the request file.
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitOK, run(context.Background(), []string{"create-authority", req, "-data", data}, nil, &stdout, &stderr), stderr.String())
	loadSDKClient(t, stdout.Bytes(), "")
	des, err := os.ReadDir(filepath.Join(data, "authorities"))
	require.NoError(t, err)
	assert.Len(t, des, 1)
}

// TestAuthoritiesDir: the authorities directory follows from -data and
// -authorities alone, never from -store, so that serve and
// create-authority (which has no -store) given the same -data agree.
func TestAuthoritiesDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config
		want string
	}{
		{"data directory", config{Data: "/srv/w"}, "/srv/w/authorities"},
		{"data directory, memory store", config{Data: "/srv/w", StoreKind: storeMemory}, "/srv/w/authorities"},
		{"data directory, postgres store", config{Data: "/srv/w", StoreKind: storePostgres, PG: "postgres://db/w"}, "/srv/w/authorities"},
		{"memory", config{Data: memoryData}, "walletd-data/authorities"},
		{"postgres URL", config{Data: "postgres://db/w"}, "walletd-data/authorities"},
		{"postgresql URL, badger store named", config{Data: "postgresql://db/w", StoreKind: storeBadger}, "walletd-data/authorities"},
		{"-authorities", config{Data: "/srv/w", StoreKind: storePostgres, Authorities: "/etc/walletd"}, "/etc/walletd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, filepath.FromSlash(tc.want), tc.cfg.authoritiesDir())
		})
	}

	// End to end: serve with a -store that differs from what -data looks
	// like finds what create-authority wrote for the same -data.
	t.Chdir(t.TempDir()) // where a wrong ./walletd-data would go
	data := filepath.Join(t.TempDir(), "w")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"create-authority", "-data", data, "-"}, strings.NewReader(authorityRequestJSON), &stdout, &stderr)
	require.Equal(t, exitOK, code, "stderr: %s", stderr.String())
	p := serveInProcess(t, func(ctx context.Context, stderr io.Writer) int {
		return run(ctx, []string{"serve", "-store", "memory", "-data", data, "-addr", "127.0.0.1:0", "-metrics-addr", ""}, nil, io.Discard, stderr)
	})
	c := loadSDKClient(t, stdout.Bytes(), "http://"+p.addr)
	r := c.getWallets(nil, nil)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	require.Equal(t, exitOK, p.stop())
	_, err := os.Stat(defaultData)
	assert.ErrorIs(t, err, os.ErrNotExist, "./%s", defaultData)
}
