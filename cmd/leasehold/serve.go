package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/embedded"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// serveCmd runs the HTTP server. Every flag also reads LEASEHOLD_<FLAG>
// (LEASEHOLD_REDIS, LEASEHOLD_MAX_TTL, ...).
type serveCmd struct {
	Listen string `default:"127.0.0.1:7070" placeholder:"ADDR" help:"Address to listen on. Binding anything but loopback without --auth-file logs a warning."`

	Redis          string   `placeholder:"URL" help:"One Redis: redis://[user:pass@]host:port/db, rediss:// for TLS, or a bare host:port. Without any Redis flag the server runs on an embedded in-memory store."`
	RedisCluster   []string `sep:"," placeholder:"HOST:PORT" help:"Redis Cluster seed nodes."`
	RedisSentinel  []string `sep:"," placeholder:"HOST:PORT" help:"Redis Sentinel addresses (with --sentinel-master)."`
	SentinelMaster string   `placeholder:"NAME" help:"Name of the master that the sentinels watch."`
	Redlock        []string `sep:"," placeholder:"URL" help:"Redlock over independent Redis masters (redis:// URLs or host:port); a grant needs a majority."`
	RedisUsername  string   `placeholder:"USER" help:"Redis user for --redis-cluster and --redis-sentinel (a --redis URL carries its own)."`
	RedisPassword  string   `placeholder:"PASS" help:"Redis password for --redis-cluster and --redis-sentinel (a --redis URL carries its own)."`
	KeyPrefix      string   `default:"leasehold:" placeholder:"PREFIX" help:"Prefix of every Redis key."`
	// RedlockRestartDelay is lease.Options.RestartDelay; nil: the default.
	RedlockRestartDelay *time.Duration `name:"redlock-restart-delay" placeholder:"DURATION" help:"How long a --redlock master that restarted (or is seen first) does not count toward grants, so that the leases it forgot expire first. Default --max-ttl; 0 turns it off, safe only with appendonly yes and appendfsync always on every master (see docs/engine.md)."`
	// RedisAutopipeline is the negation of lease.Options.NoAutoPipeline: on
	// by default like the SDK's, for the reasons given there.
	RedisAutopipeline bool `name:"redis-autopipeline" negatable:"" default:"true" help:"Batch the Redis scripts of concurrent requests into pipelines while 16 or more are in flight (go-redis's autopipeliner): more requests per second under load; a lone request goes straight to Redis. --no-redis-autopipeline sends every script on its own."`

	MaxTTL  time.Duration `name:"max-ttl" default:"24h" help:"Largest TTL granted."`
	MaxWait time.Duration `default:"5m" help:"Longest wait an acquire may ask for."`
	// FenceRetention is lease.Options.FenceRetention.
	FenceRetention time.Duration `name:"fence-retention" default:"24h" help:"How long a name keeps its last fence after its last grant ends (at least --max-ttl); after it the name costs nothing in Redis and its next fence rests on Redis's clock alone (see docs/engine.md)."`
	// History is lease.Options.History, with 0 for none.
	History      int           `default:"20" help:"How many ended grants each name keeps in its history (GET /v1/leases/{name}/history, leasehold history), for the fence retention; 0 keeps none. At most 1000."`
	RedisTimeout time.Duration `default:"2s" help:"Bound of each Redis call; one that runs over is answered 503 backend_unavailable."`
	// CensusInterval and CensusLimit are httpapi.Options'.
	CensusInterval time.Duration `default:"15s" help:"How long a scrape of /metrics reuses the census of the leases in Redis (leasehold_leases_held, leasehold_waiters) before it takes a new one; 0 turns the census off."`
	CensusLimit    int           `default:"10000" help:"Most keys one census lets SCAN look at; past it leasehold_leases_sample_truncated is 1 and the gauges are lower bounds."`

	AuthFile string `placeholder:"FILE" help:"Bearer tokens, one a line: TOKEN ACCESS PREFIXES (see docs/http.md). Default: no auth."`
	TLSCert  string `name:"tls-cert" placeholder:"FILE" help:"TLS certificate (PEM) for HTTPS, with --tls-key."`
	TLSKey   string `name:"tls-key" placeholder:"FILE" help:"TLS private key (PEM), with --tls-cert."`

	LogLevel        string        `default:"info" enum:"debug,info,warn,error" help:"Log level: debug logs one line per request (${enum})."`
	LogFormat       string        `default:"text" enum:"text,json" help:"Log format (${enum})."`
	ShutdownTimeout time.Duration `default:"30s" help:"How long shutdown waits for requests in flight."`

	Pprof string `placeholder:"ADDR" help:"Serve Go's pprof profiles (/debug/pprof/) on this separate address, for profiling under load. Off by default; it has no auth, so keep it on loopback."`
}

func (s *serveCmd) Run(e *env) error {
	log := newLogger(e.stderr, s.LogLevel, s.LogFormat)
	// go-redis's own lines (dial retries in an outage) in our log's format.
	redis.SetLogger(lease.RedisLogger(log, slog.LevelWarn))
	if err := s.check(); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	var auth *httpapi.Auth
	if s.AuthFile != "" {
		var err error
		if auth, err = httpapi.LoadAuthFile(s.AuthFile); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
	}

	backend, closeBackend, err := s.backend(log)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	defer closeBackend()
	ctx, cancel := context.WithTimeout(e.ctx, s.RedisTimeout)
	if err := backend.LoadScripts(ctx); err != nil {
		log.Warn("redis does not answer at start: /readyz answers 503 until it does", "err", err)
	}
	cancel()

	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return &exitError{code: exitUnavailable, err: err}
	}
	// net/http's own answers (a request it cannot parse, headers over
	// MaxHeaderBytes) are JSON too.
	ln = httpapi.Listener(ln)
	if auth == nil && !loopback(ln.Addr()) {
		log.Warn("LISTENING ON A NON-LOOPBACK ADDRESS WITHOUT AUTH: anyone who can reach it can take and release leases; use --auth-file",
			"addr", ln.Addr().String())
	}

	census := s.CensusInterval
	if census == 0 {
		census = -1 // off
	}
	api := httpapi.New(backend, &httpapi.Options{
		Auth: auth, Logger: log, RedisTimeout: s.RedisTimeout, CensusInterval: census, CensusLimit: s.CensusLimit,
	})
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A waiting acquire answers after up to --max-wait, plus a Redis call.
		WriteTimeout:   s.MaxWait + s.RedisTimeout + 30*time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: httpapi.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if s.TLSCert != "" {
		scheme = "https"
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}

	if s.Pprof != "" {
		stopPprof, err := servePprof(s.Pprof, log)
		if err != nil {
			ln.Close()
			return &exitError{code: exitUnavailable, err: err}
		}
		defer stopPprof()
	}

	sigCtx, stop := signal.NotifyContext(e.ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() {
		if scheme == "https" {
			served <- srv.ServeTLS(ln, s.TLSCert, s.TLSKey)
		} else {
			served <- srv.Serve(ln)
		}
	}()
	log.Info("leasehold serving", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String(), "version", version,
		"auth", auth != nil, "max_ttl", s.MaxTTL, "max_wait", s.MaxWait, "fence_retention", s.FenceRetention, "history", s.History, "redis_timeout", s.RedisTimeout,
		"redis_autopipeline", s.RedisAutopipeline)

	select {
	case err := <-served:
		return &exitError{code: exitUnavailable, err: fmt.Errorf("serve: %w", err)}
	case <-sigCtx.Done():
	}
	stop()
	log.Info("shutting down: waiting acquires get 503 shutting_down, requests in flight finish", "timeout", s.ShutdownTimeout)
	api.Stop()
	shutCtx, cancelShut := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancelShut()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
		return &exitError{code: exitFailure, err: fmt.Errorf("shutdown: %w", err)}
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return &exitError{code: exitFailure, err: err}
	}
	// Grants made for clients that went away, or of unknown outcome with a
	// token the server made, are being released in the background: let
	// them finish within what is left of the shutdown timeout.
	_ = api.Settle(shutCtx)
	_ = backend.Settle(shutCtx) // what is left expires with its TTL
	log.Info("stopped")
	return nil
}

// servePprof serves net/http/pprof on its own listener at addr, apart from
// the API (no auth, no metrics, no route of the API), and returns what
// stops it.
func servePprof(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof: %w", err)
	}
	if !loopback(ln.Addr()) {
		log.Warn("SERVING PPROF ON A NON-LOOPBACK ADDRESS: profiles have no auth", "addr", ln.Addr().String())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	log.Info("pprof serving at /debug/pprof/", "pprof_addr", ln.Addr().String())
	return func() {
		srv.Close()
		<-done
	}, nil
}

// check rejects flags that contradict each other.
func (s *serveCmd) check() error {
	n := 0
	for _, set := range []bool{s.Redis != "", len(s.RedisCluster) > 0, len(s.RedisSentinel) > 0, len(s.Redlock) > 0} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return errors.New("give one of --redis, --redis-cluster, --redis-sentinel and --redlock")
	case len(s.RedisSentinel) > 0 && s.SentinelMaster == "":
		return errors.New("--redis-sentinel needs --sentinel-master NAME")
	case s.SentinelMaster != "" && len(s.RedisSentinel) == 0:
		return errors.New("--sentinel-master needs --redis-sentinel HOST:PORT,...")
	case (s.TLSCert == "") != (s.TLSKey == ""):
		return errors.New("give --tls-cert and --tls-key together")
	case s.MaxTTL < lease.MinTTL:
		return fmt.Errorf("--max-ttl %s is below the smallest TTL, %s", s.MaxTTL, lease.MinTTL)
	case s.History < 0 || s.History > lease.MaxHistory:
		return fmt.Errorf("--history %d is out of range: give 0 (keep none) to %d", s.History, lease.MaxHistory)
	case s.FenceRetention < s.MaxTTL:
		return fmt.Errorf("--fence-retention %s is shorter than --max-ttl %s: give at least --max-ttl, so that no name forgets its fence while a grant of it may live", s.FenceRetention, s.MaxTTL)
	case s.MaxWait < 0 || s.RedisTimeout <= 0 || s.ShutdownTimeout <= 0:
		return errors.New("--max-wait, --redis-timeout and --shutdown-timeout must be positive")
	case s.RedlockRestartDelay != nil && *s.RedlockRestartDelay < 0:
		return errors.New("--redlock-restart-delay must not be negative: 0 turns it off")
	case s.KeyPrefix == "":
		return errors.New("--key-prefix must not be empty")
	case s.CensusInterval < 0 || s.CensusLimit < 1:
		return errors.New("--census-interval must not be negative (0 turns the census off) and --census-limit must be at least 1")
	}
	return nil
}

// backend builds the lease engine the flags ask for, and what closes it.
func (s *serveCmd) backend(log *slog.Logger) (httpapi.Backend, func(), error) {
	history := s.History
	if history == 0 {
		history = -1 // lease.Options: negative keeps none, 0 is the default
	}
	opts := &lease.Options{KeyPrefix: s.KeyPrefix, MaxTTL: s.MaxTTL, MaxWait: s.MaxWait, FenceRetention: s.FenceRetention,
		NoAutoPipeline: !s.RedisAutopipeline, History: history}
	switch {
	case s.Redis != "":
		o, err := parseRedisURL(s.Redis)
		if err != nil {
			return nil, nil, fmt.Errorf("--redis %q: %w", s.Redis, err)
		}
		s.timeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled)
		rdb := redis.NewClient(o)
		log.Info("using redis", "addr", o.Addr, "db", o.DB, "tls", o.TLSConfig != nil)
		return lease.New(rdb, opts), func() { rdb.Close() }, nil
	case len(s.RedisCluster) > 0:
		o := &redis.ClusterOptions{Addrs: s.RedisCluster, Username: s.RedisUsername, Password: s.RedisPassword}
		s.timeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled)
		rdb := redis.NewClusterClient(o)
		log.Info("using redis cluster", "seeds", strings.Join(s.RedisCluster, ","))
		return lease.New(rdb, opts), func() { rdb.Close() }, nil
	case len(s.RedisSentinel) > 0:
		o := &redis.FailoverOptions{MasterName: s.SentinelMaster, SentinelAddrs: s.RedisSentinel,
			Username: s.RedisUsername, Password: s.RedisPassword}
		s.timeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled)
		rdb := redis.NewFailoverClient(o)
		log.Info("using redis sentinel", "master", s.SentinelMaster, "sentinels", strings.Join(s.RedisSentinel, ","))
		return lease.New(rdb, opts), func() { rdb.Close() }, nil
	case len(s.Redlock) > 0:
		var rdbs []redis.UniversalClient
		closeAll := func() {
			for _, r := range rdbs {
				r.Close()
			}
		}
		for _, u := range s.Redlock {
			o, err := parseRedisURL(u)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("--redlock %q: %w", u, err)
			}
			s.timeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled)
			rdbs = append(rdbs, redis.NewClient(o))
		}
		if len(rdbs) < 3 {
			log.Warn("redlock over fewer than 3 masters survives the loss of none", "masters", len(rdbs))
		}
		if d := s.RedlockRestartDelay; d != nil {
			opts.RestartDelay = *d
			if *d == 0 {
				opts.RestartDelay = -1
			}
		}
		rl, err := lease.NewRedlock(rdbs, opts)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		log.Info("using redlock", "masters", len(rdbs), "restart_delay", rl.RestartDelay())
		return rl, closeAll, nil
	}
	store, err := embedded.Start()
	if err != nil {
		return nil, nil, err
	}
	o := store.Options() // in-process pipes: no port that another process could reach
	s.timeouts(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.ContextTimeoutEnabled)
	rdb := redis.NewClient(o)
	// A net.Pipe has no buffer: the autopipeliner, which writes a batch
	// before it reads the replies, would wait on the store's replies while
	// the store waits for it to read them.
	opts.NoAutoPipeline, s.RedisAutopipeline = true, false
	log.Warn("no Redis given: using the EMBEDDED in-memory store; leases live in this process on one node and are lost when it stops; use --redis for anything that matters")
	return lease.New(rdb, opts), func() { rdb.Close(); store.Close() }, nil
}

// timeouts makes every Redis call fail within --redis-timeout.
func (s *serveCmd) timeouts(dial, read, write *time.Duration, ctxTimeout *bool) {
	*dial, *read, *write, *ctxTimeout = s.RedisTimeout, s.RedisTimeout, s.RedisTimeout, true
}

func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level)) // kong's enum admits only valid levels
	o := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

func (s *serveCmd) Help() string {
	return `Runs the HTTP API (docs/http.md). With no Redis given it runs on an embedded
in-process store (state in this process's memory, on one node: for trying it
out); give --redis, --redis-cluster, --redis-sentinel or --redlock for
anything that matters. Many servers can share one Redis.

Examples:
  leasehold serve                                    # embedded store, 127.0.0.1:7070
  leasehold serve --redis 127.0.0.1:6379
  leasehold serve --redis rediss://user:pass@redis.internal:6380/0 --listen 0.0.0.0:7070 --auth-file /etc/leasehold/tokens
  leasehold serve --redis-cluster 10.0.0.1:7000,10.0.0.2:7000 --fence-retention 48h`
}
