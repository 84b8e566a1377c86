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

// R3: the pub/sub connection of a waiting Client is slow (its hand-over
// message takes 2s); its commands are not. The lease is handed to its
// waiter (TTL 1s), expires unseen, and D takes it. The waiter's nap ends,
// its attempt answers "held" (by D) and queues it again at the tail. Then
// the hand-over message arrives: Acquire returns a lease that expired and
// that D holds, with Sent set to that last "held" attempt, after the
// hand-over's grant, so Sent+TTL overstates the lease's life. And the
// entry queued by the last attempt stays in the queue after Acquire
// returned: the next release hands the lease to it, a grant nobody holds.
func TestR3LateHandOver(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	slow, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	dial, _ := dialer(srv.Addr(), slow.Addr(), 1) // dial 1: the pub/sub connection
	rdbA := redis.NewClient(&redis.Options{Addr: "unused:1", Dialer: dial})
	defer rdbA.Close()
	A := lease.New(rdbA, nil)
	B := lease.New(newRdb(t, srv.Addr()), nil)
	D := lease.New(newRdb(t, srv.Addr()), nil)
	X := lease.New(newRdb(t, srv.Addr()), nil)
	raw := newRdb(t, srv.Addr())
	name := "r3"
	h, err := B.Acquire(ctx, name, &lease.AcquireOptions{TTL: 1500 * time.Millisecond, Holder: "B"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	resA := make(chan error, 1)
	var la *lease.Lease
	go func() {
		var err error
		la, err = A.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second, Holder: "A", Wait: 10 * time.Second})
		resA <- err
	}()
	waitFor(t, 3*time.Second, "A queued", func() bool { return waiting(B, name) == 1 })
	slow.SetDelay(2 * time.Second)
	time.Sleep(150 * time.Millisecond)
	hand := time.Now()
	if err := B.Release(ctx, name, h.Token); err != nil {
		t.Fatal(err)
	}
	t.Logf("B released at +%s: handed to A", ms(hand.Sub(t0)))
	var ld *lease.Lease
	for time.Since(hand) < 3*time.Second {
		if ld, err = D.Acquire(ctx, name, &lease.AcquireOptions{TTL: 20 * time.Second, Holder: "D"}); err == nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if ld == nil {
		t.Fatal("D never granted")
	}
	dAt := time.Now()
	t.Logf("D granted at +%s, fence %d", ms(dAt.Sub(t0)), ld.Fence)
	if err := <-resA; err != nil {
		t.Logf("held: A's Acquire: %v", err)
		return
	}
	ret := time.Now()
	grantedAt := la.ExpiresAt.Add(-la.TTL)
	t.Logf("A's Acquire returned at +%s: fence %d, ExpiresAt +%s, Sent +%s", ms(ret.Sub(t0)), la.Fence, ms(la.ExpiresAt.Sub(t0)), ms(la.Sent.Sub(t0)))
	if la.Fence < ld.Fence {
		t.Errorf("DEFECT: A's Acquire returned success with fence %d, after D was granted fence %d (D holds it now)", la.Fence, ld.Fence)
	}
	if la.Sent.After(grantedAt) {
		t.Errorf("DEFECT: handed lease's Sent (+%s) is %s after its grant by Redis (+%s): Sent+TTL overstates its life", ms(la.Sent.Sub(t0)), ms(la.Sent.Sub(grantedAt)), ms(grantedAt.Sub(t0)))
	}
	k := lease.Keep(ctx, A, la, nil)
	<-k.Done()
	t.Logf("A's keeper reported the loss at +%s (%s after D's grant): %v", ms(time.Since(t0)), ms(time.Since(dAt)), k.Err())
	q, _ := raw.LRange(ctx, "leasehold:{r3}:q", 0, -1).Result()
	t.Logf("queue after A's Acquire returned: %q", q)
	// X waits behind, D releases.
	resX := make(chan error, 1)
	go func() {
		_, err := X.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "X", Wait: 4 * time.Second})
		resX <- err
	}()
	waitFor(t, 3*time.Second, "X queued", func() bool { n, _ := raw.LLen(ctx, "leasehold:{r3}:q").Result(); return n == int64(len(q))+1 })
	if err := D.Release(ctx, name, ld.Token); err != nil {
		t.Fatal(err)
	}
	g, _ := D.Get(ctx, name)
	if g != nil {
		t.Logf("after D's release: holder %q ttl %s", g.Holder, g.TTL)
	}
	if err := <-resX; err != nil {
		t.Errorf("DEFECT: X not granted after D's release: %v", err)
	}
}
