package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
)

// buildServeBinary builds the real binary once per test.
func buildServeBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "leasehold")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serveProc is a running `leasehold serve`.
type serveProc struct {
	cmd  *exec.Cmd
	url  string
	logs chan string // stderr lines
	done chan error
}

var serveURLPattern = regexp.MustCompile(`url=(https?://\S+)`)

func startServe(t *testing.T, bin string, env []string, args ...string) *serveProc {
	t.Helper()
	return startServeCmd(t, bin, env, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
}

// startServeCmd is startServe with the whole command line after the binary.
func startServeCmd(t *testing.T, bin string, env []string, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, logs: make(chan string, 1000), done: make(chan error, 1)}
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if m := serveURLPattern.FindStringSubmatch(line); m != nil {
				select {
				case urlCh <- m[1]:
				default:
				}
			}
			select {
			case p.logs <- line:
			default:
			}
		}
		close(p.logs)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case p.url = <-urlCh:
	case <-time.After(20 * time.Second):
		t.Fatal("leasehold serve did not log its URL within 20s")
	}
	return p
}

func (p *serveProc) stop(t *testing.T) (code int, logs string) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("leasehold serve did not exit within 20s of SIGTERM")
	}
	var b strings.Builder
	for l := range p.logs {
		b.WriteString(l + "\n")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), b.String()
	}
	return 0, b.String()
}

func servePost(t *testing.T, url string) (int, map[string]any, http.Header) {
	t.Helper()
	res, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("POST %s: body %q is not JSON", url, b)
	}
	return res.StatusCode, v, res.Header
}

func TestServeBinaryOnRedisAndEmbedded(t *testing.T) {
	bin := buildServeBinary(t)
	rs := redistest.Start(t)
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		wantWarn string
	}{
		{"redis flag", nil, []string{"--redis=" + rs.URL(), "--max-ttl", "1h"}, "redis_autopipeline=true"},
		{"redis env", []string{"LEASEHOLD_REDIS=" + rs.URL(), "LEASEHOLD_KEY_PREFIX=envtest:"}, nil, ""},
		{"redis bare host:port", nil, []string{"--redis", rs.Addr()}, "using redis"},
		{"autopipeline off by flag", nil, []string{"--redis", rs.URL(), "--no-redis-autopipeline"}, "redis_autopipeline=false"},
		{"autopipeline off by env", []string{"LEASEHOLD_REDIS_AUTOPIPELINE=false"}, []string{"--redis", rs.URL()}, "redis_autopipeline=false"},
		{"embedded", nil, nil, "EMBEDDED"},
		{"census off", nil, []string{"--redis", rs.URL(), "--census-interval=0"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startServe(t, bin, tc.env, tc.args...)
			name := strings.ReplaceAll(t.Name(), "/", ".")
			name = strings.ReplaceAll(name, " ", "_")
			st, g, _ := servePost(t, p.url+"/v1/leases/"+name+"/acquire?ttl=30s&holder=a")
			if st != 200 || g["token"] == "" {
				t.Fatalf("acquire: got %d %v", st, g)
			}
			// The census sees this one lease (the others' are released), on
			// Redis and on the embedded store alike.
			res, err := http.Get(p.url + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			m, _ := io.ReadAll(res.Body)
			res.Body.Close()
			wantHeld := "\nleasehold_leases_held 1\n"
			if tc.name == "census off" {
				wantHeld = ""
			}
			if !strings.Contains(string(m), "\nleasehold_backend_up 1\n") || wantHeld != "" && !strings.Contains(string(m), wantHeld) ||
				wantHeld == "" && strings.Contains(string(m), "leasehold_leases_held") {
				t.Errorf("metrics: want leasehold_backend_up 1 and %q, got\n%s", wantHeld, m)
			}
			st, h, hdr := servePost(t, p.url+"/v1/leases/"+name+"/acquire")
			if st != 409 || h["error"] != "lease_held" || hdr.Get("Retry-After") != "30" {
				t.Errorf("second acquire: got %d %v Retry-After %q, want 409 lease_held Retry-After 30", st, h, hdr.Get("Retry-After"))
			}
			st, r, _ := servePost(t, p.url+"/v1/leases/"+name+"/release?token="+g["token"].(string))
			if st != 200 || r["released"] != true {
				t.Errorf("release: got %d %v", st, r)
			}
			code, logs := p.stop(t)
			if code != 0 {
				t.Errorf("exit code after SIGTERM: got %d, want 0\n%s", code, logs)
			}
			if !strings.Contains(logs, "stopped") {
				t.Errorf("logs: want a clean stop, got\n%s", logs)
			}
			if tc.wantWarn != "" && !strings.Contains(logs, tc.wantWarn) {
				t.Errorf("logs: want %q, got\n%s", tc.wantWarn, logs)
			}
			if strings.Contains(logs, g["token"].(string)) {
				t.Errorf("logs contain the token")
			}
		})
	}
	n, err := rs.Client(t).Exists(context.Background(), "envtest:{TestServeBinaryOnRedisAndEmbedded.redis_env}").Result()
	if err != nil || n != 1 {
		t.Errorf("LEASEHOLD_KEY_PREFIX: got %d keys envtest:{...} (%v), want 1", n, err)
	}
}

func TestServeShutdownAnswersWaitersAndRejectsBadConfig(t *testing.T) {
	bin := buildServeBinary(t)
	rs := redistest.Start(t)
	p := startServe(t, bin, nil, "--redis", rs.URL())
	st, _, _ := servePost(t, p.url+"/v1/leases/w/acquire?ttl=1m")
	if st != 200 {
		t.Fatalf("acquire: got %d", st)
	}
	type answer struct {
		st   int
		body map[string]any
	}
	got := make(chan answer, 1)
	go func() {
		res, err := http.Post(p.url+"/v1/leases/w/acquire?wait=1m", "", nil)
		if err != nil {
			got <- answer{st: -1}
			return
		}
		defer res.Body.Close()
		var v map[string]any
		json.NewDecoder(res.Body).Decode(&v)
		got <- answer{res.StatusCode, v}
	}()
	// Wait until the waiter is in, by the server's own gauge.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(p.url + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if strings.Contains(string(b), "leasehold_waiting_acquires 1") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiting acquire never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	code, logs := p.stop(t)
	a := <-got
	if a.st != 503 || a.body["error"] != "shutting_down" {
		t.Errorf("waiting acquire at shutdown: got %d %v, want 503 shutting_down", a.st, a.body)
	}
	if code != 0 || time.Since(start) > 5*time.Second {
		t.Errorf("got exit %d after %v, want 0 promptly\n%s", code, time.Since(start), logs)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "auth")
	os.WriteFile(bad, []byte("# tokens\nci-runner-4f9c2a7e1b write jobs:\nnot a valid line at all\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth-file", bad}, "line 3"},
		{[]string{"--redis", rs.URL(), "--redis-cluster", "a:1"}, "give one of"},
		{[]string{"--tls-cert", "x"}, "--tls-key"},
		{[]string{"--redis-sentinel", "a:1"}, "--sentinel-master"},
		{[]string{"--redis", "http://nope"}, "--redis"},
	} {
		out, err := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.args...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(string(out), tc.want) {
			t.Errorf("serve %v: got %v\n%s\nwant exit %d mentioning %q", tc.args, err, out, exitUsage, tc.want)
		}
	}
}

func TestServeWarnsOnPublicListenWithoutAuth(t *testing.T) {
	bin := buildServeBinary(t)
	cmd := exec.Command(bin, "serve", "--listen", "0.0.0.0:0")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(stderr)
	found := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "WITHOUT AUTH") {
			found = true
		}
		if strings.Contains(sc.Text(), "leasehold serving") {
			break
		}
	}
	if !found {
		t.Errorf("want a warning for 0.0.0.0 without auth")
	}
}

// TestServeOnEveryBackend runs one acquire, conflict and release through the
// binary on Redis Cluster, Sentinel and Redlock, all real redis-servers.
func TestServeOnEveryBackend(t *testing.T) {
	bin := buildServeBinary(t)
	cluster := redistest.StartCluster(t, 3)
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "lh-serve")
	r1, r2, r3 := redistest.Start(t), redistest.Start(t), redistest.Start(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"cluster", []string{"--redis-cluster", strings.Join(cluster.Addrs(), ",")}},
		{"cluster-plain", []string{"--redis-cluster", strings.Join(cluster.Addrs(), ","), "--no-redis-autopipeline"}},
		{"sentinel", []string{"--redis-sentinel", sentinel.Addr(), "--sentinel-master", "lh-serve"}},
		// The masters have just started: without the flag, the restart delay
		// (TestServeRedlockRestartDelay) would refuse every grant.
		{"redlock", []string{"--redlock", r1.URL() + "," + r2.URL() + "," + r3.URL(), "--redlock-restart-delay", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startServe(t, bin, nil, tc.args...)
			name := "every-backend-" + tc.name
			st, g, _ := servePost(t, p.url+"/v1/leases/"+name+"/acquire?ttl=30s&holder=a")
			if st != 200 {
				t.Fatalf("acquire: got %d %v", st, g)
			}
			st, h, hdr := servePost(t, p.url+"/v1/leases/"+name+"/acquire")
			if st != 409 || h["error"] != "lease_held" || hdr.Get("Retry-After") == "" {
				t.Errorf("second acquire: got %d %v", st, h)
			}
			res, err := http.Get(p.url + "/readyz")
			if err != nil || res.StatusCode != 200 {
				t.Errorf("readyz: got %v %v, want 200", res, err)
			}
			if res != nil {
				res.Body.Close()
			}
			st, r, _ := servePost(t, p.url+"/v1/leases/"+name+"/release?token="+g["token"].(string))
			if st != 200 || r["released"] != true {
				t.Errorf("release: got %d %v", st, r)
			}
			if code, logs := p.stop(t); code != 0 {
				t.Errorf("exit %d\n%s", code, logs)
			}
		})
	}
}

// TestServeRedlockRestartDelay: by default a Redlock master that started
// less than --max-ttl ago does not count toward grants; the flag or its
// variable sets the delay, and 0 turns it off.
func TestServeRedlockRestartDelay(t *testing.T) {
	bin := buildServeBinary(t)
	r1, r2, r3 := redistest.Start(t), redistest.Start(t), redistest.Start(t)
	masters := []string{"--redlock", r1.URL() + "," + r2.URL() + "," + r3.URL()}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want int
		log  string // in the "using redlock" line
	}{
		{"default is max-ttl", nil, []string{"--max-ttl", "1h"}, 503, "restart_delay=1h0m36.002s"}, // plus the drift allowance
		{"flag", nil, []string{"--redlock-restart-delay", "2h"}, 503, "restart_delay=2h0m0s"},
		{"flag off", nil, []string{"--redlock-restart-delay=0"}, 200, "restart_delay=0s"},
		{"env off", []string{"LEASEHOLD_REDLOCK_RESTART_DELAY=0s"}, nil, 200, "restart_delay=0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startServe(t, bin, tc.env, append(masters, tc.args...)...)
			name := "restart-delay-" + strings.ReplaceAll(tc.name, " ", "-")
			st, g, _ := servePost(t, p.url+"/v1/leases/"+name+"/acquire?ttl=1s")
			if st != tc.want {
				t.Errorf("acquire on masters that have just started: got %d %v, want %d", st, g, tc.want)
			}
			if st == 503 && g["error"] != "backend_unavailable" {
				t.Errorf("got error %v, want backend_unavailable", g["error"])
			}
			code, logs := p.stop(t)
			if code != 0 {
				t.Errorf("exit %d\n%s", code, logs)
			}
			if !strings.Contains(logs, tc.log) {
				t.Errorf("logs do not say %s:\n%s", tc.log, logs)
			}
		})
	}
	ok := serveCmd{MaxTTL: time.Hour, MaxWait: time.Minute, FenceRetention: 24 * time.Hour, RedisTimeout: time.Second, ShutdownTimeout: time.Second, KeyPrefix: "x:",
		CensusLimit: 10000, History: 20}
	if err := ok.check(); err != nil {
		t.Errorf("check of sane flags: %v", err)
	}
	bad := ok
	bad.RedlockRestartDelay = new(-time.Second)
	if err := bad.check(); err == nil || !strings.Contains(err.Error(), "--redlock-restart-delay") {
		t.Errorf("check with --redlock-restart-delay -1s: got %v, want an error naming it", err)
	}
	for _, n := range []int{-1, 1001} { // lease.MaxHistory + 1
		bad = ok
		bad.History = n
		if err := bad.check(); err == nil || !strings.Contains(err.Error(), "--history") {
			t.Errorf("check with --history %d: got %v, want an error naming it", n, err)
		}
	}
	bad = ok
	bad.FenceRetention = 30 * time.Minute
	if err := bad.check(); err == nil || !strings.Contains(err.Error(), "--fence-retention 30m0s is shorter than --max-ttl 1h0m0s") {
		t.Errorf("check with --fence-retention below --max-ttl: got %v, want an error naming both", err)
	}
}

func TestServeStartsWithRedisDownAndReadyzTells(t *testing.T) {
	bin := buildServeBinary(t)
	rs := redistest.Start(t)
	url := rs.URL()
	rs.Kill()
	p := startServe(t, bin, nil, "--redis", url, "--redis-timeout", "200ms")
	get := func(path string) int {
		res, err := http.Get(p.url + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := get("/healthz"); got != 200 {
		t.Errorf("healthz: got %d, want 200", got)
	}
	if got := get("/readyz"); got != 503 {
		t.Errorf("readyz with Redis down: got %d, want 503", got)
	}
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for get("/readyz") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("readyz did not turn 200 within 10s of Redis coming up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, logs := p.stop(t)
	if code != 0 || !strings.Contains(logs, "redis does not answer at start") {
		t.Errorf("got exit %d, want 0 and a warning at start:\n%s", code, logs)
	}
}

func TestServePprofOnlyWhenAsked(t *testing.T) {
	bin := buildServeBinary(t)
	rs := redistest.Start(t)
	p := startServe(t, bin, nil, "--redis", rs.URL(), "--pprof", "127.0.0.1:0")
	// The pprof line comes before the line with the API's URL.
	addr := ""
	for addr == "" {
		line, ok := <-p.logs
		if !ok {
			t.Fatal("got no pprof_addr in the logs")
		}
		if m := regexp.MustCompile(`pprof_addr=(\S+)`).FindStringSubmatch(line); m != nil {
			addr = m[1]
		}
	}
	for _, tc := range []struct {
		url  string
		want int
	}{
		{"http://" + addr + "/debug/pprof/cmdline", http.StatusOK},
		{p.url + "/debug/pprof/cmdline", http.StatusNotFound}, // not on the API
	} {
		res, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("GET %s: got %d, want %d", tc.url, res.StatusCode, tc.want)
		}
	}
	if code, logs := p.stop(t); code != 0 {
		t.Errorf("got exit code %d, want 0; logs:\n%s", code, logs)
	}
}

// Redis credentials come with the URL: the default user's password
// (redis://:PASS@...) and an ACL user (redis://USER:PASS@...). A wrong
// password keeps the server up but not ready, and the log says why.
func TestServeWithRedisCredentials(t *testing.T) {
	bin := buildServeBinary(t)
	rs := redistest.Start(t)
	admin := rs.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "alice", "on", ">alice-secret", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "requirepass", "default-secret").Err(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, userinfo string
		ready          bool
	}{
		{"default user", ":default-secret", true},
		{"ACL user", "alice:alice-secret", true},
		{"wrong password", "alice:wrong", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url := "redis://" + tt.userinfo + "@" + rs.Addr() + "/0"
			p := startServe(t, bin, nil, "--redis", url, "--redis-timeout", "500ms")
			res, err := http.Get(p.url + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			code, body, _ := servePost(t, p.url+"/v1/leases/creds-"+strings.ReplaceAll(tt.name, " ", "-")+"/acquire?ttl=5s")
			_, logs := p.stop(t)
			if tt.ready {
				if res.StatusCode != 200 || code != 200 || body["token"] == nil {
					t.Errorf("readyz %d, acquire %d %v; want 200 and a grant\n%s", res.StatusCode, code, body, logs)
				}
				if strings.Contains(logs, "secret") {
					t.Errorf("the log shows the Redis password:\n%s", logs)
				}
				return
			}
			if res.StatusCode != 503 || code != 503 || body["error"] != "backend_unavailable" {
				t.Errorf("readyz %d, acquire %d %v; want 503 backend_unavailable", res.StatusCode, code, body)
			}
			if !strings.Contains(strings.ToLower(logs), "wrongpass") && !strings.Contains(strings.ToLower(logs), "invalid username-password") {
				t.Errorf("want the log to say the credentials were refused:\n%s", logs)
			}
		})
	}
}

// TestImageListenComesFromItsEnvironment runs the Dockerfile's ENTRYPOINT
// with its ENV and a user's -e LEASEHOLD_LISTEN (which docker puts after the
// image's): the server listens where the user said. The ENTRYPOINT used to
// carry --listen, which beat any -e LEASEHOLD_LISTEN without a word.
func TestImageListenComesFromItsEnvironment(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var env, entry, health []string
	for _, line := range strings.Split(string(b), "\n") {
		if _, cmd, ok := strings.Cut(line, "    CMD "); ok && strings.HasPrefix(cmd, "[") {
			if err := json.Unmarshal([]byte(cmd), &health); err != nil {
				t.Fatalf("HEALTHCHECK CMD: %v", err)
			}
		}
		switch {
		case strings.HasPrefix(line, "ENV "):
			env = append(env, strings.TrimPrefix(line, "ENV "))
		case strings.HasPrefix(line, "ENTRYPOINT "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ENTRYPOINT ")), &entry); err != nil {
				t.Fatalf("ENTRYPOINT: %v", err)
			}
		}
	}
	if len(entry) < 2 || entry[1] != "serve" || !slices.Contains(env, "LEASEHOLD_LISTEN=0.0.0.0:7070") {
		t.Fatalf("Dockerfile: ENTRYPOINT %q, ENV %q; want leasehold serve, listening by LEASEHOLD_LISTEN=0.0.0.0:7070", entry, env)
	}
	for _, a := range entry {
		if strings.HasPrefix(a, "--listen") {
			t.Fatalf("the ENTRYPOINT %q gives --listen, which beats -e LEASEHOLD_LISTEN", entry)
		}
	}
	bin := buildServeBinary(t)
	p := startServeCmd(t, bin, append(env, "LEASEHOLD_LISTEN=127.0.0.1:0"), entry[1:]...)
	if !strings.HasPrefix(p.url, "http://127.0.0.1:") {
		t.Errorf("listening at %s, want the user's 127.0.0.1", p.url)
	}
	// The HEALTHCHECK, with the environment the server had (its real port).
	if len(health) < 2 || health[1] != "health" {
		t.Fatalf("Dockerfile HEALTHCHECK CMD %q, want leasehold health", health)
	}
	hc := exec.Command(bin, health[1:]...)
	hc.Env = append(env, "LEASEHOLD_LISTEN="+strings.TrimPrefix(p.url, "http://"))
	if out, err := hc.CombinedOutput(); err != nil {
		t.Errorf("the HEALTHCHECK %q: %v\n%s", health, err, out)
	}
	if code, logs := p.stop(t); code != 0 {
		t.Errorf("exit %d after SIGTERM\n%s", code, logs)
	}
}

// TestServeLogsGoRedisLinesInItsOwnFormat: with Redis down, go-redis's own
// dial-retry lines went to stderr raw ("redis: 2026/12/04 00:58:44
// pool.go:770: ..."), between the server's structured lines; they are the
// server's log lines now, at WARN.
func TestServeLogsGoRedisLinesInItsOwnFormat(t *testing.T) {
	p := startServe(t, buildServeBinary(t), nil, "--redis", "127.0.0.1:1", "--redis-timeout", "300ms")
	for range 5 { // each failed request makes go-redis retry its dials
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
		}
	}
	_, logs := p.stop(t)
	var fromRedis int
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.HasPrefix(line, "time=") {
			t.Errorf("a log line not in the server's format: %q", line)
		}
		if strings.Contains(line, "from=go-redis") && strings.Contains(line, "level=WARN") {
			fromRedis++
		}
	}
	if fromRedis == 0 {
		t.Errorf("no go-redis line (from=go-redis, WARN) in the logs:\n%s", logs)
	}
}
