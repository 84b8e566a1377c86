package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// testHookAttempted, when set by a test, runs after every attempt of a
// waiting Acquire, with its error.
var testHookAttempted func(name string, err error)

// An Acquire with a Wait waits up to o.Wait while another holder has the
// lease, in the name's queue in Redis (see lua/common.lua), which every
// process that shares the Redis joins: waiters are served in arrival
// order, whichever process or server they wait in.
//
// The waiter first subscribes to its Client's hand-over channel for the
// name, and only once Redis has confirmed it does it make its first
// attempt, which grants the lease or queues the waiter in the same script
// call. A release then hands the lease to the queue's head in its own
// script call and tells only that waiter's Client: one grant costs the
// release and the waiter's first attempt, whatever the number of waiters.
// When the holder's lease runs out instead, the head takes it with an
// attempt at the expiry the last attempt answered; the others attempt a
// second after it, in case the head is gone, and so learn the next
// expiry. A waiter whose process died is skipped by the hand-over (its
// subscription ended with its connections).
//
// When o.Wait ends without a grant the error is the *HeldError of the last
// attempt, its TTL less the time since that attempt (so it still says how
// long the holder's lease lives); when that time is up, one more attempt
// answers instead. When ctx ends first the error wraps ctx.Err(). The context's
// deadline does not by itself make Acquire wait. When Redis fails (an
// attempt answers a *BackendError) the wait ends at once with that error.
// However it ends without the lease, the waiter leaves the queue at once
// (a lease handed to it meanwhile is released, to the next waiter).

// behindHead is how long after the holder's expiry a waiter that is not
// the queue's head attempts on its own, in case the head is gone.
const behindHead = time.Second

// recheckEvery is the longest a waiter sleeps between attempts: the bound
// on how long what it last learnt can be stale (see docs/waiting.md).
const recheckEvery = 4 * time.Second

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
	napUntil time.Time   // when the nap ends; zero: no nap set

	last   *HeldError // answered by the last attempt
	lastAt time.Time  // when it was answered
	got    *Lease     // what the wait returns
	// running is closed when an attempt that the wait gave up on has
	// ended; nil when none is left running. The waiter leaves the queue
	// only after it, or that attempt could queue it again.
	running <-chan struct{}
}

// startWait joins the name's waiters and sets the timers.
//
//go:noinline
func (c *Client) startWait(ctx context.Context, name string, o *AcquireOptions, ownToken bool) (*waitState, error) {
	w, err := c.sub.joinAs(c.channel(name), name, c.id, o, false, ownToken)
	if err != nil {
		return nil, &BackendError{Op: "acquire", Err: err}
	}
	ws := &waitState{c: c, name: name, o: o, ownToken: ownToken, w: w, deadline: time.Now().Add(o.Wait)}
	ws.end = time.AfterFunc(o.Wait, w.poke)
	ws.nap = time.AfterFunc(time.Hour, w.poke)
	ws.stop = context.AfterFunc(ctx, w.poke)
	return ws, nil
}

// step takes the waiter's turn: the lease handed over, an attempt when one
// is due, or a nap until the next one. over says that the wait ends with
// l, err.
//
//go:noinline
func (ws *waitState) step(ctx context.Context) (l *Lease, err error, over bool) {
	for {
		handed, attempt, retries, closed := ws.w.turn()
		if handed != nil && !time.Now().Before(handed.Sent.Add(handed.TTL)) {
			// Told so late that the grant may have ended: ask Redis. The
			// attempt re-grants it when this token still holds it.
			ws.w.drop(handed)
			handed, attempt, retries = nil, true, -1
		}
		if until := ws.w.told(); !until.IsZero() && !ws.w.notifyOnly {
			// Now the head: take over when that grant ends, unless renewed.
			if ws.napUntil.IsZero() || until.Before(ws.napUntil) {
				ws.napUntil = until
				ws.nap.Reset(time.Until(until))
			}
		}
		if !attempt && !ws.napUntil.IsZero() && !time.Now().Before(ws.napUntil) {
			attempt, retries = true, -1
		}
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

// finish stops the wait's timers and, unless the wait got the lease,
// leaves the queue in Redis: at once, and in the background until Redis
// answers when it cannot now.
func (ws *waitState) finish() {
	ws.end.Stop()
	ws.nap.Stop()
	ws.stop()
	if ws.got != nil {
		ws.w.leave(false) // its entry left the queue when it was granted
		return
	}
	if !ws.w.attempted {
		ws.w.leave(false) // never queued
		return
	}
	ws.w.leave(true)
	if ws.running != nil {
		ws.c.leaveLater(ws.name, ws.w, ws.running)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	err := ws.c.leave(ctx, ws.name, ws.w)
	cancel()
	if !retryable(err) {
		ws.w.forget()
		return
	}
	ws.c.leaveLater(ws.name, ws.w, nil)
}

// leaveTimeout bounds a waiter's leave before it goes on in the background.
const leaveTimeout = 2 * time.Second

// retryable says whether a leave that failed with err must be tried
// again: its outcome is unknown, or Redis could not be reached. An error
// that Redis answered (see lua/leave.lua) is final.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	var be *BackendError
	return unknown(err) || errors.As(err, &be) && (isNetErr(err) || neverSent(err))
}

// leaveLater leaves w's entry in the background, once after (when not
// nil) is closed, and then with backoff until Redis answers or the entry
// has surely gone with its queue's key.
func (c *Client) leaveLater(name string, w *waiter, after <-chan struct{}) {
	c.undo.wg.Add(1)
	go func() {
		defer c.undo.wg.Done()
		defer w.forget()
		deadline := time.Now().Add(w.opts.Wait + queueSlack)
		pause := 20 * time.Millisecond
		if after != nil {
			<-after
			pause = 0
		}
		for time.Now().Before(deadline) {
			time.Sleep(pause)
			pause = max(pause, 10*time.Millisecond)
			pause = min(2*pause, time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
			err := c.leave(ctx, name, w)
			cancel()
			if !retryable(err) || errors.Is(err, redis.ErrClosed) {
				// Done, or never: a closed Redis client answers nothing
				// again, and its entry goes with the queue's key.
				return
			}
		}
	}()
}

// attempt is an attempt of the waiter; over says that the wait ends with
// l, err. retries is the topic's count it covers (-1: none, a nap's end).
func (ws *waitState) attempt(ctx context.Context, retries int) (l *Lease, err error, over bool) {
	ws.napUntil = time.Time{}
	l, position, held, err := ws.tryOnce(ctx, ws.w)
	if retries >= 0 {
		ws.w.covered(retries)
	}
	switch {
	case err == nil:
		ws.got = l
		return l, nil, true
	case held != nil && position == -2:
		// Its entry is gone (a hand-over skipped it while this Client was
		// not subscribed): join again, at the tail, with an attempt now.
		ws.lastAt = time.Now()
		ws.last = held
		ws.w.attempted = false
		return nil, nil, false
	case held != nil:
		// The remaining TTL counts whole milliseconds: never sooner than 1ms.
		ws.lastAt = time.Now()
		ws.last = held
		until := ws.lastAt.Add(max(held.TTL, time.Millisecond))
		if position != 0 {
			until = until.Add(behindHead)
		}
		// What this attempt saw may be overtaken without a word to this
		// waiter (a lease handed to another expires, a waiter ahead died
		// unnoticed): look again at least every recheckEvery.
		if limit := ws.lastAt.Add(recheckEvery); until.After(limit) {
			until = limit
		}
		ws.napUntil = until
		ws.nap.Reset(time.Until(until))
		return nil, nil, false
	case ctx.Err() != nil:
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
	if handed, _, _, _ := ws.w.turn(); handed != nil {
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
		l, _, held, err := ws.tryOnce(ctx, ws.w)
		ws.got = l
		if held != nil {
			return nil, held
		}
		return l, err
	}
	held := *ws.last
	held.TTL = left.Truncate(time.Millisecond)
	return nil, &held
}

// tryOnce makes one attempt on another goroutine (Client.attempters), which also reads
// its answer: held is the *HeldError when the lease is held, and a
// context's end is the wait's error. Every waiter attempts (its first
// attempt queues it), and the call through go-redis is deep enough to
// double the stack of the goroutine that makes it, which for a waiting
// HTTP request is the connection's, parked for the whole wait (see
// httpapi's TestWaitingRequestsKeepSmallStacks).
//
//go:noinline
func (ws *waitState) tryOnce(ctx context.Context, w *waiter) (l *Lease, position int64, held *HeldError, err error) {
	ws.c.attempters.run(func() {
		l, position, err = ws.c.tryAcquire(ctx, ws.name, ws.o, w)
		if testHookAttempted != nil {
			testHookAttempted(ws.name, err)
		}
		if ws.ownToken && unknown(err) {
			// Only this wait knew the token: nobody else can end the grant
			// the attempt may have made.
			ws.c.undo.Undo(ws.c, ws.name, ws.o.Token, ws.o.TTL, err)
		}
		var abandoned *abandonedError
		switch {
		case err == nil:
		case errors.As(err, &held):
		case errors.As(err, &abandoned):
			ws.running = abandoned.running // still running: leave after it
		case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
			err = fmt.Errorf("lease: acquire: %w", ctx.Err())
		}
	})
	return l, position, held, err
}
