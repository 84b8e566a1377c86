package lease_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// hungClient returns a Client whose path to the shared Redis goes through a
// proxy, the proxy, and a direct Client for a second holder. opts are the
// go-redis options the user chose (Addr is set here).
func hungClient(t *testing.T, ro redis.Options, lo *lease.Options) (*lease.Client, *faultproxy.Proxy, *lease.Client) {
	t.Helper()
	p, err := faultproxy.New(backendAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ro.Addr = p.Addr()
	rdb := redis.NewClient(&ro)
	t.Cleanup(func() { rdb.Close() })
	direct, _ := newClient(t, nil)
	return lease.New(rdb, lo), p, direct
}

// goRedisOptions are the go-redis client options the SDK must be safe
// with: the defaults (which ignore a context's deadline on socket reads and
// retry a timed-out command), and the others a user might pick.
var goRedisOptions = []struct {
	name string
	ro   redis.Options
	lo   *lease.Options
}{
	{"go-redis defaults", redis.Options{}, nil},
	{"long read timeout and retries", redis.Options{ReadTimeout: 30 * time.Second, MaxRetries: 5}, nil},
	{"no read timeout", redis.Options{ReadTimeout: -1}, nil},
	{"context timeouts on", redis.Options{ContextTimeoutEnabled: true}, nil},
	{"auto-pipelining off", redis.Options{}, &lease.Options{NoAutoPipeline: true}},
}

// TestKeeperReportsLossBeforeAnotherHolderIsGranted is the first safety
// promise: a renew sent into a path that hangs (no answer, no error) must
// not keep the Keeper believing it holds the lease past the moment another
// client can be granted it, whatever the go-redis client's options.
func TestKeeperReportsLossBeforeAnotherHolderIsGranted(t *testing.T) {
	for _, tc := range goRedisOptions {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, p, thief := hungClient(t, tc.ro, tc.lo)
			name := uniq(t)
			const ttl = time.Second
			sent := time.Now()
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: ttl, Holder: "victim"})
			if err != nil {
				t.Fatal(err)
			}
			k := lease.Keep(ctx, c, l, &lease.KeeperOptions{Sent: sent})
			defer k.Stop()
			time.Sleep(ttl / 2) // one renewal has gone through
			lostAt := make(chan time.Time, 1)
			go func() {
				<-k.Done()
				lostAt <- time.Now() // no later than when it was reported
			}()
			p.Set(faultproxy.Hang)
			hung := time.Now()

			// The thief tries every 2ms; granted is when it sent the call
			// that got the lease, so the grant happened after it.
			var granted time.Time
			for deadline := time.Now().Add(5 * ttl); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
				at := time.Now()
				if _, err := thief.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "thief"}); err == nil {
					granted = at
					break
				}
			}
			if granted.IsZero() {
				t.Fatalf("the thief was never granted the lease in %v", 5*ttl)
			}
			var lost time.Time
			select {
			case lost = <-lostAt:
			case <-time.After(15 * time.Second):
				t.Fatalf("the keeper had not reported the loss 15s after the path hung (the thief was granted at +%v)", granted.Sub(hung))
			}
			if !errors.Is(k.Err(), lease.ErrLost) {
				t.Errorf("Err = %v, want a *LostError", k.Err())
			}
			if lost.After(granted) {
				t.Errorf("the keeper reported the loss at +%v after the path hung, %v after the thief was granted at +%v; want no later than the grant",
					lost.Sub(hung).Round(time.Millisecond), lost.Sub(granted).Round(time.Millisecond), granted.Sub(hung).Round(time.Millisecond))
			}
			t.Logf("path hung at 0; keeper reported the loss at +%v; thief granted at +%v",
				lost.Sub(hung).Round(time.Millisecond), granted.Sub(hung).Round(time.Millisecond))
		})
	}
}

// TestCallsEndWithTheirContext: every call returns when its context's
// deadline passes or it is cancelled, also with go-redis options that do
// not look at the context, and says it may have been applied when it may.
func TestCallsEndWithTheirContext(t *testing.T) {
	ops := []struct {
		name string
		call func(ctx context.Context, c *lease.Client, name, token string) error
	}{
		{"acquire", func(ctx context.Context, c *lease.Client, name, _ string) error {
			_, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Token: lease.NewToken()})
			return err
		}},
		{"acquire-wait", func(ctx context.Context, c *lease.Client, name, _ string) error {
			_, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Token: lease.NewToken(), Wait: time.Minute})
			return err
		}},
		{"renew", func(ctx context.Context, c *lease.Client, name, token string) error {
			_, err := c.Renew(ctx, name, token, 0)
			return err
		}},
		{"release", func(ctx context.Context, c *lease.Client, name, token string) error {
			return c.Release(ctx, name, token)
		}},
		{"get", func(ctx context.Context, c *lease.Client, name, _ string) error {
			_, err := c.Get(ctx, name)
			return err
		}},
		{"verify", func(ctx context.Context, c *lease.Client, name, token string) error {
			_, err := c.Verify(ctx, name, lease.Proof{Token: token})
			return err
		}},
		{"list", func(ctx context.Context, c *lease.Client, name, _ string) error {
			_, err := c.List(ctx, &lease.ListOptions{Prefix: name})
			return err
		}},
	}
	for _, opt := range goRedisOptions[:4] {
		for _, end := range []string{"deadline", "cancel"} {
			for _, op := range ops {
				t.Run(fmt.Sprintf("%s/%s/%s", opt.name, end, op.name), func(t *testing.T) {
					t.Parallel()
					c, p, _ := hungClient(t, opt.ro, opt.lo)
					name := uniq(t)
					l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
					if err != nil {
						t.Fatal(err)
					}
					p.Set(faultproxy.Hang)
					const after = 200 * time.Millisecond
					cctx, cancel := context.WithTimeout(ctx, after)
					if end == "cancel" {
						cctx, cancel = context.WithCancel(ctx)
						time.AfterFunc(after, cancel)
					}
					defer cancel()
					start := time.Now()
					err = op.call(cctx, c, name, l.Token)
					took := time.Since(start)
					if err == nil {
						t.Fatalf("%s through a hung path = nil error, want the context's", op.name)
					}
					if !errors.Is(err, cctx.Err()) {
						t.Errorf("%s: got %v, want an error that wraps %v", op.name, err, cctx.Err())
					}
					if took > after+300*time.Millisecond {
						t.Errorf("%s returned %v after its context ended (at %v), want at once", op.name, took-after, after)
					}
				})
			}
		}
	}
}
