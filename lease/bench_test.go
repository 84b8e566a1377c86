package lease_test

// Benchmarks of the SDK's hot path, with allocations, beside bsm/redislock on
// the same redis-server so allocs/op compare directly. The machine these run
// on is small and shared: compare medians of several runs and ratios from one
// run, not absolute figures. For example:
//
//	go test ./lease/ -run '^$' -bench 'Acquire$|Renew$|Release$|Cycle' -benchtime 20000x -count 3

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// BenchmarkAcquire measures one Acquire of a free lease (unique names; the
// leases are left to expire).
func BenchmarkAcquire(b *testing.B) {
	c, _ := newClient(b, nil)
	names := benchNames(b, b.N)
	opts := &lease.AcquireOptions{TTL: 10 * time.Second}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Acquire(ctx, names[i], opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenew measures one Renew of a held lease.
func BenchmarkRenew(b *testing.B) {
	c, _ := newClient(b, nil)
	l, err := c.Acquire(ctx, uniq(b)+":"+strconv.Itoa(b.N), &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Release(ctx, l.Name, l.Token)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Renew(ctx, l.Name, l.Token, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelease measures one Release of a held lease; the leases are
// acquired before the timer starts.
func BenchmarkRelease(b *testing.B) {
	c, _ := newClient(b, nil)
	names := benchNames(b, b.N)
	tokens := make([]string, b.N)
	for i, name := range names {
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = l.Token
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Release(ctx, names[i], tokens[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCycle measures acquire+release cycles on unique names with c
// goroutines (c=1, 8, 64), for the lease SDK with its defaults (the
// autopipeliner from 16 calls in flight) and with Options.NoAutoPipeline and, on the same redis-server, for bsm/redislock's
// Obtain+Release. Each cycle is two scripts, two round trips, for every
// client. allocs/op at c=1 is the figure to compare: at higher c the
// goroutines' own allocations are spread over the cycles.
func BenchmarkCycle(b *testing.B) {
	type cycler func(rdb *redis.Client) func(name string) error
	clients := []struct {
		name string
		new  cycler
	}{
		{"lease", func(rdb *redis.Client) func(string) error { return leaseCycle(lease.New(rdb, nil)) }},
		{"lease-plain", func(rdb *redis.Client) func(string) error {
			return leaseCycle(lease.New(rdb, &lease.Options{NoAutoPipeline: true}))
		}},
		{"redislock", func(rdb *redis.Client) func(string) error {
			rl := redislock.New(rdb)
			return func(name string) error {
				l, err := rl.Obtain(ctx, name, 10*time.Second, nil)
				if err != nil {
					return err
				}
				return l.Release(ctx)
			}
		}},
	}
	for _, conc := range []int{1, 8, 64} {
		for _, cl := range clients {
			b.Run(fmt.Sprintf("c=%d/%s", conc, cl.name), func(b *testing.B) {
				rdb := redis.NewClient(&redis.Options{Addr: backendAddr, PoolSize: 64})
				defer rdb.Close()
				cycle := cl.new(rdb)
				prefix := uniq(b) + ":"
				if err := cycle(prefix + "warm"); err != nil { // load the scripts, dial
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				concurrently(b, conc, func(i int64) error { return cycle(prefix + strconv.FormatInt(i, 10)) })
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
			})
		}
	}
}

func leaseCycle(c *lease.Client) func(name string) error {
	opts := &lease.AcquireOptions{TTL: 10 * time.Second}
	return func(name string) error {
		l, err := c.Acquire(ctx, name, opts)
		if err != nil {
			return err
		}
		return c.Release(ctx, name, l.Token)
	}
}

// BenchmarkContended has every goroutine try one name: a try either wins
// (then releases) or gets a *HeldError. It reports grants per second.
func BenchmarkContended(b *testing.B) {
	c, _ := newClient(b, nil)
	name := uniq(b)
	var grants atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second})
			if err != nil {
				continue
			}
			grants.Add(1)
			if err := c.Release(ctx, name, l.Token); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(grants.Load())/b.Elapsed().Seconds(), "grants/s")
}

// concurrently calls f(i) for i in [0, b.N) from n goroutines, and stops at
// the first error.
func concurrently(b *testing.B, n int, f func(i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				if err := f(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// benchNames returns n unique lease names, made before the timer starts.
func benchNames(b *testing.B, n int) []string {
	prefix := uniq(b) + ":"
	names := make([]string, n)
	for i := range names {
		names[i] = prefix + strconv.Itoa(i)
	}
	return names
}

// BenchmarkRenewDeadline is BenchmarkRenew with a context that has a
// deadline, as a Keeper's and the HTTP server's calls have. With go-redis's
// defaults the call then runs on a goroutine of its own, so that it returns
// at the deadline (see bounded in script.go); a client with
// ContextTimeoutEnabled bounds its socket calls by the deadline itself and
// needs none. Compare with BenchmarkRenew (context.Background: neither).
func BenchmarkRenewDeadline(b *testing.B) {
	for _, bc := range []struct {
		name string
		cte  bool
	}{{"defaults", false}, {"context-timeouts", true}} {
		b.Run(bc.name, func(b *testing.B) {
			rdb := redis.NewClient(&redis.Options{Addr: backendAddr, ContextTimeoutEnabled: bc.cte})
			defer rdb.Close()
			c := lease.New(rdb, nil)
			l, err := c.Acquire(ctx, uniq(b)+":"+strconv.Itoa(b.N), &lease.AcquireOptions{TTL: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Release(ctx, l.Name, l.Token)
			dctx, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Renew(dctx, l.Name, l.Token, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
