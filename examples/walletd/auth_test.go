package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAuthentication(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	sub := c.authorityID

	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	p384Key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	pubDER, err := x509.MarshalPKIXPublicKey(&c.key.PublicKey)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	sign := func(m jwt.SigningMethod, key any, claims jwt.Claims) string {
		t.Helper()
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		require.NoError(t, err)
		return s
	}
	b64 := base64.RawURLEncoding.EncodeToString
	// tampered is c.token with its payload swapped for another subject's.
	parts := strings.Split(c.token, ".")
	tampered := parts[0] + "." + b64([]byte(`{"sub":"`+strings.Repeat("0", 32)+`"}`)) + "." + parts[2]

	for _, tc := range []struct {
		name, auth string
		ok         bool
	}{
		{"SDK token, raw header", c.token, true},
		{"Bearer", "Bearer " + c.token, true},
		{"bearer, lower case", "bearer " + c.token, true},
		{"unexpired exp", c.sign(jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}), true},
		{"expired", c.sign(jwt.MapClaims{"sub": sub, "exp": time.Now().Add(-time.Minute).Unix()}), false},
		{"not valid yet", c.sign(jwt.MapClaims{"sub": sub, "nbf": time.Now().Add(time.Hour).Unix()}), false},
		{"signed by another key", sign(jwt.SigningMethodES256, otherKey, jwt.MapClaims{"sub": sub}), false},
		{"unknown authority", sign(jwt.SigningMethodES256, otherKey, jwt.MapClaims{"sub": hex.EncodeToString(make([]byte, 16))}), false},
		{"subject that is a path", c.sign(jwt.MapClaims{"sub": "../../../etc/passwd"}), false},
		{"no subject", c.sign(jwt.MapClaims{"name": "x"}), false},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": sub}), false},
		{"HS256 keyed with the public key PEM", sign(jwt.SigningMethodHS256, pubPEM, jwt.MapClaims{"sub": sub}), false},
		{"HS256 keyed with the public key DER", sign(jwt.SigningMethodHS256, pubDER, jwt.MapClaims{"sub": sub}), false},
		{"RS256", sign(jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"sub": sub}), false},
		{"ES384", sign(jwt.SigningMethodES384, p384Key, jwt.MapClaims{"sub": sub}), false},
		{"tampered payload", tampered, false},
		{"signature stripped", parts[0] + "." + parts[1] + ".", false},
		{"garbled", "garbled", false},
		{"three garbled parts", "a.b.c", false},
		{"Bearer alone", "Bearer", false},
		{"Basic auth", "Basic " + b64([]byte("user:pass")), false},
		{"token twice", c.token + " " + c.token, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, call := range []func(auth string) resp{
				func(auth string) resp {
					return c.doAuth(http.MethodGet, "/wallet?user_ids=&authority_ids=", nil, nil, auth)
				},
				func(auth string) resp {
					return c.doAuth(http.MethodPost, "/entry", nil, []byte(`{"user_id": "u", "amount": 1, "reason": "r", "item": null}`), auth)
				},
			} {
				r := call(tc.auth)
				if tc.ok {
					require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
				} else {
					requireError(t, r, http.StatusForbidden, "forbidden")
				}
			}
		})
	}
	// Only the accepted tokens wrote entries.
	assert.Equal(t, map[string]int64{"u": 4}, requireWallets(t, c.getWallets(nil, nil)))
}

// TestNewAuthorityWithoutRestart: an authority created while the server
// runs is usable once the server has listed its directory again, within
// rescanInterval.
func TestNewAuthorityWithoutRestart(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	first := env.newAuthority("first")
	require.Equal(t, http.StatusOK, first.getWallets(nil, nil).status)
	late := env.createAuthority("late") // written after the server listed the directory
	env.advance(rescanInterval)
	r := late.createEntry("u", 1, "r", nil)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	assert.Equal(t, late.authorityID, requireEntry(t, r.body["entry"], false)["authority_id"])
}

// TestUnknownAuthorityListing: an unknown authority is looked up in the
// listing of the directory, which is at most rescanInterval old: a file
// that appears is found after the next rescan, not before.
func TestUnknownAuthorityListing(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	id := hex.EncodeToString([]byte("0123456789abcdef"))
	ghost := &sdkClient{t: t, apiURL: c.apiURL, authorityID: id, key: key, hc: c.hc}
	ghost.token = ghost.sign(jwt.MapClaims{"sub": id})

	requireError(t, ghost.getWallets(nil, nil), http.StatusForbidden, "forbidden")
	// The file appears, but the listing is not rescanned yet.
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	require.NoError(t, writeAuthorityFile(env.authDir, authorityFile{
		ID: id, Name: "ghost", PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
	}))
	requireError(t, ghost.getWallets(nil, nil), http.StatusForbidden, "forbidden")
	env.advance(rescanInterval - time.Millisecond)
	requireError(t, ghost.getWallets(nil, nil), http.StatusForbidden, "forbidden")
	env.advance(time.Millisecond)
	require.Equal(t, http.StatusOK, ghost.getWallets(nil, nil).status)
}

// diskAccess returns how many times as listed its directory and read an
// authority file since it loaded the directory.
func (as *authorities) diskAccess() (scans, reads int) {
	as.scanMu.Lock()
	defer as.scanMu.Unlock()
	return as.scans, as.reads
}

// garbageToken is an ES256 token for a random, unknown subject, with a
// random signature.
func garbageToken(t *testing.T) string {
	t.Helper()
	var sub [16]byte
	sig := make([]byte, 64)
	_, err := rand.Read(sub[:])
	require.NoError(t, err)
	_, err = rand.Read(sig)
	require.NoError(t, err)
	b64 := base64.RawURLEncoding.EncodeToString
	return b64([]byte(`{"alg":"ES256","typ":"JWT"}`)) + "." + b64([]byte(`{"sub":"`+hex.EncodeToString(sub[:])+`"}`)) + "." + b64(sig)
}

// TestUnknownAuthorityFlood: tokens for made-up authorities with garbage
// signatures, sent without pause, neither make the server read the disk
// per token nor keep out an authority created meanwhile, which is
// accepted within rescanInterval of its creation.
func TestUnknownAuthorityFlood(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("first")
	flood := func(n int) {
		t.Helper()
		for range n {
			r := c.doAuth(http.MethodGet, "/wallet?user_ids=&authority_ids=", nil, nil, garbageToken(t))
			requireError(t, r, http.StatusForbidden, "forbidden")
		}
	}
	flood(100)
	late := env.createAuthority("late")
	const step = 100 * time.Millisecond
	var waited time.Duration
	for {
		flood(25) // far more than one token per step
		r := late.getWallets(nil, nil)
		if r.status == http.StatusOK {
			break
		}
		requireError(t, r, http.StatusForbidden, "forbidden")
		require.Less(t, waited, 2*rescanInterval, "the new authority is still refused after %v of flooding", waited)
		env.advance(step)
		waited += step
	}
	assert.LessOrEqual(t, waited, rescanInterval, "accepted after %v", waited)
	scans, reads := env.srv.auths.diskAccess()
	assert.LessOrEqual(t, scans, 1+int(waited/rescanInterval), "directory listings: one per rescanInterval")
	assert.Equal(t, 1, reads, "files read: the new authority's only")
}

// TestUnknownAuthorityDiskAccess: unknown authority IDs cost at most one
// listing of the directory per rescanInterval and no file reads; a file
// is read once after it appears in the listing, and a file that does not
// load is not read again before the next listing.
func TestUnknownAuthorityDiskAccess(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	dir := t.TempDir()
	as, err := loadAuthorities(context.Background(), dir, discardLogger(), func() time.Time { return now })
	require.NoError(t, err)
	unknown := func(n int) {
		t.Helper()
		for i := range n {
			var raw [16]byte
			_, err := rand.Read(raw[:])
			require.NoError(t, err)
			require.Nil(t, as.lookup(context.Background(), hex.EncodeToString(raw[:])), "lookup %d", i)
		}
	}
	wantDisk := func(scans, reads int) {
		t.Helper()
		gotScans, gotReads := as.diskAccess()
		assert.Equal(t, scans, gotScans, "directory listings")
		assert.Equal(t, reads, gotReads, "files read")
	}
	unknown(1000)
	wantDisk(0, 0) // listed at load, less than rescanInterval ago
	now = now.Add(rescanInterval)
	unknown(1000)
	wantDisk(1, 0)
	// Malformed IDs never reach the disk.
	now = now.Add(rescanInterval)
	for _, id := range []string{"", "..", "../x", strings.Repeat("A", 32), strings.Repeat("0", 31)} {
		require.Nil(t, as.lookup(context.Background(), id))
	}
	wantDisk(1, 0)

	// A new authority and a file that does not load.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	good, bad := strings.Repeat("a", 32), strings.Repeat("b", 32)
	require.NoError(t, writeAuthorityFile(dir, authorityFile{
		ID: good, PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
	}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, bad+".json"), []byte("{not json"), 0o600))
	require.NotNil(t, as.lookup(context.Background(), good))
	wantDisk(2, 1)
	require.NotNil(t, as.lookup(context.Background(), good))
	require.Nil(t, as.lookup(context.Background(), bad))
	require.Nil(t, as.lookup(context.Background(), bad))
	wantDisk(2, 2)
	now = now.Add(rescanInterval)
	require.Nil(t, as.lookup(context.Background(), bad))
	wantDisk(3, 3)
}

// TestAuthoritySymlinks: a symbolic link named like an authority file is
// skipped both when the server starts and when a token names it later,
// even though it points to a valid authority file.
func TestAuthoritySymlinks(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	linked := func(name string) (*sdkClient, string) {
		t.Helper()
		req, err := parseAuthorityRequest(strings.NewReader(`{"api_base_url": "http://127.0.0.1:1", "name": "` + name +
			`", "owner": {"contact": "ops@example.com", "nickname": "ops"}}`))
		require.NoError(t, err)
		cfg, err := createAuthority(elsewhere, req, time.Now())
		require.NoError(t, err)
		file := cfg.AuthorityID + ".json"
		require.NoError(t, os.Symlink(filepath.Join(elsewhere, file), filepath.Join(dir, file)))
		raw, err := json.Marshal(cfg)
		require.NoError(t, err)
		return loadSDKClient(t, raw, "http://127.0.0.1:1"), cfg.AuthorityID
	}
	before, _ := linked("before") // there when the server starts
	env := newTestEnv(t, envOptions{authDir: dir})
	after, _ := linked("after") // appears while it runs
	regular := env.newAuthority("regular")
	env.advance(rescanInterval)
	require.Equal(t, http.StatusOK, regular.getWallets(nil, nil).status, "a regular file is found")
	for _, c := range []*sdkClient{before, after} {
		c.apiURL = regular.apiURL
		requireError(t, c.getWallets(nil, nil), http.StatusForbidden, "forbidden")
	}
	_, err := readAuthorityFile(dir, before.authorityID)
	assert.ErrorContains(t, err, "not a regular file")
}

// TestAuthorityFiles checks what create-authority writes: the public key
// only, in a file named by the ID, and nothing else in the directory.
func TestAuthorityFiles(t *testing.T) {
	dir := t.TempDir()
	req, err := parseAuthorityRequest(strings.NewReader(`{"api_base_url": "http://127.0.0.1:8000/", "name": "n", "owner": {"contact": "c", "nickname": "k"}}`))
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8000", req.APIBaseURL, "trailing slash dropped: the SDK appends /api/v1")
	cfg, err := createAuthority(dir, req, time.Now())
	require.NoError(t, err)
	assert.Regexp(t, `^[0-9a-f]{32}$`, cfg.AuthorityID)

	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, des, 1)
	assert.Equal(t, cfg.AuthorityID+".json", des[0].Name())
	raw, err := os.ReadFile(filepath.Join(dir, des[0].Name()))
	require.NoError(t, err)
	f := decodeObject(t, raw)
	requireKeys(t, f, "id", "name", "owner", "api_base_url", "created_on", "public_key")
	requireKeys(t, f["owner"], "contact", "nickname")
	assert.NotContains(t, string(raw), "PRIVATE")
	privBlock, _ := pem.Decode([]byte(cfg.PrivateKey))
	require.NotNil(t, privBlock)
	assert.NotContains(t, string(raw), base64.StdEncoding.EncodeToString(privBlock.Bytes)[:40])

	a, err := readAuthorityFile(dir, cfg.AuthorityID)
	require.NoError(t, err)
	priv, err := x509.ParseECPrivateKey(privBlock.Bytes)
	require.NoError(t, err)
	assert.True(t, a.key.Equal(&priv.PublicKey), "stored public key matches the private key")
}

func TestParseAuthorityRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"ok", `{"api_base_url": "https://w.example", "name": "n", "owner": {"contact": "c", "nickname": "k"}}`, ""},
		{"unknown key", `{"api_base_url": "https://w.example", "name": "n", "owner": {"contact": "c", "nickname": "k"}, "admin": true}`, `unknown field "admin"`},
		{"key in upper case", `{"API_BASE_URL": "https://w.example", "name": "n", "owner": {"contact": "c", "nickname": "k"}}`, `unknown field "API_BASE_URL"`},
		{"owner key capitalized", `{"api_base_url": "https://w.example", "name": "n", "owner": {"Contact": "c", "nickname": "k"}}`, `unknown field "Contact"`},
		{"duplicate key", `{"api_base_url": "https://w.example", "name": "n", "name": "m", "owner": {"contact": "c", "nickname": "k"}}`, `duplicate field "name"`},
		{"duplicate owner key", `{"api_base_url": "https://w.example", "name": "n", "owner": {"contact": "c", "nickname": "k", "nickname": "j"}}`, `duplicate field "nickname"`},
		{"missing name", `{"api_base_url": "https://w.example", "owner": {"contact": "c", "nickname": "k"}}`, "missing or empty name"},
		{"blank name", `{"api_base_url": "https://w.example", "name": " ", "owner": {"contact": "c", "nickname": "k"}}`, "missing or empty name"},
		{"missing owner", `{"api_base_url": "https://w.example", "name": "n"}`, "missing or empty owner.contact, owner.nickname"},
		{"missing everything", `{}`, "missing or empty api_base_url, name, owner.contact, owner.nickname"},
		{"not a URL", `{"api_base_url": "w.example", "name": "n", "owner": {"contact": "c", "nickname": "k"}}`, "is not an http(s) URL"},
		{"not JSON", `name=n`, "not a valid authority request"},
		{"two objects", `{} {}`, "data after the JSON object"},
		{"wrong type", `{"name": 5}`, "not a valid authority request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseAuthorityRequest(strings.NewReader(tc.body))
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

// TestTokenParserPinsES256: a token of any other algorithm is refused
// before its key is even looked up, so no key type confusion can arise
// whatever the key lookup returns.
func TestTokenParserPinsES256(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	p384Key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	claims := jwt.MapClaims{"sub": strings.Repeat("a", 32)}
	for _, tc := range []struct {
		method jwt.SigningMethod
		key    any
	}{
		{jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType},
		{jwt.SigningMethodHS256, []byte("secret")},
		{jwt.SigningMethodRS256, rsaKey},
		{jwt.SigningMethodPS256, rsaKey},
		{jwt.SigningMethodES384, p384Key},
	} {
		t.Run(tc.method.Alg(), func(t *testing.T) {
			tok, err := jwt.NewWithClaims(tc.method, claims).SignedString(tc.key)
			require.NoError(t, err)
			looked := false
			_, err = tokenParser.Parse(tok, func(*jwt.Token) (any, error) {
				looked = true
				return &ecKey.PublicKey, nil
			})
			require.Error(t, err)
			assert.False(t, looked, "key looked up for alg %s", tc.method.Alg())
		})
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(ecKey)
	require.NoError(t, err)
	_, err = tokenParser.Parse(tok, func(*jwt.Token) (any, error) { return &ecKey.PublicKey, nil })
	require.NoError(t, err)
}

// TestRevocation (issue 10, item 17): removing or replacing an
// authority's file takes effect in a running server at its next listing
// of the directory, within rescanInterval, as creating one does: a
// removed authority's tokens are refused, a replaced one's old key no
// longer verifies and its new key does.
func TestRevocation(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	keep := env.newAuthority("keep")
	gone := env.newAuthority("gone")
	for _, c := range []*sdkClient{keep, gone} {
		require.Equal(t, http.StatusOK, c.getWallets(nil, nil).status)
	}
	file := func(c *sdkClient) string { return filepath.Join(env.authDir, c.authorityID+".json") }
	// rekeyed returns a client of c's authority with a new key, whose
	// file holds encode(the authority file with the new public key).
	rekeyed := func(c *sdkClient) (*sdkClient, []byte) {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		require.NoError(t, err)
		raw, err := os.ReadFile(file(c))
		require.NoError(t, err)
		var f authorityFile
		require.NoError(t, json.Unmarshal(raw, &f))
		f.PublicKey = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
		raw, err = json.MarshalIndent(f, "", "  ")
		require.NoError(t, err)
		nc := *c
		nc.key = key
		nc.token = nc.sign(jwt.MapClaims{"sub": c.authorityID})
		return &nc, raw
	}
	accepted := func(c *sdkClient) bool {
		t.Helper()
		r := c.getWallets(nil, nil)
		if r.status != http.StatusOK {
			requireError(t, r, http.StatusForbidden, "forbidden")
		}
		return r.status == http.StatusOK
	}

	t.Run("removed", func(t *testing.T) {
		require.NoError(t, removeAuthorityFile(env.authDir, gone.authorityID))
		env.advance(rescanInterval)
		assert.False(t, accepted(gone), "a removed authority is refused")
		assert.True(t, accepted(keep), "the others are not")
	})
	t.Run("replaced by rename", func(t *testing.T) {
		c := env.newAuthority("renamed")
		require.True(t, accepted(c))
		nc, raw := rekeyed(c)
		require.NoError(t, writeFileAtomic(env.authDir, c.authorityID+".json", raw))
		assert.True(t, accepted(c), "the old key until the next listing")
		env.advance(rescanInterval)
		assert.False(t, accepted(c), "the old key is refused")
		assert.True(t, accepted(nc), "the new key verifies")
	})
	t.Run("rewritten in place", func(t *testing.T) {
		c := env.newAuthority("rewritten")
		// Its first version is an hour old, as a file an administrator
		// edits would be.
		hourAgo := time.Now().Add(-time.Hour)
		require.NoError(t, os.Chtimes(file(c), hourAgo, hourAgo))
		env.advance(rescanInterval)
		require.True(t, accepted(c))
		nc, raw := rekeyed(c)
		require.NoError(t, os.WriteFile(file(c), raw, 0o600)) // same inode
		env.advance(rescanInterval)
		assert.False(t, accepted(c), "the old key is refused")
		assert.True(t, accepted(nc), "the new key verifies")
	})
	t.Run("replaced by a symbolic link", func(t *testing.T) {
		c := env.newAuthority("linked")
		require.True(t, accepted(c))
		elsewhere := filepath.Join(t.TempDir(), "a.json")
		raw, err := os.ReadFile(file(c))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(elsewhere, raw, 0o600))
		require.NoError(t, os.Remove(file(c)))
		require.NoError(t, os.Symlink(elsewhere, file(c)))
		env.advance(rescanInterval)
		assert.False(t, accepted(c), "a link is no authority file")
	})
	t.Run("replaced by one that does not load", func(t *testing.T) {
		c := env.newAuthority("broken")
		require.True(t, accepted(c))
		require.NoError(t, writeFileAtomic(env.authDir, c.authorityID+".json", []byte("{broken")))
		env.advance(rescanInterval)
		assert.False(t, accepted(c))
		assert.Contains(t, env.logs.String(), "authority revoked: its file changed and does not load")
	})
	t.Run("created again", func(t *testing.T) {
		nc, raw := rekeyed(keep)
		require.NoError(t, removeAuthorityFile(env.authDir, keep.authorityID))
		env.advance(rescanInterval)
		require.False(t, accepted(keep))
		require.NoError(t, writeFileAtomic(env.authDir, keep.authorityID+".json", raw))
		env.advance(rescanInterval)
		assert.True(t, accepted(nc), "a new file for the ID is a new authority")
		assert.False(t, accepted(keep))
	})
}

// TestReadAuthorityFileOpensNoLinks (issue 10, item 17): readAuthorityFile
// opens with O_NOFOLLOW and checks what it opened: a symbolic link and a
// FIFO named like an authority file are refused, the FIFO without
// blocking.
func TestReadAuthorityFileOpensNoLinks(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	req, err := parseAuthorityRequest(strings.NewReader(`{"api_base_url": "http://127.0.0.1:1", "name": "n", "owner": {"contact": "c", "nickname": "k"}}`))
	require.NoError(t, err)
	cfg, err := createAuthority(elsewhere, req, time.Now())
	require.NoError(t, err)
	require.NoError(t, os.Symlink(filepath.Join(elsewhere, cfg.AuthorityID+".json"), filepath.Join(dir, cfg.AuthorityID+".json")))
	_, err = readAuthorityFile(dir, cfg.AuthorityID)
	assert.ErrorContains(t, err, "not a regular file (a symbolic link)")

	fifo := strings.Repeat("f", 32)
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, fifo+".json"), 0o600))
	done := make(chan error, 1)
	go func() { _, err := readAuthorityFile(dir, fifo); done <- err }()
	select {
	case err := <-done:
		assert.ErrorContains(t, err, "not a regular file")
	case <-time.After(10 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
	_, err = readAuthorityFile(elsewhere, cfg.AuthorityID)
	assert.NoError(t, err, "a regular file loads")
}

// TestGrantorOnlyItemUse (issue 10, item 17): with -grantor-only-item-use
// only the authority that granted an item may use it; by default, as in
// the original service, any may.
func TestGrantorOnlyItemUse(t *testing.T) {
	for _, grantorOnly := range []bool{false, true} {
		t.Run(fmt.Sprint("grantorOnly=", grantorOnly), func(t *testing.T) {
			env := newTestEnv(t, envOptions{grantorOnly: grantorOnly})
			a, b := env.newAuthority("a"), env.newAuthority("b")
			r := a.createEntry("u", 0, "r", map[string]any{"name": "n"})
			require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
			id := requireEntry(t, r.body["entry"], true)["entry_id"].(string)
			if grantorOnly {
				requireError(t, b.useItem(id), http.StatusForbidden, "forbidden")
				require.Equal(t, http.StatusOK, a.useItem(id).status)
				return
			}
			require.Equal(t, http.StatusOK, b.useItem(id).status)
		})
	}
}

// TestRevokeAuthorityCommand (issue 10, item 17): create-authority -o
// writes the configuration with mode 0600; revoke-authority takes effect
// in a running walletd within about a second, without a restart; and
// serve -grantor-only-item-use reaches the ledger.
func TestRevokeAuthorityCommand(t *testing.T) {
	authDir := filepath.Join(t.TempDir(), "authorities")
	p := startWalletd(t, "-data", ":memory:", "-authorities", authDir, "-grantor-only-item-use")
	request := strings.Replace(authorityRequestJSON, "http://127.0.0.1:8000", p.baseURL(), 1)
	var clients []*sdkClient
	for _, name := range []string{"a.json", "b.json"} {
		out := filepath.Join(t.TempDir(), name)
		code, stdout, stderr := runWalletd(t, request, "create-authority", "-authorities", authDir, "-o", out, "-")
		require.Equal(t, 0, code, "stderr: %s", stderr)
		assert.Empty(t, stdout, "the configuration goes to the file only")
		fi, err := os.Stat(out)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "configuration file mode")
		raw, err := os.ReadFile(out)
		require.NoError(t, err)
		c := loadSDKClient(t, raw, "")
		c.awaitAccepted()
		clients = append(clients, c)
	}
	a, b := clients[0], clients[1]
	r := a.createEntry("u", 0, "r", map[string]any{"name": "n"})
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	requireError(t, b.useItem(requireEntry(t, r.body["entry"], true)["entry_id"].(string)), http.StatusForbidden, "forbidden")

	code, _, stderr := runWalletd(t, "", "revoke-authority", "-authorities", authDir, a.authorityID)
	require.Equal(t, 0, code, "stderr: %s", stderr)
	revoked := time.Now()
	var last resp
	require.Eventually(t, func() bool {
		last = a.getWallets(nil, nil)
		return last.status == http.StatusForbidden
	}, 10*rescanInterval, 10*time.Millisecond, "still accepted: %d %s", last.status, last.raw)
	took := time.Since(revoked)
	assert.Less(t, took, 2*rescanInterval, "revocation took %v", took)
	t.Logf("revoked after %v", took)
	assert.Equal(t, http.StatusOK, b.getWallets(nil, nil).status)
	assert.Equal(t, 0, p.stop(syscall.SIGTERM))
}
