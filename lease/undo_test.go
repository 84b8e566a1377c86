package lease_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// TestUnknownOutcomeIsUndone is the promise "no grant without a holder": an
// Acquire whose outcome is unknown (its context ended while Redis, behind a
// slow path, granted it) and whose token only the Client knew leaves no
// grant behind: it is released in the background as soon as Redis answers,
// long before its TTL. An Acquire with the caller's own token is left for
// the caller, who can retry with it.
func TestUnknownOutcomeIsUndone(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ownToken bool
		end      string
		wait     time.Duration
	}{
		{"deadline", false, "deadline", 0},
		{"cancel", false, "cancel", 0},
		{"the caller token is left to the caller", true, "deadline", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, p, _ := hungClient(t, redis.Options{}, &lease.Options{NoAutoPipeline: true})
			checkUndone(t, c, p, tc.ownToken, tc.end, tc.wait)
		})
	}
}

// TestUnknownOutcomeOfAPipelinedCallIsUndone: the same through the
// autopipeliner (on by default; here for a lone call too): the undo waits
// for the pipelined script to have run, so it cannot overtake it.
func TestUnknownOutcomeOfAPipelinedCallIsUndone(t *testing.T) {
	defer lease.PipelineLoneCalls()()
	for _, end := range []string{"deadline", "cancel"} {
		t.Run(end, func(t *testing.T) {
			c, p, _ := hungClient(t, redis.Options{}, nil)
			checkUndone(t, c, p, false, end, 0)
		})
	}
}

// checkUndone runs an Acquire through c whose context ends (end: by its
// deadline or a cancel) 100ms in, while the path p delays each way by
// 400ms, and checks what Settle leaves: no grant, or the grant of the
// caller's own token.
func checkUndone(t *testing.T, c *lease.Client, p *faultproxy.Proxy, ownToken bool, end string, wait time.Duration) {
	t.Helper()
	_, rdb := newClient(t, nil)
	name := uniq(t)
	if err := c.LoadScripts(ctx); err != nil { // and a connection in the pool
		t.Fatal(err)
	}
	p.SetDelay(400 * time.Millisecond) // each way: Redis grants at +400ms, answers at +800ms
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	if end == "cancel" {
		cctx, cancel = context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
	}
	defer cancel()
	o := &lease.AcquireOptions{TTL: time.Minute, Wait: wait}
	if ownToken {
		o.Token = lease.NewToken()
	}
	_, err := c.Acquire(cctx, name, o)
	if err == nil || !lease.Unknown(err) {
		t.Fatalf("Acquire = %v, want an error of unknown outcome", err)
	}
	key := "leasehold:{" + name + "}"
	eventually(t, 3*time.Second, "the late grant to reach Redis", func() bool {
		n, _ := live(rdb, key)
		return n == 1
	})
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := c.Settle(sctx); err != nil {
		t.Fatalf("Settle = %v, want nil", err)
	}
	n, err := live(rdb, key)
	switch {
	case err != nil:
		t.Fatal(err)
	case ownToken && n != 1:
		t.Errorf("the grant of the caller's own token was released behind its back")
	case !ownToken && n != 0:
		pttl, _ := redistest.LeaseLeft(ctx, rdb, key)
		t.Errorf("after Settle the grant nobody holds the token of is still there, for another %v", pttl)
	}
}

// TestSettleEndsWithItsContext: Settle returns when its context ends,
// while an undo still waits for Redis.
func TestSettleEndsWithItsContext(t *testing.T) {
	c, p, _ := hungClient(t, redis.Options{ReadTimeout: -1}, nil)
	name := uniq(t)
	if err := c.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	p.SetDelay(time.Hour) // nothing comes back
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Acquire(cctx, name, &lease.AcquireOptions{TTL: time.Minute}); !lease.Unknown(err) {
		t.Fatalf("Acquire = %v, want an unknown outcome", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	start := time.Now()
	if err := c.Settle(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Settle = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Settle returned after %v, want at its 200ms deadline", d)
	}
}

// TestUnknownOutcomeOfAWaitIsUndone: a waiting Acquire whose context ends
// during the attempt that a release woke (slow path: the attempt reaches
// Redis and is granted after the caller gave up) leaves no grant behind.
func TestUnknownOutcomeOfAWaitIsUndone(t *testing.T) {
	c, p, holder := hungClient(t, redis.Options{}, nil)
	_, rdb := newClient(t, nil)
	name := uniq(t)
	key := "leasehold:{" + name + "}"
	l, err := holder.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	attempts := countAttempts(t, name, nil)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		_, err := c.Acquire(cctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: time.Minute})
		got <- err
	}()
	eventually(t, 3*time.Second, "the waiter's first attempt", func() bool { return attempts() >= 1 })
	p.SetDelay(300 * time.Millisecond) // the wake-up and the attempt each take 300ms a way
	if err := holder.Release(ctx, name, l.Token); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the waiter's attempt to be granted in Redis", func() bool {
		n, _ := live(rdb, key)
		return n == 1
	})
	cancel() // the answer is still on its way
	if err := <-got; !lease.Unknown(err) {
		t.Fatalf("Acquire = %v, want an unknown outcome", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := c.Settle(sctx); err != nil {
		t.Fatalf("Settle = %v, want nil", err)
	}
	if n, _ := live(rdb, key); n != 0 {
		pttl, _ := redistest.LeaseLeft(ctx, rdb, key)
		t.Errorf("after Settle the grant nobody holds the token of is still there, for another %v", pttl)
	}
}

// TestUnknownOutcomesUnderLoadAreUndoneOnASlowPath: many Acquires at once
// (so that they go through the autopipeliner, which takes calls from 16 in
// flight, unless it is off), each ending 100ms in while the path delays
// each way by 400ms, and stays that slow: Redis answers, late, so Settle
// must see every grant they made undone, with each of the go-redis options
// the SDK must be safe with. (With ContextTimeoutEnabled each undo's
// release timed out at 2s and closed its connection, and a new one takes
// a handshake and the call, over 2s on this path: the undos retried until
// the grants' TTL, and Settle never returned.)
func TestUnknownOutcomesUnderLoadAreUndoneOnASlowPath(t *testing.T) {
	const n = 40
	opts := append(goRedisOptions[:len(goRedisOptions):len(goRedisOptions)], struct {
		name string
		ro   redis.Options
		lo   *lease.Options
	}{"context timeouts on and auto-pipelining off", redis.Options{ContextTimeoutEnabled: true}, &lease.Options{NoAutoPipeline: true}})
	for _, o := range opts {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			c, p, _ := hungClient(t, o.ro, o.lo)
			_, rdb := newClient(t, nil)
			if err := c.LoadScripts(ctx); err != nil {
				t.Fatal(err)
			}
			p.SetDelay(400 * time.Millisecond)
			base := uniq(t)
			errs := make(chan error, n)
			for i := range n {
				go func() {
					cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
					defer cancel()
					_, err := c.Acquire(cctx, fmt.Sprintf("%s.%d", base, i), &lease.AcquireOptions{TTL: time.Minute})
					errs <- err
				}()
			}
			for range n {
				if err := <-errs; !lease.Unknown(err) {
					t.Fatalf("Acquire = %v, want an error of unknown outcome", err)
				}
			}
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			defer scancel()
			start := time.Now()
			if err := c.Settle(sctx); err != nil {
				t.Fatalf("Settle = %v after %v, want nil", err, time.Since(start))
			}
			held := 0
			for i := range n {
				if ok, _ := live(rdb, fmt.Sprintf("leasehold:{%s.%d}", base, i)); ok == 1 {
					held++
				}
			}
			if held != 0 {
				t.Errorf("after Settle %d of %d grants nobody holds the token of are still there", held, n)
			}
		})
	}
}
