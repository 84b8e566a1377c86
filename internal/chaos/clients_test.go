package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leasehold/leasehold/internal/chaos"
	"github.com/leasehold/leasehold/lease"
)

// recorder is a lease.Interface that records every call of the client it
// wraps in the history, from the client's own view. The Keeper renews
// through it, so renewals are recorded too.
type recorder struct {
	inner  lease.Interface
	h      *chaos.History
	client string
	lin    func(name string) bool // whether name's operations are checked for linearizability
	labels sync.Map               // token: label of its grant
}

var _ lease.Interface = (*recorder)(nil)

func (r *recorder) record(o chaos.Op, err error) {
	o.End = chaos.Now()
	o.Return = o.End
	o.Client = r.client
	o.Lin = r.lin(o.Name)
	if err != nil {
		classify(&o, err)
	}
	if o.Outcome == chaos.Unknown {
		o.Return = chaos.Never
	}
	r.h.AddOp(o)
}

// classify sets an operation's outcome from its error.
func classify(o *chaos.Op, err error) {
	var (
		held *lease.HeldError
		nh   *lease.NotHolderError
		be   *lease.BackendError
	)
	switch {
	case errors.As(err, &held):
		o.Outcome, o.Holder, o.Fence = chaos.Held, held.Holder, held.Fence
	case errors.As(err, &nh):
		o.Outcome, o.Holder, o.Fence = chaos.NotHolder, nh.Holder, nh.Fence
	case errors.Is(err, lease.ErrNotFound):
		o.Outcome = chaos.NotFound
	case errors.Is(err, lease.ErrInvalid):
		o.Outcome = chaos.Failed
	case o.Kind == chaos.Get:
		o.Outcome = chaos.Failed // a failed read changed nothing
	case errors.As(err, &be) && !be.MayHaveApplied:
		o.Outcome = chaos.Failed
	default:
		o.Outcome = chaos.Unknown
	}
}

func (r *recorder) label(token string) string {
	if l, ok := r.labels.Load(token); ok {
		return l.(string)
	}
	return "?"
}

func (r *recorder) Acquire(ctx context.Context, name string, opts *lease.AcquireOptions) (*lease.Lease, error) {
	o := chaos.Op{Kind: chaos.Acquire, Name: name, Label: opts.Holder, TTL: opts.TTL, Wait: opts.Wait, Call: chaos.Now()}
	l, err := r.inner.Acquire(ctx, name, opts)
	if err == nil {
		o.Outcome, o.Fence = chaos.Granted, l.Fence
		r.labels.Store(l.Token, opts.Holder)
	}
	r.record(o, err)
	return l, err
}

func (r *recorder) Renew(ctx context.Context, name, token string, ttl time.Duration) (*lease.Lease, error) {
	o := chaos.Op{Kind: chaos.Renew, Name: name, Label: r.label(token), TTL: ttl, Call: chaos.Now()}
	l, err := r.inner.Renew(ctx, name, token, ttl)
	if err == nil {
		o.Outcome, o.Fence = chaos.Renewed, l.Fence
	}
	r.record(o, err)
	return l, err
}

func (r *recorder) Release(ctx context.Context, name, token string) error {
	o := chaos.Op{Kind: chaos.Release, Name: name, Label: r.label(token), Call: chaos.Now()}
	err := r.inner.Release(ctx, name, token)
	if err == nil {
		o.Outcome = chaos.Released
	}
	r.record(o, err)
	return err
}

func (r *recorder) Get(ctx context.Context, name string) (*lease.Lease, error) {
	o := chaos.Op{Kind: chaos.Get, Name: name, Call: chaos.Now()}
	l, err := r.inner.Get(ctx, name)
	if err == nil {
		o.Outcome, o.Holder, o.Fence = chaos.Held, l.Holder, l.Fence
	}
	r.record(o, err)
	return l, err
}

func (r *recorder) Verify(ctx context.Context, name string, proof lease.Proof) (*lease.Lease, error) {
	return r.inner.Verify(ctx, name, proof)
}

func (r *recorder) List(ctx context.Context, opts *lease.ListOptions) (*lease.Page, error) {
	return r.inner.List(ctx, opts)
}

// workerOptions shape one worker's traffic.
type workerOptions struct {
	names []string
	ttl   time.Duration
	// hold is how long a grant with a Keeper is held: half of them up to
	// a third of it, half from 2/3 to 4/3 of it.
	hold time.Duration
	// plain is the share of grants held without a Keeper, by the TTL alone
	// (believed until the TTL from the send runs out); such a holder may
	// overrun its TTL and then releases a lease it no longer has.
	plain float64
	// waitShare is the share of acquires that wait (2 TTLs).
	waitShare float64
	// lateKeeper is the broken variant whose holder stops believing one
	// TTL after its keeper reported the loss.
	lateKeeper bool
	// uniformHold holds grants with a Keeper for a uniform time up to hold.
	uniformHold bool
	// rest is how long the worker pauses after each grant ends.
	rest time.Duration
	// release replaces the release (the unchecked-release variant).
	release func(ctx context.Context, l *lease.Lease) error
}

// worker is one client of the workload: it acquires, holds while writing
// to the store, and releases, until stop.
type worker struct {
	id    string
	c     *recorder
	store *chaos.Store
	h     *chaos.History
	o     workerOptions
	// holding is set while the worker holds a grant with a Keeper, for the
	// nemesis that prefers to hurt such holders.
	holding atomic.Bool
	seq     int
}

func (w *worker) run(stop *atomic.Bool) {
	ctx := context.Background()
	for !stop.Load() {
		w.seq++
		name := w.o.names[rand.IntN(len(w.o.names))]
		label := fmt.Sprintf("%s-%d", w.id, w.seq)
		var wait time.Duration
		if rand.Float64() < w.o.waitShare {
			wait = 2 * w.o.ttl
		}
		sent, tsent := chaos.Now(), time.Now()
		l, err := w.c.Acquire(ctx, name, &lease.AcquireOptions{TTL: w.o.ttl, Holder: label, Wait: wait})
		if err != nil {
			if errors.Is(err, lease.ErrHeld) {
				time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			} else {
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		got := chaos.Now()
		g := chaos.Grant{Client: w.id, Name: name, Label: label, Fence: l.Fence, Sent: sent, Got: got}
		if rand.Float64() < w.o.plain {
			expires := sent + int64(w.o.ttl)
			if wait > 0 {
				// Granted at some moment of the wait: believe Redis's expiry
				// (its clock is this machine's).
				expires = got + int64(time.Until(l.ExpiresAt))
			}
			w.holdPlain(ctx, l, &g, expires)
		} else {
			ko := &lease.KeeperOptions{TTL: w.o.ttl}
			if wait == 0 {
				ko.Sent = tsent
			}
			w.holding.Store(true)
			w.holdKept(ctx, l, &g, ko)
			w.holding.Store(false)
		}
		w.h.AddGrant(g)
		time.Sleep(w.o.rest)
	}
}

// holdKept holds l with a Keeper, writing every 20ms while it believes it
// holds, then releases it (or records the loss).
func (w *worker) holdKept(ctx context.Context, l *lease.Lease, g *chaos.Grant, ko *lease.KeeperOptions) {
	k := lease.Keep(ctx, w.c, l, ko)
	var lostAt atomic.Int64
	stopWatch := context.AfterFunc(k.Context(), func() {
		if errors.Is(context.Cause(k.Context()), lease.ErrLost) {
			lostAt.Store(chaos.Now())
		}
	})
	defer stopWatch()
	// Half the grants are held briefly, half for long enough that a fault
	// meets them while they hold.
	hold := time.Duration(rand.Int64N(int64(w.o.hold)/3 + 1))
	if w.o.uniformHold {
		hold = time.Duration(rand.Int64N(int64(w.o.hold) + 1))
	} else if rand.IntN(2) == 0 {
		hold = between(w.o.hold*2/3, w.o.hold*4/3)
	}
	until := chaos.Now() + int64(hold)
	believes := func() bool {
		t := lostAt.Load()
		if t == 0 {
			return true
		}
		return w.o.lateKeeper && chaos.Now() < t+int64(w.o.ttl)
	}
	for chaos.Now() < until && believes() {
		w.store.Write(g.Name, g.Label, l.Fence)
		time.Sleep(20 * time.Millisecond)
	}
	if t := lostAt.Load(); t != 0 {
		g.End, g.Ended = t, "lost"
		if w.o.lateKeeper {
			g.End = min(chaos.Now(), t+int64(w.o.ttl))
		}
		k.Stop()
		return
	}
	g.End, g.Ended = chaos.Now(), "released"
	if w.o.release != nil {
		k.Stop()
		w.o.release(ctx, l)
		return
	}
	k.Release(ctx)
	if t := lostAt.Load(); t != 0 && t < g.End {
		g.End, g.Ended = t, "lost" // lost just before the release was sent
	}
}

// holdPlain holds l without a Keeper: it believes it holds until expires
// (its TTL from the send), and may overrun that before it releases.
func (w *worker) holdPlain(ctx context.Context, l *lease.Lease, g *chaos.Grant, expires int64) {
	until := chaos.Now() + rand.Int64N(int64(w.o.ttl)*3/2+1)
	for now := chaos.Now(); now < until && now < expires; now = chaos.Now() {
		w.store.Write(g.Name, g.Label, l.Fence)
		time.Sleep(20 * time.Millisecond)
	}
	for chaos.Now() < until {
		time.Sleep(5 * time.Millisecond)
	}
	g.End, g.Ended = min(chaos.Now(), expires), "released"
	if g.End == expires {
		g.Ended = "expired"
	}
	if w.o.release != nil {
		w.o.release(ctx, l)
		return
	}
	w.c.Release(ctx, l.Name, l.Token)
}

// observer reads every name every 30ms, so that the history shows who holds
// what between the workers' own calls.
func observe(c *recorder, names []string, stop *atomic.Bool) {
	for !stop.Load() {
		for _, n := range names {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			c.Get(ctx, n)
			cancel()
		}
		time.Sleep(30 * time.Millisecond)
	}
}
