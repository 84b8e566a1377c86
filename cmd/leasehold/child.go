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

// What run and elect share: the command they start while a lease is held,
// the signals they pass to it, and its end when the lease is lost.

// catchSignals makes SIGINT, SIGTERM and SIGHUP ours from the start, so that
// one that comes while the lease is being taken stops that instead of
// killing leasehold with the lease half-taken. stop ends it.
func catchSignals() (sigs chan os.Signal, stop func()) {
	sigs = make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	return sigs, func() { signal.Stop(sigs) }
}

// untilSignal runs f, and when one of sigs comes before f returns, calls
// cancel (which must make f return soon) and waits for f. It returns the
// signal, or nil when f returned first.
func untilSignal(sigs <-chan os.Signal, cancel func(), f func()) os.Signal {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		return nil
	case s := <-sigs:
		cancel()
		<-done
		return s
	}
}

// signalExit is the exit of leasehold stopped by sig before it ran the
// command (128+N, as a shell says): what stopped is "waiting for",
// "campaigning for".
func signalExit(sig os.Signal, what, name string) error {
	return &exitError{code: 128 + int(sig.(syscall.Signal)),
		err: fmt.Errorf("got %s while %s %q: not running the command", sig, what, name)}
}

// commandFlags are what run and elect take alike: the command, after NAME
// and --, and how it is stopped when the lease is lost.
type commandFlags struct {
	Command   []string `arg:"" optional:"" help:"The command and its arguments, after --." placeholder:"-- COMMAND [ARGS...]"`
	KillAfter string   `help:"After SIGTERM on losing the lease, SIGKILL the command this much later." default:"10s"`
}

// parse checks the command (noCommand says how to give one), ttlFlag (--ttl)
// and --kill-after.
func (f *commandFlags) parse(noCommand error, ttlFlag string) (ttl, killAfter time.Duration, err error) {
	if len(f.Command) == 0 {
		return 0, 0, usageErr(noCommand)
	}
	if ttl, err = parseTTL(ttlFlag); err != nil {
		return 0, 0, err
	}
	if killAfter, err = time.ParseDuration(f.KillAfter); err != nil || killAfter < 0 {
		return 0, 0, usageErr(fmt.Errorf("--kill-after %q: give a duration with a unit, like 10s", f.KillAfter))
	}
	return ttl, killAfter, nil
}

// child is a command run while the lease l is held: in its own process
// group, with LEASE_NAME, LEASE_TOKEN and LEASE_FENCE in its environment.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once it has exited and been waited for
	tty    int           // the terminal whose foreground it was given, or -1
}

// startChild starts argv for the lease l with e's output. A failure to start
// is an *exitError with a shell's codes: 127 not found, 126 not executable.
// The caller still holds the lease then, and must release it.
func startChild(e *env, argv []string, l *lease.Lease) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, e.stdout, e.stderr
	cmd.Env = append(os.Environ(),
		"LEASE_NAME="+l.Name, "LEASE_TOKEN="+l.Token, "LEASE_FENCE="+strconv.FormatInt(l.Fence, 10))
	// Its own process group, so that on loss the whole tree gets the signal;
	// on a terminal, the foreground group, so that it can read the terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tty := terminal()
	if tty >= 0 {
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, tty
	}
	if err := cmd.Start(); err != nil {
		if tty >= 0 {
			takeBackTerminal(tty)
		}
		code := 127 // as sh does for a command not found
		if errors.Is(err, os.ErrPermission) {
			code = 126
		}
		return nil, &exitError{code: code, err: fmt.Errorf("cannot run %s: %v", argv[0], err)}
	}
	c := &child{cmd: cmd, exited: make(chan struct{}), tty: tty}
	go func() { cmd.Wait(); close(c.exited) }()
	return c, nil
}

// supervise waits for the child to exit, passing it (its whole group) the
// signals that come on sigs. When k ends first, the lease is lost: it says
// why on stderr, sends SIGTERM to the group, and SIGKILL killAfter later if
// the child still runs. Once the child has exited it stops k (without
// releasing), gives the terminal back, and returns why k ended while the
// child ran (a loss, errors.Is ErrLost, unless k's context ended), or nil
// when the lease was held to the end.
func (c *child) supervise(e *env, sigs <-chan os.Signal, k *lease.Keeper, killAfter time.Duration) error {
	var lost error
	var kill <-chan time.Time
	keeping := k.Done() // nil once the loss is handled: a closed channel would spin the loop
	group := -c.cmd.Process.Pid
	for done := false; !done; {
		select {
		case <-c.exited:
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
	if c.tty >= 0 {
		takeBackTerminal(c.tty)
	}
	k.Stop()
	if lost == nil && errors.Is(k.Err(), lease.ErrLost) { // lost just as the command ended
		lost = k.Err()
	}
	return lost
}

// exitCode is the child's exit code, 128+N when signal N ended it (as a shell says).
func (c *child) exitCode() int {
	ps := c.cmd.ProcessState
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// releaseAfter releases l on the way out, whatever happened to ctx.
func releaseAfter(ctx context.Context, lc lease.Interface, l *lease.Lease, ttl time.Duration) error {
	rctx, cancel := withoutCancel(ctx, ttl)
	defer cancel()
	return lc.Release(rctx, l.Name, l.Token)
}
