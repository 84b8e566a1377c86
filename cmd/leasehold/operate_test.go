package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
)

// historyJSON runs `leasehold history NAME --json` with args and decodes it.
func historyJSON(t *testing.T, n string, args ...string) []wire.Record {
	t.Helper()
	r := lh(t, append([]string{"history", n, "--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("history: exit %d, stderr %q", r.code, r.stderr)
	}
	var b wire.History
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || b.Name != n {
		t.Fatalf("history --json: %v, got %q", err, r.stdout)
	}
	return b.History
}

// TestRunRecordsItsCommandsOutcome: "when did the nightly job last run,
// where, and did it succeed?" is one command.
func TestRunRecordsItsCommandsOutcome(t *testing.T) {
	n := name(t)
	redis := "--redis=" + srv.URL()
	if r := lh(t, "run", n, redis, "--holder", "cron-a", "--", "sh", "-c", "sleep 0.2; exit 3"); r.code != 3 {
		t.Fatalf("run: exit %d, want 3; stderr %q", r.code, r.stderr)
	}
	// --hold lets the grant expire at grant + 1s; its record still says how the command ended.
	if r := lh(t, "run", n, redis, "--holder", "cron-b", "--hold", "1s", "--", "true"); r.code != 0 {
		t.Fatalf("run --hold: exit %d; stderr %q", r.code, r.stderr)
	}
	h := historyJSON(t, n, redis)
	if len(h) != 2 || h[0].Ending != "held" || h[0].Holder != "cron-b" || h[0].ExitCode == nil || *h[0].ExitCode != 0 {
		t.Fatalf("while held: got %+v, want cron-b's grant held, exit code 0 told", h)
	}
	if h[1].Ending != "released" || h[1].Holder != "cron-a" || h[1].ExitCode == nil || *h[1].ExitCode != 3 ||
		h[1].DurationMs == nil || *h[1].DurationMs < 200 || *h[1].DurationMs > 5000 {
		t.Errorf("got %+v, want cron-a's grant released after exit code 3 and about 200ms", h[1])
	}
	time.Sleep(1200 * time.Millisecond)
	h = historyJSON(t, n, redis, "--limit", "1")
	if len(h) != 1 || h[0].Ending != "expired" || h[0].ExitCode == nil || *h[0].ExitCode != 0 {
		t.Errorf("after the hold: got %+v, want cron-b's grant expired, exit code 0", h)
	}
	r := lh(t, "history", n, redis)
	for _, want := range []string{"ENDING", "expired", "released", "cron-a", "cron-b"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("history table: exit %d, no %q in %q", r.code, want, r.stdout)
		}
	}
	if r := lh(t, "history", n+"-never", redis); r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no history") {
		t.Errorf("a name never used: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := lh(t, "history", n, redis, "--limit", "-1"); r.code != 64 {
		t.Errorf("--limit -1: exit %d, want 64", r.code)
	}
}

// TestBreakStopsTheHoldersRun: a broken lease's `run` signals its command
// and exits 76; the history says who broke it and why.
func TestBreakStopsTheHoldersRun(t *testing.T) {
	n := name(t)
	redis := "--redis=" + srv.URL()
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	holder := startLH(t, "run", n, redis, "--ttl", "3s", "--holder", "stuck-job", "--",
		"sh", "-c", "echo up > "+started+"; sleep 60")
	waitFile(t, started, 10*time.Second)
	l, err := client(t).Get(bg, n)
	if err != nil {
		t.Fatal(err)
	}
	if r := lh(t, "break", n, redis); r.code != 64 || !strings.Contains(r.stderr, "--reason") {
		t.Errorf("no --reason: exit %d, stderr %q, want 64 naming --reason", r.code, r.stderr)
	}
	if r := lh(t, "break", n, redis, "--reason", "x", "--fence", "1"); r.code != 1 || !strings.Contains(r.stderr, "nothing was broken") {
		t.Errorf("another fence: exit %d, stderr %q, want 1", r.code, r.stderr)
	}
	r := lh(t, "break", n, redis, "--reason", "stuck since 02:00", "--json")
	if r.code != 0 {
		t.Fatalf("break: exit %d, stderr %q", r.code, r.stderr)
	}
	var b wire.Broken
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || !b.Broken || b.Holder != "stuck-job" || b.Fence != l.Fence {
		t.Fatalf("break --json: %v, got %q, want stuck-job's grant of fence %d", err, r.stdout, l.Fence)
	}
	// The keeper renews every ttl/3 = 1s: the run learns of it then.
	res := holder.finish(t, 15*time.Second)
	if res.code != 76 {
		t.Errorf("the broken run: exit %d, want 76; stderr %q", res.code, res.stderr)
	}
	if res.took > 15*time.Second {
		t.Errorf("the broken run took %v", res.took)
	}
	h := historyJSON(t, n, redis)
	host, _ := os.Hostname()
	if len(h) != 1 || h[0].Ending != "broken" || h[0].Reason != "stuck since 02:00" || !strings.HasSuffix(h[0].By, "@"+host) {
		t.Errorf("got %+v, want the broken grant, by user@%s", h, host)
	}
	if r := lh(t, "break", n, redis, "--reason", "again"); r.code != 1 || !strings.Contains(r.stderr, "not held") {
		t.Errorf("nothing to break: exit %d, stderr %q, want 1", r.code, r.stderr)
	}
}

// TestBreakThroughTheServerNeedsAdmin: a write token gets 77, an admin
// token breaks, and the server records the token's label.
func TestBreakThroughTheServerNeedsAdmin(t *testing.T) {
	const writer, admin = "writer-token-0123456789", "admin-token-0123456789"
	auth := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(auth, []byte(writer+" write *\n"+admin+" admin *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := startServerURL(t, "--auth-file", auth)
	n := name(t)
	if _, err := client(t).Acquire(bg, n, &lease.AcquireOptions{TTL: time.Minute, Holder: "h"}); err != nil {
		t.Fatal(err)
	}
	if r := lh(t, "break", n, "--server", url, "--auth-token", writer, "--reason", "r"); r.code != 77 || !strings.Contains(r.stderr, "admin") {
		t.Errorf("write token: exit %d, stderr %q, want 77 naming admin", r.code, r.stderr)
	}
	if r := lh(t, "break", n, "--server", url, "--auth-token", admin, "--reason", "r"); r.code != 0 || !strings.Contains(r.stderr, "broke") {
		t.Fatalf("admin token: exit %d, stderr %q", r.code, r.stderr)
	}
	h := historyJSON(t, n, "--server", url, "--auth-token", writer)
	if len(h) != 1 || !strings.Contains(h[0].By, "auth file line 2") || strings.Contains(h[0].By, admin) {
		t.Errorf("got %+v, want the admin token's label, never the token", h)
	}
}
