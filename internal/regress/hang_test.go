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

// H1: R2 with a path that holds the bytes (Hang) rather than delaying
// them. The fix waits for the go-redis call of the abandoned attempt to
// end; with a hung path the call ends (read timeout) while its request is
// still on the way. The leave then runs first and the stale attempt
// re-queues the gone waiter once the path delivers.
func TestH1HungAttemptLandsAfterLeave(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	p, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dial, _ := dialer(srv.Addr(), p.Addr(), 1)
	rdbA := redis.NewClient(&redis.Options{Addr: "unused:1", Dialer: dial})
	defer rdbA.Close()
	if err := rdbA.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		monitor(t, srv.Addr())
	}
	A := lease.New(rdbA, nil)
	B := lease.New(newRdb(t, srv.Addr()), nil)
	X := lease.New(newRdb(t, srv.Addr()), nil)
	raw := newRdb(t, srv.Addr())
	name := "h1"
	qkey := "leasehold:{h1}:q"
	h, err := B.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "B"})
	if err != nil {
		t.Fatal(err)
	}
	ctxA, cancelA := context.WithCancel(ctx)
	resA := make(chan error, 1)
	go func() {
		_, err := A.Acquire(ctxA, name, &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "gone-waiter", Wait: 20 * time.Second})
		resA <- err
	}()
	waitFor(t, 3*time.Second, "A queued", func() bool { n, _ := raw.LLen(ctx, qkey).Result(); return n == 1 })
	t.Logf("A queued at %s; hanging A's pooled connection", time.Now().Format("05.000"))
	p.Set(faultproxy.Hang)
	// A re-attempts at most 4s after its first attempt: that attempt goes into the hang.
	time.Sleep(4500 * time.Millisecond)
	cancelA()
	err = <-resA
	t.Logf("A returned at %s: %v", time.Now().Format("05.000"), err)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want canceled, got %v", err)
	}
	waitFor(t, 20*time.Second, "A's leave ran (queue empty)", func() bool { n, _ := raw.LLen(ctx, qkey).Result(); return n == 0 })
	t.Logf("queue empty at %s (A's leave ran); the path delivers again", time.Now().Format("05.000"))
	p.Set(faultproxy.Forward)
	time.Sleep(300 * time.Millisecond)
	q, _ := raw.LRange(ctx, qkey, 0, -1).Result()
	t.Logf("queue after the path delivered: %q", q)
	resX := make(chan error, 1)
	go func() {
		_, err := X.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "X", Wait: 8 * time.Second})
		resX <- err
	}()
	waitFor(t, 3*time.Second, "X queued", func() bool { n, _ := raw.LLen(ctx, qkey).Result(); return n == int64(len(q))+1 })
	rel := time.Now()
	if err := B.Release(ctx, name, h.Token); err != nil {
		t.Fatal(err)
	}
	g, gerr := B.Get(ctx, name)
	if g != nil {
		t.Logf("after B's release: holder=%q fence=%d ttl=%s waiting=%d err=%v", g.Holder, g.Fence, g.TTL, g.Waiting, gerr)
	}
	if len(q) > 0 {
		t.Errorf("DEFECT: the gone waiter's entry is back in the queue after its leave: %q", q)
	}
	if g != nil && g.Holder == "gone-waiter" {
		t.Errorf("DEFECT: lease handed to a waiter that had given up (holder %q, ttl %s): a grant nobody holds", g.Holder, g.TTL)
	}
	select {
	case err := <-resX:
		if err != nil {
			t.Errorf("DEFECT: X not granted: %v after %s", err, ms(time.Since(rel)))
		} else {
			t.Logf("X granted %s after the release", ms(time.Since(rel)))
		}
	case <-time.After(10 * time.Second):
		t.Errorf("DEFECT: X not granted within 10s")
	}
}
