package regress_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// R2: a waiter's first attempt goes out on a slow connection (400ms each
// way); the caller gives up (ctx cancelled) while it is on its way. The
// leave goes out on another, fast connection and reaches Redis first; the
// abandoned attempt then queues the entry of a waiter that is gone. The
// next release hands the lease to that entry (its Client is still
// subscribed: the 5s linger, or any other waiter of it on the name): a
// grant nobody holds, and the live waiter behind it is not served.
func TestR2AbandonedAttemptLandsAfterLeave(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	slow, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.SetDelay(400 * time.Millisecond)
	debugDial = func(k int, target string) { t.Logf("dial %d -> %s at %s", k, target, time.Now().Format("05.000")) }
	defer func() { debugDial = nil }()
	dial, dials := dialer(srv.Addr(), slow.Addr(), 1) // dial 1: a pooled connection on the slow path
	rdbA := redis.NewClient(&redis.Options{Addr: "unused:1", Dialer: dial})
	defer rdbA.Close()
	if err := rdbA.Ping(ctx).Err(); err != nil { // the pool's one idle connection: on the slow path
		t.Fatal(err)
	}
	A := lease.New(rdbA, nil)
	B := lease.New(newRdb(t, srv.Addr()), nil)
	X := lease.New(newRdb(t, srv.Addr()), nil)
	raw := newRdb(t, srv.Addr())
	name := "r2"
	h, err := B.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second, Holder: "B"})
	if err != nil {
		t.Fatal(err)
	}
	ctxA, cancelA := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelA()
	_, err = A.Acquire(ctxA, name, &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "gone-waiter", Wait: 10 * time.Second})
	t.Logf("A's Acquire returned: %v (dials so far %d)", err, dials.Load())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	time.Sleep(2500 * time.Millisecond) // the abandoned attempt lands, its reply comes back, the undo runs
	q, _ := raw.LRange(ctx, "leasehold:{r2}:q", 0, -1).Result()
	t.Logf("queue after A gave up: %d entries %q", len(q), q)
	// A live waiter behind it.
	resX := make(chan error, 1)
	var lx *lease.Lease
	go func() {
		var err error
		lx, err = X.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "X", Wait: 8 * time.Second})
		resX <- err
	}()
	waitFor(t, 3*time.Second, "X queued", func() bool { n, _ := raw.LLen(ctx, "leasehold:{r2}:q").Result(); return n == int64(len(q))+1 })
	rel := time.Now()
	if err := B.Release(ctx, name, h.Token); err != nil {
		t.Fatal(err)
	}
	g, err := B.Get(ctx, name)
	t.Logf("after B's release: Get = %+v err=%v", g, err)
	select {
	case err := <-resX:
		if err == nil {
			t.Logf("held: X granted %s after the release (fence %d)", ms(time.Since(rel)), lx.Fence)
			return
		}
		t.Errorf("DEFECT: X not granted: %v after %s", err, ms(time.Since(rel)))
	case <-time.After(10 * time.Second):
		t.Errorf("DEFECT: X not granted within 10s")
	}
	if g != nil && g.Holder == "gone-waiter" {
		t.Errorf("DEFECT: the lease was handed to a waiter that had given up (holder %q, ttl %s): a grant nobody holds", g.Holder, g.TTL)
	}
}
