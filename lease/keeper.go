package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// ErrLost is matched by every *LostError: a lease that a Keeper could not keep.
var ErrLost = errors.New("lease: lost")

// ErrStopped is the cause of a Keeper's context after Stop or Release.
var ErrStopped = errors.New("lease: keeper stopped")

// LostError says why a held lease was lost. Err is the *NotHolderError or
// *NotFoundError that Renew answered, or the last failure (a *BackendError,
// typically) when renewals failed until the lease's own expiry.
type LostError struct {
	Name  string
	Fence int64
	Err   error
}

func (e *LostError) Error() string {
	return fmt.Sprintf("lease: lost %q (fence %d): %v", e.Name, e.Fence, e.Err)
}

// Unwrap returns the reason.
func (e *LostError) Unwrap() error { return e.Err }

// Is reports whether target is ErrLost.
func (e *LostError) Is(target error) bool { return target == ErrLost }

// Clock is the time source of the helpers. The zero value of every options
// struct uses the real clock; tests inject their own.
type Clock interface {
	Now() time.Time
	// After is time.After: a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// KeeperOptions configure a Keeper. A nil *KeeperOptions is the zero value.
type KeeperOptions struct {
	// TTL is what each renewal asks for. Default 0: the TTL of the grant
	// (Lease.TTL of the lease given to Keep).
	TTL time.Duration
	// Interval is the time between renewals. Default, and whenever it is
	// over half the TTL, a third of the TTL, so two renewals in a row may
	// fail before the lease is in danger.
	Interval time.Duration
	// MaxRetryInterval caps the backoff between retries of a failed renewal.
	// Default a tenth of the TTL (at least 10ms). Retries never go past the
	// lease's expiry.
	MaxRetryInterval time.Duration
	// Clock is the time source. Default the real clock.
	Clock Clock
	// Margin is how much earlier than the lease's expiry the Keeper takes it
	// for lost: the allowance for this machine's clock running slower than
	// Redis's, and for the loss to reach the caller. Default DefaultMargin(TTL),
	// 1% of it + 5ms; at most half the TTL.
	Margin time.Duration
	// Sent is when (by Clock) the Acquire of the lease was sent: the Keeper
	// counts the lease's expiry from then, so it never believes the lease
	// lives longer than it does. Default, and whenever it is earlier with
	// the real clock: the lease's own Sent, which every transport of this
	// module sets (for a waiting Acquire, when the call that granted it was
	// sent). Without either, when Keep is called, which is later than the
	// grant by the answer's trip.
	Sent time.Time
}

// Keeper keeps one lease renewed in the background, like an etcd Session or a
// Consul lock's monitor, and reports its loss.
//
// Renewals run about every TTL/3. A renewal that fails for a moment (a
// *BackendError: Redis or the server briefly away, a timeout) is retried with
// exponential backoff until the lease's own expiry; the lease is lost only
// then. A renewal answered *NotHolderError or *NotFoundError means the lease
// is already gone: the Keeper reports the loss at once. Any other error
// (invalid input, an HTTP auth failure) is retried like a backend failure,
// since it may be fixed before the lease expires.
//
// # When the loss is reported
//
// The Keeper reports the loss (Done is closed, Err is a *LostError) no
// later than the moment another client could be granted the lease, however
// the path to Redis fails (hangs, drops, slow replies):
//
//   - A grant or renewal of TTL T that was sent at local time s was applied
//     by Redis at some instant after s, so Redis keeps it until at least
//     s + T by Redis's clock; no other client is granted the name before.
//   - The Keeper takes the lease for lost at s + T - Margin by its own clock
//     (Margin is 1% of T + 5ms unless set): this covers a local clock that
//     runs up to 1% slower than Redis's, and the few milliseconds the loss
//     takes to reach the caller.
//   - No renewal attempt outlives that moment: each is bounded by a context
//     that ends there, and the transports enforce a call's deadline
//     themselves, whatever options the go-redis client has (package doc).
//
// What it does not cover: this process being paused (GC, SIGSTOP, a
// suspended VM) for longer than the margin while it believes it holds the
// lease, and clocks that drift apart by more than the margin. Both are why
// writes must carry the fence.
//
// Holding is never guaranteed: between two renewals the lease can be taken by
// another holder (after a pause of this process longer than the TTL, or a
// Redis failover that lost the grant), and the Keeper learns it only at its
// next renewal. Pass the fence to what you write.
type Keeper struct {
	c      Interface
	name   string
	token  string
	ttl    time.Duration // asked of each renew; 0: the grant's own
	every  time.Duration
	maxGap time.Duration
	margin time.Duration // KeeperOptions.Margin; 0: DefaultMargin
	clock  Clock

	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when run has returned

	mu      sync.Mutex // guards lease and expires
	lease   *Lease     // the latest grant, as Renew answered it
	expires time.Time  // local clock: when the lease is taken for lost unless renewed
}

// DefaultMargin returns the Keeper's default margin for a TTL: 1% of it
// plus 5ms, at most half of it.
func DefaultMargin(ttl time.Duration) time.Duration {
	return min(ttl/100+5*time.Millisecond, ttl/2)
}

// lost returns when a grant of ttl sent at sent is taken for lost.
func (k *Keeper) lost(sent time.Time, ttl time.Duration) time.Time {
	m := DefaultMargin(ttl)
	if k.margin > 0 {
		m = min(k.margin, ttl/2)
	}
	return sent.Add(ttl - m)
}

// Keep starts keeping l (a lease this caller acquired, with its Token) until
// ctx ends, Stop or Release is called, or the lease is lost. Call it right
// after Acquire returns, or set opts.Sent.
func Keep(ctx context.Context, c Interface, l *Lease, opts *KeeperOptions) *Keeper {
	var o KeeperOptions
	if opts != nil {
		o = *opts
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	ttl := o.TTL
	if ttl <= 0 {
		ttl = l.TTL
	}
	// Every renewal asks for ttl itself: with 0, each backend would renew
	// with the TTL it stored, and Redlock masters may store different ones.
	o.TTL = ttl
	if o.Interval <= 0 || o.Interval > ttl/2 {
		o.Interval = ttl / 3
	}
	if o.MaxRetryInterval <= 0 {
		o.MaxRetryInterval = max(ttl/10, 10*time.Millisecond)
	}
	sent := o.Sent
	if _, real := o.Clock.(realClock); real && !l.Sent.IsZero() && (sent.IsZero() || l.Sent.Before(sent)) {
		sent = l.Sent // the transport's own record, by the same clock
	}
	if sent.IsZero() {
		sent = o.Clock.Now()
	}
	k := &Keeper{
		c: c, name: l.Name, token: l.Token, ttl: o.TTL, every: max(o.Interval, time.Millisecond),
		maxGap: o.MaxRetryInterval, margin: o.Margin, clock: o.Clock,
		done: make(chan struct{}), lease: new(*l),
	}
	k.expires = k.lost(sent, l.TTL)
	k.ctx, k.cancel = context.WithCancelCause(ctx)
	go k.run()
	return k
}

// Context returns a context that is cancelled when the lease is lost (its
// cause a *LostError), when Stop or Release is called (cause ErrStopped), or
// when the context given to Keep ends. Use context.Cause to tell which.
func (k *Keeper) Context() context.Context { return k.ctx }

// Done is closed when the Keeper no longer keeps the lease, like an etcd
// Session's Done.
func (k *Keeper) Done() <-chan struct{} { return k.ctx.Done() }

// Err returns nil while the lease is kept; after Done it returns why it
// ended: a *LostError (errors.Is(err, ErrLost)), ErrStopped, or the cause of
// the context given to Keep.
func (k *Keeper) Err() error {
	if k.ctx.Err() == nil {
		return nil
	}
	return context.Cause(k.ctx)
}

// Lease returns the latest grant: the same token and fence, with the TTL and
// expiry of the most recent renewal.
func (k *Keeper) Lease() *Lease {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := *k.lease
	return &l
}

// Stop stops renewing without releasing: the lease lives on until its TTL
// runs out. It waits for the renewing goroutine to end.
func (k *Keeper) Stop() {
	k.cancel(ErrStopped)
	<-k.done
}

// Release stops renewing and releases the lease, so others can take it at
// once. A lease already lost is not an error to release: Release returns nil
// when the Keeper had reported the loss, and the *NotHolderError or
// *NotFoundError otherwise.
func (k *Keeper) Release(ctx context.Context) error {
	k.Stop()
	err := k.c.Release(ctx, k.name, k.token)
	if err != nil && errors.Is(context.Cause(k.ctx), ErrLost) && (errors.Is(err, ErrNotHolder) || errors.Is(err, ErrNotFound)) {
		return nil
	}
	return err
}

// expiry returns the local time at which the lease is taken for lost unless renewed.
func (k *Keeper) expiry() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.expires
}

func (k *Keeper) run() {
	defer close(k.done)
	for {
		// Never sleep past the moment the lease is taken for lost: a grant
		// whose answer came late (a slow path) may have little of its TTL
		// left, and renew reports the loss once that moment has come.
		next := k.clock.Now().Add(k.every)
		if e := k.expiry(); e.Before(next) {
			next = e
		}
		if !k.sleepUntil(next) {
			return
		}
		if !k.renew() {
			return
		}
	}
}

// renew renews once, retrying transient failures with backoff until the
// lease's expiry. It reports false when the Keeper is done.
func (k *Keeper) renew() bool {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = min(50*time.Millisecond, k.maxGap)
	b.MaxInterval = k.maxGap
	var lastErr error
	for {
		deadline := k.expiry()
		sent := k.clock.Now()
		if !sent.Before(deadline) {
			reason := errors.New("the lease expired before it could be renewed")
			if lastErr != nil {
				reason = fmt.Errorf("renewals failed until the lease expired: %w", lastErr)
			}
			k.cancel(&LostError{Name: k.name, Fence: k.Lease().Fence, Err: reason})
			return false
		}
		// No attempt outlives the lease: past its expiry an answer is useless.
		actx, cancel := context.WithTimeout(k.ctx, deadline.Sub(sent))
		l, err := k.c.Renew(actx, k.name, k.token, k.ttl)
		cancel()
		switch {
		case err == nil:
			k.mu.Lock()
			k.lease = l
			k.expires = k.lost(sent, l.TTL)
			k.mu.Unlock()
			return true
		case k.ctx.Err() != nil:
			return false
		case errors.Is(err, ErrNotHolder) || errors.Is(err, ErrNotFound):
			k.cancel(&LostError{Name: k.name, Fence: k.Lease().Fence, Err: err})
			return false
		}
		if lastErr == nil || !errors.Is(err, context.DeadlineExceeded) {
			lastErr = err // an attempt cut short at the expiry says less than the failure before it
		}
		// Retry no later than the expiry, where the loop above gives up.
		wake := k.clock.Now().Add(b.NextBackOff())
		if wake.After(deadline) {
			wake = deadline
		}
		if !k.sleepUntil(wake) {
			return false
		}
	}
}

// sleepUntil waits until t by the Keeper's clock; false if the Keeper ended first.
func (k *Keeper) sleepUntil(t time.Time) bool {
	d := t.Sub(k.clock.Now())
	if d <= 0 {
		return k.ctx.Err() == nil
	}
	select {
	case <-k.ctx.Done():
		return false
	case <-k.clock.After(d):
		return true
	}
}
