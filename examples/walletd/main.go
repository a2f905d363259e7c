// Command walletd is the wallet service, rebuilt on the ledger library and
// wire-compatible with the original service's Python SDK
// (wallet-sdk-Noah-Huppert 1.1.0).
//
// Usage:
//
//	walletd serve [-data DIR] [-authorities DIR] [-operators DIR] [-addr HOST:PORT] [-metrics-addr HOST:PORT]
//	              [-store badger|memory|postgres] [-pg URL] [-pg-schema NAME] [-max-conns N]
//	              [-grantor-only-item-use]
//	walletd create-authority [-data DIR] [-authorities DIR] [-o FILE] REQUEST.json
//	walletd revoke-authority [-data DIR] [-authorities DIR] AUTHORITY_ID
//	walletd create-operator [-data DIR] [-operators DIR] [-cost N] NAME
//	walletd export [-data DIR] [-store ...] [-pg URL] [-pg-schema NAME] [FILE]
//	walletd import [-data DIR] [-store ...] [-pg URL] [-pg-schema NAME] [FILE]
//
// serve runs the HTTP API (GET /api/v1/health, POST /api/v1/entry, GET
// /api/v1/wallet, GET /api/v1/entry/inventory, POST
// /api/v1/entry/{entry_id}/inventory/use, GET /api/v1/changes) on -addr
// and Prometheus metrics at /metrics on -metrics-addr, until SIGINT or
// SIGTERM. It also serves the ops console at /console/, HTML pages for
// support staff (operators) that log in with a secret: see README.md.
//
// GET /api/v1/changes, an addition to the original API, streams the
// ledger's change feed as Server-Sent Events: one event a change, with
// the change's cursor as id, its kind (entry, item_used, limits,
// hold_placed, hold_released, hold_expired) as event, and the
// ledger.Change, marshalled by encoding/json on one line, as data. It
// resumes after the cursor in the Last-Event-ID header, as EventSource
// sends it on reconnecting, or else in ?after=; when both are given,
// Last-Event-ID wins. A value that is not a cursor is a 400 before the
// stream starts. It is authenticated like every other call, and any
// authority may read the whole feed: authorities are trusted
// applications. The stream follows new changes until the client hangs
// up or the server shuts down, which ends it at once; an idle stream
// gets a ": keep-alive" comment every 15 seconds.
//
// serve also runs API v2 under /api/v2: every capability of the ledger
// (entries, batches, transfers, reversals, holds, limits, balances,
// wallets, inventory, the change feed) with decimal-string amounts,
// Idempotency-Key headers, cursor paging and RFC 9457 problems, described
// by the OpenAPI 3.1 document it serves at GET /api/v2/openapi.json.
//
// create-authority reads {"api_base_url", "name", "owner": {"contact",
// "nickname"}}, stores a new authority with its public key in the
// authorities directory, and prints the authority client configuration
// file, the only place its private key ever appears: on standard output,
// or with -o in FILE, created with mode 0600.
//
// revoke-authority deletes an authority's file; a running server refuses
// its tokens within a second.
//
// create-operator creates a console operator called NAME (a lowercase
// letter, then up to 31 lowercase letters, digits, '.', '_' or '-') in
// the operators directory, DIR/operators/NAME.json with mode 0600,
// holding only a bcrypt hash of the operator's secret, and prints the
// secret, once, on standard output. The directory follows from -data
// and -operators as the authorities directory does from -data and
// -authorities; -cost is the hash's bcrypt cost (default 10). Removing
// the file revokes the operator: a running server refuses its next
// request.
//
// export writes the whole ledger as JSON Lines to FILE (default standard
// output); import loads such a file (default standard input) into an
// empty ledger and verifies it. Together they move a ledger between
// stores, say from Badger to PostgreSQL:
//
//	walletd export -data walletd-data | walletd import -data postgres://wallet@db/wallet
//
// DIR (default ./walletd-data) holds the ledger in DIR/ledger (Badger,
// durable) and the authorities in DIR/authorities/<authority_id>.json.
// With -data :memory: the ledger lives in memory, and with -data
// postgres://... in PostgreSQL; the authorities then come from
// -authorities (default ./walletd-data/authorities). The authorities
// directory follows from -data and -authorities alone, never from -store,
// so that serve and create-authority given the same -data agree on it.
//
// See README.md for a walk-through.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/walletledger/ledger"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const (
	defaultData        = "walletd-data"
	defaultAddr        = "127.0.0.1:8000"
	defaultMetricsAddr = "127.0.0.1:8001"
)

func main() {
	os.Exit(runMain())
}

// runMain runs walletd with the process's arguments, stopping serve on
// SIGINT or SIGTERM.
func runMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one kills at once.
		<-ctx.Done()
		stop()
	}()
	return run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

const usage = `usage:
  walletd serve [-data DIR] [-authorities DIR] [-operators DIR] [-addr HOST:PORT] [-metrics-addr HOST:PORT]
                [-store badger|memory|postgres] [-pg URL] [-pg-schema NAME] [-max-conns N]
                [-grantor-only-item-use]
  walletd create-authority [-data DIR] [-authorities DIR] [-o FILE] REQUEST.json
  walletd revoke-authority [-data DIR] [-authorities DIR] AUTHORITY_ID
  walletd create-operator [-data DIR] [-operators DIR] [-cost N] NAME
  walletd export [-data DIR] [-store ...] [-pg URL] [-pg-schema NAME] [FILE]
  walletd import [-data DIR] [-store ...] [-pg URL] [-pg-schema NAME] [FILE]

Run "walletd COMMAND -h" for a command's flags.
`

// run runs the command in args and returns the exit status: 0 on
// success, 1 on failure, 2 on a usage error. serve runs until ctx is
// done.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stderr)
	case "create-authority":
		return runCreateAuthority(args[1:], stdin, stdout, stderr)
	case "revoke-authority":
		return runRevokeAuthority(args[1:], stderr)
	case "create-operator":
		return runCreateOperator(args[1:], stdout, stderr)
	case "export", "import":
		return runTransfer(ctx, args[0], args[1:], stdin, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "walletd: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

// parseFlags parses args with fs, allowing flags after positional
// arguments, and returns the positional arguments. A nil error with
// help set means -h was asked for.
func parseFlags(fs *flag.FlagSet, args []string) (pos []string, help bool, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, true, nil
			}
			return nil, false, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, false, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func runServe(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("walletd serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", defaultData, "data `DIR`: the ledger in DIR/ledger, authorities in DIR/authorities; :memory: for a ledger in memory; a postgres:// URL for a ledger in PostgreSQL")
	authDir := fs.String("authorities", "", "authorities `DIR` (default DIR/authorities, or ./walletd-data/authorities when -data is :memory: or a postgres:// URL; -store plays no part)")
	opDir := fs.String("operators", "", "console operators `DIR` (default DIR/operators, or ./walletd-data/operators as for -authorities)")
	storeKind := fs.String("store", "", "ledger store: badger, memory or postgres (default: what -data looks like)")
	pg := fs.String("pg", "", "PostgreSQL `URL` for -store postgres (postgres://user@host/db)")
	pgSchema := fs.String("pg-schema", "", "PostgreSQL schema that holds the ledger (default walletledger)")
	addr := fs.String("addr", defaultAddr, "API listen address")
	metricsAddr := fs.String("metrics-addr", defaultMetricsAddr, "Prometheus metrics listen address; empty for none")
	grantorOnly := fs.Bool("grantor-only-item-use", false, "let only the authority that granted an item use it (403 for any other); by default any authority may, as in the original service")
	maxConns := fs.Int("max-conns", defaultMaxConns, "most API connections open at once; idle keep-alive connections are closed to make room, and others wait")
	pos, help, err := parseFlags(fs, args)
	switch {
	case help:
		return exitOK
	case err != nil:
		return exitUsage
	case len(pos) > 0:
		fmt.Fprintf(stderr, "walletd serve: unexpected arguments %q\n", pos)
		fs.Usage()
		return exitUsage
	case *data == "":
		fmt.Fprintln(stderr, "walletd serve: -data must not be empty")
		return exitUsage
	case *maxConns < 1:
		fmt.Fprintf(stderr, "walletd serve: -max-conns must be at least 1, got %d\n", *maxConns)
		return exitUsage
	}

	return runServer(ctx, config{
		Data: *data, StoreKind: *storeKind, PG: *pg, PGSchema: *pgSchema, Authorities: *authDir,
		Operators: *opDir, MaxConns: *maxConns, GrantorOnlyItemUse: *grantorOnly,
		Logger: slog.New(slog.NewTextHandler(stderr, nil)),
	}, *addr, *metricsAddr)
}

// runServer is serve once its flags are read: it serves cfg on addr, and
// its metrics on metricsAddr ("" for none), until ctx is done, and
// returns the exit status. It closes the ledger before it returns, and
// the status is 0, with "stopped cleanly" as the last log line, only if
// serving and closing both went well.
func runServer(ctx context.Context, cfg config, addr, metricsAddr string) int {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := newServer(ctx, cfg)
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitFailure
	}
	code := listenAndServe(ctx, s, cfg.Data, addr, metricsAddr)
	// Not deferred: a ledger that fails to close (say, Badger cannot
	// flush) is a failed run, and the exit status must say so.
	if err := s.Close(); err != nil {
		log.Error("cannot close the ledger", "err", err)
		return exitFailure
	}
	if code == exitOK {
		log.Info("stopped cleanly")
	}
	return code
}

// listenAndServe runs s on addr and metricsAddr until ctx is done and
// returns the exit status. It leaves s open.
func listenAndServe(ctx context.Context, s *server, data, addr, metricsAddr string) int {
	if ctx.Err() != nil { // stopped while opening the ledger
		return exitOK
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		s.log.Error("cannot listen", "err", err)
		return exitFailure
	}
	var mln net.Listener
	metricsShown := "off"
	if metricsAddr != "" {
		if mln, err = lc.Listen(ctx, "tcp", metricsAddr); err != nil {
			ln.Close()
			s.log.Error("cannot listen for metrics", "err", err)
			return exitFailure
		}
		metricsShown = mln.Addr().String()
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "metrics_addr", metricsShown, "data", redacted(data))
	if err := s.serve(ctx, ln, mln); err != nil {
		s.log.Error("stopped", "err", err)
		return exitFailure
	}
	return exitOK
}

func runCreateAuthority(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("walletd create-authority", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: walletd create-authority [-data DIR] [-authorities DIR] [-o FILE] REQUEST.json\n\n"+
			"REQUEST.json (\"-\" for standard input) holds\n"+
			"  {\"api_base_url\": \"http://127.0.0.1:8000\", \"name\": \"...\", \"owner\": {\"contact\": \"...\", \"nickname\": \"...\"}}\n"+
			"The authority client configuration, with the private key, is printed on standard output,\n"+
			"or written to a new FILE with mode 0600 with -o.\n\n")
		fs.PrintDefaults()
	}
	data := fs.String("data", defaultData, "data `DIR` whose authorities directory (DIR/authorities) gets the authority")
	authDir := fs.String("authorities", "", "authorities `DIR` (default DIR/authorities, or ./walletd-data/authorities when -data is :memory: or a postgres:// URL)")
	outFile := fs.String("o", "", "write the configuration to `FILE`, a new file created with mode 0600, instead of standard output")
	pos, help, err := parseFlags(fs, args)
	switch {
	case help:
		return exitOK
	case err != nil:
		return exitUsage
	case len(pos) != 1:
		fmt.Fprintf(stderr, "walletd create-authority: want one REQUEST.json, got %d arguments\n", len(pos))
		fs.Usage()
		return exitUsage
	case *data == "":
		fmt.Fprintln(stderr, "walletd create-authority: -data must not be empty")
		return exitUsage
	}

	in := stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			fmt.Fprintf(stderr, "walletd create-authority: %v\n", err)
			return exitFailure
		}
		defer f.Close()
		in = f
	}
	raw, err := io.ReadAll(io.LimitReader(in, maxBodyBytes+1))
	if err != nil {
		fmt.Fprintf(stderr, "walletd create-authority: read %s: %v\n", pos[0], err)
		return exitFailure
	}
	req, err := parseAuthorityRequest(bytes.NewReader(raw))
	if err != nil {
		fmt.Fprintf(stderr, "walletd create-authority: %s: %v\n", pos[0], err)
		return exitUsage
	}
	// The output file is created first, so that nothing is created if
	// it cannot be: it must be new (an existing file may hold another
	// authority's only private key, and would keep its own mode), and
	// mode 0600 makes the private key readable by its owner alone,
	// whatever the umask.
	var out *os.File
	if *outFile != "" {
		if out, err = os.OpenFile(*outFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			fmt.Fprintf(stderr, "walletd create-authority: %v\n", err)
			return exitFailure
		}
	}
	fail := func(err error) int {
		if out != nil {
			out.Close()
			os.Remove(*outFile)
		}
		fmt.Fprintf(stderr, "walletd create-authority: %v\n", err)
		return exitFailure
	}
	dir := config{Data: *data, Authorities: *authDir}.authoritiesDir()
	cfg, err := createAuthority(dir, req, time.Now())
	if err != nil {
		return fail(err)
	}
	b, err := json.MarshalIndent(cfg, "", "    ")
	if err == nil {
		err = writeConfig(stdout, out, append(b, '\n'))
	}
	if err != nil {
		// Nobody has the private key: the authority is of no use.
		os.Remove(filepath.Join(dir, cfg.AuthorityID+".json"))
		return fail(fmt.Errorf("write configuration: %w", err))
	}
	if out != nil {
		fmt.Fprintf(stderr, "walletd: configuration written to %s (mode 0600)\n", *outFile)
	}
	fmt.Fprintf(stderr, "walletd: created authority %s (%s) in %s; the configuration above is the only copy of its private key\n",
		cfg.AuthorityID, req.Name, dir)
	return exitOK
}

// writeConfig writes the client configuration b to out, synced and
// closed, or to stdout when out is nil.
func writeConfig(stdout io.Writer, out *os.File, b []byte) error {
	if out == nil {
		_, err := stdout.Write(b)
		return err
	}
	if _, err := out.Write(b); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

func runRevokeAuthority(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("walletd revoke-authority", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: walletd revoke-authority [-data DIR] [-authorities DIR] AUTHORITY_ID\n\n"+
			"Deletes the authority's file; a running server refuses its tokens within a second.\n"+
			"Its entries stay in the ledger.\n\n")
		fs.PrintDefaults()
	}
	data := fs.String("data", defaultData, "data `DIR` whose authorities directory (DIR/authorities) holds the authority")
	authDir := fs.String("authorities", "", "authorities `DIR` (default DIR/authorities, or ./walletd-data/authorities when -data is :memory: or a postgres:// URL)")
	pos, help, err := parseFlags(fs, args)
	switch {
	case help:
		return exitOK
	case err != nil:
		return exitUsage
	case len(pos) != 1:
		fmt.Fprintf(stderr, "walletd revoke-authority: want one AUTHORITY_ID, got %d arguments\n", len(pos))
		fs.Usage()
		return exitUsage
	case !authorityIDRE.MatchString(pos[0]):
		fmt.Fprintf(stderr, "walletd revoke-authority: %q is not an authority ID (32 lowercase hex digits)\n", truncate(pos[0], 80))
		return exitUsage
	case *data == "":
		fmt.Fprintln(stderr, "walletd revoke-authority: -data must not be empty")
		return exitUsage
	}
	dir := config{Data: *data, Authorities: *authDir}.authoritiesDir()
	if err := removeAuthorityFile(dir, pos[0]); err != nil {
		fmt.Fprintf(stderr, "walletd revoke-authority: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "walletd: revoked authority %s in %s; a running server refuses its tokens within a second\n", pos[0], dir)
	return exitOK
}

// runTransfer runs export (the ledger to FILE or standard output) or
// import (FILE or standard input into an empty ledger).
func runTransfer(ctx context.Context, cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("walletd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", defaultData, "data `DIR` whose ledger (DIR/ledger) to use; :memory: or a postgres:// URL also work")
	storeKind := fs.String("store", "", "ledger store: badger, memory or postgres (default: what -data looks like)")
	pg := fs.String("pg", "", "PostgreSQL `URL` for -store postgres")
	pgSchema := fs.String("pg-schema", "", "PostgreSQL schema that holds the ledger (default walletledger)")
	pos, help, err := parseFlags(fs, args)
	switch {
	case help:
		return exitOK
	case err != nil:
		return exitUsage
	case len(pos) > 1:
		fmt.Fprintf(stderr, "walletd %s: want at most one FILE, got %q\n", cmd, pos)
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "walletd %s: %v\n", cmd, err)
		return exitFailure
	}
	cfg := config{Data: *data, StoreKind: *storeKind, PG: *pg, PGSchema: *pgSchema}
	store, err := openStore(ctx, cfg, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		return fail(err)
	}
	l, err := ledger.New(store, ledger.WithPrecision(0, 18))
	if err != nil {
		store.Close()
		return fail(err)
	}
	file := "-"
	if len(pos) == 1 {
		file = pos[0]
	}
	switch {
	case cmd == "export" && file == "-":
		err = l.Export(ctx, stdout)
	case cmd == "export":
		err = exportFile(ctx, l, file)
	case file == "-":
		err = ledger.Import(ctx, l, stdin)
	default:
		err = importFile(ctx, l, file)
	}
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if cmd == "export" {
		return exitOK
	}
	fmt.Fprintf(stderr, "walletd import: ledger imported and verified\n")
	return exitOK
}

// exportFile writes l's export to a new file, synced before it is closed.
func exportFile(ctx context.Context, l *ledger.Ledger, name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	err = l.Export(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func importFile(ctx context.Context, l *ledger.Ledger, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return ledger.Import(ctx, l, f)
}
