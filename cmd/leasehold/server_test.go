package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

// startServe starts `leasehold serve` on Redis srv and a free port, stopped
// when the test ends, and returns its URL.
func startServerURL(t *testing.T, args ...string) string {
	t.Helper()
	return startServerOn(t, srv.URL(), args...)
}

// startServerOn is startServerURL on the Redis at redisURL.
func startServerOn(t *testing.T, redisURL string, args ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := startLH(t, append([]string{"serve", "--redis", redisURL, "--listen", addr}, args...)...)
	t.Cleanup(func() {
		syscall.Kill(s.pid, syscall.SIGTERM)
		s.finish(t, 10*time.Second)
	})
	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("leasehold serve not ready within 10s: %v; stderr %q", err, s.errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClientCommandsOverTheServer(t *testing.T) {
	url := startServerURL(t)
	n := name(t)
	r := lh(t, "acquire", n, "--ttl", "5s", "--holder", "web-1", "--server", url)
	token := strings.TrimSpace(r.stdout)
	if r.code != 0 || lease.ValidateToken(token) != nil {
		t.Fatalf("acquire: exit %d stdout %q (%s); want the token alone", r.code, r.stdout, r.stderr)
	}
	if r := lh(t, "acquire", "--server", url, n); r.code != 75 || !strings.Contains(r.stderr, `held by "web-1"`) {
		t.Errorf("acquire held: exit %d stderr %q; want 75 naming the holder", r.code, r.stderr)
	}
	r = lh(t, "get", n, "--json", "--server", url)
	var got leaseJSON
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil || got.Holder != "web-1" || got.Token != "" {
		t.Errorf("get --json: exit %d stdout %q; want holder web-1 and no token", r.code, r.stdout)
	}
	if r := lh(t, "renew", n, "--token", token, "--ttl", "9s", "--server", url); r.code != 0 || !strings.Contains(r.stderr, "ttl 9s") {
		t.Errorf("renew: exit %d stderr %q; want 0, ttl 9s", r.code, r.stderr)
	}
	if r := lh(t, "list", "--prefix", n, "--server", url); r.code != 0 || !strings.Contains(r.stdout, n) {
		t.Errorf("list: exit %d stdout %q; want %s", r.code, r.stdout, n)
	}
	if r := lh(t, "release", n, "--token", token, "--server", url); r.code != 0 {
		t.Errorf("release: exit %d (%s)", r.code, r.stderr)
	}
	if r := lh(t, "release", n, "--token", token, "--server", url); r.code != 1 {
		t.Errorf("release again: exit %d (%s), want 1 (not found)", r.code, r.stderr)
	}
	// LEASEHOLD_SERVER is the default server.
	cmd := command("get", n)
	cmd.Env = append(cmd.Env, "LEASEHOLD_SERVER="+url)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != 1 || !strings.Contains(errb.String(), "not found") {
		t.Errorf("get via LEASEHOLD_SERVER: %v %q; want exit 1 not found", err, errb.String())
	}
	if r := lh(t, "get", n, "--server", "http://127.0.0.1:1"); r.code != 69 {
		t.Errorf("get from a server that is not there: exit %d, want 69", r.code)
	}
}

func TestRunOverTheServer(t *testing.T) {
	url := startServerURL(t)
	n := name(t)
	r := lh(t, "run", n, "--ttl", "1s", "--server", url, "--", "sh", "-c", `sleep 2.5; echo "$LEASE_FENCE"`)
	if r.code != 0 || strings.TrimSpace(r.stdout) == "" {
		t.Fatalf("run of 2.5s on a 1s lease: exit %d stdout %q (%s); want 0 and the fence", r.code, r.stdout, r.stderr)
	}
	dir := t.TempDir()
	s := startLH(t, "run", n, "--ttl", "1s", "--kill-after", "500ms", "--server", url, "--",
		"sh", "-c", `echo $$ > `+dir+`/pid; while :; do sleep 0.05; done`)
	waitFile(t, dir+"/pid", 5*time.Second)
	stolen := time.Now()
	rdb(t).Del(bg, "leasehold:{"+n+"}")
	r = s.finish(t, 5*time.Second)
	if r.code != 76 || time.Since(stolen) > 1500*time.Millisecond+500*time.Millisecond {
		t.Errorf("run with a stolen lease: exit %d after %v; want 76 within ttl + kill-after", r.code, time.Since(stolen))
	}
}

func TestAuthErrorsExit77(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(authFile, []byte("jobs-writer-4f9c2a7e1b write jobs:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := startServerURL(t, "--auth-file", authFile)
	for _, tc := range []struct {
		name  string
		args  []string
		env   string
		code  int
		wantE string
	}{
		{"no token", []string{"acquire", "jobs:a"}, "", 77, "--auth-token token or in leasehold_token"},
		{"wrong token", []string{"acquire", "jobs:a", "--auth-token", "nope-nope-nope"}, "", 77, "not in the server's auth file"},
		{"out of scope", []string{"acquire", "other:a", "--auth-token", "jobs-writer-4f9c2a7e1b"}, "", 77, "forbidden"},
		{"flag", []string{"acquire", "jobs:b", "--auth-token", "jobs-writer-4f9c2a7e1b"}, "", 0, ""},
		{"LEASEHOLD_TOKEN", []string{"acquire", "jobs:c"}, "LEASEHOLD_TOKEN=jobs-writer-4f9c2a7e1b", 0, ""},
		{"run out of scope", []string{"run", "other:b", "--auth-token", "jobs-writer-4f9c2a7e1b", "--server", url, "--", "true"}, "", 77, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args[0] != "run" {
				args = append(args, "--server", url)
			}
			cmd := command(args...)
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("got exit %d (%s), want %d", code, errb.String(), tc.code)
			}
			if !strings.Contains(strings.ToLower(errb.String()), tc.wantE) {
				t.Errorf("got stderr %q, want %q", errb.String(), tc.wantE)
			}
			if tc.code == 0 && lease.ValidateToken(strings.TrimSpace(out.String())) != nil {
				t.Errorf("got stdout %q, want a token", out.String())
			}
		})
	}
}

// TestRunHoldAboveMaxTTLIsAUsageError: a --hold that the server's --max-ttl
// cannot grant is refused before the command runs (exit 64, naming
// --max-ttl), and nothing is left in Redis; it used to run the command,
// fail to set the hold, exit 0 and let the next run in at once. A hold
// within the bound is kept, over the server as over Redis.
func TestRunHoldAboveMaxTTLIsAUsageError(t *testing.T) {
	url := startServerURL(t, "--max-ttl", "2s")
	dir := t.TempDir()
	for i, tc := range []struct {
		name string
		args []string
	}{
		{"server", []string{"--ttl", "1s", "--hold", "5s", "--server", url}},
		{"server, hold just over", []string{"--ttl", "1s", "--hold", "2001ms", "--server", url}},
		{"server, ttl over", []string{"--ttl", "3s", "--server", url}},
		{"redis", []string{"--ttl", "1s", "--hold", "25h", "--redis", srv.URL()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := name(t)[:len("TestRunHoldAboveMaxTTLIsAUsageError")] + "." + strconv.Itoa(i)
			ran := filepath.Join(dir, n)
			job := []string{"--", "sh", "-c", "echo ran >> " + ran}
			r := lh(t, append(append([]string{"run", n}, tc.args...), job...)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "--max-ttl") {
				t.Errorf("run %v: got exit %d stderr %q, want %d naming --max-ttl", tc.args, r.code, r.stderr, exitUsage)
			}
			if exists(ran) {
				t.Errorf("run %v: the command ran, want it refused before it runs", tc.args)
			}
			if k, err := rdb(t).Keys(bg, "leasehold:{"+n+"}*").Result(); err != nil || len(k) != 0 {
				t.Errorf("run %v: got keys %v (%v), want none: bad input changes nothing", tc.args, k, err)
			}
		})
	}

	n := name(t)
	ran := filepath.Join(dir, "ran")
	job := []string{"--", "sh", "-c", "echo ran >> " + ran}
	start := time.Now()
	r := lh(t, append([]string{"run", n, "--ttl", "1s", "--hold", "1500ms", "--server", url}, job...)...)
	if r.code != 0 || !exists(ran) {
		t.Fatalf("run --hold 1500ms under --max-ttl 2s: got exit %d (%s), want 0 and the command run", r.code, r.stderr)
	}
	l, err := client(t).Get(bg, n)
	if err != nil {
		t.Fatalf("Get after run --hold 1500ms: %v, want the lease kept", err)
	}
	if want := 1500*time.Millisecond - time.Since(start); l.TTL > want+200*time.Millisecond {
		t.Errorf("got remaining TTL %v, want at most about %v (grant + 1.5s)", l.TTL, want)
	}
	if r := lh(t, append([]string{"run", n, "--server", url, "--ttl", "1s"}, job...)...); r.code != 75 {
		t.Errorf("a run inside the hold got exit %d (%s), want 75", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(ran); string(b) != "ran\n" {
		t.Errorf("got the job's runs %q, want one", b)
	}
}

// TestWaitForeverOutlastsTheServersMaxWait: --wait forever waits past the
// server's --max-wait (1s here) by asking again, for acquire and run, and
// --wait over the bound is a usage error that names --max-wait and offers
// forever. It used to be "the wait 6m0s is out of range: use 0 to 5m0s",
// and forever was "--ttl: needs a unit".
func TestWaitForeverOutlastsTheServersMaxWait(t *testing.T) {
	url := startServerURL(t, "--max-wait", "1s")
	r := lh(t, "acquire", name(t)+".over", "--wait", "6m", "--server", url)
	if r.code != 64 || !strings.Contains(r.stderr, "--max-wait") || !strings.Contains(r.stderr, "--wait forever") {
		t.Errorf("--wait 6m over a 1s --max-wait: exit %d, stderr %q; want 64 naming --max-wait and --wait forever", r.code, r.stderr)
	}
	for _, tc := range []struct {
		name string
		args func(n string) []string
	}{
		{"acquire", func(n string) []string { return []string{"acquire", n, "--wait", "forever", "--server", url} }},
		{"run", func(n string) []string {
			return []string{"run", n, "--wait", "Forever", "--server", url, "--", "sh", "-c", `echo "$LEASE_FENCE"`}
		}},
		{"acquire over redis", func(n string) []string { return []string{"acquire", n, "--wait", "forever", "--redis", srv.Addr()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := name(t)
			other, err := client(t).Acquire(bg, n, &lease.AcquireOptions{TTL: 2500 * time.Millisecond, Holder: "other"})
			if err != nil {
				t.Fatal(err)
			}
			r := lh(t, tc.args(n)...)
			if r.code != 0 || strings.TrimSpace(r.stdout) == "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0 once the other's lease expired", r.code, r.stdout, r.stderr)
			}
			if r.took < 2*time.Second {
				t.Errorf("took %v: want it to have waited for the other's 2.5s lease", r.took)
			}
			if tc.name == "run" {
				if f, err := strconv.ParseInt(strings.TrimSpace(r.stdout), 10, 64); err != nil || f <= other.Fence {
					t.Errorf("run printed fence %q, want one above the other's %d", r.stdout, other.Fence)
				}
			}
		})
	}
}

// TestHealthExitsZeroOnlyWhenReady: leasehold health, for the image's
// HEALTHCHECK (distroless has no curl): 0 and silent when the server and its
// Redis answer; 69 with the reason when the server is not there or its Redis
// is down; --redis asks Redis; with no --server it finds the server by
// LEASEHOLD_LISTEN, as in the image.
func TestHealthExitsZeroOnlyWhenReady(t *testing.T) {
	rs := redistest.Start(t)
	url := startServerOn(t, rs.URL())
	withEnv := func(env []string, args ...string) result { return lhEnv(t, env, args...) }
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"ready", nil, []string{"health", "--server", url}, 0, ""},
		{"ready by LEASEHOLD_SERVER", []string{"LEASEHOLD_SERVER=" + url}, []string{"health"}, 0, ""},
		{"ready by LEASEHOLD_LISTEN", []string{"LEASEHOLD_LISTEN=" + strings.TrimPrefix(url, "http://")}, []string{"health"}, 0, ""},
		{"redis", nil, []string{"health", "--redis", rs.Addr()}, 0, ""},
		{"no server", nil, []string{"health", "--server", "http://127.0.0.1:1"}, 69, "not ready: the Leasehold server"},
		{"no redis", nil, []string{"health", "--redis", "127.0.0.1:1"}, 69, "not ready: redis"},
		{"bad timeout", nil, []string{"health", "--server", url, "--timeout", "0s"}, 64, "--timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := withEnv(tc.env, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || (tc.code == 0 && r.stderr+r.stdout != "") {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", r.code, r.stdout, r.stderr, tc.code, tc.want)
			}
		})
	}
	rs.Kill()
	r := lh(t, "health", "--server", url)
	if r.code != 69 || !strings.Contains(r.stderr, "not ready") {
		t.Errorf("with the server's Redis killed: exit %d, stderr %q; want 69, not ready", r.code, r.stderr)
	}
}

func TestListenURL(t *testing.T) {
	for in, want := range map[string]string{
		"":               "http://127.0.0.1:7070",
		"0.0.0.0:7070":   "http://127.0.0.1:7070",
		"[::]:8080":      "http://127.0.0.1:8080",
		":9090":          "http://127.0.0.1:9090",
		"10.0.0.5:7070":  "http://10.0.0.5:7070",
		"lh.local:7070":  "http://lh.local:7070",
		"[fe80::1]:7070": "http://[fe80::1]:7070",
		"garbage":        "http://127.0.0.1:7070",
	} {
		if got := listenURL(in); got != want {
			t.Errorf("listenURL(%q) = %q, want %q", in, got, want)
		}
	}
}
