package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

func TestClientLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	c := httpapi.NewClient(e.ts.URL+"/", nil)
	defer c.Close()
	name := uniq(t)
	l, err := c.Acquire(bg, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "h", Metadata: "m"})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if l.Name != name || l.Holder != "h" || l.Metadata != "m" || l.TTL != 5*time.Second || len(l.Token) < 22 || l.Fence <= 0 {
		t.Errorf("Acquire: got %+v", l)
	}
	if d := time.Until(l.ExpiresAt); d < 4*time.Second || d > 6*time.Second {
		t.Errorf("Acquire: got ExpiresAt %v from now, want about 5s", d)
	}

	_, err = c.Acquire(bg, name, &lease.AcquireOptions{Holder: "other"})
	var held *lease.HeldError
	if !errors.As(err, &held) || !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("second Acquire: got %v, want *lease.HeldError", err)
	}
	if held.Name != name || held.Holder != "h" || held.Fence != l.Fence || held.TTL <= 0 || held.TTL > 5*time.Second {
		t.Errorf("HeldError: got %+v, want name %s holder h fence %d and the remaining TTL", held, name, l.Fence)
	}

	r, err := c.Renew(bg, name, l.Token, 9*time.Second)
	if err != nil || r.Token != l.Token || r.Fence != l.Fence || r.TTL != 9*time.Second || r.Holder != "h" {
		t.Errorf("Renew: got %+v, %v", r, err)
	}
	g, err := c.Get(bg, name)
	if err != nil || g.Token != "" || g.Fence != l.Fence || g.Holder != "h" || g.Metadata != "m" || g.TTL <= 0 {
		t.Errorf("Get: got %+v, %v", g, err)
	}
	v, err := c.Verify(bg, name, lease.Proof{Fence: l.Fence})
	if err != nil || v.Fence != l.Fence || v.TTL <= 0 {
		t.Errorf("Verify: got %+v, %v", v, err)
	}
	if _, err := c.Verify(bg, name, lease.Proof{Token: l.Token}); err != nil {
		t.Errorf("Verify token: %v", err)
	}
	page, err := c.List(bg, &lease.ListOptions{Prefix: name, Limit: 10})
	if err != nil || len(page.Leases) != 1 || page.Leases[0].Name != name || page.Leases[0].Token != "" || page.NextCursor != "" {
		t.Errorf("List: got %+v, %v", page, err)
	}

	other := "someone-elses-token-000"
	var nh *lease.NotHolderError
	if _, err := c.Renew(bg, name, other, 0); !errors.As(err, &nh) || nh.Holder != "h" || nh.Fence != l.Fence {
		t.Errorf("Renew with another token: got %v, want *lease.NotHolderError", err)
	}
	if err := c.Release(bg, name, other); !errors.Is(err, lease.ErrNotHolder) {
		t.Errorf("Release with another token: got %v, want ErrNotHolder", err)
	}
	if _, err := c.Verify(bg, name, lease.Proof{Fence: l.Fence - 1}); !errors.Is(err, lease.ErrNotHolder) {
		t.Errorf("Verify old fence: got %v, want ErrNotHolder", err)
	}
	if err := c.Release(bg, name, l.Token); err != nil {
		t.Fatalf("Release: %v", err)
	}
	var nf *lease.NotFoundError
	if err := c.Release(bg, name, l.Token); !errors.As(err, &nf) || nf.Name != name {
		t.Errorf("second Release: got %v, want *lease.NotFoundError for %s", err, name)
	}
	if _, err := c.Get(bg, name); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after release: got %v, want ErrNotFound", err)
	}
	if _, err := c.Renew(bg, name, l.Token, 0); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Renew after release: got %v, want ErrNotFound", err)
	}
	if err := c.Ping(bg); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestClientInvalidInput(t *testing.T) {
	e := newEnv(t, nil)
	c := httpapi.NewClient(e.ts.URL, nil)
	name := uniq(t)
	for _, tc := range []struct {
		what string
		call func() error
		code string
	}{
		{"bad name", func() error { _, err := c.Acquire(bg, "a/b", nil); return err }, lease.CodeInvalidName},
		{"ttl too long", func() error {
			_, err := c.Acquire(bg, name, &lease.AcquireOptions{TTL: 25 * time.Hour})
			return err
		}, lease.CodeInvalidTTL},
		{"short token", func() error { _, err := c.Renew(bg, name, "short", 0); return err }, lease.CodeInvalidToken},
		{"wait too long", func() error {
			_, err := c.Acquire(bg, name, &lease.AcquireOptions{Wait: time.Hour})
			return err
		}, lease.CodeInvalidRequest},
		{"bad limit", func() error { _, err := c.List(bg, &lease.ListOptions{Limit: 5000}); return err }, lease.CodeInvalidRequest},
		{"fence and token", func() error {
			_, err := c.Verify(bg, name, lease.Proof{Fence: 1, Token: "0123456789abcdef0123"})
			return err
		}, lease.CodeInvalidRequest},
	} {
		err := tc.call()
		var inv *lease.InvalidError
		if !errors.As(err, &inv) || inv.Code != tc.code || inv.Message == "" || !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("%s: got %v, want *lease.InvalidError %s", tc.what, err, tc.code)
		}
	}
}

func TestClientWaitAndTimeouts(t *testing.T) {
	e := newEnv(t, nil)
	c := httpapi.NewClient(e.ts.URL, &httpapi.ClientOptions{Timeout: 200 * time.Millisecond})
	name := uniq(t)
	l, err := c.Acquire(bg, name, &lease.AcquireOptions{TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The wait (1s) outlasts the client's timeout (200ms): the wait is added.
	w, err := c.Acquire(bg, name, &lease.AcquireOptions{Wait: time.Second, Holder: "waiter"})
	if err != nil || w.Holder != "waiter" || w.Fence <= l.Fence {
		t.Fatalf("waiting Acquire: got %+v, %v, want a grant after the first lease expires", w, err)
	}
	// A wait that elapses is a HeldError.
	if _, err := c.Acquire(bg, name, &lease.AcquireOptions{Wait: 100 * time.Millisecond}); !errors.Is(err, lease.ErrHeld) {
		t.Errorf("elapsed wait: got %v, want ErrHeld", err)
	}
	// The caller's context ends a wait with its own error.
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	_, err = c.Acquire(ctx, name, &lease.AcquireOptions{Wait: 10 * time.Second})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, lease.ErrBackend) {
		t.Errorf("cancelled wait: got %v, want context.DeadlineExceeded", err)
	}
	cctx, ccancel := context.WithCancel(bg)
	ccancel()
	if _, err := c.Get(cctx, name); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: got %v, want context.Canceled", err)
	}
}

func TestClientBackendErrors(t *testing.T) {
	rs := redistest.Start(t)
	e := newEnv(t, &envOptions{redis: rs, redisTimeout: 200 * time.Millisecond})
	c := httpapi.NewClient(e.ts.URL, nil)
	name := uniq(t)
	rs.Pause()
	defer rs.Resume()
	_, err := c.Acquire(bg, name, nil)
	var be *lease.BackendError
	if !errors.As(err, &be) || !be.MayHaveApplied || be.Op != "acquire" || !strings.Contains(err.Error(), "Redis is unavailable") {
		t.Errorf("Acquire on a paused Redis: got %v, want *lease.BackendError that may have applied, blaming Redis", err)
	}
	if _, err := c.Get(bg, name); !errors.As(err, &be) || be.MayHaveApplied {
		t.Errorf("Get on a paused Redis: got %v, want *lease.BackendError not applied", err)
	}
	if err := c.Ping(bg); !errors.Is(err, lease.ErrBackend) {
		t.Errorf("Ping on a paused Redis: got %v, want ErrBackend", err)
	}
	// A server that is not there at all.
	dead := httpapi.NewClient("http://127.0.0.1:1", nil)
	if _, err := dead.Get(bg, name); !errors.As(err, &be) || !strings.Contains(err.Error(), "the Leasehold server is unavailable") {
		t.Errorf("Get of a dead server: got %v, want *lease.BackendError blaming the server", err)
	}
	// A write that could not connect never left: it was not applied.
	if _, err := dead.Acquire(bg, name, nil); !errors.As(err, &be) || be.MayHaveApplied || !strings.Contains(err.Error(), "it was not applied") {
		t.Errorf("Acquire of a dead server: got %v, want *lease.BackendError not applied", err)
	}
}

func TestClientAuthAndOtherStatuses(t *testing.T) {
	e := newEnv(t, &envOptions{auth: authFile()})
	name := "jobs:" + uniq(t)
	var ae *httpapi.AuthError
	_, err := httpapi.NewClient(e.ts.URL, nil).Acquire(bg, name, nil)
	if !errors.As(err, &ae) || ae.Status != 401 || !errors.Is(err, httpapi.ErrUnauthorized) || errors.Is(err, httpapi.ErrForbidden) {
		t.Errorf("no token: got %v, want *AuthError 401 matching ErrUnauthorized", err)
	}
	_, err = httpapi.NewClient(e.ts.URL, &httpapi.ClientOptions{Token: readerToken}).Acquire(bg, name, nil)
	if !errors.As(err, &ae) || ae.Code != "forbidden" || !errors.Is(err, httpapi.ErrForbidden) {
		t.Errorf("read token: got %v, want *AuthError 403 matching ErrForbidden", err)
	}
	c := httpapi.NewClient(e.ts.URL, &httpapi.ClientOptions{Token: writerToken, HTTPClient: &http.Client{}})
	if _, err := c.Acquire(bg, name, nil); err != nil {
		t.Errorf("write token: %v", err)
	}
	_, err = c.Acquire(bg, name, &lease.AcquireOptions{Metadata: strings.Repeat("x", 70<<10)})
	var se *httpapi.StatusError
	if !errors.As(err, &se) || se.Status != 413 || se.Code != "payload_too_large" {
		t.Errorf("huge metadata: got %v, want *StatusError 413 payload_too_large", err)
	}
	// A server that is not Leasehold at all.
	other := httpapi.NewClient(e.ts.URL+"/nothing-here", nil)
	if _, err := other.Get(bg, name); !errors.As(err, &se) || se.Status != 404 {
		t.Errorf("wrong base URL: got %v, want *StatusError 404, not a lease not_found", err)
	}
}

// TestClientLimits: Limits answers the server's --max-ttl and --max-wait,
// and with auth on needs a token.
func TestClientLimits(t *testing.T) {
	e := newEnv(t, &envOptions{maxWait: 90 * time.Second})
	c := httpapi.NewClient(e.ts.URL, nil)
	defer c.Close()
	l, err := c.Limits(bg)
	if err != nil {
		t.Fatal(err)
	}
	if want := (httpapi.Limits{MinTTL: lease.MinTTL, MaxTTL: lease.DefaultMaxTTL, MaxWait: 90 * time.Second}); *l != want {
		t.Errorf("got Limits %+v, want %+v", *l, want)
	}
	a := newEnv(t, &envOptions{auth: authFile()})
	if _, err := httpapi.NewClient(a.ts.URL, nil).Limits(bg); !errors.Is(err, httpapi.ErrUnauthorized) {
		t.Errorf("Limits without a token: got %v, want ErrUnauthorized", err)
	}
	if _, err := httpapi.NewClient(a.ts.URL, &httpapi.ClientOptions{Token: readerToken}).Limits(bg); err != nil {
		t.Errorf("Limits with a read token: got %v, want the limits", err)
	}
}
