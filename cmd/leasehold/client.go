package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// connFlags choose the transport of a client command: a Leasehold server
// over HTTP (the default) or Redis itself.
type connFlags struct {
	// Server is "" unless the flag or LEASEHOLD_SERVER gives one (then
	// defaultServer), so that a server given as the default URL and Redis
	// given too are told apart from Redis alone.
	Server    string `help:"Leasehold server URL (default http://127.0.0.1:7070)." env:"LEASEHOLD_SERVER" placeholder:"URL" group:"Connection"`
	AuthToken string `help:"Bearer token for a server with auth on." env:"LEASEHOLD_TOKEN" placeholder:"TOKEN" group:"Connection"`
	Redis     string `help:"Talk straight to Redis at this URL (redis://host:port/db, rediss:// for TLS, or a bare host:port) instead of a server." placeholder:"URL" group:"Connection"`
}

// connect returns the transport the flags choose and a function that closes it.
func (f *connFlags) connect() (lease.Interface, func(), error) {
	if f.Redis != "" && f.Server != "" {
		return nil, nil, usageErr(fmt.Errorf("both a server (%s) and --redis (%s) are given, by flag or by "+
			"LEASEHOLD_SERVER/LEASEHOLD_REDIS: give one of them (to override LEASEHOLD_REDIS, pass --redis '')",
			f.Server, redactURL(f.Redis)))
	}
	if f.Redis != "" {
		opts, err := parseRedisURL(f.Redis)
		if err != nil {
			return nil, nil, usageErr(fmt.Errorf("--redis %q: %v", f.Redis, err))
		}
		redis.SetLogger(lease.RedisLogger(nil, 0)) // failures reach the user as errors, once
		rdb := redis.NewClient(opts)
		return lease.New(rdb, nil), func() { rdb.Close() }, nil
	}
	server := f.Server
	if server == "" {
		server = defaultServer
	}
	return newHTTPClient(server, f.AuthToken)
}

// defaultServer is --server when neither the flag nor LEASEHOLD_SERVER gives one.
const defaultServer = "http://127.0.0.1:7070"

// redactURL is u without its password, for messages.
func redactURL(u string) string {
	if p, err := url.Parse(u); err == nil && p.User != nil {
		if _, ok := p.User.Password(); ok {
			p.User = url.UserPassword(p.User.Username(), "xxxxx")
			return p.String()
		}
	}
	return u
}

// parseRedisURL parses a Redis URL, taking a bare host:port (what redis-cli
// -h/-p and most docs give) as redis://host:port.
func parseRedisURL(u string) (*redis.Options, error) {
	if !strings.Contains(u, "://") {
		u = "redis://" + u
	}
	return redis.ParseURL(u)
}

// settle waits, up to limit, until lc has undone in the background the
// grants of unknown outcome it made (an acquire cut short by a signal or a
// timeout), so that the process does not exit leaving a lease that nobody
// holds the token of. It says so when that takes a while; SIGINT or SIGTERM
// stops it, and the grant then expires with its TTL.
func settle(lc lease.Interface, stderr io.Writer, limit time.Duration) {
	s, ok := lc.(interface{ Settle(context.Context) error })
	if !ok {
		return
	}
	quick, cancel := context.WithTimeout(context.Background(), min(200*time.Millisecond, limit))
	err := s.Settle(quick)
	cancel()
	if err == nil || limit <= 200*time.Millisecond {
		return
	}
	fmt.Fprintln(stderr, "leasehold: releasing the grant that the unfinished acquire may have made (Ctrl-C to leave it to expire with its TTL)")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel = context.WithTimeout(ctx, limit)
	defer cancel()
	if s.Settle(ctx) != nil {
		fmt.Fprintln(stderr, "leasehold: gave up releasing it: it expires with its TTL")
	}
}

// outFlags select machine output.
type outFlags struct {
	JSON bool `help:"Print JSON on stdout, the objects of the HTTP API."`
}

// noMax is the bound given to the lease package's parsers: the server (or
// Redis client) enforces its own --max-ttl and --max-wait.
const noMax = time.Duration(math.MaxInt64)

func parseTTL(s string) (time.Duration, error) {
	d, err := lease.ParseTTL(s, noMax)
	if err != nil {
		return 0, usageErr(fmt.Errorf("--ttl: %w", err))
	}
	return d, nil
}

// waitFlag is --wait: a duration, or forever.
type waitFlag struct {
	d       time.Duration
	forever bool
}

func parseWait(s string) (waitFlag, error) {
	if strings.EqualFold(s, "forever") {
		return waitFlag{forever: true}, nil
	}
	d, err := lease.ParseWait(s, noMax)
	if err != nil {
		return waitFlag{}, usageErr(fmt.Errorf("--wait: %w (or --wait forever)", err))
	}
	return waitFlag{d: d}, nil
}

func usageErr(err error) error { return &exitError{code: exitUsage, err: err} }

// exitFor maps a transport's error to the CLI's exit codes; conflict is the
// code for a lease held by another (75 unless -E says otherwise).
func exitFor(err error, conflict int) error {
	var held *lease.HeldError
	var invalid *lease.InvalidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, new(*exitError)):
		return err
	case errors.As(err, &held):
		return &exitError{code: conflict, err: fmt.Errorf("%q is held by %s (fence %d) for another %s",
			held.Name, holderText(held.Holder), held.Fence, held.TTL)}
	case errors.Is(err, lease.ErrNotHolder), errors.Is(err, lease.ErrNotFound):
		return &exitError{code: exitFailure, err: err}
	case errors.As(err, &invalid) && invalid.Code == lease.CodeInvalidTTL:
		// parseTTL checked the syntax and the lower bound: the backend
		// refused the upper one.
		return &exitError{code: exitUsage, err: fmt.Errorf("%w (the longest is the server's --max-ttl)", err)}
	case errors.Is(err, lease.ErrInvalid):
		return &exitError{code: exitUsage, err: err}
	case errors.Is(err, httpapi.ErrUnauthorized):
		// The server's words are for an HTTP client; say what the CLI takes.
		return &exitError{code: exitNoPerm, err: fmt.Errorf("%w\nwith the CLI, give a token of the server's auth file "+
			"with --auth-token TOKEN or in LEASEHOLD_TOKEN", err)}
	case isAuthErr(err):
		return &exitError{code: exitNoPerm, err: err}
	case errors.Is(err, lease.ErrLost):
		return &exitError{code: exitLost, err: err}
	}
	// Backend errors, connection failures, timeouts: unavailable.
	var be *lease.BackendError
	if errors.As(err, &be) && be.Backend != "" && errors.Is(err, syscall.ECONNREFUSED) {
		err = fmt.Errorf("%w\nnothing listens at that server address: start one with `leasehold serve`, "+
			"give its URL with --server or LEASEHOLD_SERVER, or talk to Redis directly with --redis", err)
	}
	return &exitError{code: exitUnavailable, err: err}
}

func holderText(h string) string {
	if h == "" {
		return "an unnamed holder"
	}
	return fmt.Sprintf("%q", h)
}

// leaseJSON is a lease as the HTTP API writes it.
type leaseJSON struct {
	Name      string `json:"name"`
	Holder    string `json:"holder"`
	Token     string `json:"token,omitempty"`
	Fence     int64  `json:"fence"`
	TTLMillis int64  `json:"ttl_ms"`
	ExpiresAt string `json:"expires_at"`
	Metadata  string `json:"metadata"`
}

func toJSON(l *lease.Lease) leaseJSON {
	return leaseJSON{
		Name: l.Name, Holder: l.Holder, Token: l.Token, Fence: l.Fence, TTLMillis: l.TTL.Milliseconds(),
		ExpiresAt: l.ExpiresAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), Metadata: l.Metadata,
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// grantLine describes a grant for stderr, without its token.
func grantLine(verb string, l *lease.Lease) string {
	s := fmt.Sprintf("%s %q: fence %d, ttl %s, expires %s", verb, l.Name, l.Fence, l.TTL,
		l.ExpiresAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	if l.Holder != "" {
		s += fmt.Sprintf(", holder %q", l.Holder)
	}
	return s
}

type acquireCmd struct {
	connFlags
	outFlags
	Name         string `arg:"" help:"Lease name: 1 to 200 bytes of A-Z a-z 0-9 . _ - :"`
	TTL          string `help:"Time to live, with a unit." default:"30s"`
	Holder       string `help:"Public label of who holds it (host, job id)."`
	Metadata     string `help:"A string returned by reads (at most 4 KiB)."`
	Wait         string `help:"How long to wait for the lease when it is held (a duration, or forever)." default:"0"`
	ConflictExit int    `name:"conflict-exit-code" short:"E" help:"Exit code when the lease is held by another." default:"75"`
}

func (c *acquireCmd) Help() string {
	return `Takes the lease NAME and prints its token alone on stdout, the grant on
stderr. When another holder has it, exits 75 (or -E) with the remaining TTL on
stderr; with --wait, waits that long for it first.

Examples:
  T=$(leasehold acquire nightly-report --ttl 5m --holder "$(hostname)") || exit
  leasehold acquire deploy --wait 30s -E 0
  leasehold acquire job --json          # the whole grant, token included`
}

func (c *acquireCmd) Run(e *env) error {
	ttl, err := parseTTL(c.TTL)
	if err != nil {
		return err
	}
	wait, err := parseWait(c.Wait)
	if err != nil {
		return err
	}
	lc, closeFn, err := c.connect()
	if err != nil {
		return exitFor(err, c.ConflictExit)
	}
	defer closeFn()
	l, err := acquireWaiting(e.ctx, lc, c.Name, lease.AcquireOptions{TTL: ttl, Holder: c.Holder, Metadata: c.Metadata}, wait)
	if err != nil {
		settle(lc, e.stderr, min(ttl, 10*time.Second))
		return exitFor(err, c.ConflictExit)
	}
	if c.JSON {
		return writeJSON(e.stdout, toJSON(l))
	}
	fmt.Fprintln(e.stderr, grantLine("acquired", l))
	fmt.Fprintln(e.stdout, l.Token)
	return nil
}

type renewCmd struct {
	connFlags
	outFlags
	Name  string `arg:"" help:"Lease name."`
	Token string `help:"The token acquire printed (default $LEASE_TOKEN, as set by leasehold run)." env:"LEASE_TOKEN" required:""`
	TTL   string `help:"New time to live from now (default: the grant's latest TTL)."`
}

func (c *renewCmd) Help() string {
	return `Extends the lease NAME held with --token. Exits 1 when the lease is gone
(not_found) or held by another (not_holder): either way it is lost.

Examples:
  leasehold renew nightly-report --token "$T"
  leasehold renew nightly-report --token "$T" --ttl 10m
  LEASE_TOKEN=$T leasehold renew nightly-report --json`
}

// checkToken refuses a --token that no server would take, before anything
// is sent: "--token" with nothing after it, or "$T" of a failed acquire.
func checkToken(tok string) error {
	if tok == "" {
		return usageErr(errors.New("--token is empty: give the token that acquire printed (--token \"$T\"), " +
			"or set LEASE_TOKEN (leasehold run sets it for its command)"))
	}
	if err := lease.ValidateToken(tok); err != nil {
		return usageErr(fmt.Errorf("--token: %w", err))
	}
	return nil
}

func (c *renewCmd) Run(e *env) error {
	if err := checkToken(c.Token); err != nil {
		return err
	}
	var ttl time.Duration
	if c.TTL != "" {
		var err error
		if ttl, err = parseTTL(c.TTL); err != nil {
			return err
		}
	}
	lc, closeFn, err := c.connect()
	if err != nil {
		return exitFor(err, exitConflict)
	}
	defer closeFn()
	l, err := lc.Renew(e.ctx, c.Name, c.Token, ttl)
	if err != nil {
		return exitFor(err, exitConflict)
	}
	if c.JSON {
		return writeJSON(e.stdout, toJSON(l))
	}
	fmt.Fprintln(e.stderr, grantLine("renewed", l))
	return nil
}

type releaseCmd struct {
	connFlags
	outFlags
	Name  string `arg:"" help:"Lease name."`
	Token string `help:"The token acquire printed (default $LEASE_TOKEN)." env:"LEASE_TOKEN" required:""`
}

func (c *releaseCmd) Help() string {
	return `Releases the lease NAME held with --token, so others can take it at once.
It never removes another holder's lease: that exits 1 (not_holder), as does a
lease that is already gone (not_found).

Examples:
  leasehold release nightly-report --token "$T"
  trap 'leasehold release job --token "$T"' EXIT`
}

func (c *releaseCmd) Run(e *env) error {
	if err := checkToken(c.Token); err != nil {
		return err
	}
	lc, closeFn, err := c.connect()
	if err != nil {
		return exitFor(err, exitConflict)
	}
	defer closeFn()
	if err := lc.Release(e.ctx, c.Name, c.Token); err != nil {
		return exitFor(err, exitConflict)
	}
	if c.JSON {
		return writeJSON(e.stdout, map[string]any{"name": c.Name, "released": true})
	}
	fmt.Fprintf(e.stderr, "released %q\n", c.Name)
	return nil
}

type getCmd struct {
	connFlags
	outFlags
	Name string `arg:"" help:"Lease name."`
}

func (c *getCmd) Help() string {
	return `Shows the lease NAME: holder, fence, remaining TTL, expiry, metadata and how many wait
(never its token). Exits 1 when there is no such lease.

Examples:
  leasehold get nightly-report
  leasehold get nightly-report --json
  leasehold get deploy >/dev/null 2>&1 && echo "someone is deploying"`
}

// getLease reads the lease name through the transport the flags choose.
func (f *connFlags) getLease(ctx context.Context, name string) (*lease.Lease, error) {
	lc, closeFn, err := f.connect()
	if err != nil {
		return nil, err
	}
	defer closeFn()
	return lc.Get(ctx, name)
}

func (c *getCmd) Run(e *env) error {
	l, err := c.getLease(e.ctx, c.Name)
	if err != nil {
		return exitFor(err, exitConflict)
	}
	if c.JSON {
		return writeJSON(e.stdout, struct {
			leaseJSON
			Waiting int `json:"waiting"`
		}{toJSON(l), l.Waiting})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	j := toJSON(l)
	fmt.Fprintf(tw, "name\t%s\nholder\t%s\nfence\t%d\nttl\t%s\nexpires_at\t%s\nmetadata\t%s\nwaiting\t%d\n",
		j.Name, j.Holder, j.Fence, l.TTL, j.ExpiresAt, j.Metadata, l.Waiting)
	return tw.Flush()
}

type listCmd struct {
	connFlags
	outFlags
	Prefix string `help:"Only the leases whose names start with this."`
	Limit  int    `help:"Leases per request to the server (1 to 1000); every page is printed." default:"100"`
}

func (c *listCmd) Help() string {
	return `Lists the leases whose names start with --prefix (all by default), every
page of them, in no particular order.

Examples:
  leasehold list
  leasehold list --prefix jobs:
  leasehold list --prefix ci: --json`
}

func (c *listCmd) Run(e *env) error {
	lc, closeFn, err := c.connect()
	if err != nil {
		return exitFor(err, exitConflict)
	}
	defer closeFn()
	var all []leaseJSON
	seen := map[string]bool{} // a SCAN may return a name twice
	opts := &lease.ListOptions{Prefix: c.Prefix, Limit: c.Limit}
	for {
		page, err := lc.List(e.ctx, opts)
		if err != nil {
			return exitFor(err, exitConflict)
		}
		for i := range page.Leases {
			if !seen[page.Leases[i].Name] {
				seen[page.Leases[i].Name] = true
				all = append(all, toJSON(&page.Leases[i]))
			}
		}
		if page.NextCursor == "" {
			break
		}
		opts.Cursor = page.NextCursor
	}
	if c.JSON {
		if all == nil {
			all = []leaseJSON{}
		}
		return writeJSON(e.stdout, map[string]any{"leases": all})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOLDER\tFENCE\tTTL\tEXPIRES_AT")
	for _, l := range all {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", l.Name, dash(l.Holder), l.Fence,
			time.Duration(l.TTLMillis)*time.Millisecond, l.ExpiresAt)
	}
	return tw.Flush()
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

// withoutCancel gives a final call (a release on the way out) its own short
// deadline, whatever happened to ctx.
func withoutCancel(ctx context.Context, ttl time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), min(max(ttl, time.Second), 10*time.Second))
}

type healthCmd struct {
	connFlags
	Timeout time.Duration `help:"Give up after this long." default:"5s"`
}

func (c *healthCmd) Help() string {
	return `Asks the server whether it is ready (GET /readyz: it answers and its Redis
does), or with --redis, Redis itself. Exits 0 when ready, 69 when not, with
the reason on stderr; prints nothing when ready. The image's HEALTHCHECK runs
it: distroless has no shell or curl.

Examples:
  leasehold health                                  # the server at $LEASEHOLD_SERVER
  leasehold health --server http://lh.internal:7070
  leasehold health --redis 127.0.0.1:6379`
}

func (c *healthCmd) Run(e *env) error {
	if c.Timeout <= 0 {
		return usageErr(fmt.Errorf("--timeout %s: give a positive duration, like 5s", c.Timeout))
	}
	if c.Server == "" && c.Redis == "" {
		c.Server = listenURL(os.Getenv("LEASEHOLD_LISTEN")) // in the image: where serve listens
	}
	lc, closeFn, err := c.connect()
	if err != nil {
		return exitFor(err, exitConflict)
	}
	defer closeFn()
	p, ok := lc.(interface{ Ping(context.Context) error })
	if !ok {
		return fmt.Errorf("this transport cannot be asked whether it is ready")
	}
	ctx, cancel := context.WithTimeout(e.ctx, c.Timeout)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within --timeout %s: %w", c.Timeout, err)
		}
		if isAuthErr(err) {
			return exitFor(err, exitConflict)
		}
		var be *lease.BackendError
		if errors.As(err, &be) { // a read: "it was not applied" says nothing here
			what := be.Backend
			if what == "" {
				what = "redis"
			}
			err = fmt.Errorf("%s: %w", what, be.Err)
		}
		return &exitError{code: exitUnavailable, err: fmt.Errorf("not ready: %w", err)}
	}
	return nil
}

// listenURL is the URL on this host of a server listening at addr (serve's
// --listen): all interfaces are reached on loopback. "" is the default.
func listenURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if addr == "" || err != nil {
		return defaultServer
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
