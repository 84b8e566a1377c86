package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"go.uber.org/goleak"
)

// TestMain lets the test binary be a worker process of the procs-*
// configurations, which re-execute the running binary.
func TestMain(m *testing.M) {
	runWorkerIfAsked()
	os.Exit(m.Run())
}

// TestQuickRun runs every configuration for a fraction of a second against
// a real redis-server, leasehold serve and the naive server (and etcd when it
// is on PATH), and checks that the tables have every row with sane numbers
// and that no process the run started is left. Without redis-server on PATH
// it fails, with the install hint.
func TestQuickRun(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-duration", "300ms", "-warmup", "100ms", "-c", "1,8", "-contenders", "8", "-mem-leases", "500"}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	out := stdout.String()
	t.Log("\n" + out)

	rows := tableRows(out)
	for _, c := range []string{"1", "8"} {
		for _, name := range []string{"sdk", "raw", "redislock", "redsync", "serve", "naive"} {
			row, ok := rows[name+" "+c+" uncontended"]
			if !ok {
				t.Errorf("no row for %s c=%s", name, c)
				continue
			}
			checkRow(t, name+" c="+c, row, name == "serve" || name == "naive", false, true)
		}
	}
	_, noEtcd := exec.LookPath("etcd")
	for _, name := range []string{"sdk", "redislock", "redsync", "procs-sdk", "procs-etcd"} {
		row, ok := rows[name+" 8 contended"]
		switch {
		case name == "procs-etcd" && noEtcd != nil:
			if ok || !strings.Contains(out, "procs-etcd: skipped, etcd is not on PATH (") {
				t.Errorf("etcd is not on PATH: got a row %v, or no line saying procs-etcd was skipped", ok)
			}
		case !ok:
			t.Errorf("no contended row for %s", name)
		default:
			checkRow(t, "contended "+name, row, false, true, name != "procs-etcd")
		}
	}
	if strings.Contains(stderr.String(), "OVERLAPPED") {
		t.Errorf("grants overlapped:\n%s", stderr.String())
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("processes left after the run, children of the test: %v", kids)
	}
	for _, want := range []string{
		"| sdk / raw, cycles/s |", "| sdk / redislock, cycles/s |", "| sdk / redsync, cycles/s |",
		"| serve / naive, cycles/s |", "| serve / naive, p99",
		"| sdk / redsync, grants/s |", "| sdk / redislock, grants/s |",
		"| MEMORY USAGE of one lease's hash", "| INFO memory used_memory growth / leases held |",
		"| SDK (default options) ≥ 1.0x redislock, c=1 |", "| serve (default flags) ≥ 1.0x naive, c=8 |", "| Redis ≤ 200 B per held lease",
		"| Redis 0 B per name after the fence retention",
		"| procs-sdk / sdk (one Client), grants/s |", "| procs-sdk: cmds sent / Redis calls per grant |",
		"| contended, 8 processes: SDK ≤ 2 commands sent per grant |", "| contended, 8 processes: SDK handoff p50 ≤ 1 ms |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output has no %q", want)
		}
	}
	if strings.Count(out, "| SDK (default options) ≥ 1.0x redislock, c=64 | not measured |") != 1 {
		t.Errorf("c=64 was not run, so its target should say not measured")
	}
}

// tableRows maps "name c uncontended|contended" to the cells of the run
// tables' rows.
func tableRows(out string) map[string][]string {
	rows := map[string][]string{}
	mode := ""
	for line := range strings.Lines(out) {
		switch {
		case strings.HasPrefix(line, "### Uncontended"):
			mode = "uncontended"
		case strings.HasPrefix(line, "### Contended"):
			mode = "contended"
		case strings.HasPrefix(line, "### "):
			mode = ""
		case mode != "" && strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| config") && !strings.HasPrefix(line, "| ---"):
			cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			rows[cells[0]+" "+cells[1]+" "+mode] = cells
		}
	}
	return rows
}

// checkRow checks a run table's row: a positive rate, latencies and CPU
// figures above zero, commands per cycle between 1 and 100 (Redis calls: –
// when the store is not Redis), no errors.
func checkRow(t *testing.T, what string, cells []string, overHTTP, contended, onRedis bool) {
	t.Helper()
	if len(cells) < 11 {
		t.Errorf("%s: %d cells, want at least 11: %q", what, len(cells), cells)
		return
	}
	if v := number(cells[2]); v <= 0 {
		t.Errorf("%s: rate %q, want > 0", what, cells[2])
	}
	cells = append(cells[:3:3], cells[4:]...) // drop the range
	if contended {
		if v := number(cells[5]); v <= 0 {
			t.Errorf("%s: handoff p50 %q, want > 0", what, cells[5])
		}
		if v := number(cells[6]); v < 0 || v > 1.5 {
			t.Errorf("%s: fairness %q, want 0 to 1.5", what, cells[6])
		}
		cells = append(cells[:5:5], cells[7:]...) // and the handoff and fairness
	}
	for i := 3; i <= 5; i++ { // p50, p99, client CPU
		if v := number(cells[i]); v <= 0 {
			t.Errorf("%s: cell %d is %q, want > 0", what, i, cells[i])
		}
	}
	if p50, p99 := duration(cells[3]), duration(cells[4]); p50 > p99 {
		t.Errorf("%s: p50 %s > p99 %s", what, cells[3], cells[4])
	}
	callsCell := cells[len(cells)-2]
	if calls := number(callsCell); onRedis && (calls < 1 || calls > 100) || !onRedis && callsCell != "–" {
		t.Errorf("%s: Redis calls per cycle %q, want 1 to 100 on Redis, else –", what, callsCell)
	}
	if sent := number(cells[len(cells)-3]); !overHTTP && (sent < 1 || sent > 100) {
		t.Errorf("%s: commands sent per cycle %q, want 1 to 100", what, cells[len(cells)-3])
	}
	sentCell := cells[len(cells)-3]
	if overHTTP != (sentCell == "–") {
		t.Errorf("%s: commands sent %q; want a number in-process and – over HTTP", what, sentCell)
	}
	if overHTTP && cells[6] == "–" {
		t.Errorf("%s: no server CPU", what)
	}
	if cells[len(cells)-1] != "0" {
		t.Errorf("%s: %s errors, want 0", what, cells[len(cells)-1])
	}
}

// number reads "7.9k", "128µs", "1.20ms", "65.8µs" or "2.00" as a float,
// ignoring the unit.
func number(s string) float64 {
	mul := 1.0
	if v, ok := strings.CutSuffix(s, "k"); ok {
		s, mul = v, 1000
	}
	s = strings.TrimRight(s, "µms")
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return -1
	}
	return v * mul
}

func duration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		return -1
	}
	return d
}

func TestParseInfo(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250000\r\nused_cpu_sys_children:9.000000\r\nused_cpu_sys_main_thread:1.400000\r\n\r\n" +
		"# Commandstats\r\ncmdstat_evalsha:calls=10,usec=5,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=7,usec=5,usec_per_call=0.71,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=2,usec=1,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r\n"
	cpu, calls := parseInfo(info)
	if cpu != 1750*time.Millisecond {
		t.Errorf("cpu: got %s, want 1.75s", cpu)
	}
	if calls != 12 {
		t.Errorf("calls: got %d, want 12 (INFO left out)", calls)
	}
}

func TestFlags(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-h"}, flag.ErrHelp.Error()},
		{[]string{"-c", "1,x"}, `-c: "x" is not a positive integer`},
		{[]string{"-c", "0"}, `-c: "0" is not a positive integer`},
		{[]string{"-rounds", "0"}, "must be positive"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		_, err := parseFlags(tt.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseFlags(%q): got %v, want an error with %q", tt.args, err, tt.wantErr)
		}
	}
	s, err := parseFlags([]string{"-quick", "-rounds", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.rounds != 2 || s.duration != time.Second || s.memLeases != 10000 {
		t.Errorf("-quick -rounds 2: got rounds %d, duration %s, mem-leases %d; want 2, 1s, 10000", s.rounds, s.duration, s.memLeases)
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: got %v, want flag.ErrHelp", err)
	}
}

func TestRatioPairsRounds(t *testing.T) {
	a, b := key{"sdk", 8, false}, key{"raw", 8, false}
	r := &report{samples: map[key][]sample{
		a: {{perSec: 10}, {perSec: 40}, {perSec: 22}},
		b: {{perSec: 10}, {perSec: 20}, {perSec: 44}},
	}}
	// Per round: 1.0, 2.0, 0.5; the median is 1.0 (a ratio of medians would say 22/20).
	if got, ok := r.ratio(a, b, perSec); !ok || got != 1.0 {
		t.Errorf("ratio: got %v, %v; want 1, true", got, ok)
	}
	if _, ok := r.ratio(a, key{"naive", 8, false}, perSec); ok {
		t.Errorf("ratio to a configuration not measured: got ok, want false")
	}
}

// children lists the processes whose parent is this one, from /proc (Linux).
func children(t *testing.T) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// After "(comm)": state, then the parent's pid.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if i > 0 && len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			kids = append(kids, strings.TrimSpace(string(b[:i+1])))
		}
	}
	return kids
}

func TestHandoffs(t *testing.T) {
	ms := int64(time.Millisecond)
	rec := func(granted, releasing int64) grantRec {
		return grantRec{granted - ms, granted, releasing, releasing + ms}
	}
	for _, tt := range []struct {
		name        string
		recs        []grantRec
		p50         time.Duration
		n, overlaps int
	}{
		{"none", nil, 0, 0, 0},
		{"one", []grantRec{rec(0, ms)}, 0, 0, 0},
		// Out of order on purpose: handoffs sorts by grant.
		{"three", []grantRec{rec(10*ms, 11*ms), rec(0, ms), rec(3*ms, 4*ms)}, 2 * time.Millisecond, 2, 0},
		{"overlap", []grantRec{rec(0, 5*ms), rec(3*ms, 4*ms), rec(6*ms, 7*ms)}, 2 * time.Millisecond, 1, 1},
	} {
		got := handoffs(tt.recs)
		// The histogram keeps 3 significant digits.
		if got.n != tt.n || got.overlaps != tt.overlaps || (got.p50-tt.p50).Abs() > tt.p50/500 {
			t.Errorf("%s: got n %d, p50 %s, overlaps %d; want %d, %s, %d", tt.name, got.n, got.p50, got.overlaps, tt.n, tt.p50, tt.overlaps)
		}
	}
}

// TestWorkerEndsWithItsParent runs a worker against a real Redis and closes
// its stdin before "go", as a parent that died would: the worker returns at once.
func TestWorkerEndsWithItsParent(t *testing.T) {
	srv, err := redistest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	spec := `{"driver":"sdk","addr":"` + srv.Addr() + `","name":"worker-test","wait":1000000000}`
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- workerMain(t.Context(), spec, stdinR, stdoutW, func(int) {})
		stdoutW.Close()
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("worker said %q, %v; want ready", line, err)
	}
	stdinW.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), `no "go"`) {
			t.Errorf("got %v, want an error saying no \"go\" came", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the worker did not return within 5s of its stdin closing")
	}
	go io.Copy(io.Discard, stdoutR)
}
