package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// BenchmarkAcquireRelease measures one acquire and one release through the
// handler (no network between client and server) against real Redis.
func BenchmarkAcquireRelease(b *testing.B) {
	e := newEnv(b, nil)
	body := `{"ttl":"30s","holder":"bench","token":"bench-token-0123456789"}`
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		req := &http.Request{Method: "POST", URL: &url.URL{Path: "/v1/leases/bench/acquire"},
			Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
		e.srv.ServeHTTP(w, req.WithContext(bg))
		if w.Code != 200 {
			b.Fatalf("acquire: %d %s", w.Code, w.Body)
		}
		w = httptest.NewRecorder()
		req = &http.Request{Method: "POST", URL: &url.URL{Path: "/v1/leases/bench/release", RawQuery: "token=bench-token-0123456789"},
			Header: http.Header{}, Body: http.NoBody}
		e.srv.ServeHTTP(w, req.WithContext(bg))
		if w.Code != 200 {
			b.Fatalf("release: %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkHeld measures the conflict path: the most frequent answer under
// contention.
func BenchmarkHeld(b *testing.B) {
	e := newEnv(b, nil)
	e.do("POST", "/v1/leases/bench-held/acquire?ttl=1h", "")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		req := &http.Request{Method: "POST", URL: &url.URL{Path: "/v1/leases/bench-held/acquire", RawQuery: "ttl=30s&holder=x"},
			Header: http.Header{}, Body: http.NoBody}
		e.srv.ServeHTTP(w, req.WithContext(bg))
		if w.Code != 409 {
			b.Fatalf("got %d", w.Code)
		}
	}
}
