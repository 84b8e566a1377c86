package httpapi_test

import (
	"strings"
	"testing"
)

// TestTokensNeverReachTheLogs sends lease tokens in query strings, their
// keys spelled every way the query reader (or a confused client) might,
// and bearer tokens right and wrong, on paths that log at warn (401, 403)
// and at debug (400): no secret may appear in the logs, while the
// parameters that are not secret stay readable.
func TestTokensNeverReachTheLogs(t *testing.T) {
	e := newEnv(t, &envOptions{auth: authFile()})
	w := "Authorization: Bearer " + writerToken
	const wrongBearer = "wrong-bearer-secret-0123456789"
	other := "/v1/leases/other:" + uniq(t)
	jobs := "/v1/leases/jobs:" + uniq(t)
	secrets := []string{}
	secret := func() string {
		s := "Secret" + strings.Repeat("x", 10) + string(rune('A'+len(secrets)))
		secrets = append(secrets, s)
		return s
	}
	for _, tc := range []struct {
		path, header string
		status       int
		code         string
	}{
		{other + "/release?%74oken=" + secret(), w, 403, "forbidden"},
		{other + "/release?%74%6F%6B%65%6E=" + secret(), w, 403, "forbidden"},
		{other + "/renew?ttl=5s&%74oken=" + secret(), w, 403, "forbidden"},
		{other + "/release?token=" + secret(), w, 403, "forbidden"},
		{other + "/release?token=" + secret(), "Authorization: Bearer " + wrongBearer, 401, "unauthorized"},
		{jobs + "/release?%74oken=" + secret(), "", 401, "unauthorized"},
		{jobs + "/release?TOKEN=" + secret(), w, 400, "invalid_request"},
		{jobs + "/release?Token=" + secret(), "", 401, "unauthorized"},
		{jobs + "/acquire?ttl=5s&access_token=" + secret(), "", 401, "unauthorized"},
		{jobs + "/release?token%3D" + secret(), w, 400, "invalid_request"},
		{jobs + "/release?%74oken=" + secret() + "&%zz", w, 400, "invalid_request"},
		{jobs + "/release?ttl=1s;%74oken=" + secret(), w, 400, "invalid_request"},
		{jobs + "/release?holder=web-1%26token%3D", "", 401, "unauthorized"},
	} {
		var hs []string
		if tc.header != "" {
			hs = append(hs, tc.header)
		}
		e.do("POST", tc.path, "", hs...).want(t, tc.status, tc.code)
	}
	logs := e.logs.String()
	for _, s := range append(secrets, writerToken, wrongBearer) {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, s) {
				t.Errorf("got the secret %s in the log line %s, want it redacted", s, line)
			}
		}
	}
	for _, want := range []string{"ttl=5s", "holder=web-1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs do not show %s, which is no secret:\n%s", want, logs)
		}
	}
}
