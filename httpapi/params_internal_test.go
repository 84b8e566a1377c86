package httpapi

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseBodyPaths checks that parseBody's reader of valid JSON answers
// every valid body as json.Decoder's tokens do: the same parameters, or the
// same error.
func FuzzParseBodyPaths(f *testing.F) {
	for _, body := range []string{
		`{"ttl":"30s","holder":"web-1","metadata":"m","wait":"0"}`,
		` { "ttl" : 30 , "token" : null } `,
		`{"ttl":1e400,"wait":-0.5E+3}`,
		`{"holder":"\ud800","metadata":"a\"b\\c\u00e9\n"}`,
		"{\"holder\":\"\xff\xfe\"}",
		`{"ttl":"5s","ttl":"5s"}`,
		`{"TTL":"5s"}`,
		`{"holder":5}`,
		`{"holder":true}`,
		`{"ttl":false}`,
		`{"holder":{"a":1}}`,
		`{"ttl":[1]}`,
		`["ttl"]`,
		`"5s"`,
		`null`,
		`{}`,
		`{"ttl":"5s"} {}`,
		`{"prefix":"a","limit":10,"cursor":"MHw"}`,
	} {
		f.Add(body, uint16(acquireParams))
		f.Add(body, uint16(listParams))
	}
	f.Fuzz(func(t *testing.T, body string, allowed uint16) {
		allowed &= 1<<nParams - 1
		if !json.Valid([]byte(body)) {
			return
		}
		var fast, slow params
		errFast := parseBody([]byte(body), allowed, &fast)
		errSlow := parseBodyTokens([]byte(body), allowed, &slow)
		if errString(errFast) != errString(errSlow) || errFast == nil && fast != slow {
			t.Fatalf("body %q: got %+v, %v; json.Decoder gives %+v, %v", body, fast, errFast, slow, errSlow)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzReadQueryMatchesParseQuery checks that readQuery, which splits the
// query itself to keep the stack of waiting requests small, reads every
// query as url.ParseQuery does: the same parameters, or an error.
func FuzzReadQueryMatchesParseQuery(f *testing.F) {
	for _, q := range []string{
		"ttl=30s&holder=web-1&wait=1m",
		"holder=a+b%20c%2Fd&&metadata=",
		"ttl=5s&ttl=5s",
		"ttl=5s&ttl=6s",
		"ttl=5s;holder=x",
		"holder=%zz",
		"%zz=1",
		"TTL=5s",
		"ttl",
		"=x",
		"&&&",
		"holder=%E2%9C%93",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		var got params
		gotErr := readQuery(q, acquireParams, &got)

		var want params
		var wantErr error
		vals, err := url.ParseQuery(q)
		if err != nil {
			wantErr = err
		}
		for k, vs := range vals {
			if wantErr != nil {
				break
			}
			i, err := lookupParam(k, acquireParams)
			if err != nil {
				wantErr = err
				break
			}
			for _, v := range vs {
				if err := want.put(i, v); err != nil {
					wantErr = err
					break
				}
			}
		}
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("readQuery(%q): got error %v, want %v", q, gotErr, wantErr)
		}
		if gotErr == nil && got != want {
			t.Fatalf("readQuery(%q): got %+v, want %+v", q, got, want)
		}
	})
}

// TestReadBodyBounds reads bodies of unknown length (chunked) and of a
// given one around MaxBodyBytes: at most that many bytes are read, one
// more is 413, whatever the length the client announced.
func TestReadBodyBounds(t *testing.T) {
	exact := `{"metadata":"` + strings.Repeat("m", MaxBodyBytes-len(`{"metadata":""}`)) + `"}`
	for _, tt := range []struct {
		name    string
		body    string
		length  int64 // -1: unknown, as for a chunked body
		wantErr error
	}{
		{"small, unknown length", `{"ttl":"5s"}`, -1, nil},
		{"small, known length", `{"ttl":"5s"}`, int64(len(`{"ttl":"5s"}`)), nil},
		{"at the bound, unknown length", exact, -1, nil},
		{"at the bound, known length", exact, int64(len(exact)), nil},
		{"one byte over, unknown length", exact + " ", -1, errTooLarge},
		{"far over, unknown length", exact + strings.Repeat(" ", 1<<20), -1, errTooLarge},
		{"over, announced as small", exact + " ", 10, errTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/leases/x/acquire", io.NopCloser(strings.NewReader(tt.body)))
			r.ContentLength = tt.length
			var p params
			err := readBody(r, acquireParams, &p)
			if err != tt.wantErr {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if err == nil && tt.body == exact && len(p.val[pMetadata]) != MaxBodyBytes-len(`{"metadata":""}`) {
				t.Errorf("got %d bytes of metadata, want %d", len(p.val[pMetadata]), MaxBodyBytes-len(`{"metadata":""}`))
			}
		})
	}
}
