package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// memWorkers is how many callers acquire and release the leases of the
// memory figure.
const memWorkers = 64

// memResult is Redis's memory for held leases.
type memResult struct {
	n        int
	hash     int64   // MEMORY USAGE of one lease's hash, leasehold:{NAME}
	released int64   // MEMORY USAGE of a released name's hash: its last fence, kept for the retention
	perHeld  float64 // INFO memory used_memory growth per held lease
	perFreed float64 // used_memory left per name after release: its last fence, until the retention
	perGone  float64 // used_memory left per name after the retention (1s here)
}

// memEstimate is a rough time for measureMemory on this kind of machine.
func memEstimate(n int) time.Duration { return time.Duration(n) * 2 * time.Second / 8000 }

// measureMemory holds n leases taken through the SDK and reads Redis's
// memory, then releases them.
func measureMemory(ctx context.Context, e *env, n int, prefix string, stderr io.Writer) (*memResult, error) {
	rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr, PoolSize: memWorkers})
	defer rdb.Close()
	c := lease.New(rdb, nil)
	defer c.Close()
	name := func(i int) string { return prefix + ":" + strconv.Itoa(i) }
	cycle := func(ctx context.Context, i int) error {
		l, err := c.Acquire(ctx, prefix+"-warm:"+strconv.Itoa(i), &lease.AcquireOptions{TTL: time.Minute})
		if err != nil {
			return err
		}
		return c.Release(ctx, l.Name, l.Token)
	}
	// Open every connection before the first reading, so that their buffers
	// are not counted as lease memory.
	if err := forEach(ctx, memWorkers, memWorkers, cycle); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	before, err := usedMemory(ctx, e.stats)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "memory: acquiring %d leases\n", n)
	tokens := make([]string, n)
	err = forEach(ctx, n, memWorkers, func(ctx context.Context, i int) error {
		l, err := c.Acquire(ctx, name(i), &lease.AcquireOptions{TTL: 10 * time.Minute})
		if err == nil {
			tokens[i] = l.Token
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("memory: acquire: %w", err)
	}
	held, err := usedMemory(ctx, e.stats)
	if err != nil {
		return nil, err
	}
	m := &memResult{n: n, perHeld: float64(held-before) / float64(n)}
	if m.hash, err = e.stats.MemoryUsage(ctx, "leasehold:{"+name(0)+"}", 0).Result(); err != nil {
		return nil, fmt.Errorf("MEMORY USAGE: %w", err)
	}
	fmt.Fprintf(stderr, "memory: releasing %d leases\n", n)
	err = forEach(ctx, n, memWorkers, func(ctx context.Context, i int) error {
		return c.Release(ctx, name(i), tokens[i])
	})
	if err != nil {
		return nil, fmt.Errorf("memory: release: %w", err)
	}
	after, err := usedMemory(ctx, e.stats)
	if err != nil {
		return nil, err
	}
	m.perFreed = float64(after-before) / float64(n)
	if m.released, err = e.stats.MemoryUsage(ctx, "leasehold:{"+name(0)+"}", 0).Result(); err != nil {
		return nil, fmt.Errorf("MEMORY USAGE: %w", err)
	}
	if m.perGone, err = afterRetention(ctx, e, n, prefix+"-gone", stderr); err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "memory: %.0f B per held lease (used_memory), %d B hash (MEMORY USAGE); %.0f B per name after release, %.0f B after the retention\n",
		m.perHeld, m.hash, m.perFreed, m.perGone)
	return m, nil
}

// afterRetention takes and releases n names with a fence retention of 1s,
// waits it out, and returns the used_memory left per name.
func afterRetention(ctx context.Context, e *env, n int, prefix string, stderr io.Writer) (float64, error) {
	rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr, PoolSize: memWorkers})
	defer rdb.Close()
	c := lease.New(rdb, &lease.Options{MaxTTL: time.Second, FenceRetention: time.Second})
	defer c.Close()
	if err := forEach(ctx, memWorkers, memWorkers, func(ctx context.Context, i int) error {
		return rdb.Ping(ctx).Err() // open the connections before the first reading
	}); err != nil {
		return 0, fmt.Errorf("memory: %w", err)
	}
	before, err := usedMemory(ctx, e.stats)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(stderr, "memory: %d names taken and released with a 1s fence retention\n", n)
	err = forEach(ctx, n, memWorkers, func(ctx context.Context, i int) error {
		l, err := c.Acquire(ctx, prefix+":"+strconv.Itoa(i), &lease.AcquireOptions{TTL: 500 * time.Millisecond})
		if err != nil {
			return err
		}
		return c.Release(ctx, l.Name, l.Token)
	})
	if err != nil {
		return 0, fmt.Errorf("memory: %w", err)
	}
	// The retention runs out 1s after each release; Redis drops expired
	// keys by sampling (and on access): wait until none is left, or 10s.
	sleepUntil(ctx, time.Now().Add(1500*time.Millisecond))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		n, err := e.stats.DBSize(ctx).Result()
		if err != nil {
			return 0, err
		}
		keys, _, err := e.stats.Scan(ctx, 0, prefix+":*", n+1).Result()
		if err != nil {
			return 0, err
		}
		if len(keys) == 0 {
			break
		}
	}
	after, err := usedMemory(ctx, e.stats)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n), nil
}

// forEach calls fn(ctx, i) for i in [0, n) from workers goroutines, and
// returns the first error, after which the others stop.
func forEach(ctx context.Context, n, workers int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(workers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}
