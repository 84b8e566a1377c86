package lease

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// maxCampaignWait bounds one waiting Acquire of a campaign, below every
// server's --max-wait (default 5m) and within an HTTP client's patience.
const maxCampaignWait = 30 * time.Second

// ErrNoLeader is returned by Election.Leader when nobody leads.
var ErrNoLeader = errors.New("lease: no leader")

// ErrNotLeader is returned by Election.Resign when this candidate does not lead.
var ErrNotLeader = errors.New("lease: not the leader")

// LeaderCallbacks are called by Election.Run, in the spirit of client-go's
// leaderelection.LeaderCallbacks. Every field is optional.
type LeaderCallbacks struct {
	// OnStartedLeading runs in its own goroutine when this candidate becomes
	// the leader. ctx is cancelled when leadership ends (lost, resigned, or
	// Run's context ended); l carries the fence to give every write made as
	// leader. It must return soon after ctx is cancelled: Run waits for it
	// before campaigning again or returning.
	OnStartedLeading func(ctx context.Context, l *Lease)
	// OnStoppedLeading is called after leadership ended and OnStartedLeading
	// returned, while the lease is being released: it does not wait for
	// Redis. Run returns after both.
	OnStoppedLeading func()
	// OnNewLeader is called when the leader this candidate observes changes,
	// with the new leader's identity (its own included). It is called from
	// Run's goroutine: keep it short.
	OnNewLeader func(identity string)
}

// ElectionConfig configures an Election.
type ElectionConfig struct {
	// Name is the lease that the candidates compete for.
	Name string
	// Identity names this candidate: the lease's holder while it leads. It
	// should be unique among the candidates (a pod or host name).
	Identity string
	// TTL is the lease's time to live: how long the fleet can be without a
	// leader after the leader dies without resigning. Default 15s.
	TTL time.Duration
	// RetryPeriod is how long a follower's Acquire waits for the lease in one
	// attempt (it is woken by a release before that), and how often Observe
	// reads the leader. Default TTL/3.
	RetryPeriod time.Duration
	// Callbacks are called by Run.
	Callbacks LeaderCallbacks
	// Keeper configures the renewals while leading. Its Clock defaults to Clock.
	Keeper *KeeperOptions
	// Clock is the time source. Default the real clock.
	Clock Clock
}

// Election elects one leader among candidates that share a lease name, with
// the verbs of etcd's concurrency.Election (Campaign, Resign, Leader,
// Observe) and a client-go style Run loop with callbacks.
//
// # What is and is not guaranteed
//
// At most one candidate holds the lease at any instant of Redis's clock. That
// is not the same as at most one process acting as leader: a leader that
// pauses (GC, swap, a stopped VM) for longer than the TTL keeps running its
// leader code when it resumes, until its next renewal tells it the lease is
// gone; a leader cut off from Redis stops leading only when its local clock
// says the lease expired, which may be later than Redis's view if its clock
// runs slow. Every write a leader makes to shared state must carry the lease's
// fence (Lease.Fence, strictly increasing with every new leader), and the
// store must reject fences lower than the highest it has seen: then a
// deposed leader's writes are refused however late they come.
//
// Leadership moves within about the TTL after a leader dies without
// resigning, and at once (woken by the release) after a Resign.
type Election struct {
	c     Interface
	cfg   ElectionConfig
	clock Clock

	transitions atomic.Int64 // leaders observed, see Transitions

	mu   sync.Mutex // guards term, led, last
	term *Keeper    // the current term while leading; nil otherwise
	// led is closed when Run's OnStartedLeading for term has returned; nil
	// when term is not led by Run.
	led  chan struct{}
	last int64 // fence of the last leader observed
}

// NewElection returns an Election over c. It checks the name and identity.
func NewElection(c Interface, cfg ElectionConfig) (*Election, error) {
	if err := ValidateName(cfg.Name); err != nil {
		return nil, err
	}
	if err := ValidateHolder(cfg.Identity); err != nil {
		return nil, err
	}
	if cfg.Identity == "" {
		return nil, &InvalidError{Code: CodeInvalidRequest, Message: "the election needs an Identity for this candidate"}
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = cfg.TTL / 3
	}
	clock := cfg.Clock
	if clock == nil {
		clock = realClock{}
	}
	if cfg.Keeper == nil {
		cfg.Keeper = &KeeperOptions{}
	}
	k := *cfg.Keeper
	if k.Clock == nil {
		k.Clock = clock
	}
	cfg.Keeper = &k
	return &Election{c: c, cfg: cfg, clock: clock}, nil
}

// Campaign blocks until this candidate is elected, or ctx ends. It returns the
// Keeper of the term: its Context is cancelled when leadership ends. While
// another candidate leads, Campaign waits on the lease (woken when it is
// released or expires); failures to reach the backend are retried every
// RetryPeriod.
func (e *Election) Campaign(ctx context.Context) (*Keeper, error) {
	wait := time.Duration(0) // the first try does not wait, so the leader is observed at once
	for {
		sent := e.clock.Now()
		waited := wait
		l, err := e.c.Acquire(ctx, e.cfg.Name, &AcquireOptions{TTL: e.cfg.TTL, Holder: e.cfg.Identity, Wait: wait})
		wait = min(e.cfg.RetryPeriod, maxCampaignWait)
		if err == nil {
			e.observe(l)
			ko := *e.cfg.Keeper
			ko.Sent = sent
			if waited > 0 {
				ko.Sent = time.Time{} // granted after some wait: count from now
			}
			k := Keep(ctx, e.c, l, &ko)
			e.mu.Lock()
			e.term = k
			e.mu.Unlock()
			return k, nil
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		var held *HeldError
		if errors.As(err, &held) {
			e.observe(&Lease{Name: held.Name, Holder: held.Holder, Fence: held.Fence, TTL: held.TTL})
			continue
		}
		if errors.Is(err, ErrInvalid) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-e.clock.After(e.cfg.RetryPeriod):
		}
	}
}

// Resign ends this candidate's term: it stops renewing and releases the
// lease, so that another candidate is elected at once. When Run leads the
// term, Resign first waits until OnStartedLeading has returned (its context
// is cancelled), so that the next leader cannot start while this one still
// acts. ErrNotLeader when it does not lead.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	k, led := e.term, e.led
	e.term, e.led = nil, nil
	e.mu.Unlock()
	if k == nil {
		return ErrNotLeader
	}
	if led != nil {
		k.Stop()
		select {
		case <-led:
		case <-ctx.Done():
			return context.Cause(ctx) // the lease expires by its TTL
		}
	}
	return k.Release(ctx)
}

// IsLeader reports whether this candidate holds a term that has not ended.
func (e *Election) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term != nil && e.term.Err() == nil
}

// Leader returns the current leader's lease (holder, fence, remaining TTL;
// never its token), or ErrNoLeader.
func (e *Election) Leader(ctx context.Context) (*Lease, error) {
	l, err := e.c.Get(ctx, e.cfg.Name)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNoLeader
	}
	if err != nil {
		return nil, err
	}
	e.observe(l)
	return l, nil
}

// Observe reads the leader every RetryPeriod and sends its lease each time a
// new leader (a new fence) is seen, starting with the current one. The
// channel is closed when ctx ends. A slow reader misses intermediate leaders,
// never the latest.
func (e *Election) Observe(ctx context.Context) <-chan Lease {
	ch := make(chan Lease, 1)
	go func() {
		defer close(ch)
		var fence int64
		for {
			if l, err := e.Leader(ctx); err == nil && l.Fence != fence {
				fence = l.Fence
				select { // keep only the latest for a slow reader
				case <-ch:
				default:
				}
				ch <- *l
			}
			select {
			case <-ctx.Done():
				return
			case <-e.clock.After(e.cfg.RetryPeriod):
			}
		}
	}()
	return ch
}

// Transitions counts the leaders this Election has seen take office: each
// new fence observed by Campaign, Leader, Observe or Run, its own terms
// included. The first leader observed counts as one.
func (e *Election) Transitions() int64 { return e.transitions.Load() }

// observe records the leader l and calls OnNewLeader when it is a new one.
func (e *Election) observe(l *Lease) {
	e.mu.Lock()
	changed := l.Fence != e.last
	e.last = l.Fence
	e.mu.Unlock()
	if !changed {
		return
	}
	e.transitions.Add(1)
	if f := e.cfg.Callbacks.OnNewLeader; f != nil {
		f(l.Holder)
	}
}

// Run campaigns, leads until leadership is lost, and campaigns again, until
// ctx ends (after a Resign it waits RetryPeriod before campaigning again); then it resigns (releasing the lease so another candidate takes
// over at once) and returns context.Cause(ctx). The callbacks are called as
// LeaderCallbacks says. Run also reports other leaders through OnNewLeader
// while it waits.
func (e *Election) Run(ctx context.Context) error {
	for {
		k, err := e.Campaign(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return err
		}
		e.lead(ctx, k)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(k.Err(), ErrStopped) {
			// Resigned: give the others, woken by the release, a head start.
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-e.clock.After(e.cfg.RetryPeriod):
			}
		}
	}
}

// lead runs one term: OnStartedLeading until the term ends, then resigns and
// calls OnStoppedLeading.
func (e *Election) lead(ctx context.Context, k *Keeper) {
	led := make(chan struct{})
	e.mu.Lock()
	if e.term == k {
		e.led = led
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	if f := e.cfg.Callbacks.OnStartedLeading; f != nil {
		l := k.Lease()
		wg.Go(func() { f(k.Context(), l) })
	}
	<-k.Done()
	wg.Wait()
	close(led)
	// Release what is still ours: on loss this is a no-op, on ctx's end it
	// hands over at once instead of after the TTL. It goes on beside the
	// callback, which must not wait for a Redis that does not answer:
	// leadership has already ended.
	released := make(chan struct{})
	go func() {
		defer close(released)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout(e.cfg.TTL))
		e.Resign(rctx)
		cancel()
	}()
	if f := e.cfg.Callbacks.OnStoppedLeading; f != nil {
		f()
	}
	<-released
}
