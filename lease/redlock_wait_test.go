package lease_test

import (
	"errors"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// evalshas sums EVALSHA and EVAL calls over the masters.
func evalshas(t *testing.T, rdbs []*redis.Client) int64 {
	t.Helper()
	var n int64
	for _, rdb := range rdbs {
		stats, err := commandStats(ctx, rdb)
		if err != nil {
			t.Fatal(err)
		}
		n += stats["evalsha"] + stats["eval"]
	}
	return n
}

// queued is how many masters have the waiter in name's queue.
func queued(rdbs []*redis.Client, name string) int {
	n := 0
	for _, rdb := range rdbs {
		if l, _ := rdb.LLen(ctx, "leasehold:{"+name+"}:q").Result(); l > 0 {
			n++
		}
	}
	return n
}

// A Redlock waiter is woken by the release, not by polling: while it waits
// it sends nothing, and the release on the masters tells it at once.
func TestRedlockWaitIsWokenByRelease(t *testing.T) {
	r, _, rdbs := redlock(t)
	holder, err := r.Acquire(ctx, "job", &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan result, 1)
	go func() {
		l, err := r.Acquire(ctx, "job", &lease.AcquireOptions{TTL: time.Minute, Wait: 20 * time.Second})
		got <- result{l, err}
	}()
	eventually(t, 5*time.Second, "the waiter did not queue on every master", func() bool { return queued(rdbs, "job") == 3 })
	// Its round may still have a call in flight when the last master
	// queued it (on a loaded machine one landed inside the window: "ran 1
	// scripts in 500ms"): count from when 100ms pass without a call.
	last := evalshas(t, rdbs)
	eventually(t, 5*time.Second, "the waiter's first round never ended", func() bool {
		time.Sleep(100 * time.Millisecond)
		n := evalshas(t, rdbs)
		settled := n == last
		last = n
		return settled
	})
	before := evalshas(t, rdbs)
	time.Sleep(500 * time.Millisecond)
	if n := evalshas(t, rdbs) - before; n != 0 {
		t.Errorf("the waiter ran %d scripts in 500ms of waiting, want 0 (no polling)", n)
	}
	released := time.Now()
	if err := r.Release(ctx, "job", holder.Token); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-got:
		if res.err != nil {
			t.Fatalf("waiting Acquire: %v", res.err)
		}
		if d := time.Since(released); d > time.Second {
			t.Errorf("granted %v after the release, want at once (the holder's TTL was 1m)", d)
		}
		if res.l.Fence <= holder.Fence {
			t.Errorf("got fence %d, want more than the released %d", res.l.Fence, holder.Fence)
		}
		if n := queued(rdbs, "job"); n != 0 {
			t.Errorf("the granted waiter is still queued on %d masters", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not granted within 10s of the release")
	}
}

// With no release, a Redlock waiter takes the lease when the holder's TTL
// runs out; a waiter whose wait ends leaves every master's queue.
func TestRedlockWaitTakesOverAtExpiryAndLeavesWhenItGivesUp(t *testing.T) {
	r, _, rdbs := redlock(t)
	holder, err := r.Acquire(ctx, "job", &lease.AcquireOptions{TTL: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	before := evalshas(t, rdbs)
	start := time.Now()
	l, err := r.Acquire(ctx, "job", &lease.AcquireOptions{TTL: time.Minute, Wait: 10 * time.Second})
	if err != nil {
		t.Fatalf("got %v, want a grant when the holder's lease expires", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("granted after %v, want soon after the holder's 600ms TTL", d)
	}
	if l.Fence <= holder.Fence {
		t.Errorf("got fence %d, want more than %d", l.Fence, holder.Fence)
	}
	// Rounds of 3 scripts: the first, one at the expiry (more when a round
	// found a master still held for a millisecond, and the undo of its
	// minority grant told the waiter again), and the raise of the grant.
	// Polling every 50ms would take at least 12 rounds, 36 scripts.
	if n := evalshas(t, rdbs) - before; n > 24 {
		t.Errorf("got %d scripts for one wait of about 600ms, want a few rounds (no polling every 50ms)", n)
	}

	_, err = r.Acquire(ctx, "job", &lease.AcquireOptions{TTL: time.Minute, Wait: 300 * time.Millisecond})
	var held *lease.HeldError
	if !errors.As(err, &held) {
		t.Fatalf("got %v, want *HeldError after the wait", err)
	}
	if n := queued(rdbs, "job"); n != 0 {
		t.Errorf("the waiter that gave up is still queued on %d masters", n)
	}
}
