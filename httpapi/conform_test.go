package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// conform is the test servers' outermost handler: it checks every request
// they serve and every answer they give against openapi.json, with
// kin-openapi's request and response validation (openapi3filter), so that
// the document and the server cannot drift apart while the tests pass.
//
// Every answer must be one the document declares for its operation:
// status, headers and body. A path that is no operation of the document
// must be answered 404 not_found (no such path) or 405 method_not_allowed
// (a path without that method), with the Error body.
//
// A request the document refuses must be refused: 400, or 401, 403 or
// 413, which the server decides first. A request the
// document accepts may still be refused 400 or 413, but only for one of
// the reasons in beyondDocument, which no OpenAPI 3.0 document can state;
// any other refusal means the document is too lax or the server too
// strict. Bad-input tests are checked this way like any other: their
// requests are validated, not skipped.
type conform struct {
	t    testing.TB
	spec *spec
	next http.Handler
}

// checkedBody is how much of a request body conform reads to validate it;
// the server sees the whole body in any case.
const checkedBody = 1 << 20

func (c *conform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		body, _ = io.ReadAll(io.LimitReader(r.Body, checkedBody)) // on a read error, judge what came
		r.Body = readCloser{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
	}
	rec := &recorder{ResponseWriter: w}
	c.next.ServeHTTP(rec, r)
	c.judge(r, body, rec)
}

type readCloser struct {
	io.Reader
	io.Closer
}

// recorder passes an answer through and keeps a copy of it.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// The dashboard's page (GET /) is HTML, which the document declares as a
// string: kin-openapi decodes it as it decodes text/plain.
func init() { openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder) }

// validationOptions: no auth check (the server's is under test), no
// defaults written into the request, and a body where the document
// declares none is an error.
var validationOptions = &openapi3filter.Options{
	AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
	SkipSettingDefaults:               true,
	RejectWhenRequestBodyNotSpecified: true,
}

// judge checks one request and its answer; body is the request's body.
func (c *conform) judge(r *http.Request, body []byte, rec *recorder) {
	if rec.status == statusClientClosed {
		return // the client went away: nobody reads this answer
	}
	ctx := context.Background()
	what := r.Method + " " + r.URL.RequestURI()
	req := r.Clone(ctx)
	if len(bytes.TrimSpace(body)) == 0 {
		body = nil // white space alone is no body, as the document says
	}
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	// The document declares every body as JSON whatever the Content-Type
	// (*/*): validate it as what the server reads it as.
	req.Header.Set("Content-Type", "application/json")
	var answer struct{ Error, Message string }
	json.Unmarshal(rec.body.Bytes(), &answer)

	route, params, err := c.spec.router.FindRoute(req)
	if err != nil {
		switch {
		case errors.Is(err, routers.ErrPathNotFound) && rec.status == http.StatusNotFound,
			errors.Is(err, routers.ErrMethodNotAllowed) && rec.status == http.StatusMethodNotAllowed:
		default:
			c.t.Errorf("%s is no operation of openapi.json (%v), but got %d %s", what, err, rec.status, clipName(rec.body.String()))
		}
		if err := c.spec.doc.Components.Schemas["Error"].Value.VisitJSON(anyJSON(c.t, rec.body.Bytes())); err != nil {
			c.t.Errorf("%s: the %d body %s does not match Error: %v", what, rec.status, rec.body.Bytes(), err)
		}
		return
	}
	// A path parameter is its percent-decoded value (RFC 6570 simple
	// style), which kin-openapi leaves encoded where the path has escapes.
	for k, v := range params {
		if d, err := url.PathUnescape(v); err == nil {
			params[k] = d
		}
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: validationOptions}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if len(body) > 0 && !json.Valid(body) {
		// kin-openapi decodes the first JSON value and ignores the rest.
		reqErr = errors.Join(reqErr, errors.New("the body is not one JSON value"))
	}

	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: rec.status, Header: rec.Header(),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	out.SetBodyBytes(rec.body.Bytes())
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		c.t.Errorf("%s: the %d answer %s does not match openapi.json: %v", what, rec.status, clipName(rec.body.String()), err)
	}

	switch refused := rec.status == 400 || rec.status == 401 || rec.status == 403 || rec.status == 413; {
	case reqErr != nil && !refused:
		c.t.Errorf("%s (body %s): openapi.json refuses this request (%v), but the server answered %d %s",
			what, clipName(string(body)), reqErr, rec.status, clipName(rec.body.String()))
	case reqErr == nil && (rec.status == http.StatusBadRequest || rec.status == http.StatusRequestEntityTooLarge) &&
		!beyondDocument(answer.Error, answer.Message):
		c.t.Errorf("%s (body %s): openapi.json accepts this request, but the server refused it: %d %s",
			what, clipName(string(body)), rec.status, clipName(rec.body.String()))
	}
}

// beyondDocuments are the refusals of requests that openapi.json accepts:
// those that depend on more than one parameter or on where it came from,
// on the server's flags or state, or on bytes where JSON Schema counts
// characters. The document states each in prose. Names and the syntax of
// every parameter are not among them: the document must say exactly which
// are valid.
var beyondDocuments = []struct {
	code string
	msg  *regexp.Regexp
}{
	// Query parameters the operation does not declare (OpenAPI 3.0 cannot
	// forbid them), or one given twice: in the query, or once in the query
	// and once in the body, with different values.
	{"invalid_request", regexp.MustCompile(`^unknown parameter `)},
	{"invalid_request", regexp.MustCompile(`is given twice with different values`)},
	// A key twice in one JSON object: JSON Schema sees the object decoded.
	{"invalid_request", regexp.MustCompile(`appears twice in the JSON body`)},
	// A query string that does not decode: kin-openapi drops its bad pairs.
	{"invalid_request", regexp.MustCompile(`^the query string is malformed`)},
	// Required in the query or in the body; exactly one of fence and token.
	{"invalid_token", regexp.MustCompile(`^(renew|release) needs the token`)},
	{"invalid_request", regexp.MustCompile(`^verify needs a fence or a token|^give a fence or a token to verify, not both`)},
	{"invalid_request", regexp.MustCompile(`^break needs a reason|^duration goes with exit_code`)},
	// The server's --max-ttl and --max-wait (GET /v1/limits), and
	// durations too large for Go (the pattern has no bound).
	{"invalid_ttl", regexp.MustCompile(`out of range|is not a duration`)},
	{"invalid_request", regexp.MustCompile(`^the wait .*(out of range|longer than this server's longest|is not a duration)`)},
	// A JSON number that equals 0 but is not written 0 (0.0, -0, 0e0):
	// JSON Schema sees the value, the server the literal.
	{"invalid_request", regexp.MustCompile(`^the wait "[^"]*" needs a unit`)},
	// Bytes, where maxLength counts characters; valid UTF-8.
	{"invalid_request", regexp.MustCompile(`^the (holder|metadata|reason) is [0-9]+ bytes long|^the (holder|reason) is not valid UTF-8`)},
	// A duration too large for Go (the pattern has no bound).
	{"invalid_request", regexp.MustCompile(`^the duration "[^"]*" is not one`)},
	// A fence or limit in a JSON number that is no decimal integer literal
	// (1.0, 1e3), or too large for an int64.
	{"invalid_request", regexp.MustCompile(`^the (fence|limit|exit_code) "[^"]*" is not an integer`)},
	// Cursors are opaque: only the server knows which it gave.
	{"invalid_request", regexp.MustCompile(`^the cursor `)},
	// The body's size: 64 KiB.
	{"payload_too_large", regexp.MustCompile(``)},
	{"invalid_request", regexp.MustCompile(`^the request body could not be read`)},
}

func beyondDocument(code, msg string) bool {
	for _, b := range beyondDocuments {
		if b.code == code && b.msg.MatchString(msg) {
			return true
		}
	}
	return false
}

// statusClientClosed is the server's status for a client that went away.
const statusClientClosed = 499

var (
	specOnce sync.Once
	theSpec  *spec
	specErr  error
)

// docSpec is openapi.json, loaded once for every test server.
func docSpec(t testing.TB) *spec {
	t.Helper()
	specOnce.Do(func() { theSpec, specErr = newSpec() })
	if specErr != nil {
		t.Fatal(specErr)
	}
	return theSpec
}

// recordingTB keeps what conform reports instead of failing the test.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Fatalf(format string, args ...any) { r.Errorf(format, args...) }

// TestConformCatchesDrift breaks the server on purpose, one way at a time,
// and checks that conform reports each break: an answer the document does
// not declare, a request the document refuses but the server grants, and
// one it accepts but the server refuses.
func TestConformCatchesDrift(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	answer := func(status int, ct, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(status)
			io.WriteString(w, body)
		})
	}
	const grant = `{"name":"x","holder":"","token":"0123456789abcdef","fence":1,"ttl_ms":30000,"expires_at":"2026-01-01T00:00:00.000Z","metadata":""}`
	for _, tt := range []struct {
		what, method, path, body string
		next                     http.Handler
		want                     string // in the report; "" for none
	}{
		{"the real server", "POST", "/v1/leases/" + name + "/acquire?ttl=30s", "", e.srv, ""},
		{"a conforming grant", "POST", "/v1/leases/x/acquire", "", answer(200, "application/json", grant), ""},
		{"a grant without its fence", "POST", "/v1/leases/x/acquire", "",
			answer(200, "application/json", strings.Replace(grant, `"fence":1,`, "", 1)), "does not match openapi.json"},
		{"a grant with a field the document does not name", "POST", "/v1/leases/x/acquire", "",
			answer(200, "application/json", strings.Replace(grant, `"fence":1,`, `"fence":1,"owner":"x",`, 1)), "does not match openapi.json"},
		{"a status the operation does not declare", "POST", "/v1/leases/x/acquire", "",
			answer(418, "application/json", `{"error":"invalid_request","message":"m"}`), "does not match openapi.json"},
		{"an error code the document does not list", "GET", "/v1/leases/x", "",
			answer(404, "application/json", `{"error":"gone","message":"m"}`), "does not match openapi.json"},
		{"text where JSON is declared", "GET", "/healthz", "", answer(200, "text/plain", "ok"), "does not match openapi.json"},
		{"lease_held without Retry-After", "POST", "/v1/leases/x/acquire", "",
			answer(409, "application/json", `{"error":"lease_held","message":"m","name":"x","holder":"","fence":1,"ttl_ms":5}`), "does not match openapi.json"},
		{"a name the document refuses, granted", "POST", "/v1/leases/a%20b/acquire", "", answer(200, "application/json", grant), "openapi.json refuses this request"},
		{"a bare-number ttl, granted", "POST", "/v1/leases/x/acquire", `{"ttl":30}`, answer(200, "application/json", grant), "openapi.json refuses this request"},
		{"a valid name, refused", "POST", "/v1/leases/x/acquire", "",
			answer(400, "application/json", `{"error":"invalid_name","message":"m"}`), "openapi.json accepts this request, but the server refused it"},
		{"a body on a route that takes none, granted", "GET", "/v1/leases/x", `{"ttl":"5s"}`,
			answer(200, "application/json", `{"name":"x","holder":"","fence":1,"ttl_ms":5,"expires_at":"2026-01-01T00:00:00.000Z","metadata":""}`), "openapi.json refuses this request"},
		{"no route, answered 200", "GET", "/v1/nothing", "", answer(200, "application/json", `{}`), "is no operation of openapi.json"},
	} {
		t.Run(tt.what, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			var body io.Reader = http.NoBody
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := httptest.NewRequest(tt.method, tt.path, body)
			(&conform{t: rec, spec: docSpec(t), next: tt.next}).ServeHTTP(httptest.NewRecorder(), req)
			got := strings.Join(rec.errs, "\n")
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("got report %q, want one with %q", got, tt.want)
			}
		})
	}
}
