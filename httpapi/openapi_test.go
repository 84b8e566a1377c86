package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/redistest"
)

// spec is the served OpenAPI document, loaded and checked, with a router.
type spec struct {
	doc    *openapi3.T
	router routers.Router
}

// newSpec loads openapi.json, checks that it is a valid OpenAPI 3
// document, and builds its router.
func newSpec() (*spec, error) {
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.json is not a valid OpenAPI 3 document: %w", err)
	}
	// The routes are matched on any host: the test servers are not the
	// document's servers (http://127.0.0.1:7070).
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &spec{doc: doc, router: router}, nil
}

func TestOpenAPIMatchesEveryRouteAndError(t *testing.T) {
	s := docSpec(t)
	e := newEnv(t, nil)
	a := newEnv(t, &envOptions{auth: authFile()})
	name := uniq(t)
	base := "/v1/leases/" + name
	codes := map[string]bool{}
	routes := map[string]bool{}

	type call struct {
		env                *env
		method, path, body string
		headers            []string
		status             int
		code               string
	}
	var tok, fence string
	run := func(c call) *resp {
		t.Helper()
		req, err := http.NewRequest(c.method, c.env.ts.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range c.headers {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Set(k, v)
		}
		r := doReq(t, req)
		if r.status != c.status || c.code != "" && r.str("error") != c.code {
			t.Errorf("%s %s: got %d %s, want %d %s", c.method, c.path, r.status, r.body, c.status, c.code)
		}
		codes[r.str("error")] = true
		if rt, _, err := s.router.FindRoute(req); err == nil {
			routes[rt.Method+" "+rt.Path] = true
		}
		return r
	}
	g := run(call{env: e, method: "POST", path: base + "/acquire?ttl=20s&holder=h", status: 200})
	tok, fence = g.str("token"), strconv.FormatInt(g.num("fence"), 10)
	for _, c := range []call{
		{env: e, method: "POST", path: base + "/acquire", body: `{"holder":"x"}`, status: 409, code: "lease_held"},
		{env: e, method: "POST", path: base + "/acquire?wait=100ms", status: 409, code: "lease_held"},
		{env: e, method: "POST", path: base + "/acquire?ttl=5", status: 400, code: "invalid_ttl"},
		{env: e, method: "POST", path: "/v1/leases/a%20b/acquire", status: 400, code: "invalid_name"},
		{env: e, method: "POST", path: base + "/acquire?token=bad", status: 400, code: "invalid_token"},
		{env: e, method: "POST", path: base + "/acquire?what=1", status: 400, code: "invalid_request"},
		{env: e, method: "POST", path: base + "/acquire", body: `{"metadata":"` + strings.Repeat("m", 70000) + `"}`, status: 413, code: "payload_too_large"},
		{env: e, method: "POST", path: base + "/renew", body: `{"token":"` + tok + `","ttl":"30s"}`, status: 200},
		{env: e, method: "POST", path: base + "/renew?exit_code=3&token=" + tok, status: 200},
		{env: e, method: "POST", path: base + "/renew?duration=1s&token=" + tok, status: 400, code: "invalid_request"},
		{env: e, method: "POST", path: base + "/renew", body: `{"token":"` + tok + `","exit_code":256}`, status: 400, code: "invalid_request"},
		{env: e, method: "POST", path: base + "/renew?token=someone-elses-token-000", status: 409, code: "not_holder"},
		{env: e, method: "POST", path: base + "/renew?token=" + tok + "&ttl=1", status: 400, code: "invalid_ttl"},
		{env: e, method: "POST", path: "/v1/leases/" + name + "-none/renew?token=" + tok, status: 404, code: "not_found"},
		{env: e, method: "POST", path: base + "/verify?fence=" + fence, status: 200},
		{env: e, method: "POST", path: base + "/verify", body: `{"fence":1}`, status: 409, code: "not_holder"},
		{env: e, method: "POST", path: "/v1/leases/" + name + "-none/verify?token=" + tok, status: 404, code: "not_found"},
		{env: e, method: "POST", path: base + "/verify", status: 400, code: "invalid_request"},
		{env: e, method: "GET", path: base, status: 200},
		{env: e, method: "GET", path: base + "-none", status: 404, code: "not_found"},
		{env: e, method: "GET", path: "/v1/leases/" + strings.Repeat("n", 300), status: 400, code: "invalid_name"},
		{env: e, method: "GET", path: "/v1/leases?prefix=" + name + "&limit=5", status: 200},
		{env: e, method: "GET", path: "/v1/leases?limit=0", status: 400, code: "invalid_request"},
		{env: e, method: "GET", path: "/v1/events?last_event_id=x", status: 400, code: "invalid_request"},
		{env: e, method: "POST", path: base + "/release?token=someone-elses-token-000", status: 409, code: "not_holder"},
		{env: e, method: "POST", path: base + "/release", body: `{"token":"` + tok + `","exit_code":0,"duration":"1.5s"}`, status: 200},
		{env: e, method: "POST", path: base + "/release?token=" + tok, status: 404, code: "not_found"},
		{env: e, method: "POST", path: base + "/release", status: 400, code: "invalid_token"},
		// The operator's routes.
		{env: e, method: "POST", path: "/v1/leases/" + name + "-brk/acquire?ttl=20s", status: 200},
		{env: e, method: "POST", path: "/v1/leases/" + name + "-brk/break?fence=1&reason=x", status: 409, code: "not_holder"},
		{env: e, method: "POST", path: "/v1/leases/" + name + "-brk/break", status: 400, code: "invalid_request"},
		{env: e, method: "POST", path: "/v1/leases/" + name + "-brk/break", body: `{"reason":"stuck","fence":null}`, status: 200},
		{env: e, method: "POST", path: "/v1/leases/" + name + "-brk/break?reason=again", status: 404, code: "not_found"},
		{env: e, method: "GET", path: "/v1/leases/" + name + "-brk/history?limit=5", status: 200},
		{env: e, method: "GET", path: "/v1/leases/" + name + "-brk/history", body: `{"limit":"0"}`, status: 400, code: "invalid_request"},
		{env: e, method: "GET", path: "/v1/leases/" + name + "-none/history", status: 200},
		{env: a, method: "POST", path: "/v1/leases/jobs:x/break?reason=r", headers: []string{"Authorization: Bearer " + writerToken}, status: 403, code: "forbidden"},
		// What the document declares beyond the plain cases: a JSON body
		// whatever the Content-Type (curl -d), null values, the number 0 as
		// a wait, bodies on GET routes, and a number for a ttl, refused.
		{env: e, method: "POST", path: "/v1/leases/" + name + "-curl/acquire", body: `{"ttl":"30s","holder":null,"wait":0}`,
			headers: []string{"Content-Type: application/x-www-form-urlencoded"}, status: 200},
		{env: e, method: "POST", path: "/v1/leases/" + name + "-curl/acquire", body: `{"ttl":30}`, headers: []string{"Content-Type: text/plain"}, status: 400, code: "invalid_ttl"},
		{env: e, method: "POST", path: "/v1/leases/" + name + "-curl/acquire", body: "ttl=30s&holder=x",
			headers: []string{"Content-Type: application/x-www-form-urlencoded"}, status: 400, code: "invalid_request"},
		{env: e, method: "POST", path: "/v1/leases/" + name + "-curl/acquire", body: `{"wait":0.0}`, status: 400, code: "invalid_request"},
		{env: e, method: "GET", path: "/v1/leases", body: `{"prefix":"` + name + `","limit":2,"cursor":null}`, status: 200},
		{env: e, method: "GET", path: "/v1/leases", body: `{"limit":"1001"}`, status: 400, code: "invalid_request"},
		{env: e, method: "GET", path: "/v1/leases/" + name + "-curl", body: `{}`, status: 200},
		{env: e, method: "GET", path: "/v1/leases/" + name + "-curl", body: `{"ttl":"1s"}`, status: 400, code: "invalid_request"},
		{env: e, method: "GET", path: "/v1/leases/.", status: 400, code: "invalid_name"},
		{env: e, method: "GET", path: "/metrics", headers: []string{"Accept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"}, status: 200},
		{env: e, method: "GET", path: "/healthz", status: 200},
		{env: e, method: "GET", path: "/readyz", status: 200},
		{env: e, method: "GET", path: "/metrics", status: 200},
		{env: e, method: "GET", path: "/v1/openapi.json", status: 200},
		{env: e, method: "GET", path: "/v1/limits", status: 200},
		{env: e, method: "GET", path: "/v1/limits?ttl=1s", status: 400, code: "invalid_request"},
		{env: a, method: "GET", path: "/v1/limits", status: 401, code: "unauthorized"},
		{env: a, method: "GET", path: "/v1/limits", headers: []string{"Authorization: Bearer " + readerToken}, status: 200},
		{env: e, method: "GET", path: "/v1/auth", status: 200},
		{env: e, method: "GET", path: "/v1/auth?prefix=x", status: 400, code: "invalid_request"},
		{env: a, method: "GET", path: "/v1/auth", status: 401, code: "unauthorized"},
		{env: a, method: "GET", path: "/v1/auth", headers: []string{"Authorization: Bearer " + adminToken}, status: 200},
		{env: e, method: "GET", path: "/", status: 200},
		{env: a, method: "GET", path: "/", status: 200},
		{env: e, method: "POST", path: "/", status: 405, code: "method_not_allowed"},
		{env: e, method: "GET", path: "/v2/nothing", status: 404, code: "not_found"},
		{env: e, method: "GET", path: base + "/acquire", status: 405, code: "method_not_allowed"},
		{env: e, method: "PUT", path: "/healthz", status: 405, code: "method_not_allowed"},
		{env: a, method: "POST", path: "/v1/leases/jobs:x/acquire", status: 401, code: "unauthorized"},
		{env: a, method: "GET", path: "/v1/leases", headers: []string{"Authorization: Bearer " + writerToken}, status: 403, code: "forbidden"},
		{env: a, method: "POST", path: "/v1/leases/other/release?token=" + tok, headers: []string{"Authorization: Bearer " + writerToken}, status: 403, code: "forbidden"},
	} {
		run(c)
	}

	const protobuf = "application/vnd.google.protobuf"
	if ct := e.do("GET", "/metrics", "", "Accept: "+protobuf+";proto=io.prometheus.client.MetricFamily;encoding=delimited").header.Get("Content-Type"); !strings.HasPrefix(ct, protobuf) {
		t.Errorf("/metrics asked for protobuf: got Content-Type %q, want %s", ct, protobuf)
	}

	// 503 backend_unavailable: a paused Redis.
	rs := redistest.Start(t)
	p := newEnv(t, &envOptions{redis: rs, redisTimeout: 200 * time.Millisecond})
	rs.Pause()
	run(call{env: p, method: "POST", path: base + "/acquire", status: 503, code: "backend_unavailable"})
	run(call{env: p, method: "GET", path: "/readyz", status: 503, code: "backend_unavailable"})
	rs.Resume()

	// 503 shutting_down: a wait after Stop.
	e.srv.Stop()
	run(call{env: e, method: "POST", path: base + "/acquire?wait=1s", status: 503, code: "shutting_down"})

	for _, c := range []string{"invalid_name", "invalid_ttl", "invalid_token", "invalid_request", "unauthorized", "forbidden",
		"not_found", "method_not_allowed", "lease_held", "not_holder", "payload_too_large", "backend_unavailable", "shutting_down"} {
		if !codes[c] {
			t.Errorf("error code %s was not exercised", c)
		}
	}
	for path, item := range s.doc.Paths.Map() {
		for method := range item.Operations() {
			if !routes[method+" "+path] {
				t.Errorf("%s %s of openapi.json was not exercised", method, path)
			}
		}
	}
}

// TestOpenAPIDocumentLints checks in Go what redocly's recommended rules
// would find in openapi.json (run `npx @redocly/cli lint --extends
// recommended httpapi/openapi.json` for all of them): servers, a unique
// operationId, a summary, a declared tag and a 4xx answer on every
// operation, nullable only beside a type, and no unused component.
func TestOpenAPIDocumentLints(t *testing.T) {
	var raw any
	if err := json.Unmarshal(httpapi.OpenAPI, &raw); err != nil {
		t.Fatal(err)
	}
	refs := map[string]bool{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["nullable"]; ok && v["type"] == nil {
				t.Errorf("%s: nullable without a type beside it", path)
			}
			if r, ok := v["$ref"].(string); ok {
				refs[r] = true
			}
			for k, sub := range v {
				walk(path+"/"+k, sub)
			}
		case []any:
			for i, sub := range v {
				walk(path+"/"+strconv.Itoa(i), sub)
			}
		}
	}
	walk("#", raw)

	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Servers) == 0 {
		t.Error("no servers")
	}
	tags := map[string]bool{}
	for _, tag := range doc.Tags {
		tags[tag.Name] = tag.Description != ""
	}
	ids := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			what := method + " " + path
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s: operationId %q is empty or not unique", what, op.OperationID)
			}
			ids[op.OperationID] = true
			if op.Summary == "" {
				t.Errorf("%s: no summary", what)
			}
			for _, tag := range op.Tags {
				if !tags[tag] {
					t.Errorf("%s: tag %q is not declared with a description", what, tag)
				}
			}
			has4xx := false
			for status := range op.Responses.Map() {
				has4xx = has4xx || strings.HasPrefix(status, "4")
			}
			if !has4xx {
				t.Errorf("%s: no 4xx answer", what)
			}
		}
	}
	c := doc.Components
	for kind, names := range map[string][]string{
		"schemas": keys(c.Schemas), "parameters": keys(c.Parameters), "responses": keys(c.Responses),
		"requestBodies": keys(c.RequestBodies),
	} {
		for _, n := range names {
			if !refs["#/components/"+kind+"/"+n] {
				t.Errorf("components/%s/%s is not used", kind, n)
			}
		}
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
