package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/redis/go-redis/v9"
)

// config is one configuration of a round: a driver at one concurrency.
type config struct {
	name      string  // the driver: "sdk", "raw", "redislock", ...
	c         int     // callers
	contended bool    // all callers on one name, waiting for it
	srv       *server // the HTTP server process whose CPU counts, or nil
	open      opener
	procs     string // contended, each caller a worker process of its own running this driver (workerOpeners); "" in-process
}

func (c config) String() string {
	if c.procs != "" {
		return fmt.Sprintf("contended %s, %d processes", c.name, c.c)
	}
	if c.contended {
		return fmt.Sprintf("contended %s c=%d", c.name, c.c)
	}
	return fmt.Sprintf("%s c=%d", c.name, c.c)
}

// sample is one measurement of one configuration. Per-cycle figures are
// totals over the measured window divided by the cycles completed in it.
type sample struct {
	cycles    int64         // cycles (grants) completed in the window
	perSec    float64       // cycles per second
	p50, p99  time.Duration // latency of one cycle, from the start of the acquire to the end of the release
	clientCPU time.Duration // CPU of the bench process (the client) per cycle
	serverCPU time.Duration // CPU of the HTTP server process per cycle; 0 in-process
	redisCPU  time.Duration // CPU of redis-server per cycle
	sent      float64       // commands the client sent to Redis (etcd: gRPC requests) per cycle; -1 over HTTP
	calls     float64       // commands Redis ran per cycle, those inside scripts included; -1 when Redis is not the store
	fairness  float64       // the least busy caller's cycles over the mean: 1 is fair, 0 is a caller starved
	handoff   handoff       // contended: from a release to the next grant
	errors    int64         // failed cycles (other than "held")
	firstErr  error
}

// measure runs cfg for warmup+duration and measures the last duration.
func measure(ctx context.Context, e *env, cfg config, warmup, duration time.Duration, id string) (sample, error) {
	wait := time.Duration(0)
	if cfg.contended {
		wait = warmup + duration + 5*time.Second // longer than the run: only its end stops a wait
	}
	d, err := cfg.open(ctx, e.redisAddr, wait)
	if err != nil {
		return sample{}, fmt.Errorf("%s: open: %w", cfg, err)
	}
	defer d.close()

	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+duration)
	runCtx, cancel := context.WithDeadline(ctx, to)
	defer cancel()

	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		errCount atomic.Int64
		errOnce  sync.Once
		firstErr error
	)
	hists := make([]*hdrhistogram.Histogram, cfg.c)
	grants := make([][]grantRec, cfg.c) // contended only: each caller's grants
	for i := range hists {
		h := newHistogram()
		hists[i] = h
		cycle := d.worker()
		wg.Go(func() {
			for runCtx.Err() == nil {
				name := id + ":one"
				if !cfg.contended {
					name = id + ":" + strconv.FormatInt(next.Add(1), 10)
				}
				var st stamps
				t0 := time.Now()
				err := cycle(runCtx, name, &st)
				t1 := time.Now()
				switch {
				case runCtx.Err() != nil:
					return // the window closed during this cycle
				case errors.Is(err, errNotGranted):
					continue
				case err != nil:
					errOnce.Do(func() { firstErr = err })
					if errCount.Add(1) >= 1000 {
						cancel() // something is broken; do not spin
					}
					continue
				}
				if t1.After(from) && !t1.After(to) {
					h.RecordValue(t1.Sub(t0).Microseconds())
					if cfg.contended && len(grants[i]) < maxGrantRecs {
						grants[i] = append(grants[i], grantRec{t0.UnixNano(), st.granted.UnixNano(), st.releasing.UnixNano(), t1.UnixNano()})
					}
				}
			}
		})
	}

	var before, after snapshot
	sleepUntil(runCtx, from)
	before, err = e.snapshot(runCtx, cfg.srv, d.sent)
	if err == nil {
		sleepUntil(runCtx, to)
		after, err = e.snapshot(ctx, cfg.srv, d.sent)
	}
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return sample{}, fmt.Errorf("interrupted during %s: %w", cfg, ctx.Err())
	}
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", cfg, err)
	}

	least := hists[0].TotalCount()
	for _, h := range hists {
		least = min(least, h.TotalCount())
	}
	all := hists[0]
	for _, h := range hists[1:] {
		all.Merge(h)
	}
	s := sample{cycles: all.TotalCount(), errors: errCount.Load(), firstErr: firstErr, sent: -1}
	if s.cycles > 0 {
		s.fairness = float64(least) / (float64(s.cycles) / float64(cfg.c))
	}
	if s.cycles == 0 {
		if firstErr != nil {
			return s, fmt.Errorf("%s: no cycle completed: %w", cfg, firstErr)
		}
		return s, fmt.Errorf("%s: no cycle completed in %s", cfg, duration)
	}
	n := float64(s.cycles)
	per := func(d time.Duration) time.Duration { return time.Duration(float64(d) / n) }
	s.perSec = n / after.at.Sub(before.at).Seconds()
	s.p50 = time.Duration(all.ValueAtPercentile(50)) * time.Microsecond
	s.p99 = time.Duration(all.ValueAtPercentile(99)) * time.Microsecond
	s.clientCPU = per(after.client - before.client)
	s.serverCPU = per(after.server - before.server)
	s.redisCPU = per(after.redisCPU - before.redisCPU)
	s.calls = float64(after.calls-before.calls) / n
	if d.sent != nil {
		s.sent = float64(after.sent-before.sent) / n
	}
	if cfg.contended {
		s.handoff = handoffs(slices.Concat(grants...))
	}
	return s, nil
}

// newHistogram is a latency histogram in µs: 1µs to 1 minute at 3
// significant digits, about 0.1% error, 40 KiB.
func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
}

// maxGrantRecs bounds the grants one caller records for the handoff figure.
const maxGrantRecs = 1 << 20

// grantRec is one contended cycle's instants in Unix nanoseconds, taken by
// one clock that every process on the host shares (the wall clock): the
// start of the acquire, the grant, the start of the release, the end of the
// release.
type grantRec [4]int64

func (g grantRec) start() int64     { return g[0] }
func (g grantRec) granted() int64   { return g[1] }
func (g grantRec) releasing() int64 { return g[2] }
func (g grantRec) done() int64      { return g[3] }

// handoff is how long a contended name lay free between two holders.
type handoff struct {
	n        int           // handoffs measured
	p50, p99 time.Duration // from the start of a release to the next grant
	overlaps int           // grants that came before the previous holder began its release: a broken lock, or clocks that disagree
}

// handoffs pairs each grant with the next one in the order of grant and
// measures the time from the earlier one's release to the later one's grant.
// Grants of one name never overlap, so that order is the order of holders.
func handoffs(recs []grantRec) handoff {
	slices.SortFunc(recs, func(a, b grantRec) int { return cmp.Compare(a.granted(), b.granted()) })
	h := newHistogram()
	var out handoff
	for i := 1; i < len(recs); i++ {
		d := recs[i].granted() - recs[i-1].releasing()
		if d < 0 {
			out.overlaps++
			continue
		}
		// Below 1µs counts as 1µs, the histogram's floor.
		h.RecordValue(max(1, time.Duration(d).Microseconds()))
	}
	out.n = int(h.TotalCount())
	if out.n > 0 {
		out.p50 = time.Duration(h.ValueAtPercentile(50)) * time.Microsecond
		out.p99 = time.Duration(h.ValueAtPercentile(99)) * time.Microsecond
	}
	return out
}

func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// snapshot is the counters that a measurement takes the difference of.
type snapshot struct {
	at       time.Time
	client   time.Duration // user+system CPU of this process
	server   time.Duration // user+system CPU of the HTTP server process
	redisCPU time.Duration // used_cpu_user+used_cpu_sys of redis-server
	calls    int64         // commands Redis ran, but INFO (the bench's own)
	sent     int64         // commands the client sent
}

func (e *env) snapshot(ctx context.Context, srv *server, sent *cmdCounter) (snapshot, error) {
	s := snapshot{at: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, fmt.Errorf("getrusage: %w", err)
	}
	s.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if srv != nil {
		var err error
		if s.server, err = srv.cpu(); err != nil {
			return s, err
		}
	}
	if sent != nil {
		s.sent = sent.n.Load()
	}
	info, err := e.stats.Info(ctx, "cpu", "commandstats").Result()
	if err != nil {
		return s, fmt.Errorf("INFO cpu commandstats: %w", err)
	}
	s.redisCPU, s.calls = parseInfo(info)
	return s, nil
}

// parseInfo reads used_cpu_user+used_cpu_sys and the sum of calls over all
// commands but INFO from an INFO cpu commandstats answer. Calls made inside
// scripts count there too, under their own names.
func parseInfo(info string) (cpu time.Duration, calls int64) {
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch {
		case k == "used_cpu_user" || k == "used_cpu_sys":
			sec, _ := strconv.ParseFloat(v, 64)
			cpu += time.Duration(sec * float64(time.Second))
		case strings.HasPrefix(k, "cmdstat_") && k != "cmdstat_info":
			for f := range strings.SplitSeq(v, ",") {
				if n, ok := strings.CutPrefix(f, "calls="); ok {
					c, _ := strconv.ParseInt(n, 10, 64)
					calls += c
				}
			}
		}
	}
	return cpu, calls
}

// usedMemory is INFO memory's used_memory in bytes.
func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO memory: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}
