package lease_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// BenchmarkAcquireRelease measures acquire+release cycles on unique names:
// two script calls, two round trips.
func BenchmarkAcquireRelease(b *testing.B) {
	c, _ := newClient(b, nil)
	var n atomic.Int64
	prefix := uniq(b) + ":"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := prefix + strconv.FormatInt(n.Add(1), 10)
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second})
			if err != nil {
				b.Error(err)
				return
			}
			if err := c.Release(ctx, name, l.Token); err != nil {
				b.Error(err)
				return
			}
		}
	})
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

// BenchmarkRenew measures one renew of a held lease.
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
