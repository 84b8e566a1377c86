package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

// gauges reads the unlabelled series of one scrape of /metrics, by name.
func gauges(t testing.TB, e *env) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, line := range strings.Split(metricsText(t, e), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "#") || strings.Contains(f[0], "{") {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatalf("metrics: line %q: %v", line, err)
		}
		out[f[0]] = v
	}
	return out
}

// wantGauges checks the gauges named in want, and that those in absent are
// not exported.
func wantGauges(t testing.TB, got map[string]float64, want map[string]float64, absent ...string) {
	t.Helper()
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("got %s %v (exported: %v), want %v", name, g, ok, v)
		}
	}
	for _, name := range absent {
		if g, ok := got[name]; ok {
			t.Errorf("got %s %v, want it not exported", name, g)
		}
	}
}

// waitHTTP starts n acquires of name through e that wait until the test
// ends (their clients then go away, which ends their waits).
func waitHTTP(t *testing.T, e *env, name string, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", e.ts.URL+"/v1/leases/"+name+"/acquire?wait=1m", nil)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}()
	}
}

func TestMetricsCountLeasesHeldAndWaitersOfEveryServer(t *testing.T) {
	rs := redistest.Start(t) // of its own: the census counts every lease in Redis
	e := newEnv(t, &envOptions{redis: rs, censusInterval: time.Nanosecond})
	wantGauges(t, gauges(t, e), map[string]float64{
		"leasehold_backend_up": 1, "leasehold_leases_held": 0, "leasehold_waiters": 0, "leasehold_leases_sample_truncated": 0,
	})

	const held = 4
	for i := 0; i < held; i++ {
		e.do("POST", fmt.Sprintf("/v1/leases/job-%d/acquire?ttl=1m", i), "").want(t, 200, "")
	}
	r := e.do("POST", "/v1/leases/gone/acquire", "").want(t, 200, "")
	e.do("POST", "/v1/leases/gone/release?token="+r.str("token"), "").want(t, 200, "")
	waitHTTP(t, e, "job-0", 2)
	waitHTTP(t, e, "job-1", 1)
	waitFor(t, func() bool { return gauges(t, e)["leasehold_waiters"] == 3 })

	got := gauges(t, e)
	wantGauges(t, got, map[string]float64{
		"leasehold_backend_up": 1, "leasehold_leases_held": held, "leasehold_waiters": 3,
		"leasehold_leases_sample_truncated": 0, "leasehold_waiting_acquires": 3,
	})
	if age, took := got["leasehold_leases_sample_age_seconds"], got["leasehold_leases_sample_duration_seconds"]; age < 0 || age > 1 || took <= 0 || took > 1 {
		t.Errorf("got sample age %vs and duration %vs, want each in (0, 1]", age, took)
	}

	// Another server on the same Redis sees the same leases and waiters,
	// though none of the waiting requests is its own.
	other := newEnv(t, &envOptions{redis: rs, censusInterval: time.Nanosecond})
	wantGauges(t, gauges(t, other), map[string]float64{
		"leasehold_leases_held": held, "leasehold_waiters": 3, "leasehold_waiting_acquires": 0,
	})
}

func TestMetricsReuseTheCensusForItsInterval(t *testing.T) {
	rs := redistest.Start(t)
	e := newEnv(t, &envOptions{redis: rs, censusInterval: time.Hour})
	first := gauges(t, e)
	wantGauges(t, first, map[string]float64{"leasehold_leases_held": 0})
	e.do("POST", "/v1/leases/"+uniq(t)+"/acquire", "").want(t, 200, "")
	time.Sleep(20 * time.Millisecond)
	again := gauges(t, e)
	wantGauges(t, again, map[string]float64{"leasehold_leases_held": 0, "leasehold_backend_up": 1})
	if a, b := first["leasehold_leases_sample_age_seconds"], again["leasehold_leases_sample_age_seconds"]; b < a+0.02 {
		t.Errorf("got sample ages %v then %v, want the second 20ms older at least", a, b)
	}
}

func TestMetricsCensusStopsAtItsLimit(t *testing.T) {
	rs := redistest.Start(t)
	const limit = 10
	e := newEnv(t, &envOptions{redis: rs, censusInterval: time.Nanosecond, censusLimit: limit})
	for i := 0; i < 3*limit; i++ {
		if _, err := e.lc.Acquire(bg, fmt.Sprint("job-", i), &lease.AcquireOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	got := gauges(t, e)
	wantGauges(t, got, map[string]float64{"leasehold_leases_sample_truncated": 1})
	if n := got["leasehold_leases_held"]; n > limit {
		t.Errorf("got leasehold_leases_held %v, want at most the limit %d", n, limit)
	}
}

func TestMetricsBackendUpFollowsRedis(t *testing.T) {
	rs := redistest.Start(t)
	e := newEnv(t, &envOptions{redis: rs, redisTimeout: 300 * time.Millisecond, censusInterval: time.Nanosecond})
	e.do("POST", "/v1/leases/"+uniq(t)+"/acquire?ttl=1m", "").want(t, 200, "")
	wantGauges(t, gauges(t, e), map[string]float64{"leasehold_backend_up": 1, "leasehold_leases_held": 1})

	rs.Stop()
	// The census gauges keep the last census; its age tells it is old.
	wantGauges(t, gauges(t, e), map[string]float64{"leasehold_backend_up": 0, "leasehold_leases_held": 1})
	e.do("GET", "/readyz", "").want(t, 503, "backend_unavailable")

	// A Redis that comes back empty, without the scripts: the check loads
	// them, as /readyz does.
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return gauges(t, e)["leasehold_backend_up"] == 1 })
	wantGauges(t, gauges(t, e), map[string]float64{"leasehold_leases_held": 0})
}

func TestMetricsWithoutCensus(t *testing.T) {
	e := newEnv(t, &envOptions{censusInterval: -1})
	wantGauges(t, gauges(t, e), map[string]float64{"leasehold_backend_up": 1}, "leasehold_leases_held", "leasehold_waiters",
		"leasehold_leases_sample_truncated", "leasehold_leases_sample_age_seconds", "leasehold_leases_sample_duration_seconds")
}
