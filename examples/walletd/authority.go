package main

// Authorities are plain files, one per authority, in the authorities
// directory: <authority_id>.json holding the ID, name, owner, API base URL,
// creation time and the PUBLIC key. The private key is printed once by
// create-authority and stored nowhere.
//
// Because they are plain files written atomically, create-authority needs
// no running server and no lock on the ledger: it works before the first
// serve and while a server runs on the same directory. A running server
// loads every file at start and, when a token names an authority it does
// not know, reads that one file. Misses are remembered for a while and
// disk reads for unknown authorities are rate limited, so a stream of
// tokens with made-up subjects costs no more than a few reads a second.

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
	dec := json.NewDecoder(io.LimitReader(r, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("not a valid authority request: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, errors.New("not a valid authority request: data after the JSON object")
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
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// authority is a loaded authority: what the server needs to verify its
// tokens.
type authority struct {
	id  string
	key *ecdsa.PublicKey
}

// readAuthorityFile loads dir/<id>.json. A missing file is fs.ErrNotExist.
func readAuthorityFile(dir, id string) (*authority, error) {
	data, err := os.ReadFile(filepath.Join(dir, id+".json"))
	if err != nil {
		return nil, err
	}
	var f authorityFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("authority file %s.json: %w", id, err)
	}
	if f.ID != id {
		return nil, fmt.Errorf("authority file %s.json: holds ID %q", id, f.ID)
	}
	block, _ := pem.Decode([]byte(f.PublicKey))
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
	return &authority{id: id, key: ek}, nil
}

// Reload limits for authorities the server does not know yet.
const (
	// missTTL is how long an unknown authority ID stays unknown before
	// its file is looked for again.
	missTTL = 2 * time.Second
	// maxMisses bounds the remembered misses.
	maxMisses = 10000
	// reloadRate and reloadBurst bound disk reads for unknown authorities
	// over all IDs: a token bucket.
	reloadRate  = 10 // per second
	reloadBurst = 20
)

// authorities is the server's view of the authorities directory. It is
// safe for concurrent use.
type authorities struct {
	dir string
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	known  map[string]*authority
	misses map[string]time.Time // ID -> when its file may be read again
	tokens float64              // token bucket of disk reads
	filled time.Time            // when tokens was last topped up
	reads  int                  // disk reads for unknown IDs, for tests
}

// loadAuthorities reads every authority file in dir, creating dir if it
// does not exist. A file that does not load is logged and skipped, so
// one bad file does not keep the others out.
func loadAuthorities(ctx context.Context, dir string, log *slog.Logger, now func() time.Time) (*authorities, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("authorities directory: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("authorities directory: %w", err)
	}
	as := &authorities{
		dir:    dir,
		log:    log,
		now:    now,
		known:  make(map[string]*authority),
		misses: make(map[string]time.Time),
		tokens: reloadBurst,
		filled: now(),
	}
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok || !de.Type().IsRegular() {
			continue
		}
		if !authorityIDRE.MatchString(id) {
			log.WarnContext(ctx, "authorities: ignoring file with a malformed name", "dir", dir, "file", de.Name())
			continue
		}
		a, err := readAuthorityFile(dir, id)
		if err != nil {
			log.ErrorContext(ctx, "authorities: skipping file", "dir", dir, "file", de.Name(), "err", err)
			continue
		}
		as.known[id] = a
	}
	log.InfoContext(ctx, "authorities loaded", "dir", dir, "count", len(as.known))
	return as, nil
}

// lookup returns the authority with the given ID, or nil if there is
// none. An ID not loaded yet is looked for on disk, subject to the miss
// cache and the rate limit.
func (as *authorities) lookup(ctx context.Context, id string) *authority {
	if !authorityIDRE.MatchString(id) {
		return nil
	}
	as.mu.Lock()
	if a := as.known[id]; a != nil {
		as.mu.Unlock()
		return a
	}
	now := as.now()
	if until, ok := as.misses[id]; ok && now.Before(until) {
		as.mu.Unlock()
		return nil
	}
	if !as.take(now) {
		as.mu.Unlock()
		as.log.DebugContext(ctx, "authorities: reload rate limit reached; treating authority as unknown", "authority", id)
		return nil
	}
	as.reads++
	as.mu.Unlock()

	a, err := readAuthorityFile(as.dir, id)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		as.log.ErrorContext(ctx, "authorities: cannot load file", "authority", id, "err", err)
	}

	as.mu.Lock()
	defer as.mu.Unlock()
	if a == nil {
		if len(as.misses) >= maxMisses {
			as.forgetMisses(now)
		}
		as.misses[id] = now.Add(missTTL)
		return nil
	}
	delete(as.misses, id)
	if prev := as.known[id]; prev != nil { // loaded meanwhile by another request
		return prev
	}
	as.known[id] = a
	as.log.InfoContext(ctx, "authorities: loaded new authority", "authority", id)
	return a
}

// take takes a token from the reload bucket, if there is one. as.mu is
// held.
func (as *authorities) take(now time.Time) bool {
	if elapsed := now.Sub(as.filled); elapsed > 0 {
		as.tokens = min(reloadBurst, as.tokens+elapsed.Seconds()*reloadRate)
		as.filled = now
	}
	if as.tokens < 1 {
		return false
	}
	as.tokens--
	return true
}

// forgetMisses drops expired misses, or all of them if none has expired.
// as.mu is held.
func (as *authorities) forgetMisses(now time.Time) {
	for id, until := range as.misses {
		if !now.Before(until) {
			delete(as.misses, id)
		}
	}
	if len(as.misses) >= maxMisses {
		clear(as.misses)
	}
}
