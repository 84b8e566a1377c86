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

// redlockTestOptions are the options of the Redlocks of the tests that do
// not test the restart delay.
func redlockTestOptions(opts *lease.Options) *lease.Options { return opts }
