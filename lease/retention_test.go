package lease_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

// What a name keeps after its last grant goes with the fence retention:
// 20,000 names released (and some left to expire, and some waited on)
// leave no key behind once it has passed, and a name used again after it
// gets a fence from Redis's clock.
func TestFenceRetentionLeavesNothing(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	const retention = 3 * time.Second
	c := lease.New(rdb, &lease.Options{MaxTTL: retention, FenceRetention: retention})
	defer c.Close()
	if got := c.FenceRetention(); got != retention {
		t.Fatalf("got FenceRetention %v, want %v", got, retention)
	}
	const n = 20000
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	next := make(chan int)
	for range 64 {
		wg.Go(func() {
			for i := range next {
				name := "ret:" + strconv.Itoa(i)
				// Every tenth expires rather than being released; the
				// others live 1s, so that a release on a loaded machine
				// (-race, 64 goroutines) comes before their expiry: with
				// 100ms, 29 of 20,000 did not ("not found").
				ttl := time.Second
				if i%10 == 0 {
					ttl = 100 * time.Millisecond
				}
				l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: ttl})
				if err == nil && i%10 != 0 {
					err = c.Release(ctx, name, l.Token)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d cycles failed, the first: %v", len(errs), errs[0])
	}
	// Some waiters too, who leave the queue when their wait ends.
	held, err := c.Acquire(ctx, "ret:waited", &lease.AcquireOptions{TTL: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.Acquire(ctx, "ret:waited", &lease.AcquireOptions{TTL: 100 * time.Millisecond, Wait: 50 * time.Millisecond})
	}
	_ = held
	if h, _ := rdb.HGetAll(ctx, "leasehold:{ret:19999}").Result(); len(h) != 1 || h["f"] == "" {
		t.Fatalf("got hash %v for a name just released, want only its fence, kept for the retention", h)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		size, err := rdb.DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if size == 0 {
			break
		}
		if time.Now().After(deadline) {
			keys, _, _ := rdb.Scan(ctx, 0, "*", 10).Result()
			t.Fatalf("%d keys left 20s after a retention of %v, e.g. %v", size, retention, keys)
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := time.Now().UnixMicro()
	l, err := c.Acquire(context.Background(), "ret:1", &lease.AcquireOptions{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence < before {
		t.Errorf("got fence %d for a name used again after the retention, want Redis TIME in µs (>= %d)", l.Fence, before)
	}
}
