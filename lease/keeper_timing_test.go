package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// thiefUntil polls acquire every 2ms and returns when it sent the call that won.
func thiefUntil(t *testing.T, d time.Duration, try func() error) time.Time {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		at := time.Now()
		if err := try(); err == nil {
			return at
		}
	}
	t.Fatalf("thief never granted in %v", d)
	return time.Time{}
}

func lostTime(k *lease.Keeper) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() { <-k.Done(); ch <- time.Now() }()
	return ch
}

// A slow path (each chunk delayed 1.1s) on the Acquire: the Keeper is
// started right after Acquire returns, its deadline (sent+TTL-margin) has
// already passed, but its first check is only at Keep+TTL/3.
func TestKeeperAfterASlowAcquireReportsLossInTime(t *testing.T) {
	c, p, thief := hungClient(t, redis.Options{ReadTimeout: 10 * time.Second}, nil)
	name := uniq(t)
	const ttl = 1500 * time.Millisecond
	if err := c.LoadScripts(ctx); err != nil { // warm the connection: the fault is on replies only after this
		t.Fatal(err)
	}
	p.SetDelay(1100 * time.Millisecond)
	t0 := time.Now()
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: ttl, Holder: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	got := time.Now()
	k := lease.Keep(ctx, c, l, nil)
	defer k.Stop()
	lost := lostTime(k)
	granted := thiefUntil(t, 5*time.Second, func() error {
		_, err := thief.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "thief"})
		return err
	})
	var lostAt time.Time
	select {
	case lostAt = <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("keeper never reported loss")
	}
	t.Logf("acquire sent 0, answered +%v; thief granted +%v; keeper reported loss +%v (err %v)",
		got.Sub(t0).Round(time.Millisecond), granted.Sub(t0).Round(time.Millisecond), lostAt.Sub(t0).Round(time.Millisecond), k.Err())
	if lostAt.After(granted) {
		t.Errorf("keeper reported loss %v AFTER the thief was granted", lostAt.Sub(granted).Round(time.Millisecond))
	}
}

// TestKeeperClampsALongInterval: an Interval longer than
// half the TTL would let the lease expire between renewals; the Keeper
// renews at a third of the TTL instead, so nobody else gets the lease.
func TestKeeperClampsALongInterval(t *testing.T) {
	c, _ := newClient(t, nil)
	other, _ := newClient(t, nil)
	name := uniq(t)
	const ttl = 500 * time.Millisecond
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	k := lease.Keep(ctx, c, l, &lease.KeeperOptions{Interval: 2 * time.Second})
	defer k.Stop()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if g, err := other.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute}); err == nil {
			t.Fatalf("another client was granted the lease (fence %d) while the Keeper kept it (err %v)", g.Fence, k.Err())
		}
	}
	if err := k.Err(); err != nil {
		t.Errorf("Keeper ended: %v, want it still keeping the lease", err)
	}
}

// Redlock, keeper with the default TTL (renew ttl 0): masters carry
// different stored TTLs after an idempotent re-acquire that missed one
// master; Renew reports the TTL of the first master that answered.
func TestRedlockKeeperCountsTheShortestTTL(t *testing.T) {
	r, nodes := redlockProxied(t, &lease.Options{RestartDelay: -1})
	var direct []redis.UniversalClient
	for _, n := range nodes {
		direct = append(direct, n.direct)
	}
	thief, err := lease.NewRedlock(direct, &lease.Options{RestartDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	name := uniq(t)
	tok := lease.NewToken()
	if _, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 4 * time.Second, Token: tok}); err != nil {
		t.Fatal(err)
	}
	nodes[0].proxy.Set(faultproxy.Refuse) // M0 away: the re-acquire never reaches it
	l, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	nodes[0].proxy.Set(faultproxy.Forward)
	t.Logf("re-acquire: fence %d ttl %v", l.Fence, l.TTL)
	k := lease.Keep(ctx, r, l, nil)
	defer k.Stop()
	lost := lostTime(k)
	time.Sleep(450 * time.Millisecond) // one renew has gone through
	t.Logf("keeper's lease after a renew: ttl %v", k.Lease().TTL)
	hung := time.Now()
	nodes[1].proxy.Set(faultproxy.Hang)
	nodes[2].proxy.Set(faultproxy.Hang)
	granted := thiefUntil(t, 6*time.Second, func() error {
		_, err := thief.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
		return err
	})
	var lostAt time.Time
	select {
	case lostAt = <-lost:
	case <-time.After(6 * time.Second):
		t.Fatal("keeper never reported loss")
	}
	t.Logf("M1,M2 paths hung at 0; thief granted +%v; keeper reported loss +%v (%v)",
		granted.Sub(hung).Round(time.Millisecond), lostAt.Sub(hung).Round(time.Millisecond), k.Err())
	if lostAt.After(granted) {
		t.Errorf("keeper reported loss %v AFTER the thief was granted", lostAt.Sub(granted).Round(time.Millisecond))
	}
}

// An undo waits for the abandoned call: a release sent while the acquire
// is still on its way would overtake it on another connection.
func TestUndoWaitsForTheAbandonedCall(t *testing.T) {
	c, p, _ := hungClient(t, redis.Options{}, nil)
	_, rdb := newClient(t, nil)
	if err := c.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	name := uniq(t)
	p.SetDelay(800 * time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := c.Acquire(cctx, name, &lease.AcquireOptions{TTL: time.Minute})
	p.SetDelay(0)
	if !lease.Unknown(err) {
		t.Fatalf("Acquire = %v", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := c.Settle(sctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n, _ := live(rdb, "leasehold:{"+name+"}"); n != 0 {
		t.Errorf("a grant nobody holds the token of is left after Settle")
	}
}
