package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
)

// build compiles a package into dir and returns the binary's path.
func build(t *testing.T, dir, pkg, out string) string {
	t.Helper()
	bin := filepath.Join(dir, out)
	if b, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin
}

// serve starts `leasehold serve` on srv and returns its URL; it stops with the test.
func serve(t *testing.T, leasehold string, srv *redistest.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(leasehold, "serve", "--redis", srv.URL(), "--listen", addr)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	url := "http://" + addr
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("leasehold serve not ready: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// crontabJob reads the example crontab: its LEASEHOLD_SERVER and the
// command of its job line (the fields after the five schedule fields).
func crontabJob(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("crontab")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && !strings.HasPrefix(line, "#") && !strings.Contains(f[0], "=") {
			return strings.Join(f[5:], " ")
		}
	}
	t.Fatal("no job line in crontab")
	return ""
}

// crontabEnv is the variable lines (NAME=value) of examples/cron/crontab.
func crontabEnv(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("crontab")
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 1 && !strings.HasPrefix(line, "#") && strings.Contains(f[0], "=") {
			env = append(env, f[0])
		}
	}
	if len(env) == 0 {
		t.Fatal("no variable lines in crontab")
	}
	return env
}

// runConcurrently runs n copies of cmd() at once and returns their outputs.
func runConcurrently(t *testing.T, n int, cmd func() *exec.Cmd) []string {
	t.Helper()
	outs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := cmd()
			out, err := c.CombinedOutput()
			if err != nil {
				t.Errorf("copy %d: %v: %s", i, err, out)
			}
			outs[i] = string(out)
		})
	}
	wg.Wait()
	return outs
}

// TestCrontabLineRunsOncePerPeriod runs the example crontab's command as
// three hosts whose cron fires at the same moment, then as a late host inside
// the hold, then once the lease is gone, after the hold; the hold is cut from
// 10m to 2s for the test.
func TestCrontabLineRunsOncePerPeriod(t *testing.T) {
	dir := t.TempDir()
	leasehold := build(t, dir, "../../cmd/leasehold", "leasehold")
	srv := redistest.Start(t)
	url := serve(t, leasehold, srv)

	ran := filepath.Join(dir, "ran")
	job := filepath.Join(dir, "hourly-report.sh")
	if err := os.WriteFile(job, []byte("#!/bin/sh\necho \"$LEASE_FENCE\" >> "+ran+"\nsleep 0.3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	line := crontabJob(t)
	if !strings.Contains(line, "--hold 10m") || !strings.Contains(line, "/opt/jobs/hourly-report.sh") ||
		!strings.HasPrefix(line, "/usr/local/bin/leasehold ") {
		t.Fatalf("crontab line %q changed: update this test", line)
	}
	line = strings.NewReplacer("--hold 10m", "--hold 2s", "/opt/jobs/hourly-report.sh", job,
		"/usr/local/bin/leasehold", leasehold).Replace(line)
	var env []string
	for _, kv := range crontabEnv(t) {
		if strings.HasPrefix(kv, "LEASEHOLD_SERVER=") {
			kv = "LEASEHOLD_SERVER=" + url
		}
		env = append(env, kv)
	}
	host := func() *exec.Cmd {
		// As cron runs it: /bin/sh -c, cron's own PATH, the crontab's
		// variables and nothing else of ours.
		c := exec.Command("/bin/sh", "-c", line)
		c.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + dir, "SHELL=/bin/sh"}, env...)
		return c
	}
	count := func() int {
		b, _ := os.ReadFile(ran)
		return strings.Count(string(b), "\n")
	}

	start := time.Now()
	// Every host exits 0 (-E 0) and prints nothing (-q), so cron mails nothing.
	for i, out := range runConcurrently(t, 3, host) {
		if out != "" {
			t.Errorf("host %d printed %q, want nothing", i, out)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("three hosts at once ran the job %d times, want 1", n)
	}
	runConcurrently(t, 1, host) // a late host, inside the hold
	if n := count(); n != 1 {
		t.Fatalf("a late host inside the hold ran the job again (%d runs), want 1", n)
	}
	// The hold counts from the grant, which comes after start by however
	// long the hosts' processes took to start: wait for the lease's end
	// itself, which is what the next period waits for.
	ended := waitReleased(t, url, "hourly-report", 10*time.Second)
	if held := ended.Sub(start); held < 2*time.Second {
		t.Errorf("the lease ended %v after the hosts started, want at least the 2s hold", held)
	}
	runConcurrently(t, 1, host) // the next period
	if n := count(); n != 2 {
		t.Errorf("after the hold, got %d runs, want 2", n)
	}
}

// waitReleased polls GET /v1/leases/NAME until it answers 404 and returns
// when it did; it fails the test when the lease is still there after within.
func waitReleased(t *testing.T, url, name string, within time.Duration) time.Time {
	t.Helper()
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(within); ; {
		resp, err := hc.Get(url + "/v1/leases/" + name)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lease %s is still held (or the server does not answer: %v) %v after the last run", name, err, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGoJobRunsOnce runs the Go job of this example as three hosts at once.
func TestGoJobRunsOnce(t *testing.T) {
	dir := t.TempDir()
	job := build(t, dir, ".", "job")
	srv := redistest.Start(t)
	host := func() *exec.Cmd {
		return exec.Command(job, "-name", "nightly", "-hold", "2s", "-work", "300ms", "-ttl", "1s", "-redis", srv.URL())
	}
	outs := runConcurrently(t, 3, host)
	ran, skipped := 0, 0
	for _, o := range outs {
		switch {
		case strings.HasPrefix(o, "ran nightly fence "):
			ran++
		case strings.HasPrefix(o, "skipped nightly: held by"):
			skipped++
		}
	}
	if ran != 1 || skipped != 2 {
		t.Fatalf("got outputs %q, want one ran and two skipped", outs)
	}
	if o := runConcurrently(t, 1, host)[0]; !strings.HasPrefix(o, "skipped") {
		t.Errorf("a late host inside the 2s hold printed %q, want skipped", o)
	}
}
