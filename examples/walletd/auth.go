package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Authentication failures. Only errMissingAuth reaches the client as
// itself (401); the rest become 403 {"error": "forbidden"} and are told
// apart in logs and in walletd_auth_failures_total.
var (
	errMissingAuth      = errors.New("authorization data required")
	errUnknownAuthority = errors.New("unknown authority")
	// errWrongAlgorithm is a token whose header names an algorithm other
	// than ES256 (none, HS256, RS256, ...): an algorithm-confusion
	// attempt, not a signature that failed to verify.
	errWrongAlgorithm = errors.New("token algorithm is not ES256")
)

// tokenParser verifies tokens: ES256 only, so tokens with alg none, HS256
// (say, keyed with the public key) or RS256 are refused before any key is
// used; exp and nbf are enforced when present.
var tokenParser = jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}))

// authenticate returns the ID of the authority whose token the
// Authorization header carries: "<JWT>" as the Python SDK sends it, or
// "Bearer <JWT>".
func (as *authorities) authenticate(ctx context.Context, header string) (string, error) {
	tok := strings.TrimSpace(header)
	if tok == "" {
		return "", errMissingAuth
	}
	if scheme, rest, ok := strings.Cut(tok, " "); ok && strings.EqualFold(scheme, "Bearer") {
		tok = strings.TrimSpace(rest)
	}
	var claims jwt.RegisteredClaims
	t, err := tokenParser.ParseWithClaims(tok, &claims, func(t *jwt.Token) (any, error) {
		// The subject is not verified yet: it only picks the key that
		// the signature must verify with.
		a := as.lookup(ctx, claims.Subject)
		if a == nil {
			return nil, errUnknownAuthority
		}
		return a.key, nil
	})
	if err != nil {
		if t != nil && t.Header != nil {
			if alg, _ := t.Header["alg"].(string); alg != jwt.SigningMethodES256.Alg() {
				return "", fmt.Errorf("%w (alg %q): %w", errWrongAlgorithm, truncate(alg, 20), err)
			}
		}
		return "", err
	}
	return claims.Subject, nil
}

// authFailureReason names an authentication error for metrics and logs.
func authFailureReason(err error) string {
	switch {
	case errors.Is(err, errMissingAuth):
		return "missing"
	case errors.Is(err, errUnknownAuthority):
		return "unknown_authority"
	case errors.Is(err, errWrongAlgorithm):
		return "wrong_algorithm"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenNotValidYet):
		return "expired"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad_signature"
	}
	return "invalid"
}
