package httpapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// The handler benchmarks call ServeHTTP directly (no network) against the
// shared real Redis, with the logger at info as `leasehold serve` runs by
// default. Request and response writer are reused across iterations, so
// allocs/op is what the handler itself allocates (plus go-redis).
//
// Besides ns/op, each reports cpu-ns/op: the CPU time of this process
// (handler, go-redis and the benchmark loop, not Redis) per operation, from
// getrusage. Wall time is mostly the Redis round trip, and on a shared
// machine it is noisy; CPU time is what the handler costs.
//
// BenchmarkNaiveEcho is the baseline of issue 6: an echo server that binds
// its parameters with c.Bind, runs a bare SET NX PX / compare-and-delete
// script with EVALSHA and answers with c.JSON. It does less than Leasehold
// (no fence, holder, metadata, validation, auth, metrics or logs), so it is
// the floor our handlers are measured against.

const benchToken = "bench-token-0123456789"

// benchServer is a Server over the shared Redis that logs at info.
func benchServer(b *testing.B) (*httpapi.Server, *lease.Client) {
	b.Helper()
	rdb := redisClient(b, shared.Addr(), 2*time.Second)
	lc := lease.New(rdb, nil)
	if err := lc.LoadScripts(bg); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return httpapi.New(lc, &httpapi.Options{Logger: log}), lc
}

// sink is a reusable http.ResponseWriter that keeps only the status.
type sink struct {
	h    http.Header
	code int
}

func (w *sink) Header() http.Header         { return w.h }
func (w *sink) WriteHeader(code int)        { w.code = code }
func (w *sink) Write(p []byte) (int, error) { return len(p), nil }

// measureCPU starts measuring this process's CPU time; the function it
// returns reports it per operation. Call it right before the loop.
func measureCPU(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// call is one reusable request to a handler.
type call struct {
	req  *http.Request
	body *strings.Reader
	text string
	w    sink
}

func newCall(method, path, query, body string) *call {
	c := &call{body: strings.NewReader(body), text: body, w: sink{h: http.Header{}}}
	c.req = (&http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: query},
		Header: http.Header{}, Body: http.NoBody, RequestURI: path}).WithContext(bg)
	if body != "" {
		c.req.Header.Set("Content-Type", "application/json")
		c.req.ContentLength = int64(len(body))
	}
	return c
}

// do serves the call; it reports false, and fails b, unless the status is want.
func (c *call) do(b *testing.B, h http.Handler, want int) bool {
	clear(c.w.h)
	c.w.code = http.StatusOK
	if c.text != "" {
		c.body.Reset(c.text)
		c.req.Body = io.NopCloser(c.body)
	}
	h.ServeHTTP(&c.w, c.req)
	if c.w.code != want {
		b.Errorf("%s %s: got %d, want %d", c.req.Method, c.req.URL.Path, c.w.code, want)
		return false
	}
	return true
}

func BenchmarkHandler(b *testing.B) {
	srv, lc := benchServer(b)
	const name = "bench-handler"
	grant := `{"ttl":"30s","holder":"bench","token":"` + benchToken + `"}`
	hold := func(b *testing.B) {
		if _, err := lc.Acquire(bg, name, &lease.AcquireOptions{TTL: time.Minute, Token: benchToken}); err != nil {
			b.Fatal(err)
		}
	}

	// acquire is an idempotent re-grant to the holder's own token: the same
	// script and answer as a first grant, on a name that stays held.
	b.Run("acquire", func(b *testing.B) {
		hold(b)
		c := newCall("POST", "/v1/leases/"+name+"/acquire", "", grant)
		b.ReportAllocs()
		defer measureCPU(b)()
		for b.Loop() {
			if !c.do(b, srv, http.StatusOK) {
				return
			}
		}
	})
	b.Run("acquire-query", func(b *testing.B) {
		hold(b)
		c := newCall("POST", "/v1/leases/"+name+"/acquire", "ttl=30s&holder=bench&token="+benchToken, "")
		b.ReportAllocs()
		defer measureCPU(b)()
		for b.Loop() {
			if !c.do(b, srv, http.StatusOK) {
				return
			}
		}
	})
	b.Run("held", func(b *testing.B) {
		hold(b)
		c := newCall("POST", "/v1/leases/"+name+"/acquire", "", `{"ttl":"30s","holder":"other"}`)
		b.ReportAllocs()
		defer measureCPU(b)()
		for b.Loop() {
			if !c.do(b, srv, http.StatusConflict) {
				return
			}
		}
	})
	b.Run("renew", func(b *testing.B) {
		hold(b)
		c := newCall("POST", "/v1/leases/"+name+"/renew", "", `{"ttl":"30s","token":"`+benchToken+`"}`)
		b.ReportAllocs()
		defer measureCPU(b)()
		for b.Loop() {
			if !c.do(b, srv, http.StatusOK) {
				return
			}
		}
	})
	b.Run("get", func(b *testing.B) {
		hold(b)
		c := newCall("GET", "/v1/leases/"+name, "", "")
		b.ReportAllocs()
		defer measureCPU(b)()
		for b.Loop() {
			if !c.do(b, srv, http.StatusOK) {
				return
			}
		}
	})
	b.Run("release", func(b *testing.B) {
		c := newCall("POST", "/v1/leases/"+name+"/release", "token="+benchToken, "")
		b.ReportAllocs()
		// No cpu-ns/op: it would count the acquire outside the timer.
		for b.Loop() {
			b.StopTimer()
			hold(b)
			b.StartTimer()
			if !c.do(b, srv, http.StatusOK) {
				return
			}
		}
	})
	// cycle is acquire (JSON body) then release (token in the query): the
	// unit of issue 6's throughput table.
	b.Run("cycle", func(b *testing.B) {
		acq := newCall("POST", "/v1/leases/"+name+"/acquire", "", grant)
		rel := newCall("POST", "/v1/leases/"+name+"/release", "token="+benchToken, "")
		b.ReportAllocs()
		defer measureCPU(b)()
		for b.Loop() {
			if !acq.do(b, srv, http.StatusOK) || !rel.do(b, srv, http.StatusOK) {
				return
			}
		}
	})
}

// The naive baseline's scripts: insert-if-missing with a TTL, and delete if
// the token matches.
var (
	naiveAcquire = redis.NewScript(`return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0`)
	naiveRelease = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

// naiveEcho is the obvious echo server for the same cycle.
func naiveEcho(rdb *redis.Client) *echo.Echo {
	e := echo.New()
	type params struct {
		TTL    string `json:"ttl"`
		Holder string `json:"holder"`
		Token  string `json:"token"`
	}
	e.POST("/v1/leases/:name/acquire", func(c echo.Context) error {
		var p params
		if err := c.Bind(&p); err != nil {
			return err
		}
		ttl, err := time.ParseDuration(p.TTL)
		if err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, err.Error())
		}
		name := c.Param("name")
		ok, err := naiveAcquire.Run(c.Request().Context(), rdb, []string{"naive:{" + name + "}"}, p.Token, ttl.Milliseconds()).Int()
		if err != nil {
			return err
		}
		if ok == 0 {
			return c.JSON(http.StatusConflict, map[string]string{"error": "lease_held"})
		}
		return c.JSON(http.StatusOK, map[string]any{"name": name, "holder": p.Holder, "token": p.Token, "ttl_ms": ttl.Milliseconds()})
	})
	e.POST("/v1/leases/:name/release", func(c echo.Context) error {
		name := c.Param("name")
		n, err := naiveRelease.Run(c.Request().Context(), rdb, []string{"naive:{" + name + "}"}, c.QueryParam("token")).Int()
		if err != nil {
			return err
		}
		if n == 0 {
			return c.JSON(http.StatusConflict, map[string]string{"error": "not_holder"})
		}
		return c.JSON(http.StatusOK, map[string]any{"name": name, "released": true})
	})
	return e
}

func BenchmarkNaiveEcho(b *testing.B) {
	rdb := redisClient(b, shared.Addr(), 2*time.Second)
	for _, s := range []*redis.Script{naiveAcquire, naiveRelease} {
		if err := s.Load(bg, rdb).Err(); err != nil {
			b.Fatal(err)
		}
	}
	e := naiveEcho(rdb)
	const name = "bench-naive"
	b.Run("cycle", func(b *testing.B) {
		acq := newCall("POST", "/v1/leases/"+name+"/acquire", "", `{"ttl":"30s","holder":"bench","token":"`+benchToken+`"}`)
		rel := newCall("POST", "/v1/leases/"+name+"/release", "token="+benchToken, "")
		b.ReportAllocs()
		defer measureCPU(b)()
		for b.Loop() {
			if !acq.do(b, e, http.StatusOK) || !rel.do(b, e, http.StatusOK) {
				return
			}
		}
	})
}

// BenchmarkHandlerParallel runs acquire+release cycles on unique names from
// GOMAXPROCS goroutines, for CPU profiles of the handlers under
// concurrency.
func BenchmarkHandlerParallel(b *testing.B) {
	srv, _ := benchServer(b)
	var n atomic.Int64
	b.ReportAllocs()
	defer measureCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		id := strconv.FormatInt(n.Add(1), 10)
		acq := newCall("POST", "/v1/leases/bench-par-"+id+"/acquire", "", `{"ttl":"30s","token":"`+benchToken+`"}`)
		rel := newCall("POST", "/v1/leases/bench-par-"+id+"/release", "token="+benchToken, "")
		for pb.Next() {
			if !acq.do(b, srv, http.StatusOK) || !rel.do(b, srv, http.StatusOK) {
				return
			}
		}
	})
}
