package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/leasehold/leasehold/lease"
)

type runCmd struct {
	connFlags
	Name          string `arg:"" help:"Lease name."`
	TTL           string `help:"Time to live of the lease; it is renewed about every ttl/3." default:"30s"`
	Holder        string `help:"Public label of who holds it (default: hostname)."`
	Metadata      string `help:"A string returned by reads of the lease."`
	Wait          string `help:"How long to wait for the lease when it is held (a duration, or forever)." default:"0"`
	Hold          string `help:"Keep the lease for at least this long from the grant, even after the command ends (cron skew); at most the server's --max-ttl." default:"0"`
	HoldOnFailure bool   `name:"hold-on-failure" negatable:"" default:"true" help:"Keep --hold also when the command fails (exits non-zero); --no-hold-on-failure releases the lease at once then, so a failed job can run again in the same period."`
	ConflictExit  int    `name:"conflict-exit-code" short:"E" help:"Exit code when the lease is held by another." default:"75"`
	Quiet         bool   `short:"q" help:"Say nothing when the lease is held by another (for cron, which mails any output)."`
	commandFlags
}

func (c *runCmd) Help() string {
	return `Like flock(1) for a fleet: takes the lease NAME, runs COMMAND with
LEASE_NAME, LEASE_TOKEN and LEASE_FENCE in its environment (in its own process
group), renews the lease in the background about every ttl/3, and releases it
when the command ends. Exits with the command's exit code.

When the lease is held by another, exits 75 (or -E) without running anything.
If the lease is lost (renewals failed until it expired, or it was taken),
sends SIGTERM to the command's process group, SIGKILL after --kill-after, and
exits 76. SIGINT, SIGTERM and SIGHUP sent to leasehold run are passed to the
command; while still waiting for the lease they stop the wait, and nothing runs.
With --hold D, the lease is kept until D after the grant when the command ends
sooner, so a host whose cron fires late does not run the same period again.

Examples:
  leasehold run nightly-report --ttl 1m -- ./report.sh --date today
  # crontab on every host: run once per hour, whichever host comes first
  0 * * * *  /usr/local/bin/leasehold run hourly-sync --hold 10m -- /usr/local/bin/sync
  leasehold run deploy --wait 5m -E 0 -- make deploy`
}

// errNoCommand is a usage error: run needs a command after NAME.
var errNoCommand = errors.New("give the command to run after --, as in: leasehold run NAME -- COMMAND [ARGS...]")

func (c *runCmd) Run(e *env) error {
	ttl, killAfter, err := c.parse(errNoCommand, c.TTL)
	if err != nil {
		return err
	}
	wait, err := parseWait(c.Wait)
	if err != nil {
		return err
	}
	var hold time.Duration
	if d, perr := time.ParseDuration(c.Hold); c.Hold != "0" && (perr != nil || d != 0) {
		if hold, err = parseTTL(c.Hold); err != nil {
			return usageErr(fmt.Errorf("--hold: %w", errors.Unwrap(err)))
		}
	}
	holder := c.Holder
	if holder == "" {
		holder, _ = os.Hostname()
	}
	lc, closeFn, err := c.connect()
	if err != nil {
		return exitFor(err, c.ConflictExit)
	}
	defer closeFn()
	if err := checkHold(e.ctx, lc, ttl, hold); err != nil {
		return exitFor(err, c.ConflictExit)
	}

	sigs, stopSignals := catchSignals()
	defer stopSignals()

	l, sent, granted, sig, err := c.acquire(e.ctx, lc, sigs, lease.AcquireOptions{TTL: ttl, Holder: holder, Metadata: c.Metadata}, wait)
	if sig != nil {
		if l != nil {
			releaseAfter(e.ctx, lc, l, ttl)
		}
		settle(lc, e.stderr, min(ttl, 10*time.Second)) // a grant the cut-short acquire may have made
		return signalExit(sig, "waiting for", c.Name)
	}
	if err != nil {
		settle(lc, e.stderr, min(ttl, 10*time.Second))
		if c.Quiet && errors.Is(err, lease.ErrHeld) {
			return &exitError{code: c.ConflictExit}
		}
		return exitFor(err, c.ConflictExit)
	}

	started := time.Now()
	ch, err := startChild(e, c.Command, l)
	if err != nil {
		releaseAfter(e.ctx, lc, l, ttl)
		return err
	}
	k := lease.Keep(e.ctx, lc, l, &lease.KeeperOptions{TTL: ttl, Sent: sent})
	if lost := ch.supervise(e, sigs, k, killAfter); lost != nil {
		return &exitError{code: exitLost, err: fmt.Errorf("the lease was lost while the command ran; exit 76")}
	}
	fctx, cancel := withoutCancel(e.ctx, ttl)
	defer cancel()
	keep := hold
	if ch.exitCode() != 0 && !c.HoldOnFailure {
		keep = 0 // released at once: a failed job may run again in the same period
	}
	// The name's history says how the command ended (leasehold history).
	outcome := &lease.Outcome{ExitCode: min(max(ch.exitCode(), 0), 255), Duration: time.Since(started)}
	if err := lease.FinishWith(fctx, lc, k.Lease(), granted, keep, outcome); err != nil {
		fmt.Fprintf(e.stderr, "leasehold: after the command: %v\n", err)
	}
	if code := ch.exitCode(); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// acquire takes the lease, giving up when one of sigs arrives. It returns the
// grant; the local time from which its expiry counts (when the request was
// sent; for a wait, when the answer came); the time at which the grant surely
// existed; and the signal that stopped it (with a grant that came meanwhile,
// to release).
func (c *runCmd) acquire(ctx context.Context, lc lease.Interface, sigs <-chan os.Signal, o lease.AcquireOptions, w waitFlag) (l *lease.Lease, sent, granted time.Time, sig os.Signal, err error) {
	sent = time.Now()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	sig = untilSignal(sigs, cancel, func() { l, err = acquireWaiting(actx, lc, c.Name, o, w) })
	if sig != nil {
		return l, sent, sent, sig, nil
	}
	granted = time.Now()
	if w.d > 0 || w.forever {
		sent = granted
	}
	return l, sent, granted, nil, err
}
