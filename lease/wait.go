package lease

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// testHookAttempted, when set by a test, runs after every attempt of a
// waiting Acquire, with its error.
var testHookAttempted func(name string, err error)

// An Acquire with a Wait waits up to o.Wait while another holder has the
// lease. The waiter joins the Client's shared subscription to the name's
// release channel, and only once Redis has confirmed it does it make its
// first attempt, so no release after that attempt is missed. It then sleeps
// until a release is announced or the holder's remaining TTL (answered by
// the failed attempt) runs out, whichever comes first: an expired lease is
// taken over at once, with no polling in between.
//
// Waiters of one Client on one name form a queue: only the oldest attempts,
// so one release costs one attempt per process, and the lease goes to them
// in arrival order. A waiter that loses the race to another process stays at
// the front. A Release through the same Client hands the lease straight to
// the oldest waiter (see Client.Release), so that waiter gets it without an
// attempt of its own.
//
// When o.Wait ends without a grant the error is the *HeldError of the last
// attempt, its TTL less the time since that attempt (so it still says how
// long the holder's lease lives); when that time is up, one more attempt
// answers instead. When ctx ends first the error wraps ctx.Err(). The context's
// deadline does not by itself make Acquire wait. When Redis fails (an
// attempt answers a *BackendError) the wait ends at once with that error; a
// failed subscription connection makes the head attempt at once, so a Redis
// that is down or hung ends the wait within about two health intervals.

// waitState is what one waiting Acquire keeps between its turns.
type waitState struct {
	c        *Client
	name     string
	o        *AcquireOptions
	ownToken bool
	w        *waiter
	deadline time.Time   // when the wait ends
	end, nap *time.Timer // poke w at the deadline, and at the holder's expiry
	stop     func() bool // stops poking w when ctx ends

	last   *HeldError // answered by the last attempt
	lastAt time.Time  // when it was answered
	got    *Lease     // what the wait returns
}

// startWait joins the queue of name's waiters and sets the timers.
//
//go:noinline
func (c *Client) startWait(ctx context.Context, name string, o *AcquireOptions, ownToken bool) (*waitState, error) {
	w, err := c.sub.join(c.channel(name), o)
	if err != nil {
		return nil, &BackendError{Op: "acquire", Err: err}
	}
	ws := &waitState{c: c, name: name, o: o, ownToken: ownToken, w: w, deadline: time.Now().Add(o.Wait)}
	ws.end = time.AfterFunc(o.Wait, w.poke)
	ws.nap = time.AfterFunc(time.Hour, w.poke)
	ws.stop = context.AfterFunc(ctx, w.poke)
	return ws, nil
}

// step takes the waiter's turn: the lease handed over, an attempt when it
// is the head's turn, or the nap until the holder's expiry. over says that
// the wait ends with l, err.
//
//go:noinline
func (ws *waitState) step(ctx context.Context) (l *Lease, err error, over bool) {
	for {
		handed, attempt, until, retries, closed := ws.w.turn(time.Now())
		switch {
		case closed:
			return nil, &BackendError{Op: "acquire", Err: ErrClosed}, true
		case handed != nil:
			ws.got = handed
			return handed, nil, true
		case attempt:
			if l, err, over := ws.attempt(ctx, retries); over {
				return l, err, true
			}
			// However the attempt went, the wait ends with its context
			// and at its deadline: no loop outlives them.
			if l, err, over := ws.woken(ctx); over {
				return l, err, true
			}
			continue
		case !until.IsZero():
			ws.nap.Reset(time.Until(until))
		}
		return nil, nil, false
	}
}

// woken checks, after a wake-up, whether the context or the wait ended.
//
//go:noinline
func (ws *waitState) woken(ctx context.Context) (l *Lease, err error, over bool) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("lease: acquire: %w", ctx.Err()), true
	}
	if !time.Now().Before(ws.deadline) {
		l, err := ws.ended(ctx)
		return l, err, true
	}
	return nil, nil, false
}

// finish stops the wait's timers and leaves the queue, releasing a lease
// that was handed over as the waiter gave up.
func (ws *waitState) finish() {
	ws.end.Stop()
	ws.nap.Stop()
	ws.stop()
	if untaken := ws.w.leave(ws.got != nil); untaken != nil {
		ws.c.undo.Undo(ws.c, ws.name, untaken.Token, untaken.TTL, nil)
	}
}

// attempt is the head's attempt; over says that the wait ends with l, err.
func (ws *waitState) attempt(ctx context.Context, retries int) (l *Lease, err error, over bool) {
	l, err = ws.tryOnce(ctx)
	var held *HeldError
	switch {
	case err == nil:
		ws.w.done(retries, l.Fence, time.Now().Add(l.TTL))
		ws.got = l
		return l, nil, true
	case errors.As(err, &held):
		// PTTL counts whole milliseconds: never retry sooner than 1ms.
		ws.lastAt = time.Now()
		ws.w.done(retries, held.Fence, ws.lastAt.Add(max(held.TTL, time.Millisecond)))
		ws.last = held
		return nil, nil, false
	case ctx.Err() != nil:
		if !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("lease: acquire: %w", ctx.Err())
		}
		return nil, err, true
	default:
		// Redis failed (or answered an error): like an Acquire that does
		// not wait, say so now rather than at the end of the wait.
		return nil, err, true
	}
}

// ended answers a wait that ran out: the lease if it was handed over just
// now, else the last attempt's *HeldError with the TTL left, or one more
// attempt's answer when that TTL is up.
func (ws *waitState) ended(ctx context.Context) (*Lease, error) {
	if handed, _, _, _, _ := ws.w.turn(time.Now()); handed != nil {
		ws.got = handed // handed over just as the wait ended
		return handed, nil
	}
	left := time.Duration(0)
	if ws.last != nil {
		left = ws.last.TTL - time.Since(ws.lastAt)
	}
	if left < time.Millisecond {
		// Never tried (never confirmed subscribed), or the holder's lease
		// has run out just now: the answer is one more attempt.
		l, err := ws.tryOnce(ctx)
		ws.got = l
		return l, err
	}
	held := *ws.last
	held.TTL = left.Truncate(time.Millisecond)
	return nil, &held
}

func (ws *waitState) tryOnce(ctx context.Context) (*Lease, error) {
	l, err := ws.c.attempt(ctx, ws.name, ws.o)
	if ws.ownToken && unknown(err) {
		// Only this wait knew the token: nobody else can end the grant
		// the attempt may have made.
		ws.c.undo.Undo(ws.c, ws.name, ws.o.Token, ws.o.TTL, err)
	}
	return l, err
}

func (c *Client) attempt(ctx context.Context, name string, o *AcquireOptions) (*Lease, error) {
	l, err := c.tryAcquire(ctx, name, o, c.id)
	if testHookAttempted != nil {
		testHookAttempted(name, err)
	}
	return l, err
}
