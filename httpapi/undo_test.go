package httpapi_test

import (
	"context"
	"github.com/leasehold/leasehold/internal/redistest"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/lease"
)

// TestUnknownAcquireIsUndoneOrLeftToTheToken: when Redis grants an acquire
// later than --redis-timeout, the answer is 503 "may have been applied". A
// grant of a token the server made (nobody else knows it) is released in
// the background, and the message says so; a grant of the client's own
// token stays, and the message says to retry with that token, which gets
// the same grant.
func TestUnknownAcquireIsUndoneOrLeftToTheToken(t *testing.T) {
	e := newEnv(t, &envOptions{proxy: true, redisTimeout: 300 * time.Millisecond})
	for _, tc := range []struct {
		name, token, msg string
	}{
		{"server's token", "", "releases that grant in the background"},
		{"client's token", lease.NewToken(), "retry with the same token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := uniq(t)
			key := "leasehold:{" + name + "}"
			q := "ttl=1m"
			if tc.token != "" {
				q += "&token=" + tc.token
			}
			e.proxy.SetDelay(250 * time.Millisecond) // each way: granted at +250ms, answered at +500ms
			r := e.do("POST", "/v1/leases/"+name+"/acquire?"+q, "").want(t, 503, "backend_unavailable")
			if !strings.Contains(r.str("message"), tc.msg) || r.json["may_have_applied"] != true {
				t.Errorf("got %s, want may_have_applied and a message that says %q", r.body, tc.msg)
			}
			e.proxy.SetDelay(0)
			if tc.token == "" {
				waitFor(t, func() bool { n, _ := live(e.rdb, key); return n == 0 })
				return
			}
			time.Sleep(time.Second)
			g := e.do("POST", "/v1/leases/"+name+"/acquire?"+q, "").want(t, 200, "")
			f, _ := e.rdb.HGet(bg, key, "f").Int64()
			if g.num("fence") != f {
				t.Errorf("the retry with the same token got fence %d, want the first grant's %d", g.num("fence"), f)
			}
		})
	}
}

// TestClientUndoesAnAcquireItGaveUpOn: the HTTP client makes the token of
// an Acquire itself, so that when it gives up on the answer (its context
// ends) it can release what the server may have granted.
func TestClientUndoesAnAcquireItGaveUpOn(t *testing.T) {
	e := newEnv(t, &envOptions{proxy: true})
	c := httpapi.NewClient(e.ts.URL, nil)
	defer c.Close()
	name := uniq(t)
	key := "leasehold:{" + name + "}"
	e.proxy.SetDelay(250 * time.Millisecond)
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute}); !lease.Unknown(err) {
		t.Fatalf("Acquire = %v, want an unknown outcome", err)
	}
	waitFor(t, func() bool { n, _ := live(e.rdb, key); return n == 1 }) // granted after all
	sctx, scancel := context.WithTimeout(bg, 10*time.Second)
	defer scancel()
	if err := c.Settle(sctx); err != nil {
		t.Fatalf("Settle = %v", err)
	}
	if n, _ := live(e.rdb, key); n != 0 {
		pttl, _ := redistest.LeaseLeft(bg, e.rdb, key)
		t.Errorf("after Settle the grant nobody holds the token of is still there, for another %v", pttl)
	}
}

// TestClientLeaseSentCountsFromTheGrant: a waiting Acquire over HTTP
// carries in Lease.Sent when the call that granted it was sent (the
// server's wait added to the request's send time), so a Keeper counts
// from the grant, not from the start of the wait.
func TestClientLeaseSentCountsFromTheGrant(t *testing.T) {
	e := newEnv(t, nil)
	c := httpapi.NewClient(e.ts.URL, nil)
	defer c.Close()
	name := uniq(t)
	if _, err := e.lc.Acquire(bg, name, &lease.AcquireOptions{TTL: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	l, err := c.Acquire(bg, name, &lease.AcquireOptions{TTL: time.Second, Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Sent.Sub(sent); got < 400*time.Millisecond || l.Sent.After(time.Now()) {
		t.Errorf("Lease.Sent is %v after the request was sent, want about the 500ms the holder had left, and not in the future", got)
	}
}
