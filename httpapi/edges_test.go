package httpapi_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange sends raw bytes on a new connection to addr and reads the
// answers, as many as want.
func rawExchange(t *testing.T, addr, raw string, want int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, raw) // the server may answer before it has read everything
	br := bufio.NewReader(c)
	var out []*http.Response
	for range want {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%.60q: reading answer %d: %v", raw, len(out)+1, err)
		}
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		res.Body = io.NopCloser(strings.NewReader(string(b)))
		out = append(out, res)
	}
	return out
}

// TestNetHTTPEdgesAnswerJSON: what net/http answers itself, before any
// handler (a request it cannot parse, headers over the limit), is JSON
// with the Error body like every other answer, with net/http's status.
func TestNetHTTPEdgesAnswerJSON(t *testing.T) {
	e := newEnv(t, nil)
	s := docSpec(t)
	addr := strings.TrimPrefix(e.ts.URL, "http://")
	big := strings.Repeat("x", 70<<10)
	for _, tt := range []struct {
		what, raw string
		status    int
	}{
		{"bad percent-encoding in the path", "GET /v1/leases/a%zzb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad percent-encoding in an acquire", "POST /v1/leases/a%zzb/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400},
		{"a 70 KiB header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", 431},
		{"no Host header", "GET /healthz HTTP/1.1\r\n\r\n", 400},
		{"a malformed header line", "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400},
		{"a malformed request line", "GARBAGE\r\n\r\n", 400},
		{"an unsupported Transfer-Encoding", "POST /v1/leases/x/acquire HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"an unsupported HTTP version", "GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n", 505},
	} {
		t.Run(tt.what, func(t *testing.T) {
			res := rawExchange(t, addr, tt.raw, 1)[0]
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %q %s, want %d application/json", res.StatusCode, res.Header.Get("Content-Type"), b, tt.status)
			}
			var body struct{ Error, Message string }
			if err := json.Unmarshal(b, &body); err != nil || body.Error != "invalid_request" || body.Message == "" {
				t.Errorf("got body %s (%v), want invalid_request with a message", b, err)
			}
			if err := s.doc.Components.Schemas["Error"].Value.VisitJSON(anyJSON(t, b)); err != nil {
				t.Errorf("the body %s does not match Error: %v", b, err)
			}
		})
	}

	// On one connection: a good request, then one net/http refuses. The
	// handler's answer passes unchanged; the refusal is JSON.
	res := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	if b, _ := io.ReadAll(res[0].Body); res[0].StatusCode != 200 || strings.TrimSpace(string(b)) != `{"status":"ok"}` || res[0].Header.Get("Date") == "" {
		t.Errorf("first answer: got %d %s %v, want the handler's 200", res[0].StatusCode, b, res[0].Header)
	}
	if b, _ := io.ReadAll(res[1].Body); res[1].StatusCode != 400 || !strings.Contains(string(b), `"invalid_request"`) {
		t.Errorf("second answer: got %d %s, want 400 invalid_request", res[1].StatusCode, b)
	}
}
