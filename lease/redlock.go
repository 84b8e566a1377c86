package lease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/leasehold/leasehold/lua"
	"github.com/redis/go-redis/v9"
)

var raiseScript = newScript(lua.Raise, 1)

// Redlock takes leases on a quorum of independent Redis masters (the Redlock
// algorithm): a grant needs a majority of the masters, each running the same
// scripts as Client, within the lease's validity time; it survives the loss
// of a minority of them, as long as a master that comes back has kept what it
// acknowledged or sits out the restart delay (below).
//
// An idempotent re-acquire (Acquire with the holder's token) that misses
// quorum never removes the grant the caller holds: a failed round releases
// only the grants it made anew (all of them, when the token is one Acquire
// made), and the masters that re-granted keep the grant with this call's TTL,
// holder and metadata, as after a Renew that reached them. A re-acquire whose
// re-grants form a quorum is the same grant, with the same fence; one that
// found the grant on fewer masters but got a quorum is a new grant, with a
// new fence, since it cannot show that nobody held the lease in between.
//
// Fences stay strictly increasing across quorums: after a grant, every master
// of the quorum is set (the raise script) to the largest fence any of them
// granted, and any two majorities share a master, so the next grant on any
// majority exceeds it. Every fence reported for one grant is that number:
// Acquire's, an idempotent re-acquire's, Renew's (and so a Keeper's), and
// Verify's. A master can hold the token with another fence (the raise missed
// it, or its acquire timed out and landed later); the raise marks the fence a
// quorum decided, Renew reads it when the masters disagree and sets the others
// to it, and Verify by fence finds a quorum that agrees once they are set.
//
// A master that restarts without persistence forgets its grants, and a new
// majority can then form while a lease still lives. Against that, a master
// that restarted counts toward no grant for the restart delay
// (Options.RestartDelay, by default MaxTTL plus the drift allowance), by when
// every lease it may have forgotten has expired: Antirez's delayed restarts.
// After each grant Redlock reads the master's run_id and uptime (INFO
// server); a master whose run_id changed, or that it sees for the first time,
// counts once it has run for the delay, so masters that have just started
// grant nothing for that long. Renew, Release and reads count it at once: a
// master that forgot a grant answers not_found, which never helps a quorum.
// Masters that lose no acknowledged write (appendonly yes, appendfsync
// always) need no delay. Not covered: data lost without a restart (FLUSHALL),
// and a master address that can move to another process with a long uptime
// (a replica promoted behind a virtual IP or Sentinel), which counts at once.
//
// Redlock rests on bounded clock drift between the masters and the client
// (Options has no knob: the drift allowance is 1% of the TTL plus 2ms, as in
// redsync). A grant's ExpiresAt is the earliest expiry among its quorum less
// that allowance. Waiting is woken by the masters (see Redlock.wait): a
// release on any master tells its waiters, which then race for a quorum; it
// is not FIFO.
//
// Redlock does not use redsync's Mutex: it cannot answer who holds a lease
// or for how long, nor carry fences, holders and metadata, which this API
// promises. It follows the same algorithm over the same scripts as Client.
type Redlock struct {
	nodes   []*Client
	quorum  int
	delay   time.Duration // the restart delay; 0: none
	masters []master      // what INFO said of each node's process
	undoer  Undoer        // grants of unknown outcome made with tokens of this Redlock's making
}

// Settle waits until every grant this Redlock is undoing in the background
// is undone (or has surely expired), or ctx ends; see Client.Settle.
func (r *Redlock) Settle(ctx context.Context) error { return r.undoer.Wait(ctx) }

// ErrRestarted is matched by the error of an Acquire that a Redlock master
// did not count toward because it restarted less than the restart delay ago.
var ErrRestarted = errors.New("lease: redlock master restarted within the restart delay")

var _ Interface = (*Redlock)(nil)

// NewRedlock returns a Redlock over independent masters rdbs (3 or 5 is
// usual; an even count tolerates no more failures than one fewer).
func NewRedlock(rdbs []redis.UniversalClient, opts *Options) (*Redlock, error) {
	if len(rdbs) == 0 {
		return nil, errors.New("lease: redlock needs at least one Redis master")
	}
	r := &Redlock{quorum: len(rdbs)/2 + 1, masters: make([]master, len(rdbs))}
	for _, rdb := range rdbs {
		r.nodes = append(r.nodes, New(rdb, opts))
	}
	switch {
	case opts != nil && opts.RestartDelay < 0:
	case opts != nil && opts.RestartDelay > 0:
		r.delay = opts.RestartDelay
	default:
		r.delay = r.MaxTTL() + drift(r.MaxTTL())
	}
	return r, nil
}

// MaxTTL returns the largest TTL granted.
func (r *Redlock) MaxTTL() time.Duration { return r.nodes[0].maxTTL }

// MaxWait returns the longest wait accepted.
func (r *Redlock) MaxWait() time.Duration { return r.nodes[0].maxWait }

// RestartDelay returns how long a master that restarted does not count
// toward grants (Options.RestartDelay); 0 when it always counts.
func (r *Redlock) RestartDelay() time.Duration { return r.delay }

// LoadScripts loads the scripts into every master; it fails only when fewer
// than a quorum took them.
func (r *Redlock) LoadScripts(ctx context.Context) error {
	_, errs := each(ctx, r.nodes, func(ctx context.Context, _ int, c *Client) (struct{}, error) {
		return struct{}{}, c.LoadScripts(ctx)
	})
	return r.quorumErr("load scripts", errs)
}

// Ping checks that a quorum of masters answers with the scripts loaded.
func (r *Redlock) Ping(ctx context.Context) error {
	_, errs := each(ctx, r.nodes, func(ctx context.Context, _ int, c *Client) (struct{}, error) {
		return struct{}{}, c.Ping(ctx)
	})
	return r.quorumErr("ping", errs)
}

// quorumErr is nil when at least a quorum of errs are nil.
func (r *Redlock) quorumErr(op string, errs []error) error {
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	if ok >= r.quorum {
		return nil
	}
	return &BackendError{Op: op, Err: fmt.Errorf("%d of %d masters answered, %d needed: %w",
		ok, len(r.nodes), r.quorum, errors.Join(errs...))}
}

// outOfRound tells apart, in errs of a round whose context was
// roundContext's, the masters that the round's bound cut short while the
// call's own context (parent) still runs: those did not answer in time, a
// backend failure of theirs, not the caller's context ending.
func (r *Redlock) outOfRound(parent context.Context, op string, errs []error) []error {
	if parent.Err() != nil {
		return errs
	}
	for i, err := range errs {
		if errors.Is(err, context.DeadlineExceeded) {
			errs[i] = &BackendError{Op: op, MayHaveApplied: true, Err: fmt.Errorf(
				"master %s did not answer within a third of the TTL (%v)", addrOf(r.nodes[i]), err)}
		}
	}
	return errs
}

// roundContext bounds one round of calls to the masters (an acquire's
// grant, its raise, its undo, a renewal) by a third of the TTL: a master that has not
// answered by then counts as failed for the round, as the Redlock algorithm
// asks (a per-master timeout small against the TTL), so that one hung
// master of three costs the others' grant at most that long instead of the
// whole call. ttl 0 (a renewal keeping the grant's TTL): ctx alone.
func roundContext(ctx context.Context, ttl time.Duration) (context.Context, context.CancelFunc) {
	if ttl <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, ttl/3)
}

// drift is the clock drift allowance for a TTL.
func drift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

// Acquire takes the lease on a quorum of masters. When it cannot, it undoes
// the grants it got and answers *HeldError (the holder of the most masters,
// and when enough of them expire for a quorum to be free), or *BackendError
// when too few masters answered.
func (r *Redlock) Acquire(ctx context.Context, name string, opts *AcquireOptions) (*Lease, error) {
	var o AcquireOptions
	if opts != nil {
		o = *opts
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if err := r.nodes[0].checkAcquire(name, &o); err != nil {
		return nil, err
	}
	ownToken := o.Token == ""
	if ownToken {
		o.Token = NewToken()
	}
	if o.Wait == 0 {
		return r.tryOnce(ctx, name, &o, ownToken)
	}
	return r.wait(ctx, name, &o, ownToken)
}

// wait is an Acquire with a Wait. On each master the waiter joins the
// name's queue with an entry that asks to be told when the lease is free
// (not to be handed it: each master's queue could hand it to another
// waiter, and none would have a quorum), subscribed first as a Client's
// waiter is. It attempts a round when a master tells it, when the holder's
// TTL (as the quorum answered it) has run out, and after a resubscription;
// never on a timer otherwise. Its waiters race, as redsync's do: the
// round that reaches a quorum first wins. When the wait ends it leaves
// every master's queue.
func (r *Redlock) wait(ctx context.Context, name string, o *AcquireOptions, ownToken bool) (*Lease, error) {
	ws := make([]*waiter, len(r.nodes))
	wake := make(chan struct{}, 1)
	stop := make(chan struct{})
	var forwarders sync.WaitGroup
	defer func() {
		close(stop)
		forwarders.Wait()
		r.leaveAll(name, ws)
	}()
	for i, c := range r.nodes {
		w, err := c.sub.joinAs(c.channel(name), name, c.id, o, true, ownToken)
		if err != nil {
			return nil, &BackendError{Op: "acquire", Err: err}
		}
		ws[i] = w
		forwarders.Go(func() {
			for {
				select {
				case <-w.wake:
					select {
					case wake <- struct{}{}:
					default:
					}
				case <-stop:
					return
				}
			}
		})
	}
	deadline := time.NewTimer(o.Wait)
	defer deadline.Stop()
	nap := time.NewTimer(time.Hour)
	defer nap.Stop()
	// Subscribed everywhere before the first round, so that no release
	// after it is missed (a master that cannot subscribe is waited out by
	// its health check: it fails, and the round goes on without it).
	for !r.allReady(ws) {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lease: acquire %q: %w", name, ctx.Err())
		case <-deadline.C:
			return r.tryOnce(ctx, name, o, ownToken)
		case <-wake:
		}
	}
	for {
		l, err := r.tryRound(ctx, name, o, ownToken, ws)
		var held *HeldError
		if !errors.As(err, &held) {
			return l, err
		}
		nap.Reset(max(time.Millisecond, held.TTL))
		for woken := false; !woken; {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("lease: acquire %q: %w", name, ctx.Err())
			case <-deadline.C:
				return nil, held
			case <-nap.C:
				woken = true
			case <-wake:
				for _, w := range ws {
					if _, told := w.ready(); told {
						woken = true
					}
				}
			}
		}
	}
}

// allReady says whether every master's subscription is confirmed (or
// failed); it clears the notifications that came meanwhile.
func (r *Redlock) allReady(ws []*waiter) bool {
	all := true
	for _, w := range ws {
		ok, _ := w.ready()
		all = all && ok
	}
	return all
}

// leaveAll takes the waiter out of every master's queue, in the background
// where a master does not answer now.
func (r *Redlock) leaveAll(name string, ws []*waiter) {
	for i, w := range ws {
		if w == nil {
			continue
		}
		if !w.attempted {
			w.leave(false)
			continue
		}
		c := r.nodes[i]
		w.leave(true)
		ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		err := c.leave(ctx, name, w)
		cancel()
		if retryable(err) {
			c.leaveLater(name, w, nil)
		} else {
			w.forget()
		}
	}
}

// tryOnce is tryAcquire, undoing in the background what a round of unknown
// outcome may have granted with a token only this call knew.
func (r *Redlock) tryOnce(ctx context.Context, name string, o *AcquireOptions, ownToken bool) (*Lease, error) {
	return r.tryRound(ctx, name, o, ownToken, nil)
}

// tryRound is tryOnce; ws, when waiting, are the waiter's entries on each
// master, which the round queues where the lease is held.
func (r *Redlock) tryRound(ctx context.Context, name string, o *AcquireOptions, ownToken bool, ws []*waiter) (*Lease, error) {
	l, err := r.tryAcquire(ctx, name, o, ownToken, ws)
	if ownToken && unknown(err) {
		r.undoer.Undo(r, name, o.Token, o.TTL, err)
	}
	return l, err
}

// tryAcquire runs one round of Acquire. ownToken says the token is one this
// call made, which no grant can have had before it.
func (r *Redlock) tryAcquire(ctx context.Context, name string, o *AcquireOptions, ownToken bool, ws []*waiter) (*Lease, error) {
	start := time.Now()
	gctx, cancel := roundContext(ctx, o.TTL)
	grants, errs := each(gctx, r.nodes, func(ctx context.Context, i int, c *Client) (grant, error) {
		var w *waiter
		if ws != nil {
			w = ws[i]
		}
		return c.grant(ctx, name, o, w)
	})
	cancel()
	var granted, again []int
	for i, g := range grants {
		if g.l != nil {
			granted = append(granted, i)
			if g.again {
				again = append(again, i)
			}
		}
	}
	if len(granted) >= r.quorum {
		dctx, cancel := roundContext(ctx, o.TTL)
		l := r.decide(dctx, name, o, start, grants, errs, granted, again)
		cancel()
		if l != nil {
			return l, nil
		}
	}
	uctx, cancel := roundContext(ctx, o.TTL)
	defer cancel()
	mayRemain := r.undo(uctx, name, o.Token, o.TTL, ownToken, grants, slices.Clone(errs))
	return nil, r.heldErr(name, r.outOfRound(ctx, "acquire", errs), mayRemain)
}

// decide makes the grants of one round (granted, a quorum, of which again
// re-granted) one grant: it picks the grant's fence and sets every granting
// master to it (lua/raise.lua), and returns the lease when a quorum took it
// within the validity time. Otherwise it returns nil, and errs says why for
// each granting master that did not count.
//
// A new grant's fence is the largest any master granted. When the token's
// grant already lived on a quorum (an idempotent re-acquire), it keeps the
// fence that quorum decided, and masters that granted it anew take that
// fence too. A re-acquire that found its grant on fewer than a quorum is a
// new grant: it cannot show that no other holder came in between.
func (r *Redlock) decide(ctx context.Context, name string, o *AcquireOptions, start time.Time,
	grants []grant, errs []error, granted, again []int) *Lease {
	fences := make([]int64, len(grants))
	for _, i := range granted {
		fences[i] = grants[i].l.Fence
	}
	restarts := r.restarts(ctx, grants, start)
	defer restarts()
	var fence int64
	if len(again) >= r.quorum && counting(again, restarts()) >= r.quorum {
		f, err := r.fenceOf(ctx, "acquire", name, again, fences)
		if err != nil {
			for _, i := range again {
				errs[i] = err
			}
			return nil
		}
		fence = f
	} else {
		for _, i := range granted {
			fence = max(fence, fences[i])
		}
	}
	raised, rerrs := each(ctx, r.nodes, func(ctx context.Context, i int, c *Client) (int64, error) {
		if grants[i].l == nil {
			return 0, nil // no grant there (or no answer: a late one is set right by Renew)
		}
		return c.raise(ctx, name, o.Token, fence)
	})
	waiting := restarts()
	var took []int
	for _, i := range granted {
		if err := firstErr(rerrs[i], waiting[i]); err != nil {
			errs[i] = err
			continue
		}
		took = append(took, i)
		fence = max(fence, raised[i])
	}
	if len(took) < r.quorum || o.TTL-time.Since(start)-drift(o.TTL) <= 0 {
		return nil
	}
	l := *grants[took[0]].l
	l.Fence = fence
	l.Sent = start // no master applied it before
	for _, i := range took[1:] {
		if e := grants[i].l.ExpiresAt; e.Before(l.ExpiresAt) {
			l.ExpiresAt = e
		}
	}
	l.ExpiresAt = l.ExpiresAt.Add(-drift(o.TTL))
	return &l
}

// master is what a Redlock knows of one master's process, from INFO server.
type master struct {
	mu      sync.Mutex // guards the fields below
	runID   string     // the process last seen; "" before the first INFO
	seen    time.Time  // when the last INFO that showed runID was sent
	started time.Time  // the latest time runID can have started, by this clock
}

// restarts checks, in the background, that every master of grants that
// granted has run for the restart delay by sent, when the grants were sent.
// The function it returns waits for the checks and returns, for each
// master, nil when it counts toward the grant, else why not.
func (r *Redlock) restarts(ctx context.Context, grants []grant, sent time.Time) func() []error {
	if r.delay <= 0 {
		none := make([]error, len(grants))
		return func() []error { return none }
	}
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, errs = each(ctx, r.nodes, func(ctx context.Context, i int, _ *Client) (struct{}, error) {
			if grants[i].l == nil {
				return struct{}{}, nil
			}
			return struct{}{}, r.restarted(ctx, i, sent)
		})
	}()
	return func() []error {
		<-done
		return errs
	}
}

// restarted returns nil when the process of master i has run for the
// restart delay by sent, else an error that says since when and until when
// it does not count. It asks INFO server after the master's answer to the
// grant: one process at a time serves an address, so a process that already
// ran at sent gave that answer. A process is one run_id; when it changes, or
// on the first sight of a master, its uptime says when it started (no
// earlier than when the process before was last seen).
func (r *Redlock) restarted(ctx context.Context, i int, sent time.Time) error {
	c, m := r.nodes[i], &r.masters[i]
	asked := time.Now()
	info, err := boundedCall(ctx, func() (string, error) { return c.rdb.Info(ctx, "server").Result() })
	if err != nil {
		return c.backendErr("acquire", true, fmt.Errorf("check master %s for a restart: %w", addrOf(c), err))
	}
	got := time.Now()
	runID, up, err := serverInfo(info)
	if err != nil {
		return &BackendError{Op: "acquire", MayHaveApplied: true, Err: fmt.Errorf("check master %s for a restart: %w", addrOf(c), err)}
	}
	m.mu.Lock()
	started := m.started
	if runID != m.runID {
		started = got.Add(-up)
		if m.runID != "" && m.seen.After(started) {
			started = m.seen
		}
		if asked.After(m.seen) {
			m.runID, m.started = runID, started
		}
	}
	if runID == m.runID && asked.After(m.seen) {
		m.seen = asked
	}
	m.mu.Unlock()
	if from := started.Add(r.delay); sent.Before(from) {
		return &BackendError{Op: "acquire", MayHaveApplied: true, Err: fmt.Errorf(
			"master %s (run_id %s) started %s ago and counts toward grants only from %s on, when every lease it may have forgotten has expired: %w",
			addrOf(c), runID, got.Sub(started).Round(time.Second), from.UTC().Format(time.RFC3339), ErrRestarted)}
	}
	return nil
}

// serverInfo reads run_id and uptime from the text of INFO server.
func serverInfo(info string) (runID string, up time.Duration, err error) {
	var upSeen bool
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch k {
		case "run_id":
			runID = v
		case "uptime_in_seconds":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return "", 0, fmt.Errorf("INFO server has uptime_in_seconds %q: %w", v, err)
			}
			up, upSeen = time.Duration(n)*time.Second, true
		}
	}
	if runID == "" || !upSeen {
		return "", 0, errors.New("INFO server has no run_id or uptime_in_seconds")
	}
	return runID, up, nil
}

// addrOf names a master for errors: its address when its client has one.
func addrOf(c *Client) string {
	if o, ok := c.rdb.(interface{ Options() *redis.Options }); ok {
		return o.Options().Addr
	}
	return "?"
}

// counting is how many of idx have a nil error in errs.
func counting(idx []int, errs []error) int {
	n := 0
	for _, i := range idx {
		if errs[i] == nil {
			n++
		}
	}
	return n
}

// fenceOf returns the fence of the grant that masters idx, a quorum, hold
// for one token, given each master's fence for it: the fence they agree on,
// or else the largest decided one among them (field q, see lua/raise.lua).
//
// Masters out of step hold the token with a fence of their own: one that
// the raise never reached (lower), or one whose acquire timed out and landed
// after the quorum was made (higher, by its clock). Neither has a decided
// fence, and any quorum shares a master with the quorum that decided the
// grant's. A grant that no master marked (made before raise marked them) has
// the largest fence. op names the call for errors.
func (r *Redlock) fenceOf(ctx context.Context, op, name string, idx []int, fences []int64) (int64, error) {
	agree := true
	for _, i := range idx[1:] {
		agree = agree && fences[i] == fences[idx[0]]
	}
	if agree {
		return fences[idx[0]], nil
	}
	qs, errs := each(ctx, r.nodes, func(ctx context.Context, i int, c *Client) (int64, error) {
		if !slices.Contains(idx, i) {
			return 0, nil
		}
		return c.decided(ctx, op, name)
	})
	var (
		fence  int64
		failed []error
	)
	for _, i := range idx {
		if errs[i] != nil {
			failed = append(failed, errs[i])
		}
		fence = max(fence, qs[i])
	}
	switch {
	case fence > 0:
		return fence, nil
	case len(failed) > 0:
		return 0, &BackendError{Op: op, MayHaveApplied: op != "verify", Err: fmt.Errorf(
			"the masters disagree on the fence and the decided one could not be read: %w", errors.Join(failed...))}
	}
	for _, i := range idx {
		fence = max(fence, fences[i])
	}
	return fence, nil
}

// align sets the masters idx whose fence for token differs from the grant's
// to the grant's, so that reads (Get, Verify by fence) find a quorum that
// agrees. It is best effort: a master it misses is set right by a later call.
func (r *Redlock) align(ctx context.Context, name, token string, fence int64, idx []int, fences []int64) {
	if !slices.ContainsFunc(idx, func(i int) bool { return fences[i] != fence }) {
		return
	}
	each(ctx, r.nodes, func(ctx context.Context, i int, c *Client) (struct{}, error) {
		if !slices.Contains(idx, i) || fences[i] == fence {
			return struct{}{}, nil
		}
		_, err := c.raise(ctx, name, token, fence)
		return struct{}{}, err
	})
}

// undo releases, after a failed round, the grants that the round made, so
// the name frees up for others, and reports whether some change of the
// round may remain (the call's answer then says it may have been applied).
//
// A token this call made (ownToken) was nobody's before: every master that
// granted, or may have, is released. A token the caller brought may be the
// holder's own, re-acquiring the grant it has: a master that answered a
// re-grant keeps it (that is the live grant, now with this call's TTL,
// holder and metadata, as after a Renew that reached it), and so does a
// master whose answer was lost, which may hold it too; only the new grants
// are released. The caller still knows the token of whatever remains.
//
// The releases run under ctx, so that a master that does not answer cannot
// hold the call past its context. What ctx cut short is released in the
// background (Settle waits for it) when the token is this call's own: no
// later round reuses it, since the call is over; a caller's token is left
// to its TTL, and the answer says a change may remain.
func (r *Redlock) undo(ctx context.Context, name, token string, ttl time.Duration, ownToken bool, grants []grant, gerrs []error) (mayRemain bool) {
	release := make([]bool, len(r.nodes))
	for i, g := range grants {
		switch {
		case ownToken:
			release[i] = true
		case g.l == nil:
			mayRemain = true // unknown, or held by another: left alone
		case g.again:
			mayRemain = true
		default:
			release[i] = true
		}
	}
	if !slices.Contains(release, true) {
		return mayRemain
	}
	_, errs := each(ctx, r.nodes, func(ctx context.Context, i int, c *Client) (struct{}, error) {
		if !release[i] {
			return struct{}{}, nil
		}
		return struct{}{}, c.releaseUnrecorded(ctx, name, token)
	})
	if ctx.Err() == nil {
		return mayRemain
	}
	for i, err := range errs {
		switch {
		case !release[i] || !unknown(err):
		case ownToken: // after the master's acquire call, if it still runs
			r.undoer.Undo(unrecorded{r.nodes[i]}, name, token, ttl, gerrs[i])
		default:
			mayRemain = true
		}
	}
	return mayRemain
}

// unrecorded is a master whose Release leaves the history alone, for the
// undo of a round's grants (see Client.releaseUnrecorded).
type unrecorded struct{ *Client }

func (u unrecorded) Release(ctx context.Context, name, token string) error {
	return u.releaseUnrecorded(ctx, name, token)
}

// grant is one master's answer to an acquire.
type grant struct {
	l *Lease // nil: not granted
	// again says the token already held the lease there: the acquire
	// re-granted it (same fence) rather than granting it anew.
	again bool
}

// grant runs the acquire script once, as Client.tryAcquire does, and also
// says whether the grant is a re-grant (the reply's last element), which
// Redlock needs to undo only what it made.
func (c *Client) grant(ctx context.Context, name string, o *AcquireOptions, w *waiter) (grant, error) {
	ttl := o.TTL.Milliseconds()
	key, queue, hist := c.keys(name)
	res, err := c.runAcquire(ctx, key, queue, hist, o, w)
	if err != nil {
		return grant{}, c.backendErr("acquire", true, err)
	}
	r := reply(res)
	switch r.str(0) {
	case "granted":
		if err := r.err("acquire", 4); err != nil {
			return grant{}, err
		}
		return grant{l: &Lease{
			Name: name, Holder: o.Holder, Token: o.Token, Fence: r.int(1),
			TTL: msDur(ttl), ExpiresAt: msTime(r.int(2) + ttl), Metadata: o.Metadata,
		}, again: r.int(3) == 1}, nil
	case "held":
		if w != nil && r.int(5) == -2 {
			w.attempted = false // its entry is gone: the next round joins again
		}
		return grant{}, firstErr(r.err("acquire", 5), &HeldError{Name: name, Holder: r.str(1), Fence: r.int(2), TTL: max(msDur(r.int(3)), time.Millisecond)})
	}
	return grant{}, r.unexpected("acquire")
}

// heldErr explains a failed quorum acquire from the masters' answers;
// mayRemain says some of its changes may remain.
func (r *Redlock) heldErr(name string, errs []error, mayRemain bool) error {
	var (
		helds    []*HeldError
		backends []error
	)
	for _, err := range errs {
		var h *HeldError
		switch {
		case errors.As(err, &h):
			helds = append(helds, h)
		case err != nil:
			backends = append(backends, err)
		}
	}
	if len(helds) == 0 {
		if ctxErr := firstCtxErr(backends); ctxErr != nil {
			return ctxErr
		}
		return &BackendError{Op: "acquire", MayHaveApplied: mayRemain, Err: fmt.Errorf(
			"no quorum: %d of %d masters needed: %w", r.quorum, len(r.nodes), errors.Join(backends...))}
	}
	// The quorum frees up when enough held masters expire: of the held ones,
	// all but the n-quorum that may stay held.
	sort.Slice(helds, func(i, j int) bool { return helds[i].TTL < helds[j].TTL })
	k := len(helds) - (len(r.nodes) - r.quorum)
	if k < 1 {
		k = 1
	}
	if k > len(helds) {
		k = len(helds)
	}
	h := *helds[k-1]
	h.Name = name
	return &h
}

func firstCtxErr(errs []error) error {
	for _, err := range errs {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return nil
}

// Renew extends the lease on every master that still has it; it holds when a
// quorum did within the TTL. Otherwise the caller has lost it. The fence is
// the grant's own, the one Acquire returned (see fenceOf), and masters of
// the quorum that carry another one are set to it.
func (r *Redlock) Renew(ctx context.Context, name, token string, ttl time.Duration) (*Lease, error) {
	return r.renew(ctx, name, token, ttl, nil)
}

// RenewWith is Renew, and keeps o for the history's record of the grant on
// every master it renews (see Client.RenewWith).
func (r *Redlock) RenewWith(ctx context.Context, name, token string, ttl time.Duration, o *Outcome) (*Lease, error) {
	if err := checkOutcome(o); err != nil {
		return nil, err
	}
	return r.renew(ctx, name, token, ttl, o)
}

func (r *Redlock) renew(ctx context.Context, name, token string, ttl time.Duration, o *Outcome) (*Lease, error) {
	start := time.Now()
	cctx := ctx
	ctx, cancel := roundContext(ctx, ttl)
	defer cancel()
	ls, errs := each(ctx, r.nodes, func(ctx context.Context, _ int, c *Client) (*Lease, error) {
		return c.renew(ctx, name, token, ttl, o)
	})
	errs = r.outOfRound(cctx, "renew", errs)
	if err := invalidOf(errs); err != nil {
		return nil, err
	}
	var (
		held   []int
		fences = make([]int64, len(ls))
	)
	for i, l := range ls {
		if l != nil {
			held = append(held, i)
			fences[i] = l.Fence
		}
	}
	if len(held) >= r.quorum {
		l := *ls[held[0]]
		// Masters can keep different TTLs (a re-acquire that missed one):
		// the grant is only as long as the shortest of them.
		for _, i := range held[1:] {
			l.TTL = min(l.TTL, ls[i].TTL)
		}
		if time.Since(start)+drift(l.TTL) < l.TTL {
			fence, err := r.fenceOf(ctx, "renew", name, held, fences)
			if err != nil {
				return nil, err
			}
			r.align(ctx, name, token, fence, held, fences)
			l.Fence = fence
			l.Sent = start
			for _, i := range held[1:] {
				if e := ls[i].ExpiresAt; e.Before(l.ExpiresAt) {
					l.ExpiresAt = e
				}
			}
			l.ExpiresAt = l.ExpiresAt.Add(-drift(l.TTL))
			return &l, nil
		}
	}
	return nil, r.lostErr("renew", name, errs)
}

// lostErr explains a failed quorum renew or release: *NotHolderError when a
// master has another holder, *NotFoundError when the lease is gone, else
// *BackendError.
func (r *Redlock) lostErr(op, name string, errs []error) error {
	var (
		nh    *NotHolderError
		found int
		other []error
	)
	for _, err := range errs {
		var e *NotHolderError
		switch {
		case err == nil:
		case errors.As(err, &e):
			if nh == nil || e.Fence > nh.Fence {
				nh = e
			}
		case errors.Is(err, ErrNotFound):
			found++
		default:
			other = append(other, err)
		}
	}
	switch {
	case nh != nil:
		return nh
	case found > len(r.nodes)-r.quorum:
		return &NotFoundError{Name: name}
	}
	if ctxErr := firstCtxErr(other); ctxErr != nil {
		return ctxErr
	}
	return &BackendError{Op: op, MayHaveApplied: true, Err: fmt.Errorf(
		"no quorum: %d of %d masters needed: %w", r.quorum, len(r.nodes), errors.Join(other...))}
}

// Release deletes the lease on every master that has it for token.
func (r *Redlock) Release(ctx context.Context, name, token string) error {
	return r.release(ctx, name, token, nil)
}

// ReleaseWith is Release, and puts o into the history's record of the
// grant on every master (see Client.ReleaseWith).
func (r *Redlock) ReleaseWith(ctx context.Context, name, token string, o *Outcome) error {
	if err := checkOutcome(o); err != nil {
		return err
	}
	return r.release(ctx, name, token, o)
}

func (r *Redlock) release(ctx context.Context, name, token string, o *Outcome) error {
	_, errs := each(ctx, r.nodes, func(ctx context.Context, _ int, c *Client) (struct{}, error) {
		return struct{}{}, c.release(ctx, name, token, o, c.hist)
	})
	if err := invalidOf(errs); err != nil {
		return err
	}
	for _, err := range errs {
		if err == nil {
			return nil
		}
	}
	return r.lostErr("release", name, errs)
}

// Get reads the lease as a quorum of masters agrees on it (the same fence);
// its TTL is the shortest among them.
func (r *Redlock) Get(ctx context.Context, name string) (*Lease, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	views, errs := r.read(ctx, name, "")
	return r.agreed(name, views, errs)
}

// Verify checks a fence or token against the current grant. A token is the
// grant's when a quorum of masters hold it, and its fence is then found as
// Renew finds it; a fence is when a quorum of masters agree on it (Acquire
// and Renew set the masters they reach to the grant's fence).
func (r *Redlock) Verify(ctx context.Context, name string, proof Proof) (*Lease, error) {
	if err := checkVerify(name, proof); err != nil {
		return nil, err
	}
	views, errs := r.read(ctx, name, proof.Token)
	if proof.Token != "" {
		var (
			mine   []int
			fences = make([]int64, len(views))
		)
		for i, v := range views {
			if errs[i] == nil && v.match {
				mine = append(mine, i)
				fences[i] = v.l.Fence
			}
		}
		if len(mine) >= r.quorum {
			fence, err := r.fenceOf(ctx, "verify", name, mine, fences)
			if err != nil {
				return nil, err
			}
			l := *views[mine[0]].l
			for _, i := range mine[1:] {
				if v := views[i].l; v.TTL < l.TTL {
					l.TTL, l.ExpiresAt = v.TTL, v.ExpiresAt
				}
			}
			l.Fence = fence
			return &l, nil
		}
	}
	l, err := r.agreed(name, views, errs)
	if err != nil {
		return nil, err
	}
	if proof.Token != "" || proof.Fence != l.Fence {
		return nil, &NotHolderError{Name: name, Holder: l.Holder, Fence: l.Fence, TTL: l.TTL}
	}
	return l, nil
}

// view is one master's reading of a lease: the lease, and whether the token
// read with it is the holder's.
type view struct {
	l     *Lease
	match bool
}

// read reads name on every master, comparing token ("" for none).
func (r *Redlock) read(ctx context.Context, name, token string) ([]view, []error) {
	return each(ctx, r.nodes, func(ctx context.Context, _ int, c *Client) (view, error) {
		l, m, err := c.inspect(ctx, name, token)
		return view{l, m}, err
	})
}

// agreed returns the grant that a quorum of views agree on (the same fence),
// with the shortest TTL among them.
func (r *Redlock) agreed(name string, views []view, errs []error) (*Lease, error) {
	byFence := map[int64][]*Lease{}
	answered := 0
	for i, v := range views {
		if errs[i] == nil {
			byFence[v.l.Fence] = append(byFence[v.l.Fence], v.l)
		}
		if errs[i] == nil || errors.Is(errs[i], ErrNotFound) {
			answered++
		}
	}
	for _, group := range byFence {
		if len(group) < r.quorum {
			continue
		}
		l := *group[0]
		for _, g := range group[1:] {
			if g.TTL < l.TTL {
				l.TTL, l.ExpiresAt = g.TTL, g.ExpiresAt
			}
		}
		return &l, nil
	}
	if answered < r.quorum {
		if ctxErr := firstCtxErr(errs); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &BackendError{Op: "get", Err: fmt.Errorf("no quorum: %d of %d masters answered, %d needed: %w",
			answered, len(r.nodes), r.quorum, errors.Join(errs...))}
	}
	return nil, &NotFoundError{Name: name}
}

// List lists the leases a quorum agrees on. It scans the first n-quorum+1
// masters in turn (every quorum has one of them), reading each name found
// from all masters; a lease may appear more than once across pages.
func (r *Redlock) List(ctx context.Context, opts *ListOptions) (*Page, error) {
	var o ListOptions
	if opts != nil {
		o = *opts
	}
	node, inner := 0, o.Cursor
	if o.Cursor != "" {
		n, rest, ok := strings.Cut(o.Cursor, ".")
		i, err := strconv.Atoi(n)
		if !ok || err != nil || i < 0 || i > len(r.nodes)-r.quorum {
			return nil, invalid(CodeInvalidRequest, "the cursor is not one this server gave: pass next_cursor from the previous page unchanged")
		}
		node, inner = i, rest
	}
	o.Cursor = inner
	p, err := r.nodes[node].List(ctx, &o)
	if err != nil {
		return nil, err
	}
	out := &Page{Leases: make([]Lease, 0, len(p.Leases))}
	for _, l := range p.Leases {
		g, err := r.Get(ctx, l.Name)
		if errors.Is(err, ErrNotFound) {
			continue // on this master, but not on a quorum
		}
		if err != nil {
			return nil, err
		}
		out.Leases = append(out.Leases, *g)
	}
	switch {
	case p.NextCursor != "":
		out.NextCursor = strconv.Itoa(node) + "." + p.NextCursor
	case node < len(r.nodes)-r.quorum:
		out.NextCursor = strconv.Itoa(node+1) + "."
	}
	return out, nil
}

// raise sets the grant of token to the decided fence, and returns the
// fence it has after (see lua/raise.lua).
func (c *Client) raise(ctx context.Context, name, token string, fence int64) (int64, error) {
	res, err := c.run(ctx, raiseScript, c.key(name), token, strconv.FormatInt(fence, 10))
	if err != nil {
		return 0, c.backendErr("raise", true, err)
	}
	r := reply(res)
	if r.str(0) != "raised" {
		return 0, &NotHolderError{Name: name}
	}
	if err := r.err("raise", 2); err != nil {
		return 0, err
	}
	return r.int(1), nil
}

// decided reads the decided fence of name's grant (field q, see
// lua/raise.lua): 0 when it has none.
func (c *Client) decided(ctx context.Context, op, name string) (int64, error) {
	q, err := boundedCall(ctx, func() (int64, error) { return c.rdb.HGet(ctx, c.key(name), "q").Int64() })
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, c.backendErr(op, false, err)
	}
	return q, nil
}

// each runs fn on every node at once (given its index) and returns the
// results in node order.
func each[T any](ctx context.Context, nodes []*Client, fn func(context.Context, int, *Client) (T, error)) ([]T, []error) {
	res := make([]T, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, c := range nodes {
		wg.Go(func() { res[i], errs[i] = fn(ctx, i, c) })
	}
	wg.Wait()
	return res, errs
}

// invalidOf returns the first *InvalidError: bad input fails alike everywhere.
func invalidOf(errs []error) error {
	for _, err := range errs {
		if errors.Is(err, ErrInvalid) {
			return err
		}
	}
	return nil
}

// Break ends the current grant on every master that answers (see
// Client.Break). It holds when a quorum of masters broke it, or when every
// master answered and none still has it; it answers the broken grant's
// record with the highest fence. A break that reached fewer than a quorum
// while others did not answer is a *BackendError that says so: the holder
// may go on renewing on those (a review saw "broke" answered while the
// holder, partitioned from the operator, kept the lease). Otherwise it is
// *NotHolderError when opts.Fence is given and a master had another grant,
// or *NotFoundError when no master had a live grant.
func (r *Redlock) Break(ctx context.Context, name string, opts *BreakOptions) (*Record, error) {
	var o BreakOptions
	if opts != nil {
		o = *opts
	}
	if err := checkBreak(name, &o); err != nil {
		return nil, err
	}
	recs, errs := each(ctx, r.nodes, func(ctx context.Context, _ int, c *Client) (*Record, error) {
		return c.Break(ctx, name, &o)
	})
	var (
		best   *Record
		broken int
		nh     *NotHolderError
		other  []error
	)
	for i, rec := range recs {
		var e *NotHolderError
		switch err := errs[i]; {
		case err == nil:
			broken++
			if best == nil || rec.Fence > best.Fence {
				best = rec
			}
		case errors.As(err, &e):
			nh = e
		case errors.Is(err, ErrNotFound):
		default:
			other = append(other, err)
		}
	}
	switch {
	case broken >= r.quorum || broken > 0 && len(other) == 0:
		return best, nil
	case broken > 0:
		return nil, &BackendError{Op: "break", MayHaveApplied: true, Err: fmt.Errorf(
			"broken on %d of %d masters, fewer than the quorum of %d, and the holder may keep it on those that did not answer; break again when they do: %w",
			broken, len(r.nodes), r.quorum, errors.Join(other...))}
	case nh != nil:
		return nil, nh
	case len(other) > len(r.nodes)-r.quorum:
		if ctxErr := firstCtxErr(other); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &BackendError{Op: "break", Err: fmt.Errorf("no quorum answered: %w", errors.Join(other...))}
	}
	return nil, &NotFoundError{Name: name}
}

// History answers the name's history as the master that answers with the
// longest one keeps it (each master keeps its own; they differ only by
// the grants a master missed). See Client.History.
func (r *Redlock) History(ctx context.Context, name string, limit int) ([]Record, error) {
	hs, errs := each(ctx, r.nodes, func(ctx context.Context, _ int, c *Client) ([]Record, error) {
		return c.History(ctx, name, limit)
	})
	if err := invalidOf(errs); err != nil {
		return nil, err
	}
	best := -1
	for i, h := range hs {
		if errs[i] == nil && (best < 0 || len(h) > len(hs[best])) {
			best = i
		}
	}
	if best < 0 {
		if ctxErr := firstCtxErr(errs); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, &BackendError{Op: "history", Err: errors.Join(errs...)}
	}
	return hs[best], nil
}
