package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// procsVariant is a contended configuration whose callers are each a worker
// process of their own.
type procsVariant struct {
	name   string // the configuration: "procs-" and the driver
	driver string // a key of workerOpeners
}

// procsVariants are the contended configurations with a process per caller.
var procsVariants = []procsVariant{
	{name: "procs-sdk", driver: "sdk"},
	{name: "procs-etcd", driver: "etcd"},
}

const (
	procsReadyTimeout = 45 * time.Second // for every worker to start and open its driver
	procsExitGrace    = 10 * time.Second // after the window, for every worker to report and exit
)

// workerProc is one worker process as the parent sees it.
type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan error // one value: nil once the worker said "ready"
	res   *workerResult
	err   error         // why res is nil
	done  chan struct{} // closed once the worker has exited and been reaped
}

// workerAddr is where a worker running driver finds its store.
func (e *env) workerAddr(driver string) string {
	if driver == "etcd" && e.etcd != nil {
		return e.etcd.base
	}
	return e.redisAddr
}

// measureProcs runs cfg with cfg.c worker processes, each one caller with its
// own clients, for warmup+duration, and measures the last duration from what
// the workers report.
func measureProcs(ctx context.Context, e *env, cfg config, warmup, duration time.Duration, id string) (sample, error) {
	exe, err := os.Executable()
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", cfg, err)
	}
	spec, err := json.Marshal(workerSpec{
		Driver: cfg.procs,
		Addr:   e.workerAddr(cfg.procs),
		Name:   id + ":one",
		Wait:   warmup + duration + 5*time.Second, // longer than the run: only its end stops a wait
	})
	if err != nil {
		return sample{}, err
	}
	logPath := filepath.Join(e.dir, id+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return sample{}, err
	}
	defer logf.Close() // each child has its own copy
	environ := append(os.Environ(), "GOMAXPROCS=1", workerEnv+"="+string(spec))

	workers := make([]*workerProc, 0, cfg.c)
	defer func() {
		// Whatever happened, no worker outlives the measurement: those still
		// running are killed, by pid, and every one is reaped.
		for _, w := range workers {
			w.stdin.Close()
		}
		for _, w := range workers {
			w.stop()
		}
	}()
	for range cfg.c {
		w, err := startWorker(exe, environ, logf)
		if err != nil {
			return sample{}, fmt.Errorf("%s: %w", cfg, err)
		}
		workers = append(workers, w)
	}

	readyBy := time.NewTimer(procsReadyTimeout)
	defer readyBy.Stop()
	for i, w := range workers {
		select {
		case err := <-w.ready:
			if err != nil {
				return sample{}, fmt.Errorf("%s: worker %d (pid %d): %w\n%s", cfg, i, w.cmd.Process.Pid, err, fileTail(logPath))
			}
		case <-readyBy.C:
			return sample{}, fmt.Errorf("%s: worker %d (pid %d) not ready within %s\n%s", cfg, i, w.cmd.Process.Pid, procsReadyTimeout, fileTail(logPath))
		case <-ctx.Done():
			return sample{}, fmt.Errorf("interrupted during %s: %w", cfg, ctx.Err())
		}
	}

	from := time.Now().Add(warmup)
	to := from.Add(duration)
	goLine := fmt.Sprintf("go %d %d\n", from.UnixNano(), to.UnixNano())
	for _, w := range workers {
		if _, err := io.WriteString(w.stdin, goLine); err != nil {
			return sample{}, fmt.Errorf("%s: tell worker (pid %d) to go: %w", cfg, w.cmd.Process.Pid, err)
		}
	}

	runCtx, cancel := context.WithDeadline(ctx, to)
	defer cancel()
	var before, after snapshot
	sleepUntil(runCtx, from)
	before, err = e.snapshot(runCtx, nil, nil)
	if err == nil {
		sleepUntil(runCtx, to)
		after, err = e.snapshot(ctx, nil, nil)
	}
	if ctx.Err() != nil {
		return sample{}, fmt.Errorf("interrupted during %s: %w", cfg, ctx.Err())
	}
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", cfg, err)
	}
	exitBy := time.NewTimer(time.Until(to) + procsExitGrace)
	defer exitBy.Stop()
wait:
	for _, w := range workers {
		select {
		case <-w.done:
		case <-exitBy.C:
			break wait
		case <-ctx.Done():
			return sample{}, fmt.Errorf("interrupted during %s: %w", cfg, ctx.Err())
		}
	}
	for _, w := range workers { // the ones left are killed; then every report is in
		w.stdin.Close()
		w.stop()
	}

	s := procsSample(cfg, workers, from, to)
	if s.cycles == 0 {
		if s.firstErr != nil {
			return s, fmt.Errorf("%s: no grant in the window: %w\n%s", cfg, s.firstErr, fileTail(logPath))
		}
		return s, fmt.Errorf("%s: no grant in %s\n%s", cfg, duration, fileTail(logPath))
	}
	if cfg.procs == "sdk" { // Redis is the store: its figures count
		n := float64(s.cycles)
		s.redisCPU = time.Duration(float64(after.redisCPU-before.redisCPU) / n)
		s.calls = float64(after.calls-before.calls) / n
	}
	return s, nil
}

// procsSample computes a sample from the workers' reports. A worker that
// reported nothing counts as one error.
func procsSample(cfg config, workers []*workerProc, from, to time.Time) sample {
	s := sample{sent: 0, calls: -1, redisCPU: -1}
	fromNs, toNs := from.UnixNano(), to.UnixNano()
	all := newHistogram()
	var inWindow []grantRec
	var sent, cpuNs int64
	least := int64(-1)
	var stopped []string
	for i, w := range workers {
		if w.res == nil {
			s.errors++
			if s.firstErr == nil {
				s.firstErr = fmt.Errorf("worker %d (pid %d): %w", i, w.cmd.Process.Pid, w.err)
			}
			least = 0
			continue
		}
		r := w.res
		s.errors += r.Errors
		if r.FirstErr != "" && s.firstErr == nil {
			s.firstErr = fmt.Errorf("worker %d (pid %d): %s", i, w.cmd.Process.Pid, r.FirstErr)
		}
		if r.Stopped != "" {
			stopped = append(stopped, fmt.Sprintf("worker %d: %s", i, r.Stopped))
		}
		var mine int64
		for _, g := range r.Grants {
			if g.done() > fromNs && g.done() <= toNs {
				mine++
				all.RecordValue(time.Duration(g.done() - g.start()).Microseconds())
			}
			if g.granted() > fromNs && g.granted() <= toNs {
				inWindow = append(inWindow, g)
			}
		}
		if least < 0 || mine < least {
			least = mine
		}
		if r.Sent[0] < 0 || s.sent < 0 {
			s.sent = -1
		} else {
			sent += r.Sent[1] - r.Sent[0]
		}
		cpuNs += r.CPU[1] - r.CPU[0]
	}
	if len(stopped) > 0 && s.firstErr == nil {
		s.firstErr = errors.New(strings.Join(stopped, "; "))
	}
	s.cycles = all.TotalCount()
	if s.cycles == 0 {
		return s
	}
	n := float64(s.cycles)
	s.perSec = n / to.Sub(from).Seconds()
	s.p50 = time.Duration(all.ValueAtPercentile(50)) * time.Microsecond
	s.p99 = time.Duration(all.ValueAtPercentile(99)) * time.Microsecond
	s.fairness = float64(least) / (n / float64(cfg.c))
	s.clientCPU = time.Duration(float64(cpuNs) / n)
	if s.sent >= 0 {
		s.sent = float64(sent) / n
	}
	s.handoff = handoffs(inWindow)
	return s
}

// startWorker starts one worker process and reads its stdout in the
// background: "ready", then its result.
func startWorker(exe string, environ []string, log *os.File) (*workerProc, error) {
	w := &workerProc{ready: make(chan error, 1), done: make(chan struct{})}
	w.cmd = exec.Command(exe)
	w.cmd.Env = environ
	w.cmd.Stderr = log
	var err error
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	go func() {
		defer close(w.done)
		r := bufio.NewReader(stdout)
		line, err := r.ReadString('\n')
		switch {
		case err != nil:
			err = fmt.Errorf("exited before it was ready: %w", err)
		case line != "ready\n":
			err = fmt.Errorf("said %q, want \"ready\"", line)
		}
		w.ready <- err
		if err == nil {
			var res workerResult
			if err = json.NewDecoder(r).Decode(&res); err == nil {
				w.res = &res
			}
		}
		io.Copy(io.Discard, r) // until the process closes its stdout
		werr := w.cmd.Wait()
		switch {
		case w.res == nil:
			w.err = errors.Join(err, werr)
		case werr != nil: // a result, then a failed exit: keep the result, log the exit
			fmt.Fprintf(log, "bench: worker pid %d after its report: %v\n", w.cmd.Process.Pid, werr)
		}
	}()
	return w, nil
}

// stop kills the worker by pid if it has not exited yet, and waits until it
// has been reaped.
func (w *workerProc) stop() {
	select {
	case <-w.done:
		return
	default:
	}
	w.cmd.Process.Kill()
	<-w.done
}

func fileTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// procsStartEstimate is a rough time to start n worker processes and stop
// them on this kind of machine.
func procsStartEstimate(n int) time.Duration {
	return time.Second + time.Duration(n)*20*time.Millisecond
}
