package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
)

// TestMeasure runs the measurement small, against a real redis-server and
// a real `leasehold serve`, with a warm-up wave, so that the command the
// docs give keeps working: every waiter is counted waiting, and the memory
// figures are read.
func TestMeasure(t *testing.T) {
	redis := redistest.Start(t)
	bin := filepath.Join(t.TempDir(), "leasehold")
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", bin, "./cmd/leasehold")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := &config{bin: bin, names: 3, waiters: 60, wait: 30 * time.Second, settle: 100 * time.Millisecond,
		timeout: 20 * time.Second, warm: 1}
	r, err := measure(c, redis.Addr(), "waitmem-test-"+t.Name(), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.waiting != c.waiters {
		t.Errorf("got %d waiting, want %d", r.waiting, c.waiters)
	}
	// The server process's own figures: a Go server with 60 open
	// connections takes some MB, and its goroutines include two per waiter.
	if r.rssKB < 1<<10 || r.stackMB <= 0 || r.heapMB <= 0 {
		t.Errorf("got VmRSS %d KB, stacks %.2f MB, heap %.2f MB; want each above zero (VmRSS above 1 MB)", r.rssKB, r.stackMB, r.heapMB)
	}
	if r.goroutines < 2*c.waiters {
		t.Errorf("got %d goroutines, want at least %d (two per waiting request)", r.goroutines, 2*c.waiters)
	}
}
