package httpapi_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/lease"
)

// TestBreakAndHistoryOverHTTP: an admin token breaks a writer's lease, the
// writer's keeper (over HTTP) reports the loss, and the history says who
// broke it (the token's label, never the token) and how the grants before
// ended, exit codes included.
func TestBreakAndHistoryOverHTTP(t *testing.T) {
	e := newEnv(t, &envOptions{auth: authFile()})
	name := "jobs:" + uniq(t)
	w := httpapi.NewClient(e.ts.URL, &httpapi.ClientOptions{Token: writerToken})
	admin := httpapi.NewClient(e.ts.URL, &httpapi.ClientOptions{Token: adminToken})
	reader := httpapi.NewClient(e.ts.URL, &httpapi.ClientOptions{Token: readerToken})

	first, err := w.Acquire(bg, name, &lease.AcquireOptions{TTL: 10 * time.Second, Holder: "cron-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.ReleaseWith(bg, name, first.Token, &lease.Outcome{ExitCode: 2, Duration: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	l, err := w.Acquire(bg, name, &lease.AcquireOptions{TTL: 10 * time.Second, Holder: "cron-2"})
	if err != nil {
		t.Fatal(err)
	}
	k := lease.Keep(bg, w, l, &lease.KeeperOptions{Interval: 100 * time.Millisecond})
	defer k.Stop()

	if _, err := w.Break(bg, name, &lease.BreakOptions{Reason: "stuck"}); !errors.Is(err, httpapi.ErrForbidden) || !strings.Contains(err.Error(), "admin access") {
		t.Fatalf("a write token's break: got %v, want 403 naming admin access", err)
	}
	rec, err := admin.Break(bg, name, &lease.BreakOptions{Reason: "stuck since 02:00", By: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Holder != "cron-2" || rec.Fence != l.Fence || rec.Ending != lease.Broken || !strings.Contains(rec.By, "(auth file line 5)") || strings.Contains(rec.By, adminToken) {
		t.Errorf("got %+v, want cron-2's grant broken by the admin token's label", rec)
	}
	if rec.GrantedAt.IsZero() || rec.EndedAt.Before(rec.GrantedAt) || rec.EndedAt.Sub(rec.GrantedAt) > 5*time.Second {
		t.Errorf("got granted %v, ended %v: want the broken grant's own start, before its end", rec.GrantedAt, rec.EndedAt)
	}
	select {
	case <-k.Done():
		if !errors.Is(k.Err(), lease.ErrNotFound) {
			t.Errorf("keeper: got %v, want not found", k.Err())
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the broken holder's keeper did not report the loss")
	}

	h, err := reader.History(bg, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].Ending != lease.Broken || h[0].Reason != "stuck since 02:00" || h[0].By != rec.By ||
		h[1].Ending != lease.Released || h[1].Holder != "cron-1" || h[1].Outcome == nil || h[1].Outcome.ExitCode != 2 || h[1].Outcome.Duration != 1500*time.Millisecond {
		t.Fatalf("got history %+v, want the broken grant, then cron-1's released with exit code 2 after 1.5s", h)
	}
	if _, err := admin.Break(bg, name, &lease.BreakOptions{Reason: "again"}); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("a break of nothing: got %v, want not found", err)
	}
	if logs := e.logs.String(); strings.Contains(logs, adminToken) || !strings.Contains(logs, "lease broken") {
		t.Errorf("the logs name the admin token, or not the break:\n%s", logs)
	}
}

// With auth off, a break records the connection's address, not headers a
// client writes: a review had X-Real-IP recorded as who broke it, and a
// 300-byte X-Forwarded-For refused the break ("the by is 308 bytes long").
func TestBreakByIsTheConnectionsAddress(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	for _, hdr := range []string{"X-Real-IP: alice-the-admin", "X-Forwarded-For: " + strings.Repeat("1", 300)} {
		e.do("POST", "/v1/leases/"+name+"/acquire?ttl=10s", "").want(t, 200, "")
		r := e.do("POST", "/v1/leases/"+name+"/break?reason=r", "", hdr).want(t, 200, "")
		if by := r.str("by"); by != "address 127.0.0.1" {
			t.Errorf("with %.40s: got by %q, want the connection's address 127.0.0.1", hdr, by)
		}
	}
}
