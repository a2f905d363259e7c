package main

// API v2: balances, limits and wallets.

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/walletledger/ledger"
)

// currencySegment reads the {currency} segment of a path.
func currencySegment(r *http.Request) string {
	c := r.PathValue("currency")
	if c == defaultCurrencySegment {
		return ""
	}
	return c
}

// asOf reads the optional as_of parameter.
func asOf(q url.Values) (time.Time, error) {
	v := q.Get("as_of")
	if v == "" {
		return time.Time{}, nil
	}
	return parseTime("as_of", v)
}

// asOfOnly reads the query of a request that takes as_of and nothing
// else.
func asOfOnly(r *http.Request) (time.Time, error) {
	q, err := parseQueryV2(r.URL.RawQuery, "as_of")
	if err != nil {
		return time.Time{}, err
	}
	return asOf(q)
}

// totalAsOf is the total of userID in currency as it stood at t.
func (s *server) totalAsOf(r *http.Request, userID, currency string, t time.Time) (ledger.WalletTotal, error) {
	ws, err := s.ledger.Wallets(r.Context(), ledger.WalletQuery{UserIDs: []string{userID}, Currency: currency, AsOf: t})
	if err != nil {
		return ledger.WalletTotal{}, renameInvalid(err, "UserIDs", "UserID")
	}
	if len(ws) != 1 {
		return ledger.WalletTotal{}, errors.New("wallets as of: want one row")
	}
	return ws[0], nil
}

// appendBalanceAsOf appends {user_id, currency, total, as_of}: what the
// ledger knows of a wallet at a past instant (holds and limits keep no
// history).
func appendBalanceAsOf(b []byte, wt *ledger.WalletTotal, t time.Time) []byte {
	b = appendWalletV2(b, wt)
	b = append(b[:len(b)-1], `,"as_of":`...)
	b = appendTimeV2(b, t)
	return append(b, '}')
}

// v2Balances serves GET /api/v2/users/{user_id}/balances[?as_of=]: the
// user's wallets, one per currency (ledger.Balances); as of an instant,
// the totals then of the same currencies.
func (s *server) v2Balances(w http.ResponseWriter, r *http.Request, _ string) error {
	at, err := asOfOnly(r)
	if err != nil {
		return err
	}
	user := r.PathValue("user_id")
	bs, err := s.ledger.Balances(r.Context(), user)
	if err != nil {
		return err
	}
	b := append(make([]byte, 0, 1024), `{"balances":[`...)
	for i := range bs {
		if i > 0 {
			b = append(b, ',')
		}
		if at.IsZero() {
			b = appendBalanceV2(b, &bs[i])
			continue
		}
		wt, err := s.totalAsOf(r, user, bs[i].Currency, at)
		if err != nil {
			return err
		}
		b = appendBalanceAsOf(b, &wt, at)
	}
	b = append(b, ']')
	if !at.IsZero() {
		b = append(b, `,"as_of":`...)
		b = appendTimeV2(b, at)
	}
	writeV2(w, http.StatusOK, append(b, '}'))
	return nil
}

// v2Balance serves GET /api/v2/users/{user_id}/balances/{currency}
// [?as_of=]: one wallet (ledger.Balance), or its total as of an instant
// (ledger.WalletQuery.AsOf).
func (s *server) v2Balance(w http.ResponseWriter, r *http.Request, _ string) error {
	at, err := asOfOnly(r)
	if err != nil {
		return err
	}
	user, currency := r.PathValue("user_id"), currencySegment(r)
	if !at.IsZero() {
		wt, err := s.totalAsOf(r, user, currency, at)
		if err != nil {
			return err
		}
		writeV2(w, http.StatusOK, appendBalanceAsOf(nil, &wt, at))
		return nil
	}
	bal, err := s.ledger.Balance(r.Context(), user, currency)
	if err != nil {
		return err
	}
	writeV2(w, http.StatusOK, appendBalanceV2(nil, &bal))
	return nil
}

// writeLimits answers 200 {user_id, currency, floor, cap}.
func writeLimits(w http.ResponseWriter, bal *ledger.Balance) {
	b := append(make([]byte, 0, 128), `{"user_id":`...)
	b = appendString(b, bal.UserID)
	b = append(b, `,"currency":`...)
	b = appendString(b, bal.Currency)
	b = appendLimits(b, bal.Floor, bal.Cap)
	writeV2(w, http.StatusOK, append(b, '}'))
}

// v2GetLimits serves GET /api/v2/users/{user_id}/limits/{currency}.
func (s *server) v2GetLimits(w http.ResponseWriter, r *http.Request, _ string) error {
	if _, err := parseQueryV2(r.URL.RawQuery); err != nil {
		return err
	}
	bal, err := s.ledger.Balance(r.Context(), r.PathValue("user_id"), currencySegment(r))
	if err != nil {
		return err
	}
	writeLimits(w, &bal)
	return nil
}

// v2SetLimits serves PUT /api/v2/users/{user_id}/limits/{currency} with
// {"floor", "cap"}: floor "0" when left out, cap null (none) when left
// out or null. Setting limits is idempotent as it stands: an
// Idempotency-Key is checked and needs nothing more.
func (s *server) v2SetLimits(w http.ResponseWriter, r *http.Request, authorityID string) error {
	if _, err := idempotencyKey(r); err != nil {
		return err
	}
	var req struct {
		Floor json.RawMessage `json:"floor"`
		Cap   json.RawMessage `json:"cap"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"floor": nil, "cap": nil}); err != nil {
		return err
	}
	lim := ledger.WalletLimits{UserID: r.PathValue("user_id"), Currency: currencySegment(r)}
	if req.Floor != nil {
		f, err := parseDecimal("floor", req.Floor)
		if err != nil {
			return err
		}
		lim.Floor = f
	}
	if req.Cap != nil && string(req.Cap) != "null" {
		c, err := parseDecimal("cap", req.Cap)
		if err != nil {
			return err
		}
		lim.Cap = &c
	}
	if err := s.ledger.SetLimits(r.Context(), authorityID, lim); err != nil {
		return err
	}
	bal, err := s.ledger.Balance(r.Context(), lim.UserID, lim.Currency)
	if err != nil {
		return err
	}
	writeLimits(w, &bal)
	return nil
}

// v2Wallets serves GET /api/v2/wallets: ledger.Wallets, paged.
func (s *server) v2Wallets(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "user_ids", "authority_ids", "currency", "as_of", "limit", "cursor")
	if err != nil {
		return err
	}
	wq := ledger.WalletQuery{UserIDs: idList(q, "user_ids"), AuthorityIDs: idList(q, "authority_ids"), Currency: q.Get("currency")}
	if wq.AsOf, err = asOf(q); err != nil {
		return err
	}
	limit, err := parseLimitV2(q)
	if err != nil {
		return err
	}
	if wq.After, err = decodeCursor("wallets", q.Get("cursor")); err != nil {
		return err
	}
	wq.Limit = limit + 1
	ws, err := s.ledger.Wallets(r.Context(), wq)
	if err != nil {
		return err
	}
	return writePage(w, "wallets", "wallets", ws, limit, func(w *ledger.WalletTotal) string { return w.UserID }, noErr(appendWalletV2))
}
