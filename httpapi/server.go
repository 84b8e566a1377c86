// Package httpapi is Leasehold's HTTP API, version 1: a server on echo over
// the lease engine, and a client that speaks to it with the same methods
// and typed errors as lease.Client, so code written against lease.Interface
// runs over either transport.
//
// Every response body is JSON. Every error is {"error": CODE, "message":
// SENTENCE}, mapped from the lease package's typed errors in one place
// (mapError). Parameters come from a JSON object in the body, whatever the
// Content-Type, or from the query string. Bad input is answered 4xx before
// anything is sent to Redis, and never causes a 500.
package httpapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/leasehold/leasehold/httpapi/dashboard"
	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// OpenAPI is the OpenAPI 3 document of the API, served at /v1/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Backend is what the server needs of the lease engine. *lease.Client
// implements it.
type Backend interface {
	lease.Interface
	// Ping checks that Redis answers and the scripts are loaded.
	Ping(ctx context.Context) error
	// LoadScripts loads the scripts into Redis.
	LoadScripts(ctx context.Context) error
	// MaxTTL is the largest TTL granted; MaxWait the longest wait accepted.
	MaxTTL() time.Duration
	MaxWait() time.Duration
	// Settle waits for the grants of unknown outcome that the backend is
	// undoing in the background (lease.Client.Settle).
	Settle(ctx context.Context) error
	// ReleaseWith and RenewWith also tell the name's history how the
	// holder's work ended (lease.Recorder).
	lease.Recorder
	// Break ends whoever's grant; History reads a name's history
	// (lease.Client.Break, History).
	Break(ctx context.Context, name string, opts *lease.BreakOptions) (*lease.Record, error)
	History(ctx context.Context, name string, limit int) ([]lease.Record, error)
}

var (
	_ Backend = (*lease.Client)(nil)
	_ Backend = (*lease.Redlock)(nil)
)

// DefaultRedisTimeout bounds every Redis call that does not wait, unless
// Options.RedisTimeout says otherwise.
const DefaultRedisTimeout = wire.DefaultRedisTimeout

// Options configure a Server. A nil *Options is the zero value.
type Options struct {
	// Auth checks bearer tokens. Default nil: no auth, every request is let through.
	Auth *Auth
	// Logger receives one line per request at debug level, and one per
	// failed request (5xx, 401, 403) at warn. Default slog.Default().
	Logger *slog.Logger
	// Registry receives the server's metrics and is what /metrics serves.
	// Default: a new registry with the Go runtime and process collectors.
	Registry *prometheus.Registry
	// RedisTimeout bounds each call to the backend that does not wait; one
	// that runs over is answered 503 backend_unavailable. Default 2s. It
	// also bounds the readiness check and the census of a scrape of
	// /metrics, each.
	RedisTimeout time.Duration
	// CensusInterval is how long a scrape of /metrics reuses the census of
	// the leases in Redis (leasehold_leases_held, leasehold_waiters) before
	// it takes a new one. Default DefaultCensusInterval (15s); negative: no
	// census, and no such gauges.
	CensusInterval time.Duration
	// CensusLimit bounds the keys one census looks at (lease.Client.Census);
	// when it is reached, leasehold_leases_sample_truncated is 1. Default
	// lease.DefaultCensusLimit (10,000).
	CensusLimit int
}

// Server is the HTTP API. It is an http.Handler; it keeps no lease state
// of its own, so many servers may share one Redis.
type Server struct {
	b            Backend
	auth         *Auth
	log          *slog.Logger
	reg          *prometheus.Registry
	m            *metrics
	redisTimeout time.Duration
	echo         *echo.Echo
	routes       map[string]*routeSeries // by route template, for the route label
	sampled      *sampled                // the gauges read from Redis at a scrape

	// stopping is cancelled by Stop: waiting acquires then answer shutting_down.
	stopping context.Context
	stop     context.CancelFunc

	// undo releases grants whose client went away before it was answered.
	undo lease.Undoer

	// expiry records expiries on time while event streams are connected.
	expiry expiryWatcher
}

// New returns a Server over b.
func New(b Backend, opts *Options) *Server {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = newRegistry()
	}
	if o.RedisTimeout <= 0 {
		o.RedisTimeout = DefaultRedisTimeout
	}
	if o.CensusInterval == 0 {
		o.CensusInterval = DefaultCensusInterval
	}
	if o.CensusLimit <= 0 {
		o.CensusLimit = lease.DefaultCensusLimit
	}
	s := &Server{
		b: b, auth: o.Auth, log: o.Logger, reg: o.Registry, m: newMetrics(o.Registry),
		redisTimeout: o.RedisTimeout, routes: map[string]*routeSeries{},
	}
	s.stopping, s.stop = context.WithCancel(context.Background())
	s.expiry.s = s
	s.sampled = newSampled(s, o.CensusInterval, o.CensusLimit)
	o.Registry.MustRegister(s.sampled)

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = func(err error, c echo.Context) { s.writeError(c, err) }
	e.Use(s.observe)
	add := func(method, path string, h echo.HandlerFunc) {
		e.Add(method, path, h)
		s.routes[path] = s.m.route(path)
	}
	add(http.MethodPost, "/v1/leases/:name/acquire", s.acquire)
	add(http.MethodPost, "/v1/leases/:name/renew", s.renew)
	add(http.MethodPost, "/v1/leases/:name/release", s.release)
	add(http.MethodPost, "/v1/leases/:name/verify", s.verify)
	add(http.MethodPost, "/v1/leases/:name/break", s.breakLease)
	add(http.MethodGet, "/v1/leases/:name/history", s.history)
	add(http.MethodGet, "/v1/leases/:name", s.get)
	add(http.MethodGet, "/v1/leases", s.list)
	add(http.MethodGet, "/v1/events", s.events)
	add(http.MethodGet, "/v1/limits", s.limits)
	add(http.MethodGet, "/v1/auth", s.whoami)
	add(http.MethodGet, "/healthz", s.healthz)
	add(http.MethodGet, "/readyz", s.readyz)
	add(http.MethodGet, "/metrics", echo.WrapHandler(promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{})))
	add(http.MethodGet, "/v1/openapi.json", func(c echo.Context) error {
		return writeBody(c, http.StatusOK, OpenAPI)
	})
	// The dashboard: a static page, which needs no token itself; it sends
	// the one its viewer gives with each call to the API.
	add(http.MethodGet, "/", echo.WrapHandler(dashboard.Handler()))
	s.echo = e
	return s
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Registry is the registry that /metrics serves.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Stop answers every waiting acquire, and every later one that asks to
// wait, with 503 shutting_down. Other requests are served as before. Call
// it when shutdown begins, before http.Server.Shutdown, so that waiting
// requests do not hold the shutdown up. Stop is idempotent.
func (s *Server) Stop() { s.stop() }

// Settle waits until the grants this server is releasing in the background
// (made for waiting clients that went away) are released, or ctx ends.
// Call it after Stop, before the process exits.
func (s *Server) Settle(ctx context.Context) error { return s.undo.Wait(ctx) }

// observe is the outermost middleware: it recovers panics, answers
// errors, and logs and counts every request.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var err error
		defer s.answered(c, time.Now(), &err)
		err = next(c)
		return nil
	}
}

// answered, deferred by observe, turns a panic into an error, so that it
// is answered as JSON like any other failure; writes the error's answer
// when there is one; then counts and logs the request. It is apart from
// observe, whose frame stays on the stack of a waiting acquire for the
// whole wait.
func (s *Server) answered(c echo.Context, start time.Time, errp *error) {
	if v := recover(); v != nil {
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.log.Error("panic answering a request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		*errp = fmt.Errorf("panic: %v", v)
	}
	err := *errp
	outcome := "ok"
	if err != nil {
		outcome = s.writeError(c, err).body.Error
	}
	status := c.Response().Status
	route := c.Path()
	series := s.routes[route]
	if series == nil {
		route = "other"
	}
	dur := time.Since(start)
	if series != nil && status == http.StatusOK && outcome == "ok" {
		series.ok.Inc()
		series.okLatency.Observe(dur.Seconds())
	} else {
		s.m.requests.WithLabelValues(route, strconv.Itoa(status), outcome).Inc()
		s.m.latency.WithLabelValues(route, outcome).Observe(dur.Seconds())
	}
	s.logRequest(c, route, status, outcome, dur, err)
}

// logRequest logs one answered request: at debug, or at warn when it
// failed on the server's side or for auth.
func (s *Server) logRequest(c echo.Context, route string, status int, outcome string, dur time.Duration, err error) {
	level := slog.LevelDebug
	if status >= 500 && status != statusClientClosed || status == http.StatusUnauthorized || status == http.StatusForbidden {
		level = slog.LevelWarn
	}
	ctx := c.Request().Context()
	if !s.log.Enabled(ctx, level) {
		return
	}
	r := c.Request()
	attrs := []slog.Attr{
		slog.String("method", r.Method), slog.String("path", redactedURI(r.URL)),
		slog.String("route", route), slog.Int("status", status), slog.String("outcome", outcome),
		slog.Duration("duration", dur), slog.String("remote", r.RemoteAddr),
	}
	if err != nil && status >= 500 {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	s.log.LogAttrs(ctx, level, "request", attrs...)
}

// writeError answers err as mapError decides.
func (s *Server) writeError(c echo.Context, err error) answer {
	a := mapError(err)
	if c.Response().Committed {
		return a
	}
	h := c.Response().Header()
	if a.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(a.retryAfter))
	}
	if a.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="leasehold"`)
	}
	writeBody(c, a.status, marshal(a.body))
	return a
}

func writeJSON(c echo.Context, v any) error {
	return writeBody(c, http.StatusOK, marshal(v))
}

// jsonContentType is the Content-Type of every answer but /metrics. The
// header map takes this slice as it is (nothing writes into a header's
// slice in place), which spares an allocation per answer.
var jsonContentType = []string{echo.MIMEApplicationJSON}

// writeBody answers status with the JSON body b.
func writeBody(c echo.Context, status int, b []byte) error {
	r := c.Response()
	r.Header()[echo.HeaderContentType] = jsonContentType
	r.WriteHeader(status)
	_, err := r.Write(b)
	return err
}

// redactedURI is the request URI for logs. Its query keeps only what is no
// secret: each pair is judged by the key it decodes to, as readQuery reads
// it, so that a token's value is REDACTED however its key is spelled
// (token, %74oken). The parameters of the API other than token keep their
// values as sent. Every other pair (TOKEN, access_token, a key that holds
// a secret itself, one that does not decode, one with a semicolon) is one
// the server refuses, and it is REDACTED whole, key and value: a client
// that misspells a parameter may still have put a secret in it.
func redactedURI(u *url.URL) string {
	if u.RawQuery == "" {
		return u.Path
	}
	var b strings.Builder
	b.WriteString(u.Path)
	sep := "?"
	for kv := range strings.SplitSeq(u.RawQuery, "&") {
		if kv == "" {
			continue
		}
		b.WriteString(sep)
		sep = "&"
		k, v, _ := strings.Cut(kv, "=")
		key, err := url.QueryUnescape(k)
		if _, verr := url.QueryUnescape(v); err != nil || verr != nil || strings.Contains(kv, ";") {
			b.WriteString("REDACTED")
			continue
		}
		switch i, err := lookupParam(key, allParams); {
		case err != nil:
			b.WriteString("REDACTED")
		case i == pToken:
			b.WriteString("token=REDACTED")
		default:
			b.WriteString(paramNames[i] + "=" + v)
		}
	}
	return b.String()
}

// authenticate checks the bearer token when auth is on. A nil token with a
// nil error means auth is off.
func (s *Server) authenticate(c echo.Context) (*authToken, error) {
	if s.auth == nil {
		return nil, nil
	}
	return s.auth.lookup(c.Request().Header.Get("Authorization"))
}

// authorize checks that t may act on name with access need.
func authorize(t *authToken, what, name string, need Access) error {
	if t == nil {
		return nil
	}
	if t.access < need || !t.covers(name) {
		return forbidden(what, name, need, t)
	}
	return nil
}

// begin authenticates, reads the parameters and authorizes: the common
// start of every lease route.
func (s *Server) begin(c echo.Context, allowed uint16, need Access, p *params) (string, error) {
	name, _, err := s.beginAs(c, allowed, need, p)
	return name, err
}

// beginAs is begin that also answers the caller's token (nil: auth off),
// for a route that records who called it.
func (s *Server) beginAs(c echo.Context, allowed uint16, need Access, p *params) (string, *authToken, error) {
	t, err := s.authenticate(c)
	if err != nil {
		return "", nil, err
	}
	if err := readParams(c.Request(), allowed, p); err != nil {
		return "", nil, err
	}
	name, err := pathName(c)
	if err != nil {
		return "", nil, err
	}
	return name, t, authorize(t, "name", name, need)
}

// pathName is the valid lease name in the request's path, percent-decoded
// once: jobs%3Ax is jobs:x. echo matches routes on URL.RawPath when the
// path has escapes that Go would not have written (%3A, %2F), and its
// params then keep them; else on URL.Path, which is decoded already (and
// must not be decoded again: jobs%2541 is the name jobs%41, invalid).
func pathName(c echo.Context) (string, error) {
	name := c.Param("name")
	if c.Request().URL.RawPath != "" && strings.IndexByte(name, '%') >= 0 {
		decoded, err := url.PathUnescape(name)
		if err != nil {
			return "", &lease.InvalidError{Code: lease.CodeInvalidName,
				Message: fmt.Sprintf("the lease name %q is not valid percent-encoding: write %%XX with two hex digits", clip(name))}
		}
		name = decoded
	}
	if name == "." || name == ".." {
		// Not a name (see PRODUCT.md's names): a client would have cleaned it out of the path.
		return "", &lease.InvalidError{Code: lease.CodeInvalidName,
			Message: fmt.Sprintf("the lease name %q is a path segment of its own, not a name: give 1 to %d characters of A-Z a-z 0-9 . _ - : other than . and ..", name, lease.MaxNameLen)}
	}
	if err := lease.ValidateName(name); err != nil {
		return "", err
	}
	return name, nil
}

// callCtx bounds one call to the backend by the Redis timeout.
func (s *Server) callCtx(c echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(c.Request().Context(), s.redisTimeout, errRedisTimeout)
}

// timedOut turns a call that ran out of the Redis timeout into a
// BackendError; other errors pass unchanged.
func timedOut(ctx context.Context, op string, write bool, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errRedisTimeout) {
		return &lease.BackendError{Op: op, MayHaveApplied: write, Err: errRedisTimeout}
	}
	return err
}

func (s *Server) acquire(c echo.Context) error {
	recv := time.Now()
	name, o, err := s.acquireOptions(c)
	if err != nil {
		return err
	}
	if o.Wait == 0 {
		l, err := s.acquireNow(c, name, o)
		return s.acquired(c, recv, o, l, err)
	}
	// A waiting acquire, which keeps this frame and the ones below it on
	// the stack for the whole wait: each step is a call of its own.
	ctx, done, err := s.waitContext(c)
	if err != nil {
		return err
	}
	l, err := s.b.Acquire(ctx, name, o)
	done()
	l, err = s.waited(c, ctx, name, l, err)
	return s.acquired(c, recv, o, l, err)
}

// acquired counts an acquire's outcome and answers a grant.
//
//go:noinline
func (s *Server) acquired(c echo.Context, recv time.Time, o *lease.AcquireOptions, l *lease.Lease, err error) error {
	if err != nil {
		if errors.Is(err, lease.ErrHeld) {
			s.m.conflicts.Inc()
		}
		var be *lease.BackendError
		if errors.As(err, &be) && be.MayHaveApplied {
			return &unknownAcquire{be: be, ownToken: o.Token != ""}
		}
		return err
	}
	s.m.grants.Inc()
	if !l.Sent.IsZero() {
		// How long after this request arrived the call that granted it was
		// sent: the client adds it to when it sent the request, to know how
		// early the grant could have begun (see lease.Lease.Sent).
		c.Response().Header().Set(HeaderSentAfter, strconv.FormatInt(max(l.Sent.Sub(recv), 0).Microseconds(), 10))
	}
	return writeJSON(c, newGrantBody(l))
}

// HeaderSentAfter, on a grant, is how many microseconds after the server
// received the acquire it sent the call that granted it (for a waiting
// acquire, the wait before it). The Client adds it to when it sent the
// request, which gives the earliest moment the grant can have started by
// its own clock, from which a Keeper counts the lease's life.
const HeaderSentAfter = wire.HeaderSentAfter

// unknownAcquire is an acquire that may have been granted while the server
// could not learn it (Redis timed out); ownToken says the client gave the
// token.
type unknownAcquire struct {
	be       *lease.BackendError
	ownToken bool
}

func (e *unknownAcquire) Error() string { return e.be.Error() }
func (e *unknownAcquire) Unwrap() error { return e.be }

// acquireOptions reads an acquire's name and options. Like every call out
// of acquire, it keeps its frame apart, as acquire's stays on the stack
// for the whole of a wait (see TestWaitingRequestsKeepSmallStacks).
//
//go:noinline
func (s *Server) acquireOptions(c echo.Context) (string, *lease.AcquireOptions, error) {
	p := new(params) // on the heap: 152 bytes less on the stack
	name, err := s.begin(c, acquireParams, Write, p)
	if err != nil {
		return "", nil, err
	}
	o := &lease.AcquireOptions{TTL: lease.DefaultTTL, Holder: p.val[pHolder], Metadata: p.val[pMetadata]}
	if p.has(pTTL) {
		if o.TTL, err = lease.ParseTTL(p.val[pTTL], s.b.MaxTTL()); err != nil {
			return "", nil, err
		}
	}
	if p.has(pToken) {
		if err := lease.ValidateToken(p.val[pToken]); err != nil {
			return "", nil, err
		}
		o.Token = p.val[pToken]
	}
	if p.has(pWait) {
		if o.Wait, err = lease.ParseWait(p.val[pWait], s.b.MaxWait()); err != nil {
			return "", nil, waitError(err, p.val[pWait], s.b.MaxWait())
		}
	}
	return name, o, nil
}

// waitError names the bound of a wait over it: the server's longest wait
// (leasehold serve's --max-wait). Apart, to keep a waiting request's stack
// small.
//
//go:noinline
func waitError(err error, v string, max time.Duration) error {
	if d, perr := time.ParseDuration(v); perr == nil && d > max {
		return &lease.InvalidError{Code: lease.CodeInvalidRequest, Message: fmt.Sprintf(
			"the wait %s is longer than this server's longest, %s (its --max-wait): wait at most %s, and ask again if it runs out", d, max, max)}
	}
	return err
}

// acquireNow runs an acquire that does not wait, bounded by the Redis
// timeout.
//
//go:noinline
func (s *Server) acquireNow(c echo.Context, name string, o *lease.AcquireOptions) (*lease.Lease, error) {
	ctx, cancel := s.callCtx(c)
	defer cancel()
	l, err := s.b.Acquire(ctx, name, o)
	return l, timedOut(ctx, "acquire", true, err)
}

// waitContext is the context of a waiting acquire: the request's, which
// Stop cancels with errShuttingDown, so that the wait ends with 503
// shutting_down, as it ends when the client goes away. done ends it.
//
//go:noinline
func (s *Server) waitContext(c echo.Context) (ctx context.Context, done func(), err error) {
	if s.stopping.Err() != nil {
		s.m.waits.WithLabelValues(CodeShuttingDown).Inc()
		return nil, nil, errShuttingDown
	}
	ctx, cancel := context.WithCancelCause(c.Request().Context())
	unhook := context.AfterFunc(s.stopping, func() { cancel(errShuttingDown) })
	s.m.waiting.Inc()
	return ctx, func() {
		s.m.waiting.Dec()
		unhook()
		cancel(nil)
	}, nil
}

// waited counts how a wait ended and says what to answer: a grant made as
// the client went away is released again, since nobody will use it.
//
//go:noinline
func (s *Server) waited(c echo.Context, ctx context.Context, name string, l *lease.Lease, err error) (*lease.Lease, error) {
	reqCtx := c.Request().Context()
	switch {
	case err == nil && reqCtx.Err() != nil:
		// Released in the background until Redis answers: a client that
		// went away must not leave a grant held by nobody.
		s.undo.Undo(s.b, name, l.Token, l.TTL, nil)
		s.m.waits.WithLabelValues(codeCanceled).Inc()
		return nil, context.Canceled
	case err == nil:
		s.m.waits.WithLabelValues("granted").Inc()
		return l, nil
	case errors.Is(context.Cause(ctx), errShuttingDown):
		s.m.waits.WithLabelValues(CodeShuttingDown).Inc()
		return nil, errShuttingDown
	case reqCtx.Err() != nil:
		s.m.waits.WithLabelValues(codeCanceled).Inc()
		return nil, context.Canceled
	case errors.Is(err, lease.ErrHeld):
		s.m.waits.WithLabelValues("timeout").Inc()
		return nil, err
	}
	s.m.waits.WithLabelValues("error").Inc()
	return nil, err
}

func (s *Server) renew(c echo.Context) error {
	var p params
	name, err := s.begin(c, renewParams, Write, &p)
	if err != nil {
		return err
	}
	if !p.has(pToken) {
		return &lease.InvalidError{Code: lease.CodeInvalidToken, Message: "renew needs the token that acquire returned: pass token"}
	}
	var ttl time.Duration
	if p.has(pTTL) {
		if ttl, err = lease.ParseTTL(p.val[pTTL], s.b.MaxTTL()); err != nil {
			return err
		}
	}
	o, err := outcomeParams(&p)
	if err != nil {
		return err
	}
	ctx, cancel := s.callCtx(c)
	var l *lease.Lease
	if o != nil {
		l, err = s.b.RenewWith(ctx, name, p.val[pToken], ttl, o)
	} else {
		l, err = s.b.Renew(ctx, name, p.val[pToken], ttl)
	}
	err = timedOut(ctx, "renew", true, err)
	cancel()
	if err != nil {
		s.m.renewFails.WithLabelValues(mapError(err).body.Error).Inc()
		if errors.Is(err, lease.ErrNotFound) {
			s.m.expired.Inc()
		}
		return err
	}
	return writeJSON(c, newGrantBody(l))
}

func (s *Server) release(c echo.Context) error {
	var p params
	name, err := s.begin(c, releaseParams, Write, &p)
	if err != nil {
		return err
	}
	if !p.has(pToken) {
		return &lease.InvalidError{Code: lease.CodeInvalidToken, Message: "release needs the token that acquire returned: pass token"}
	}
	o, err := outcomeParams(&p)
	if err != nil {
		return err
	}
	ctx, cancel := s.callCtx(c)
	if o != nil {
		err = s.b.ReleaseWith(ctx, name, p.val[pToken], o)
	} else {
		err = s.b.Release(ctx, name, p.val[pToken])
	}
	err = timedOut(ctx, "release", true, err)
	cancel()
	if err != nil {
		if errors.Is(err, lease.ErrNotFound) {
			s.m.expired.Inc()
		}
		return err
	}
	s.m.releases.Inc()
	return writeJSON(c, releaseBody{Name: name, Released: true})
}

// outcomeParams reads the exit_code and duration of a renew or release:
// how the holder's command ended, for the name's history; nil when the
// request gives none.
func outcomeParams(p *params) (*lease.Outcome, error) {
	if !p.has(pExitCode) {
		if p.has(pDuration) {
			return nil, badRequest("duration goes with exit_code: give the command's exit code too")
		}
		return nil, nil
	}
	code, err := parseInt("exit_code", p.val[pExitCode])
	if err != nil {
		return nil, err
	}
	if code < 0 || code > 255 {
		return nil, badRequest("the exit_code %d is out of range: use 0 to 255", code)
	}
	o := &lease.Outcome{ExitCode: int(code)}
	if p.has(pDuration) {
		d, err := time.ParseDuration(p.val[pDuration])
		if err != nil || d < 0 {
			return nil, badRequest("the duration %q is not one: give how long the command ran, with a unit, like 1m30s or 850ms", clip(p.val[pDuration]))
		}
		o.Duration = d
	}
	return o, nil
}

// breakLease ends the current grant of a name whoever holds it: admin
// access only. The history records who broke it: the token's label, or
// with auth off the client's address.
func (s *Server) breakLease(c echo.Context) error {
	var p params
	name, t, err := s.beginAs(c, breakParams, Admin, &p)
	if err != nil {
		return err
	}
	o := lease.BreakOptions{Reason: p.val[pReason]}
	if !p.has(pReason) || o.Reason == "" {
		return badRequest("break needs a reason, for the name's history: pass reason")
	}
	if p.has(pFence) {
		if o.Fence, err = parseInt("fence", p.val[pFence]); err != nil {
			return err
		}
		if o.Fence <= 0 {
			return badRequest("the fence %d is not one Leasehold grants: give a positive integer, or no fence to break the current grant", o.Fence)
		}
	}
	if t != nil {
		o.By = t.label()
	} else {
		// The connection's own address: echo's RealIP would take
		// X-Real-IP or X-Forwarded-For, which any client can write (a
		// review recorded "address alice-the-admin (INC-42 approved)").
		host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
		if err != nil {
			host = c.Request().RemoteAddr
		}
		o.By = "address " + host
	}
	ctx, cancel := s.callCtx(c)
	r, err := s.b.Break(ctx, name, &o)
	err = timedOut(ctx, "break", true, err)
	cancel()
	if err != nil {
		return err
	}
	s.log.Warn("lease broken", "name", name, "holder", r.Holder, "fence", r.Fence, "by", r.By, "reason", r.Reason)
	return writeJSON(c, brokenBody{Name: name, Broken: true, Record: wire.NewRecord(r)})
}

// history answers a name's grants, newest first.
func (s *Server) history(c echo.Context) error {
	var p params
	name, err := s.begin(c, historyParams, Read, &p)
	if err != nil {
		return err
	}
	limit := 0
	if p.has(pLimit) {
		n, err := parseInt("limit", p.val[pLimit])
		if err != nil {
			return err
		}
		if n < 1 || n > lease.MaxHistory+1 {
			return badRequest("the limit %d is out of range: use 1 to %d", n, lease.MaxHistory+1)
		}
		limit = int(n)
	}
	ctx, cancel := s.callCtx(c)
	recs, err := s.b.History(ctx, name, limit)
	err = timedOut(ctx, "history", false, err)
	cancel()
	if err != nil {
		return err
	}
	body := historyBody{Name: name, History: make([]recordBody, len(recs))}
	for i := range recs {
		body.History[i] = wire.NewRecord(&recs[i])
	}
	return writeJSON(c, body)
}

func (s *Server) get(c echo.Context) error {
	var p params
	name, err := s.begin(c, noParams, Read, &p)
	if err != nil {
		return err
	}
	ctx, cancel := s.callCtx(c)
	l, err := s.b.Get(ctx, name)
	err = timedOut(ctx, "get", false, err)
	cancel()
	if err != nil {
		return err
	}
	return writeJSON(c, newLeaseBody(l))
}

func (s *Server) verify(c echo.Context) error {
	var p params
	name, err := s.begin(c, verifyParams, Read, &p)
	if err != nil {
		return err
	}
	var proof lease.Proof
	switch {
	case p.has(pFence) && p.has(pToken):
		return badRequest("give a fence or a token to verify, not both")
	case p.has(pToken):
		proof.Token = p.val[pToken]
		if err := lease.ValidateToken(proof.Token); err != nil {
			return err
		}
	case p.has(pFence):
		if proof.Fence, err = parseInt("fence", p.val[pFence]); err != nil {
			return err
		}
		if proof.Fence <= 0 {
			return badRequest("the fence %d is not one Leasehold grants: give a positive integer", proof.Fence)
		}
	default:
		return badRequest("verify needs a fence or a token: pass one of them")
	}
	ctx, cancel := s.callCtx(c)
	l, err := s.b.Verify(ctx, name, proof)
	err = timedOut(ctx, "get", false, err)
	cancel()
	if err != nil {
		return err
	}
	return writeJSON(c, verifyBody{Name: name, Valid: true, Fence: l.Fence, TTLMs: l.TTL.Milliseconds()})
}

func (s *Server) list(c echo.Context) error {
	t, err := s.authenticate(c)
	if err != nil {
		return err
	}
	var p params
	if err := readParams(c.Request(), listParams, &p); err != nil {
		return err
	}
	o := lease.ListOptions{Prefix: p.val[pPrefix], Cursor: p.val[pCursor]}
	if err := lease.ValidatePrefix(o.Prefix); err != nil {
		return err
	}
	if p.has(pLimit) {
		n, err := parseInt("limit", p.val[pLimit])
		if err != nil {
			return err
		}
		if n < 1 || n > lease.MaxListLimit {
			return badRequest("the limit %d is out of range: use 1 to %d", n, lease.MaxListLimit)
		}
		o.Limit = int(n)
	}
	if err := authorize(t, "list prefix", o.Prefix, Read); err != nil {
		return err
	}
	ctx, cancel := s.callCtx(c)
	page, err := s.b.List(ctx, &o)
	err = timedOut(ctx, "list", false, err)
	cancel()
	if err != nil {
		return err
	}
	body := listBody{Leases: make([]leaseBody, len(page.Leases)), NextCursor: page.NextCursor}
	for i := range page.Leases {
		body.Leases[i] = newLeaseBody(&page.Leases[i])
	}
	return writeJSON(c, body)
}

// limits answers the server's bounds (--max-ttl, --max-wait), so that a
// client can refuse what the server would not grant before it starts
// anything (the CLI's run --hold). With auth on it needs a token, of any
// access and prefixes.
func (s *Server) limits(c echo.Context) error {
	if _, err := s.authenticate(c); err != nil {
		return err
	}
	var p params
	if err := readParams(c.Request(), noParams, &p); err != nil {
		return err
	}
	return writeJSON(c, limitsBody{
		MinTTLMs: lease.MinTTL.Milliseconds(), MaxTTLMs: s.b.MaxTTL().Milliseconds(), MaxWaitMs: s.b.MaxWait().Milliseconds(),
	})
}

// whoami answers whether auth is on and, when it is, the access and
// prefixes of the caller's bearer token (401 without a valid one), so that
// a client such as the dashboard can offer only what it may do: with auth
// off, everything, breaking included.
func (s *Server) whoami(c echo.Context) error {
	t, err := s.authenticate(c)
	if err != nil {
		return err
	}
	var p params
	if err := readParams(c.Request(), noParams, &p); err != nil {
		return err
	}
	if t == nil {
		return writeJSON(c, authBody{Auth: false})
	}
	prefixes := t.prefixes
	if prefixes == nil {
		prefixes = []string{"*"}
	}
	return writeJSON(c, authBody{Auth: true, Access: t.access.String(), Prefixes: prefixes})
}

func (s *Server) healthz(c echo.Context) error {
	return writeJSON(c, statusBody{Status: "ok"})
}

// readyz answers 200 while Redis answers and the scripts are loaded. When
// Redis answers without the scripts (it restarted, or SCRIPT FLUSH), it
// loads them.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := s.callCtx(c)
	defer cancel()
	if err := timedOut(ctx, "ping", false, s.ready(ctx)); err != nil {
		return err
	}
	return writeJSON(c, statusBody{Status: "ready"})
}

// ready is the readiness check of /readyz and of leasehold_backend_up:
// nil while Redis answers and has the scripts, which it loads when Redis
// answers without them.
func (s *Server) ready(ctx context.Context) error {
	err := s.b.Ping(ctx)
	if err != nil && ctx.Err() == nil {
		if s.b.LoadScripts(ctx) == nil {
			err = s.b.Ping(ctx)
		}
	}
	s.sampled.checked(err)
	return err
}
