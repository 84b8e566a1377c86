package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/leasehold/leasehold/lease"
)

type electCmd struct {
	connFlags
	Name   string `arg:"" help:"Election name: the lease the candidates compete for."`
	TTL    string `help:"Time to live of the leader's lease: the longest the name is leaderless after a leader dies without resigning. Renewed about every ttl/3." default:"15s"`
	Holder string `help:"This candidate's identity, the lease's holder while it leads (default: hostname:pid)."`
	commandFlags
}

func (c *electCmd) Help() string {
	return `Like etcdctl elect: campaigns for leadership of NAME, waiting while another
candidate leads (woken when it resigns, or when its lease expires), then runs
COMMAND while this process leads, with LEASE_NAME, LEASE_TOKEN and LEASE_FENCE
in its environment (in its own process group). It says on stderr when it
becomes the leader, with the fence: pass LEASE_FENCE with every write the
command makes as leader.

When COMMAND exits, leasehold resigns (releases the lease, so another
candidate leads at once) and exits with the command's exit code. If
leadership is lost (renewals failed until the lease expired, or it was taken),
sends SIGTERM to the command's process group, SIGKILL after --kill-after, and
exits 76. SIGINT, SIGTERM and SIGHUP are passed to the command; while still
campaigning they stop the campaign (exit 128+N), and nothing runs. A server or
Redis that does not answer at the start exits 69; once campaigning, outages
are retried.

Examples:
  # on every replica: one of them runs the scheduler at a time
  leasehold elect scheduler --ttl 10s -- ./scheduler
  leasehold elect backup --holder "$(hostname)" --redis 127.0.0.1:6379 -- ./backup.sh
  leasehold leader scheduler        # who leads now`
}

// errNoElectCommand is a usage error: elect needs a command after NAME.
var errNoElectCommand = errors.New("give the command to run as leader after --, as in: leasehold elect NAME -- COMMAND [ARGS...]")

func (c *electCmd) Run(e *env) error {
	ttl, killAfter, err := c.parse(errNoElectCommand, c.TTL)
	if err != nil {
		return err
	}
	identity := c.Holder
	if identity == "" {
		host, _ := os.Hostname()
		identity = fmt.Sprintf("%s:%d", host, os.Getpid()) // unique among candidates on one host too
	}
	lc, closeFn, err := c.connect()
	if err != nil {
		return exitFor(err, exitConflict)
	}
	defer closeFn()
	el, err := lease.NewElection(lc, lease.ElectionConfig{
		Name: c.Name, Identity: identity, TTL: ttl,
		Callbacks: lease.LeaderCallbacks{OnNewLeader: func(id string) {
			if id != identity {
				fmt.Fprintf(e.stderr, "leasehold: %q is led by %s: campaigning\n", c.Name, holderText(id))
			}
		}},
	})
	if err != nil {
		return exitFor(err, exitConflict)
	}
	// A campaign retries every failure to reach the backend, for ever: a
	// wrong address or token would wait in silence. One read first says so.
	if _, err := lc.Get(e.ctx, c.Name); err != nil && !errors.Is(err, lease.ErrNotFound) {
		return exitFor(err, exitConflict)
	}

	sigs, stopSignals := catchSignals()
	defer stopSignals()
	// The term's keeper lives in cctx: it is cancelled only by a signal
	// during the campaign, or on the way out.
	cctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var k *lease.Keeper
	sig := untilSignal(sigs, cancel, func() { k, err = el.Campaign(cctx) })
	if sig != nil {
		if k != nil { // elected just as the signal came
			resign(e, el, ttl)
		}
		settle(lc, e.stderr, min(ttl, 10*time.Second)) // a grant the cut-short campaign may have made
		return signalExit(sig, "campaigning for", c.Name)
	}
	if err != nil {
		settle(lc, e.stderr, min(ttl, 10*time.Second))
		return exitFor(err, exitConflict)
	}
	l := k.Lease()
	fmt.Fprintf(e.stderr, "leasehold: %s\n", grantLine("elected leader of", l))

	ch, err := startChild(e, c.Command, l)
	if err != nil {
		resign(e, el, ttl)
		return err
	}
	if lost := ch.supervise(e, sigs, k, killAfter); lost != nil {
		return &exitError{code: exitLost, err: fmt.Errorf("leadership of %q (fence %d) was lost while the command ran; exit 76", c.Name, l.Fence)}
	}
	resign(e, el, ttl)
	if code := ch.exitCode(); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// resign ends this candidate's term on the way out, so that another one
// leads at once; when that fails, the lease expires with its TTL.
func resign(e *env, el *lease.Election, ttl time.Duration) {
	rctx, cancel := withoutCancel(e.ctx, ttl)
	defer cancel()
	if err := el.Resign(rctx); err != nil && !errors.Is(err, lease.ErrNotLeader) {
		fmt.Fprintf(e.stderr, "leasehold: resigning: %v (the lease expires with its TTL)\n", err)
	}
}

type leaderCmd struct {
	connFlags
	outFlags
	Name string `arg:"" help:"Election name."`
}

func (c *leaderCmd) Help() string {
	return `Prints the current leader of the election NAME (the holder of the lease
that leasehold elect and lease.Election campaign for): holder, fence,
remaining TTL and expiry, never its token. Exits 1 when nobody leads.

Examples:
  leasehold leader scheduler
  leasehold leader scheduler --json
  leasehold leader scheduler >/dev/null 2>&1 || echo "nobody leads"`
}

func (c *leaderCmd) Run(e *env) error {
	// What Election.Leader reads, without an Election: that needs a
	// candidate's identity, and this command is none.
	l, err := c.getLease(e.ctx, c.Name)
	if errors.Is(err, lease.ErrNotFound) {
		return &exitError{code: exitFailure, err: fmt.Errorf("%q has no leader: nobody holds its lease", c.Name)}
	}
	if err != nil {
		return exitFor(err, exitConflict)
	}
	j := toJSON(l)
	if c.JSON {
		return writeJSON(e.stdout, struct {
			Name      string `json:"name"`
			Holder    string `json:"holder"`
			Fence     int64  `json:"fence"`
			TTLMillis int64  `json:"ttl_ms"`
			ExpiresAt string `json:"expires_at"`
		}{j.Name, j.Holder, j.Fence, j.TTLMillis, j.ExpiresAt})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name\t%s\nholder\t%s\nfence\t%d\nttl\t%s\nexpires_at\t%s\n", j.Name, j.Holder, j.Fence, l.TTL, j.ExpiresAt)
	return tw.Flush()
}
