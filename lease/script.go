package lease

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// script is one of package lua's scripts, ready to run on the hot path.
//
// Client.run does what redis.Script.Run does (EVALSHA, then EVAL when Redis
// answers NOSCRIPT after a restart, failover or SCRIPT FLUSH) but builds the
// command in a single slice whose head (command name, SHA, number of keys)
// was boxed once. redis.Script.Run copies keys and arguments into a new
// slice and boxes the name and SHA again on every call: four allocations
// more per call, more than any other part of an Acquire or Release.
type script struct {
	*redis.Script     // Load and Hash, for LoadScripts, Ping and List's pipelines
	src, sha      any // the source and the SHA, boxed once
	keys          int // how many of a call's values are keys
}

func newScript(src string, keys int) *script {
	s := redis.NewScript(src)
	return &script{Script: s, src: src, sha: s.Hash(), keys: keys}
}

// pipelineLoneCalls, set by tests, sends every call through the
// autopipeliner when there is one, also when no other call is in flight.
var pipelineLoneCalls bool

// pipelineFrom is how many calls of a Client must be in flight (this one
// included) for a call to go through the autopipeliner.
const pipelineFrom = 16

// run runs s with its keys followed by its arguments, given in one list,
// and returns the script's array reply.
func (c *Client) run(ctx context.Context, s *script, keysAndArgs ...any) ([]any, error) {
	args := make([]any, 3, 3+len(keysAndArgs))
	args[0], args[1], args[2] = "evalsha", s.sha, s.keys
	args = append(args, keysAndArgs...)
	res, err := c.process(ctx, args)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") { // HasErrorPrefix allocates: only on errors
		args[0], args[1] = "eval", s.src
		res, err = c.process(ctx, args)
	}
	return res, err
}

// process sends one EVALSHA or EVAL: on the Redis client, or through its
// autopipeliner when Options.AutoPipeline is set and other calls of c are in
// flight.
func (c *Client) process(ctx context.Context, args []any) ([]any, error) {
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(3) // Cluster routes by the first key
	// A call with fewer than pipelineFrom others in flight gains nothing
	// from the autopipeliner and pays for its hand-offs between goroutines
	// (about 1.3x the latency at one caller, see BenchmarkCycle), and for
	// its wait for callers that do not come back (go-redis's straggler
	// hold, up to 3 x 2ms: waiters parked in a wait are such callers, so a
	// handoff took 1.2ms, not 0.06ms, with 64 of them): it goes straight
	// to Redis.
	inflight := c.inflight.Add(1)
	defer c.inflight.Add(-1)
	var ap *redis.AutoPipeliner
	if inflight >= pipelineFrom || pipelineLoneCalls {
		ap = c.pipeliner()
	}
	if ap == nil {
		if _, ok := ctx.Deadline(); ok && c.deadlines {
			// The Redis client bounds its socket reads and writes by ctx's
			// deadline itself: no goroutine needed (one costs about 13µs a
			// call here, BenchmarkRenewDeadline). A cancellation before the
			// deadline is then noticed at the deadline.
			if err := c.rdb.Process(ctx, cmd); err != nil && ctx.Err() != nil {
				return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return cmd.Slice()
		}
		if err := bounded(ctx, func() { _ = c.rdb.Process(ctx, cmd) }); err != nil {
			return nil, err
		}
		return cmd.Slice()
	}
	// The autopipeliner runs the command on a context of its own, so wait
	// for it only while ctx lasts. A command left behind still runs, and its
	// result must not be read while it may: return ctx's error, with a
	// channel closed once the command has run, which an Acquire's undo
	// waits for (else the undo's release could reach Redis first, on
	// another connection, and the grant be made after it).
	f := ap.Submit(ctx, cmd)
	if err := f.WaitContext(ctx); err != nil && ctx.Err() != nil {
		running := make(chan struct{})
		go func() {
			defer close(running)
			_ = f.Wait()
		}()
		return nil, &abandonedError{err: ctx.Err(), running: running}
	}
	return cmd.Slice()
}

// pipeliner returns rdb's autopipeliner, made on the first call, or nil
// when the Client makes plain calls only.
func (c *Client) pipeliner() *redis.AutoPipeliner {
	if c.noAP {
		return nil
	}
	c.apOnce.Do(func() {
		if ap, err := c.rdb.AsyncAutoPipeline(); err == nil {
			c.ap = ap // closed with rdb, which is the caller's
		}
	})
	return c.ap
}

// bounded runs call, which talks to Redis, and returns when it has
// returned or when ctx ends, whichever comes first: then with ctx's error,
// while call goes on in the background until the Redis client's own
// timeouts end it. Whatever call writes must not be read after that.
//
// go-redis looks at a context only to wait for a pooled connection and to
// dial: with its default options a command sent into a path that hangs
// blocks for ReadTimeout (3s), and is retried after it (MaxRetries, 3),
// whatever the caller's deadline. A Keeper whose renew outlives the lease
// would report the loss after another client was granted it; so every call
// of this package enforces its context's deadline and cancellation itself,
// whatever options the user's Redis client has.
func bounded(ctx context.Context, call func()) error {
	if ctx.Done() == nil { // context.Background and the like: nothing to honour
		call()
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		call()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		select {
		case <-done: // both at once: the answer is there, take it
			return nil
		default:
			return &abandonedError{err: ctx.Err(), running: done}
		}
	}
}

// boundedCall is bounded for a call with a result: fn's result, or ctx's
// error when ctx ends first (fn's result is then never read).
func boundedCall[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	if berr := bounded(ctx, func() { v, err = fn() }); berr != nil {
		var zero T
		return zero, berr
	}
	return v, err
}

// honoursDeadlines reports whether rdb bounds each command's socket reads
// and writes by its context's deadline (go-redis's ContextTimeoutEnabled).
func honoursDeadlines(rdb redis.UniversalClient) bool {
	switch r := rdb.(type) {
	case *redis.Client:
		return r.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return r.Options().ContextTimeoutEnabled
	}
	return false
}
