package main

// API v2: entries (one, a batch, get, list, reversal), item use,
// inventory and transfers.

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/walletledger/ledger"
)

// v2CreateEntry serves POST /api/v2/entries.
func (s *server) v2CreateEntry(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req entryRequestV2
	if err := decodeV2(limitedBody(w, r), &req, entryFieldsV2); err != nil {
		return err
	}
	ne, err := req.newEntry("")
	if err != nil {
		return err
	}
	ne.AuthorityID, ne.IdempotencyKey = authorityID, key
	e, err := s.ledger.CreateEntry(r.Context(), ne)
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

// batchFault is one entry of a batch that walletd refused.
type batchFault struct {
	index          int
	field, problem string
}

// batchError lists every entry of a batch that walletd refused, so that
// a client fixes the batch in one round trip.
type batchError []batchFault

func (e batchError) Error() string { return strconv.Itoa(len(e)) + " invalid entries in the batch" }

// v2CreateBatch serves POST /api/v2/entries/batch: all or nothing, in
// order. With an Idempotency-Key K, entry i is created with the key
// K#i, so that a retry of the batch replays every entry.
func (s *server) v2CreateBatch(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"entries": nil}); err != nil {
		return err
	}
	if req.Entries == nil {
		return invalidField("entries", "missing")
	}
	es := make([]ledger.NewEntry, len(req.Entries))
	var bad batchError
	for i, raw := range req.Entries {
		prefix := "entries[" + strconv.Itoa(i) + "]."
		var er entryRequestV2
		err := decodeV2(strings.NewReader(string(raw)), &er, entryFieldsV2)
		if err == nil {
			es[i], err = er.newEntry("")
		}
		if err != nil {
			var v2 *v2Error
			if errors.As(err, &v2) {
				bad = append(bad, batchFault{i, prefix + v2.field, v2.problem})
				continue
			}
			return err
		}
		es[i].AuthorityID, es[i].IdempotencyKey = authorityID, batchKey(key, i)
	}
	if len(bad) > 0 {
		return bad
	}
	out, err := s.ledger.CreateEntries(r.Context(), es)
	if err != nil {
		return err
	}
	s.metrics.entriesCreated.Add(float64(len(out)))
	b := append(make([]byte, 0, 256*len(out)), `{"entries":[`...)
	for i := range out {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendEntryV2(b, &out[i]); err != nil {
			return err
		}
	}
	writeV2(w, http.StatusCreated, append(b, "]}"...))
	return nil
}

// renameInvalid renames the field of an *ledger.InvalidError from
// to to, for a route that passes one ID as a list of one.
func renameInvalid(err error, from, to string) error {
	var inv *ledger.InvalidError
	if errors.As(err, &inv) && inv.Field == from {
		return &ledger.InvalidError{Field: to, Problem: inv.Problem}
	}
	return err
}

// v2GetEntry serves GET /api/v2/entries/{entry_id}.
func (s *server) v2GetEntry(w http.ResponseWriter, r *http.Request, _ string) error {
	if _, err := parseQueryV2(r.URL.RawQuery); err != nil {
		return err
	}
	id := r.PathValue("entry_id")
	es, err := s.ledger.Entries(r.Context(), ledger.EntryQuery{EntryIDs: []string{id}, Limit: 1})
	if err != nil {
		return renameInvalid(err, "EntryIDs", "EntryID")
	}
	if len(es) == 0 {
		return &v2Error{kind: probNotFound, problem: "no entry " + strconv.Quote(truncate(id, 64))}
	}
	b, err := appendEntryV2(nil, &es[0])
	if err != nil {
		return err
	}
	writeV2(w, http.StatusOK, b)
	return nil
}

// v2ListEntries serves GET /api/v2/entries.
func (s *server) v2ListEntries(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "entry_ids", "user_ids", "authority_ids", "currencies",
		"since", "until", "order", "limit", "cursor")
	if err != nil {
		return err
	}
	eq := ledger.EntryQuery{
		EntryIDs:     idList(q, "entry_ids"),
		UserIDs:      idList(q, "user_ids"),
		AuthorityIDs: idList(q, "authority_ids"),
	}
	if vs, ok := q["currencies"]; ok {
		// Every element counts, the empty one being the default currency.
		eq.Currencies = strings.Split(vs[0], ",")
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &eq.Since}, {"until", &eq.Until}} {
		if v := q.Get(t.name); v != "" {
			if *t.dst, err = parseTime(t.name, v); err != nil {
				return err
			}
		}
	}
	list := "entries.asc"
	switch o := q.Get("order"); o {
	case "", "oldest_first":
	case "newest_first":
		eq.Reverse, list = true, "entries.desc"
	default:
		return invalidField("order", "want oldest_first or newest_first, got %q", truncate(o, 40))
	}
	limit, err := parseLimitV2(q)
	if err != nil {
		return err
	}
	if eq.After, err = decodeCursor(list, q.Get("cursor")); err != nil {
		return err
	}
	eq.Limit = limit + 1
	es, err := s.ledger.Entries(r.Context(), eq)
	if err != nil {
		return err
	}
	return writePage(w, "entries", list, es, limit, func(e *ledger.Entry) string { return e.ID }, appendEntryV2)
}

// v2Reverse serves POST /api/v2/entries/{entry_id}/reversal: 201
// {"entries": [...]}, the reversal's entries (two for a transfer's).
// The ledger keeps no idempotency key for a reversal, and needs none: an
// entry is reversed at most once, and a retry after an unknown outcome
// answers already-reversed if the first attempt was committed.
func (s *server) v2Reverse(w http.ResponseWriter, r *http.Request, authorityID string) error {
	if _, err := idempotencyKey(r); err != nil {
		return err
	}
	var req struct {
		Reason *string `json:"reason"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"reason": nil}); err != nil {
		return err
	}
	if req.Reason == nil {
		return invalidField("reason", "missing")
	}
	es, err := s.ledger.Reverse(r.Context(), authorityID, r.PathValue("entry_id"), *req.Reason)
	if err != nil {
		return err
	}
	s.metrics.entriesCreated.Add(float64(len(es)))
	b := append(make([]byte, 0, 1024), `{"entries":[`...)
	for i := range es {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendEntryV2(b, &es[i]); err != nil {
			return err
		}
	}
	writeV2(w, http.StatusCreated, append(b, "]}"...))
	return nil
}

// v2UseItem serves POST /api/v2/entries/{entry_id}/item/use, with an
// optional body {"user_id"}: the owner check (ledger.ForUser). The
// Idempotency-Key header is the use's key (ledger.UseIdempotencyKey).
func (s *server) v2UseItem(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req struct {
		UserID *string `json:"user_id"`
	}
	if err := decodeOptional(w, r, &req, fields{"user_id": nil}); err != nil {
		return err
	}
	var opts []ledger.UseOption
	if req.UserID != nil {
		opts = append(opts, ledger.ForUser(*req.UserID))
	}
	if key != "" {
		opts = append(opts, ledger.UseIdempotencyKey(key))
	}
	e, err := s.ledger.UseItem(r.Context(), authorityID, r.PathValue("entry_id"), opts...)
	if err != nil {
		return err
	}
	s.metrics.itemsUsed.Inc()
	b, err := appendEntryV2(nil, &e)
	if err != nil {
		return err
	}
	writeV2(w, http.StatusOK, b)
	return nil
}

// v2Transfer serves POST /api/v2/transfers.
func (s *server) v2Transfer(w http.ResponseWriter, r *http.Request, authorityID string) error {
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var req struct {
		FromUserID *string           `json:"from_user_id"`
		ToUserID   *string           `json:"to_user_id"`
		Amount     json.RawMessage   `json:"amount"`
		Currency   string            `json:"currency"`
		Reason     *string           `json:"reason"`
		Metadata   map[string]string `json:"metadata"`
	}
	if err := decodeV2(limitedBody(w, r), &req, fields{"from_user_id": nil, "to_user_id": nil, "amount": nil,
		"currency": nil, "reason": nil, "metadata": nil}); err != nil {
		return err
	}
	for _, m := range []struct {
		name    string
		missing bool
	}{{"from_user_id", req.FromUserID == nil}, {"to_user_id", req.ToUserID == nil}, {"amount", req.Amount == nil}, {"reason", req.Reason == nil}} {
		if m.missing {
			return invalidField(m.name, "missing")
		}
	}
	amount, err := parseDecimal("amount", req.Amount)
	if err != nil {
		return err
	}
	t, err := s.ledger.Transfer(r.Context(), ledger.NewTransfer{
		AuthorityID: authorityID, FromUserID: *req.FromUserID, ToUserID: *req.ToUserID, Currency: req.Currency,
		Amount: amount, Reason: *req.Reason, Metadata: req.Metadata, IdempotencyKey: key,
	})
	if err != nil {
		return err
	}
	s.metrics.entriesCreated.Add(2)
	b := append(make([]byte, 0, 1024), `{"transfer_id":`...)
	b = appendString(b, t.ID)
	b = append(b, `,"from":`...)
	if b, err = appendEntryV2(b, &t.From); err != nil {
		return err
	}
	b = append(b, `,"to":`...)
	if b, err = appendEntryV2(b, &t.To); err != nil {
		return err
	}
	created(w, "/api/v2/entries/"+t.From.ID, append(b, '}'))
	return nil
}

// v2Inventory serves GET /api/v2/inventory.
func (s *server) v2Inventory(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := parseQueryV2(r.URL.RawQuery, "entry_ids", "user_ids", "authority_ids", "used", "limit", "cursor")
	if err != nil {
		return err
	}
	iq := ledger.InventoryQuery{EntryIDs: idList(q, "entry_ids"), UserIDs: idList(q, "user_ids"), AuthorityIDs: idList(q, "authority_ids")}
	switch u := q.Get("used"); u {
	case "", "false":
		iq.Used = ledger.UnusedOnly
	case "true":
		iq.Used = ledger.UsedOnly
	case "any":
		iq.Used = ledger.UsedOrUnused
	default:
		return invalidField("used", "want false, true or any, got %q", truncate(u, 40))
	}
	limit, err := parseLimitV2(q)
	if err != nil {
		return err
	}
	if iq.After, err = decodeCursor("inventory", q.Get("cursor")); err != nil {
		return err
	}
	iq.Limit = limit + 1
	items, err := s.ledger.Inventory(r.Context(), iq)
	if err != nil {
		return err
	}
	return writePage(w, "items", "inventory", items, limit, func(it *ledger.InventoryItem) string { return it.EntryID }, appendInventoryItemV2)
}
