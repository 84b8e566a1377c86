package httpapi_test

import (
	"github.com/leasehold/leasehold/internal/redistest"
	"strconv"
	"testing"
)

// TestPercentEncodedNames: a name arrives percent-encoded or not, as
// JavaScript's encodeURIComponent and Python's quote send it: jobs%3Ax is
// jobs:x on every route that takes a name, for auth scopes too, and in
// Redis. A name that decodes to something invalid stays invalid_name.
func TestPercentEncodedNames(t *testing.T) {
	e := newEnv(t, &envOptions{auth: authFile()})
	w := "Authorization: Bearer " + writerToken
	r := "Authorization: Bearer " + readerToken
	name := "jobs:" + uniq(t)
	enc := "jobs%3A" + name[len("jobs:"):]
	base := "/v1/leases/" + enc

	g := e.do("POST", base+"/acquire?ttl=30s&holder=h", "", w).want(t, 200, "")
	tok, fence := g.str("token"), g.num("fence")
	if g.str("name") != name {
		t.Errorf("acquire %s: got name %q, want %q", enc, g.str("name"), name)
	}
	if h, err := e.rdb.HGetAll(bg, "leasehold:{"+name+"}").Result(); err != nil || h["t"] != tok {
		t.Errorf("got hash leasehold:{%s} = %v (%v), want the lease with its token", name, h, err)
	}
	e.do("POST", "/v1/leases/"+name+"/acquire", "", w).want(t, 409, "lease_held") // the same lease, unencoded
	if got := e.do("GET", base, "", r).want(t, 200, "").str("name"); got != name {
		t.Errorf("get %s: got name %q, want %q", enc, got, name)
	}
	if got := e.do("GET", "/v1/leases/jobs%3a"+name[len("jobs:"):], "", r).want(t, 200, "").str("name"); got != name {
		t.Errorf("get with lower-case %%3a: got name %q, want %q", got, name)
	}
	if got := e.do("POST", base+"/renew?ttl=20s&token="+tok, "", w).want(t, 200, "").num("fence"); got != fence {
		t.Errorf("renew %s: got fence %d, want %d", enc, got, fence)
	}
	e.do("POST", base+"/verify?fence="+strconv.FormatInt(fence, 10), "", r).want(t, 200, "")
	e.do("POST", base+"/release", `{"token":"`+tok+`"}`, w).want(t, 200, "")
	if live, err := redistest.LeaseLive(bg, e.rdb, "leasehold:{"+name+"}"); err != nil || live {
		t.Errorf("after release: got a live lease leasehold:{%s} (%v), want none", name, err)
	}
	e.do("POST", "/v1/leases/other%3Ax/acquire", "", w).want(t, 403, "forbidden") // scopes see the decoded name

	for _, bad := range []string{"jobs%2Fx", "a%2F..", "%2E%2E", "..", "%2E", "jobs%20x", "jobs%00x", "%7Bx%7D"} {
		e.do("POST", "/v1/leases/"+bad+"/acquire", "", w).want(t, 400, "invalid_name")
		e.do("GET", "/v1/leases/"+bad, "", r).want(t, 400, "invalid_name")
	}
	for _, decoded := range []string{"jobs/x", "a/..", "..", ".", "jobs x", "jobs\x00x", "{x}"} {
		if n, err := e.rdb.Exists(bg, "leasehold:{"+decoded+"}", "leasehold:{"+decoded+"}:q").Result(); err != nil || n != 0 {
			t.Errorf("got %d keys for the invalid name %q (%v), want none", n, decoded, err)
		}
	}
}
