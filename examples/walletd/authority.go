package main

// Authorities are plain files, one per authority, in the authorities
// directory: <authority_id>.json holding the ID, name, owner, API base URL,
// creation time and the PUBLIC key. The private key is printed once by
// create-authority and stored nowhere.
//
// Because they are plain files written atomically, create-authority needs
// no running server and no lock on the ledger: it works before the first
// serve and while a server runs on the same directory. A running server
// loads every file at start. When a token names an authority it does not
// know, the server looks the name up in its listing of the directory,
// which it refreshes at most once every rescanInterval, and reads the file
// only if the listing has it. The same listing tells it which files are
// gone or have changed: a removed file revokes its authority, a replaced
// one is read again. So no request, whatever its token says, makes the
// server touch the disk more than once a second (plus one read per
// authority file that appeared or changed), and a new, revoked or
// replaced authority takes effect within rescanInterval however many
// made-up subjects arrive meanwhile.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// configSchemaVersion is the version of the authority client
// configuration file that the Python SDK accepts (major 0, minor >= 1).
const configSchemaVersion = "0.1.0"

// authorityIDRE matches authority IDs: 32 lowercase hex digits (128 random
// bits). Only IDs of this form are ever looked up on disk, so a token's
// subject cannot name a path.
var authorityIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// authorityRequest is the REQUEST.json of create-authority. All four
// fields are required, as in the original service.
type authorityRequest struct {
	APIBaseURL string `json:"api_base_url"`
	Name       string `json:"name"`
	Owner      *owner `json:"owner"`
}

type owner struct {
	Contact  string `json:"contact"`
	Nickname string `json:"nickname"`
}

// authorityRequestFields are the keys of authorityRequest, for
// checkFields.
var authorityRequestFields = fields{
	"api_base_url": nil, "name": nil,
	"owner": {"contact": nil, "nickname": nil},
}

// authorityFile is what DIR/authorities/<id>.json holds.
type authorityFile struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Owner      owner     `json:"owner"`
	APIBaseURL string    `json:"api_base_url"`
	CreatedOn  time.Time `json:"created_on"`
	// PublicKey is the authority's ECDSA P-256 public key, PKIX PEM.
	PublicKey string `json:"public_key"`
}

// clientConfig is the authority client configuration file that the
// Python SDK's WalletClient.LoadFromConfig reads.
type clientConfig struct {
	ConfigSchemaVersion string `json:"config_schema_version"`
	APIBaseURL          string `json:"api_base_url"`
	AuthorityID         string `json:"authority_id"`
	// PrivateKey is SEC1 PEM ("EC PRIVATE KEY").
	PrivateKey string `json:"private_key"`
}

// parseAuthorityRequest reads and checks a create-authority request. Its
// errors describe what is wrong for the person who wrote the file.
func parseAuthorityRequest(r io.Reader) (authorityRequest, error) {
	var req authorityRequest
	raw, err := io.ReadAll(io.LimitReader(r, maxBodyBytes))
	if err != nil {
		return req, fmt.Errorf("read authority request: %w", err)
	}
	if err := checkText(raw); err != nil {
		return req, fmt.Errorf("not a valid authority request: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("not a valid authority request: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, errors.New("not a valid authority request: data after the JSON object")
	}
	if err := checkFields(raw, authorityRequestFields); err != nil {
		return req, fmt.Errorf("not a valid authority request: %w", err)
	}
	var missing []string
	if strings.TrimSpace(req.APIBaseURL) == "" {
		missing = append(missing, "api_base_url")
	}
	if strings.TrimSpace(req.Name) == "" {
		missing = append(missing, "name")
	}
	if req.Owner == nil || strings.TrimSpace(req.Owner.Contact) == "" {
		missing = append(missing, "owner.contact")
	}
	if req.Owner == nil || strings.TrimSpace(req.Owner.Nickname) == "" {
		missing = append(missing, "owner.nickname")
	}
	if len(missing) > 0 {
		return req, fmt.Errorf("authority request: missing or empty %s", strings.Join(missing, ", "))
	}
	u, err := url.Parse(req.APIBaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return req, fmt.Errorf("authority request: api_base_url %q is not an http(s) URL", req.APIBaseURL)
	}
	// The SDK appends "/api/v1" to it.
	req.APIBaseURL = strings.TrimRight(req.APIBaseURL, "/")
	return req, nil
}

// createAuthority makes a key pair and an ID for req, writes the
// authority file into dir and returns the client configuration, the only
// place the private key goes.
func createAuthority(dir string, req authorityRequest, now time.Time) (clientConfig, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return clientConfig{}, fmt.Errorf("generate key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return clientConfig{}, fmt.Errorf("encode public key: %w", err)
	}
	priv, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return clientConfig{}, fmt.Errorf("encode private key: %w", err)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return clientConfig{}, fmt.Errorf("generate authority ID: %w", err)
	}
	a := authorityFile{
		ID:         hex.EncodeToString(raw[:]),
		Name:       req.Name,
		Owner:      *req.Owner,
		APIBaseURL: req.APIBaseURL,
		CreatedOn:  now.UTC(),
		PublicKey:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
	}
	if err := writeAuthorityFile(dir, a); err != nil {
		return clientConfig{}, err
	}
	return clientConfig{
		ConfigSchemaVersion: configSchemaVersion,
		APIBaseURL:          req.APIBaseURL,
		AuthorityID:         a.ID,
		PrivateKey:          string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: priv})),
	}, nil
}

// writeAuthorityFile writes a into dir/<id>.json atomically: a reader
// sees no file or the whole file, and after a crash the file is either
// absent or complete.
func writeAuthorityFile(dir string, a authorityFile) error {
	if !authorityIDRE.MatchString(a.ID) {
		return fmt.Errorf("write authority: malformed ID %q", a.ID)
	}
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("write authority %s: %w", a.ID, err)
	}
	data = append(data, '\n')
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write authority %s: %w", a.ID, err)
	}
	if err := writeFileAtomic(dir, a.ID+".json", data); err != nil {
		return fmt.Errorf("write authority %s: %w", a.ID, err)
	}
	return nil
}

// removeAuthorityFile deletes dir/<id>.json and syncs dir, so that the
// revocation survives a crash.
func removeAuthorityFile(dir, id string) error {
	name := filepath.Join(dir, id+".json")
	if err := os.Remove(name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no authority %s in %s", id, dir)
		}
		return err
	}
	return syncDir(dir)
}

// syncDir fsyncs a directory, so that a file created, renamed or removed
// in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeFileAtomic writes data to dir/name through a temporary file in
// dir: write, fsync, rename, fsync the directory.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// authority is a loaded authority: what the server needs to verify its
// tokens, and the identity of the file version it was read from.
type authority struct {
	id   string
	key  *ecdsa.PublicKey
	file fileIdentity
}

// fileIdentity tells one version of a file from another (see identityOf):
// if it is unchanged, so is the file, unless the file was rewritten in
// place, with the same size, within the file system's timestamp
// granularity of its previous change.
type fileIdentity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // Unix nanoseconds
}

// maxAuthorityFileBytes bounds what readAuthorityFile reads.
const maxAuthorityFileBytes = 64 << 10

// readAuthorityFile loads dir/<id>.json. A missing file is
// fs.ErrNotExist. It opens the file without following a symbolic link
// (O_NOFOLLOW) and checks what it opened, with fstat, before reading it:
// anything but a regular file is refused, as listAuthorityFiles skips it,
// and no swap of the file between a check and the read can slip a link
// or a FIFO in.
func readAuthorityFile(dir, id string) (*authority, error) {
	name := filepath.Join(dir, id+".json")
	f, err := os.OpenFile(name, os.O_RDONLY|openNoFollow, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("authority file %s.json: not a regular file (a symbolic link)", id)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("authority file %s.json: %w", id, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("authority file %s.json: not a regular file (%v)", id, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxAuthorityFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("authority file %s.json: %w", id, err)
	}
	if len(data) > maxAuthorityFileBytes {
		return nil, fmt.Errorf("authority file %s.json: larger than %d bytes", id, maxAuthorityFileBytes)
	}
	var af authorityFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&af); err != nil {
		return nil, fmt.Errorf("authority file %s.json: %w", id, err)
	}
	if af.ID != id {
		return nil, fmt.Errorf("authority file %s.json: holds ID %q", id, af.ID)
	}
	block, _ := pem.Decode([]byte(af.PublicKey))
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("authority file %s.json: public_key is not a PEM PUBLIC KEY", id)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("authority file %s.json: public_key: %w", id, err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("authority file %s.json: public_key is not an ECDSA P-256 key", id)
	}
	return &authority{id: id, key: ek, file: identityOf(fi)}, nil
}

// listAuthorityFiles lists dir: the authority files, which are the
// regular files named <id>.json with a well-formed ID, each with the
// identity of its current version, and the names of the files that look
// like authority files (*.json) but whose names are not well-formed.
// Symbolic links and other files that are not regular are skipped, at
// start and on every rescan alike.
func listAuthorityFiles(dir string) (files map[string]fileIdentity, malformed []string, err error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	files = make(map[string]fileIdentity, len(des))
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), ".json")
		switch {
		case !ok || !de.Type().IsRegular():
		case !authorityIDRE.MatchString(id):
			malformed = append(malformed, de.Name())
		default:
			fi, err := de.Info() // lstat
			if err != nil || !fi.Mode().IsRegular() {
				continue // gone, or replaced, since the listing
			}
			files[id] = identityOf(fi)
		}
	}
	return files, malformed, nil
}

// rescanInterval is how often, at most, the server lists the authorities
// directory again, to find authorities created, removed or replaced since
// it last looked. It bounds both the disk work that tokens can cause and
// how long a change to the directory takes to reach a running server.
const rescanInterval = time.Second

// authorities is the server's view of the authorities directory. It is
// safe for concurrent use.
type authorities struct {
	dir string
	log *slog.Logger
	now func() time.Time

	mu    sync.RWMutex
	known map[string]*authority

	// scanned is when the last scan ran, in Unix nanoseconds of now; read
	// without scanMu, written with it.
	scanned atomic.Int64

	// scanMu guards the fields below, and serializes the slow path of
	// lookup: rescans and file reads.
	scanMu sync.Mutex
	listed map[string]bool // IDs of the files found by the last scan, not known yet
	scans  int             // directory scans since the first, for tests
	reads  int             // files read since the first scan, for tests
}

// loadAuthorities reads every authority file in dir, creating dir if it
// does not exist. A file that does not load is logged and skipped, so
// one bad file does not keep the others out.
func loadAuthorities(ctx context.Context, dir string, log *slog.Logger, now func() time.Time) (*authorities, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("authorities directory: %w", err)
	}
	files, malformed, err := listAuthorityFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("authorities directory: %w", err)
	}
	for _, name := range malformed {
		log.WarnContext(ctx, "authorities: ignoring file with a malformed name", "dir", dir, "file", name)
	}
	as := &authorities{
		dir:    dir,
		log:    log,
		now:    now,
		known:  make(map[string]*authority, len(files)),
		listed: map[string]bool{},
	}
	as.scanned.Store(now().UnixNano())
	for id := range files {
		a, err := readAuthorityFile(dir, id)
		if err != nil {
			log.ErrorContext(ctx, "authorities: skipping file", "dir", dir, "file", id+".json", "err", err)
			continue
		}
		as.known[id] = a
	}
	log.InfoContext(ctx, "authorities loaded", "dir", dir, "count", len(as.known))
	return as, nil
}

// lookup returns the authority with the given ID, or nil if there is
// none. Once the listing of the directory is rescanInterval old, the
// first lookup lists it again (see rescan), so that an authority whose
// file was removed or replaced is refused, or verified with its new key,
// within rescanInterval. An ID not loaded yet is looked for in the
// listing; its file is read only if the listing has it. Nothing in the ID
// itself ever causes a disk access.
func (as *authorities) lookup(ctx context.Context, id string) *authority {
	if !authorityIDRE.MatchString(id) {
		return nil
	}
	if as.now().UnixNano()-as.scanned.Load() >= int64(rescanInterval) {
		as.scanMu.Lock()
		if now := as.now(); now.UnixNano()-as.scanned.Load() >= int64(rescanInterval) {
			as.rescan(ctx, now) // unless another lookup just did
		}
		as.scanMu.Unlock()
	}
	as.mu.RLock()
	a := as.known[id]
	as.mu.RUnlock()
	if a != nil {
		return a
	}

	as.scanMu.Lock()
	defer as.scanMu.Unlock()
	as.mu.RLock()
	a = as.known[id] // loaded meanwhile by another request
	as.mu.RUnlock()
	if a != nil || !as.listed[id] {
		return a
	}
	// Whatever the outcome, this file is not read again before the next
	// scan.
	delete(as.listed, id)
	as.reads++
	a, err := readAuthorityFile(as.dir, id)
	if err != nil {
		as.log.ErrorContext(ctx, "authorities: cannot load file", "authority", id, "err", err)
		return nil
	}
	as.mu.Lock()
	as.known[id] = a
	as.mu.Unlock()
	as.log.InfoContext(ctx, "authorities: loaded new authority", "authority", id)
	return a
}

// rescan lists the directory again. as.scanMu is held. An authority
// whose file is gone, or is no longer a regular file, is forgotten at
// once: its tokens are refused from now on. One whose file has changed
// (see fileIdentity) is read again, and forgotten if the new version does
// not load. Files that are new are noted in as.listed, for lookup to read
// when a token names them. A failed scan changes nothing and is not
// retried before rescanInterval.
func (as *authorities) rescan(ctx context.Context, now time.Time) {
	as.scanned.Store(now.UnixNano())
	as.scans++
	files, _, err := listAuthorityFiles(as.dir)
	if err != nil {
		as.log.ErrorContext(ctx, "authorities: cannot list directory", "dir", as.dir, "err", err)
		return
	}
	var changed []string
	as.mu.Lock()
	for id, a := range as.known {
		switch f, ok := files[id]; {
		case !ok:
			delete(as.known, id)
			as.log.InfoContext(ctx, "authorities: authority revoked: its file is gone", "authority", id)
		case f != a.file:
			changed = append(changed, id)
		}
		delete(files, id)
	}
	as.mu.Unlock()
	for _, id := range changed {
		as.reads++
		a, err := readAuthorityFile(as.dir, id)
		as.mu.Lock()
		if err != nil {
			delete(as.known, id)
		} else {
			as.known[id] = a
		}
		as.mu.Unlock()
		if err != nil {
			as.log.ErrorContext(ctx, "authorities: authority revoked: its file changed and does not load", "authority", id, "err", err)
			continue
		}
		as.log.InfoContext(ctx, "authorities: authority file changed; reloaded", "authority", id)
	}
	as.listed = make(map[string]bool, len(files))
	for id := range files {
		as.listed[id] = true
	}
}
