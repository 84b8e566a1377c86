package lease

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Undoer releases, in the background, grants that a call may have made
// while its caller learnt nothing of them: an Acquire whose outcome is
// unknown (a timeout, a cancelled context, a lost connection, a signal) and
// whose token only this process knew. Nobody else can release such a grant,
// so without an undo it would stay held by nobody for its whole TTL. Each
// transport of this module has one; its zero value is ready to use.
//
// An undo releases the token again and again, with backoff, until the
// backend answers (released, or there is no such grant) or the grant, had
// it been made, has surely expired. It starts once the call that may have
// made the grant has ended on this side, so the release cannot overtake
// it; a request that a stalled network still delivers after that can make
// a grant the undo does not see, which then ends with its TTL.
type Undoer struct {
	// Grace keeps an undo going after the backend answered that there is
	// no such grant, releasing again until Grace has passed since the undo
	// began: for a backend that may still be running the call itself (a
	// Leasehold server's own call to Redis, which this side cannot see
	// end). Default 0: the first answer ends the undo.
	Grace time.Duration

	wg sync.WaitGroup
}

// Undo starts releasing name's grant of token through c in the background.
// ttl is the TTL the call asked for; err is the call's error (it may carry
// the call still running, which the undo waits for first).
func (u *Undoer) Undo(c Interface, name, token string, ttl time.Duration, err error) {
	var inflight *abandonedError
	errors.As(err, &inflight)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		if inflight != nil {
			<-inflight.running // the call has ended: the undo cannot overtake it
		}
		undo(c, name, token, ttl, u.Grace)
	}()
}

// Wait waits until every undo has ended, or ctx ends (then with its error).
// A program calls it before it exits, so that its undos are not lost.
func (u *Undoer) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		u.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// undo releases until the backend answers or a grant made now would have
// expired, each attempt bounded by 2s, 4s, 8s, ... as they time out.
func undo(c Interface, name, token string, ttl, grace time.Duration) {
	start := time.Now()
	deadline := start.Add(ttl + drift(ttl))
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = 20*time.Millisecond, time.Second
	// An attempt's bound doubles after each that timed out: on a path that
	// answers, but slowly, a Redis client that ends a timed-out call by
	// closing its connection (go-redis with ContextTimeoutEnabled) needs a
	// new one, whose handshake and call may together outlast any fixed
	// bound, so the undo would never get through.
	bound := 2 * time.Second
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(left, bound))
		err := c.Release(ctx, name, token)
		cancel()
		if err == nil || errors.Is(err, ErrInvalid) {
			return // released, or refused: nothing more to undo
		}
		if errors.Is(err, context.DeadlineExceeded) {
			bound *= 2
		}
		if !unknown(err) { // no such grant (yet), or another holder's
			rest := grace - time.Since(start)
			if rest <= 0 {
				return
			}
			time.Sleep(min(rest, 100*time.Millisecond))
			continue
		}
		time.Sleep(min(b.NextBackOff(), time.Until(deadline)))
	}
}

// Unknown reports whether err leaves the outcome of a write unknown: the
// call's context ended while it ran, or the backend failed after the
// request may have reached it.
func Unknown(err error) bool { return unknown(err) }

func unknown(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var be *BackendError
	return errors.As(err, &be) && be.MayHaveApplied
}

// abandonedError is ctx's error for a call that bounded gave up on while
// it still ran: running is closed when it has ended.
type abandonedError struct {
	err     error
	running <-chan struct{}
}

func (e *abandonedError) Error() string { return e.err.Error() }
func (e *abandonedError) Unwrap() error { return e.err }
