package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzParams sends arbitrary query strings and bodies to every route and
// checks that no input gives a 500, a non-JSON body, or a token outside a
// grant, and that openapi.json says of each input what the server does
// (conform).
func FuzzParams(f *testing.F) {
	e := newEnv(f, nil)
	routes := []struct{ method, path string }{
		{"POST", "/v1/leases/fuzz/acquire"},
		{"POST", "/v1/leases/fuzz/renew"},
		{"POST", "/v1/leases/fuzz/release"},
		{"POST", "/v1/leases/fuzz/verify"},
		{"GET", "/v1/leases/fuzz"},
		{"GET", "/v1/leases"},
	}
	for _, s := range []struct {
		route       uint8
		query, body string
	}{
		{0, "ttl=30s&holder=a", ""},
		{0, "", `{"ttl":"30s","holder":"web-1","metadata":"m","wait":"0"}`},
		{0, "ttl=1", `{"ttl":1e400}`},
		{0, "", `{"token":"0123456789abcdef0123","ttl":"10ms"}`},
		{1, "token=0123456789abcdef0123", `{"ttl":"1h"}`},
		{2, "", `{"token":null}`},
		{3, "fence=1", `{"fence":-1.5}`},
		{3, "", `{"fence":"9223372036854775808"}`},
		{4, "", "   "},
		{5, "limit=2&prefix=f&cursor=MHw", ""},
		{5, "", `{"limit":1000,"cursor":"` + strings.Repeat("A", 100) + `"}`},
		{0, "%", `{"a":`},
		{0, "", "\xff\xfe"},
		{0, "", `{"holder":"\ud800"}`},
	} {
		f.Add(s.route, s.query, s.body)
	}
	f.Fuzz(func(t *testing.T, route uint8, query, body string) {
		rt := routes[int(route)%len(routes)]
		req := &http.Request{
			Method: rt.method, URL: &url.URL{Path: rt.path, RawQuery: query},
			Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Host: "fuzz", RemoteAddr: "127.0.0.1:1",
		}
		req = req.WithContext(bg)
		w := httptest.NewRecorder()
		(&conform{t: t, spec: docSpec(t), next: e.srv}).ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s?%q body %q: got %d %s", rt.method, rt.path, query, body, w.Code, w.Body)
		}
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("got a body that is not a JSON object: %q", w.Body)
		}
		if _, ok := v["token"]; ok && w.Code != 200 {
			t.Fatalf("got a token in a %d answer: %s", w.Code, w.Body)
		}
		if w.Code == 200 && rt.method == "POST" && strings.HasSuffix(rt.path, "acquire") {
			// Leave the name free for the next input.
			tok, _ := v["token"].(string)
			e.lc.Release(bg, "fuzz", tok)
		}
	})
}
