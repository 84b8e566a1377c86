package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
)

// operator is what break and history need of a transport: *lease.Client,
// *lease.Redlock and the HTTP client have it.
type operator interface {
	Break(ctx context.Context, name string, opts *lease.BreakOptions) (*lease.Record, error)
	History(ctx context.Context, name string, limit int) ([]lease.Record, error)
}

// connectOperator connects as the flags say, to a transport that can
// break and read histories.
func (f *connFlags) connectOperator() (operator, func(), error) {
	lc, closeFn, err := f.connect()
	if err != nil {
		return nil, nil, err
	}
	op, ok := lc.(operator)
	if !ok {
		closeFn()
		return nil, nil, fmt.Errorf("this transport (%T) keeps no history and cannot break a lease", lc)
	}
	return op, closeFn, nil
}

type historyCmd struct {
	connFlags
	outFlags
	Name  string `arg:"" help:"Lease name."`
	Limit int    `help:"Show at most this many grants, newest first (0: all the name keeps)." default:"0"`
}

func (c *historyCmd) Help() string {
	return `Shows the last grants of NAME, newest first: the current one, then the ended
ones the server keeps (leasehold serve --history, default 20, for the fence
retention): holder, fence, when it began and ended, how it ended (released,
handed_over, expired, broken by whom and why) and, for leasehold run, the
command's exit code and run time. Never a token.

Examples:
  leasehold history nightly-report          # when did it last run, where, and did it succeed?
  leasehold history nightly-report --limit 1 --json`
}

func (c *historyCmd) Run(e *env) error {
	if c.Limit < 0 {
		return usageErr(fmt.Errorf("--limit %d is negative: give 0 for all, or how many grants to show", c.Limit))
	}
	op, closeFn, err := c.connectOperator()
	if err != nil {
		return exitFor(err, exitConflict)
	}
	defer closeFn()
	h, err := op.History(e.ctx, c.Name, c.Limit)
	if err != nil {
		return exitFor(err, exitConflict)
	}
	if c.JSON {
		body := wire.History{Name: c.Name, History: make([]wire.Record, len(h))}
		for i := range h {
			body.History[i] = wire.NewRecord(&h[i])
		}
		return writeJSON(e.stdout, body)
	}
	if len(h) == 0 {
		fmt.Fprintf(e.stderr, "%q has no history: never granted, or its last grant ended more than the fence retention ago\n", c.Name)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDING\tFENCE\tHOLDER\tGRANTED\tENDED\tHELD\tEXIT\tRAN\tNOTE")
	for _, r := range h {
		ended, held := wire.FormatTime(r.EndedAt), r.EndedAt.Sub(r.GrantedAt).Round(time.Millisecond).String()
		if r.Ending == lease.Held {
			ended, held = "expires "+wire.FormatTime(r.EndedAt), "-"
		}
		exit, ran := "-", "-"
		if r.Outcome != nil {
			exit, ran = strconv.Itoa(r.Outcome.ExitCode), r.Outcome.Duration.String()
		}
		note := ""
		if r.Ending == lease.Broken {
			note = fmt.Sprintf("by %s: %s", dash(r.By), r.Reason)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Ending, r.Fence, dash(r.Holder),
			wire.FormatTime(r.GrantedAt), ended, held, exit, ran, note)
	}
	return tw.Flush()
}

type breakCmd struct {
	connFlags
	outFlags
	Name   string `arg:"" help:"Lease name."`
	Reason string `help:"Why (required): it goes into the name's history." required:""`
	Fence  int64  `help:"Break only the grant of this fence (from leasehold get): if the lease was granted again meanwhile, nothing changes."`
}

func (c *breakCmd) Help() string {
	return `Ends the current grant of NAME whoever holds it: for a job that is stuck or a
holder that is gone, instead of waiting for its TTL. Through a server it needs
a token with admin access (ACCESS admin in the auth file). The name keeps its
fence, so the next grant's is higher, and a waiting acquirer gets the lease at
once; the broken holder's leasehold run learns of it at its next renew (within
about a third of its TTL), signals its command and exits 76. That is AFTER the
lease may be someone else's: only the fence protects the broken holder's
writes. The name's history records who broke it and why.
Exits 1 when nobody holds the lease (or --fence names another grant).

Examples:
  leasehold break nightly-report --reason "stuck since 02:00, see INC-123"
  leasehold break deploy --fence 1796418837870135 --reason "runner lost"`
}

func (c *breakCmd) Run(e *env) error {
	if c.Fence < 0 {
		return usageErr(fmt.Errorf("--fence %d is negative: give the fence that leasehold get shows", c.Fence))
	}
	op, closeFn, err := c.connectOperator()
	if err != nil {
		return exitFor(err, exitConflict)
	}
	defer closeFn()
	// A server records its token's label instead; straight to Redis, the
	// history says who ran this.
	r, err := op.Break(e.ctx, c.Name, &lease.BreakOptions{Reason: c.Reason, Fence: c.Fence, By: whoAmI()})
	var nh *lease.NotHolderError
	switch {
	case errors.Is(err, lease.ErrNotFound):
		return &exitError{code: exitFailure, err: fmt.Errorf("%q is not held: nothing to break", c.Name)}
	case errors.As(err, &nh):
		return &exitError{code: exitFailure, err: fmt.Errorf("%q is now held by %s with fence %d, not %d: nothing was broken",
			c.Name, holderText(nh.Holder), nh.Fence, c.Fence)}
	case err != nil:
		return exitFor(err, exitConflict)
	}
	if c.JSON {
		return writeJSON(e.stdout, wire.Broken{Name: c.Name, Broken: true, Record: wire.NewRecord(r)})
	}
	fmt.Fprintf(e.stderr, "broke %q: it was held by %s with fence %d; the next grant's fence is higher\n", c.Name, holderText(r.Holder), r.Fence)
	return nil
}

// whoAmI labels this process's user for a history: user@host.
func whoAmI() string {
	host, _ := os.Hostname()
	name := "?"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	by := name + "@" + host
	if len(by) > lease.MaxHolderLen {
		by = by[:lease.MaxHolderLen]
	}
	return by
}
