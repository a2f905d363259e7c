package main

// Operators are the support staff who use the console (/console). Like
// authorities, they are plain files, one per operator, in the operators
// directory: <name>.json holding the name, the creation time and a bcrypt
// hash of the operator's secret. The secret itself is printed once by
// create-operator and stored nowhere.
//
// The server reads an operator's file at each login and at each request
// of a session, so that an operator created while the server runs can
// log in at once, and one whose file is removed (or replaced, with a new
// secret) is logged out at its next request.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// operatorNameRE matches operator names: a lowercase letter, then up to
// 31 lowercase letters, digits, '.', '_' or '-'. Only names of this form
// are ever looked up on disk, so a name typed at the login page cannot
// name a path, and none holds a ':' or a space, which keeps the ledger's
// records of console actions ("console:NAME") unambiguous.
var operatorNameRE = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)

// operatorSecretBytes is how many random bytes an operator's secret
// holds: 256 bits, printed as 43 characters of unpadded base64url, within
// bcrypt's 72-byte input limit.
const operatorSecretBytes = 32

// operatorBcryptCost is the default bcrypt cost of the stored hashes
// (create-operator -cost). A secret is 256 random bits, which no cost
// makes guessable or not; the hash is there so that a copy of the
// operators directory logs nobody in. The cost sets what a login
// attempt costs the server, and a login for an unknown name costs what
// one at this cost does (see dummyHash), so an operator created with
// another cost can be told from an unknown name by timing.
const operatorBcryptCost = bcrypt.DefaultCost

// maxOperatorFileBytes bounds what readOperatorFile reads.
const maxOperatorFileBytes = 4 << 10

// operatorFile is what DIR/operators/<name>.json holds.
type operatorFile struct {
	Name      string    `json:"name"`
	CreatedOn time.Time `json:"created_on"`
	// SecretHash is the bcrypt hash of the operator's secret.
	SecretHash string `json:"secret_hash"`
}

// errNoOperator is returned by readOperatorFile for a name that has no
// operator file.
var errNoOperator = errors.New("no such operator")

// operatorsDir is where operators live: -operators, else
// ./walletd-data/operators when -data is ":memory:" or a postgres:// URL,
// else DIR/operators for -data DIR, next to the authorities, and found
// the same way (see authoritiesDir).
func (cfg config) operatorsDir() string {
	switch {
	case cfg.Operators != "":
		return cfg.Operators
	case cfg.Data == memoryData || isPostgresURL(cfg.Data):
		return filepath.Join(defaultData, "operators")
	}
	return filepath.Join(cfg.Data, "operators")
}

// createOperator makes a secret for a new operator called name, writes
// the operator's file into dir and returns the secret. It fails if the
// operator exists: its secret may be in use, and is replaced only by
// removing the file first.
func createOperator(dir, name string, cost int, now time.Time) (string, error) {
	if !operatorNameRE.MatchString(name) {
		return "", fmt.Errorf("%q is not an operator name (a lowercase letter, then up to 31 lowercase letters, digits, '.', '_' or '-')", truncate(name, 80))
	}
	var raw [operatorSecretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(raw[:])
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), cost)
	if err != nil {
		return "", fmt.Errorf("hash secret: %w", err)
	}
	data, err := json.MarshalIndent(operatorFile{Name: name, CreatedOn: now.UTC(), SecretHash: string(hash)}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("write operator %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("write operator %s: %w", name, err)
	}
	if err := writeNewFile(dir, name+".json", append(data, '\n')); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("operator %s exists in %s; remove %s.json first to replace its secret", name, dir, name)
		}
		return "", fmt.Errorf("write operator %s: %w", name, err)
	}
	return secret, nil
}

// writeNewFile writes data to dir/name, which must not exist, as
// writeFileAtomic does, except that the last step is a hard link, which
// fails with fs.ErrExist instead of replacing a file that appeared
// meanwhile. The file has mode 0600 (os.CreateTemp's), whatever the umask.
func writeNewFile(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// readOperatorFile loads dir/<name>.json: errNoOperator if there is no
// such file (or name is not an operator name), as authority files are
// read otherwise (no symbolic links, regular files only, bounded size).
func readOperatorFile(dir, name string) (operatorFile, error) {
	if !operatorNameRE.MatchString(name) {
		return operatorFile{}, errNoOperator
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".json"), os.O_RDONLY|openNoFollow, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return operatorFile{}, errNoOperator
	case errors.Is(err, syscall.ELOOP):
		return operatorFile{}, fmt.Errorf("operator file %s.json: not a regular file (a symbolic link)", name)
	case err != nil:
		return operatorFile{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return operatorFile{}, fmt.Errorf("operator file %s.json: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return operatorFile{}, fmt.Errorf("operator file %s.json: not a regular file (%v)", name, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxOperatorFileBytes+1))
	if err != nil {
		return operatorFile{}, fmt.Errorf("operator file %s.json: %w", name, err)
	}
	if len(data) > maxOperatorFileBytes {
		return operatorFile{}, fmt.Errorf("operator file %s.json: larger than %d bytes", name, maxOperatorFileBytes)
	}
	var of operatorFile
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&of); err != nil {
		return operatorFile{}, fmt.Errorf("operator file %s.json: %w", name, err)
	}
	if of.Name != name {
		return operatorFile{}, fmt.Errorf("operator file %s.json: holds name %q", name, of.Name)
	}
	if _, err := bcrypt.Cost([]byte(of.SecretHash)); err != nil {
		return operatorFile{}, fmt.Errorf("operator file %s.json: secret_hash: %w", name, err)
	}
	return of, nil
}

// dummyHash is compared against when a login names no operator, so that
// such a login costs what a wrong secret does and the answer's timing
// does not tell which names exist.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("walletd: no such operator"), operatorBcryptCost)
	return h
})

func runCreateOperator(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("walletd create-operator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: walletd create-operator [-data DIR] [-operators DIR] [-cost N] NAME\n\n"+
			"Creates a console operator and prints its secret on standard output, once: only a bcrypt\n"+
			"hash of it is stored, in DIR/operators/NAME.json (mode 0600). NAME is a lowercase letter,\n"+
			"then up to 31 lowercase letters, digits, '.', '_' or '-'. Remove the file to revoke the operator.\n\n")
		fs.PrintDefaults()
	}
	data := fs.String("data", defaultData, "data `DIR` whose operators directory (DIR/operators) gets the operator")
	opDir := fs.String("operators", "", "operators `DIR` (default DIR/operators, or ./walletd-data/operators when -data is :memory: or a postgres:// URL)")
	cost := fs.Int("cost", operatorBcryptCost, fmt.Sprintf("bcrypt `cost` of the secret's hash, %d to %d", bcrypt.MinCost, bcrypt.MaxCost))
	pos, help, err := parseFlags(fs, args)
	switch {
	case help:
		return exitOK
	case err != nil:
		return exitUsage
	case *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost:
		fmt.Fprintf(stderr, "walletd create-operator: -cost must be %d to %d, got %d\n", bcrypt.MinCost, bcrypt.MaxCost, *cost)
		return exitUsage
	case len(pos) != 1:
		fmt.Fprintf(stderr, "walletd create-operator: want one NAME, got %d arguments\n", len(pos))
		fs.Usage()
		return exitUsage
	case !operatorNameRE.MatchString(pos[0]):
		fmt.Fprintf(stderr, "walletd create-operator: %q is not an operator name (a lowercase letter, then up to 31 lowercase letters, digits, '.', '_' or '-')\n", truncate(pos[0], 80))
		return exitUsage
	case *data == "":
		fmt.Fprintln(stderr, "walletd create-operator: -data must not be empty")
		return exitUsage
	}
	dir := config{Data: *data, Operators: *opDir}.operatorsDir()
	secret, err := createOperator(dir, pos[0], *cost, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "walletd create-operator: %v\n", err)
		return exitFailure
	}
	if _, err := fmt.Fprintln(stdout, secret); err != nil {
		// Nobody has the secret: the operator is of no use.
		os.Remove(filepath.Join(dir, pos[0]+".json"))
		fmt.Fprintf(stderr, "walletd create-operator: write secret: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "walletd: created operator %s in %s; the secret above is its only copy: give it to the operator, who logs in at /console/login\n",
		pos[0], dir)
	return exitOK
}
