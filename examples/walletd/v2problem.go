package main

// API v2 errors: RFC 9457 problem details.
//
// Every error answer of /api/v2 is application/problem+json with a type
// URI that names one kind of failure, the same for every route: one per
// sentinel of the ledger (errors.go), plus those of HTTP itself
// (unauthorized, method-not-allowed, too-large, ...). The typed errors'
// fields are extension members, amounts as decimal strings.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/walletledger/ledger"
)

// problemBase is the prefix of every problem type URI.
const problemBase = "https://walletledger.dev/problems/"

// A problemKind is one problem type: its URI's last segment, its status
// and its title, which never changes for the type (RFC 9457 3.1.4).
type problemKind struct {
	slug   string
	status int
	title  string
}

// The problem types of API v2. The OpenAPI document lists the same, and
// TestV2ProblemTypes checks the two against each other.
var (
	probInvalid             = problemKind{"invalid", http.StatusBadRequest, "Invalid input"}
	probUnauthorized        = problemKind{"unauthorized", http.StatusUnauthorized, "Authorization required"}
	probForbidden           = problemKind{"forbidden", http.StatusForbidden, "Forbidden"}
	probNotFound            = problemKind{"not-found", http.StatusNotFound, "Not found"}
	probMethodNotAllowed    = problemKind{"method-not-allowed", http.StatusMethodNotAllowed, "Method not allowed"}
	probRequestTimeout      = problemKind{"request-timeout", http.StatusRequestTimeout, "Request body not received in time"}
	probIdempotencyConflict = problemKind{"idempotency-conflict", http.StatusConflict, "Idempotency key reused with different fields"}
	probHoldClosed          = problemKind{"hold-closed", http.StatusConflict, "Hold closed"}
	probAlreadyReversed     = problemKind{"already-reversed", http.StatusConflict, "Entry already reversed"}
	probItemUsed            = problemKind{"item-used", http.StatusConflict, "Item already used"}
	probItemRevoked         = problemKind{"item-revoked", http.StatusConflict, "Item revoked"}
	probNoItem              = problemKind{"no-item", http.StatusConflict, "Entry has no item"}
	probNotEmpty            = problemKind{"not-empty", http.StatusConflict, "Ledger not empty"}
	probTooLarge            = problemKind{"too-large", http.StatusRequestEntityTooLarge, "Request body too large"}
	probNotEnoughFunds      = problemKind{"not-enough-funds", http.StatusUnprocessableEntity, "Not enough funds"}
	probCapExceeded         = problemKind{"cap-exceeded", http.StatusUnprocessableEntity, "Cap exceeded"}
	probInternal            = problemKind{"internal", http.StatusInternalServerError, "Internal error"}
	probInconsistent        = problemKind{"inconsistent", http.StatusInternalServerError, "Ledger inconsistent"}
	probUnavailable         = problemKind{"unavailable", http.StatusServiceUnavailable, "Service unavailable"}
	probUnknownOutcome      = problemKind{"unknown-outcome", http.StatusServiceUnavailable, "Outcome unknown"}
)

// problemKinds lists every problem type, for the tests.
var problemKinds = []problemKind{
	probInvalid, probUnauthorized, probForbidden, probNotFound, probMethodNotAllowed,
	probRequestTimeout, probIdempotencyConflict, probHoldClosed, probAlreadyReversed,
	probItemUsed, probItemRevoked, probNoItem, probNotEmpty, probTooLarge,
	probNotEnoughFunds, probCapExceeded, probInternal, probInconsistent, probUnavailable,
	probUnknownOutcome,
}

// sentinelProblems maps each sentinel of the ledger to its problem type.
// TestV2SentinelsCovered checks that every sentinel in errors.go is here.
var sentinelProblems = []struct {
	err  error
	kind problemKind
}{
	{ledger.ErrInvalid, probInvalid},
	{ledger.ErrNotEnoughFunds, probNotEnoughFunds},
	{ledger.ErrNotFound, probNotFound},
	{ledger.ErrNoItem, probNoItem},
	{ledger.ErrItemUsed, probItemUsed},
	{ledger.ErrForbidden, probForbidden},
	{ledger.ErrClosed, probUnavailable},
	{ledger.ErrIdempotencyConflict, probIdempotencyConflict},
	{ledger.ErrCapExceeded, probCapExceeded},
	{ledger.ErrAlreadyReversed, probAlreadyReversed},
	{ledger.ErrItemRevoked, probItemRevoked},
	{ledger.ErrNotEmpty, probNotEmpty},
	{ledger.ErrUnknownOutcome, probUnknownOutcome},
	{ledger.ErrHoldClosed, probHoldClosed},
	{ledger.ErrInconsistent, probInconsistent},
}

// problem is one problem details object: the standard members and the
// extension members of its type, in order.
type problem struct {
	kind   problemKind
	detail string
	ext    []member
}

// member is one extension member; its value is marshalled by
// encoding/json.
type member struct {
	name  string
	value any
}

// v2Error is input that walletd refuses before it reaches the ledger,
// naming the field, header or parameter at fault.
type v2Error struct {
	kind    problemKind
	field   string // "" when the fault is not one field's (a body that is not JSON)
	problem string
}

func (e *v2Error) Error() string {
	if e.field == "" {
		return e.problem
	}
	return fmt.Sprintf("invalid %s: %s", e.field, e.problem)
}

// invalidField is a 400 invalid problem naming field.
func invalidField(field, format string, args ...any) error {
	return &v2Error{kind: probInvalid, field: field, problem: fmt.Sprintf(format, args...)}
}

// v2Fields names the ledger's fields (InvalidError.Field) as API v2
// does: its JSON members, query parameters and headers.
var v2Fields = map[string]string{
	"AuthorityID":    "authority_id",
	"UserID":         "user_id",
	"EntryID":        "entry_id",
	"HoldID":         "hold_id",
	"FromUserID":     "from_user_id",
	"ToUserID":       "to_user_id",
	"Amount":         "amount",
	"Reason":         "reason",
	"Currency":       "currency",
	"Currencies":     "currencies",
	"Metadata":       "metadata",
	"IdempotencyKey": "Idempotency-Key",
	"Item.Name":      "item.name",
	"Item.Data":      "item.data",
	"Item.Used":      "item.used",
	"Item.UsedOn":    "item.used_on",
	"Item.UsedBy":    "item.used_by",
	"Floor":          "floor",
	"Cap":            "cap",
	"Expires":        "expires",
	"UserIDs":        "user_ids",
	"AuthorityIDs":   "authority_ids",
	"EntryIDs":       "entry_ids",
	"HoldIDs":        "hold_ids",
	"States":         "states",
	"Since":          "since",
	"Until":          "until",
	"After":          "cursor",
	"Limit":          "limit",
	"Used":           "used",
	"entries":        "entries",
}

// v2Field names a ledger field as API v2 does.
func v2Field(f string) string {
	if n, ok := v2Fields[f]; ok {
		return n
	}
	return f
}

// problemFor turns err into the problem that answers it, and reports
// whether it is a server fault, to be logged as one. Errors of the
// ledger keep their typed fields.
func problemFor(err error) (problem, bool) {
	var v2 *v2Error
	var bad *badRequestError
	var tooBig *http.MaxBytesError
	if errors.As(err, &v2) {
		p := problem{kind: v2.kind, detail: v2.Error()}
		if v2.field != "" {
			p.ext = []member{{"field", v2.field}, {"problem", v2.problem}}
		}
		return p, false
	}
	if errors.As(err, &tooBig) {
		return problem{kind: probTooLarge, detail: fmt.Sprintf("request body larger than %d bytes", tooBig.Limit)}, false
	}
	if errors.As(err, &bad) { // shared with v1: stream starts, body reads
		k := probInvalid
		if bad.statusCode() == http.StatusRequestTimeout {
			k = probRequestTimeout
		}
		return problem{kind: k, detail: bad.msg}, false
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, ledger.ErrUnknownOutcome) {
		return problem{kind: probRequestTimeout, detail: msgBodyTimeout}, false
	}

	var faults batchError
	if errors.As(err, &faults) {
		list := make([]map[string]any, len(faults))
		for i, f := range faults {
			list[i] = map[string]any{"index": f.index, "field": f.field, "problem": f.problem}
		}
		return problem{kind: probInvalid, detail: faults.Error(), ext: []member{{"errors", list}}}, false
	}
	var batch ledger.EntryErrors
	if errors.As(err, &batch) {
		list := make([]map[string]any, 0, len(batch))
		for _, e := range batch {
			m := map[string]any{"index": e.Index}
			var inv *ledger.InvalidError
			if errors.As(e.Err, &inv) {
				m["field"], m["problem"] = fmt.Sprintf("entries[%d].%s", e.Index, v2Field(inv.Field)), inv.Problem
			} else {
				m["problem"] = e.Err.Error()
			}
			list = append(list, m)
		}
		return problem{kind: probInvalid, detail: fmt.Sprintf("%d invalid entries in the batch", len(batch)),
			ext: []member{{"errors", list}}}, false
	}
	var index []member
	var one *ledger.EntryError
	if errors.As(err, &one) {
		index = []member{{"index", one.Index}}
	}

	var inv *ledger.InvalidError
	var funds *ledger.NotEnoughFundsError
	var capx *ledger.CapExceededError
	var conflict *ledger.IdempotencyConflictError
	var closed *ledger.HoldClosedError
	switch {
	case errors.As(err, &inv):
		field := v2Field(inv.Field)
		if one != nil && inv.Field != "IdempotencyKey" {
			field = fmt.Sprintf("entries[%d].%s", one.Index, field)
		}
		return problem{kind: probInvalid, detail: fmt.Sprintf("invalid %s: %s", field, inv.Problem),
			ext: append(index, member{"field", field}, member{"problem", inv.Problem})}, false
	case errors.As(err, &funds):
		return problem{kind: probNotEnoughFunds, detail: trimLedger(funds.Error()), ext: append(index,
			member{"user_id", funds.UserID}, member{"currency", funds.Currency},
			member{"balance", funds.Balance.String()}, member{"amount", funds.Amount.String()},
			member{"held", funds.Held.String()}, member{"floor", funds.Floor.String()})}, false
	case errors.As(err, &capx):
		return problem{kind: probCapExceeded, detail: trimLedger(capx.Error()), ext: append(index,
			member{"user_id", capx.UserID}, member{"currency", capx.Currency},
			member{"total", capx.Total.String()}, member{"amount", capx.Amount.String()},
			member{"cap", capx.Cap.String()})}, false
	case errors.As(err, &conflict):
		fields := make([]string, len(conflict.Fields))
		for i, f := range conflict.Fields {
			fields[i] = v2Field(f)
		}
		ext := append(index, member{"idempotency_key", conflict.Key})
		if conflict.EntryID != "" {
			ext = append(ext, member{"entry_id", conflict.EntryID})
		}
		if conflict.HoldID != "" {
			ext = append(ext, member{"hold_id", conflict.HoldID})
		}
		ext = append(ext, member{"fields", fields})
		return problem{kind: probIdempotencyConflict, detail: trimLedger(conflict.Error()), ext: ext}, false
	case errors.As(err, &closed):
		return problem{kind: probHoldClosed, detail: trimLedger(closed.Error()),
			ext: []member{{"hold_id", closed.HoldID}, {"state", closed.State.String()}}}, false
	}
	for _, sp := range sentinelProblems {
		if errors.Is(err, sp.err) {
			server := sp.kind.status >= 500 && sp.err != ledger.ErrClosed
			if server {
				return problem{kind: sp.kind, detail: sp.kind.title, ext: index}, true
			}
			return problem{kind: sp.kind, detail: strings.ReplaceAll(err.Error(), "ledger: ", ""), ext: index}, false
		}
	}
	return problem{kind: probInternal, detail: "internal error"}, true
}

// trimLedger drops the "ledger: " prefix of a ledger error's message.
func trimLedger(msg string) string {
	const prefix = "ledger: "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}

// failV2 answers a v2 request that failed with err, as fail does for v1:
// nothing is written when the client has gone away, and a server fault
// is logged.
func (s *server) failV2(w http.ResponseWriter, r *http.Request, err error) {
	p, serverFault := problemFor(err)
	if p.kind == probInternal || serverFault {
		if r.Context().Err() != nil {
			s.log.InfoContext(r.Context(), "request abandoned by the client", "method", r.Method, "path", logPath(r), "err", err)
			setOutcome(r, outcomeClientGone)
			return
		}
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", logPath(r), "err", err)
	}
	if p.kind == probNotEnoughFunds {
		s.metrics.notEnoughFunds.Inc()
	}
	writeProblem(w, r, p)
}

// writeProblem answers with p as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, p problem) {
	b := append(make([]byte, 0, 256), `{"type":`...)
	b = appendString(b, problemBase+p.kind.slug)
	b = append(b, `,"title":`...)
	b = appendString(b, p.kind.title)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(p.kind.status), 10)
	b = append(b, `,"detail":`...)
	b = appendString(b, p.detail)
	b = append(b, `,"instance":`...)
	b = appendString(b, r.URL.EscapedPath())
	for _, m := range p.ext {
		v, err := json.Marshal(m.value)
		if err != nil { // cannot happen: strings, ints and lists of them
			continue
		}
		b = append(b, ',')
		b = appendString(b, m.name)
		b = append(b, ':')
		b = append(b, v...)
	}
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(p.kind.status)
	w.Write(b)
}
