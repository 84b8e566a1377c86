package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestQuickRun runs every configuration for a fraction of a second against
// a real redis-server, leasehold serve and the naive server, and checks that
// the tables have every row with sane numbers. Without redis-server on PATH
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
			checkRow(t, name+" c="+c, row, name == "serve" || name == "naive", false)
		}
	}
	for _, name := range []string{"sdk", "redislock", "redsync"} {
		row, ok := rows[name+" 8 contended"]
		if !ok {
			t.Errorf("no contended row for %s", name)
			continue
		}
		checkRow(t, "contended "+name, row, false, true)
	}
	for _, want := range []string{
		"| sdk / raw, cycles/s |", "| sdk / redislock, cycles/s |", "| sdk / redsync, cycles/s |",
		"| serve / naive, cycles/s |", "| serve / naive, p99",
		"| sdk / redsync, grants/s |", "| sdk / redislock, grants/s |",
		"| MEMORY USAGE of one lease's hash", "| INFO memory used_memory growth / leases held |",
		"| SDK ≥ 1.0x raw, c=1 |", "| serve ≥ 1.5x naive, c=8 |", "| Redis ≤ 250 B per held lease",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output has no %q", want)
		}
	}
	if strings.Count(out, "| SDK ≥ 2.0x redislock, c=64 | not measured |") != 1 {
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
// figures above zero, commands per cycle between 1 and 100, no errors.
func checkRow(t *testing.T, what string, cells []string, overHTTP, contended bool) {
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
		if v := number(cells[5]); v < 0 || v > 1.5 {
			t.Errorf("%s: fairness %q, want 0 to 1.5", what, cells[5])
		}
		cells = append(cells[:5:5], cells[6:]...) // and the fairness
	}
	for i := 3; i <= 5; i++ { // p50, p99, client CPU
		if v := number(cells[i]); v <= 0 {
			t.Errorf("%s: cell %d is %q, want > 0", what, i, cells[i])
		}
	}
	if p50, p99 := duration(cells[3]), duration(cells[4]); p50 > p99 {
		t.Errorf("%s: p50 %s > p99 %s", what, cells[3], cells[4])
	}
	calls := number(cells[len(cells)-2])
	if calls < 1 || calls > 100 {
		t.Errorf("%s: Redis calls per cycle %q, want 1 to 100", what, cells[len(cells)-2])
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
