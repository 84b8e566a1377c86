package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus series. They never carry a name, a
// holder or a token as a label: labels come from small fixed sets.
type metrics struct {
	requests   *prometheus.CounterVec   // route, status, outcome
	latency    *prometheus.HistogramVec // route, outcome
	grants     prometheus.Counter
	conflicts  prometheus.Counter
	renewFails *prometheus.CounterVec // reason
	releases   prometheus.Counter
	waits      *prometheus.CounterVec // result
	waiting    prometheus.Gauge
	streams    prometheus.Gauge // event streams connected
	expired    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leasehold_http_requests_total",
			Help: "HTTP requests answered, by route, status code and outcome (ok or the error code).",
		}, []string{"route", "status", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "leasehold_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route and outcome (waiting acquires included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route", "outcome"}),
		grants: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasehold_grants_total",
			Help: "Acquires that were granted (idempotent re-grants included).",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasehold_conflicts_total",
			Help: "Acquires answered 409 lease_held (after their wait, if any).",
		}),
		renewFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leasehold_renew_failures_total",
			Help: "Renews that failed, by reason: not_holder, not_found, backend_unavailable, or invalid.",
		}, []string{"reason"}),
		releases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasehold_releases_total",
			Help: "Leases released by their holder.",
		}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leasehold_waits_total",
			Help: "Acquires that waited, by result: granted, timeout (answered 409), shutting_down, canceled, error.",
		}, []string{"result"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leasehold_waiting_acquires",
			Help: "Acquires waiting now.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "leasehold_event_streams",
			Help: "Event streams (GET /v1/events) connected now.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leasehold_expirations_observed_total",
			Help: "Renews and releases that found their lease gone (404 not_found): it had expired, or was already released. Expiries nobody asks about are not seen.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.grants, m.conflicts, m.renewFails, m.releases, m.waits, m.waiting, m.streams, m.expired} {
		f(c)
	}
	return m
}

// routeSeries are the series of one route's successful answers (status
// 200, outcome ok), looked up once: the request path need not hash labels.
type routeSeries struct {
	ok        prometheus.Counter
	okLatency prometheus.Observer
}

// route makes the series of route's successful answers. They are exported
// from the start, at zero, like Prometheus advises for known label values.
func (m *metrics) route(route string) *routeSeries {
	return &routeSeries{
		ok:        m.requests.WithLabelValues(route, "200", "ok"),
		okLatency: m.latency.WithLabelValues(route, "ok"),
	}
}

// newRegistry is the registry of a server that was given none: the
// server's series plus the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
