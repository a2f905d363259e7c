package main

// The JSON wire format of API v2.
//
// Members are snake_case. Amounts are JSON strings holding exact
// decimals ("-5", "12.50"), never numbers; times are RFC 3339 strings in
// UTC with nine digits of fraction ("2026-12-03T12:00:00.123456789Z");
// the default currency is "". Requests are decoded as strictly as v1's
// (see wire.go): unknown members, members that match only when case is
// ignored, duplicate members, wrong types and trailing data are refused
// with a 400 invalid problem naming the member. Answers that carry
// entries are written by hand, so that item data comes back byte for
// byte as it was sent.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// v2TimeFormat is RFC 3339 with all nine digits of the nanoseconds.
const v2TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Paging of v2 lists.
const (
	v2DefaultLimit = 100
	v2MaxLimit     = 1000
)

// maxIdempotencyKeyBytes bounds an Idempotency-Key header. It leaves room
// below the ledger's 256 bytes for the suffix that a batch adds to derive
// each entry's key (see batchKey).
const maxIdempotencyKeyBytes = 200

// decodeV2 decodes the JSON object body into v, refusing anything
// want does not describe; every error is a *v2Error naming the member
// at fault. A member authority_id is refused with its own message: the
// authority a write acts as is the token's.
func decodeV2(body io.Reader, v any, want fields) error {
	raw, err := io.ReadAll(body)
	if err != nil {
		return readErrorV2(err)
	}
	if err := checkText(raw); err != nil {
		return &v2Error{kind: probInvalid, field: "body", problem: err.Error()}
	}
	if _, ok := want["authority_id"]; !ok {
		if err := refuseAuthorityID(raw); err != nil {
			return err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return v2DecodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return v2DecodeError(err)
		}
		return &v2Error{kind: probInvalid, field: "body", problem: "unexpected data after the JSON object"}
	}
	if err := checkFields(raw, want); err != nil {
		// "unknown field "x"" or "duplicate field "x"": name the member.
		msg := err.Error()
		if what, name, ok := strings.Cut(msg, " field "); ok {
			return invalidField(strings.Trim(name, `"`), "%s member", what)
		}
		return &v2Error{kind: probInvalid, field: "body", problem: msg}
	}
	return nil
}

// readErrorV2 is readError for v2: a body over the limit stays an
// *http.MaxBytesError, a too-large problem.
func readErrorV2(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return tooBig
	}
	return readError(err)
}

// refuseAuthorityID refuses a body whose top-level object has the
// member authority_id.
func refuseAuthorityID(raw []byte) error {
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return nil // the decoder says what is wrong
	}
	if _, ok := top["authority_id"]; ok {
		return invalidField("authority_id", "not accepted: a write acts as the authority of its token")
	}
	return nil
}

// v2DecodeError names the member that encoding/json failed on.
func v2DecodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return &v2Error{kind: probInvalid, field: "body", problem: "empty: want a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &v2Error{kind: probInvalid, field: "body", problem: "truncated JSON"}
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return &v2Error{kind: probInvalid, field: "body", problem: "want a JSON object, got " + typeErr.Value}
		}
		return invalidField(typeErr.Field, "want %s, got %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return &v2Error{kind: probInvalid, field: "body", problem: "malformed JSON: " + strings.TrimPrefix(syntaxErr.Error(), "json: ")}
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return invalidField(strings.Trim(f, `"`), "unknown member")
	}
	return &v2Error{kind: probInvalid, field: "body", problem: msg}
}

// decimalRE is a decimal as v2 writes amounts: an optional minus, digits
// without leading zeros, an optional fraction; no exponent, no plus.
var decimalRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// parseDecimal reads the amount member field: a JSON string holding a
// decimal. A JSON number is refused, however exact it looks: numbers are
// floats to most JSON parsers.
func parseDecimal(field string, raw json.RawMessage) (decimal.Decimal, error) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return decimal.Decimal{}, invalidField(field, "want a JSON string holding a decimal, such as \"-5\" or \"12.50\", got %s", truncate(string(raw), 40))
	}
	if len(s) > 64 || !decimalRE.MatchString(s) {
		return decimal.Decimal{}, invalidField(field, "want a decimal such as \"-5\" or \"12.50\", got %q", truncate(s, 40))
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, invalidField(field, "%q is not a decimal", truncate(s, 40))
	}
	return d, nil
}

// parseTime reads an RFC 3339 time, named field for errors.
func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, invalidField(field, "want an RFC 3339 time such as 2026-12-03T12:00:00.5Z, got %q", truncate(s, 40))
	}
	return t, nil
}

// idempotencyKey reads the Idempotency-Key header: "" when absent.
func idempotencyKey(r *http.Request) (string, error) {
	vs := r.Header.Values("Idempotency-Key")
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", invalidField("Idempotency-Key", "given %d times", len(vs))
	}
	k := vs[0]
	if k == "" || len(k) > maxIdempotencyKeyBytes {
		return "", invalidField("Idempotency-Key", "want 1 to %d bytes, got %d", maxIdempotencyKeyBytes, len(k))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return "", invalidField("Idempotency-Key", "want visible ASCII characters only (byte %d)", i)
		}
	}
	return k, nil
}

// batchKey is the idempotency key of entry i of a batch sent with key k.
func batchKey(k string, i int) string {
	if k == "" {
		return ""
	}
	return k + "#" + strconv.Itoa(i)
}

// itemRequestV2 is an item to grant, in an entry or a capture.
type itemRequestV2 struct {
	Name *string         `json:"name"`
	Data json.RawMessage `json:"data"` // any JSON value, kept byte for byte; null means none
}

func (it *itemRequestV2) item(prefix string) (*ledger.Item, error) {
	if it == nil {
		return nil, nil
	}
	if it.Name == nil {
		return nil, invalidField(prefix+"item.name", "missing")
	}
	out := &ledger.Item{Name: *it.Name}
	if len(it.Data) > 0 && !bytes.Equal(it.Data, []byte("null")) {
		out.Data = it.Data
	}
	return out, nil
}

var itemFieldsV2 = fields{"name": nil, "data": nil}

// entryRequestV2 is the body of POST /api/v2/entries, and one entry of a
// batch.
type entryRequestV2 struct {
	UserID   *string           `json:"user_id"`
	Amount   json.RawMessage   `json:"amount"`
	Reason   *string           `json:"reason"`
	Currency string            `json:"currency"`
	Item     *itemRequestV2    `json:"item"`
	Metadata map[string]string `json:"metadata"`
}

var entryFieldsV2 = fields{
	"user_id": nil, "amount": nil, "reason": nil, "currency": nil, "metadata": nil,
	"item": itemFieldsV2,
}

// newEntry checks req and returns the entry it asks for, without
// AuthorityID and IdempotencyKey; prefix is put before member names in
// errors ("entries[3]." in a batch).
func (req *entryRequestV2) newEntry(prefix string) (ledger.NewEntry, error) {
	switch {
	case req.UserID == nil:
		return ledger.NewEntry{}, invalidField(prefix+"user_id", "missing")
	case req.Amount == nil:
		return ledger.NewEntry{}, invalidField(prefix+"amount", "missing")
	case req.Reason == nil:
		return ledger.NewEntry{}, invalidField(prefix+"reason", "missing")
	}
	amount, err := parseDecimal(prefix+"amount", req.Amount)
	if err != nil {
		return ledger.NewEntry{}, err
	}
	item, err := req.Item.item(prefix)
	if err != nil {
		return ledger.NewEntry{}, err
	}
	return ledger.NewEntry{UserID: *req.UserID, Amount: amount, Reason: *req.Reason,
		Currency: req.Currency, Item: item, Metadata: req.Metadata}, nil
}

// appendEntryV2 appends e as a v2 Entry.
func appendEntryV2(b []byte, e *ledger.Entry) ([]byte, error) {
	b = append(b, `{"entry_id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"authority_id":`...)
	b = appendString(b, e.AuthorityID)
	b = append(b, `,"user_id":`...)
	b = appendString(b, e.UserID)
	b = append(b, `,"currency":`...)
	b = appendString(b, e.Currency)
	b = append(b, `,"amount":`...)
	b = appendString(b, e.Amount.String())
	b = append(b, `,"balance":`...)
	b = appendString(b, e.Balance.String())
	b = append(b, `,"reason":`...)
	b = appendString(b, e.Reason)
	b = append(b, `,"created_on":`...)
	b = appendTimeV2(b, e.CreatedOn)
	b = append(b, `,"metadata":`...)
	b = appendMetadata(b, e.Metadata)
	for _, f := range [...]struct{ name, v string }{
		{"transfer_id", e.TransferID}, {"reverses", e.Reverses}, {"reversed_by", e.ReversedBy}, {"hold_id", e.HoldID},
	} {
		if f.v != "" {
			b = append(b, `,"`+f.name+`":`...)
			b = appendString(b, f.v)
		}
	}
	if e.Item != nil {
		var err error
		b = append(b, `,"item":`...)
		if b, err = appendItemV2(b, e.Item); err != nil {
			return nil, fmt.Errorf("entry %s: %w", e.ID, err)
		}
	}
	return append(b, '}'), nil
}

// appendItemV2 appends it as {name, used, revoked, data?, used_on?,
// used_by?}, data exactly as stored.
func appendItemV2(b []byte, it *ledger.Item) ([]byte, error) {
	b = append(b, `{"name":`...)
	b = appendString(b, it.Name)
	b = append(b, `,"used":`...)
	b = strconv.AppendBool(b, it.Used)
	b = append(b, `,"revoked":`...)
	b = strconv.AppendBool(b, it.Revoked)
	b, err := appendItemData(b, it.Data)
	if err != nil {
		return nil, err
	}
	if !it.UsedOn.IsZero() {
		b = append(b, `,"used_on":`...)
		b = appendTimeV2(b, it.UsedOn)
	}
	if it.UsedBy != "" {
		b = append(b, `,"used_by":`...)
		b = appendString(b, it.UsedBy)
	}
	return append(b, '}'), nil
}

func appendTimeV2(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, v2TimeFormat)
	return append(b, '"')
}

func appendMetadata(b []byte, m map[string]string) []byte {
	if m == nil {
		m = map[string]string{}
	}
	v, err := json.Marshal(m) // sorted keys
	if err != nil {
		return append(b, "{}"...)
	}
	return append(b, v...)
}

// appendHoldV2 appends h as a v2 Hold.
func appendHoldV2(b []byte, h *ledger.Hold) []byte {
	b = append(b, `{"hold_id":`...)
	b = appendString(b, h.ID)
	b = append(b, `,"authority_id":`...)
	b = appendString(b, h.AuthorityID)
	b = append(b, `,"user_id":`...)
	b = appendString(b, h.UserID)
	b = append(b, `,"currency":`...)
	b = appendString(b, h.Currency)
	b = append(b, `,"amount":`...)
	b = appendString(b, h.Amount.String())
	b = append(b, `,"reason":`...)
	b = appendString(b, h.Reason)
	b = append(b, `,"metadata":`...)
	b = appendMetadata(b, h.Metadata)
	b = append(b, `,"state":`...)
	b = appendString(b, h.State.String())
	b = append(b, `,"created_on":`...)
	b = appendTimeV2(b, h.CreatedOn)
	if !h.Expires.IsZero() {
		b = append(b, `,"expires":`...)
		b = appendTimeV2(b, h.Expires)
	}
	if !h.ClosedOn.IsZero() {
		b = append(b, `,"closed_on":`...)
		b = appendTimeV2(b, h.ClosedOn)
	}
	if h.EntryID != "" {
		b = append(b, `,"entry_id":`...)
		b = appendString(b, h.EntryID)
	}
	return append(b, '}')
}

// appendBalanceV2 appends b as a v2 Balance: {user_id, currency, total,
// held, available, floor, cap}, cap null when there is none.
func appendBalanceV2(b []byte, bal *ledger.Balance) []byte {
	b = append(b, `{"user_id":`...)
	b = appendString(b, bal.UserID)
	b = append(b, `,"currency":`...)
	b = appendString(b, bal.Currency)
	b = append(b, `,"total":`...)
	b = appendString(b, bal.Total.String())
	b = append(b, `,"held":`...)
	b = appendString(b, bal.Held.String())
	b = append(b, `,"available":`...)
	b = appendString(b, bal.Available.String())
	b = appendLimits(b, bal.Floor, bal.Cap)
	return append(b, '}')
}

// appendLimits appends the members floor and cap.
func appendLimits(b []byte, floor decimal.Decimal, cap *decimal.Decimal) []byte {
	b = append(b, `,"floor":`...)
	b = appendString(b, floor.String())
	b = append(b, `,"cap":`...)
	if cap == nil {
		return append(b, "null"...)
	}
	return appendString(b, cap.String())
}

// appendWalletV2 appends {user_id, currency, total}.
func appendWalletV2(b []byte, w *ledger.WalletTotal) []byte {
	b = append(b, `{"user_id":`...)
	b = appendString(b, w.UserID)
	b = append(b, `,"currency":`...)
	b = appendString(b, w.Currency)
	b = append(b, `,"total":`...)
	b = appendString(b, w.Total.String())
	return append(b, '}')
}

// appendInventoryItemV2 appends {entry_id, authority_id, user_id, item}.
func appendInventoryItemV2(b []byte, ii *ledger.InventoryItem) ([]byte, error) {
	b = append(b, `{"entry_id":`...)
	b = appendString(b, ii.EntryID)
	b = append(b, `,"authority_id":`...)
	b = appendString(b, ii.AuthorityID)
	b = append(b, `,"user_id":`...)
	b = appendString(b, ii.UserID)
	b = append(b, `,"item":`...)
	b, err := appendItemV2(b, &ii.Item)
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", ii.EntryID, err)
	}
	return append(b, '}'), nil
}

// A cursor is opaque to clients: base64url of the list it pages and the
// key of the last row answered, so that a cursor of one list is refused
// by another.
func encodeCursor(list, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(list + ":" + key))
}

// decodeCursor returns the key in cursor c of list, "" for no cursor.
func decodeCursor(list, c string) (string, error) {
	if c == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	k, ok := strings.CutPrefix(string(raw), list+":")
	if err != nil || !ok || k == "" {
		return "", invalidField("cursor", "not a cursor of this list")
	}
	return k, nil
}
