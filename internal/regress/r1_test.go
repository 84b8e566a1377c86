package regress_test

import (
	"context"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// R1: a waiter with the caller's own token gives up while the path of its
// Client hangs, just after a release handed it the lease. The caller
// retries with the same token (the contract: "a client may safely retry
// after a timeout") and is granted idempotently, the same fence; it keeps
// the lease with a Keeper. When the path recovers, the gone waiter's
// background leave (or the orphan release) releases the caller's grant:
// another client is granted while the caller's Keeper still reports it held.
func TestR1LeaveReleasesTheIdempotentRetry(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	p, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	A := lease.New(newRdb(t, p.Addr()), nil) // the waiting process, behind the proxy
	B := lease.New(newRdb(t, srv.Addr()), nil)
	C := lease.New(newRdb(t, srv.Addr()), nil) // the caller's retry
	D := lease.New(newRdb(t, srv.Addr()), nil) // somebody else
	name := "r1"
	h, err := B.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "B"})
	if err != nil {
		t.Fatal(err)
	}
	const T = "caller-own-token-0123456789"
	ctxA, cancelA := context.WithCancel(ctx)
	resA := make(chan error, 1)
	go func() {
		_, err := A.Acquire(ctxA, name, &lease.AcquireOptions{TTL: 30 * time.Second, Token: T, Holder: "caller", Wait: time.Minute})
		resA <- err
	}()
	waitFor(t, 5*time.Second, "A queued", func() bool { return waiting(B, name) == 1 })
	p.Set(faultproxy.Hang)
	if err := B.Release(ctx, name, h.Token); err != nil {
		t.Fatal(err)
	}
	cancelA()
	t.Logf("A's wait ended: %v", <-resA)
	lc, err := C.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second, Token: T, Holder: "caller"})
	if err != nil {
		t.Fatalf("retry with the same token: %v", err)
	}
	t.Logf("retry with the same token granted: fence %d ttl %s", lc.Fence, lc.TTL)
	k := lease.Keep(ctx, C, lc, nil)
	defer k.Stop()
	time.Sleep(3 * time.Second)
	p.Set(faultproxy.Forward)
	start := time.Now()
	var ld *lease.Lease
	for time.Since(start) < 5*time.Second {
		if ld, err = D.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "D"}); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ld == nil {
		t.Logf("held: D was not granted within 5s (expected)")
		return
	}
	select {
	case <-k.Done():
		t.Errorf("D granted fence %d; the caller's keeper had reported the loss (%v)", ld.Fence, k.Err())
	default:
		t.Errorf("DEFECT: D granted fence %d %s after the path recovered, while the caller (token it retried with, fence %d) still holds per its Keeper (Err=%v)", ld.Fence, ms(time.Since(start)), lc.Fence, k.Err())
	}
	select {
	case <-k.Done():
		t.Logf("keeper reported the loss %s after D's grant: %v", ms(time.Since(start)), k.Err())
	case <-time.After(15 * time.Second):
		t.Logf("keeper did not report within 15s")
	}
	_ = redis.Nil
}
