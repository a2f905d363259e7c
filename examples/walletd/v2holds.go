package main

// API v2: holds.

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/walletledger/ledger"
)

// v2PlaceHold serves POST /api/v2/holds.
func (s *server) v2PlaceHold(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req struct {
		UserID   *string           `json:"user_id"`
		Currency string            `json:"currency"`
		Amount   json.RawMessage   `json:"amount"`
		Reason   *string           `json:"reason"`
		Expires  *string           `json:"expires"`
		Metadata map[string]string `json:"metadata"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"user_id": nil, "currency": nil, "amount": nil, "reason": nil,
		"expires": nil, "metadata": nil}); err != nil {
		return err
	}
	switch {
	case req.UserID == nil:
		return invalidField("user_id", "missing")
	case req.Amount == nil:
		return invalidField("amount", "missing")
	case req.Reason == nil:
		return invalidField("reason", "missing")
	}
	amount, err := parseDecimal("amount", req.Amount)
	if err != nil {
		return err
	}
	nh := ledger.NewHold{AuthorityID: authorityID, UserID: *req.UserID, Currency: req.Currency, Amount: amount,
		Reason: *req.Reason, Metadata: req.Metadata, IdempotencyKey: key}
	if req.Expires != nil {
		if nh.Expires, err = parseTime("expires", *req.Expires); err != nil {
			return err
		}
	}
	h, err := s.ledger.Hold(r.Context(), nh)
	if err != nil {
		return err
	}
	created(w, "/api/v2/holds/"+h.ID, appendHoldV2(nil, &h))
	return nil
}

// v2GetHold serves GET /api/v2/holds/{hold_id}[?currency=]. The ledger
// looks holds up within one currency, the default unless currency says
// otherwise.
func (s *server) v2GetHold(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "currency")
	if err != nil {
		return err
	}
	id := r.PathValue("hold_id")
	hs, err := s.ledger.Holds(r.Context(), ledger.HoldQuery{HoldIDs: []string{id}, Currency: q.Get("currency"), Limit: 1})
	if err != nil {
		return renameInvalid(err, "HoldIDs", "HoldID")
	}
	if len(hs) == 0 {
		return &v2Error{kind: probNotFound, problem: "no hold " + strconv.Quote(truncate(id, 64)) + " in this currency"}
	}
	writeV2(w, http.StatusOK, appendHoldV2(nil, &hs[0]))
	return nil
}

// v2ListHolds serves GET /api/v2/holds.
func (s *server) v2ListHolds(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "hold_ids", "user_ids", "authority_ids", "currency", "states", "limit", "cursor")
	if err != nil {
		return err
	}
	hq := ledger.HoldQuery{HoldIDs: idList(q, "hold_ids"), UserIDs: idList(q, "user_ids"),
		AuthorityIDs: idList(q, "authority_ids"), Currency: q.Get("currency")}
	for _, st := range idList(q, "states") {
		var hs ledger.HoldState
		if err := hs.UnmarshalText([]byte(st)); err != nil {
			return invalidField("states", "want active, captured, released or expired, got %q", truncate(st, 40))
		}
		hq.States = append(hq.States, hs)
	}
	limit, err := parseLimitV2(q)
	if err != nil {
		return err
	}
	if hq.After, err = decodeCursor("holds", q.Get("cursor")); err != nil {
		return err
	}
	hq.Limit = limit + 1
	hs, err := s.ledger.Holds(r.Context(), hq)
	if err != nil {
		return err
	}
	return writePage(w, "holds", "holds", hs, limit, func(h *ledger.Hold) string { return h.ID }, noErr(appendHoldV2))
}

// v2Capture serves POST /api/v2/holds/{hold_id}/capture with an optional
// body {"amount", "reason", "item"}: 201 with the capture's entry. The
// ledger keeps no idempotency key for a capture, and needs none: a hold
// is captured at most once, and a retry after an unknown outcome answers
// hold-closed with state captured if the first attempt was committed.
func (s *server) v2Capture(w http.ResponseWriter, r *http.Request, authorityID string) error {
	if _, err := idempotencyKey(r); err != nil {
		return err
	}
	var req struct {
		Amount json.RawMessage `json:"amount"`
		Reason string          `json:"reason"`
		Item   *itemRequestV2  `json:"item"`
	}
	if err := decodeOptional(w, r, &req, fields{"amount": nil, "reason": nil, "item": itemFieldsV2}); err != nil {
		return err
	}
	c := ledger.Capture{Reason: req.Reason}
	if req.Amount != nil {
		a, err := parseDecimal("amount", req.Amount)
		if err != nil {
			return err
		}
		c.Amount = a
	}
	item, err := req.Item.item("")
	if err != nil {
		return err
	}
	c.Item = item
	e, err := s.ledger.Capture(r.Context(), authorityID, r.PathValue("hold_id"), c)
	if err != nil {
		return err
	}
	s.metrics.entriesCreated.Inc()
	b, err := appendEntryV2(nil, &e)
	if err != nil {
		return err
	}
	created(w, "/api/v2/entries/"+e.ID, b)
	return nil
}

// v2Release serves POST /api/v2/holds/{hold_id}/release: 200 with the
// released hold. As for captures, a hold is released at most once.
func (s *server) v2Release(w http.ResponseWriter, r *http.Request, authorityID string) error {
	if _, err := idempotencyKey(r); err != nil {
		return err
	}
	if err := decodeOptional(w, r, &struct{}{}, fields{}); err != nil {
		return err
	}
	h, err := s.ledger.Release(r.Context(), authorityID, r.PathValue("hold_id"))
	if err != nil {
		return err
	}
	writeV2(w, http.StatusOK, appendHoldV2(nil, &h))
	return nil
}
