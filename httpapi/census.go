package httpapi

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leasehold/leasehold/lease"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultCensusInterval is how long a census of the leases is reused,
// unless Options.CensusInterval says otherwise.
const DefaultCensusInterval = 15 * time.Second

// censusTaker is a Backend that can count the leases it keeps in Redis
// (*lease.Client). A Redlock cannot: with it, /metrics has no census.
type censusTaker interface {
	Census(ctx context.Context, limit int) (*lease.Census, error)
}

var _ censusTaker = (*lease.Client)(nil)

// sampled is the collector of the gauges /metrics reads from Redis when it
// is scraped: leasehold_backend_up, from a readiness check (as /readyz) at
// every scrape, and the census (leasehold_leases_held, leasehold_waiters
// and the sample's truncated, age and duration), taken at most once every
// interval by the scrape that finds it stale while scrapes meanwhile wait
// for it. It starts no goroutine, so none outlives the server.
//
// The census gauges are absent until a census has succeeded, and so on a
// backend without a census: absent rather than a 0 that would be a lie.
// After a census fails they keep its predecessor's values, whose age grows.
type sampled struct {
	s        *Server
	census   censusTaker // nil: no census gauges
	interval time.Duration
	limit    int

	// up is 1 when the last readiness check passed, else 0; /readyz and
	// the scrapes set it.
	up atomic.Int32

	mu    sync.Mutex    // one census at a time; guards the fields below
	tried time.Time     // when the last census started, failed or not
	last  *lease.Census // the last census that succeeded, nil before one
	at    time.Time     // when it started
	took  time.Duration

	upDesc, heldDesc, waitersDesc, truncDesc, ageDesc, durDesc *prometheus.Desc
}

func newSampled(s *Server, interval time.Duration, limit int) *sampled {
	g := &sampled{
		s: s, interval: interval, limit: limit,
		upDesc: prometheus.NewDesc("leasehold_backend_up",
			"1 when Redis answered the last readiness check (as /readyz: it answers and has the scripts), else 0. Checked at every scrape.", nil, nil),
		heldDesc: prometheus.NewDesc("leasehold_leases_held",
			"Leases with a live grant, in the last census of Redis (across every server that shares it). A lower bound when leasehold_leases_sample_truncated is 1.", nil, nil),
		waitersDesc: prometheus.NewDesc("leasehold_waiters",
			"Waiters queued in Redis across all names, in the last census (every server's; leasehold_waiting_acquires counts this server's waiting requests). A lower bound when leasehold_leases_sample_truncated is 1.", nil, nil),
		truncDesc: prometheus.NewDesc("leasehold_leases_sample_truncated",
			"1 when the last census stopped at its limit of keys before it had seen all of them, else 0.", nil, nil),
		ageDesc: prometheus.NewDesc("leasehold_leases_sample_age_seconds",
			"Seconds since the last census that succeeded started.", nil, nil),
		durDesc: prometheus.NewDesc("leasehold_leases_sample_duration_seconds",
			"How long the last census that succeeded took.", nil, nil),
	}
	if c, ok := s.b.(censusTaker); ok && interval >= 0 {
		g.census = c
	}
	return g
}

// checked records the outcome of a readiness check.
func (g *sampled) checked(err error) {
	if err == nil {
		g.up.Store(1)
	} else {
		g.up.Store(0)
	}
}

// Describe sends the descriptors of every gauge.
func (g *sampled) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.upDesc, g.heldDesc, g.waitersDesc, g.truncDesc, g.ageDesc, g.durDesc} {
		ch <- d
	}
}

// Collect checks the backend, takes a census when the last is stale and
// the backend is up, and sends the gauges.
func (g *sampled) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), g.s.redisTimeout)
	up := g.s.ready(ctx) == nil
	cancel()
	// The last check's: this one's, or a /readyz that ended since.
	ch <- prometheus.MustNewConstMetric(g.upDesc, prometheus.GaugeValue, float64(g.up.Load()))
	if g.census == nil {
		return
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if start := time.Now(); up && (g.tried.IsZero() || start.Sub(g.tried) >= g.interval) {
		g.tried = start
		ctx, cancel := context.WithTimeout(context.Background(), g.s.redisTimeout)
		c, err := g.census.Census(ctx, g.limit)
		cancel()
		if err != nil {
			g.s.log.Warn("census of the leases failed: the gauges keep the last census", "err", err)
		} else {
			g.last, g.at, g.took = c, start, time.Since(start)
		}
	}
	if g.last == nil {
		return
	}
	truncated := 0.0
	if g.last.Truncated {
		truncated = 1
	}
	for _, m := range []struct {
		d *prometheus.Desc
		v float64
	}{
		{g.heldDesc, float64(g.last.Held)},
		{g.waitersDesc, float64(g.last.Waiters)},
		{g.truncDesc, truncated},
		{g.ageDesc, time.Since(g.at).Seconds()},
		{g.durDesc, g.took.Seconds()},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, m.v)
	}
}
