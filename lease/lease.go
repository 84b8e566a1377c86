// Package lease is Leasehold's lease engine: named, expiring, fenced leases on
// Redis, each state change one atomic Lua script (see package lua).
//
// The primitive is insert-if-missing with a TTL: Acquire creates the lease only
// if nobody holds it, and otherwise answers how long the current holder's lease
// still lives (*HeldError). Renew extends a lease and Release deletes it, both
// only for the holder of its token.
//
// # Guarantees
//
//   - At most one token holds a name at any instant of Redis's clock, for one
//     Redis (or a Sentinel/Cluster primary) that does not lose acknowledged writes.
//   - Every new grant of a name gets a fence greater than every fence granted
//     before for that name: after release, after expiry, and after Redis lost its
//     data. After data loss this rests on Redis's clock (the next fence is at least
//     Redis's TIME in microseconds): it holds unless the Redis that lost the data,
//     or a replica promoted in its place, has a clock behind the old one's.
//   - TTLs and expiry times are Redis's, so clients' clocks do not matter.
//
// # Deadlines
//
// Every call returns when its context's deadline passes or it is cancelled,
// whatever options the go-redis client has (go-redis itself honours a
// deadline only with ContextTimeoutEnabled, and a cancellation never): the
// command left behind finishes under the Redis client's own timeouts and
// its answer is not read. A write cut short this way has an unknown
// outcome (see Unknown). An Acquire of unknown outcome without a Token of
// the caller's is undone in the background, since nobody else knows its
// token; Settle waits for that before a program exits. A Keeper's timing
// rule (see Keeper) rests on this.
//
// # What is not guaranteed
//
// A lease is a promise with a time limit, not mutual exclusion of processes: a
// holder that pauses (GC, swap, a stopped VM) past its TTL may act after another
// holder was granted the lease. Replication to a replica is asynchronous, so a
// failover can lose a grant. Pass the fence to every store you write to and let
// it reject fences lower than the highest it has seen; the fence, not the lease,
// is what makes such writes safe.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/lua"
	"github.com/redis/go-redis/v9"
)

// Scripts, compiled once. They run with EVALSHA and fall back to EVAL on
// NOSCRIPT, so a restart, failover or SCRIPT FLUSH heals itself.
var (
	acquireScript = newScript(lua.Acquire, 2)
	renewScript   = newScript(lua.Renew, 1)
	releaseScript = newScript(lua.Release, 2)
	inspectScript = newScript(lua.Inspect, 1)
)

// Lease is one grant of a name. Token is set only for the acquirer (Acquire
// and Renew); reads never carry it.
type Lease struct {
	Name   string
	Holder string
	Token  string
	Fence  int64
	// TTL is the time to live: granted by Acquire or Renew, remaining for reads.
	TTL time.Duration
	// ExpiresAt is when the lease ends by Redis's clock, to the millisecond.
	ExpiresAt time.Time
	Metadata  string
	// Sent is when, by this process's clock, the request that made this
	// grant (or renewal) was sent: Redis applied it later, so the lease
	// lives at least until Sent + TTL by Redis's clock. A Keeper counts the
	// lease's life from it. Zero for reads.
	Sent time.Time
}

// AcquireOptions are the optional parts of an Acquire. A nil *AcquireOptions
// is the same as the zero value.
type AcquireOptions struct {
	// TTL is how long the grant lives unless renewed. Default DefaultTTL.
	TTL time.Duration
	// Holder is a public label of who holds it (host, pod, job id).
	Holder string
	// Token is the caller's own secret; default a new random token of 144 bits.
	// Acquiring again with the current holder's token re-grants idempotently:
	// the same fence, and this call's TTL, holder and metadata.
	Token string
	// Metadata is a string returned by reads, at most 4 KiB.
	Metadata string
	// Wait is how long to wait for the lease when it is held. Default 0: answer
	// *HeldError at once. A waiter is woken by the holder's release or takes
	// the lease when the holder's TTL runs out, without polling; waiters of
	// one Client are served in arrival order. When the wait ends the error is
	// the last *HeldError. The context's deadline also ends a wait, with an
	// error that wraps ctx.Err(); it does not make Acquire wait by itself.
	Wait time.Duration
}

// Proof names the grant that Verify checks: exactly one of Fence and Token.
type Proof struct {
	Fence int64
	Token string
}

// ListOptions select a page of List. A nil *ListOptions is the zero value.
type ListOptions struct {
	// Prefix keeps the names that start with it; "" keeps all.
	Prefix string
	// Limit is the most leases a page holds. Default 100, at most 1000.
	Limit int
	// Cursor continues a listing: the NextCursor of the previous page.
	Cursor string
}

// Page is one page of List.
type Page struct {
	Leases []Lease
	// NextCursor continues the listing; "" on the last page.
	NextCursor string
}

// List limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Interface is what the helpers of this package need from a transport. Both
// *Client (Redis) and the HTTP client of package httpapi implement it.
type Interface interface {
	Acquire(ctx context.Context, name string, opts *AcquireOptions) (*Lease, error)
	Renew(ctx context.Context, name, token string, ttl time.Duration) (*Lease, error)
	Release(ctx context.Context, name, token string) error
	Get(ctx context.Context, name string) (*Lease, error)
	Verify(ctx context.Context, name string, proof Proof) (*Lease, error)
	List(ctx context.Context, opts *ListOptions) (*Page, error)
}

var _ Interface = (*Client)(nil)

// Options configure a Client. A nil *Options is the zero value.
type Options struct {
	// KeyPrefix starts every key. Default "leasehold:", so a lease named N is
	// the hash "leasehold:{N}" and its fence counter "leasehold:{N}:fence".
	KeyPrefix string
	// MaxTTL is the largest TTL granted. Default DefaultMaxTTL (24h).
	MaxTTL time.Duration
	// MaxWait is the longest wait an Acquire may ask for. Default 5m.
	MaxWait time.Duration
	// AutoPipeline sends the scripts of concurrent calls through go-redis's
	// autopipeliner (the Redis client's AsyncAutoPipeline, shared with its
	// other users and running until the Redis client is closed), which
	// batches them into fewer, fuller round trips. Default false: every
	// call is a round trip of its own. It pays when many calls run at once
	// (see BenchmarkCycle); a call made while no other is in flight goes
	// straight to Redis as without it, and so do waiting's subscriptions,
	// List, LoadScripts and Ping. A call whose context ends returns at once,
	// but its script may still run. A Redis client that cannot autopipeline
	// (a *redis.Ring) ignores it.
	AutoPipeline bool
	// RestartDelay is, for a Redlock, how long a master that restarted does
	// not count toward grants, so that the grants it forgot (a master without
	// persistence loses them) expire first; see Redlock. Default MaxTTL plus
	// the drift allowance. Negative: no delay, only for masters that lose no
	// acknowledged write (appendonly yes, appendfsync always). A Client
	// ignores it.
	RestartDelay time.Duration
}

// DefaultMaxWait is the longest wait unless Options.MaxWait says otherwise.
const DefaultMaxWait = 5 * time.Minute

// Client takes leases on Redis. It is safe for concurrent use.
type Client struct {
	rdb     redis.UniversalClient
	prefix  string
	maxTTL  time.Duration
	maxWait time.Duration
	sharded bool        // Redis Cluster: announce with SPUBLISH
	sub     *subscriber // waiters' shared subscription to releases
	// announce is release.lua's ARGV[2], boxed once: "s" (SPUBLISH) when
	// sharded, else "p" (PUBLISH).
	announce any
	// id names this Client in the waiter marks of the scripts (field w): a
	// release hands a lease over to this Client's next waiter only when no
	// other client's callers wait for it.
	id string
	// ap is rdb's autopipeliner when Options.AutoPipeline is set, else nil.
	ap       *redis.AutoPipeliner
	inflight atomic.Int64 // calls running a script: with ap, a lone one skips it
	undo     Undoer       // grants of unknown outcome made with tokens of this Client's making
	// deadlines: rdb bounds each command by its context's deadline itself
	// (ContextTimeoutEnabled), so a call with one needs no goroutine.
	deadlines bool
}

// New returns a Client over rdb: a single Redis, Sentinel or Cluster client.
func New(rdb redis.UniversalClient, opts *Options) *Client {
	c := &Client{rdb: rdb, prefix: "leasehold:", maxTTL: DefaultMaxTTL, maxWait: DefaultMaxWait, id: NewToken()[:12]}
	if opts != nil {
		if opts.KeyPrefix != "" {
			c.prefix = opts.KeyPrefix
		}
		if opts.MaxTTL > 0 {
			c.maxTTL = opts.MaxTTL
		}
		if opts.MaxWait > 0 {
			c.maxWait = opts.MaxWait
		}
		if opts.AutoPipeline {
			if ap, err := rdb.AsyncAutoPipeline(); err == nil {
				c.ap = ap // closed with rdb, which is the caller's
			}
		}
	}
	_, c.sharded = rdb.(*redis.ClusterClient)
	c.deadlines = honoursDeadlines(rdb)
	c.announce = "p"
	if c.sharded {
		c.announce = "s"
	}
	c.sub = newSubscriber(rdb, c.sharded)
	return c
}

// Close ends the Client's subscription to releases: Acquire calls that are
// waiting return a *BackendError wrapping ErrClosed, and so do later ones
// that would wait. Other calls keep working. It does not close the Redis
// client, which belongs to the caller. A Client whose waiters have all
// returned holds no connection or goroutine of its own, so Close is needed
// only to end waits early.
func (c *Client) Close() error {
	c.sub.close()
	return nil
}

// Settle waits until every grant this Client is undoing in the background
// is undone (or has surely expired), or ctx ends. Those are the grants that
// an Acquire without a Token of its caller's may have made when it returned
// an unknown outcome: its context ended while it ran, or a *BackendError
// with MayHaveApplied. A program that exits right after such an error calls
// Settle first, so that it leaves no grant that nobody holds the token of.
func (c *Client) Settle(ctx context.Context) error { return c.undo.Wait(ctx) }

// MaxTTL returns the largest TTL this client grants.
func (c *Client) MaxTTL() time.Duration { return c.maxTTL }

// MaxWait returns the longest wait this client accepts.
func (c *Client) MaxWait() time.Duration { return c.maxWait }

// LoadScripts loads every script into Redis (into every primary, for a Cluster),
// so the first calls need no EVAL. Calls work without it: a missing script is
// loaded on demand.
func (c *Client) LoadScripts(ctx context.Context) error {
	_, err := boundedCall(ctx, func() (struct{}, error) { return struct{}{}, c.loadScripts(ctx) })
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return c.backendErr("load scripts", false, err)
	}
	return err
}

func (c *Client) loadScripts(ctx context.Context) error {
	for _, s := range []*script{acquireScript, renewScript, releaseScript, inspectScript, raiseScript} {
		if err := s.Load(ctx, c.rdb).Err(); err != nil {
			return c.backendErr("load scripts", false, err)
		}
	}
	return nil
}

// Ping checks that Redis answers and that the scripts are loaded.
func (c *Client) Ping(ctx context.Context) error {
	shas := []string{acquireScript.Hash(), renewScript.Hash(), releaseScript.Hash(), inspectScript.Hash(), raiseScript.Hash()}
	loaded, err := boundedCall(ctx, func() ([]bool, error) { return c.rdb.ScriptExists(ctx, shas...).Result() })
	if err != nil {
		return c.backendErr("ping", false, err)
	}
	for i, ok := range loaded {
		if !ok {
			return &BackendError{Op: "ping", Err: fmt.Errorf("script %s is not loaded", shas[i])}
		}
	}
	return nil
}

func (c *Client) key(name string) string { return c.prefix + "{" + name + "}" }

// fenceKey returns the keys of name's lease hash and fence counter, made in
// one allocation: the hash's key is the counter's without its suffix.
func (c *Client) fenceKey(name string) (key, fence string) {
	fence = c.prefix + "{" + name + "}:fence"
	return fence[:len(fence)-len(":fence")], fence
}

// Channel is the pub/sub channel on which the release of name is announced:
// the lease's key with ":released" (release.lua makes it the same way).
func (c *Client) channel(name string) string { return c.prefix + "{" + name + "}:released" }

// Acquire takes the lease name. When another holder has it, the error is a
// *HeldError with the remaining TTL (after waiting up to opts.Wait, if set).
func (c *Client) Acquire(ctx context.Context, name string, opts *AcquireOptions) (*Lease, error) {
	var o AcquireOptions
	if opts != nil {
		o = *opts
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if err := c.checkAcquire(name, &o); err != nil {
		return nil, err
	}
	ownToken := o.Token == ""
	if ownToken {
		o.Token = NewToken()
	}
	if o.Wait == 0 {
		l, err := c.tryAcquire(ctx, name, &o, "")
		if ownToken && unknown(err) {
			// Only this call knew the token: nobody else can end the grant
			// it may have made.
			c.undo.Undo(c, name, o.Token, o.TTL, err)
		}
		return l, err
	}
	// A wait (see wait.go). This frame stays on the stack for the whole
	// wait, on top of net/http and echo for a waiting HTTP request, so the
	// work is done in calls that return before it parks (see httpapi's
	// TestWaitingRequestsKeepSmallStacks). The waiter parks on w.wake
	// alone: the wait's end, the nap until the holder's expiry and the
	// context's end poke it, like a release does.
	ws, err := c.startWait(ctx, name, &o, ownToken)
	if err != nil {
		return nil, err
	}
	defer ws.finish()
	for {
		if l, err, over := ws.step(ctx); over {
			return l, err
		}
		<-ws.w.wake
		if l, err, over := ws.woken(ctx); over {
			return l, err
		}
	}
}

func (c *Client) checkAcquire(name string, o *AcquireOptions) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateTTL(o.TTL, c.maxTTL); err != nil {
		return err
	}
	if o.Token != "" {
		if err := ValidateToken(o.Token); err != nil {
			return err
		}
	}
	if err := ValidateHolder(o.Holder); err != nil {
		return err
	}
	if err := ValidateMetadata(o.Metadata); err != nil {
		return err
	}
	if o.Wait < 0 || o.Wait > c.maxWait {
		return invalid(CodeInvalidRequest, "the wait %s is out of range: use 0 to %s", o.Wait, c.maxWait)
	}
	return nil
}

// tryAcquire runs the acquire script once. A caller that will wait when
// the lease is held passes its Client's id as waiter, so that the lease is
// marked and its release announced.
func (c *Client) tryAcquire(ctx context.Context, name string, o *AcquireOptions, waiter string) (*Lease, error) {
	ttl := o.TTL.Milliseconds()
	key, fence := c.fenceKey(name)
	sent := time.Now()
	res, err := c.run(ctx, acquireScript, key, fence, o.Token, o.Holder, o.Metadata, ttl, waiter)
	if err != nil {
		return nil, c.backendErr("acquire", true, err)
	}
	r := reply(res)
	switch r.str(0) {
	case "granted":
		return &Lease{
			Name: name, Holder: o.Holder, Token: o.Token, Fence: r.int(1),
			TTL: msDur(ttl), ExpiresAt: msTime(r.int(2) + ttl), Metadata: o.Metadata, Sent: sent,
		}, r.err("acquire", 4)
	case "held":
		// PTTL counts whole milliseconds: a lease that is still there lives
		// up to 1ms more even when it answers 0.
		return nil, firstErr(r.err("acquire", 5), &HeldError{Name: name, Holder: r.str(1), Fence: r.int(2), TTL: max(msDur(r.int(3)), time.Millisecond)})
	}
	return nil, r.unexpected("acquire")
}

// Renew extends the lease for the holder of token, to ttl from now (0: the TTL
// of the grant's most recent acquire or renew). A *NotHolderError or
// *NotFoundError means the caller has lost the lease.
func (c *Client) Renew(ctx context.Context, name, token string, ttl time.Duration) (*Lease, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := ValidateToken(token); err != nil {
		return nil, err
	}
	if ttl != 0 {
		if err := ValidateTTL(ttl, c.maxTTL); err != nil {
			return nil, err
		}
	}
	sent := time.Now()
	res, err := c.run(ctx, renewScript, c.key(name), token, ttl.Milliseconds())
	if err != nil {
		return nil, c.backendErr("renew", true, err)
	}
	r := reply(res)
	switch r.str(0) {
	case "renewed":
		ms := r.int(2)
		return &Lease{
			Name: name, Holder: r.str(4), Token: token, Fence: r.int(1),
			TTL: msDur(ms), ExpiresAt: msTime(r.int(3) + ms), Metadata: r.str(5), Sent: sent,
		}, r.err("renew", 6)
	case "not_holder":
		return nil, firstErr(r.err("renew", 5), r.notHolder(name))
	case "not_found":
		return nil, &NotFoundError{Name: name}
	}
	return nil, r.unexpected("renew")
}

// Release ends the lease for the holder of token. When a caller of this
// Client waits for it, and no caller of another client does, the lease goes
// straight to the oldest such waiter in the same script call (with a new
// fence); otherwise it is deleted and its waiters are told. It never removes
// another holder's lease: that is a *NotHolderError.
func (c *Client) Release(ctx context.Context, name, token string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateToken(token); err != nil {
		return err
	}
	key, fence := c.fenceKey(name)
	for first := true; ; first = false {
		var w *waiter
		if c.sub.waiting.Load() > 0 { // else skip making the channel's name
			w = c.sub.claim(c.channel(name))
		}
		var (
			res []any
			err error
			o   *AcquireOptions
		)
		sent := time.Now()
		if w == nil {
			res, err = c.run(ctx, releaseScript, key, fence, token, c.announce) // publishes on c.channel(name)
		} else {
			o = w.opts
			res, err = c.run(ctx, releaseScript, key, fence, token, c.announce, c.id, o.Token, o.Holder, o.Metadata, o.TTL.Milliseconds())
		}
		r := reply(res)
		handed := err == nil && r.str(0) == "handed"
		var malformed error
		if handed {
			malformed = r.err("release", 3)
		}
		if !handed || malformed != nil {
			if w != nil {
				// Gone, or in a state we cannot tell: the waiter looks for itself.
				// It is free now unless another holds it.
				w.unclaim(err != nil || malformed != nil || r.str(0) != "not_holder")
			}
			switch {
			case !first:
				return nil // the caller's lease was released; this one expires
			case malformed != nil:
				return malformed
			}
			return c.released(name, res, err)
		}
		ttl := o.TTL.Milliseconds()
		if w.hand(&Lease{
			Name: name, Holder: o.Holder, Token: o.Token, Fence: r.int(1),
			TTL: msDur(ttl), ExpiresAt: msTime(r.int(2) + ttl), Metadata: o.Metadata, Sent: sent,
		}) {
			return nil
		}
		// The waiter gave up while the lease was on its way to it: release
		// that grant in turn, to the next waiter if there is one.
		token = o.Token
	}
}

// released reads the reply of a release that did not hand the lease over.
func (c *Client) released(name string, res []any, err error) error {
	if err != nil {
		return c.backendErr("release", true, err)
	}
	r := reply(res)
	switch r.str(0) {
	case "released":
		return r.err("release", 1)
	case "not_holder":
		return firstErr(r.err("release", 5), r.notHolder(name))
	case "not_found":
		return &NotFoundError{Name: name}
	}
	return r.unexpected("release")
}

// Get reads the lease name: its holder, fence, remaining TTL and metadata,
// never its token.
func (c *Client) Get(ctx context.Context, name string) (*Lease, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	l, _, err := c.inspect(ctx, name, "")
	return l, err
}

// Verify checks that proof (a fence or a token) is the current grant of
// name, for a downstream service that keeps no fence record of its own. It
// answers the lease, or *NotHolderError, or *NotFoundError.
func (c *Client) Verify(ctx context.Context, name string, proof Proof) (*Lease, error) {
	if err := checkVerify(name, proof); err != nil {
		return nil, err
	}
	l, match, err := c.inspect(ctx, name, proof.Token)
	if err != nil {
		return nil, err
	}
	if proof.Token != "" && !match || proof.Token == "" && proof.Fence != l.Fence {
		return nil, &NotHolderError{Name: name, Holder: l.Holder, Fence: l.Fence, TTL: l.TTL}
	}
	return l, nil
}

// checkVerify validates the input of Verify: a name and exactly one of a
// positive fence and a well-formed token.
func checkVerify(name string, proof Proof) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	switch {
	case proof.Token != "" && proof.Fence != 0:
		return invalid(CodeInvalidRequest, "give a fence or a token to verify, not both")
	case proof.Token != "":
		return ValidateToken(proof.Token)
	case proof.Fence <= 0:
		return invalid(CodeInvalidRequest, "give a fence (a positive integer) or a token to verify")
	}
	return nil
}

func (c *Client) inspect(ctx context.Context, name, token string) (*Lease, bool, error) {
	res, err := c.run(ctx, inspectScript, c.key(name), token)
	if err != nil {
		return nil, false, c.backendErr("get", false, err)
	}
	return parseInspect(name, reply(res))
}

func parseInspect(name string, r reply) (*Lease, bool, error) {
	switch r.str(0) {
	case "held":
		pttl := r.int(3)
		l := &Lease{
			Name: name, Holder: r.str(1), Fence: r.int(2),
			TTL: msDur(pttl), ExpiresAt: msTime(r.int(4) + pttl), Metadata: r.str(5),
		}
		return l, r.int(6) == 1, r.err("get", 7)
	case "not_found":
		return nil, false, &NotFoundError{Name: name}
	}
	return nil, false, r.unexpected("get")
}

// NewToken returns a new random token: 144 bits from crypto/rand, in 24
// characters of base64url.
func NewToken() string {
	var b [18]byte
	rand.Read(b[:]) // never fails: crypto/rand.Read panics rather than return an error
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// backendErr wraps a failed Redis call. A context error from the caller is
// returned as it is, so callers see context.Canceled or DeadlineExceeded.
func (c *Client) backendErr(op string, write bool, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("lease: %s: %w", op, err)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !isNetErr(err) {
		// Redis answered with an error: a script fault, OOM, READONLY, ...
		// Scripts fail before their first write, so nothing was applied.
		return &BackendError{Op: op, Err: err}
	}
	return &BackendError{Op: op, MayHaveApplied: write && !neverSent(err), Err: err}
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// neverSent reports whether err shows the request could not have reached Redis.
func neverSent(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, redis.ErrClosed) ||
		strings.Contains(err.Error(), "connection refused") || errors.Is(err, redis.ErrPoolTimeout)
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func msDur(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
