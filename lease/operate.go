package lease

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Ending says how a grant in a name's history ended.
type Ending string

// The endings of History's records. A record of the current grant is Held
// (its EndedAt is when it expires unless renewed), or Expired when it has
// expired and no call has touched the name since.
const (
	Held       Ending = "held"
	Released   Ending = "released"
	HandedOver Ending = "handed_over" // released, and granted to the oldest waiter in the same step
	Expired    Ending = "expired"
	Broken     Ending = "broken" // ended by Break, whoever held it
)

// Record is one grant of a name's history. It never holds a token.
type Record struct {
	Name      string
	Holder    string
	Fence     int64
	GrantedAt time.Time // on Redis's clock, to the millisecond
	EndedAt   time.Time // for Held, when the grant expires unless renewed
	Ending    Ending
	// By and Reason are a break's: who broke the grant (BreakOptions.By)
	// and why.
	By, Reason string
	// Outcome is what the holder said of the work it did under the grant
	// (ReleaseWith, RenewWith; the CLI's run says its command's), or nil.
	Outcome *Outcome
}

// Outcome is what the work done under a grant ended with: the exit code
// and run time of `leasehold run`'s command, kept in the name's history.
type Outcome struct {
	ExitCode int           // 0 to 255
	Duration time.Duration // how long it ran, to the millisecond
}

// BreakOptions say which grant Break ends and why.
type BreakOptions struct {
	// Reason says why, for the history: required, at most MaxReasonLen
	// bytes of printable text.
	Reason string
	// By names who breaks it (an operator, a token's label), like a holder
	// label; "" for none.
	By string
	// Fence, when not 0, breaks the grant only while it is the one of this
	// fence: a break meant for a grant that has meanwhile ended and been
	// granted again is a *NotHolderError, and changes nothing.
	Fence int64
}

// MaxReasonLen is the longest reason a break takes, in bytes.
const MaxReasonLen = 200

// Break ends the current grant of name whoever holds it: an operator's
// override, for a holder that is stuck or gone. The grant goes into the
// name's history as broken, with opts.By and opts.Reason; the name keeps
// its fence, so the next grant's fence is higher; when callers wait, the
// lease goes to the oldest of them in the same step, as for a release.
// The holder learns of it at its next renew (*NotFoundError, or
// *NotHolderError once a waiter holds it), so a Keeper reports the loss
// then: it is NOT told before another may hold the lease, which is why
// only an operator may break (the server's admin access) and why the
// fence, which a break always raises, is what protects the holder's
// writes. It answers the record of the broken grant, or *NotFoundError
// when no grant is live.
func (c *Client) Break(ctx context.Context, name string, opts *BreakOptions) (*Record, error) {
	var o BreakOptions
	if opts != nil {
		o = *opts
	}
	if err := checkBreak(name, &o); err != nil {
		return nil, err
	}
	fence := ""
	if o.Fence != 0 {
		fence = strconv.FormatInt(o.Fence, 10)
	}
	key, queue, hist := c.keys(name)
	res, err := c.run(ctx, breakScript, key, queue, hist, c.eventsKey(key), fence, o.Reason, o.By, c.retention, c.announce, c.hist)
	if err != nil {
		return nil, c.backendErr("break", true, err)
	}
	r := reply(res)
	switch r.str(0) {
	case "broken":
		if err := r.err("break", 8); err != nil {
			return nil, err
		}
		if r.int(4) != 0 && r.str(6) == c.id {
			// Handed to one of this Client's own waiters: deliver it now.
			c.sub.deliver(c.channel(name), r.str(5), r.int(4), r.int(3))
		}
		return &Record{
			Name: name, Holder: r.str(1), Fence: r.int(2), GrantedAt: msTime(r.int(7)), EndedAt: msTime(r.int(3)),
			Ending: Broken, By: o.By, Reason: o.Reason,
		}, nil
	case "not_holder":
		return nil, firstErr(r.err("break", 5), r.notHolder(name))
	case "not_found":
		return nil, &NotFoundError{Name: name}
	}
	return nil, r.unexpected("break")
}

// checkBreak validates Break's input.
func checkBreak(name string, o *BreakOptions) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if o.Reason == "" {
		return invalid(CodeInvalidRequest, "give a reason for the break: it goes into the name's history")
	}
	if err := validateText("reason", o.Reason, MaxReasonLen); err != nil {
		return err
	}
	if err := validateText("by", o.By, MaxHolderLen); err != nil {
		return err
	}
	if o.Fence < 0 {
		return invalid(CodeInvalidRequest, "the fence %d is negative: give the fence of the grant to break, or none", o.Fence)
	}
	return nil
}

// History answers name's grants, newest first, at most limit of them (0,
// or more: all the history keeps, Options.History, and the current one): the
// current grant first when there is one (Held, or Expired when it expired
// and no call has touched the name since), then the ended ones. It is
// empty for a name never granted, or whose history expired with the fence
// retention.
func (c *Client) History(ctx context.Context, name string, limit int) ([]Record, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if limit < 0 || limit > MaxHistory+1 {
		return nil, invalid(CodeInvalidRequest, "the limit %d is out of range: use 1 to %d, or 0 for all", limit, MaxHistory+1)
	}
	if limit == 0 || limit > c.hist.(int)+1 {
		// The list may hold a few more than the history keeps until its
		// next trim (lua/common.lua): those are not the history.
		limit = c.hist.(int) + 1
	}
	key, _, hist := c.keys(name)
	res, err := c.run(ctx, historyScript, key, hist, limit)
	if err != nil {
		return nil, c.backendErr("history", false, err)
	}
	r := reply(res)
	if len(r) < 2 {
		return nil, r.unexpected("history")
	}
	var out []Record
	for i := 1; i < len(r); i++ {
		s := r.str(i)
		if s == "" {
			continue // no current grant
		}
		if i >= 2 && i-1 > c.hist.(int) {
			break // older than the history keeps (not yet trimmed)
		}
		rec, ok := parseRecord(name, s)
		if !ok {
			return nil, &BackendError{Op: "history", Err: fmt.Errorf("a malformed history entry %q", s)}
		}
		out = append(out, rec)
	}
	return out, r.err("history", 2)
}

// parseRecord reads a history entry (see lua/common.lua).
func parseRecord(name, s string) (Record, bool) {
	p := strings.SplitN(s, "\n", 9)
	if len(p) != 9 {
		return Record{}, false
	}
	fence, err1 := strconv.ParseInt(p[1], 10, 64)
	granted, err2 := strconv.ParseInt(p[2], 10, 64)
	ended, err3 := strconv.ParseInt(p[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Record{}, false
	}
	rec := Record{
		Name: name, Ending: Ending(p[0]), Fence: fence, GrantedAt: msTime(granted), EndedAt: msTime(ended),
		By: p[6], Holder: p[7], Reason: p[8],
	}
	if p[4] != "" {
		code, err := strconv.Atoi(p[4])
		if err != nil {
			return Record{}, false
		}
		ms, _ := strconv.ParseInt(p[5], 10, 64) // "" when none was told: 0
		rec.Outcome = &Outcome{ExitCode: code, Duration: msDur(ms)}
	}
	return rec, true
}

// checkOutcome validates an Outcome (nil is none).
func checkOutcome(o *Outcome) error {
	if o == nil {
		return nil
	}
	if o.ExitCode < 0 || o.ExitCode > 255 {
		return invalid(CodeInvalidRequest, "the exit code %d is out of range: use 0 to 255", o.ExitCode)
	}
	if o.Duration < 0 {
		return invalid(CodeInvalidRequest, "the duration %s is negative", o.Duration)
	}
	return nil
}

// outcomeArgs are an Outcome's exit code and duration (ms) for the scripts,
// "" for none.
func outcomeArgs(o *Outcome) (code, dur string) {
	if o == nil {
		return "", ""
	}
	return strconv.Itoa(o.ExitCode), strconv.FormatInt(o.Duration.Milliseconds(), 10)
}

// Recorder is what FinishWith needs of a transport beyond Interface: a
// release and a renew that tell the name's history what the work ended
// with. *Client, *Redlock and the HTTP client implement it.
type Recorder interface {
	ReleaseWith(ctx context.Context, name, token string, o *Outcome) error
	RenewWith(ctx context.Context, name, token string, ttl time.Duration, o *Outcome) (*Lease, error)
}

var (
	_ Recorder = (*Client)(nil)
	_ Recorder = (*Redlock)(nil)
)

// ReleaseWith is Release, and puts o (nil: none) into the history's
// record of the grant.
func (c *Client) ReleaseWith(ctx context.Context, name, token string, o *Outcome) error {
	if err := checkOutcome(o); err != nil {
		return err
	}
	return c.release(ctx, name, token, o, c.hist)
}

// RenewWith is Renew, and keeps o (nil: none) for the history's record of
// the grant when it ends: for a grant left to expire after its work is
// done (Finish with a hold), so that its record says how the work ended.
func (c *Client) RenewWith(ctx context.Context, name, token string, ttl time.Duration, o *Outcome) (*Lease, error) {
	if err := checkOutcome(o); err != nil {
		return nil, err
	}
	return c.renew(ctx, name, token, ttl, o)
}

// FinishWith is Finish, and tells the name's history what the work ended
// with when c is a Recorder (every transport of this module is); with
// another it is Finish.
func FinishWith(ctx context.Context, c Interface, l *Lease, granted time.Time, hold time.Duration, o *Outcome) error {
	rc, ok := c.(Recorder)
	if !ok || o == nil {
		return Finish(ctx, c, l, granted, hold)
	}
	if rest := hold - time.Since(granted); rest > 0 {
		_, err := rc.RenewWith(ctx, l.Name, l.Token, max(rest, MinTTL), o)
		return err
	}
	return rc.ReleaseWith(ctx, l.Name, l.Token, o)
}
