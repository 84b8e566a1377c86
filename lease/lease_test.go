package lease_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

var ctx = context.Background()

func TestAcquireGrantsAFreeLease(t *testing.T) {
	c, rdb := newClient(t, nil)
	name := uniq(t)
	before := time.Now()
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "web-1", Metadata: "m"})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if l.Name != name || l.Holder != "web-1" || l.Metadata != "m" || l.TTL != 5*time.Second {
		t.Errorf("got %+v, want name %q holder web-1 metadata m ttl 5s", l, name)
	}
	if len(l.Token) < 22 {
		t.Errorf("got token %q, want at least 128 bits of base64", l.Token)
	}
	if l.Fence < before.UnixMicro() {
		t.Errorf("got fence %d, want at least Redis TIME in µs (~%d)", l.Fence, before.UnixMicro())
	}
	if d := l.ExpiresAt.Sub(before); d < 4*time.Second || d > 6*time.Second {
		t.Errorf("got expires_at %v after now, want about 5s", d)
	}
	left, err := redistest.LeaseLeft(ctx, rdb, "leasehold:{"+name+"}")
	if err != nil || left <= 4*time.Second || left > 5*time.Second {
		t.Errorf("got %v (%v) left of the lease, want in (4s, 5s]", left, err)
	}
	// The key outlives the grant by the fence retention.
	if pttl, err := rdb.PTTL(ctx, "leasehold:{"+name+"}").Result(); err != nil || pttl <= lease.DefaultFenceRetention+4*time.Second || pttl > lease.DefaultFenceRetention+5*time.Second {
		t.Errorf("got PTTL %v (%v), want the retention (24h) + 5s", pttl, err)
	}
	// The fence is stored as exact digits, not 1.7e+15.
	stored, err := rdb.HGet(ctx, "leasehold:{"+name+"}", "f").Result()
	if err != nil || stored != strconv.FormatInt(l.Fence, 10) {
		t.Errorf("got stored fence %q (%v), want %d", stored, err, l.Fence)
	}
	// One key per name: no separate fence counter, no queue while nobody waits.
	if keys, err := rdb.Keys(ctx, "leasehold:{"+name+"}*").Result(); err != nil || len(keys) != 1 {
		t.Errorf("got keys %v (%v), want only the lease's hash", keys, err)
	}
}

func TestAcquireHeldAnswersRemainingTTLAndChangesNothing(t *testing.T) {
	c, rdb := newClient(t, nil)
	name := uniq(t)
	first, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second, Holder: "a", Metadata: "ma"})
	if err != nil {
		t.Fatal(err)
	}
	key := "leasehold:{" + name + "}"
	before, _ := rdb.HGetAll(ctx, key).Result()
	time.Sleep(50 * time.Millisecond)

	_, err = c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "b", Metadata: "mb"})
	var held *lease.HeldError
	if !errors.As(err, &held) {
		t.Fatalf("got %v, want *HeldError", err)
	}
	if !errors.Is(err, lease.ErrHeld) {
		t.Errorf("errors.Is(%v, ErrHeld) = false", err)
	}
	if held.Holder != "a" || held.Fence != first.Fence || held.Name != name {
		t.Errorf("got %+v, want holder a fence %d", held, first.Fence)
	}
	if held.TTL <= 9*time.Second || held.TTL > 9960*time.Millisecond {
		t.Errorf("got remaining TTL %v, want just under 10s minus the 50ms slept", held.TTL)
	}
	after, _ := rdb.HGetAll(ctx, key).Result()
	if len(after) != len(before) || after["h"] != before["h"] || after["t"] != before["t"] || after["m"] != before["m"] || after["l"] != before["l"] {
		t.Errorf("got hash %v after a conflicting acquire, want unchanged %v", after, before)
	}
	if left, _ := redistest.LeaseLeft(ctx, rdb, key); left > 10*time.Second-40*time.Millisecond {
		t.Errorf("got %v left: the conflicting acquire extended the lease", left)
	}
}

func TestAcquireSameTokenIsIdempotent(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	token := "my-own-token-0123456789"
	first, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second, Holder: "a", Token: token, Metadata: "one"})
	if err != nil {
		t.Fatal(err)
	}
	if first.Token != token {
		t.Errorf("got token %q, want the caller's %q", first.Token, token)
	}
	again, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 20 * time.Second, Holder: "a2", Token: token, Metadata: "two"})
	if err != nil {
		t.Fatalf("re-acquire with the holder's token: %v", err)
	}
	if again.Fence != first.Fence || again.TTL != 20*time.Second || again.Holder != "a2" || again.Metadata != "two" {
		t.Errorf("got %+v, want fence %d, ttl 20s, holder a2, metadata two", again, first.Fence)
	}
	got, err := c.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if got.Holder != "a2" || got.Metadata != "two" || got.TTL < 19*time.Second {
		t.Errorf("got %+v after re-acquire, want holder a2 metadata two ttl ~20s", got)
	}
}

func TestLeaseExpires(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	first, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond)
	if _, err := c.Get(ctx, name); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after expiry: got %v, want ErrNotFound", err)
	}
	if _, err := c.Renew(ctx, name, first.Token, 0); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Renew after expiry: got %v, want ErrNotFound", err)
	}
	second, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second})
	if err != nil {
		t.Fatalf("Acquire after expiry: %v", err)
	}
	if second.Fence <= first.Fence {
		t.Errorf("got fence %d after expiry, want more than %d", second.Fence, first.Fence)
	}
}

func TestRenew(t *testing.T) {
	c, rdb := newClient(t, nil)
	name := uniq(t)
	key := "leasehold:{" + name + "}"
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 2 * time.Second, Holder: "h", Metadata: "md"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("new ttl", func(t *testing.T) {
		r, err := c.Renew(ctx, name, l.Token, 7*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Fence != l.Fence || r.TTL != 7*time.Second || r.Token != l.Token || r.Holder != "h" || r.Metadata != "md" {
			t.Errorf("got %+v, want same fence/token/holder/metadata and ttl 7s", r)
		}
		if left, _ := redistest.LeaseLeft(ctx, rdb, key); left <= 6*time.Second {
			t.Errorf("got %v left, want about 7s", left)
		}
	})
	t.Run("default is the last ttl", func(t *testing.T) {
		redistest.ExpireLeaseIn(ctx, rdb, key, time.Second)
		r, err := c.Renew(ctx, name, l.Token, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.TTL != 7*time.Second {
			t.Errorf("got ttl %v, want the last renew's 7s", r.TTL)
		}
		if left, _ := redistest.LeaseLeft(ctx, rdb, key); left <= 6*time.Second {
			t.Errorf("got %v left, want about 7s", left)
		}
	})
	t.Run("wrong token changes nothing", func(t *testing.T) {
		redistest.ExpireLeaseIn(ctx, rdb, key, 3*time.Second)
		_, err := c.Renew(ctx, name, "someone-elses-token-xyz", time.Hour)
		var nh *lease.NotHolderError
		if !errors.As(err, &nh) || !errors.Is(err, lease.ErrNotHolder) {
			t.Fatalf("got %v, want *NotHolderError", err)
		}
		if nh.Holder != "h" || nh.Fence != l.Fence || nh.TTL <= 2*time.Second || nh.TTL > 3*time.Second {
			t.Errorf("got %+v, want holder h, fence %d, ttl ~3s", nh, l.Fence)
		}
		if left, _ := redistest.LeaseLeft(ctx, rdb, key); left > 3*time.Second {
			t.Errorf("got %v left, want at most 3s: a wrong-token renew extended it", left)
		}
		if last, _ := rdb.HGet(ctx, key, "l").Result(); last != "7000" {
			t.Errorf("got stored ttl %q, want 7000 unchanged", last)
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := c.Renew(ctx, name+"-none", l.Token, time.Second)
		var nf *lease.NotFoundError
		if !errors.As(err, &nf) || nf.Name != name+"-none" {
			t.Errorf("got %v, want *NotFoundError for %s-none", err, name)
		}
	})
}

func TestRelease(t *testing.T) {
	c, rdb := newClient(t, nil)
	name := uniq(t)
	key := "leasehold:{" + name + "}"
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "h"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Release(ctx, name, "someone-elses-token-xyz")
	var nh *lease.NotHolderError
	if !errors.As(err, &nh) || nh.Holder != "h" || nh.Fence != l.Fence {
		t.Fatalf("release with a wrong token: got %v, want *NotHolderError naming h", err)
	}
	if live, _ := redistest.LeaseLive(ctx, rdb, key); !live {
		t.Fatalf("a wrong-token release removed the lease")
	}

	// Nobody waits for it: the release publishes nothing (waiting is
	// tested in wait_test.go).
	sub := rdb.PSubscribe(ctx, "leasehold:{"+name+"}*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, name, l.Token); err != nil {
		t.Fatalf("Release: %v", err)
	}
	// What stays is the name's last fence, for the retention.
	if h, _ := rdb.HGetAll(ctx, key).Result(); len(h) != 1 || h["f"] != strconv.FormatInt(l.Fence, 10) {
		t.Errorf("got hash %v after release, want only the fence %d", h, l.Fence)
	}
	if pttl, _ := rdb.PTTL(ctx, key).Result(); pttl <= lease.DefaultFenceRetention-time.Second || pttl > lease.DefaultFenceRetention {
		t.Errorf("got PTTL %v after release, want the retention (24h)", pttl)
	}
	rdb.Publish(ctx, "leasehold:{"+name+"}:marker", "marker")
	if msg, err := sub.ReceiveMessage(ctx); err != nil || msg.Payload != "marker" {
		t.Errorf("got %v (%v) first, want no announcement of a release nobody waits for", msg, err)
	}
	if err := c.Release(ctx, name, l.Token); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("second release: got %v, want ErrNotFound", err)
	}
	next, err := c.Acquire(ctx, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.Fence <= l.Fence {
		t.Errorf("got fence %d after release, want more than %d", next.Fence, l.Fence)
	}
}

// expirySlack is how far an expiry time read back may differ from the grant's:
// real Redis agrees to the millisecond; TestEmbeddedConformance widens it.
var expirySlack = 5 * time.Millisecond

func TestGetAndVerify(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	if _, err := c.Get(ctx, name); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get of a free name: got %v, want ErrNotFound", err)
	}
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 3 * time.Second, Holder: "h", Metadata: "md"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if g.Token != "" {
		t.Errorf("Get returned the token %q", g.Token)
	}
	if g.Holder != "h" || g.Fence != l.Fence || g.Metadata != "md" || g.TTL <= 2*time.Second || g.TTL > 3*time.Second {
		t.Errorf("got %+v, want holder h fence %d metadata md ttl ~3s", g, l.Fence)
	}
	if d := g.ExpiresAt.Sub(l.ExpiresAt); d < -expirySlack || d > expirySlack {
		t.Errorf("got expires_at %v from Get, want %v from the grant", g.ExpiresAt, l.ExpiresAt)
	}

	tests := []struct {
		name  string
		proof lease.Proof
		want  error
	}{
		{"current token", lease.Proof{Token: l.Token}, nil},
		{"current fence", lease.Proof{Fence: l.Fence}, nil},
		{"wrong token", lease.Proof{Token: "someone-elses-token-xyz"}, lease.ErrNotHolder},
		{"old fence", lease.Proof{Fence: l.Fence - 1}, lease.ErrNotHolder},
		{"both", lease.Proof{Token: l.Token, Fence: l.Fence}, lease.ErrInvalid},
		{"neither", lease.Proof{}, lease.ErrInvalid},
		{"negative fence", lease.Proof{Fence: -3}, lease.ErrInvalid},
		{"bad token", lease.Proof{Token: "short"}, lease.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := c.Verify(ctx, name, tt.proof)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err == nil && (v.Fence != l.Fence || v.Token != "") {
				t.Errorf("got %+v, want fence %d and no token", v, l.Fence)
			}
		})
	}
	if _, err := c.Verify(ctx, name+"-none", lease.Proof{Fence: 1}); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Verify of a free name: got %v, want ErrNotFound", err)
	}
}

func TestRaceOneWinner(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	const n = 100
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []*lease.Lease
		helds   int
		others  []error
	)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second, Holder: "g" + strconv.Itoa(i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, l)
			case errors.Is(err, lease.ErrHeld):
				helds++
			default:
				others = append(others, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 || helds != n-1 || len(others) != 0 {
		t.Fatalf("got %d winners, %d held, other errors %v; want 1 winner and %d held", len(winners), helds, others, n-1)
	}
}

func TestFenceStrictlyIncreases(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	var last int64
	for i := 0; i < 50; i++ {
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if l.Fence <= last {
			t.Fatalf("grant %d: got fence %d, want more than %d", i, l.Fence, last)
		}
		last = l.Fence
		if err := c.Release(ctx, name, l.Token); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFenceSurvivesDataLoss(t *testing.T) {
	srv := redistestStart(t)
	rdb := srv.Client(t)
	c := lease.New(rdb, nil)
	name := "data-loss"

	grant := func() int64 {
		t.Helper()
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return l.Fence
	}
	// A counter far ahead of the clock shows the max(last+1, now) rule's first half.
	rdb.HSet(ctx, "leasehold:{"+name+"}", "f", time.Now().Add(time.Hour).UnixMicro())
	f1 := grant()
	if f1 < time.Now().Add(59*time.Minute).UnixMicro() {
		t.Fatalf("got fence %d, want last+1 of a counter an hour ahead", f1)
	}
	rdb.FlushAll(ctx)
	f2 := grant()
	if f2 <= 0 || f2 >= f1 {
		// With the counter gone the next fence comes from TIME; it is below f1
		// only because the test set the counter an hour ahead of the clock.
		t.Fatalf("after FLUSHALL: got fence %d, want Redis TIME in µs (below the artificial %d)", f2, f1)
	}
	rdb.FlushAll(ctx)
	f3 := grant()
	if f3 <= f2 {
		t.Fatalf("after FLUSHALL: got fence %d, want more than %d", f3, f2)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	f4 := grant()
	if f4 <= f3 {
		t.Fatalf("after a restart without persistence: got fence %d, want more than %d", f4, f3)
	}
	if f, _ := rdb.HGet(ctx, "leasehold:{"+name+"}", "f").Result(); f != strconv.FormatInt(f4, 10) {
		t.Errorf("got stored fence %q after a grant, want %d", f, f4)
	}
}

func TestNoScriptRecovery(t *testing.T) {
	c, rdb := newClient(t, nil)
	name := uniq(t)
	if err := c.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping with scripts loaded: %v", err)
	}
	srv := redistestStart(t)
	other := lease.New(srv.Client(t), nil)
	if err := other.Ping(ctx); !errors.Is(err, lease.ErrBackend) {
		t.Errorf("Ping before the scripts are loaded: got %v, want ErrBackend", err)
	}
	for i, step := range []func() error{
		func() error {
			_, err := c.Acquire(ctx, name, &lease.AcquireOptions{Token: "recover-token-0123456789"})
			return err
		},
		func() error { _, err := c.Renew(ctx, name, "recover-token-0123456789", 0); return err },
		func() error { _, err := c.Get(ctx, name); return err },
		func() error { _, err := c.List(ctx, &lease.ListOptions{Prefix: name}); return err },
		func() error { return c.Release(ctx, name, "recover-token-0123456789") },
	} {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := step(); err != nil {
			t.Fatalf("step %d after SCRIPT FLUSH: %v", i, err)
		}
	}
}
