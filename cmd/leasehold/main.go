// Command leasehold is the Leasehold server and its command-line client.
//
//	leasehold serve                      run the HTTP API (embedded store unless --redis...)
//	leasehold acquire NAME --ttl 30s     take a lease, print its token
//	leasehold run NAME -- COMMAND...     flock(1) for a fleet
//	leasehold elect NAME -- COMMAND...   run COMMAND while this process leads
//
// main is thin: it parses flags and environment (kong), builds the parts and
// runs them; it is the only place that exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// cli is the whole command line. Every flag but --help and --version also
// reads a LEASEHOLD_* variable.
type cli struct {
	Serve   serveCmd   `cmd:"" help:"Run the Leasehold HTTP server."`
	Acquire acquireCmd `cmd:"" help:"Take a lease and print its token on stdout."`
	Renew   renewCmd   `cmd:"" help:"Extend a lease you hold."`
	Release releaseCmd `cmd:"" help:"Release a lease you hold."`
	Get     getCmd     `cmd:"" help:"Show a lease (never its token)."`
	List    listCmd    `cmd:"" help:"List leases by name prefix."`
	Run     runCmd     `cmd:"" help:"Run a command while holding a lease, like flock(1) across machines."`
	Elect   electCmd   `cmd:"" help:"Campaign for leadership of a name and run a command while leading, like etcdctl elect."`
	Leader  leaderCmd  `cmd:"" help:"Show the current leader of an election."`
	History historyCmd `cmd:"" help:"Show a name's last grants: who, when, how each ended."`
	Break   breakCmd   `cmd:"" help:"End another holder's lease (an operator's override; needs admin access)."`
	Watch   watchCmd   `cmd:"" help:"Print the leases' changes as they happen: granted, renewed, released, expired, broken."`
	Health  healthCmd  `cmd:"" help:"Exit 0 when the server (or Redis) is ready: for healthchecks."`

	// Version has no LEASEHOLD_VERSION: a variable set to anything, even
	// false, would turn every command into printing the version. kong
	// gives --help none of its own.
	Version kong.VersionFlag `help:"Print the version and exit." env:"-"`
}

// env is what every command's Run receives.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
}

// exitError carries a process exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Exit codes shared by every command (sysexits.h where one fits).
const (
	exitOK          = 0
	exitFailure     = 1  // not_holder or not_found on renew, release, get
	exitUsage       = 64 // EX_USAGE
	exitUnavailable = 69 // EX_UNAVAILABLE: server or Redis unavailable
	exitConflict    = 75 // EX_TEMPFAIL: held by another (default of -E)
	exitLost        = 76 // the lease was lost during run
	exitNoPerm      = 77 // EX_NOPERM: unauthorized or forbidden
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs the command and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c cli
	exitCode := -1
	parser, err := kong.New(&c,
		kong.Name("leasehold"),
		kong.Description("Leasehold: distributed leases and locks on Redis."),
		kong.Vars{"version": version},
		kong.DefaultEnvars("LEASEHOLD"),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exitCode = code }),
		kong.UsageOnError(),
		// Tokens are base64url and may start with "-": --token -Abc... must parse.
		kong.WithHyphenPrefixedParameters(true),
	)
	if err != nil {
		fmt.Fprintln(stderr, "leasehold:", err)
		return exitFailure
	}
	if len(args) == 0 {
		// The whole command list, not kong's `expected one of "serve", ...`.
		parser.Stdout = stderr
		parser.Parse([]string{"--help"})
		fmt.Fprintln(stderr, "\nleasehold: give a command, like `leasehold serve` or `leasehold run NAME -- COMMAND`")
		return exitUsage
	}
	kctx, err := parser.Parse(hoistConnFlags(args))
	if exitCode >= 0 { // --help or --version
		return exitCode
	}
	if err != nil {
		fmt.Fprintln(stderr, "leasehold:", misplaced(parser, args, err))
		return exitUsage
	}
	var interrupted func() os.Signal
	if cmd := strings.Fields(kctx.Command()); len(cmd) > 0 && !slices.Contains([]string{"serve", "run", "elect", "watch"}, cmd[0]) {
		// serve, run, elect and watch handle their signals; the others must not die in the
		// middle of a call: a cancelled acquire undoes what it may have
		// granted (settle) instead of leaving a lease nobody holds.
		var stop func()
		ctx, interrupted, stop = interruptible(ctx)
		defer stop()
	}
	err = kctx.Run(&env{ctx: ctx, stdout: stdout, stderr: stderr})
	if interrupted != nil {
		if sig := interrupted(); sig != nil {
			fmt.Fprintf(stderr, "leasehold: interrupted by %s\n", sig)
			return 128 + int(sig.(syscall.Signal))
		}
	}
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "leasehold:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "leasehold:", err)
	return exitFailure
}

// interruptible returns ctx cancelled by the first SIGINT, SIGTERM or
// SIGHUP, a function that says which one came (nil: none), and one that
// stops listening.
func interruptible(parent context.Context) (context.Context, func() os.Signal, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var got atomic.Value
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			got.Store(s)
			cancel()
		case <-done:
		}
	}()
	which := func() os.Signal {
		s, _ := got.Load().(os.Signal)
		return s
	}
	return ctx, which, func() { signal.Stop(sigs); close(done); cancel() }
}

// misplaced explains an unknown flag that stands before the command but
// is a flag of some commands: "leasehold --ttl 5s acquire x" is told to put
// --ttl after acquire, not that --ttl is unknown.
func misplaced(parser *kong.Kong, args []string, err error) error {
	var cmd string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			cmd = a
			break
		}
	}
	for _, a := range args {
		if a == cmd {
			break
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") || !strings.Contains(err.Error(), "--"+name) {
			continue
		}
		var of []string
		for _, n := range parser.Model.Children {
			for _, f := range n.Flags {
				if f.Name == name {
					of = append(of, n.Name)
				}
			}
		}
		if len(of) > 0 {
			return fmt.Errorf("--%s is a flag of %s: put it after the command, like `leasehold %s NAME --%s ...`",
				name, strings.Join(of, ", "), of[0], name)
		}
	}
	return err
}

// connFlagNames are the connection flags (connFlags) that may also stand
// before the command, as etcdctl and kubectl take theirs:
// "leasehold --server URL acquire job" is "leasehold acquire --server URL job".
var connFlagNames = []string{"--server", "--auth-token", "--redis"}

// hoistConnFlags moves the connection flags that stand before the command
// to just after it, where kong parses them. Anything else is left as it is,
// for kong to parse or refuse.
func hoistConnFlags(args []string) []string {
	var lead []string
	i := 0
	for i < len(args) {
		flag, _, withValue := strings.Cut(args[i], "=")
		if !slices.Contains(connFlagNames, flag) || (!withValue && i+1 == len(args)) {
			break
		}
		if withValue {
			lead = append(lead, args[i])
			i++
		} else {
			lead = append(lead, args[i], args[i+1])
			i += 2
		}
	}
	if len(lead) == 0 || i == len(args) || strings.HasPrefix(args[i], "-") {
		return args
	}
	return slices.Concat(args[i:i+1], lead, args[i+1:])
}
