package lease_test

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// redlock starts three real, independent redis-servers and a Redlock over
// them that counts them from the start (no restart delay).
func redlock(t *testing.T) (*lease.Redlock, []*redistest.Server, []*redis.Client) {
	t.Helper()
	return newRedlock(t, redlockTestOptions(nil))
}

// newRedlock starts three real, independent redis-servers and a Redlock
// with opts over them, its scripts loaded.
func newRedlock(t *testing.T, opts *lease.Options) (*lease.Redlock, []*redistest.Server, []*redis.Client) {
	t.Helper()
	var (
		srvs []*redistest.Server
		rdbs []*redis.Client
		ucs  []redis.UniversalClient
	)
	for i := 0; i < 3; i++ {
		s := redistest.Start(t)
		rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
			ReadTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { rdb.Close() })
		srvs, rdbs, ucs = append(srvs, s), append(rdbs, rdb), append(ucs, rdb)
	}
	r, err := lease.NewRedlock(ucs, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	return r, srvs, rdbs
}

func TestRedlockLifecycle(t *testing.T) {
	r, _, rdbs := redlock(t)
	l, err := r.Acquire(ctx, "job", &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "a", Metadata: "m"})
	if err != nil {
		t.Fatal(err)
	}
	for i, rdb := range rdbs {
		if f, _ := rdb.HGet(ctx, "leasehold:{job}", "f").Result(); f != strconv.FormatInt(l.Fence, 10) {
			t.Errorf("master %d: got fence %q, want %d", i, f, l.Fence)
		}
	}
	if d := time.Until(l.ExpiresAt); d > 5*time.Second-50*time.Millisecond || d < 4*time.Second {
		t.Errorf("got expiry in %v, want 5s less the drift allowance", d)
	}
	_, err = r.Acquire(ctx, "job", &lease.AcquireOptions{Holder: "b"})
	var held *lease.HeldError
	if !errors.As(err, &held) || held.Holder != "a" || held.Fence != l.Fence || held.TTL <= 4*time.Second {
		t.Fatalf("got %v, want *HeldError naming a, fence %d, ~5s", err, l.Fence)
	}
	g, err := r.Get(ctx, "job")
	if err != nil || g.Fence != l.Fence || g.Holder != "a" || g.Metadata != "m" || g.Token != "" {
		t.Errorf("Get: got %+v (%v)", g, err)
	}
	if _, err := r.Verify(ctx, "job", lease.Proof{Token: l.Token}); err != nil {
		t.Errorf("Verify token: %v", err)
	}
	if _, err := r.Verify(ctx, "job", lease.Proof{Fence: l.Fence - 1}); !errors.Is(err, lease.ErrNotHolder) {
		t.Errorf("Verify old fence: got %v, want ErrNotHolder", err)
	}
	for _, bad := range []lease.Proof{{}, {Fence: l.Fence, Token: l.Token}, {Token: "short"}} {
		if _, err := r.Verify(ctx, "job", bad); !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("Verify(%+v): got %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := r.Renew(ctx, "job", l.Token, 9*time.Second); err != nil {
		t.Errorf("Renew: %v", err)
	}
	if _, err := r.Renew(ctx, "job", "someone-elses-token-xyz", 0); !errors.Is(err, lease.ErrNotHolder) {
		t.Errorf("Renew by another token: got %v, want ErrNotHolder", err)
	}
	p, err := r.List(ctx, &lease.ListOptions{Prefix: "jo"})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for cur := p; ; {
		for _, x := range cur.Leases {
			names[x.Name] = true
		}
		if cur.NextCursor == "" {
			break
		}
		if cur, err = r.List(ctx, &lease.ListOptions{Prefix: "jo", Cursor: cur.NextCursor}); err != nil {
			t.Fatal(err)
		}
	}
	if len(names) != 1 || !names["job"] {
		t.Errorf("List: got %v, want job", names)
	}
	if err := r.Release(ctx, "job", l.Token); err != nil {
		t.Fatal(err)
	}
	for i, rdb := range rdbs {
		if n, _ := live(rdb, "leasehold:{job}"); n != 0 {
			t.Errorf("master %d still has the lease after release", i)
		}
	}
	if err := r.Release(ctx, "job", l.Token); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("second Release: got %v, want ErrNotFound", err)
	}
}

func TestRedlockSurvivesMinorityLoss(t *testing.T) {
	r, srvs, _ := redlock(t)
	srvs[2].Kill()
	if err := r.Ping(ctx); err != nil {
		t.Errorf("Ping with 2 of 3 masters: %v", err)
	}
	l, err := r.Acquire(ctx, "job", &lease.AcquireOptions{TTL: 5 * time.Second})
	if err != nil {
		t.Fatalf("Acquire with 2 of 3 masters: %v", err)
	}
	if _, err := r.Acquire(ctx, "job", nil); !errors.Is(err, lease.ErrHeld) {
		t.Errorf("got %v, want ErrHeld", err)
	}
	if _, err := r.Renew(ctx, "job", l.Token, 0); err != nil {
		t.Errorf("Renew with 2 of 3: %v", err)
	}
	if _, err := r.Get(ctx, "job"); err != nil {
		t.Errorf("Get with 2 of 3: %v", err)
	}

	srvs[1].Kill()
	if _, err := r.Acquire(ctx, "other", nil); !errors.Is(err, lease.ErrBackend) {
		t.Errorf("Acquire with 1 of 3: got %v, want ErrBackend", err)
	}
	if _, err := r.Renew(ctx, "job", l.Token, 0); err == nil {
		t.Errorf("Renew with 1 of 3 succeeded; want the lease lost")
	}
	if err := r.Ping(ctx); !errors.Is(err, lease.ErrBackend) {
		t.Errorf("Ping with 1 of 3: got %v, want ErrBackend", err)
	}
}

func TestRedlockUndoesPartialGrants(t *testing.T) {
	r, _, rdbs := redlock(t)
	// Two masters already have another holder; the third is free.
	for _, rdb := range rdbs[:2] {
		c := lease.New(rdb, nil)
		if _, err := c.Acquire(ctx, "job", &lease.AcquireOptions{TTL: time.Minute, Holder: "other", Token: "other-token-0123456789"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.Acquire(ctx, "job", &lease.AcquireOptions{Holder: "me"})
	var held *lease.HeldError
	if !errors.As(err, &held) || held.Holder != "other" {
		t.Fatalf("got %v, want *HeldError naming other", err)
	}
	if n, _ := live(rdbs[2], "leasehold:{job}"); n != 0 {
		t.Errorf("the minority grant on master 2 was not undone")
	}
}

func TestRedlockFencesAgreeAndIncrease(t *testing.T) {
	r, _, rdbs := redlock(t)
	// One master's counter is far ahead: the quorum must adopt its fence.
	ahead := time.Now().Add(time.Hour).UnixMicro()
	rdbs[1].HSet(ctx, "leasehold:{job}", "f", ahead)
	l, err := r.Acquire(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence != ahead+1 {
		t.Fatalf("got fence %d, want the largest master's %d", l.Fence, ahead+1)
	}
	for i, rdb := range rdbs {
		if f, _ := rdb.HGet(ctx, "leasehold:{job}", "f").Result(); f != strconv.FormatInt(ahead+1, 10) {
			t.Errorf("master %d: fence %q, want raised to %d", i, f, ahead+1)
		}
	}
	if err := r.Release(ctx, "job", l.Token); err != nil {
		t.Fatal(err)
	}
	// Lose the master that was ahead: the others still know the raised fence.
	rdbs[1].FlushAll(ctx)
	next, err := r.Acquire(ctx, "job", nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.Fence <= l.Fence {
		t.Errorf("got fence %d after losing a master's data, want more than %d", next.Fence, l.Fence)
	}
}

func TestRedlockRaceOneWinner(t *testing.T) {
	r, _, _ := redlock(t)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners int
		others  []error
	)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Acquire(ctx, "race", &lease.AcquireOptions{TTL: 10 * time.Second, Holder: fmt.Sprint(i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners++
			case !errors.Is(err, lease.ErrHeld):
				others = append(others, err)
			}
		}()
	}
	wg.Wait()
	if winners > 1 || len(others) != 0 {
		t.Fatalf("got %d winners and errors %v; want at most one winner and only ErrHeld", winners, others)
	}
}
