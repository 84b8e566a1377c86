package lease_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// rlNode is one master of a fault test: a real redis-server, the proxy the
// Redlock reaches it through, and a client straight to it for looking.
type rlNode struct {
	srv    *redistest.Server
	proxy  *faultproxy.Proxy
	direct *redis.Client
}

// redlockProxied starts three real, independent redis-servers, each behind
// a faultproxy, and a Redlock over the proxies. Its calls give up on a hung
// master after 200ms.
func redlockProxied(t *testing.T, opts *lease.Options) (*lease.Redlock, []rlNode) {
	t.Helper()
	var (
		nodes []rlNode
		ucs   []redis.UniversalClient
	)
	for i := 0; i < 3; i++ {
		s := redistest.Start(t)
		p, err := faultproxy.New(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
			ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, ContextTimeoutEnabled: true})
		t.Cleanup(func() { rdb.Close() })
		nodes = append(nodes, rlNode{srv: s, proxy: p, direct: s.Client(t)})
		ucs = append(ucs, rdb)
	}
	r, err := lease.NewRedlock(ucs, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	return r, nodes
}

// within calls cond every 20ms until it is true or d has passed, and
// reports whether it became true.
func within(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// token reads the token and fence of the grant of name on one master.
func token(t *testing.T, rdb *redis.Client, name string) (string, int64) {
	t.Helper()
	v, err := rdb.HMGet(ctx, "leasehold:{"+name+"}", "t", "f").Result()
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := v[0].(string)
	f, _ := v[1].(string)
	fence, _ := strconv.ParseInt(f, 10, 64)
	return tok, fence
}

// An idempotent re-acquire (the holder's own token) that cannot reach a
// quorum must not remove the grant the holder already has: it undoes only
// the grants it made itself.
func TestRedlockReacquireMissingQuorumKeepsTheGrant(t *testing.T) {
	for _, tc := range []struct {
		name string
		lost []int // masters that lost the grant before the re-acquire
		hang []int // masters whose path hangs during the re-acquire
		keep []int // masters that must hold the holder's grant after it
	}{
		{"two of three hang", nil, []int{1, 2}, []int{0, 1, 2}},
		{"one lost it and two hang", []int{0}, []int{1, 2}, []int{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, nodes := redlockProxied(t, redlockTestOptions(nil))
			name := uniq(t)
			l, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 20 * time.Second, Holder: "first"})
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range tc.lost {
				if err := nodes[i].srv.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for _, i := range tc.hang {
				nodes[i].proxy.Set(faultproxy.Hang)
			}
			actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err = r.Acquire(actx, name, &lease.AcquireOptions{TTL: 20 * time.Second, Holder: "first", Token: l.Token})
			cancel()
			if err == nil {
				t.Fatalf("re-acquire with masters %v hung: got a grant, want an error", tc.hang)
			}
			for _, i := range tc.hang {
				nodes[i].proxy.Set(faultproxy.Forward)
			}
			// What the hang held up (the re-acquire, and any undo) now reaches
			// the masters: for a second, no master may lose the grant.
			within(time.Second, func() bool {
				for i, n := range nodes {
					got, fence := token(t, n.direct, name)
					keep := slices.Contains(tc.keep, i)
					switch {
					case keep && got != l.Token:
						t.Fatalf("master %d: got token %q after the failed re-acquire, want the holder's: it removed the live grant", i, got)
					case keep && fence != l.Fence:
						t.Fatalf("master %d: got fence %d after the failed re-acquire, want the live grant's %d: it was removed and made anew", i, fence, l.Fence)
					case !keep && got == l.Token:
						t.Fatalf("master %d: still has the grant the failed re-acquire made there, want it undone", i)
					}
				}
				return false
			})
			_, err = r.Acquire(ctx, name, &lease.AcquireOptions{Holder: "second"})
			var held *lease.HeldError
			if !errors.As(err, &held) || held.Holder != "first" {
				t.Fatalf("second client's acquire while the first's TTL lives: got %v, want *HeldError naming first", err)
			}
		})
	}
}

// Every fence reported for one grant is the fence Acquire returned: Renew's,
// a Keeper's, Verify's by token, and Verify by that fence holds, also when
// one master carries another fence for the same token and another master
// is away.
func TestRedlockEveryFenceOfAGrantIsTheSame(t *testing.T) {
	for _, tc := range []struct {
		name string
		// grant takes the lease with master 0 (or 2) out of step.
		grant func(t *testing.T, r *lease.Redlock, nodes []rlNode, name string) *lease.Lease
	}{
		{"the acquire on master 0 lands late", func(t *testing.T, r *lease.Redlock, nodes []rlNode, name string) *lease.Lease {
			nodes[0].proxy.Set(faultproxy.Hang)
			l, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 20 * time.Second})
			nodes[0].proxy.Set(faultproxy.Forward)
			if err != nil {
				t.Fatal(err)
			}
			// The acquire that timed out reaches master 0 now, and grants
			// there with a fence of its own.
			if !within(2*time.Second, func() bool { tok, _ := token(t, nodes[0].direct, name); return tok == l.Token }) {
				t.Fatal("setup: master 0 did not get the late grant")
			}
			return l
		}},
		{"the raise missed master 0", func(t *testing.T, r *lease.Redlock, nodes []rlNode, name string) *lease.Lease {
			l, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			// As a raise that never reached master 0 leaves it: its own, lower fence.
			key := "leasehold:{" + name + "}"
			if err := nodes[0].direct.HSet(ctx, key, "f", strconv.FormatInt(l.Fence-1000, 10)).Err(); err != nil {
				t.Fatal(err)
			}
			nodes[0].direct.HDel(ctx, key, "q")
			return l
		}},
		{"re-acquired after master 2 lost it", func(t *testing.T, r *lease.Redlock, nodes []rlNode, name string) *lease.Lease {
			l, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := nodes[2].srv.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			again, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 20 * time.Second, Token: l.Token})
			if err != nil {
				t.Fatal(err)
			}
			if again.Fence != l.Fence {
				t.Errorf("idempotent re-acquire: got fence %d, want the grant's %d", again.Fence, l.Fence)
			}
			return l
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, nodes := redlockProxied(t, redlockTestOptions(nil))
			name := uniq(t)
			l := tc.grant(t, r, nodes, name)
			check := func(when string) {
				t.Helper()
				if g, err := r.Renew(ctx, name, l.Token, 0); err != nil || g.Fence != l.Fence {
					t.Errorf("%s: Renew: got fence %v (%v), want %d", when, fenceOf(g), err, l.Fence)
				}
				if g, err := r.Verify(ctx, name, lease.Proof{Token: l.Token}); err != nil || g.Fence != l.Fence {
					t.Errorf("%s: Verify by token: got fence %v (%v), want %d", when, fenceOf(g), err, l.Fence)
				}
				if _, err := r.Verify(ctx, name, lease.Proof{Fence: l.Fence}); err != nil {
					t.Errorf("%s: Verify by fence %d: got %v, want valid", when, l.Fence, err)
				}
			}
			// Master 1 holds the grant's fence; with it away, only master 2 does.
			nodes[1].proxy.Set(faultproxy.Hang)
			check("master 1 away")
			nodes[1].proxy.Set(faultproxy.Forward)
			check("all masters up")
			for i, n := range nodes {
				if _, f := token(t, n.direct, name); f != l.Fence {
					t.Errorf("master %d: got fence %d after Renew, want it set to the grant's %d", i, f, l.Fence)
				}
			}

			k := lease.Keep(ctx, r, l, &lease.KeeperOptions{Interval: 50 * time.Millisecond})
			defer k.Stop()
			if !within(5*time.Second, func() bool { return k.Lease().ExpiresAt.After(l.ExpiresAt) }) {
				t.Fatalf("the keeper did not renew within 5s: %v", k.Err())
			}
			if got := k.Lease().Fence; got != l.Fence {
				t.Errorf("keeper's Lease(): got fence %d, want %d", got, l.Fence)
			}
		})
	}
}

func fenceOf(l *lease.Lease) any {
	if l == nil {
		return nil
	}
	return l.Fence
}

// A master that restarts without persistence forgets its grants. It must not
// count toward a grant until every lease it may have forgotten has expired
// (the restart delay, Options.MaxTTL by default), whether this Redlock saw
// it before (its run_id changed) or sees it for the first time.
func TestRedlockRestartedMasterDoesNotCount(t *testing.T) {
	const maxTTL = 4 * time.Second
	opts := &lease.Options{MaxTTL: maxTTL}
	r, srvs, rdbs := newRedlock(t, opts)
	var ucs []redis.UniversalClient
	for _, rdb := range rdbs {
		ucs = append(ucs, rdb)
	}
	// The masters have just started: they count only once they have run for
	// the delay.
	if _, err := r.Acquire(ctx, "warm-up", &lease.AcquireOptions{TTL: 100 * time.Millisecond}); !errors.Is(err, lease.ErrRestarted) {
		t.Fatalf("acquire on masters that have just started: got %v, want ErrRestarted", err)
	}
	if !within(3*maxTTL, func() bool {
		l, err := r.Acquire(ctx, "warm-up", &lease.AcquireOptions{TTL: 100 * time.Millisecond})
		return err == nil && r.Release(ctx, "warm-up", l.Token) == nil
	}) {
		t.Fatalf("fresh masters never counted toward a grant")
	}

	name := uniq(t)
	// Master 2 is held by another for a moment, so the first holder's grant
	// lands on masters 0 and 1 only.
	if _, err := lease.New(rdbs[2], nil).Acquire(ctx, name, &lease.AcquireOptions{TTL: 200 * time.Millisecond, Holder: "brief"}); err != nil {
		t.Fatal(err)
	}
	first, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: maxTTL, Holder: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if !within(2*time.Second, func() bool { n, _ := live(rdbs[2], "leasehold:{"+name+"}"); return n == 0 }) {
		t.Fatal("setup: the brief lease on master 2 did not expire")
	}
	// Master 1 restarts without persistence and forgets the first grant.
	if err := srvs[1].Restart(); err != nil {
		t.Fatal(err)
	}
	fresh, err := lease.NewRedlock(ucs, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    *lease.Redlock
	}{
		{"saw the master before", r},
		{"sees it for the first time", fresh},
	} {
		l, err := tc.r.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second, Holder: "second"})
		var held *lease.HeldError
		if err != nil && (!errors.As(err, &held) || held.Holder != "first") {
			t.Errorf("%s: got %v, want *HeldError naming first", tc.name, err)
		}
		if err == nil {
			left := time.Until(first.ExpiresAt)
			tc.r.Release(ctx, name, l.Token)
			if left > 0 {
				t.Errorf("%s: a second holder got the lease (fence %d) while the first's (fence %d) lived for another %s: the restarted master counted",
					tc.name, l.Fence, first.Fence, left)
			} else {
				t.Fatalf("%s: the machine was too slow: the first grant had expired before the second acquire", tc.name)
			}
		}
	}
	// Once the delay has passed, the restarted master counts again.
	if !within(3*maxTTL, func() bool {
		l, err := fresh.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second, Holder: "later"})
		return err == nil && fresh.Release(ctx, name, l.Token) == nil
	}) {
		t.Errorf("the restarted master never counted again")
	}
}

// redlockTestOptions returns opts for the Redlocks of the tests that do not
// test the restart delay: without it, since their masters have just started.
func redlockTestOptions(opts *lease.Options) *lease.Options {
	var o lease.Options
	if opts != nil {
		o = *opts
	}
	o.RestartDelay = -1
	return &o
}
