package lease_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// censusClient is a Client whose key prefix is this test's alone, on a
// redis-server of its own (a census's limit counts every key SCAN looks
// at, other tests' too), or on the embedded store while
// TestEmbeddedConformance runs; and a go-redis client to look at the keys.
func censusClient(t *testing.T) (*lease.Client, *redis.Client, string) {
	prefix := uniq(t) + ":"
	opts := &lease.Options{KeyPrefix: prefix}
	if backendDialer != nil {
		c, rdb := newClient(t, opts)
		return c, rdb, prefix
	}
	rdb := redistest.Start(t).Client(t)
	return lease.New(rdb, clientOptions(opts)), rdb, prefix
}

// queueWaiters starts n acquires of name that wait until the test ends, and
// returns once name's queue holds them all.
func queueWaiters(t *testing.T, c *lease.Client, name string, n int) {
	t.Helper()
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Acquire(wctx, name, &lease.AcquireOptions{Wait: time.Minute})
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := c.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if l.Waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d waiting on %s after 5s, want %d", l.Waiting, name, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCensusCountsLiveGrantsAndQueuedWaiters(t *testing.T) {
	c, rdb, prefix := censusClient(t)
	if got, err := c.Census(ctx, 0); err != nil || *got != (lease.Census{}) {
		t.Fatalf("empty prefix: got %+v, %v, want all zero", got, err)
	}
	const held = 5
	for i := 0; i < held; i++ {
		if _, err := c.Acquire(ctx, fmt.Sprintf("job-%d", i), &lease.AcquireOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	// A released lease and an expired one keep their hash (the fence) but
	// hold no live grant: they are not counted.
	rel, err := c.Acquire(ctx, "released", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, rel.Name, rel.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Acquire(ctx, "expired", &lease.AcquireOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := redistest.ExpireLeaseIn(ctx, rdb, prefix+"{expired}", -time.Millisecond); err != nil {
		t.Fatal(err)
	}
	queueWaiters(t, c, "job-0", 3)
	queueWaiters(t, c, "job-1", 1)

	got, err := c.Census(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := lease.Census{Held: held, Waiters: 4, Keys: held + 2 + 2}
	if *got != want {
		t.Errorf("got %+v, want %+v", *got, want)
	}
}

func TestCensusStopsAtItsLimit(t *testing.T) {
	c, _, _ := censusClient(t)
	const n = 300
	for i := 0; i < n; i++ {
		if _, err := c.Acquire(ctx, fmt.Sprintf("job-%03d", i), &lease.AcquireOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		limit     int
		truncated bool
	}{
		{1, true}, {10, true}, {n - 1, true}, {2 * n, false}, {10 * n, false},
	} {
		t.Run(fmt.Sprint("limit ", tc.limit), func(t *testing.T) {
			got, err := c.Census(ctx, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got.Truncated != tc.truncated || got.Keys > tc.limit || got.Held > got.Keys ||
				!tc.truncated && got.Held != n {
				t.Errorf("got %+v, want Truncated %v, at most %d keys, and all %d held when not truncated",
					*got, tc.truncated, tc.limit, n)
			}
		})
	}
}

func TestCensusOnABrokenBackendFails(t *testing.T) {
	rs := redistest.Start(t)
	c := lease.New(rs.Client(t), clientOptions(nil))
	rs.Stop()
	if got, err := c.Census(ctx, 0); err == nil {
		t.Fatalf("got %+v from a stopped Redis, want an error", got)
	}
}

// TestClusterCensus counts on every master of a real three-master Cluster,
// each with its own clock, keys of many slots in one pipeline.
func TestClusterCensus(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	c := lease.New(rdb, clientOptions(nil))
	const n = 40
	masters := map[string]bool{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("jobs:%02d", i)
		if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute}); err != nil {
			t.Fatalf("Acquire %s: %v", name, err)
		}
		m, err := rdb.MasterForKey(ctx, "leasehold:{"+name+"}")
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Fatalf("all %d leases landed on one master: the test proves nothing", n)
	}
	queueWaiters(t, c, "jobs:03", 2)
	queueWaiters(t, c, "jobs:17", 1)
	got, err := c.Census(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (lease.Census{Held: n, Waiters: 3, Keys: n + 2}); *got != want {
		t.Errorf("got %+v, want %+v", *got, want)
	}
	got, err = c.Census(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Truncated || got.Keys > 5 || got.Held > 5 {
		t.Errorf("limit 5: got %+v, want Truncated and at most 5 keys and held", *got)
	}
}
