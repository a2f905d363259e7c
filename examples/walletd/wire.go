package main

// The JSON wire format of API v1.
//
// Requests are decoded strictly: unknown keys, keys that match only when
// case is ignored, duplicate keys, wrong types, trailing data and
// fractional amounts are refused. Responses that carry entries or
// items are written by hand rather than by encoding/json: encoding/json
// compacts and HTML-escapes a json.RawMessage, and item data must come
// back exactly as it was sent.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/shopspring/decimal"

	"github.com/walletledger/ledger"
)

// maxBodyBytes caps a request body.
const maxBodyBytes = 1 << 20

// badRequestError is input refused before it reaches the ledger. Its
// message is sent to the client, with status 400 unless status says
// otherwise.
type badRequestError struct {
	status int
	msg    string
}

func (e *badRequestError) Error() string { return e.msg }

func (e *badRequestError) statusCode() int {
	if e.status == 0 {
		return http.StatusBadRequest
	}
	return e.status
}

// Fixed messages for a body that cannot be read. The cause is not sent:
// it would show socket addresses, and it tells the client nothing it
// does not know.
const (
	msgBodyTimeout = "request body not received in time"
	msgBodyUnread  = "request body could not be read"
)

// readError is the answer to a request whose body could not be read.
func readError(err error) error {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return badRequest("request body larger than %d bytes", tooBig.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &badRequestError{status: http.StatusRequestTimeout, msg: msgBodyTimeout}
	}
	return &badRequestError{msg: msgBodyUnread}
}

func badRequest(format string, args ...any) error {
	return &badRequestError{msg: fmt.Sprintf(format, args...)}
}

// entryRequest is the body of POST /api/v1/entry. Pointers and raw
// messages tell a missing key from a zero value.
type entryRequest struct {
	UserID *string         `json:"user_id"`
	Amount json.RawMessage `json:"amount"`
	Reason *string         `json:"reason"`
	Item   *itemRequest    `json:"item"` // "item": null and no key both mean no item
}

type itemRequest struct {
	Name *string `json:"name"`
	// Data is any JSON value, kept byte for byte. JSON null means no data.
	Data json.RawMessage `json:"data"`
}

// entryRequestFields are the keys of entryRequest, for checkFields. Item
// data is any JSON value, whose keys are the authority's business.
var entryRequestFields = fields{
	"user_id": nil, "amount": nil, "reason": nil,
	"item": {"name": nil, "data": nil},
}

// decodeEntryRequest reads and checks the body of POST /api/v1/entry and
// returns the entry it asks for, without AuthorityID. Every error is a
// *badRequestError.
func decodeEntryRequest(body io.Reader) (ledger.NewEntry, error) {
	var req entryRequest
	if err := decodeJSONObject(body, &req, entryRequestFields); err != nil {
		return ledger.NewEntry{}, err
	}
	switch {
	case req.UserID == nil:
		return ledger.NewEntry{}, badRequest("missing user_id")
	case req.Amount == nil:
		return ledger.NewEntry{}, badRequest("missing amount")
	case req.Reason == nil:
		return ledger.NewEntry{}, badRequest("missing reason")
	}
	amount, err := parseAmount(req.Amount)
	if err != nil {
		return ledger.NewEntry{}, err
	}
	e := ledger.NewEntry{UserID: *req.UserID, Amount: amount, Reason: *req.Reason}
	if req.Item != nil {
		if req.Item.Name == nil {
			return ledger.NewEntry{}, badRequest("missing item.name")
		}
		e.Item = &ledger.Item{Name: *req.Item.Name}
		if len(req.Item.Data) > 0 && !bytes.Equal(req.Item.Data, []byte("null")) {
			e.Item.Data = req.Item.Data
		}
	}
	return e, nil
}

// decodeJSONObject decodes exactly one JSON value from body into v,
// refusing anything after the value and any key that is not in want,
// exactly, or that comes twice. Every error is a *badRequestError.
func decodeJSONObject(body io.Reader, v any, want fields) error {
	raw, err := io.ReadAll(body)
	if err != nil {
		return readError(err)
	}
	if err := checkText(raw); err != nil {
		return badRequest("invalid request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err)
		}
		return badRequest("invalid request body: unexpected data after the JSON object")
	}
	if err := checkFields(raw, want); err != nil {
		return badRequest("invalid request body: %v", err)
	}
	return nil
}

// checkText returns an error naming the first thing in the JSON text raw
// that encoding/json would silently turn into U+FFFD: a byte sequence
// that is not valid UTF-8, or a \u escape of a UTF-16 surrogate that is
// not half of a pair. Either would make two different inputs decode to
// the same string (so that "u\xff" and "u\ufffd" became one user), or, in
// item data kept as raw JSON, be stored and served as it came. Both are
// refused wherever they appear: in any key or string, at any depth.
//
// checkText does not check the JSON's syntax: encoding/json does. What it
// cannot make sense of, such as a truncated escape, it leaves for the
// decoder to report.
func checkText(raw []byte) error {
	for i := 0; i < len(raw); {
		r, n := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && n == 1 {
			return fmt.Errorf("not valid UTF-8 (byte %d)", i)
		}
		i += n
	}
	inString := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case !inString:
			inString = c == '"'
		case c == '"':
			inString = false
		case c == '\\':
			if i+1 == len(raw) {
				return nil // truncated: the decoder says so
			}
			if raw[i+1] != 'u' {
				i++ // a one-letter escape, \\ included
				continue
			}
			r, ok := hex4(raw[i+2:])
			if !ok {
				return nil // malformed: the decoder says so
			}
			if !utf16.IsSurrogate(r) {
				i += 5
				continue
			}
			if r < 0xdc00 { // a high surrogate: a low one must follow
				if lo, ok := hex4(raw[min(i+8, len(raw)):]); ok && raw[i+6] == '\\' && raw[i+7] == 'u' && 0xdc00 <= lo && lo <= 0xdfff {
					i += 11
					continue
				}
			}
			return fmt.Errorf("unpaired UTF-16 surrogate %s (byte %d)", raw[i:i+6], i)
		}
	}
	return nil
}

// hex4 reads the four hex digits that start b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// fields are the keys a JSON object may have. Each maps to the fields of
// its value when that is an object whose keys are to be checked too, and
// to nil when the value is not looked into.
type fields map[string]fields

// checkFields returns an error naming the first key of the JSON object
// in raw that is not one of want, exactly, or that comes twice, at every
// level that want describes. encoding/json, left to itself, matches keys
// ignoring case and keeps the last of duplicate keys, so
// {"USER_ID": ...} or {"amount": 1, "amount": 2} would pass it. raw is
// one valid JSON value; if it is not an object, there is nothing to
// check.
func checkFields(raw []byte, want fields) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return err
	}
	seen := make(map[string]bool, len(want))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		sub, ok := want[key]
		switch {
		case !ok:
			return fmt.Errorf("unknown field %q", truncate(key, 40))
		case seen[key]:
			return fmt.Errorf("duplicate field %q", key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if sub != nil {
			if err := checkFields(v, sub); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeError(err error) error {
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &tooBig):
		return badRequest("request body larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return badRequest("empty request body: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("invalid request body: truncated JSON")
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return badRequest("invalid request body: want a JSON object, got %s", typeErr.Value)
		}
		return badRequest("invalid %s: want %s, got %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return badRequest("invalid request body: malformed JSON: %s", strings.TrimPrefix(syntaxErr.Error(), "json: "))
	}
	// Unknown keys: encoding/json reports them as a plain error.
	return badRequest("invalid request body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string", "ptr":
		return "a string"
	case "struct":
		return "an object"
	}
	return goKind
}

// integerRE is a JSON number without fraction or exponent.
var integerRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// parseAmount reads a whole amount: a JSON integer that fits an int64.
// The ledger's precision (WithPrecision(0, 18)) bounds it further.
func parseAmount(raw json.RawMessage) (decimal.Decimal, error) {
	s := string(raw)
	if !integerRE.MatchString(s) {
		return decimal.Decimal{}, badRequest("invalid amount: want a JSON integer, got %s", truncate(s, 40))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return decimal.Decimal{}, badRequest("invalid amount: %s is out of range", truncate(s, 40))
	}
	return decimal.NewFromInt(n), nil
}

// truncate cuts s to at most n bytes, at a rune boundary, and marks the
// cut with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// appendEntry appends e as a wire Entry: exactly entry_id, authority_id,
// user_id, created_on, amount, reason, and item when there is one.
func appendEntry(b []byte, e *ledger.Entry) ([]byte, error) {
	amount, err := wireInteger(e.Amount)
	if err != nil {
		return nil, fmt.Errorf("entry %s: amount: %w", e.ID, err)
	}
	b = append(b, `{"entry_id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"authority_id":`...)
	b = appendString(b, e.AuthorityID)
	b = append(b, `,"user_id":`...)
	b = appendString(b, e.UserID)
	b = append(b, `,"created_on":`...)
	b = appendUnixSeconds(b, e.CreatedOn)
	b = append(b, `,"amount":`...)
	b = append(b, amount...)
	b = append(b, `,"reason":`...)
	b = appendString(b, e.Reason)
	if e.Item != nil {
		b = append(b, `,"item":`...)
		if b, err = appendItem(b, e.Item); err != nil {
			return nil, fmt.Errorf("entry %s: %w", e.ID, err)
		}
	}
	return append(b, '}'), nil
}

// appendItem appends it as {name, used, data?}, data exactly as stored.
func appendItem(b []byte, it *ledger.Item) ([]byte, error) {
	b = append(b, `{"name":`...)
	b = appendString(b, it.Name)
	b = append(b, `,"used":`...)
	b = strconv.AppendBool(b, it.Used)
	b, err := appendItemData(b, it.Data)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendItemData appends data, if any, as the member "data", exactly as
// stored; it must be JSON.
func appendItemData(b []byte, data []byte) ([]byte, error) {
	if len(data) == 0 {
		return b, nil
	}
	if !json.Valid(data) {
		return nil, errors.New("item data is not valid JSON")
	}
	b = append(b, `,"data":`...)
	return append(b, data...), nil
}

// appendInventoryItem appends {entry_id, authority_id, user_id, item}.
func appendInventoryItem(b []byte, ii *ledger.InventoryItem) ([]byte, error) {
	b = append(b, `{"entry_id":`...)
	b = appendString(b, ii.EntryID)
	b = append(b, `,"authority_id":`...)
	b = appendString(b, ii.AuthorityID)
	b = append(b, `,"user_id":`...)
	b = appendString(b, ii.UserID)
	b = append(b, `,"item":`...)
	b, err := appendItem(b, &ii.Item)
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", ii.EntryID, err)
	}
	return append(b, '}'), nil
}

// appendWallet appends {user_id, total}.
func appendWallet(b []byte, w *ledger.WalletTotal) ([]byte, error) {
	total, err := wireInteger(w.Total)
	if err != nil {
		return nil, fmt.Errorf("wallet of user %q: total: %w", w.UserID, err)
	}
	b = append(b, `{"user_id":`...)
	b = appendString(b, w.UserID)
	b = append(b, `,"total":`...)
	b = append(b, total...)
	return append(b, '}'), nil
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil { // cannot happen: encoding/json marshals every string
		return append(b, `""`...)
	}
	return append(b, q...)
}

// wireInteger formats a whole amount as a JSON integer. walletd runs the
// ledger with whole amounts only, so a fraction means the data did not
// come from walletd.
func wireInteger(d decimal.Decimal) (string, error) {
	if !d.IsInteger() {
		return "", fmt.Errorf("%s is not a whole number", d)
	}
	return d.String(), nil
}

// appendUnixSeconds appends t as Unix seconds, a JSON number that always
// has a fraction and is exact to the nanosecond: 1629578729.0,
// 1629578729.123.
func appendUnixSeconds(b []byte, t time.Time) []byte {
	sec, nsec := t.Unix(), int64(t.Nanosecond())
	if sec < 0 {
		// -1.25 s is Unix() -2 and Nanosecond() 750000000.
		b = append(b, '-')
		if nsec > 0 {
			sec, nsec = sec+1, 1e9-nsec
		}
		sec = -sec
	}
	b = strconv.AppendUint(b, uint64(sec), 10)
	b = append(b, '.')
	frac := strconv.AppendInt(make([]byte, 0, 9), nsec+1e9, 10)[1:] // 9 digits, zero-padded
	frac = bytes.TrimRight(frac, "0")
	if len(frac) == 0 {
		frac = append(frac, '0')
	}
	return append(b, frac...)
}
