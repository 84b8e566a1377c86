package httpapi

import (
	"encoding/json"
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
