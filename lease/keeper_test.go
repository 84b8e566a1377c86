package lease_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// waitDone waits up to d for a Keeper to end and fails the test otherwise.
func waitDone(t *testing.T, k *lease.Keeper, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-k.Done():
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("keeper still running after %v, want it done", d)
		return 0
	}
}

func TestKeeperKeepsALeasePastItsTTL(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, _ := newClient(t, nil)
	name := uniq(t)
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	k := lease.Keep(ctx, c, l, nil)
	defer k.Stop()
	select {
	case <-k.Done():
		t.Fatalf("keeper ended: %v", k.Err())
	case <-time.After(time.Second): // more than three TTLs
	}
	if _, err := c.Verify(ctx, name, lease.Proof{Token: l.Token}); err != nil {
		t.Errorf("Verify after 1s of a 300ms lease: %v, want still held", err)
	}
	if got := k.Lease(); got.Fence != l.Fence || !got.ExpiresAt.After(l.ExpiresAt) {
		t.Errorf("got lease fence %d expiring %v, want fence %d expiring after %v", got.Fence, got.ExpiresAt, l.Fence, l.ExpiresAt)
	}
	if err := k.Err(); err != nil {
		t.Errorf("Err = %v while running, want nil", err)
	}
}

func TestKeeperReportsLossAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steal func(rdb *redis.Client, c *lease.Client, name string)
		want  error
	}{
		{"deleted", func(rdb *redis.Client, _ *lease.Client, name string) {
			rdb.Del(ctx, "leasehold:{"+name+"}")
		}, lease.ErrNotFound},
		{"taken", func(rdb *redis.Client, c *lease.Client, name string) {
			rdb.Del(ctx, "leasehold:{"+name+"}")
			c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "thief"})
		}, lease.ErrNotHolder},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rdb := newClient(t, nil)
			name := uniq(t)
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			k := lease.Keep(ctx, c, l, &lease.KeeperOptions{Interval: 100 * time.Millisecond})
			defer k.Stop()
			tc.steal(rdb, c, name)
			waitDone(t, k, 2*time.Second) // far less than the 10s TTL
			err = k.Err()
			var lost *lease.LostError
			if !errors.As(err, &lost) || !errors.Is(err, tc.want) || !errors.Is(err, lease.ErrLost) {
				t.Fatalf("got %v, want a *LostError matching %v", err, tc.want)
			}
			if lost.Name != name || lost.Fence != l.Fence {
				t.Errorf("got lost %q fence %d, want %q fence %d", lost.Name, lost.Fence, name, l.Fence)
			}
			if cause := context.Cause(k.Context()); cause != err {
				t.Errorf("got context cause %v, want %v", cause, err)
			}
			if err := k.Release(ctx); err != nil {
				t.Errorf("Release after loss: %v, want nil", err)
			}
		})
	}
}

func TestKeeperRidesOutABriefOutageAndLosesALongOne(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := lease.New(redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1}), nil)
	name := uniq(t)
	const ttl = 1500 * time.Millisecond
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	k := lease.Keep(ctx, c, l, nil)
	defer k.Stop()

	// Redis hangs for longer than a renewal interval, less than the TTL.
	srv.Pause()
	time.Sleep(700 * time.Millisecond)
	srv.Resume()
	time.Sleep(ttl) // the keeper must have renewed since, or the lease is gone
	if err := k.Err(); err != nil {
		t.Fatalf("after a 700ms outage of a 1.5s lease: %v, want kept", err)
	}
	if _, err := lease.New(rdb, nil).Verify(ctx, name, lease.Proof{Token: l.Token}); err != nil {
		t.Fatalf("Verify after the outage: %v, want held", err)
	}

	// Redis goes away for good: the lease is lost when it expires, not before.
	start := time.Now()
	srv.Kill()
	waitDone(t, k, 2*ttl)
	took := time.Since(start)
	if took > ttl+300*time.Millisecond {
		t.Errorf("loss reported %v after Redis died, want within the TTL %v", took, ttl)
	}
	if took < ttl/3 {
		t.Errorf("loss reported %v after Redis died, want not before the lease could expire", took)
	}
	err = k.Err()
	if !errors.Is(err, lease.ErrLost) || !errors.Is(err, lease.ErrBackend) {
		t.Errorf("got %v, want ErrLost with the backend failure as reason", err)
	}
}

func TestKeeperStopAndRelease(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, _ := newClient(t, nil)
	name := uniq(t)
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	k := lease.Keep(ctx, c, l, nil)
	k.Stop()
	if err := k.Err(); err != lease.ErrStopped {
		t.Errorf("Err after Stop = %v, want ErrStopped", err)
	}
	if _, err := c.Get(ctx, name); err != nil {
		t.Errorf("Get after Stop: %v, want the lease still there", err)
	}
	k2 := lease.Keep(ctx, c, l, nil)
	if err := k2.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := c.Get(ctx, name); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after Release: %v, want not found", err)
	}

	// The parent context's end stops the keeper too, with its cause.
	l, _ = c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second})
	pctx, cancel := context.WithCancelCause(ctx)
	k3 := lease.Keep(pctx, c, l, nil)
	shutdown := errors.New("shutting down")
	cancel(shutdown)
	waitDone(t, k3, time.Second)
	if err := k3.Err(); err != shutdown {
		t.Errorf("Err after the parent ended = %v, want its cause", err)
	}
	k3.Release(ctx)
}

// fakeClock moves only when told to.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	f.waiters = append(f.waiters, fakeWaiter{f.now.Add(d), ch})
	return ch
}

// Advance moves the clock by d and fires the timers that are due.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			kept = append(kept, w)
		} else {
			w.ch <- f.now
		}
	}
	f.waiters = kept
}

func (f *fakeClock) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

func TestKeeperRenewsEveryThirdOfTheTTLByItsClock(t *testing.T) {
	c, rdb := newClient(t, nil)
	name := uniq(t)
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	k := lease.Keep(ctx, c, l, &lease.KeeperOptions{Clock: clock})
	defer k.Stop()
	key := "leasehold:{" + name + "}"
	shorten := func() { redistest.ExpireLeaseIn(ctx, rdb, key, 20*time.Second) }
	waitTimer := func() {
		deadline := time.Now().Add(2 * time.Second)
		for clock.pending() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the keeper set no timer")
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitTimer()
	shorten()
	clock.Advance(9 * time.Second) // before ttl/3: no renewal
	time.Sleep(50 * time.Millisecond)
	if pttl, _ := redistest.LeaseLeft(ctx, rdb, key); pttl > 20*time.Second {
		t.Fatalf("got PTTL %v 9s into a 30s lease, want no renewal yet (<= 20s)", pttl)
	}
	clock.Advance(time.Second + time.Millisecond) // ttl/3 has passed
	deadline := time.Now().Add(2 * time.Second)
	for {
		if pttl, _ := redistest.LeaseLeft(ctx, rdb, key); pttl > 25*time.Second {
			break // renewed to 30s
		}
		if time.Now().After(deadline) {
			t.Fatal("no renewal 10s into a 30s lease by the keeper's clock, want one")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
