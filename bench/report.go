package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report is a run's results: samples by configuration, in table order.
type report struct {
	settings     settings
	redisVersion string
	etcdVersion  string     // "" when procs-etcd did not run
	skipped      []string   // configurations left out, and why
	loadStart    string     // 1-minute load average when the run began
	mem          *memResult // nil when skipped
	order        []key
	samples      map[key][]sample
}

// median is the median of one figure over a configuration's rounds.
func (r *report) median(k key, figure func(sample) float64) (float64, bool) {
	ss := r.samples[k]
	if len(ss) == 0 {
		return 0, false
	}
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = figure(s)
	}
	return median(v), true
}

// median sorts v and returns its median.
func median(v []float64) float64 {
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (r *report) errors() (n int64) {
	for _, ss := range r.samples {
		for _, s := range ss {
			n += s.errors
		}
	}
	return n
}

var (
	perSec    = func(s sample) float64 { return s.perSec }
	p50       = func(s sample) float64 { return float64(s.p50) }
	p99       = func(s sample) float64 { return float64(s.p99) }
	clientCPU = func(s sample) float64 { return float64(s.clientCPU) }
	serverCPU = func(s sample) float64 { return float64(s.serverCPU) }
	redisCPU  = func(s sample) float64 { return float64(s.redisCPU) }
	sent      = func(s sample) float64 { return s.sent }
	calls     = func(s sample) float64 { return s.calls }
	fairness  = func(s sample) float64 { return s.fairness }
	handoff50 = func(s sample) float64 { return float64(s.handoff.p50) }
)

func (r *report) write(w io.Writer) {
	s := r.settings
	etcd := ""
	if r.etcdVersion != "" {
		etcd = ", etcd " + r.etcdVersion
	}
	fmt.Fprintf(w, "Medians of %d round(s) of %s per configuration (after %s warmup), configurations alternating; range is the lowest and highest round. redis-server %s%s, %s, GOMAXPROCS %d; load average %s at the start, %s at the end.\n\n",
		s.rounds, s.duration, s.warmup, r.redisVersion, etcd, runtime.Version(), runtime.GOMAXPROCS(0), r.loadStart, loadAverage())
	r.writeRuns(w, false)
	r.writeRuns(w, true)
	r.writeRatios(w)
	r.writeMemory(w)
	r.writeTargets(w)
}

func (r *report) writeRuns(w io.Writer, contended bool) {
	var keys []key
	for _, k := range r.order {
		if k.contended == contended {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 && (!contended || len(r.skipped) == 0) {
		return
	}
	if contended {
		fmt.Fprintf(w, "### Contended: %d callers on one name, each acquire (waiting) then release\n\n", r.settings.contenders)
		fmt.Fprintln(w, "In-process rows are goroutines of this process; procs-* rows are a worker process per caller (GOMAXPROCS=1 each, its own clients; client CPU is the workers' sum; etcd's commands are gRPC requests). Handoff: from the start of a release to the next grant.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| config | callers | grants/s | range | p50 | p99 | handoff p50 | fairness | client CPU/grant | Redis CPU/grant | cmds sent/grant | Redis calls/grant | errors |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	} else {
		fmt.Fprintln(w, "### Uncontended: acquire+release cycles on unique names")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| config | c | cycles/s | range | p50 | p99 | client CPU/cycle | server CPU/cycle | Redis CPU/cycle | cmds sent/cycle | Redis calls/cycle | errors |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	}
	for _, k := range keys {
		m := func(f func(sample) float64) float64 { v, _ := r.median(k, f); return v }
		var errs int64
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range r.samples[k] {
			errs += s.errors
			lo, hi = min(lo, s.perSec), max(hi, s.perSec)
		}
		row := []string{k.name, fmt.Sprint(k.c), kilo(m(perSec)), kilo(lo) + "–" + kilo(hi), latency(time.Duration(m(p50))), latency(time.Duration(m(p99)))}
		if contended {
			row = append(row, latency(time.Duration(m(handoff50))), fmt.Sprintf("%.2f", m(fairness)))
		}
		row = append(row, cpu(time.Duration(m(clientCPU))))
		if !contended {
			srv := "–"
			if m(serverCPU) > 0 {
				srv = cpu(time.Duration(m(serverCPU)))
			}
			row = append(row, srv)
		}
		sentCell := "–"
		if v := m(sent); v >= 0 {
			sentCell = fmt.Sprintf("%.2f", v)
		}
		redisCell, callsCell := "–", "–"
		if v := m(redisCPU); v >= 0 {
			redisCell = cpu(time.Duration(v))
		}
		if v := m(calls); v >= 0 {
			callsCell = fmt.Sprintf("%.2f", v)
		}
		row = append(row, redisCell, sentCell, callsCell, fmt.Sprint(errs))
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	if contended {
		for _, line := range r.skipped {
			fmt.Fprintln(w, line)
			fmt.Fprintln(w)
		}
	}
}

// ratio is the median over rounds of a's figure over b's in the same round,
// or false when either was not measured. Configurations of one round ran
// close together, so a per-round ratio cancels much of a shared machine's
// drift that a ratio of medians would keep.
func (r *report) ratio(a, b key, figure func(sample) float64) (float64, bool) {
	sa, sb := r.samples[a], r.samples[b]
	var v []float64
	for i := range min(len(sa), len(sb)) {
		if d := figure(sb[i]); d != 0 {
			v = append(v, figure(sa[i])/d)
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

func (r *report) writeRatios(w io.Writer) {
	conc := r.settings.conc
	fmt.Fprintln(w, "### Ratios (same run)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each ratio is the median over rounds of the two configurations' figures in the same round.")
	fmt.Fprintln(w)
	head := "| ratio |"
	sep := "| --- |"
	for _, c := range conc {
		head += fmt.Sprintf(" c=%d |", c)
		sep += " ---: |"
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	row := func(label, a, b string, figure func(sample) float64) {
		cells := []string{label}
		any := false
		for _, c := range conc {
			v, ok := r.ratio(key{a, c, false}, key{b, c, false}, figure)
			cells = append(cells, times(v, ok))
			any = any || ok
		}
		if any {
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	for _, v := range sdkVariants {
		for _, peer := range []string{"raw", "redislock", "redsync"} {
			row(v.name+" / "+peer+", cycles/s", v.name, peer, perSec)
		}
	}
	for _, v := range serveVariants {
		row(v.name+" / naive, cycles/s", v.name, "naive", perSec)
		row(v.name+" / naive, p99 (≤ 1.00x: no worse)", v.name, "naive", p99)
	}
	fmt.Fprintln(w)

	n := r.settings.contenders
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "| contended | value |")
	fmt.Fprintln(w, "| --- | ---: |")
	for _, v := range sdkVariants {
		for _, peer := range []string{"redsync", "redislock"} {
			if x, ok := r.ratio(key{v.name, n, true}, key{peer, n, true}, perSec); ok {
				fmt.Fprintf(w, "| %s / %s, grants/s | %s |\n", v.name, peer, times(x, true))
			}
		}
	}
	for _, peer := range []struct{ name, label string }{{"sdk", "sdk (one Client)"}, {"procs-etcd", "procs-etcd"}} {
		if x, ok := r.ratio(key{"procs-sdk", n, true}, key{peer.name, n, true}, perSec); ok {
			fmt.Fprintf(w, "| procs-sdk / %s, grants/s | %s |\n", peer.label, times(x, true))
		}
	}
	var names []string
	for _, k := range r.order {
		if k.contended {
			names = append(names, k.name)
		}
	}
	for _, name := range names {
		s, _ := r.median(key{name, n, true}, sent)
		c, _ := r.median(key{name, n, true}, calls)
		callsCell := "–"
		if c >= 0 {
			callsCell = fmt.Sprintf("%.2f", c)
		}
		fmt.Fprintf(w, "| %s: cmds sent / Redis calls per grant | %.2f / %s |\n", name, s, callsCell)
	}
	fmt.Fprintln(w)
}

func (r *report) writeMemory(w io.Writer) {
	fmt.Fprintln(w, "### Redis memory per held lease")
	fmt.Fprintln(w)
	if r.mem == nil {
		fmt.Fprintln(w, "Not measured (-mem-leases 0).")
		fmt.Fprintln(w)
		return
	}
	m := r.mem
	fmt.Fprintf(w, "%d leases held at once, acquired through the SDK.\n\n", m.n)
	fmt.Fprintln(w, "| what | bytes |")
	fmt.Fprintln(w, "| --- | ---: |")
	fmt.Fprintf(w, "| MEMORY USAGE of one lease's hash, leasehold:{NAME} | %d |\n", m.hash)
	fmt.Fprintf(w, "| INFO memory used_memory growth / leases held | %.0f |\n", m.perHeld)
	fmt.Fprintf(w, "| MEMORY USAGE of a released name's hash (its last fence, for the retention) | %d |\n", m.released)
	fmt.Fprintf(w, "| used_memory left per name after release (its last fence, until the retention) | %.0f |\n", m.perFreed)
	fmt.Fprintf(w, "| used_memory left per name after the retention (1s in this run) | %.0f |\n", m.perGone)
	fmt.Fprintln(w)
}

func (r *report) writeTargets(w io.Writer) {
	fmt.Fprintln(w, "### Targets")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured | verdict |")
	fmt.Fprintln(w, "| --- | ---: | --- |")
	check := func(what string, v float64, ok bool, format string, met bool) {
		switch {
		case !ok:
			fmt.Fprintf(w, "| %s | not measured | – |\n", what)
		case met:
			fmt.Fprintf(w, "| %s | "+format+" | met |\n", what, v)
		default:
			fmt.Fprintf(w, "| %s | "+format+" | **not met** |\n", what, v)
		}
	}
	atLeast := func(what string, a, b key, want float64) {
		v, ok := r.ratio(a, b, perSec)
		format := "%.2fx"
		if v < 0.1 {
			format = "%.3fx" // 0.017x, not 0.02x
		}
		check(what, v, ok, format, v >= want)
	}
	// The contract's "Speed and size" targets (../shared/spec/PRODUCT.md).
	for _, c := range []int{1, 8, 64} {
		atLeast(fmt.Sprintf("SDK (default options) ≥ 1.0x redislock, c=%d", c), key{"sdk", c, false}, key{"redislock", c, false}, 1.0)
	}
	atLeast("SDK with auto-pipelining (its default) ≥ 2.0x redislock, c=64", key{"sdk", 64, false}, key{"redislock", 64, false}, 2.0)
	for _, c := range []int{1, 8} {
		atLeast(fmt.Sprintf("serve (default flags) ≥ 1.0x naive, c=%d", c), key{"serve", c, false}, key{"naive", c, false}, 1.0)
	}
	atLeast("serve (default flags) ≥ 1.5x naive, c=64", key{"serve", 64, false}, key{"naive", 64, false}, 1.5)
	n := r.settings.contenders
	atLeast(fmt.Sprintf("contended (%d on one name): SDK ≥ 5x redsync grants/s", n), key{"sdk", n, true}, key{"redsync", n, true}, 5.0)
	v, ok := r.median(key{"sdk", n, true}, sent)
	check("contended: SDK ≤ 4 commands sent per grant", v, ok, "%.2f", v <= 4)
	procs, one, etcd := key{"procs-sdk", n, true}, key{"sdk", n, true}, key{"procs-etcd", n, true}
	atLeast(fmt.Sprintf("contended, %d processes: SDK ≥ 0.5x the one-Client row's grants/s", n), procs, one, 0.5)
	atLeast(fmt.Sprintf("contended, %d processes: SDK ≥ 10x etcd's Mutex grants/s (%d processes)", n, n), procs, etcd, 10)
	v, ok = r.median(procs, fairness)
	check(fmt.Sprintf("contended, %d processes: SDK fairness (min/mean) ≥ 0.95", n), v, ok, "%.2f", v >= 0.95)
	v, ok = r.median(procs, sent)
	// Each worker's one SUBSCRIBE and the pub/sub health pings are in
	// it: a third decimal shows them.
	check(fmt.Sprintf("contended, %d processes: SDK ≤ 2 commands sent per grant", n), v, ok, "%.3f", v <= 2)
	v, ok = r.median(procs, handoff50)
	check(fmt.Sprintf("contended, %d processes: SDK handoff p50 ≤ 1 ms", n), v/float64(time.Millisecond), ok, "%.2f ms", v <= float64(time.Millisecond))
	fmt.Fprintln(w, "| SDK allocations per acquire+release ≤ redislock's | from the testing.B benchmarks, not this command | to fill |")
	if r.mem != nil {
		check("Redis ≤ 200 B per held lease (used_memory growth)", r.mem.perHeld, true, "%.0f B", r.mem.perHeld <= 200)
		check("Redis 0 B per name after the fence retention (used_memory, ±1 B of noise)", r.mem.perGone, true, "%.1f B", r.mem.perGone <= 1)
	} else {
		check("Redis ≤ 200 B per held lease", 0, false, "", false)
	}
	fmt.Fprintln(w, "| 10,000 waiting HTTP requests ≤ 200 MB server RSS | from bench/waitmem, not this command | to fill |")
	fmt.Fprintln(w)
}

// kilo formats a rate: 31234 as "31.2k".
func kilo(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// latency formats a latency in µs below a millisecond, else in ms.
func latency(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// cpu formats CPU time per cycle in µs.
func cpu(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond)) }

func times(v float64, ok bool) string {
	switch {
	case !ok:
		return "–"
	case v < 0.1:
		return fmt.Sprintf("%.3fx", v) // 0.015x, not 0.01x
	}
	return fmt.Sprintf("%.2fx", v)
}

// loadAverage is the 1-minute load average from /proc/loadavg (Linux), or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
