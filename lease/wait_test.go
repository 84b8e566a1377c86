package lease_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/embedded"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// countAttempts counts the attempts of waiting Acquires on name, and
// returns the count and a function that reads it.
func countAttempts(t *testing.T, name string, also func(err error)) func() int64 {
	var n atomic.Int64
	restore := lease.SetAttemptHook(func(got string, err error) {
		if got != name {
			return
		}
		n.Add(1)
		if also != nil {
			also(err)
		}
	})
	t.Cleanup(restore)
	return n.Load
}

func numsub(t *testing.T, rdb *redis.Client, channel string) int64 {
	t.Helper()
	m, err := rdb.PubSubNumSub(ctx, channel).Result()
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB: %v", err)
	}
	return m[channel]
}

type result struct {
	l   *lease.Lease
	err error
}

func acquireAsync(c *lease.Client, ctx context.Context, name string, o *lease.AcquireOptions) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := c.Acquire(ctx, name, o)
		ch <- result{l, err}
	}()
	return ch
}

// wokenByRelease is the heart of every "a release wakes the waiter" test: a
// lease held for a minute, one waiter that makes its first attempt, then
// whileWaiting (to inspect the subscription), then the release through
// another Client (another process: the release is announced, not handed
// over). The waiter must be granted a higher fence at once, after exactly
// two attempts: not by the holder's expiry, not by polling.
func wokenByRelease(t *testing.T, c, other *lease.Client, whileWaiting func(name string)) {
	t.Helper()
	name := uniq(t)
	holder, err := other.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	attempts := countAttempts(t, name, nil)
	got := acquireAsync(c, ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 20 * time.Second})
	eventually(t, 5*time.Second, "the waiter made no first attempt", func() bool { return attempts() == 1 })
	whileWaiting(name)
	if err := other.Release(ctx, name, holder.Token); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("waiting Acquire: %v", r.err)
		}
		if r.l.Fence <= holder.Fence {
			t.Errorf("got fence %d, want more than the released %d", r.l.Fence, holder.Fence)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not granted within 10s of the release (the holder's TTL was 1m)")
	}
	if n := attempts(); n != 1 {
		t.Errorf("got %d attempts, want 1: the first; the release handed the lease over", n)
	}
}

func TestWaitIsWokenByRelease(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, rdb := newClient(t, nil)
	other, _ := newClient(t, nil)
	var channel string
	wokenByRelease(t, c, other, func(name string) {
		channel = c.Channel(name)
		if n := numsub(t, rdb, channel); n != 1 {
			t.Fatalf("got %d subscribers of the release channel while waiting, want 1", n)
		}
	})
	eventually(t, 5*time.Second, "the release channel still has subscribers", func() bool {
		return numsub(t, rdb, channel) == 0
	})
}

// releasers gives the two ways a release reaches a waiter of c: through c
// itself (handed over) and through another Client (announced).
func releasers(t *testing.T, c *lease.Client) map[string]*lease.Client {
	other, _ := newClient(t, nil)
	return map[string]*lease.Client{"handed over": c, "announced": other}
}

// A release that lands right after the waiter's first (failed) attempt,
// before it goes to sleep, must still reach it.
func TestWaitMissesNoReleaseAfterTheFirstAttempt(t *testing.T) {
	c, _ := newClient(t, nil)
	for how, rel := range releasers(t, c) {
		t.Run(how, func(t *testing.T) {
			name := uniq(t)
			holder, err := rel.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			countAttempts(t, name, func(err error) {
				once.Do(func() {
					if !errors.Is(err, lease.ErrHeld) {
						t.Errorf("first attempt: got %v, want held", err)
					}
					if err := rel.Release(ctx, name, holder.Token); err != nil {
						t.Errorf("release: %v", err)
					}
				})
			})
			start := time.Now()
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 10 * time.Second})
			if err != nil {
				t.Fatalf("got %v after %s, want a grant (the release came right after the first attempt)", err, time.Since(start))
			}
			if l.Fence <= holder.Fence {
				t.Errorf("got fence %d, want more than %d", l.Fence, holder.Fence)
			}
		})
	}
}

// Many releases racing with waiters that are just starting: none may sleep
// through one (each holder's TTL is a minute, each wait 10s).
func TestWaitMissesNoReleaseRacing(t *testing.T) {
	c, _ := newClient(t, nil)
	for how, rel := range releasers(t, c) {
		t.Run(how, func(t *testing.T) {
			base := uniq(t)
			for i := range 100 {
				name := fmt.Sprintf("%s.%d", base, i)
				holder, err := rel.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				got := acquireAsync(c, ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 10 * time.Second})
				if i%4 != 0 {
					time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
				}
				if err := rel.Release(ctx, name, holder.Token); err != nil {
					t.Fatal(err)
				}
				if r := <-got; r.err != nil {
					t.Fatalf("iteration %d: got %v, want a grant", i, r.err)
				}
			}
		})
	}
}

// A release through the waiter's own Client hands the lease straight over:
// granted with a new fence in the release's own script call, without an
// attempt of the waiter's after its first, and without an announcement.
func TestReleaseHandsOverToTheNextWaiter(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, rdb := newClient(t, nil)
	name := uniq(t)
	holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	attempts := countAttempts(t, name, nil)
	got := acquireAsync(c, ctx, name, &lease.AcquireOptions{TTL: 40 * time.Second, Holder: "next", Metadata: "m", Wait: 20 * time.Second})
	eventually(t, 5*time.Second, "the waiter made no first attempt", func() bool { return attempts() == 1 })
	sub := rdb.PSubscribe(ctx, "leasehold:{"+name+"}*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	before := evalshaCalls(t, rdb)
	if err := c.Release(ctx, name, holder.Token); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter was not granted within 10s of the release")
	}
	if r.err != nil {
		t.Fatalf("waiting Acquire: %v", r.err)
	}
	if r.l.Fence <= holder.Fence || r.l.Holder != "next" || r.l.Metadata != "m" || r.l.TTL != 40*time.Second {
		t.Errorf("got %+v, want a new fence above %d, holder next, metadata m, TTL 40s", r.l, holder.Fence)
	}
	if n := attempts(); n != 1 {
		t.Errorf("got %d attempts, want only the first: the release handed the lease over", n)
	}
	if n := evalshaCalls(t, rdb) - before; n != 1 {
		t.Errorf("got %d EVALSHA calls from release to grant, want 1", n)
	}
	now, err := c.Verify(ctx, name, lease.Proof{Token: r.l.Token})
	if err != nil || now.Fence != r.l.Fence {
		t.Errorf("Verify of the handed-over grant: got %+v, %v; want fence %d", now, err, r.l.Fence)
	}
	if left, _ := redistest.LeaseLeft(ctx, rdb, "leasehold:{"+name+"}"); left <= 39*time.Second || left > 40*time.Second {
		t.Errorf("got %v left, want the waiter's 40s", left)
	}
	// The hand-over was told once, on the waiter's Client's channel only.
	rdb.Publish(ctx, "leasehold:{"+name+"}:marker", "marker")
	if msg, err := sub.ReceiveMessage(ctx); err != nil || msg.Channel != c.Channel(name) || !strings.HasSuffix(msg.Payload, " "+strconv.FormatInt(r.l.Fence, 10)+" "+strconv.FormatInt(r.l.ExpiresAt.UnixMilli()-40000, 10)) {
		t.Errorf("got %v (%v) first, want the hand-over told on %s with the waiter's id, fence and grant time", msg, err, c.Channel(name))
	}
	if msg, err := sub.ReceiveMessage(ctx); err != nil || msg.Payload != "marker" {
		t.Errorf("got %v (%v) second, want the marker: one message per hand-over", msg, err)
	}
	if err := c.Release(ctx, name, r.l.Token); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the client still has a pub/sub connection", func() bool { return c.Conns() == 0 })
}

// A Client whose callers take turns on a lease without pause must not keep
// it from another Client's waiter: that waiter marks the lease, so the next
// release is announced rather than handed over, and it gets its chance.
func TestHandOverLetsAnotherClientsWaiterIn(t *testing.T) {
	c1, _ := newClient(t, nil)
	c2, _ := newClient(t, nil)
	name := uniq(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var turns atomic.Int64
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				l, err := c1.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 20 * time.Second})
				if err != nil {
					t.Errorf("c1 caller %d: %v", i, err)
					return
				}
				turns.Add(1)
				time.Sleep(time.Millisecond)
				if err := c1.Release(ctx, name, l.Token); err != nil {
					t.Errorf("c1 caller %d release: %v", i, err)
					return
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	eventually(t, 5*time.Second, "c1's callers took no turns", func() bool { return turns.Load() > 20 })
	start := time.Now()
	l, err := c2.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 20 * time.Second})
	if err != nil {
		t.Fatalf("c2's waiter: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("c2's waiter got the lease after %s, want it within a few of c1's turns (TTL 1m)", d)
	}
	if err := c2.Release(ctx, name, l.Token); err != nil {
		t.Fatal(err)
	}
}

// With no release, the waiter takes the lease when the holder's TTL runs
// out: its second attempt, timed by the TTL the first one was answered.
func TestWaitTakesOverAtExpiry(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(400 * time.Millisecond)
	attempts := countAttempts(t, name, nil)
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 10 * time.Second})
	took := time.Now()
	if err != nil {
		t.Fatalf("got %v, want a grant when the holder's lease expires", err)
	}
	if l.Fence <= holder.Fence {
		t.Errorf("got fence %d, want more than %d", l.Fence, holder.Fence)
	}
	// Generous bounds: the machine is shared and -race is slow; the attempt
	// count below is what shows there was no polling.
	if late := took.Sub(expires); late < -5*time.Millisecond || late > 300*time.Millisecond {
		t.Errorf("granted %s after the holder's expiry, want within (-5ms, 300ms)", late)
	}
	if n := attempts(); n != 2 && n != 3 {
		t.Errorf("got %d attempts, want 2 (one held, one at expiry; 3 if PTTL rounding made it 1ms early)", n)
	}
}

// TestWaitNextTakesOverAtExpiryWhenTheHeadLeaves: the head of the queue
// gives up while the holder's lease still runs; the waiter behind it, in
// another Client, is told it is the head now and takes the lease at the
// holder's expiry, not a second after (when a waiter that is not the head
// would look on its own).
func TestWaitNextTakesOverAtExpiryWhenTheHeadLeaves(t *testing.T) {
	c, _ := newClient(t, nil)
	head, _ := newClient(t, nil)
	next, _ := newClient(t, nil)
	name := uniq(t)
	const ttl = 1500 * time.Millisecond
	if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: ttl}); err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(ttl)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := head.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 400 * time.Millisecond})
		gaveUp <- err
	}()
	eventually(t, 2*time.Second, "the head to be queued", func() bool { return head.Waiters(name) == 1 })
	l, err := next.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 5 * time.Second})
	took := time.Now()
	if err != nil {
		t.Fatalf("got %v, want a grant at the holder's expiry", err)
	}
	var held *lease.HeldError
	if err := <-gaveUp; !errors.As(err, &held) {
		t.Errorf("the head that gave up: got %v, want *HeldError", err)
	}
	if late := took.Sub(expires); late < -5*time.Millisecond || late > 500*time.Millisecond {
		t.Errorf("granted %s after the holder's expiry, want within (-5ms, 500ms): the waiter behind a head that left must take over at the expiry", late)
	}
	c.Release(ctx, name, l.Token)
}

func TestWaitEndsWithTheLastHeldError(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "a"})
	if err != nil {
		t.Fatal(err)
	}
	attempts := countAttempts(t, name, nil)
	start := time.Now()
	_, err = c.Acquire(ctx, name, &lease.AcquireOptions{Wait: time.Second})
	var held *lease.HeldError
	if !errors.As(err, &held) {
		t.Fatalf("got %v, want *HeldError", err)
	}
	// The TTL is what is left when the wait ends, not what the first attempt
	// saw a second earlier: a caller (or the HTTP Retry-After) must not wait
	// longer than the holder's lease lives.
	if held.Holder != "a" || held.Fence != holder.Fence || held.TTL < 57*time.Second || held.TTL > 59*time.Second+20*time.Millisecond {
		t.Errorf("got %+v, want holder a, fence %d, about 59s left after a 1s wait on a 1m lease", held, holder.Fence)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("returned after %s, want at least the 1s wait", d)
	}
	if n := attempts(); n != 1 {
		t.Errorf("got %d attempts in a 1s wait on a lease held for a minute, want 1 (no polling)", n)
	}
}

// A wait that ends just as the holder's lease runs out answers with one more
// attempt, not with a *HeldError whose TTL is used up.
func TestWaitEndingAtExpiryTriesOnceMore(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{Wait: 300 * time.Millisecond})
	var held *lease.HeldError
	switch {
	case err == nil:
		if l.Fence == 0 {
			t.Errorf("got %+v, want a grant with a fence", l)
		}
	case errors.As(err, &held):
		if held.TTL <= 0 {
			t.Errorf("got %+v, want a positive remaining TTL or a grant", held)
		}
	default:
		t.Fatalf("got %v, want a grant or *HeldError", err)
	}
}

// Waiters that give up (their wait ends, their context is cancelled or
// times out) leave no subscription, goroutine, connection or key.
func TestWaitGivingUpLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, rdb := newClient(t, nil)
	name := uniq(t)
	if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	keysBefore, _ := rdb.Keys(ctx, "leasehold:{"+name+"}*").Result()
	cancelled, cancel := context.WithCancel(ctx)
	timedOut, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	var results []<-chan result
	for i := range 12 {
		switch i % 3 {
		case 0:
			results = append(results, acquireAsync(c, cancelled, name, &lease.AcquireOptions{Wait: time.Minute}))
		case 1:
			results = append(results, acquireAsync(c, timedOut, name, &lease.AcquireOptions{Wait: time.Minute}))
		case 2:
			results = append(results, acquireAsync(c, ctx, name, &lease.AcquireOptions{Wait: 300 * time.Millisecond}))
		}
	}
	eventually(t, 5*time.Second, "not all 12 waiters joined", func() bool { return c.Waiters(name) == 12 })
	eventually(t, 5*time.Second, "the channel was never subscribed", func() bool {
		return numsub(t, rdb, c.Channel(name)) > 0
	})
	if n := numsub(t, rdb, c.Channel(name)); n != 1 {
		t.Errorf("got %d subscriptions for 12 waiters, want 1 (one shared connection)", n)
	}
	cancel()
	for i, r := range results {
		res := <-r
		var want error = lease.ErrHeld
		switch i % 3 {
		case 0:
			want = context.Canceled
		case 1:
			want = context.DeadlineExceeded
		}
		if !errors.Is(res.err, want) {
			t.Errorf("waiter %d: got %v, want %v", i, res.err, want)
		}
	}
	eventually(t, 5*time.Second, "subscriptions remain", func() bool {
		chans, err := rdb.PubSubChannels(ctx, "leasehold:{"+name+"}*").Result()
		return err == nil && len(chans) == 0 && numsub(t, rdb, c.Channel(name)) == 0
	})
	eventually(t, 5*time.Second, "the client still has a pub/sub connection", func() bool { return c.Conns() == 0 })
	keysAfter, _ := rdb.Keys(ctx, "leasehold:{"+name+"}*").Result()
	if len(keysAfter) != len(keysBefore) {
		t.Errorf("got keys %v after the waiters gave up, want %v", keysAfter, keysBefore)
	}
}

// Waiters of one Client are granted the lease in the order they came.
func TestWaitServesArrivalOrder(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 20 * time.Second})
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if err := c.Release(ctx, name, l.Token); err != nil {
				t.Errorf("waiter %d release: %v", i, err)
			}
		}()
		eventually(t, 5*time.Second, "a waiter did not join", func() bool { return c.Waiters(name) == i+1 })
	}
	if err := c.Release(ctx, name, holder.Token); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("got grant order %v, want 0..%d", order, n-1)
		}
	}
}

// A release wakes one waiter, not all of them. Every waiter makes one
// attempt, which queues it; after that, every grant costs one script call
// (the release that hands it over), whichever Client releases.
func TestWaitNoHerd(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := lease.New(rdb, nil)
	other := lease.New(rdb, nil)
	if err := c.LoadScripts(ctx); err != nil { // no NOSCRIPT round trips to count
		t.Fatal(err)
	}
	const n = 20
	for _, tt := range []struct {
		how string
		rel *lease.Client
	}{
		{"released by the waiters Client", c},
		{"released by another Client", other},
	} {
		t.Run(tt.how, func(t *testing.T) {
			name := uniq(t)
			holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			attempts := countAttempts(t, name, nil)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 20 * time.Second})
					if err != nil {
						t.Errorf("waiter %d: %v", i, err)
						return
					}
					time.Sleep(time.Millisecond) // hold it a moment
					if err := tt.rel.Release(ctx, name, l.Token); err != nil {
						t.Errorf("waiter %d release: %v", i, err)
					}
				}()
			}
			eventually(t, 5*time.Second, "not all waiters joined", func() bool { return c.Waiters(name) == n && attempts() == n })
			if got, err := c.Get(ctx, name); err != nil || got.Waiting != n {
				t.Errorf("Get while %d wait: got %+v, %v; want Waiting %d", n, got, err, n)
			}
			before := evalshaCalls(t, rdb)
			if err := tt.rel.Release(ctx, name, holder.Token); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if got := attempts(); got != n {
				t.Errorf("got %d acquire attempts for %d grants, want %d (one each, to join)", got, n, n)
			}
			if got := evalshaCalls(t, rdb) - before; got != 1+n {
				t.Errorf("got %d EVALSHA calls after the waiters joined, want %d: one release per grant", got, 1+n)
			}
		})
	}
}

func evalshaCalls(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	stats, err := commandStats(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	return stats["evalsha"] + stats["eval"]
}

// Waiters in two processes (two Clients) all get the lease.
func TestWaitAcrossClients(t *testing.T) {
	c1, _ := newClient(t, nil)
	c2, _ := newClient(t, nil)
	name := uniq(t)
	holder, err := c1.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var granted atomic.Int64
	for i := range 8 {
		c := c1
		if i%2 == 1 {
			c = c2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 20 * time.Second})
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			granted.Add(1)
			if err := c.Release(ctx, name, l.Token); err != nil {
				t.Errorf("waiter %d release: %v", i, err)
			}
		}()
	}
	eventually(t, 5*time.Second, "not all waiters joined", func() bool { return c1.Waiters(name)+c2.Waiters(name) == 8 })
	if err := c1.Release(ctx, name, holder.Token); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if granted.Load() != 8 {
		t.Errorf("got %d grants, want 8", granted.Load())
	}
}

// A Redis restart while waiting ends the wait at once: granted (go-redis
// retried the attempt until Redis was back, without the lease it lost) or a
// *BackendError, never a sleep until the wait or the holder's TTL ends.
func TestWaitRedisRestartEndsTheWaitPromptly(t *testing.T) {
	// The restarted redis-server's process watcher belongs to the test's server.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/leasehold/leasehold/internal/redistest.(*Server).start.func1"))
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	c := lease.New(rdb, nil)
	name := uniq(t)
	if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	attempts := countAttempts(t, name, nil)
	got := acquireAsync(c, ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 30 * time.Second})
	eventually(t, 5*time.Second, "no first attempt", func() bool { return attempts() == 1 })
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil && !errors.Is(r.err, lease.ErrBackend) {
			t.Fatalf("got %v, want a grant or a backend error", r.err)
		}
		t.Logf("after the restart: lease %v, error %v", r.l != nil, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end within 10s of the restart (its wait is 30s, the holder's TTL 1m)")
	}
	eventually(t, 5*time.Second, "the client still has a pub/sub connection", func() bool { return c.Conns() == 0 })
}

// A hung Redis (SIGSTOP) is noticed by the health check of the subscription;
// the head then attempts, and the wait ends with a *BackendError long before
// the wait or the holder's TTL would.
func TestWaitOnPausedRedisFailsFast(t *testing.T) {
	defer lease.SetHealthEvery(100 * time.Millisecond)()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	c := lease.New(rdb, nil)
	defer c.Close() // its connection goroutine must end before SetHealthEvery is undone
	name := uniq(t)
	if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	attempts := countAttempts(t, name, nil)
	got := acquireAsync(c, ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 30 * time.Second})
	eventually(t, 5*time.Second, "no first attempt", func() bool { return attempts() == 1 })
	srv.Pause()
	defer srv.Resume()
	select {
	case r := <-got:
		if !errors.Is(r.err, lease.ErrBackend) {
			t.Fatalf("got %v, want a backend error", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end within 10s of Redis hanging (its wait is 30s)")
	}
}

func TestCloseEndsWaits(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, rdb := newClient(t, nil)
	name := uniq(t)
	if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	got := acquireAsync(c, ctx, name, &lease.AcquireOptions{Wait: time.Minute})
	eventually(t, 5*time.Second, "the waiter did not join", func() bool { return c.Waiters(name) == 1 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-got; !errors.Is(r.err, lease.ErrClosed) || !errors.Is(r.err, lease.ErrBackend) {
		t.Errorf("got %v, want a backend error wrapping ErrClosed", r.err)
	}
	if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{Wait: time.Second}); !errors.Is(err, lease.ErrClosed) {
		t.Errorf("Acquire after Close: got %v, want ErrClosed", err)
	}
	eventually(t, 5*time.Second, "subscriptions remain", func() bool {
		return numsub(t, rdb, c.Channel(name)) == 0
	})
}

// In Cluster mode the waiter listens with SSUBSCRIBE and the release
// announces with SPUBLISH (a one-node cluster that serves every slot).
func TestWaitCluster(t *testing.T) {
	srv := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	plain := srv.Client(t)
	if err := plain.ClusterAddSlotsRange(ctx, 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the cluster is not ok", func() bool {
		info, _ := plain.ClusterInfo(ctx).Result()
		return len(info) > 0 && strings.Contains(info, "cluster_state:ok")
	})
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr()}})
	defer cc.Close()
	c := lease.New(cc, clientOptions(nil))
	wokenByRelease(t, c, lease.New(cc, clientOptions(nil)), func(name string) {
		ch := c.Channel(name)
		if m, err := plain.PubSubShardNumSub(ctx, ch).Result(); err != nil || m[ch] != 1 {
			t.Fatalf("got PUBSUB SHARDNUMSUB %v (%v), want 1 shard subscriber", m, err)
		}
	})
}

// The embedded store (miniredis) runs the same scripts: its PUBLISH from the
// release script wakes a waiter subscribed with plain SUBSCRIBE.
func TestWaitOnEmbeddedStore(t *testing.T) {
	defer lease.SetHealthEvery(50 * time.Millisecond)() // miniredis must answer the health PING too
	store, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rdb := redis.NewClient(store.Options())
	defer rdb.Close()
	c := lease.New(rdb, nil)
	wokenByRelease(t, c, lease.New(rdb, nil), func(string) {
		time.Sleep(300 * time.Millisecond) // several health intervals: a failed PING would show as extra attempts
	})
	eventually(t, 5*time.Second, "the client still has a pub/sub connection", func() bool { return c.Conns() == 0 })
}

// A Client's head that loses a release to another process stays at the
// front: its Client's waiters are still granted in arrival order.
func TestWaitOrderHoldsWhenRacingAnotherClient(t *testing.T) {
	c1, _ := newClient(t, nil)
	c2, _ := newClient(t, nil)
	name := uniq(t)
	holder, err := c1.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	take := func(c *lease.Client, i int) {
		defer wg.Done()
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 20 * time.Second})
		if err != nil {
			t.Errorf("waiter %d: %v", i, err)
			return
		}
		mu.Lock()
		order = append(order, i)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		if err := c.Release(ctx, name, l.Token); err != nil {
			t.Errorf("waiter %d release: %v", i, err)
		}
	}
	const n = 6
	for i := range n {
		wg.Add(2)
		go take(c1, i)
		eventually(t, 5*time.Second, "a waiter of c1 did not join", func() bool { return c1.Waiters(name) == i+1 })
		go take(c2, 100+i)
		eventually(t, 5*time.Second, "a waiter of c2 did not join", func() bool { return c2.Waiters(name) == i+1 })
	}
	if err := c1.Release(ctx, name, holder.Token); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	var got1, got2 []int
	for _, i := range order {
		if i < 100 {
			got1 = append(got1, i)
		} else {
			got2 = append(got2, i-100)
		}
	}
	for i := range n {
		if len(got1) != n || got1[i] != i || len(got2) != n || got2[i] != i {
			t.Fatalf("got grant order %v, want each Client's waiters in arrival order", order)
		}
	}
}

// A head that gives up just as the release comes (its context cancelled at
// the same moment) passes the wake-up on: the next waiter is granted, not
// left to wait for the holder's TTL (a minute).
func TestWaitGivingUpHeadPassesTheWakeUpOn(t *testing.T) {
	c, _ := newClient(t, nil)
	base := uniq(t)
	for i := range 30 {
		name := fmt.Sprintf("%s.%d", base, i)
		holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		headCtx, cancel := context.WithCancel(ctx)
		head := acquireAsync(c, headCtx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: time.Minute})
		eventually(t, 5*time.Second, "the head did not join", func() bool { return c.Waiters(name) == 1 })
		next := acquireAsync(c, ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 10 * time.Second})
		eventually(t, 5*time.Second, "the next waiter did not join", func() bool { return c.Waiters(name) == 2 })
		go cancel()
		if err := c.Release(ctx, name, holder.Token); err != nil {
			t.Fatal(err)
		}
		h := <-head
		if h.err == nil {
			// The head won before its cancel landed: hand over.
			if err := c.Release(ctx, name, h.l.Token); err != nil {
				t.Fatal(err)
			}
		}
		if r := <-next; r.err != nil {
			t.Fatalf("iteration %d: next waiter got %v, want a grant (head: %v)", i, r.err, h.err)
		}
	}
}

// TestWaitHonoursItsDeadlineAfterDataLoss: after Redis lost a name's data
// while its fence counter was ahead of Redis's clock, the next holder has a
// lower fence than the one a waiter last saw. The waiter's own attempt says
// who holds the lease now: it must sleep until that holder's expiry, and
// end at its own deadline, not spin on attempts until the new holder's
// lease runs out.
func TestWaitHonoursItsDeadlineAfterDataLoss(t *testing.T) {
	c, rdb := newClient(t, nil)
	other, _ := newClient(t, nil)
	name := uniq(t)
	key := "leasehold:{" + name + "}"
	ahead := time.Now().Add(1000 * time.Hour).UnixMicro() // a counter far ahead of the clock (a Redlock raise, a clock stepped back)
	if err := rdb.HSet(ctx, key, "f", ahead).Err(); err != nil {
		t.Fatal(err)
	}
	first, err := other.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second, Holder: "first"})
	if err != nil {
		t.Fatal(err)
	}
	attempts := countAttempts(t, name, nil)
	got := make(chan result, 1)
	start := time.Now()
	go func() {
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "waiter", Wait: 3 * time.Second})
		got <- result{l, err}
	}()
	eventually(t, 2*time.Second, "the waiter's first attempt", func() bool { return attempts() >= 1 })
	// The name's data is lost (as by FLUSHALL or a restart without
	// persistence), and another holder takes it with a fence from the clock.
	if err := rdb.Del(ctx, key, key+":q").Err(); err != nil {
		t.Fatal(err)
	}
	second, err := other.Acquire(ctx, name, &lease.AcquireOptions{TTL: 20 * time.Second, Holder: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Fence >= first.Fence {
		t.Fatalf("setup: second fence %d, want below the first's %d", second.Fence, first.Fence)
	}
	var r result
	select {
	case r = <-got:
	case <-time.After(8 * time.Second):
		t.Fatalf("the 3s wait had not ended after 8s (%d attempts)", attempts())
	}
	took := time.Since(start)
	var held *lease.HeldError
	if !errors.As(r.err, &held) || held.Holder != "second" {
		t.Errorf("got %v, %v, want a *HeldError naming the second holder", r.l, r.err)
	}
	if took > 4*time.Second {
		t.Errorf("the 3s wait ended after %v, want at its deadline", took)
	}
	if n := attempts(); n > 10 {
		t.Errorf("the waiter made %d attempts, want a few: it must sleep until the holder's expiry", n)
	}
}
