package lease

import (
	"context"
	"errors"
	"time"
)

// DoOptions configure Do. A nil *DoOptions is the zero value.
type DoOptions struct {
	// TTL, Holder, Metadata and Wait are those of the Acquire (TTL default
	// 30s; Wait default 0: when the lease is held, Do returns *HeldError at
	// once without running fn).
	TTL      time.Duration
	Holder   string
	Metadata string
	Wait     time.Duration
	// Hold keeps the lease for at least Hold from the grant, even when fn
	// returns sooner: Do then sets the lease to expire at grant + Hold instead
	// of releasing it, so a job scheduled on several hosts whose clocks or
	// schedules differ by less than Hold runs once per period (kvz/cronlock's
	// "minimum hold"). Default 0: release as soon as fn returns.
	Hold time.Duration
	// Keeper configures the renewals while fn runs.
	Keeper *KeeperOptions
}

// Do runs fn at most once across every process that calls Do with the same
// name at the same time: it acquires the lease, runs fn while a Keeper renews
// it, and releases it when fn returns (or, with Hold, keeps it until grant +
// Hold). fn's context is cancelled if the lease is lost; context.Cause of it
// is then the *LostError.
//
// When the lease is held by another, Do returns the *HeldError without
// running fn. Otherwise it returns fn's error, joined with the *LostError if
// the lease was lost while fn ran, and with the error of the final release
// or renew, if any.
//
// "At most once" holds between processes that do not pause for longer than
// the TTL: a process stopped while fn runs can resume after another was
// granted the lease and finish its work alongside. Give fn's writes the fence
// (l.Fence) so the store can reject the late one.
func Do(ctx context.Context, c Interface, name string, opts *DoOptions, fn func(ctx context.Context, l *Lease) error) error {
	var o DoOptions
	if opts != nil {
		o = *opts
	}
	var ko KeeperOptions
	if o.Keeper != nil {
		ko = *o.Keeper
	}
	if ko.Clock == nil {
		ko.Clock = realClock{}
	}
	if m, ok := c.(interface{ MaxTTL() time.Duration }); ok && o.Hold > m.MaxTTL() {
		// Finish could not keep it that long: refuse before fn runs.
		return invalid(CodeInvalidTTL, "the hold %s is longer than the largest TTL, %s (MaxTTL, the server's --max-ttl): hold at most that", o.Hold, m.MaxTTL())
	}
	sent := ko.Clock.Now()
	l, err := c.Acquire(ctx, name, &AcquireOptions{TTL: o.TTL, Holder: o.Holder, Metadata: o.Metadata, Wait: o.Wait})
	if err != nil {
		return err
	}
	// The grant happened before now: grant + Hold is no later than granted + Hold.
	granted := time.Now()
	if o.Wait == 0 {
		ko.Sent = sent // else the grant came after some wait: count from now
	}
	k := Keep(ctx, c, l, &ko)
	fnErr := fn(k.Context(), l)
	k.Stop()
	var lost *LostError
	if errors.As(context.Cause(k.Context()), &lost) {
		return errors.Join(fnErr, lost)
	}
	// Finishing touches must run even when ctx ended: they make the lease
	// available to others (or keep it for Hold) rather than leave it to expire.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout(l.TTL))
	defer cancel()
	return errors.Join(fnErr, Finish(fctx, c, k.Lease(), granted, o.Hold))
}

// Finish ends a grant after its work is done: it releases the lease, or, when
// hold is more than what has passed since granted (the local time at which
// the grant was known to exist), renews it to expire at granted + hold so
// that nobody takes it again before then.
func Finish(ctx context.Context, c Interface, l *Lease, granted time.Time, hold time.Duration) error {
	if rest := hold - time.Since(granted); rest > 0 {
		_, err := c.Renew(ctx, l.Name, l.Token, max(rest, MinTTL))
		return err
	}
	return c.Release(ctx, l.Name, l.Token)
}

// finishTimeout bounds a release after ctx ended: long enough for a slow
// backend, short enough not to hang a process that is stopping.
func finishTimeout(ttl time.Duration) time.Duration {
	return min(max(ttl, time.Second), 10*time.Second)
}
