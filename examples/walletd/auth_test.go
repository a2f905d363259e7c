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
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
// runs is usable at once.
func TestNewAuthorityWithoutRestart(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	first := env.newAuthority("first")
	require.Equal(t, http.StatusOK, first.getWallets(nil, nil).status)
	late := env.newAuthority("late") // written after the server loaded the directory
	r := late.createEntry("u", 1, "r", nil)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.raw)
	assert.Equal(t, late.authorityID, requireEntry(t, r.body["entry"], false)["authority_id"])
}

// TestUnknownAuthorityMissCache: a miss is remembered for missTTL, after
// which the file is looked for again.
func TestUnknownAuthorityMissCache(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.newAuthority("a")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	id := hex.EncodeToString([]byte("0123456789abcdef"))
	ghost := &sdkClient{t: t, apiURL: c.apiURL, authorityID: id, key: key, hc: c.hc}
	ghost.token = ghost.sign(jwt.MapClaims{"sub": id})

	requireError(t, ghost.getWallets(nil, nil), http.StatusForbidden, "forbidden")
	// The file appears, but the miss is remembered.
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	require.NoError(t, writeAuthorityFile(env.authDir, authorityFile{
		ID: id, Name: "ghost", PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
	}))
	requireError(t, ghost.getWallets(nil, nil), http.StatusForbidden, "forbidden")
	env.advance(missTTL)
	require.Equal(t, http.StatusOK, ghost.getWallets(nil, nil).status)
}

// TestUnknownAuthorityRateLimit: tokens naming ever new unknown
// authorities cost at most reloadBurst disk reads at once and reloadRate
// a second after.
func TestUnknownAuthorityRateLimit(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	dir := t.TempDir()
	as, err := loadAuthorities(context.Background(), dir, discardLogger(), func() time.Time { return now })
	require.NoError(t, err)
	unknown := func(n int) {
		for i := range n {
			var raw [16]byte
			_, err := rand.Read(raw[:])
			require.NoError(t, err)
			require.Nil(t, as.lookup(context.Background(), hex.EncodeToString(raw[:])), "lookup %d", i)
		}
	}
	unknown(100)
	assert.Equal(t, reloadBurst, as.reads)
	now = now.Add(time.Second)
	unknown(100)
	assert.Equal(t, reloadBurst+reloadRate, as.reads)
	// Malformed IDs never reach the disk.
	for _, id := range []string{"", "..", "../x", strings.Repeat("A", 32), strings.Repeat("0", 31)} {
		require.Nil(t, as.lookup(context.Background(), id))
	}
	assert.Equal(t, reloadBurst+reloadRate, as.reads)
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
