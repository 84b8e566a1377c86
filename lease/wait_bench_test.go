package lease_test

// Benchmarks of waiting for a lease: Leasehold's SDK against redsync and
// redislock, which wait by polling, on the same redis-server in one run.
// b.N is the number of grants. Run them all with:
//
//	go test ./lease/ -run '^$' -bench 'Handoff|CommandsPerGrant' -benchtime 200x
//
// Each grant is held for benchHold before release. Metrics:
//   - p50-µs, p99-µs: handoff latency, from the start of Release to the
//     return of the next waiter's Acquire (the next holder's grant);
//   - cmds/grant: commands the clients sent, from INFO commandstats deltas
//     (EVALSHA/EVAL, SET for redsync, SUBSCRIBE and friends, PING, HELLO...);
//   - calls/grant: every command Redis ran, including those inside scripts;
//   - Handoff/ping-after-hold: a bare PING after benchHold of idleness, the
//     round trip that no handoff can beat on this machine.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

const (
	benchHold = 5 * time.Millisecond // how long each grant is held, unless a benchmark says
	benchTTL  = 10 * time.Second
)

// locker is one way to wait for and take a lock, as a contender would.
type locker struct {
	name string
	// lock waits for the lock and returns its unlock, or an error when it
	// gave up (the peers give up after their retries) or ctx ended.
	lock func(ctx context.Context, key string) (unlock func(), err error)
	// sent are the commands (INFO commandstats names) that the clients send
	// themselves; the other commands are run inside scripts.
	sent []string
}

var clientCmds = []string{"evalsha", "eval", "subscribe", "unsubscribe", "ssubscribe", "sunsubscribe",
	"ping", "hello", "client|setinfo", "client|setname", "script|load"}

func lockers(b *testing.B, rdb *redis.Client) []locker {
	lc := lease.New(rdb, nil)
	srv := httpapi.New(lease.New(rdb, nil), &httpapi.Options{Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	b.Cleanup(ts.Close)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 128
	hc := httpapi.NewClient(ts.URL, &httpapi.ClientOptions{HTTPClient: &http.Client{Transport: transport}})
	rs := redsync.New(goredis.NewPool(rdb))
	rl := redislock.New(rdb)
	return []locker{{
		name: "leasehold",
		lock: func(ctx context.Context, key string) (func(), error) {
			l, err := lc.Acquire(ctx, key, &lease.AcquireOptions{TTL: benchTTL, Wait: time.Minute})
			if err != nil {
				return nil, err
			}
			return func() { lc.Release(context.Background(), key, l.Token) }, nil
		},
		sent: clientCmds,
	}, {
		name: "leasehold-http",
		lock: func(ctx context.Context, key string) (func(), error) {
			l, err := hc.Acquire(ctx, key, &lease.AcquireOptions{TTL: benchTTL, Wait: time.Minute})
			if err != nil {
				return nil, err
			}
			return func() { hc.Release(context.Background(), key, l.Token) }, nil
		},
		sent: clientCmds,
	}, {
		name: "redsync",
		lock: func(ctx context.Context, key string) (func(), error) {
			m := rs.NewMutex(key, redsync.WithExpiry(benchTTL)) // default tries (32) and retry delays (50-250ms)
			if err := m.LockContext(ctx); err != nil {
				return nil, err
			}
			return func() { m.UnlockContext(context.Background()) }, nil
		},
		sent: append(slices.Clone(clientCmds), "set"), // SET NX PX is sent as is
	}, {
		name: "redislock",
		lock: func(ctx context.Context, key string) (func(), error) {
			l, err := rl.Obtain(ctx, key, benchTTL, &redislock.Options{RetryStrategy: redislock.LinearBackoff(10 * time.Millisecond)})
			if err != nil {
				return nil, err
			}
			return func() { l.Release(context.Background()) }, nil
		},
		sent: clientCmds,
	}}
}

// contend runs n contenders on key until grants grants were made: each
// takes the lock, holds it for benchHold and releases it, then queues again
// once somebody else has been granted it (so a releaser cannot take its own
// lock back at once, and at each release n-1 others wait). It returns the
// handoff latencies (all but the first grant's).
func contend(b *testing.B, l locker, key string, n, grants int, hold time.Duration) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		granted   int
		released  atomic.Int64 // ns since start of the last release; 0 before the first
		wg        sync.WaitGroup
		next      = make(chan struct{}) // closed at the next grant; guarded by mu
	)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				unlock, err := l.lock(ctx, key)
				if err != nil {
					continue // gave up (peers' retries ran out) or ctx ended
				}
				now := time.Since(start)
				mu.Lock()
				if r := released.Load(); r != 0 {
					latencies = append(latencies, now-time.Duration(r))
				}
				granted++
				last := granted >= grants
				close(next)
				next = make(chan struct{})
				mine := next
				mu.Unlock()
				if last {
					cancel()
					unlock()
					return
				}
				time.Sleep(hold)
				released.Store(int64(time.Since(start)))
				unlock()
				select { // queue again once another contender has it
				case <-mine:
				case <-ctx.Done():
				}
			}
		}()
	}
	wg.Wait()
	return latencies
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

var benchRun atomic.Int64

// BenchmarkHandoff: with 1, 8 and 64 waiters, how long from a release to
// the next holder's grant. Its first sub-benchmark, ping-after-hold, is the
// floor under every handoff: one bare PING to the same Redis after the same
// benchHold of idleness (on a VM an idle core wakes slowly, and a handoff
// needs at least one round trip).
func BenchmarkHandoff(b *testing.B) {
	rdb := shared.Client(b)
	b.Run("ping-after-hold", func(b *testing.B) {
		ctx := context.Background()
		lat := make([]time.Duration, 0, b.N)
		for range b.N {
			time.Sleep(benchHold)
			start := time.Now()
			if err := rdb.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
		b.ReportMetric(0, "ns/op")
	})
	for _, l := range lockers(b, rdb) {
		for _, waiters := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/waiters=%d", l.name, waiters), func(b *testing.B) {
				key := fmt.Sprintf("bench.handoff.%s.%d.%d", l.name, waiters, benchRun.Add(1))
				lat := contend(b, l, key, waiters+1, b.N+1, benchHold)
				b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
				b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkCommandsPerGrant: 64 contenders on one name; the Redis commands
// each grant costs, from INFO commandstats before and after.
func BenchmarkCommandsPerGrant(b *testing.B) {
	rdb := shared.Client(b)
	for _, hold := range []time.Duration{benchHold, 50 * time.Millisecond} {
		for _, l := range lockers(b, rdb) {
			b.Run(fmt.Sprintf("%s/contenders=64/hold=%s", l.name, hold), func(b *testing.B) {
				commandsPerGrant(b, rdb, l, hold)
			})
		}
	}
}

func commandsPerGrant(b *testing.B, rdb *redis.Client, l locker, hold time.Duration) {
	key := fmt.Sprintf("bench.cmds.%s.%d", l.name, benchRun.Add(1))
	before, err := commandStats(context.Background(), rdb)
	if err != nil {
		b.Fatal(err)
	}
	lat := contend(b, l, key, 64, b.N, hold)
	after, err := commandStats(context.Background(), rdb)
	if err != nil {
		b.Fatal(err)
	}
	var sent, all int64
	for cmd, n := range after {
		d := n - before[cmd]
		if cmd == "info" {
			continue
		}
		all += d
		if slices.Contains(l.sent, cmd) {
			sent += d
		}
	}
	b.ReportMetric(float64(sent)/float64(b.N), "cmds/grant")
	b.ReportMetric(float64(all)/float64(b.N), "calls/grant")
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(0, "ns/op")
	if testing.Verbose() {
		var top []string
		for cmd, n := range after {
			if d := n - before[cmd]; d > 0 && cmd != "info" {
				top = append(top, fmt.Sprintf("%s=%d", cmd, d))
			}
		}
		slices.Sort(top)
		b.Logf("%d grants: %s", b.N, strings.Join(top, " "))
	}
}
