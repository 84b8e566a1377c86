package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The contended configurations with a process per caller ("procs-sdk",
// "procs-etcd") re-execute the bench's own binary as worker processes. A
// worker is told what to do by the environment variable workerEnv (JSON of a
// workerSpec) and runs with GOMAXPROCS=1, as one caller on one host would.
// The conversation over its stdin and stdout is:
//
//	worker: ready                      (driver open: connected, scripts loaded)
//	parent: go FROM TO                 (Unix nanoseconds of the measured window)
//	worker: {workerResult as JSON}     (after TO)
//
// The worker loops acquire (waiting) then release from the moment it reads
// "go" until TO, and exits by itself: at TO, on SIGINT or SIGTERM, after
// workerStartTimeout without "go", parentGoneGrace after its stdin closes,
// and in any case workerGrace after TO. The parent kills the ones left, by pid.
const workerEnv = "LEASEHOLD_BENCH_WORKER"

const (
	workerStartTimeout = time.Minute      // from start to "go"
	workerGrace        = 15 * time.Second // after TO, a worker exits whatever it is doing
	parentGoneGrace    = 2 * time.Second  // after stdin closes, likewise
)

// workerOpeners are the drivers a worker process can run, by workerSpec.Driver.
var workerOpeners = map[string]opener{
	"sdk":  openSDK(nil),
	"etcd": openEtcd,
}

// workerSpec is what a worker process is told to do.
type workerSpec struct {
	Driver string        `json:"driver"` // a key of workerOpeners
	Addr   string        `json:"addr"`   // Redis's host:port, or etcd's client URL
	Name   string        `json:"name"`   // the one name every worker contends for
	Wait   time.Duration `json:"wait"`   // how long one acquire waits: longer than the run
}

// workerResult is what a worker process reports at the end.
type workerResult struct {
	Sent     [2]int64   `json:"sent"`   // commands sent, at FROM and at TO
	CPU      [2]int64   `json:"cpu"`    // the process's user+system CPU in ns, at FROM and at TO
	Grants   []grantRec `json:"grants"` // the cycles that ended after FROM
	Errors   int64      `json:"errors"` // failed cycles
	FirstErr string     `json:"first_error,omitempty"`
	Stopped  string     `json:"stopped,omitempty"` // why the worker stopped before TO, if it did
}

// runWorkerIfAsked runs a worker process and exits when the environment
// asks for one, and returns at once otherwise. main and TestMain call it first.
func runWorkerIfAsked() {
	spec, ok := os.LookupEnv(workerEnv)
	if !ok {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := workerMain(ctx, spec, os.Stdin, os.Stdout, os.Exit)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// workerMain is a worker process's life; hardExit ends the process when a
// bound of time is past and the worker has not returned (os.Exit).
func workerMain(ctx context.Context, specJSON string, stdin io.Reader, stdout io.Writer, hardExit func(code int)) error {
	var spec workerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("%s: %w", workerEnv, err)
	}
	open, ok := workerOpeners[spec.Driver]
	if !ok {
		return fmt.Errorf("%s: no driver %q", workerEnv, spec.Driver)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Everything before "go" is bounded by workerStartTimeout.
	startCtx, startCancel := context.WithTimeout(ctx, workerStartTimeout)
	defer startCancel()
	d, err := open(startCtx, spec.Addr, spec.Wait)
	if err != nil {
		return fmt.Errorf("open %s: %w", spec.Driver, err)
	}
	defer d.close()
	if _, err := fmt.Fprintln(stdout, "ready"); err != nil {
		return err
	}

	// The first line of stdin is "go FROM TO"; its end (the parent closed it
	// or died) stops the worker.
	window := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdin)
		line, err := r.ReadString('\n')
		if err == nil {
			window <- line
			_, err = io.Copy(io.Discard, r)
		}
		// The parent is done with us, or gone. Whatever a driver is still
		// doing (etcd's Mutex retries its clean-up against a server that may
		// be gone, ignoring contexts) is given parentGoneGrace, no more.
		cancel()
		time.AfterFunc(parentGoneGrace, func() { hardExit(2) })
	}()
	var line string
	select {
	case line = <-window:
	case <-startCtx.Done():
		return fmt.Errorf("no \"go\" from the parent: %w", startCtx.Err())
	}
	from, to, err := parseWindow(line)
	if err != nil {
		return err
	}
	watchdog := time.AfterFunc(time.Until(to)+workerGrace, func() {
		fmt.Fprintf(os.Stderr, "bench worker %d: still running %s after the window; exiting\n", os.Getpid(), workerGrace)
		hardExit(3)
	})
	defer watchdog.Stop()

	runCtx, runCancel := context.WithDeadline(ctx, to)
	defer runCancel()
	var res workerResult
	counters := make(chan struct{})
	go func() {
		defer close(counters)
		sleepUntil(runCtx, from)
		res.Sent[0], res.CPU[0] = workerCounters(d)
		sleepUntil(runCtx, to)
		res.Sent[1], res.CPU[1] = workerCounters(d)
	}()

	cycle := d.worker()
	fromNs := from.UnixNano()
	for runCtx.Err() == nil {
		if len(res.Grants) >= maxGrantRecs {
			res.Stopped = fmt.Sprintf("recorded %d grants, the most a worker keeps", maxGrantRecs)
			break
		}
		var st stamps
		t0 := time.Now()
		err := cycle(runCtx, spec.Name, &st)
		t1 := time.Now()
		switch {
		case runCtx.Err() != nil:
			// The window closed during this cycle.
		case errors.Is(err, errNotGranted):
			// The wait ended without a grant; try again.
		case err != nil:
			if res.Errors++; res.Errors == 1 {
				res.FirstErr = err.Error()
			}
			if res.Errors >= 1000 {
				res.Stopped = "1000 errors"
				runCancel()
			}
		case t1.UnixNano() > fromNs:
			res.Grants = append(res.Grants, grantRec{t0.UnixNano(), st.granted.UnixNano(), st.releasing.UnixNano(), t1.UnixNano()})
		}
	}
	if ctx.Err() != nil && time.Now().Before(to) && res.Stopped == "" {
		res.Stopped = "stopped by the parent or a signal before the window's end"
	}
	runCancel()
	<-counters
	return json.NewEncoder(stdout).Encode(&res)
}

// workerCounters reads the driver's commands sent and the process's CPU.
func workerCounters(d *driver) (sent, cpuNs int64) {
	sent = -1
	if d.sent != nil {
		sent = d.sent.n.Load()
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpuNs = ru.Utime.Nano() + ru.Stime.Nano()
	}
	return sent, cpuNs
}

// parseWindow reads "go FROM TO" in Unix nanoseconds.
func parseWindow(line string) (from, to time.Time, err error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "go" {
		return from, to, fmt.Errorf("want \"go FROM TO\" from the parent, got %q", line)
	}
	a, err1 := strconv.ParseInt(f[1], 10, 64)
	b, err2 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil || b <= a {
		return from, to, fmt.Errorf("bad window %q: %v", line, err)
	}
	return time.Unix(0, a), time.Unix(0, b), nil
}
