package httpapi_test

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAcquireGrantsByQueryAndByJSONBody(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name    string
		path    string
		body    string
		headers []string
	}{
		{"query", "/acquire?ttl=30s&holder=web-1&metadata=m", "", nil},
		{"json body", "/acquire", `{"ttl":"30s","holder":"web-1","metadata":"m"}`, []string{"Content-Type: application/json"}},
		{"json body as form", "/acquire", `{"ttl":"30s","holder":"web-1","metadata":"m"}`, []string{"Content-Type: application/x-www-form-urlencoded"}},
		{"both ways, same values", "/acquire?ttl=30s", `{"ttl":"30s","holder":"web-1","metadata":"m"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := uniq(t)
			before := time.Now()
			r := e.do("POST", "/v1/leases/"+name+tc.path, tc.body, tc.headers...).want(t, 200, "")
			if r.str("name") != name || r.str("holder") != "web-1" || r.str("metadata") != "m" || r.num("ttl_ms") != 30000 {
				t.Errorf("got %s, want name %s holder web-1 metadata m ttl_ms 30000", r.body, name)
			}
			if len(r.str("token")) < 22 {
				t.Errorf("got token %q, want at least 128 bits", r.str("token"))
			}
			if r.num("fence") < before.UnixMicro() {
				t.Errorf("got fence %d, want at least %d", r.num("fence"), before.UnixMicro())
			}
			exp, err := time.Parse(time.RFC3339, r.str("expires_at"))
			if err != nil || !strings.HasSuffix(r.str("expires_at"), "Z") || len(r.str("expires_at")) != len("2006-01-02T15:04:05.000Z") {
				t.Errorf("got expires_at %q (%v), want RFC 3339 with milliseconds in UTC", r.str("expires_at"), err)
			}
			if d := exp.Sub(before); d < 29*time.Second || d > 31*time.Second {
				t.Errorf("got expires_at %v from now, want about 30s", d)
			}
		})
	}
}

func TestAcquireDefaultsTo30s(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/v1/leases/"+uniq(t)+"/acquire", "").want(t, 200, "")
	if r.num("ttl_ms") != 30000 || r.str("holder") != "" || r.str("metadata") != "" {
		t.Errorf("got %s, want ttl_ms 30000 and empty holder and metadata", r.body)
	}
}

func TestAcquireHeldAnswers409WithRetryAfter(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		ttl        string
		wantRetry  string
		wantMaxTTL int64
	}{
		{"10s", "10", 10000},
		{"2500ms", "3", 2500},
		{"300ms", "1", 300},
	} {
		t.Run(tc.ttl, func(t *testing.T) {
			name := uniq(t)
			g := e.do("POST", "/v1/leases/"+name+"/acquire?holder=a&ttl="+tc.ttl, "").want(t, 200, "")
			r := e.do("POST", "/v1/leases/"+name+"/acquire?holder=b", "").want(t, 409, "lease_held")
			if r.str("name") != name || r.str("holder") != "a" || r.num("fence") != g.num("fence") {
				t.Errorf("got %s, want name %s holder a fence %d", r.body, name, g.num("fence"))
			}
			if ttl := r.num("ttl_ms"); ttl <= 0 || ttl > tc.wantMaxTTL {
				t.Errorf("got ttl_ms %d, want in (0, %d]", ttl, tc.wantMaxTTL)
			}
			if got := r.header.Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("got Retry-After %q, want %q (ttl_ms %d rounded up)", got, tc.wantRetry, r.num("ttl_ms"))
			}
			if _, ok := r.json["token"]; ok || strings.Contains(string(r.body), g.str("token")) {
				t.Errorf("got %s, want no token in a 409", r.body)
			}
		})
	}
}

func TestAcquireWithOwnTokenIsIdempotent(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	tok := "my-own-token-0123456789"
	a := e.do("POST", "/v1/leases/"+name+"/acquire", `{"token":"`+tok+`","ttl":"5s","holder":"x"}`).want(t, 200, "")
	b := e.do("POST", "/v1/leases/"+name+"/acquire", `{"token":"`+tok+`","ttl":"9s","holder":"y"}`).want(t, 200, "")
	if a.str("token") != tok || b.str("token") != tok || a.num("fence") != b.num("fence") || b.num("ttl_ms") != 9000 || b.str("holder") != "y" {
		t.Errorf("got %s then %s, want the same token and fence, ttl_ms 9000, holder y", a.body, b.body)
	}
}

func TestRenewReleaseGetVerify(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	base := "/v1/leases/" + name
	g := e.do("POST", base+"/acquire?ttl=5s&holder=h&metadata=md", "").want(t, 200, "")
	tok, fence := g.str("token"), g.num("fence")

	r := e.do("POST", base+"/renew", `{"token":"`+tok+`","ttl":"20s"}`).want(t, 200, "")
	if r.str("token") != tok || r.num("fence") != fence || r.num("ttl_ms") != 20000 || r.str("holder") != "h" || r.str("metadata") != "md" {
		t.Errorf("renew: got %s, want same token and fence, ttl_ms 20000, holder h, metadata md", r.body)
	}
	r = e.do("POST", base+"/renew?token="+tok, "").want(t, 200, "")
	if r.num("ttl_ms") != 20000 {
		t.Errorf("renew without ttl: got ttl_ms %d, want 20000 (the last renew's)", r.num("ttl_ms"))
	}

	r = e.do("GET", base, "").want(t, 200, "")
	if r.str("name") != name || r.str("holder") != "h" || r.num("fence") != fence || r.str("metadata") != "md" ||
		r.num("ttl_ms") <= 0 || r.num("ttl_ms") > 20000 || r.str("expires_at") == "" {
		t.Errorf("get: got %s", r.body)
	}
	if _, ok := r.json["token"]; ok {
		t.Errorf("get: got a token field in %s", r.body)
	}

	r = e.do("POST", base+"/verify", `{"fence":`+strconv.FormatInt(fence, 10)+`}`).want(t, 200, "")
	if r.json["valid"] != true || r.num("fence") != fence || r.num("ttl_ms") <= 0 || r.str("name") != name {
		t.Errorf("verify fence: got %s", r.body)
	}
	e.do("POST", base+"/verify?token="+tok, "").want(t, 200, "")
	e.do("POST", base+"/verify?fence="+strconv.FormatInt(fence-1, 10), "").want(t, 409, "not_holder")
	e.do("POST", base+"/verify", `{"token":"someone-elses-token-000"}`).want(t, 409, "not_holder")

	other := "someone-elses-token-000"
	r = e.do("POST", base+"/renew?token="+other, "").want(t, 409, "not_holder")
	if r.str("holder") != "h" || r.num("fence") != fence || r.num("ttl_ms") <= 0 {
		t.Errorf("renew not_holder: got %s, want holder h, fence %d, ttl_ms", r.body, fence)
	}
	// A token that was never this lease's is not told it lost the lease
	// alone: the message says the token does not match.
	if m := r.str("message"); !strings.Contains(m, "do not match the current grant") || !strings.Contains(m, "mistyped") {
		t.Errorf("renew not_holder: got message %q, want it to say the token does not match (mistyped?)", m)
	}
	e.do("POST", base+"/release?token="+other, "").want(t, 409, "not_holder")

	r = e.do("POST", base+"/release", `{"token":"`+tok+`"}`).want(t, 200, "")
	if r.str("name") != name || r.json["released"] != true {
		t.Errorf("release: got %s, want name and released true", r.body)
	}
	e.do("POST", base+"/release?token="+tok, "").want(t, 404, "not_found")
	e.do("POST", base+"/renew?token="+tok, "").want(t, 404, "not_found")
	e.do("GET", base, "").want(t, 404, "not_found")
	e.do("POST", base+"/verify?fence="+strconv.FormatInt(fence, 10), "").want(t, 404, "not_found")

	// No response but the grants carried the token.
	if strings.Contains(e.logs.String(), tok) {
		t.Errorf("the logs contain the token %s", tok)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, nil)
	prefix := uniq(t) + ":"
	for i := 0; i < 5; i++ {
		e.do("POST", "/v1/leases/"+prefix+strconv.Itoa(i)+"/acquire?holder=h", "").want(t, 200, "")
	}
	e.do("POST", "/v1/leases/"+uniq(t)+"-other/acquire", "").want(t, 200, "")
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("more than 10 pages for 5 leases")
		}
		r := e.do("GET", "/v1/leases?limit=2&prefix="+prefix+"&cursor="+cursor, "").want(t, 200, "")
		leases, _ := r.json["leases"].([]any)
		if len(leases) > 2 {
			t.Fatalf("got %d leases on a page, want at most 2", len(leases))
		}
		for _, l := range leases {
			m := l.(map[string]any)
			if _, ok := m["token"]; ok {
				t.Errorf("got a token in a list item %v", m)
			}
			seen[m["name"].(string)] = true
		}
		cursor = r.str("next_cursor")
		if _, ok := r.json["next_cursor"]; !ok {
			t.Fatalf("got %s without next_cursor", r.body)
		}
		if cursor == "" {
			break
		}
	}
	if len(seen) != 5 {
		t.Errorf("got %v, want the 5 leases of prefix %s", seen, prefix)
	}
	r := e.do("GET", "/v1/leases?prefix="+prefix+"nothing", "").want(t, 200, "")
	if string(r.body) != `{"leases":[],"next_cursor":""}`+"\n" {
		t.Errorf("got %s, want an empty page", r.body)
	}
}

func TestHealthzReadyzMetricsOpenAPI(t *testing.T) {
	e := newEnv(t, nil)
	if r := e.do("GET", "/healthz", "").want(t, 200, ""); r.str("status") != "ok" {
		t.Errorf("healthz: got %s", r.body)
	}
	if r := e.do("GET", "/readyz", "").want(t, 200, ""); r.str("status") != "ready" {
		t.Errorf("readyz: got %s", r.body)
	}
	r := e.do("GET", "/v1/openapi.json", "").want(t, 200, "")
	if !strings.HasPrefix(r.str("openapi"), "3.") {
		t.Errorf("openapi: got version %q, want 3.x", r.str("openapi"))
	}
	name := uniq(t)
	e.do("POST", "/v1/leases/"+name+"/acquire", "").want(t, 200, "")
	e.do("POST", "/v1/leases/"+name+"/acquire", "").want(t, 409, "lease_held")
	m := e.do("GET", "/metrics", "")
	if m.status != 200 {
		t.Fatalf("metrics: got %d", m.status)
	}
	for _, want := range []string{
		`leasehold_http_requests_total{outcome="ok",route="/v1/leases/:name/acquire",status="200"} 1`,
		`leasehold_http_requests_total{outcome="lease_held",route="/v1/leases/:name/acquire",status="409"} 1`,
		`leasehold_grants_total 1`,
		`leasehold_conflicts_total 1`,
		`leasehold_http_request_duration_seconds_bucket{outcome="ok",route="/v1/leases/:name/acquire",le="+Inf"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("metrics: missing %q", want)
		}
	}
}

func TestRoutingErrorsAreJSON(t *testing.T) {
	e := newEnv(t, nil)
	e.do("GET", "/nope", "").want(t, 404, "not_found")
	e.do("GET", "/v1/leases/x/acquire", "").want(t, 405, "method_not_allowed")
	r := e.do("DELETE", "/v1/leases/x", "").want(t, 405, "method_not_allowed")
	if r.header.Get("Allow") == "" {
		t.Errorf("405: got no Allow header")
	}
	e.do("POST", "/v1/leases", "").want(t, 405, "method_not_allowed")
}

func TestBadInputIs4xxAndChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	base := "/v1/leases/" + name
	g := e.do("POST", base+"/acquire?ttl=1m&holder=h", "").want(t, 200, "")
	tok := g.str("token")
	other := uniq(t) + "-free"
	snapshot := func() string {
		a, _ := e.rdb.HGetAll(bg, "leasehold:{"+name+"}").Result()
		n, _ := e.rdb.Exists(bg, "leasehold:{"+other+"}", "leasehold:{"+other+"}:q").Result()
		return strconv.Itoa(int(n)) + strings.ReplaceAll(strconv.Quote(strings.Join(sortedPairs(a), ",")), "\\", "")
	}
	before := snapshot()
	big := strings.Repeat("x", httpapiMaxBody+1)
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/leases/bad%20name/acquire", "", 400, "invalid_name"},
		{"POST", "/v1/leases/" + strings.Repeat("n", 201) + "/acquire", "", 400, "invalid_name"},
		{"POST", "/v1/leases/a%2Fb/acquire", "", 400, "invalid_name"},
		{"POST", "/v1/leases/" + other + "/acquire?ttl=30", "", 400, "invalid_ttl"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"ttl":30}`, 400, "invalid_ttl"},
		{"POST", "/v1/leases/" + other + "/acquire?ttl=5ms", "", 400, "invalid_ttl"},
		{"POST", "/v1/leases/" + other + "/acquire?ttl=25h", "", 400, "invalid_ttl"},
		{"POST", "/v1/leases/" + other + "/acquire?ttl=abc", "", 400, "invalid_ttl"},
		{"POST", "/v1/leases/" + other + "/acquire?token=short", "", 400, "invalid_token"},
		{"POST", "/v1/leases/" + other + "/acquire?token=", "", 400, "invalid_token"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"token":"has spaces in it 0123456"}`, 400, "invalid_token"},
		{"POST", "/v1/leases/" + other + "/acquire?wait=10", "", 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire?wait=6m", "", 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire?bogus=1", "", 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"TTL":"5s"}`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"ttl":"5s"`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `["ttl"]`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `"5s"`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"ttl":"5s"} {}`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"ttl":"5s","ttl":"5s"}`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"holder":5}`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"holder":{"a":1}}`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"holder":"\u0007"}`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"metadata":"` + strings.Repeat("m", 4097) + `"}`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire?ttl=5s", `{"ttl":"6s"}`, 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire?ttl=5s&ttl=6s", "", 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", `{"metadata":"` + big + `"}`, 413, "payload_too_large"},
		{"POST", base + "/renew", "", 400, "invalid_token"},
		{"POST", base + "/renew?token=" + tok + "&ttl=1", "", 400, "invalid_ttl"},
		{"POST", base + "/renew?token=" + tok + "&holder=x", "", 400, "invalid_request"},
		{"POST", base + "/release", "", 400, "invalid_token"},
		{"POST", base + "/release?token=" + tok + "&ttl=5s", "", 400, "invalid_request"},
		{"POST", base + "/verify", "", 400, "invalid_request"},
		{"POST", base + "/verify?fence=1&token=" + tok, "", 400, "invalid_request"},
		{"POST", base + "/verify?fence=abc", "", 400, "invalid_request"},
		{"POST", base + "/verify?fence=-3", "", 400, "invalid_request"},
		{"GET", base + "?ttl=5s", "", 400, "invalid_request"},
		{"GET", "/v1/leases?limit=0", "", 400, "invalid_request"},
		{"GET", "/v1/leases?limit=1001", "", 400, "invalid_request"},
		{"GET", "/v1/leases?limit=x", "", 400, "invalid_request"},
		{"GET", "/v1/leases?cursor=garbage!", "", 400, "invalid_request"},
		{"GET", "/v1/leases?prefix=a*b", "", 400, "invalid_request"},
		{"GET", "/v1/leases?name=x", "", 400, "invalid_request"},
		{"POST", base + "/acquire?%zz", "", 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", "ttl=30s&holder=x", 400, "invalid_request"},
		{"POST", "/v1/leases/" + other + "/acquire", "ttl=30s", 400, "invalid_request"},
	} {
		t.Run(tc.method+" "+clipName(tc.path)+" "+clipName(tc.body), func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body).want(t, tc.status, tc.code)
			if strings.Contains(string(r.body), tok) {
				t.Errorf("got the token in %s", r.body)
			}
		})
	}
	if after := snapshot(); after != before {
		t.Errorf("Redis changed: got %s, want %s", after, before)
	}
	if strings.Contains(e.logs.String(), tok) {
		t.Errorf("the logs contain the token")
	}
	if !strings.Contains(e.logs.String(), "token=REDACTED") {
		t.Errorf("the logs do not show token=REDACTED for a token in a query string")
	}
}

const httpapiMaxBody = 64 << 10

func clipName(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

func sortedPairs(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// TestFormBodySaysToSendJSONOrAQuery: curl -d 'ttl=30s&holder=x' used to be
// told "invalid character 't' in literal true"; it is told what to send.
// A body that is not a form keeps the JSON parser's own words.
func TestFormBodySaysToSendJSONOrAQuery(t *testing.T) {
	e := newEnv(t, nil)
	path := "/v1/leases/" + uniq(t) + "/acquire"
	for _, tc := range []struct{ body, want string }{
		{"ttl=30s&holder=x", "query string"},
		{"holder=a%20b", "looks like a form"},
		{"ttl=30s&", "looks like a form"},
		{"tru", "not valid JSON"},
		{`{"ttl":"30s"`, "not valid JSON"},
		{"=5", "not valid JSON"},
		{`"a=b"`, "must be a JSON object"},
	} {
		r := e.do("POST", path, tc.body, "Content-Type: application/x-www-form-urlencoded").want(t, 400, "invalid_request")
		if !strings.Contains(r.str("message"), tc.want) {
			t.Errorf("body %q: got message %q, want it to say %q", tc.body, r.str("message"), tc.want)
		}
	}
}

func TestStatusOKHasNoTokenOutsideGrants(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	g := e.do("POST", "/v1/leases/"+name+"/acquire", "").want(t, 200, "")
	tok := g.str("token")
	for _, p := range []struct{ method, path string }{
		{"GET", "/v1/leases/" + name},
		{"GET", "/v1/leases?prefix=" + name},
		{"POST", "/v1/leases/" + name + "/verify?token=" + tok},
		{"POST", "/v1/leases/" + name + "/acquire"},
		{"GET", "/metrics"},
	} {
		req, _ := http.NewRequest(p.method, e.ts.URL+p.path, nil)
		r := doReq(t, req)
		if strings.Contains(string(r.body), tok) {
			t.Errorf("%s %s: got the token in %s", p.method, p.path, r.body)
		}
	}
}

// TestWaitOverTheBoundNamesMaxWait: a wait over the server's longest says
// that this is the server's --max-wait (it said only "out of range").
func TestWaitOverTheBoundNamesMaxWait(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/v1/leases/"+uniq(t)+"/acquire?wait=6m", "").want(t, 400, "invalid_request")
	if m := r.str("message"); !strings.Contains(m, "--max-wait") || !strings.Contains(m, "5m0s") {
		t.Errorf("got message %q, want it to name the server's --max-wait, 5m0s", m)
	}
	r = e.do("POST", "/v1/leases/"+uniq(t)+"/acquire?wait=-1s", "").want(t, 400, "invalid_request")
	if m := r.str("message"); strings.Contains(m, "--max-wait") {
		t.Errorf("a negative wait: got message %q, which blames --max-wait", m)
	}
}

// GET shows how many wait in the name's queue: the HTTP waiters of this
// server are counted as soon as they have joined, and not after they left.
func TestGetCountsWaiters(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	base := "/v1/leases/" + name
	g := e.do("POST", base+"/acquire?ttl=1m", "").want(t, 200, "")
	if n := e.do("GET", base, "").want(t, 200, "").num("waiting"); n != 0 {
		t.Fatalf("got waiting %d with nobody waiting, want 0", n)
	}
	done := make(chan *resp, 2)
	for range 2 {
		go func() { done <- e.do("POST", base+"/acquire?ttl=10s&wait=20s", "") }()
	}
	waitFor(t, func() bool { return e.do("GET", base, "").want(t, 200, "").num("waiting") == 2 })
	e.do("POST", base+"/release", `{"token":"`+g.str("token")+`"}`).want(t, 200, "")
	first := <-done
	first.want(t, 200, "")
	if n := e.do("GET", base, "").want(t, 200, "").num("waiting"); n != 1 {
		t.Errorf("got waiting %d after one waiter was granted, want 1", n)
	}
	e.do("POST", base+"/release", `{"token":"`+first.str("token")+`"}`).want(t, 200, "")
	second := (<-done).want(t, 200, "")
	if n := e.do("GET", base, "").want(t, 200, "").num("waiting"); n != 0 {
		t.Errorf("got waiting %d after both were granted, want 0", n)
	}
	if second.num("fence") <= first.num("fence") {
		t.Errorf("got fences %d then %d, want increasing", first.num("fence"), second.num("fence"))
	}
}
