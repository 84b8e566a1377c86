package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/lease"
)

type runCmd struct {
	connFlags
	Name          string   `arg:"" help:"Lease name."`
	Command       []string `arg:"" optional:"" help:"The command and its arguments, after --." placeholder:"-- COMMAND [ARGS...]"`
	TTL           string   `help:"Time to live of the lease; it is renewed about every ttl/3." default:"30s"`
	Holder        string   `help:"Public label of who holds it (default: hostname)."`
	Metadata      string   `help:"A string returned by reads of the lease."`
	Wait          string   `help:"How long to wait for the lease when it is held (a duration, or forever)." default:"0"`
	Hold          string   `help:"Keep the lease for at least this long from the grant, even after the command ends (cron skew); at most the server's --max-ttl." default:"0"`
	HoldOnFailure bool     `name:"hold-on-failure" negatable:"" default:"true" help:"Keep --hold also when the command fails (exits non-zero); --no-hold-on-failure releases the lease at once then, so a failed job can run again in the same period."`
	KillAfter     string   `help:"After SIGTERM on losing the lease, SIGKILL the command this much later." default:"10s"`
	ConflictExit  int      `name:"conflict-exit-code" short:"E" help:"Exit code when the lease is held by another." default:"75"`
	Quiet         bool     `short:"q" help:"Say nothing when the lease is held by another (for cron, which mails any output)."`
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
	if len(c.Command) == 0 {
		return usageErr(errNoCommand)
	}
	ttl, err := parseTTL(c.TTL)
	if err != nil {
		return err
	}
	wait, err := parseWait(c.Wait)
	if err != nil {
		return err
	}
	var hold, killAfter time.Duration
	if d, perr := time.ParseDuration(c.Hold); c.Hold != "0" && (perr != nil || d != 0) {
		if hold, err = parseTTL(c.Hold); err != nil {
			return usageErr(fmt.Errorf("--hold: %w", errors.Unwrap(err)))
		}
	}
	if killAfter, err = time.ParseDuration(c.KillAfter); err != nil || killAfter < 0 {
		return usageErr(fmt.Errorf("--kill-after %q: give a duration with a unit, like 10s", c.KillAfter))
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

	// Signals are ours from the start, so one that comes while we wait for
	// the lease stops the wait instead of killing us with the lease half-taken.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	l, sent, granted, sig, err := c.acquire(e.ctx, lc, sigs, lease.AcquireOptions{TTL: ttl, Holder: holder, Metadata: c.Metadata}, wait)
	if sig != nil {
		if l != nil {
			rctx, cancel := withoutCancel(e.ctx, ttl)
			lc.Release(rctx, l.Name, l.Token)
			cancel()
		}
		settle(lc, e.stderr, min(ttl, 10*time.Second)) // a grant the cut-short acquire may have made

		return &exitError{code: 128 + int(sig.(syscall.Signal)), err: fmt.Errorf("got %s while waiting for %q: not running the command", sig, c.Name)}
	}
	if err != nil {
		settle(lc, e.stderr, min(ttl, 10*time.Second))
		if c.Quiet && errors.Is(err, lease.ErrHeld) {
			return &exitError{code: c.ConflictExit}
		}
		return exitFor(err, c.ConflictExit)
	}

	cmd := exec.Command(c.Command[0], c.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, e.stdout, e.stderr
	cmd.Env = append(os.Environ(),
		"LEASE_NAME="+l.Name, "LEASE_TOKEN="+l.Token, "LEASE_FENCE="+strconv.FormatInt(l.Fence, 10))
	// Its own process group, so that on loss the whole tree gets the signal;
	// on a terminal, the foreground group, so that it can read the terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if tty := terminal(); tty >= 0 {
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, tty
		defer takeBackTerminal(tty)
	}
	if err := cmd.Start(); err != nil {
		rctx, cancel := withoutCancel(e.ctx, ttl)
		lc.Release(rctx, l.Name, l.Token)
		cancel()
		code := 127 // as sh does for a command not found
		if errors.Is(err, os.ErrPermission) {
			code = 126
		}
		return &exitError{code: code, err: fmt.Errorf("cannot run %s: %v", c.Command[0], err)}
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()

	k := lease.Keep(e.ctx, lc, l, &lease.KeeperOptions{TTL: ttl, Sent: sent})
	var lost error
	var kill <-chan time.Time
	keeping := k.Done() // nil once the loss is handled: a closed channel would spin the loop
	group := -cmd.Process.Pid
	for done := false; !done; {
		select {
		case <-exited:
			done = true
		case s := <-sigs:
			syscall.Kill(group, s.(syscall.Signal))
		case <-keeping:
			keeping = nil
			lost = k.Err()
			fmt.Fprintf(e.stderr, "leasehold: %v\nleasehold: sending SIGTERM to the command, SIGKILL in %s if it is still running\n", lost, killAfter)
			syscall.Kill(group, syscall.SIGTERM)
			kill = time.After(killAfter)
		case <-kill:
			fmt.Fprintf(e.stderr, "leasehold: the command outlived --kill-after %s: sending SIGKILL\n", killAfter)
			syscall.Kill(group, syscall.SIGKILL)
			kill = nil
		}
	}
	k.Stop()
	if lost == nil && errors.Is(k.Err(), lease.ErrLost) { // lost just as the command ended
		lost = k.Err()
	}
	if lost != nil {
		return &exitError{code: exitLost, err: fmt.Errorf("the lease was lost while the command ran; exit 76")}
	}
	fctx, cancel := withoutCancel(e.ctx, ttl)
	defer cancel()
	keep := hold
	if exitCode(cmd.ProcessState) != 0 && !c.HoldOnFailure {
		keep = 0 // released at once: a failed job may run again in the same period
	}
	if err := lease.Finish(fctx, lc, k.Lease(), granted, keep); err != nil {
		fmt.Fprintf(e.stderr, "leasehold: after the command: %v\n", err)
	}
	if code := exitCode(cmd.ProcessState); code != 0 {
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
	type result struct {
		l   *lease.Lease
		err error
	}
	res := make(chan result, 1)
	go func() {
		l, err := acquireWaiting(actx, lc, c.Name, o, w)
		res <- result{l, err}
	}()
	select {
	case r := <-res:
		cancel()
		granted = time.Now()
		if w.d > 0 || w.forever {
			sent = granted
		}
		return r.l, sent, granted, nil, r.err
	case s := <-sigs:
		cancel()
		r := <-res
		return r.l, sent, sent, s, nil
	}
}

// exitCode is the child's exit code, 128+N when signal N ended it (as a shell says).
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
