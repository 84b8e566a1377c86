package httpapi_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/leasehold/leasehold/httpapi"
)

const (
	writerToken = "ci-runner-4f9c2a7e1b"
	readerToken = "reader-token-0123456789"
	adminToken  = "ops-admin-token-0123456789"
)

func authFile() string {
	h := sha256.Sum256([]byte(readerToken))
	return "# token  access  prefixes\n" +
		writerToken + "   write   jobs:,ci:   # a comment\n" +
		"\n" +
		"sha256:" + hex.EncodeToString(h[:]) + "  read  *\n" +
		adminToken + "  admin  jobs:\n"
}

func TestAuth(t *testing.T) {
	e := newEnv(t, &envOptions{auth: authFile()})
	name := "jobs:" + uniq(t)
	w, r := "Authorization: Bearer "+writerToken, "Authorization: Bearer "+readerToken
	for _, tc := range []struct {
		method, path, header string
		status               int
		code                 string
	}{
		{"GET", "/healthz", "", 200, ""},
		{"GET", "/readyz", "", 200, ""},
		{"GET", "/v1/openapi.json", "", 200, ""},
		{"POST", "/v1/leases/" + name + "/acquire", "", 401, "unauthorized"},
		{"POST", "/v1/leases/" + name + "/acquire", "Authorization: Bearer wrong-token-00000000", 401, "unauthorized"},
		{"POST", "/v1/leases/" + name + "/acquire", "Authorization: Basic " + writerToken, 401, "unauthorized"},
		{"GET", "/v1/leases/" + name, "", 401, "unauthorized"},
		{"GET", "/v1/leases", "", 401, "unauthorized"},
		{"POST", "/v1/leases/" + name + "/acquire", r, 403, "forbidden"},
		{"POST", "/v1/leases/other:" + uniq(t) + "/acquire", w, 403, "forbidden"},
		{"GET", "/v1/leases?prefix=other:", w, 403, "forbidden"},
		{"GET", "/v1/leases", w, 403, "forbidden"},
		{"GET", "/v1/leases?prefix=jo", w, 403, "forbidden"},
		{"POST", "/v1/leases/" + name + "/acquire?ttl=10s", w, 200, ""},
		{"POST", "/v1/leases/" + name + "/acquire", strings.ToLower(w[:22]) + w[22:], 409, "lease_held"},
		{"GET", "/v1/leases/" + name, r, 200, ""},
		{"GET", "/v1/leases/" + name, w, 200, ""},
		{"POST", "/v1/leases/" + name + "/verify?fence=1", r, 409, "not_holder"},
		{"GET", "/v1/leases?prefix=jobs:", w, 200, ""},
		{"GET", "/v1/leases", r, 200, ""},
		{"GET", "/v1/leases/" + name + "/history", "", 401, "unauthorized"},
		{"GET", "/v1/leases/" + name + "/history", r, 200, ""},
		{"POST", "/v1/leases/" + name + "/break?reason=r", "", 401, "unauthorized"},
		{"POST", "/v1/leases/" + name + "/break?reason=r", r, 403, "forbidden"},
		{"POST", "/v1/leases/" + name + "/break?reason=r", w, 403, "forbidden"},
		{"POST", "/v1/leases/other:x/break?reason=r", "Authorization: Bearer " + adminToken, 403, "forbidden"},
		{"POST", "/v1/leases/" + name + "/break?reason=r", "Authorization: Bearer " + adminToken, 200, ""},
		{"POST", "/v1/leases/" + name + "/acquire", "Authorization: Bearer " + adminToken, 200, ""},
	} {
		t.Run(tc.method+" "+tc.path+" "+tc.header, func(t *testing.T) {
			var hs []string
			if tc.header != "" {
				hs = append(hs, tc.header)
			}
			res := e.do(tc.method, tc.path, "", hs...).want(t, tc.status, tc.code)
			if tc.status == 401 && !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("got WWW-Authenticate %q, want Bearer", res.header.Get("WWW-Authenticate"))
			}
		})
	}
	if logs := e.logs.String(); strings.Contains(logs, writerToken) || strings.Contains(logs, readerToken) {
		t.Errorf("the logs contain a bearer token")
	}
}

// TestUnauthorizedSaysWhatIsWrong: a missing header, a header that is not a
// bearer token, an empty one and an unknown token each get their own 401
// message, and none names a token of the file. They used to share one.
func TestUnauthorizedSaysWhatIsWrong(t *testing.T) {
	e := newEnv(t, &envOptions{auth: authFile()})
	path := "/v1/leases/jobs:" + uniq(t) + "/acquire"
	seen := map[string]bool{}
	for _, tc := range []struct{ header, want string }{
		{"", "no Authorization header"},
		{"Authorization: " + writerToken, "not a bearer token"},
		{"Authorization: Basic " + writerToken, "not a bearer token"},
		{"Authorization: Bearer   ", "token is empty"},
		{"Authorization: Bearer " + writerToken + "x", "not in the server's auth file"},
	} {
		var hs []string
		if tc.header != "" {
			hs = append(hs, tc.header)
		}
		res := e.do("POST", path, "", hs...).want(t, 401, "unauthorized")
		msg := res.str("message")
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%q: got message %q, want it to say %q", tc.header, msg, tc.want)
		}
		if strings.Contains(msg, writerToken) || strings.Contains(msg, readerToken) {
			t.Errorf("%q: the message %q names a token", tc.header, msg)
		}
		if strings.Contains(string(res.body), `\u003c`) {
			t.Errorf("%q: the body %s escapes < and >: want them as they are", tc.header, res.body)
		}
		seen[msg] = true
	}
	if len(seen) != 4 {
		t.Errorf("got %d different messages for 4 different mistakes: %v", len(seen), seen)
	}
}

func TestParseAuthRejectsMalformedFilesNamingTheLine(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"tok-0123456789abcdef write *\nbad line\n", "line 2"},
		{"tok-0123456789abcdef root *\n", "line 1: access \"root\": want read, write or admin"},
		{"# only a comment\n", "no tokens"},
		{"sha256:abc read *\n", "64 hex digits"},
		{"short write *\n", "at least 16"},
		{"tok-0123456789abcdef write a,,b\n", "empty entry"},
		{"tok-0123456789abcdef write a/b\n", "prefix \"a/b\""},
		{"tok-0123456789abcdef write *\ntok-0123456789abcdef read *\n", "line 2: this token is already listed"},
	} {
		_, err := httpapi.ParseAuth(strings.NewReader(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAuth(%q): got %v, want an error containing %q", tc.file, err, tc.want)
		}
	}
}

// TestAuthSays checks GET /v1/auth: what each token may do, with auth on
// and off, for a client that offers only what it may (the dashboard).
func TestAuthSays(t *testing.T) {
	off := newEnv(t, nil)
	on := newEnv(t, &envOptions{auth: authFile()})
	for _, tc := range []struct {
		what   string
		e      *env
		header string
		status int
		want   string
	}{
		{"auth off", off, "", 200, `{"auth":false}`},
		{"auth off, any token", off, "Authorization: Bearer " + writerToken, 200, `{"auth":false}`},
		{"no token", on, "", 401, ""},
		{"a wrong token", on, "Authorization: Bearer not-a-token-of-the-file", 401, ""},
		{"writer", on, "Authorization: Bearer " + writerToken, 200, `{"auth":true,"access":"write","prefixes":["jobs:","ci:"]}`},
		{"reader of every name", on, "Authorization: Bearer " + readerToken, 200, `{"auth":true,"access":"read","prefixes":["*"]}`},
		{"admin", on, "Authorization: Bearer " + adminToken, 200, `{"auth":true,"access":"admin","prefixes":["jobs:"]}`},
	} {
		t.Run(tc.what, func(t *testing.T) {
			var hs []string
			if tc.header != "" {
				hs = append(hs, tc.header)
			}
			r := tc.e.do("GET", "/v1/auth", "", hs...)
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.want != "" && strings.TrimSpace(string(r.body)) != tc.want {
				t.Errorf("got %s, want %s", r.body, tc.want)
			}
		})
	}
}
