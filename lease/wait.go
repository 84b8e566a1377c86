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

// acquireWait acquires name, waiting up to o.Wait while another holder has
// it. The waiter joins the Client's shared subscription to the name's
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
func (c *Client) acquireWait(ctx context.Context, name string, o *AcquireOptions, ownToken bool) (*Lease, error) {
	w, err := c.sub.join(c.channel(name), o)
	if err != nil {
		return nil, &BackendError{Op: "acquire", Err: err}
	}
	var got *Lease // what this call returns
	defer func() {
		if untaken := w.leave(got != nil); untaken != nil {
			c.abandon(name, untaken.Token, nil)
		}
	}()

	end := time.NewTimer(o.Wait)
	defer end.Stop()
	nap := time.NewTimer(time.Hour)
	defer nap.Stop()

	var (
		last   *HeldError // answered by the last attempt
		lastAt time.Time  // when it was answered
	)
	for {
		handed, attempt, until, retries, closed := w.turn(time.Now())
		if closed {
			return nil, &BackendError{Op: "acquire", Err: ErrClosed}
		}
		if handed != nil {
			got = handed
			return got, nil
		}
		if attempt {
			l, err := c.attempt(ctx, name, o)
			var held *HeldError
			switch {
			case err == nil:
				w.done(retries, l.Fence, time.Now().Add(l.TTL))
				got = l
				return got, nil
			case errors.As(err, &held):
				// PTTL counts whole milliseconds: never retry sooner than 1ms.
				lastAt = time.Now()
				w.done(retries, held.Fence, lastAt.Add(max(held.TTL, time.Millisecond)))
				last = held
			case ctx.Err() != nil:
				if ownToken {
					c.abandon(name, o.Token, err)
				}
				if !errors.Is(err, ctx.Err()) {
					err = fmt.Errorf("lease: acquire: %w", ctx.Err())
				}
				return nil, err
			default:
				// Redis failed (or answered an error): like an Acquire that
				// does not wait, say so now rather than at the end of the wait.
				return nil, err
			}
			continue
		}
		if !until.IsZero() {
			nap.Reset(time.Until(until))
		}
		select {
		case <-w.wake:
		case <-nap.C:
		case <-end.C:
			if handed, _, _, _, _ := w.turn(time.Now()); handed != nil {
				got = handed // handed over just as the wait ended
				return got, nil
			}
			left := time.Duration(0)
			if last != nil {
				left = last.TTL - time.Since(lastAt)
			}
			if left < time.Millisecond {
				// Never tried (never confirmed subscribed), or the holder's
				// lease has run out just now: the answer is one more attempt.
				got, err = c.attempt(ctx, name, o)
				return got, err
			}
			held := *last
			held.TTL = left.Truncate(time.Millisecond)
			return nil, &held
		case <-ctx.Done():
			return nil, fmt.Errorf("lease: acquire: %w", ctx.Err())
		}
		if !nap.Stop() {
			select {
			case <-nap.C:
			default:
			}
		}
	}
}

func (c *Client) attempt(ctx context.Context, name string, o *AcquireOptions) (*Lease, error) {
	l, err := c.tryAcquire(ctx, name, o, c.id)
	if testHookAttempted != nil {
		testHookAttempted(name, err)
	}
	return l, err
}

// abandon releases a grant that may have been made for a waiter whose
// context ended during its attempt (err is the attempt's error), or that was
// handed to it as it left (err is nil), so that it leaves no lease behind.
// The token was made by Acquire, so nobody else can hold it.
func (c *Client) abandon(name, token string, err error) {
	var be *BackendError
	if errors.As(err, &be) && !be.MayHaveApplied {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Release(ctx, name, token) // not found is the likely answer
}
