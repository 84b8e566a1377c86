package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/chaos"
	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// long is CHAOS_LONG=1: every class runs until it has at least 10,000
// operations and 20 faults.
var long = os.Getenv("CHAOS_LONG") != ""

// The stated bounds the checker judges by (see docs/reliability.md).
const (
	// epsilon: believed intervals may overlap by this much. All processes
	// read one clock; this is timer and scheduling slack on 2 shared cores
	// under -race, not clock skew.
	epsilon = 25 * time.Millisecond
	// waitBound: a waiter must be granted within this long after a release
	// while the name is free, outside faults.
	waitBound = time.Second
	// cleanupBound: a grant whose token only a failed call knew must be gone
	// this long after the call returned and Redis answered again.
	cleanupBound = time.Second
	// recovery: the waiting and cleanup checks leave this long after each
	// fault alone (reconnects and re-subscriptions).
	recovery = time.Second
)

// env is one run's world: Redis, proxies, servers, clients and history.
type env struct {
	t        *testing.T
	h        *chaos.History
	store    *chaos.Store
	storeURL string
	ttl      time.Duration

	redis   *redistest.Server   // single topology
	nodes   []*redistest.Server // redlock masters, sentinel's master and replica, cluster nodes
	proxies []*target           // what a path fault can hit
	servers []*server
	workers []*worker
	runs    []*runLoop
	obs     *recorder
	names   []string
	minDur  time.Duration // overrides the run's shortest duration in short mode
	// worker, when set, changes every worker's options (broken variants).
	worker func(o *workerOptions)
}

// target is a proxied path to Redis and whether its owner holds a lease now.
type target struct {
	p       *faultproxy.Proxy
	name    string
	holding func() bool
}

func newEnv(t *testing.T, ttl time.Duration) *env {
	h := &chaos.History{}
	e := &env{t: t, h: h, store: chaos.NewStore(h), ttl: ttl}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.store}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.storeURL = "http://" + ln.Addr().String()
	return e
}

// proxy returns a fault proxy to addr, closed when the test ends.
func (e *env) proxy(name, addr string, holding func() bool) *faultproxy.Proxy {
	p, err := faultproxy.New(addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Close)
	e.proxies = append(e.proxies, &target{p: p, name: name, holding: holding})
	return p
}

func (e *env) lin(names ...string) func(string) bool {
	return func(n string) bool {
		for _, m := range names {
			if m == n {
				return true
			}
		}
		return false
	}
}

func (e *env) addWorker(id string, c lease.Interface, lin func(string) bool, o workerOptions) *worker {
	if e.worker != nil {
		e.worker(&o)
	}
	w := &worker{id: id, c: &recorder{inner: c, h: e.h, client: id, lin: lin}, store: e.store, h: e.h, o: o}
	e.workers = append(e.workers, w)
	return w
}

func (e *env) defaults(names ...string) workerOptions {
	return workerOptions{names: names, ttl: e.ttl, hold: 3 * e.ttl, plain: 0.1, waitShare: 0.6}
}

// single builds the single-Redis world: three SDK clients over Redis (go-redis
// with default options, each through its own proxy), two `leasehold serve`
// (each through its own proxy) with one HTTP client each, and two `leasehold
// run` loops (each through its own proxy). Names n0 and n1 take SDK and HTTP
// traffic and are checked for linearizability; r0 takes the runs and one
// SDK client.
func (e *env) single() {
	e.redis = redistest.Start(e.t)
	e.names = []string{"n0", "n1", "r0"}
	lin := e.lin("n0", "n1")
	for i := 0; i < 3; i++ {
		var w *worker
		p := e.proxy(fmt.Sprintf("sdk%d", i), e.redis.Addr(), func() bool { return w.holding.Load() })
		rdb := redis.NewClient(&redis.Options{Addr: p.Addr()})
		e.t.Cleanup(func() { rdb.Close() })
		names := []string{"n0", "n1"}
		if i == 2 {
			names = []string{"n1", "r0"}
		}
		w = e.addWorker(fmt.Sprintf("sdk%d", i), lease.New(rdb, nil), lin, e.defaults(names...))
	}
	for i := 0; i < 2; i++ {
		var w *worker
		p := e.proxy(fmt.Sprintf("serve%d", i), e.redis.Addr(), func() bool { return w.holding.Load() })
		s := startServer(e.t, "--redis", "redis://"+p.Addr()+"/0")
		e.servers = append(e.servers, s)
		hc := httpapi.NewClient(s.url(), nil)
		w = e.addWorker(fmt.Sprintf("http%d", i), hc, lin, e.defaults("n0", "n1"))
	}
	for i := 0; i < 2; i++ {
		r := &runLoop{id: fmt.Sprintf("run%d", i), name: "r0", ttl: e.ttl, storeURL: e.storeURL, h: e.h, dir: e.t.TempDir()}
		p := e.proxy(r.id, e.redis.Addr(), func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.cur != nil })
		r.redis = "redis://" + p.Addr() + "/0"
		e.runs = append(e.runs, r)
	}
	e.observer(redis.NewClient(observerOptions(e.redis.Addr())), lin)
}

// observerOptions bound the observer's reads: it is the suite's instrument,
// not a client under test.
func observerOptions(addr string) *redis.Options {
	return &redis.Options{Addr: addr, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		DialTimeout: 300 * time.Millisecond, ContextTimeoutEnabled: true, MaxRetries: -1}
}

func (e *env) observer(rdb redis.UniversalClient, lin func(string) bool) {
	e.t.Cleanup(func() { rdb.Close() })
	e.obs = &recorder{inner: lease.New(rdb, nil), h: e.h, client: "observer", lin: lin}
}

// nemesis injects one fault and heals it, returning its record; ok false
// when it found nothing to hurt this time.
type nemesis func(e *env) (f chaos.Fault, ok bool)

// class is one fault class: its world, its nemesis and the checker's
// exceptions for it.
type class struct {
	name    string
	nemesis nemesis
	tweak   func(c *chaos.Config)
	noLin   bool
	// faults is the class's fewest faults in short mode (default 4).
	faults int
}

// between is a random duration in [lo, hi).
func between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
}

// pickProxy prefers the path of a client that holds a lease now.
func (e *env) pickProxy() *target {
	var holders []*target
	for _, p := range e.proxies {
		if p.holding() {
			holders = append(holders, p)
		}
	}
	if len(holders) > 0 {
		return holders[rand.IntN(len(holders))]
	}
	return e.proxies[rand.IntN(len(e.proxies))]
}

// run runs the class: the workload and the nemesis until the budget is
// spent, then the checker. It returns the checker's result.
func (e *env) run(c class) *chaos.Result {
	t := e.t
	var stop, stopObs atomic.Bool
	var wg sync.WaitGroup
	for _, w := range e.workers {
		wg.Go(func() { w.run(&stop) })
	}
	for _, r := range e.runs {
		wg.Go(func() { r.loop(t, &stop) })
	}
	var obsWG sync.WaitGroup
	if e.obs != nil {
		obsWG.Go(func() { observe(e.obs, e.names, &stopObs) })
	}
	start := time.Now()
	minDur, maxDur, minFaults, minOps := 6*time.Second, 20*time.Second, 4, 0
	if long {
		minDur, maxDur, minFaults, minOps = 60*time.Second, 15*time.Minute, 20, 10000
	}
	if c.faults > 0 && !long {
		minFaults = c.faults
	}
	if c.nemesis == nil {
		minFaults = 0
	}
	if e.minDur > 0 && !long {
		minDur = e.minDur
	}
	for {
		el := time.Since(start)
		if el > maxDur || el >= minDur && e.h.Faults() >= minFaults && e.h.Ops() >= minOps {
			break
		}
		time.Sleep(between(e.ttl/2, e.ttl))
		if c.nemesis == nil {
			continue
		}
		if f, ok := c.nemesis(e); ok {
			e.h.AddFault(f)
		}
	}
	stop.Store(true)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Errorf("the workload did not stop within 60s after the run")
	}
	stopObs.Store(true)
	obsWG.Wait()
	cfg := chaos.Config{Epsilon: epsilon, WaitBound: waitBound, CleanupBound: cleanupBound, Recovery: recovery,
		TTL: e.ttl, LinTimeout: 60 * time.Second}
	if c.noLin {
		cfg.LinTimeout = 0
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return chaos.Check(e.h, cfg)
}

func report(t *testing.T, r *chaos.Result) {
	for _, ex := range r.Examples {
		t.Log(ex)
	}
}

// excuseDataLoss is the exception of the classes that lose Redis's data:
// the contract promises monotonic fences then, not mutual exclusion.
func excuseDataLoss(c *chaos.Config) { c.ExcuseDataLoss = true }

// singleClasses are the fault classes on one Redis.
var singleClasses = []class{
	// A hang finds a late keeper only when it meets a holder that holds past
	// the expiry while another client waits: it gets more tries.
	{name: "proxy-hang", faults: 6, nemesis: func(e *env) (chaos.Fault, bool) {
		p := e.pickProxy()
		f := chaos.Fault{Kind: "proxy-hang", Target: p.name, Start: chaos.Now()}
		p.p.Set(faultproxy.Hang)
		time.Sleep(between(e.ttl*3/2, e.ttl*5/2))
		p.p.Set(faultproxy.Forward)
		f.End = chaos.Now()
		return f, true
	}},
	{name: "proxy-drop", nemesis: func(e *env) (chaos.Fault, bool) {
		p := e.pickProxy()
		f := chaos.Fault{Kind: "proxy-drop", Target: p.name, Start: chaos.Now()}
		p.p.Set(faultproxy.Refuse)
		time.Sleep(between(e.ttl/2, e.ttl*3/2))
		p.p.Set(faultproxy.Forward)
		f.End = chaos.Now()
		return f, true
	}},
	{name: "redis-pause", nemesis: func(e *env) (chaos.Fault, bool) {
		f := chaos.Fault{Kind: "redis-pause", Target: "redis", Start: chaos.Now()}
		e.redis.Pause()
		time.Sleep(between(e.ttl*3/2, e.ttl*2))
		e.redis.Resume()
		f.End = chaos.Now()
		return f, true
	}},
	{name: "redis-restart", tweak: excuseDataLoss, nemesis: func(e *env) (chaos.Fault, bool) {
		f := chaos.Fault{Kind: "redis-restart", Target: "redis", Start: chaos.Now(), DataLoss: true}
		if err := e.redis.Restart(); err != nil {
			e.t.Errorf("restart redis: %v", err)
		}
		f.End = chaos.Now()
		return f, true
	}},
	{name: "flushall", tweak: excuseDataLoss, nemesis: func(e *env) (chaos.Fault, bool) {
		f := chaos.Fault{Kind: "flushall", Target: "redis", Start: chaos.Now(), DataLoss: true}
		if err := e.redis.Flush(context.Background()); err != nil {
			e.t.Errorf("FLUSHALL: %v", err)
		}
		f.End = chaos.Now()
		return f, true
	}},
	{name: "script-flush", nemesis: func(e *env) (chaos.Fault, bool) {
		f := chaos.Fault{Kind: "script-flush", Target: "redis", Start: chaos.Now()}
		rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
		defer rdb.Close()
		if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
			e.t.Errorf("SCRIPT FLUSH: %v", err)
		}
		f.End = chaos.Now()
		return f, true
	}},
	{name: "holder-pause", nemesis: func(e *env) (chaos.Fault, bool) {
		deadline := time.Now().Add(3 * e.ttl)
		for time.Now().Before(deadline) {
			r := e.runs[rand.IntN(len(e.runs))]
			start := chaos.Now()
			if label, ok := r.pauseHolder(between(e.ttl*2, e.ttl*3)); ok {
				return chaos.Fault{Kind: "holder-pause", Target: label, Start: start, End: chaos.Now()}, true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return chaos.Fault{}, false
	}, tweak: func(c *chaos.Config) { c.ExcusePaused = true }},
	{name: "serve-kill", nemesis: func(e *env) (chaos.Fault, bool) {
		s := e.servers[rand.IntN(len(e.servers))]
		f := chaos.Fault{Kind: "serve-kill", Target: s.addr, Start: chaos.Now()}
		s.kill()
		time.Sleep(between(200*time.Millisecond, 500*time.Millisecond))
		if err := s.start(); err != nil {
			e.t.Errorf("restart leasehold serve: %v", err)
		}
		f.End = chaos.Now()
		return f, true
	}, tweak: func(c *chaos.Config) {
		// A killed server cannot undo the grants of the waiters it had:
		// they live out their TTL.
		c.CleanupBound += c.TTL
	}},
}

// TestChaos runs each fault class against one Redis and judges its history.
func TestChaos(t *testing.T) {
	for _, c := range singleClasses {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, time.Second)
			e.single()
			judge(t, e, c)
		})
	}
}

// judge runs the class in e and fails the test when the checker finds a
// violation.
func judge(t *testing.T, e *env, c class) {
	r := e.run(c)
	t.Log(r.Summary(c.name))
	fmt.Println(r.Summary(c.name))
	if os.Getenv("CHAOS_DEBUG") != "" {
		t.Log(e.h.Dump())
	}
	if r.Linearizable == "Illegal" {
		// Always: a failure seen once under CI's load is worth its evidence.
		var cfg chaos.Config
		if c.tweak != nil {
			c.tweak(&cfg)
		}
		t.Log("not linearizable from here:\n" + strings.Join(chaos.Explain(e.h, 10*time.Second, cfg.LinWritesOnly), "\n"))
	}
	if !r.OK() {
		report(t, r)
		t.Errorf("%s: the checker found violations", c.name)
	}
}
