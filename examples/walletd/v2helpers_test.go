package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"
)

// Every v2 test talks to walletd through a v2Client, which validates
// every request it sends and every answer it gets against openapi.json
// with kin-openapi: a request the document does not admit fails the test
// unless it is marked invalid, and then the validator must refuse it
// too; an answer the document does not describe always fails it. So the
// document cannot drift from the server.

// v2Spec is the OpenAPI document, loaded and routed once per test binary.
type v2Spec struct {
	doc    *openapi3.T
	router routers.Router
}

var loadV2Spec = sync.OnceValues(func() (*v2Spec, error) {
	openapi3filter.RegisterBodyDecoder("text/event-stream", decodeSSE)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDocument)
	if err != nil {
		return nil, fmt.Errorf("load openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.json is not a valid OpenAPI document: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route openapi.json: %w", err)
	}
	return &v2Spec{doc: doc, router: router}, nil
})

// decodeSSE decodes a text/event-stream body, as far as it was read, into
// its events: [{"id", "event", "data": <the data, as JSON>}], for the
// validator. Comments (keep-alives) are skipped.
func decodeSSE(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	events, err := parseSSE(r)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(events))
	for i, e := range events {
		var data any
		if err := json.Unmarshal([]byte(e.data), &data); err != nil {
			return nil, fmt.Errorf("event %d: data is not JSON: %w", i, err)
		}
		out[i] = map[string]any{"id": e.id, "event": e.event, "data": data}
	}
	return out, nil
}

// v2Event is one Server-Sent Event.
type v2Event struct{ id, event, data string }

// parseSSE reads the complete events in r.
func parseSSE(r io.Reader) ([]v2Event, error) {
	var out []v2Event
	var cur v2Event
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur != (v2Event{}) {
				out = append(out, cur)
			}
			cur = v2Event{}
		case strings.HasPrefix(line, ":"):
		default:
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "id":
				cur.id = v
			case "event":
				cur.event = v
			case "data":
				cur.data = v
			default:
				return nil, fmt.Errorf("unknown field in line %q", line)
			}
		}
	}
	return out, sc.Err()
}

// requireToken is the document's security scheme as the validator
// checks it: an Authorization header must be there (whether its token
// verifies is the server's to say).
func requireToken(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.RequestValidationInput.Request.Header.Get("Authorization") == "" {
		return errors.New("no Authorization header")
	}
	return nil
}

// v2Client calls API v2 as one authority.
type v2Client struct {
	t     *testing.T
	base  string // http://host:port
	token string
	id    string // the authority's ID
	hc    *http.Client
	spec  *v2Spec
}

// v2Client returns a client of env's API v2 acting as the authority of c.
func (env *testEnv) v2Client(c *sdkClient) *v2Client {
	env.t.Helper()
	spec, err := loadV2Spec()
	require.NoError(env.t, err)
	return &v2Client{t: env.t, base: env.ts.URL, token: "Bearer " + c.token, id: c.authorityID,
		hc: &http.Client{Timeout: 30 * time.Second}, spec: spec}
}

// with returns c for the (sub)test t.
func (c *v2Client) with(t *testing.T) *v2Client {
	cc := *c
	cc.t = t
	return &cc
}

// v2Req is one request.
type v2Req struct {
	method, path string
	query        url.Values
	// json is marshalled as the body, unless raw is set.
	json any
	raw  []byte
	// key is the Idempotency-Key header; header adds others.
	key    string
	header http.Header
	// auth replaces the client's Authorization header; noAuth sends none.
	auth   string
	noAuth bool
	// invalid marks a request that breaks the document on purpose: the
	// validator must refuse it, and the answer must still validate.
	invalid bool
}

// v2Resp is an answer: status, headers, raw body, and the body decoded
// (numbers kept as written) when it is JSON.
type v2Resp struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// str returns the string member k of the body.
func (r v2Resp) str(t *testing.T, k string) string {
	t.Helper()
	s, ok := r.body[k].(string)
	require.True(t, ok, "member %s is a string: %s", k, r.raw)
	return s
}

// list returns the list member k of the body, each an object.
func (r v2Resp) list(t *testing.T, k string) []map[string]any {
	t.Helper()
	l, ok := r.body[k].([]any)
	require.True(t, ok, "member %s is a list: %s", k, r.raw)
	out := make([]map[string]any, len(l))
	for i, v := range l {
		out[i], ok = v.(map[string]any)
		require.True(t, ok, "%s[%d] is an object", k, i)
	}
	return out
}

// build returns the HTTP request of rq, and its body.
func (c *v2Client) build(rq v2Req) (*http.Request, []byte) {
	c.t.Helper()
	u := c.base + rq.path
	if rq.query != nil {
		u += "?" + rq.query.Encode()
	}
	b := rq.raw
	if b == nil && rq.json != nil {
		var err error
		b, err = json.Marshal(rq.json)
		require.NoError(c.t, err)
	}
	req, err := http.NewRequest(rq.method, u, bytes.NewReader(b))
	require.NoError(c.t, err)
	if b != nil {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, vs := range rq.header {
		req.Header[k] = vs
	}
	if rq.key != "" {
		req.Header.Set("Idempotency-Key", rq.key)
	}
	switch {
	case rq.noAuth:
	case rq.auth != "":
		req.Header.Set("Authorization", rq.auth)
	default:
		req.Header.Set("Authorization", c.token)
	}
	return req, b
}

// checkRequest checks req, whose body is b, against the document. It
// returns what checkResponse needs, nil when the document has no route
// for req, and the validator's verdict.
func (sp *v2Spec) checkRequest(req *http.Request, b []byte) (*openapi3filter.RequestValidationInput, error) {
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(b))
	route, params, err := sp.router.FindRoute(vreq)
	if err != nil {
		return nil, fmt.Errorf("the document has no route for it: %w", err)
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: requireToken, IncludeResponseStatus: true}}
	return in, openapi3filter.ValidateRequest(context.Background(), in)
}

// checkResponse checks an answer against the document: against the
// route's responses when in is set, else (a path or method the document
// has no route for) as a problem.
func (sp *v2Spec) checkResponse(in *openapi3filter.RequestValidationInput, status int, h http.Header, b []byte) error {
	if in == nil {
		if status < 400 || h.Get("Content-Type") != "application/problem+json" {
			return fmt.Errorf("an unrouted request got %d %s, not a problem", status, h.Get("Content-Type"))
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		return sp.doc.Components.Schemas["Problem"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020())
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: h,
		Options: in.Options}
	out.SetBodyBytes(b)
	return openapi3filter.ValidateResponse(context.Background(), out)
}

// validateRequest checks req against the document: it must pass, or
// fail when the request is marked invalid.
func (c *v2Client) validateRequest(req *http.Request, b []byte, invalid bool) *openapi3filter.RequestValidationInput {
	c.t.Helper()
	in, err := c.spec.checkRequest(req, b)
	if invalid {
		require.Error(c.t, err, "%s %s %s: marked invalid, but the document admits it", req.Method, req.URL, b)
	} else {
		require.NoError(c.t, err, "%s %s %s: the document refuses the request", req.Method, req.URL, b)
	}
	return in
}

// validateResponse requires the answer to pass checkResponse.
func (c *v2Client) validateResponse(in *openapi3filter.RequestValidationInput, req *http.Request, status int, h http.Header, b []byte) {
	c.t.Helper()
	err := c.spec.checkResponse(in, status, h, b)
	require.NoError(c.t, err, "%s %s: the document does not describe the answer %d %s", req.Method, req.URL, status, b)
}

// validatingProxy forwards to the API at target, checking every request
// and answer that pass through against the document; a failure is a test
// error. It is how a client that is not Go (the Python tests) is held to
// the document.
func validatingProxy(t *testing.T, target string) *httptest.Server {
	t.Helper()
	spec, err := loadV2Spec()
	require.NoError(t, err)
	hc := &http.Client{Timeout: 30 * time.Second}
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("proxy: read request: %v", err)
			return
		}
		out, err := http.NewRequest(r.Method, target+r.URL.RequestURI(), bytes.NewReader(b))
		if err != nil {
			t.Errorf("proxy: %v", err)
			return
		}
		out.Header = r.Header.Clone()
		in, err := spec.checkRequest(out, b)
		if err != nil {
			t.Errorf("proxy: %s %s %s: the document refuses the request: %v", r.Method, r.URL, b, err)
		}
		res, err := hc.Do(out)
		if err != nil {
			t.Errorf("proxy: %s %s: %v", r.Method, r.URL, err)
			http.Error(w, "proxy failed", http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		rb, err := io.ReadAll(res.Body)
		if err != nil {
			t.Errorf("proxy: read answer: %v", err)
			return
		}
		if err := spec.checkResponse(in, res.StatusCode, res.Header, rb); err != nil {
			t.Errorf("proxy: %s %s: the document does not describe the answer %d %s: %v", r.Method, r.URL, res.StatusCode, rb, err)
		}
		for k, vs := range res.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(res.StatusCode)
		w.Write(rb)
	}))
	t.Cleanup(ps.Close)
	return ps
}

// do sends rq, checks it and its answer against the document, and
// returns the answer.
func (c *v2Client) do(rq v2Req) v2Resp {
	c.t.Helper()
	req, b := c.build(rq)
	in := c.validateRequest(req, b, rq.invalid)
	res, err := c.hc.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	c.validateResponse(in, req, res.StatusCode, res.Header, raw)
	out := v2Resp{status: res.StatusCode, header: res.Header, raw: raw}
	if ct := res.Header.Get("Content-Type"); (ct == "application/json" || ct == "application/problem+json") && req.Method != http.MethodHead {
		out.body = decodeObject(c.t, raw)
	}
	return out
}

// ok sends rq and requires the answer status want.
func (c *v2Client) ok(want int, rq v2Req) v2Resp {
	c.t.Helper()
	r := c.do(rq)
	require.Equal(c.t, want, r.status, "%s %s: %s", rq.method, rq.path, r.raw)
	return r
}

// problem sends rq and requires a problem of type slug, and returns it.
func (c *v2Client) problem(slug string, rq v2Req) v2Resp {
	c.t.Helper()
	r := c.do(rq)
	require.Equal(c.t, "application/problem+json", r.header.Get("Content-Type"), "%s", r.raw)
	require.Equal(c.t, problemBase+slug, r.body["type"], "%s %s: %s", rq.method, rq.path, r.raw)
	return r
}

// invalidProblem sends rq, requires a 400 invalid problem naming field,
// and returns it.
func (c *v2Client) invalidProblem(field string, rq v2Req) v2Resp {
	c.t.Helper()
	r := c.problem("invalid", rq)
	require.Equal(c.t, http.StatusBadRequest, r.status)
	require.Equal(c.t, field, r.body["field"], "%s", r.raw)
	return r
}

// v2Stream is an open change stream.
type v2Stream struct {
	c      *v2Client
	in     *openapi3filter.RequestValidationInput
	req    *http.Request
	res    *http.Response
	cancel context.CancelFunc
	read   bytes.Buffer // what was read so far
	br     *bufio.Reader
	seen   int // events parsed and returned so far
}

// openStream opens the change feed with rq, checks the request and
// requires a stream. Close it with close, which checks the answer, as
// far as it was read, against the document.
func (c *v2Client) openStream(rq v2Req) *v2Stream {
	c.t.Helper()
	req, b := c.build(rq)
	in := c.validateRequest(req, b, rq.invalid)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	req = req.WithContext(ctx)
	res, err := c.hc.Do(req)
	if err != nil {
		cancel()
		require.NoError(c.t, err)
	}
	s := &v2Stream{c: c, in: in, req: req, res: res, cancel: cancel}
	c.t.Cleanup(s.stop)
	require.Equal(c.t, http.StatusOK, res.StatusCode)
	require.Equal(c.t, "text/event-stream", res.Header.Get("Content-Type"))
	s.br = bufio.NewReader(io.TeeReader(res.Body, &s.read))
	return s
}

func (s *v2Stream) stop() {
	s.cancel()
	s.res.Body.Close()
}

// next reads the next n events.
func (s *v2Stream) next(n int) []v2Event {
	s.c.t.Helper()
	for got := 0; got < n; {
		line, err := s.br.ReadString('\n')
		require.NoError(s.c.t, err, "after %d of %d events", got, n)
		if line == "\n" {
			got++
		}
	}
	evs, err := parseSSE(bytes.NewReader(s.read.Bytes()))
	require.NoError(s.c.t, err)
	out := evs[s.seen:]
	s.seen = len(evs)
	return out
}

// close hangs up and checks what was read against the document.
func (s *v2Stream) close() {
	s.c.t.Helper()
	s.stop()
	s.c.validateResponse(s.in, s.req, s.res.StatusCode, s.res.Header, s.read.Bytes())
}

// stream reads n events of the change feed opened with rq and hangs up.
func (c *v2Client) stream(rq v2Req, n int) []v2Event {
	c.t.Helper()
	s := c.openStream(rq)
	defer s.close()
	return s.next(n)
}
