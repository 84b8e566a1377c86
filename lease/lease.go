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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/lua"
	"github.com/redis/go-redis/v9"
)

// Scripts, compiled once. They run with EVALSHA and fall back to EVAL on
// NOSCRIPT, so a restart, failover or SCRIPT FLUSH heals itself.
var (
	acquireScript = newScript(lua.Acquire, 4)
	renewScript   = newScript(lua.Renew, 2)
	releaseScript = newScript(lua.Release, 4)
	leaveScript   = newScript(lua.Leave, 4)
	inspectScript = newScript(lua.Inspect, 2)
	breakScript   = newScript(lua.Break, 4)
	expireScript  = newScript(lua.Expire, 4)
	historyScript = newScript(lua.History, 2)
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
	// lease's life from it. Zero for reads. For a lease handed over to a
	// waiter it is when the last attempt of the waiter's that Redis ran
	// before the hand-over was sent (one that found an older grant
	// holding, or else its first, which queued it).
	Sent time.Time
	// Waiting is, for reads, how many callers wait in the name's queue.
	Waiting int
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
	// *HeldError at once. A waiter joins the name's queue in Redis and is
	// handed the lease by the holder's release, or takes it when the holder's
	// TTL runs out, without polling; waiters are served in arrival order
	// across every process that shares the Redis (see docs/waiting.md). When
	// the wait ends the error is the last *HeldError. The context's deadline
	// also ends a wait, with an error that wraps ctx.Err(); it does not make
	// Acquire wait by itself.
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
	// the hash "leasehold:{N}" and its queue of waiters "leasehold:{N}:q".
	KeyPrefix string
	// FenceRetention is how long a name keeps its last fence after its last
	// grant ends; after it the name costs nothing in Redis and its next
	// fence rests on Redis's clock alone (see docs/engine.md). Default
	// DefaultFenceRetention (24h); never less than MaxTTL.
	FenceRetention time.Duration
	// MaxTTL is the largest TTL granted. Default DefaultMaxTTL (24h).
	MaxTTL time.Duration
	// MaxWait is the longest wait an Acquire may ask for. Default 5m.
	MaxWait time.Duration
	// NoAutoPipeline turns the autopipeliner off: every call is a round
	// trip of its own. By default the scripts of concurrent calls go
	// through go-redis's autopipeliner (the Redis client's
	// AsyncAutoPipeline, shared with its other users and running until the
	// Redis client is closed), which batches them into fewer, fuller round
	// trips, but only while 16 or more calls of this Client are in flight:
	// below that a call goes straight to Redis, so a lone call pays
	// nothing for it (see BenchmarkCycle and docs/benchmarks.md); so do
	// waiting's subscriptions, List, LoadScripts and Ping. A call whose
	// context ends returns at once, its script may still run, and an
	// Acquire's undo waits for it to have run. A Redis client that cannot
	// autopipeline (a *redis.Ring) makes plain calls. Set it for a Redis
	// client whose connections have no buffer (a net.Pipe dialer): the
	// autopipeliner writes a batch before it reads, and would stall there.
	NoAutoPipeline bool
	// AutoPipeline is ignored: auto-pipelining is on by default.
	//
	// Deprecated: set NoAutoPipeline to turn it off.
	AutoPipeline bool
	// History is how many ended grants each name keeps in its history
	// (see Client.History): who held it, with which fence, from when to
	// when, and how it ended. Default DefaultHistory (20); negative keeps
	// none, and the scripts then write nothing for it; at most MaxHistory.
	// The history expires with the fence retention.
	History int
	// WatchLimit is, on a Redis Cluster, about how many keys one pass of
	// Watch lets SCAN look at, over all masters (see Watch). Default
	// DefaultWatchLimit (10000).
	WatchLimit int
	// RestartDelay is, for a Redlock, how long a master that restarted does
	// not count toward grants, so that the grants it forgot (a master without
	// persistence loses them) expire first; see Redlock. Default MaxTTL plus
	// the drift allowance. Negative: no delay, only for masters that lose no
	// acknowledged write (appendonly yes, appendfsync always). A Client
	// ignores it.
	RestartDelay time.Duration
}

// History lengths: the default of Options.History, and its bound.
const (
	DefaultHistory = 20
	MaxHistory     = 1000
)

// DefaultMaxWait is the longest wait unless Options.MaxWait says otherwise.
const DefaultMaxWait = 5 * time.Minute

// DefaultFenceRetention is how long a name keeps its last fence after its
// last grant, unless Options.FenceRetention says otherwise.
const DefaultFenceRetention = 24 * time.Hour

// Client takes leases on Redis. It is safe for concurrent use.
type Client struct {
	rdb     redis.UniversalClient
	prefix  string
	maxTTL  time.Duration
	maxWait time.Duration
	// retention is the fence retention in ms, boxed once for the scripts.
	retention any
	// hist is how many ended grants a name's history keeps (0: none),
	// boxed once for the scripts.
	hist    any
	sharded bool // Redis Cluster: announce with SPUBLISH
	// events is the events stream, PREFIX + "events" (see Watch).
	events string
	// watchLimit is, on a Cluster, the keys one pass of Watch looks at.
	watchLimit int
	sub        *subscriber // waiters' subscriptions to their hand-overs
	// announce is the scripts' "how to tell a waiter", boxed once: "s"
	// (SPUBLISH) when sharded, else "p" (PUBLISH).
	announce any
	// id names this Client in its waiters' queue entries: a hand-over to
	// one of them is told on the channel PREFIX{NAME}:w:ID.
	id string
	// ap is rdb's autopipeliner, set by apOnce when 16 calls are first in
	// flight at once (so that a Client that never has that many starts none
	// of its goroutines); it stays nil with Options.NoAutoPipeline (noAP) or
	// a Redis client that cannot autopipeline.
	ap       *redis.AutoPipeliner
	apOnce   sync.Once
	noAP     bool
	inflight atomic.Int64 // calls running a script: with ap, a lone one skips it
	undo     Undoer       // grants of unknown outcome made with tokens of this Client's making
	// attempters run the attempts of waiting Acquire calls.
	attempters workers
	// deadlines: rdb bounds each command by its context's deadline itself
	// (ContextTimeoutEnabled), so a call with one needs no goroutine.
	deadlines bool
}

// New returns a Client over rdb: a single Redis, Sentinel or Cluster client.
func New(rdb redis.UniversalClient, opts *Options) *Client {
	c := &Client{rdb: rdb, prefix: "leasehold:", maxTTL: DefaultMaxTTL, maxWait: DefaultMaxWait, id: NewToken()[:12]}
	retention := DefaultFenceRetention
	if opts != nil {
		if opts.FenceRetention > 0 {
			retention = opts.FenceRetention
		}
		if opts.KeyPrefix != "" {
			c.prefix = opts.KeyPrefix
		}
		if opts.MaxTTL > 0 {
			c.maxTTL = opts.MaxTTL
		}
		if opts.MaxWait > 0 {
			c.maxWait = opts.MaxWait
		}
	}
	c.noAP = opts != nil && opts.NoAutoPipeline
	c.watchLimit = DefaultWatchLimit
	if opts != nil && opts.WatchLimit > 0 {
		c.watchLimit = opts.WatchLimit
	}
	hist := DefaultHistory
	if opts != nil && opts.History != 0 {
		hist = min(max(opts.History, 0), MaxHistory)
	}
	c.hist = hist
	c.retention = max(retention, c.maxTTL).Milliseconds()
	_, c.sharded = rdb.(*redis.ClusterClient)
	c.deadlines = honoursDeadlines(rdb)
	c.announce = "p"
	c.events = c.prefix + "events"
	if c.sharded {
		c.announce = "s"
	}
	c.sub = newSubscriber(rdb, c.sharded)
	c.sub.orphan = c.releaseOrphan
	return c
}

// Close ends the Client's subscriptions to its hand-overs: Acquire calls
// that are waiting return a *BackendError wrapping ErrClosed, and so do
// later ones that would wait. Other calls keep working. It does not close
// the Redis client, which belongs to the caller. A Client whose waiters
// have all returned keeps its pub/sub connection for 5s more (so that a
// caller that waits again and again subscribes once) and then holds no
// connection or goroutine of its own; Close ends it at once.
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

// FenceRetention returns how long a name keeps its last fence after its
// last grant.
func (c *Client) FenceRetention() time.Duration { return msDur(c.retention.(int64)) }

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
	for _, s := range []*script{acquireScript, renewScript, releaseScript, leaveScript, inspectScript, raiseScript, breakScript, historyScript, expireScript} {
		if err := s.Load(ctx, c.rdb).Err(); err != nil {
			return c.backendErr("load scripts", false, err)
		}
	}
	return nil
}

// Ping checks that Redis answers and that the scripts are loaded.
func (c *Client) Ping(ctx context.Context) error {
	shas := []string{acquireScript.Hash(), renewScript.Hash(), releaseScript.Hash(), leaveScript.Hash(), inspectScript.Hash(), raiseScript.Hash(), breakScript.Hash(), historyScript.Hash(), expireScript.Hash()}
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

// keys returns the keys of name's hash, of its queue and of its history.
// The hash's key is the queue's without its suffix (one allocation for
// both).
func (c *Client) keys(name string) (key, queue, hist string) {
	queue = c.prefix + "{" + name + "}:q"
	key = queue[:len(queue)-len(":q")]
	return key, queue, key + ":h"
}

// eventsKey is the events key the scripts that change name's grant get
// (key is name's hash): the prefix's stream; on a Cluster, where that
// stream lives in another slot than the name, a key of the name's slot
// that nobody creates, so that they write no events (see Watch).
func (c *Client) eventsKey(key string) string {
	if c.sharded {
		return key + ":e"
	}
	return c.events
}

// channel is the pub/sub channel on which a hand-over of name to one of
// this Client's waiters is told: the name's key with ":w:" and the
// Client's id (common.lua makes it the same way).
func (c *Client) channel(name string) string { return c.prefix + "{" + name + "}:w:" + c.id }

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
		l, _, err := c.tryAcquire(ctx, name, &o, nil)
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
// the lease is held passes its waiter, which the script queues (or, when
// it attempted before, keeps in its place); position is then its place
// in the queue, 0 the head.
func (c *Client) tryAcquire(ctx context.Context, name string, o *AcquireOptions, w *waiter) (l *Lease, position int64, err error) {
	ttl := o.TTL.Milliseconds()
	key, queue, hist := c.keys(name)
	sent := time.Now()
	if w != nil && !w.attempted {
		w.sending(sent)
	}
	res, err := c.runAcquire(ctx, key, queue, hist, o, w)
	if err != nil {
		return nil, -1, c.backendErr("acquire", true, err)
	}
	r := reply(res)
	switch r.str(0) {
	case "granted":
		return &Lease{
			Name: name, Holder: o.Holder, Token: o.Token, Fence: r.int(1),
			TTL: msDur(ttl), ExpiresAt: msTime(r.int(2) + ttl), Metadata: o.Metadata, Sent: sent,
		}, -1, r.err("acquire", 4)
	case "held":
		if w != nil {
			w.queued(sent, r.int(2))
		}
		// The remaining TTL counts whole milliseconds: a lease that is
		// still there lives up to 1ms more even when it answers 0.
		return nil, r.int(5), firstErr(r.err("acquire", 6), &HeldError{Name: name, Holder: r.str(1), Fence: r.int(2), TTL: max(msDur(r.int(3)), time.Millisecond)})
	}
	return nil, -1, r.unexpected("acquire")
}

// runAcquire runs the acquire script for o. With w (a waiter), the call
// queues it when the lease is held, or keeps it in its place when it
// attempted before. Without, it does not queue, but a hand-over the call
// makes is told the right way (SPUBLISH in a Cluster).
func (c *Client) runAcquire(ctx context.Context, key, queue, hist string, o *AcquireOptions, w *waiter) ([]any, error) {
	ttl := o.TTL.Milliseconds()
	if w == nil {
		return c.run(ctx, acquireScript, key, queue, hist, c.eventsKey(key), o.Token, o.Holder, o.Metadata, ttl, c.retention, "", c.announce, c.hist)
	}
	rejoin := "0"
	if w.attempted {
		rejoin = "1"
	}
	w.attempted = true
	return c.run(ctx, acquireScript, key, queue, hist, c.eventsKey(key), o.Token, o.Holder, o.Metadata, ttl, c.retention,
		w.entry, c.announce, c.hist, (o.Wait + queueSlack).Milliseconds(), rejoin)
}

// queueSlack is how much longer than its wait a waiter's queue entry may
// outlive it in Redis: the queue's key expires that long after its
// longest wait, in case no waiter could leave it.
const queueSlack = time.Minute

// Renew extends the lease for the holder of token, to ttl from now (0: the TTL
// of the grant's most recent acquire or renew). A *NotHolderError or
// *NotFoundError means the caller has lost the lease.
func (c *Client) Renew(ctx context.Context, name, token string, ttl time.Duration) (*Lease, error) {
	return c.renew(ctx, name, token, ttl, nil)
}

func (c *Client) renew(ctx context.Context, name, token string, ttl time.Duration, o *Outcome) (*Lease, error) {
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
	var res []any
	var err error
	if o == nil {
		key := c.key(name)
		res, err = c.run(ctx, renewScript, key, c.eventsKey(key), token, ttl.Milliseconds(), c.retention)
	} else {
		code, dur := outcomeArgs(o)
		key := c.key(name)
		res, err = c.run(ctx, renewScript, key, c.eventsKey(key), token, ttl.Milliseconds(), c.retention, code, dur)
	}
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

// Release ends the lease for the holder of token. When callers wait for it,
// in this process or any other, it goes to the oldest of them in the same
// script call (a new grant, with a new fence), and only that waiter is
// told. It never removes another holder's lease: that is a
// *NotHolderError.
func (c *Client) Release(ctx context.Context, name, token string) error {
	return c.release(ctx, name, token, nil, c.hist)
}

// releaseUnrecorded releases like Release but leaves the history alone: a
// Redlock undoes with it the grants of a round that missed quorum, which
// were never the Redlock's grants (recorded, a review saw them in its
// history as grants of holders that never held the lease).
func (c *Client) releaseUnrecorded(ctx context.Context, name, token string) error {
	return c.release(ctx, name, token, nil, 0)
}

// release runs the release script; hist is how many ended grants the
// history keeps (c.hist, or 0 to record nothing).
func (c *Client) release(ctx context.Context, name, token string, o *Outcome, hist any) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateToken(token); err != nil {
		return err
	}
	key, queue, histKey := c.keys(name)
	code, dur := outcomeArgs(o)
	res, err := c.run(ctx, releaseScript, key, queue, histKey, c.eventsKey(key), token, c.retention, c.announce, hist, code, dur)
	if err != nil {
		return c.backendErr("release", true, err)
	}
	return c.released(name, reply(res))
}

// released reads the reply of a release (or of a leave that released): a
// hand-over to one of this Client's own waiters is delivered at once,
// without waiting for its message.
func (c *Client) released(name string, r reply) error {
	switch r.str(0) {
	case "released":
		return r.err("release", 1)
	case "handed":
		if err := r.err("release", 5); err != nil {
			return err
		}
		if r.str(4) == c.id {
			c.sub.deliver(c.channel(name), r.str(3), r.int(1), r.int(2))
		}
		return nil
	case "not_holder":
		return firstErr(r.err("release", 5), r.notHolder(name))
	case "not_found":
		return &NotFoundError{Name: name}
	}
	return r.unexpected("release")
}

// leave takes waiter w out of name's queue in Redis (see lua/leave.lua); a
// lease handed to it meanwhile is released.
func (c *Client) leave(ctx context.Context, name string, w *waiter) error {
	token := w.opts.Token
	if w.notifyOnly || !w.ownToken {
		// Never handed a lease (a Redlock's waiter), or the caller's own
		// token, which it may hold again by now through another call: take
		// the entry out and release nothing (the caller, who knows the
		// token, releases a lease handed to it).
		token = ""
	}
	key, queue, hist := c.keys(name)
	res, err := c.run(ctx, leaveScript, key, queue, hist, c.eventsKey(key), token, w.entry, c.retention, c.announce, c.hist)
	if err != nil {
		return c.backendErr("leave", true, err)
	}
	r := reply(res)
	if r.str(0) == "left" {
		return r.err("leave", 2)
	}
	if err := c.released(name, r); err != nil {
		var nf *NotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	return nil
}

// releaseOrphan releases, in the background, a lease handed to a waiter
// of this Client that has already left (its leave had not reached Redis).
func (c *Client) releaseOrphan(name, token string, ttl time.Duration) {
	c.undo.Undo(c, name, token, ttl, nil)
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
	key, queue, _ := c.keys(name)
	res, err := c.run(ctx, inspectScript, key, queue, token)
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
			TTL: msDur(pttl), ExpiresAt: msTime(r.int(4) + pttl), Metadata: r.str(5), Waiting: int(r.int(7)),
		}
		return l, r.int(6) == 1, r.err("get", 8)
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
