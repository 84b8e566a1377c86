package lease_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// BenchmarkHeldLeaseMemory measures the Redis memory one held lease takes,
// on a redis-server of its own: b.N leases are acquired (names of 11 bytes,
// "job-0000001", with no holder label or one of 9 bytes, no metadata) and
// held, and
//   - B/lease is the growth of INFO memory's used_memory, less that of
//     the connections' buffers (mem_clients_normal, reported apart as
//     clients-B/lease), divided by b.N: everything the leases take, from
//     the keyspace's hash tables and expiry entries to the allocator's
//     size classes;
//   - hash-B and fence-B are MEMORY USAGE of one lease's hash and of its
//     fence counter key.
//
// The figures depend on the name's length, through the keys' allocation
// size classes; see docs/engine.md.
//
// Use a b.N large enough that the hash tables' growth averages out:
//
//	go test ./lease/ -run '^$' -bench HeldLeaseMemory -benchtime 100000x
func BenchmarkHeldLeaseMemory(b *testing.B) {
	for _, tc := range []struct{ name, holder string }{{"bare", ""}, {"holder", "worker-01"}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := redistest.Start(b)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 16})
			defer rdb.Close()
			c := lease.New(rdb, nil)
			opts := &lease.AcquireOptions{TTL: time.Hour, Holder: tc.holder}
			name := func(i int64) string { return fmt.Sprintf("job-%07d", i) }
			// Load the scripts and open and use the connections before the
			// baseline, with leases of other names (their fence keys stay).
			var wg sync.WaitGroup
			for g := range 16 {
				wg.Go(func() {
					for i := range 100 {
						if err := leaseCycle(c)(fmt.Sprintf("warm-%d-%d", g, i)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			before, beforeClients := usedMemory(b, rdb)
			b.ResetTimer()
			concurrently(b, 16, func(i int64) error {
				_, err := c.Acquire(ctx, name(i), opts)
				return err
			})
			b.StopTimer()
			after, afterClients := usedMemory(b, rdb)
			b.ReportMetric(float64(after-before-(afterClients-beforeClients))/float64(b.N), "B/lease")
			b.ReportMetric(float64(afterClients-beforeClients)/float64(b.N), "clients-B/lease")
			hash, err := rdb.MemoryUsage(ctx, "leasehold:{"+name(0)+"}", 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			fence, err := rdb.MemoryUsage(ctx, "leasehold:{"+name(0)+"}:fence", 0).Result()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(hash), "hash-B")
			b.ReportMetric(float64(fence), "fence-B")
			b.ReportMetric(0, "ns/op") // the timing is of no interest here
		})
	}
}

// usedMemory returns INFO memory's used_memory and mem_clients_normal
// (the connections' buffers), in bytes.
func usedMemory(b *testing.B, rdb *redis.Client) (used, clients int64) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	fields := map[string]*int64{"used_memory": &used, "mem_clients_normal": &clients}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if p := fields[k]; p != nil {
			if *p, err = strconv.ParseInt(v, 10, 64); err != nil {
				b.Fatal(err)
			}
			delete(fields, k)
		}
	}
	if len(fields) > 0 {
		b.Fatalf("INFO memory lacks %v", fields)
	}
	return used, clients
}
