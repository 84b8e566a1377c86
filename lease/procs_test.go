package lease_test

// Waiting across real OS processes (issue 16): the test binary runs itself
// again as a worker (TestMain, LEASE_TEST_WORKER), each worker a process
// with its own go-redis client and lease.Client, like the hosts of a fleet.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// A worker's job comes in these variables; it reports on stdout, a line
// per event (see workerMain).
const (
	envWorker = "LEASE_TEST_WORKER" // "1": run as a worker, not the tests
	envRedis  = "LEASE_TEST_REDIS"  // host:port of the redis-server
	envName   = "LEASE_TEST_NAME"   // the lease name to wait for
	envIndex  = "LEASE_TEST_INDEX"  // the worker's index (its arrival)
	envToken  = "LEASE_TEST_TOKEN"  // its token, known to the test
	// envSDKToken "true": the worker's Acquire makes its own token (and
	// its Verify uses the one granted).
	envSDKToken = "LEASE_TEST_SDK_TOKEN"
	envTTL      = "LEASE_TEST_TTL"  // the TTL it asks for
	envWait     = "LEASE_TEST_WAIT" // AcquireOptions.Wait
	envHold     = "LEASE_TEST_HOLD" // how long it holds once granted
	envLife     = "LEASE_TEST_LIFE" // it exits by itself after this, whatever happens
)

// workerMain is one worker process: it waits for the lease (Acquire with
// a Wait), and when granted checks with Redis that its token holds it,
// holds it, and releases it. Its context is cancelled when stdin reads
// "cancel" or ends (the test went away), or at the moment a line
// "cancel-at UNIXNANO" names. It prints, each on a line:
//
//	granted IDX FENCE UNIXNANO REDIS_MS   (REDIS_MS: the grant, by Redis's clock)
//	verified IDX ok|ERROR
//	releasing IDX UNIXNANO                (just before the release is sent)
//	released IDX UNIXNANO ok|ERROR
//	failed IDX held|canceled|other UNIXNANO [ERROR]
//	exit IDX
func workerMain() int {
	life, err := time.ParseDuration(os.Getenv(envLife))
	if err != nil {
		life = 20 * time.Second
	}
	// However the job goes, the worker does not outlive its bound.
	time.AfterFunc(life, func() {
		fmt.Println("timeout")
		os.Exit(3)
	})
	idx := os.Getenv(envIndex)
	name, token := os.Getenv(envName), os.Getenv(envToken)
	dur := func(env string) time.Duration {
		d, err := time.ParseDuration(os.Getenv(env))
		if err != nil {
			fmt.Fprintf(os.Stderr, "worker: %s: %v\n", env, err)
			os.Exit(2)
		}
		return d
	}
	ttl, wait, hold := dur(envTTL), dur(envWait), dur(envHold)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "cancel" {
				break
			}
			if at, ok := strings.CutPrefix(sc.Text(), "cancel-at "); ok {
				ns, err := strconv.ParseInt(at, 10, 64)
				if err != nil {
					fmt.Fprintf(os.Stderr, "worker: %q: %v\n", sc.Text(), err)
					break
				}
				time.AfterFunc(time.Until(time.Unix(0, ns)), cancel)
			}
		}
		cancel()
	}()

	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv(envRedis)})
	defer rdb.Close()
	c := lease.New(rdb, nil)
	defer c.Close()
	defer fmt.Println("exit", idx)
	defer func() {
		// A lease handed over as the wait gave up is released in the
		// background: let it finish before the process ends.
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := c.Settle(sctx); err != nil {
			fmt.Println("settle", idx, err)
		}
	}()

	asked := token
	if os.Getenv(envSDKToken) == "true" {
		asked = ""
	}
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: ttl, Wait: wait, Token: asked, Holder: "worker-" + idx})
	now := time.Now().UnixNano()
	if err != nil {
		kind := "other"
		switch {
		case errors.Is(err, lease.ErrHeld):
			kind = "held"
		case errors.Is(err, context.Canceled):
			kind = "canceled"
		}
		fmt.Println("failed", idx, kind, now, strings.ReplaceAll(err.Error(), "\n", " "))
		return 0
	}
	fmt.Println("granted", idx, l.Fence, now, l.ExpiresAt.Add(-l.TTL).UnixMilli())
	bg := context.Background()
	token = l.Token
	if v, err := c.Verify(bg, name, lease.Proof{Token: token}); err != nil {
		fmt.Println("verified", idx, strings.ReplaceAll(err.Error(), "\n", " "))
	} else if v.Fence != l.Fence {
		fmt.Println("verified", idx, "fence", v.Fence, "in Redis, granted", l.Fence)
	} else {
		fmt.Println("verified", idx, "ok")
	}
	time.Sleep(hold)
	fmt.Println("releasing", idx, time.Now().UnixNano())
	err = c.Release(bg, name, token)
	res := "ok"
	if err != nil {
		res = strings.ReplaceAll(err.Error(), "\n", " ")
	}
	fmt.Println("released", idx, time.Now().UnixNano(), res)
	return 0
}

// procEvent is one line a worker printed.
type procEvent struct {
	kind   string
	fence  int64
	at     time.Time // when the worker saw it, by its clock (the same host's)
	fields []string
}

// procWorker is a worker process, SIGKILLed and waited for when the test ends.
type procWorker struct {
	idx   int
	token string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when the process has exited and its output is read

	mu     sync.Mutex
	events []procEvent // guarded by mu
	out    strings.Builder
}

// workerJob is what a worker is asked to do.
type workerJob struct {
	ttl, wait, hold time.Duration
	// sdkToken: the worker lets the SDK make its token (then only the
	// SDK can release a lease handed to it as it gives up) rather than
	// bring the one the test knows.
	sdkToken bool
}

// startWorker starts worker idx on the Redis at addr, waiting for name.
func startWorker(t *testing.T, addr, name string, idx int, job workerJob) *procWorker {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w := &procWorker{idx: idx, token: fmt.Sprintf("w%02d-%s", idx, lease.NewToken()), done: make(chan struct{})}
	cmd := exec.Command(self)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEASE_") && !strings.HasPrefix(kv, "LEASEHOLD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	life := job.wait + job.hold + 5*time.Second
	// Under -race a process sleeps 1s at exit (atexit_sleep_ms): not here.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, envWorker+"=1", envRedis+"="+addr, envName+"="+name,
		envIndex+"="+strconv.Itoa(idx), envToken+"="+w.token, envSDKToken+"="+strconv.FormatBool(job.sdkToken),
		envTTL+"="+job.ttl.String(), envWait+"="+job.wait.String(), envHold+"="+job.hold.String(),
		envLife+"="+life.String(), "GORACE="+gorace)
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = (*workerStderr)(w)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.cmd = cmd
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.record(sc.Text())
		}
		cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		w.stdin.Close()
		w.kill()
	})
	return w
}

type workerStderr procWorker

func (e *workerStderr) Write(b []byte) (int, error) {
	w := (*procWorker)(e)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out.WriteString("stderr: ")
	w.out.Write(b)
	return len(b), nil
}

func (w *procWorker) record(line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out.WriteString(line + "\n")
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	e := procEvent{kind: f[0], fields: f}
	switch f[0] {
	case "granted":
		if len(f) >= 4 {
			e.fence, _ = strconv.ParseInt(f[2], 10, 64)
			ns, _ := strconv.ParseInt(f[3], 10, 64)
			e.at = time.Unix(0, ns)
		}
	case "releasing", "released":
		if len(f) >= 3 {
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			e.at = time.Unix(0, ns)
		}
	case "failed":
		if len(f) >= 4 {
			ns, _ := strconv.ParseInt(f[3], 10, 64)
			e.at = time.Unix(0, ns)
		}
	}
	w.events = append(w.events, e)
}

// kill SIGKILLs the worker by its pid and waits for it to exit.
func (w *procWorker) kill() {
	select {
	case <-w.done:
		return
	default:
	}
	syscall.Kill(w.cmd.Process.Pid, syscall.SIGKILL)
	<-w.done
}

// cancel asks the worker to cancel its Acquire's context.
func (w *procWorker) cancel(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(w.stdin, "cancel\n"); err != nil {
		t.Fatalf("worker %d: cancel: %v", w.idx, err)
	}
}

// stop SIGSTOPs the worker and waits until it is stopped (/proc says T).
func (w *procWorker) stop(t *testing.T) {
	t.Helper()
	pid := w.cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) state ...: comm may hold spaces, the state follows its ")".
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == "T" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d not stopped 5s after SIGSTOP", w.idx)
		}
		time.Sleep(time.Millisecond)
	}
}

// cancelAt asks the worker to cancel its Acquire's context at at.
func (w *procWorker) cancelAt(t *testing.T, at time.Time) {
	t.Helper()
	if _, err := fmt.Fprintf(w.stdin, "cancel-at %d\n", at.UnixNano()); err != nil {
		t.Fatalf("worker %d: cancel-at: %v", w.idx, err)
	}
}

// event returns the worker's first event of kind, if it printed one.
func (w *procWorker) event(kind string) (procEvent, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.events {
		if e.kind == kind {
			return e, true
		}
	}
	return procEvent{}, false
}

// output is what the worker printed, for failure messages.
func (w *procWorker) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// await waits up to d for the worker's event of kind.
func (w *procWorker) await(t *testing.T, kind string, d time.Duration) procEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if e, ok := w.event(kind); ok {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d printed no %q within %s; its output:\n%s", w.idx, kind, d, w.output())
		}
		time.Sleep(time.Millisecond)
	}
}

// exited waits up to d for the worker to end.
func (w *procWorker) exited(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(d):
		t.Fatalf("worker %d still running after %s; its output:\n%s", w.idx, d, w.output())
	}
}

// queueKey is the name's queue of waiters (lua/common.lua).
func queueKey(name string) string { return "leasehold:{" + name + "}:q" }

// waitQueued waits until the name's queue holds n entries, as LLEN and
// Get's Waiting count both say.
func waitQueued(t *testing.T, rdb *redis.Client, c *lease.Client, name string, n int, ws ...*procWorker) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		llen, err := rdb.LLen(ctx, queueKey(name)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if llen == int64(n) {
			l, err := c.Get(ctx, name)
			if err != nil {
				t.Fatalf("Get while %d wait: %v", n, err)
			}
			if l.Waiting != n {
				t.Fatalf("Get says %d waiting, LLEN %d: want both %d", l.Waiting, llen, n)
			}
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, w := range ws {
				fmt.Fprintf(&b, "worker %d:\n%s", w.idx, w.output())
			}
			t.Fatalf("LLEN %s: got %d after 10s, want %d; workers:\n%s", queueKey(name), llen, n, b.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// queuedTokens are the tokens of the queue's entries, head first.
func queuedTokens(t *testing.T, rdb *redis.Client, name string) []string {
	t.Helper()
	entries, err := rdb.LRange(ctx, queueKey(name), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, e := range entries {
		if f := strings.SplitN(e, "\n", 6); len(f) == 6 {
			tokens = append(tokens, f[3])
		}
	}
	return tokens
}

// killGone SIGKILLs the queued worker w and waits until Redis has read the
// close of its connections: its Client's hand-over channel (named by its
// queue entry) has no subscriber left. It returns how long that took after
// the worker had exited; more than 5s fails (the contract's bound on how
// long a dead waiter may delay the others).
func killGone(t *testing.T, rdb *redis.Client, name string, w *procWorker) time.Duration {
	t.Helper()
	entries, err := rdb.LRange(ctx, queueKey(name), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var channel string
	for _, e := range entries {
		if f := strings.SplitN(e, "\n", 6); len(f) == 6 && f[3] == w.token {
			channel = "leasehold:{" + name + "}:w:" + f[1]
		}
	}
	if channel == "" {
		t.Fatalf("worker %d is not queued: %q", w.idx, entries)
	}
	w.kill()
	exited := time.Now()
	for {
		n, err := rdb.PubSubNumSub(ctx, channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n[channel] == 0 {
			return time.Since(exited)
		}
		if time.Since(exited) > 5*time.Second {
			t.Fatalf("worker %d exited 5s ago and Redis still counts %d subscriber(s) on %s", w.idx, n[channel], channel)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// cmdCalls is how many times Redis ran each command of cmds (INFO
// commandstats; commands that scripts call count too).
func cmdCalls(t *testing.T, rdb *redis.Client, cmds ...string) map[string]int64 {
	t.Helper()
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		for _, c := range cmds {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+c+":calls="); ok {
				n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
				got[c] = n
			}
		}
	}
	return got
}

// procGrant is one grant that a worker reported.
type procGrant struct {
	idx                 int
	fence               int64
	granted, releasing  time.Time
	redisMs             int64
	verified, releasedR string
}

// collectGrants waits for each of ws to be granted, release and exit, and
// returns their grants in the order they were granted.
func collectGrants(t *testing.T, ws []*procWorker, within time.Duration) []procGrant {
	t.Helper()
	var gs []procGrant
	for _, w := range ws {
		g := w.await(t, "granted", within)
		v := w.await(t, "verified", within)
		r := w.await(t, "releasing", within)
		d := w.await(t, "released", within)
		w.exited(t, within)
		ms, _ := strconv.ParseInt(g.fields[4], 10, 64)
		gs = append(gs, procGrant{idx: w.idx, fence: g.fence, granted: g.at, releasing: r.at, redisMs: ms,
			verified: strings.Join(v.fields[2:], " "), releasedR: strings.Join(d.fields[3:], " ")})
	}
	slices.SortFunc(gs, func(a, b procGrant) int { return a.granted.Compare(b.granted) })
	return gs
}

// checkHistory judges a run of grants handed on from a holder that began
// releasing at released with fence holderFence: they came in the order
// want (indexes of arrival), each with a fence above the one before, each
// after the one before had begun to release (no two overlap), each
// confirmed by Redis while held and released without error.
func checkHistory(t *testing.T, gs []procGrant, want []int, holderFence int64, released time.Time) {
	t.Helper()
	var order []int
	for _, g := range gs {
		order = append(order, g.idx)
	}
	if !slices.Equal(order, want) {
		t.Errorf("grants came in the order %v, want the order of arrival %v", order, want)
	}
	prevFence, prevEnd, prevMs := holderFence, released, int64(0)
	for i, g := range gs {
		if g.fence <= prevFence {
			t.Errorf("grant %d (worker %d): fence %d, want more than the previous %d", i, g.idx, g.fence, prevFence)
		}
		if !g.granted.After(prevEnd) {
			t.Errorf("grant %d (worker %d) at %s, want after the previous holder began to release at %s: they overlap",
				i, g.idx, g.granted.Format(time.StampMicro), prevEnd.Format(time.StampMicro))
		}
		if g.redisMs < prevMs {
			t.Errorf("grant %d (worker %d) at Redis ms %d, before the previous grant's %d", i, g.idx, g.redisMs, prevMs)
		}
		if g.verified != "ok" {
			t.Errorf("worker %d: Verify of its own token while it held: %s", g.idx, g.verified)
		}
		if g.releasedR != "ok" {
			t.Errorf("worker %d: Release: %s", g.idx, g.releasedR)
		}
		prevFence, prevEnd, prevMs = g.fence, g.releasing, g.redisMs
	}
}

// checkFree checks that name is held by nobody and nobody is queued.
func checkFree(t *testing.T, rdb *redis.Client, c *lease.Client, name string) {
	t.Helper()
	if l, err := c.Get(ctx, name); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after the last release: got %+v, %v, want not found", l, err)
	}
	if n, err := rdb.LLen(ctx, queueKey(name)).Result(); err != nil || n != 0 {
		t.Errorf("LLEN %s after the last release: got %d, %v, want 0", queueKey(name), n, err)
	}
	if w, err := rdb.HGet(ctx, "leasehold:{"+name+"}", "w").Result(); err != redis.Nil {
		t.Errorf("the queue mark w after the last release: got %q, %v, want none", w, err)
	}
}

// gapFigures says how long the hand-overs took: from each holder's
// release to the next grant.
func gapFigures(gs []procGrant, released time.Time) []time.Duration {
	var out []time.Duration
	prev := released
	for _, g := range gs {
		out = append(out, g.granted.Sub(prev))
		prev = g.releasing
	}
	return out
}

// TestProcsFIFO: ten worker processes join the queue one after another
// behind a holder; its release hands the lease down the queue, each worker
// handing it on by its own release. They are granted in arrival order,
// each fence above the one before, no grant overlaps the one before, and
// nobody makes an attempt after the release: from the holder's release to
// the last, Redis runs one script per release and one per Verify, nothing
// else (no herd, no polling).
func TestProcsFIFO(t *testing.T) {
	srv, rdb, c, name, holder := heldByTest(t, 30*time.Second)
	const n = 10
	var ws []*procWorker
	var want []int
	joined := time.Now()
	for i := range n {
		ws = append(ws, startWorker(t, srv.Addr(), name, i, workerJob{ttl: 10 * time.Second, wait: 15 * time.Second, hold: 20 * time.Millisecond}))
		waitQueued(t, rdb, c, name, i+1, ws...)
		want = append(want, i)
	}
	t.Logf("%d worker processes queued in %s", n, time.Since(joined).Round(time.Millisecond))
	if got, want := queuedTokens(t, rdb, name), tokensOf(ws); !slices.Equal(got, want) {
		t.Fatalf("queue: got tokens %q, want %q (arrival order)", got, want)
	}
	// Loaded, so that the holder's release is one EVALSHA (not NOSCRIPT, EVAL).
	if err := c.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	before := cmdCalls(t, rdb, "evalsha", "eval")
	released := time.Now()
	if err := c.Release(ctx, name, holder.Token); err != nil {
		t.Fatal(err)
	}
	gs := collectGrants(t, ws, 10*time.Second)
	checkHistory(t, gs, want, holder.Fence, released)
	after := cmdCalls(t, rdb, "evalsha", "eval")
	scripts := after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"]
	// 1 + n releases and n Verify calls.
	if scripts != 1+2*n {
		t.Errorf("Redis ran %d scripts from the holder's release to the last, want %d: the %d releases and %d Verify calls, no attempt",
			scripts, 1+2*n, n+1, n)
	}
	t.Logf("hand-overs (release to next grant): %v", gapFigures(gs, released))
	checkFree(t, rdb, c, name)
}

func tokensOf(ws []*procWorker) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.token)
	}
	return out
}

// TestProcsKilledWaiterIsSkipped: a worker process SIGKILLed while queued
// (in the middle of the queue, or at its head) is skipped by the hand-over
// of the release that follows, once Redis has read the close of its
// connections: the others are granted in arrival order without waiting
// for any TTL (the killed one's would be 10s), and no grant is left with
// the killed worker's token. (A release racing the close itself is
// TestProcsKilledHeadRightBeforeTheRelease.)
func TestProcsKilledWaiterIsSkipped(t *testing.T) {
	for _, tt := range []struct {
		name   string
		killed []int
	}{
		{"middle", []int{2}},
		{"head", []int{0}},
		{"head_and_next_and_last", []int{0, 1, 5}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client(t)
			c := lease.New(rdb, nil)
			name := uniq(t)
			holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			const n = 6
			var ws, live []*procWorker
			var want []int
			var gone []time.Duration
			for i := range n {
				ws = append(ws, startWorker(t, srv.Addr(), name, i, workerJob{ttl: 10 * time.Second, wait: 12 * time.Second, hold: 20 * time.Millisecond}))
				waitQueued(t, rdb, c, name, i+1, ws...)
			}
			for _, w := range ws {
				if slices.Contains(tt.killed, w.idx) {
					gone = append(gone, killGone(t, rdb, name, w))
					continue
				}
				live = append(live, w)
				want = append(want, w.idx)
			}
			// Released the moment Redis has dropped the killed ones.
			released := time.Now()
			if err := c.Release(ctx, name, holder.Token); err != nil {
				t.Fatal(err)
			}
			gs := collectGrants(t, live, 10*time.Second)
			checkHistory(t, gs, want, holder.Fence, released)
			gaps := gapFigures(gs, released)
			for i, g := range gs {
				if gaps[i] > time.Second {
					t.Errorf("worker %d was granted %s after the one before it released, want < 1s (contract: <= 5s)", g.idx, gaps[i])
				}
			}
			t.Logf("killed %v, dropped by Redis %v after their exit; hand-overs (release to next grant): %v", tt.killed, gone, gaps)
			for _, w := range ws {
				if !slices.Contains(tt.killed, w.idx) {
					continue
				}
				if e, ok := w.event("granted"); ok {
					t.Errorf("killed worker %d reported a grant: %v", w.idx, e.fields)
				}
				if l, err := c.Verify(ctx, name, lease.Proof{Token: w.token}); err == nil {
					t.Errorf("the killed worker %d's token holds the lease: %+v", w.idx, l)
				}
			}
			checkFree(t, rdb, c, name)
		})
	}
}

// TestProcsKilledHeadRightBeforeTheRelease: 20 rounds of a queue of two
// worker processes whose head is SIGKILLed and, the moment it has exited,
// the holder releases, racing Redis's reading of the closed connections.
// When Redis has read them, the lease goes to the live worker at once.
// When the release wins the race, the publish still reaches the dead
// head's subscription and the head is handed the lease, which it holds for
// its TTL (2s here) as a holder that crashed just after its grant would:
// the live worker, told it is next, takes the lease within a second of that
// TTL (docs/waiting.md states this window). Never does the dead head's
// token hold the lease afterwards, and never do two grants overlap.
func TestProcsKilledHeadRightBeforeTheRelease(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := lease.New(rdb, nil)
	base := uniq(t)
	const headTTL = 2 * time.Second
	var skipped, handedToDead int
	var worst time.Duration
	for i := range 20 {
		name := fmt.Sprintf("%s.%d", base, i)
		holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		head := startWorker(t, srv.Addr(), name, 0, workerJob{ttl: headTTL, wait: 12 * time.Second, hold: 0})
		waitQueued(t, rdb, c, name, 1, head)
		next := startWorker(t, srv.Addr(), name, 1, workerJob{ttl: 10 * time.Second, wait: 12 * time.Second, hold: 0})
		waitQueued(t, rdb, c, name, 2, head, next)
		head.kill()
		released := time.Now()
		if err := c.Release(ctx, name, holder.Token); err != nil {
			t.Fatal(err)
		}
		// The hand-over happened in the release: the hash says to whom.
		to, err := rdb.HGet(ctx, "leasehold:{"+name+"}", "t").Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		gs := collectGrants(t, []*procWorker{next}, 10*time.Second)
		checkHistory(t, gs, []int{1}, holder.Fence, released)
		d := gs[0].granted.Sub(released)
		worst = max(worst, d)
		if to == head.token {
			handedToDead++
			if d > headTTL+time.Second {
				t.Errorf("round %d: the dead head was handed the lease (TTL %s); the live worker was granted %s after the release, want within that TTL and 1s", i, headTTL, d)
			}
			if d < headTTL-50*time.Millisecond {
				t.Errorf("round %d: the live worker was granted %s after the release, while the dead head's %s grant still ran: two grants overlap", i, d, headTTL)
			}
		} else {
			skipped++
			if d > time.Second {
				t.Errorf("round %d: the dead head was skipped, yet the live worker was granted %s after the release, want < 1s", i, d)
			}
		}
		if l, err := c.Verify(ctx, name, lease.Proof{Token: head.token}); err == nil {
			t.Errorf("round %d: the killed head's token holds the lease: %+v", i, l)
		}
		checkFree(t, rdb, c, name)
	}
	t.Logf("20 rounds: the dead head was skipped in %d, handed the lease in %d (the release won the race with Redis's read of its close); the slowest grant after the release took %s",
		skipped, handedToDead, worst)
}

// TestProcsGivingUpLeavesTheQueue: of four queued worker processes, one is
// cancelled (its context, from the outside) and one's Wait runs out. Each
// has left the queue by the time its Acquire returns (LLEN, Get's Waiting
// and the entries' tokens say so), and the release serves the two that
// still wait, in order; the two that left are never granted.
func TestProcsGivingUpLeavesTheQueue(t *testing.T) {
	srv, rdb, c, name, holder := heldByTest(t, 30*time.Second)
	long := workerJob{ttl: 10 * time.Second, wait: 12 * time.Second, hold: 20 * time.Millisecond}
	short := long
	short.wait = 1500 * time.Millisecond
	var ws []*procWorker
	for i, job := range []workerJob{long, long, short, long} {
		ws = append(ws, startWorker(t, srv.Addr(), name, i, job))
		waitQueued(t, rdb, c, name, i+1, ws...)
	}

	cancelled := time.Now()
	ws[1].cancel(t)
	f := ws[1].await(t, "failed", 5*time.Second)
	if f.fields[2] != "canceled" {
		t.Errorf("cancelled worker: got %v, want failed canceled", f.fields)
	}
	// Its Acquire returned after its leave: the queue has shrunk already.
	if got, want := queuedTokens(t, rdb, name), tokensOf([]*procWorker{ws[0], ws[2], ws[3]}); !slices.Equal(got, want) {
		t.Errorf("queue after the cancel: got tokens %q, want %q", got, want)
	}
	waitQueued(t, rdb, c, name, 3)
	t.Logf("cancel to the worker's return (queue left): %s", f.at.Sub(cancelled).Round(time.Microsecond))
	if d := f.at.Sub(cancelled); d > time.Second {
		t.Errorf("the cancelled worker returned %s after the cancel, want < 1s", d)
	}

	f = ws[2].await(t, "failed", 5*time.Second)
	if f.fields[2] != "held" {
		t.Errorf("worker whose wait ran out: got %v, want failed held", f.fields)
	}
	if got, want := queuedTokens(t, rdb, name), tokensOf([]*procWorker{ws[0], ws[3]}); !slices.Equal(got, want) {
		t.Errorf("queue after a wait ran out: got tokens %q, want %q", got, want)
	}
	waitQueued(t, rdb, c, name, 2)

	released := time.Now()
	if err := c.Release(ctx, name, holder.Token); err != nil {
		t.Fatal(err)
	}
	gs := collectGrants(t, []*procWorker{ws[0], ws[3]}, 10*time.Second)
	checkHistory(t, gs, []int{0, 3}, holder.Fence, released)
	for _, w := range ws[1:3] {
		w.exited(t, 5*time.Second)
		if e, ok := w.event("granted"); ok {
			t.Errorf("worker %d left the queue but was granted: %v", w.idx, e.fields)
		}
	}
	checkFree(t, rdb, c, name)
}

// raceOutcome is how one round of a waiter giving up as the release comes
// went: whether the quitter got the lease, and whether the release handed
// it to the quitter just as it left (then its leave handed it on: two
// hand-over PUBLISHes for one release and no grant to it).
type raceOutcome struct{ quitterGranted, handedToQuitter int }

// TestProcsGivingUpAsTheReleaseComes: a worker process gives up (its
// context ends at a set moment) while the holder releases at that moment,
// give or take up to 3ms, round after round; every other round it is
// handed the lease while SIGSTOPped and told to give up before SIGCONT. Whether the release found it
// queued or gone, the next waiter (another process) is granted soon after,
// never left behind a lease that nobody holds (the quitter's TTL would be
// 10s, the next waiter's Wait 4s).
func TestProcsGivingUpAsTheReleaseComes(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := lease.New(rdb, nil)
	base := uniq(t)
	var out raceOutcome
	const rounds = 20
	for i := range rounds {
		name := fmt.Sprintf("%s.%d", base, i)
		holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		quitter := startWorker(t, srv.Addr(), name, 0, workerJob{ttl: 10 * time.Second, wait: 12 * time.Second, hold: 20 * time.Millisecond, sdkToken: true})
		waitQueued(t, rdb, c, name, 1, quitter)
		next := startWorker(t, srv.Addr(), name, 1, workerJob{ttl: 10 * time.Second, wait: 4 * time.Second, hold: 20 * time.Millisecond})
		waitQueued(t, rdb, c, name, 2, quitter, next)
		before := cmdCalls(t, rdb, "publish")
		var released time.Time
		if i%2 == 0 {
			// The quitter's context ends when the release is sent, give
			// or take 3ms (the line takes far less than 50ms to reach it).
			at := time.Now().Add(50 * time.Millisecond)
			quitter.cancelAt(t, at.Add(time.Duration(rand.IntN(6001)-3000)*time.Microsecond))
			time.Sleep(time.Until(at))
			released = time.Now()
			if err := c.Release(ctx, name, holder.Token); err != nil {
				t.Fatal(err)
			}
		} else {
			// The quitter is stopped (its subscription stays), handed the
			// lease, told to cancel, and continued: it sees the hand-over
			// and its cancel at once, in either order.
			quitter.stop(t)
			released = time.Now()
			if err := c.Release(ctx, name, holder.Token); err != nil {
				t.Fatal(err)
			}
			quitter.cancel(t)
			syscall.Kill(quitter.cmd.Process.Pid, syscall.SIGCONT)
		}
		g := next.await(t, "granted", 6*time.Second)
		next.await(t, "released", 2*time.Second)
		quitter.exited(t, 5*time.Second)
		next.exited(t, 5*time.Second)
		q, granted := quitter.event("granted")
		if granted {
			out.quitterGranted++
			if !g.at.After(q.at) || g.fence <= q.fence {
				t.Errorf("round %d: the quitter was granted (fence %d) and so was the next (fence %d): want the next after it", i, q.fence, g.fence)
			}
		} else if f, _ := quitter.event("failed"); len(f.fields) < 3 || f.fields[2] != "canceled" {
			t.Errorf("round %d: quitter: got %q, want granted or failed canceled", i, quitter.output())
		} else if pub := cmdCalls(t, rdb, "publish")["publish"] - before["publish"]; pub == 2 {
			out.handedToQuitter++
		}
		if d := g.at.Sub(released); d > time.Second && !granted {
			t.Errorf("round %d: the next waiter was granted %s after the release, want < 1s", i, d)
		}
		if l, err := c.Get(ctx, name); err == nil && l.Holder == "worker-0" {
			t.Errorf("round %d: the quitter holds the lease: %+v", i, l)
		}
		checkFree(t, rdb, c, name)
	}
	t.Logf("%d rounds: the quitter won the lease in %d, was handed it as it left in %d", rounds, out.quitterGranted, out.handedToQuitter)
}

// TestWaitGivingUpAsTheReleaseComesAcrossClients is the race of
// TestProcsGivingUpAsTheReleaseComes, 50 times in this process with three
// Clients (three channels, as three processes have): the quitter's context
// is cancelled as the holder releases. The next waiter is always granted,
// and nothing is left held or queued.
func TestWaitGivingUpAsTheReleaseComesAcrossClients(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	newC := func() *lease.Client {
		r := srv.Client(t)
		c := lease.New(r, nil)
		t.Cleanup(func() { c.Close() })
		return c
	}
	hc, qc, nc := newC(), newC(), newC()
	base := uniq(t)
	var out raceOutcome
	const rounds = 50
	for i := range rounds {
		name := fmt.Sprintf("%s.%d", base, i)
		holder, err := hc.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		qctx, cancel := context.WithCancel(ctx)
		// The SDK makes the quitter's token: a lease handed to it as it
		// gives up is the SDK's to release (a caller's own token is the
		// caller's: TestWaitGivingUpWithTheCallersTokenLeavesItsLease).
		quitter := acquireAsync(qc, qctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: time.Minute, Holder: "quitter"})
		waitQueued(t, rdb, hc, name, 1)
		next := acquireAsync(nc, ctx, name, &lease.AcquireOptions{TTL: time.Minute, Wait: 3 * time.Second})
		waitQueued(t, rdb, hc, name, 2)
		before := cmdCalls(t, rdb, "publish")
		pause := time.Duration(rand.IntN(400)) * time.Microsecond
		go func() {
			time.Sleep(pause)
			cancel()
		}()
		if err := hc.Release(ctx, name, holder.Token); err != nil {
			t.Fatal(err)
		}
		q := <-quitter
		if q.err == nil {
			out.quitterGranted++
			if err := qc.Release(ctx, name, q.l.Token); err != nil {
				t.Fatalf("round %d: the quitter's release: %v", i, err)
			}
		} else if !errors.Is(q.err, context.Canceled) {
			t.Fatalf("round %d: quitter: got %v, want a grant or context.Canceled", i, q.err)
		} else if cmdCalls(t, rdb, "publish")["publish"]-before["publish"] == 2 {
			out.handedToQuitter++
		}
		r := <-next
		if r.err != nil {
			t.Fatalf("round %d: the next waiter got %v, want a grant (quitter: %v)", i, r.err, q.err)
		}
		if err := nc.Release(ctx, name, r.l.Token); err != nil {
			t.Fatal(err)
		}
		if l, err := hc.Get(ctx, name); err == nil && l.Holder == "quitter" {
			t.Errorf("round %d: the quitter holds the lease: %+v", i, l)
		}
		checkFree(t, rdb, hc, name)
	}
	t.Logf("%d rounds: the quitter won the lease in %d, was handed it as it left in %d", rounds, out.quitterGranted, out.handedToQuitter)
}

// TestProcsExpiryOfAHandedOverLeaseReachesTheNext: the holder (TTL 20s)
// releases to a worker process that asked for a 1s TTL, which is SIGKILLed
// as soon as it is granted (a holder that crashed). Its lease runs out 1s
// later, and the next worker process in the queue must take it then, as it
// would take any holder's lease at its expiry, not when the lease it last
// saw (the first holder's, 20s) would have run out.
func TestProcsExpiryOfAHandedOverLeaseReachesTheNext(t *testing.T) {
	srv, rdb, c, name, holder := heldByTest(t, 20*time.Second)
	crashing := startWorker(t, srv.Addr(), name, 0, workerJob{ttl: time.Second, wait: 10 * time.Second, hold: 30 * time.Second})
	waitQueued(t, rdb, c, name, 1, crashing)
	next := startWorker(t, srv.Addr(), name, 1, workerJob{ttl: 10 * time.Second, wait: 6 * time.Second, hold: 20 * time.Millisecond})
	waitQueued(t, rdb, c, name, 2, crashing, next)
	if err := c.Release(ctx, name, holder.Token); err != nil {
		t.Fatal(err)
	}
	g := crashing.await(t, "granted", 5*time.Second)
	crashing.kill()
	expiry := g.at.Add(time.Second)
	next.await(t, "exit", 10*time.Second)
	e, _ := next.event("failed")
	if ng, ok := next.event("granted"); ok {
		e = ng
	}
	if e.kind != "granted" {
		t.Fatalf("the next worker: got %v, want granted at the crashed holder's expiry (%s); the lease was free from then on",
			e.fields, expiry.Format(time.StampMilli))
	}
	if d := e.at.Sub(expiry); d > time.Second {
		t.Errorf("the next worker was granted %s after the crashed holder's lease ran out, want < 1s", d)
	}
}

// TestProcsStoppedHeadHoldsAHandedLeaseForItsTTL: a head that is stopped
// (SIGSTOP: its connections stay open, as those of a host that vanished
// without closing them do, until TCP gives up) still counts as listening,
// so the release hands it the lease, which it holds for its TTL (2s here),
// as a holder that stopped would. The next waiter was told it is the head
// behind that grant, and takes the lease when it ends: within its TTL and
// a second, not the old holder's 20s. docs/waiting.md states this bound.
func TestProcsStoppedHeadHoldsAHandedLeaseForItsTTL(t *testing.T) {
	srv, rdb, c, name, holder := heldByTest(t, 20*time.Second)
	frozen := startWorker(t, srv.Addr(), name, 0, workerJob{ttl: 2 * time.Second, wait: 10 * time.Second, hold: 20 * time.Millisecond})
	waitQueued(t, rdb, c, name, 1, frozen)
	next := startWorker(t, srv.Addr(), name, 1, workerJob{ttl: 10 * time.Second, wait: 8 * time.Second, hold: 20 * time.Millisecond})
	waitQueued(t, rdb, c, name, 2, frozen, next)
	frozen.stop(t)
	released := time.Now()
	if err := c.Release(ctx, name, holder.Token); err != nil {
		t.Fatal(err)
	}
	next.await(t, "exit", 12*time.Second)
	g, ok := next.event("granted")
	if !ok {
		f, _ := next.event("failed")
		t.Fatalf("the next worker was not granted within its 8s wait (%v), want it at the end of the frozen head's 2s grant", f.fields)
	}
	if d := g.at.Sub(released); d < 2*time.Second-50*time.Millisecond || d > 3*time.Second {
		t.Errorf("the next worker was granted %s after the release, want the frozen head's 2s TTL and at most a second more", d)
	}
}

// heldByTest starts a redis-server and a Client on it, and takes a lease
// on a name of the test's for ttl: the start of most tests here.
func heldByTest(t *testing.T, ttl time.Duration) (*redistest.Server, *redis.Client, *lease.Client, string, *lease.Lease) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c := lease.New(rdb, nil)
	name := uniq(t)
	holder, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return srv, rdb, c, name, holder
}
