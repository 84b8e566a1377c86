package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// bin is the leasehold binary, built once; srv is a real redis-server.
var (
	bin string
	srv *redistest.Server
)

func TestMain(m *testing.M) {
	if path := os.Getenv("LHTEST_TERM_FILE"); path != "" {
		os.Exit(termStamp(path)) // a command of a run test, not the tests
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "leasehold-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "leasehold")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: go build: %v\n%s", err, out)
		return 1
	}
	if srv, err = redistest.New(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer srv.Close()
	return m.Run()
}

var bg = context.Background()

// result is a finished leasehold process.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// command returns an exec.Cmd of the binary with no LEASEHOLD_* or LEASE_*
// variables from the test's own environment.
func command(args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	// A command that `run` started outlives a killed leasehold with our
	// output pipes open: let Wait return anyway.
	cmd.WaitDelay = 5 * time.Second
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEASEHOLD_") && !strings.HasPrefix(kv, "LEASE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// lh runs the binary to its end (at most 30s).
func lh(t *testing.T, args ...string) result {
	t.Helper()
	return lhEnv(t, nil, args...)
}

// lhEnv is lh with more environment variables (KEY=value).
func lhEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := command(args...)
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return wait(t, cmd, &out, &errb, start)
}

func wait(t *testing.T, cmd *exec.Cmd, out, errb *bytes.Buffer, start time.Time) result {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("leasehold %q still running after 30s", cmd.Args[1:])
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
}

// name turns the test's name into a lease name.
func name(t *testing.T) string {
	return strings.NewReplacer("/", ".", " ", "_", "#", "-").Replace(t.Name())
}

func rdb(t *testing.T) *redis.Client { return srv.Client(t) }

func client(t *testing.T) *lease.Client { return lease.New(rdb(t), nil) }

func TestAcquirePrintsOnlyTheTokenWithFlagsBeforeOrAfterName(t *testing.T) {
	for _, tc := range []struct {
		name string
		args func(n string) []string
	}{
		{"flags after name", func(n string) []string {
			return []string{"acquire", n, "--ttl", "5s", "--holder", "h1", "--redis", srv.URL()}
		}},
		{"flags before name", func(n string) []string {
			return []string{"acquire", "--ttl=5s", "--holder=h1", "--redis=" + srv.URL(), n}
		}},
		{"mixed", func(n string) []string {
			return []string{"acquire", "--redis", srv.URL(), n, "--ttl", "5s", "--holder", "h1"}
		}},
		{"connection flag before the command", func(n string) []string {
			return []string{"--redis", srv.URL(), "acquire", n, "--ttl", "5s", "--holder", "h1"}
		}},
		{"connection flag with equals sign before the command", func(n string) []string {
			return []string{"--redis=" + srv.URL(), "acquire", "--ttl", "5s", n, "--holder", "h1"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := name(t)
			r := lh(t, tc.args(n)...)
			if r.code != 0 {
				t.Fatalf("got exit %d (%s), want 0", r.code, r.stderr)
			}
			token := strings.TrimSuffix(r.stdout, "\n")
			if err := lease.ValidateToken(token); err != nil || strings.Contains(token, "\n") {
				t.Fatalf("got stdout %q, want the token alone on one line", r.stdout)
			}
			l, err := client(t).Verify(bg, n, lease.Proof{Token: token})
			if err != nil || l.Holder != "h1" || l.TTL > 5*time.Second || l.TTL < 4*time.Second {
				t.Errorf("Verify(token) = %+v, %v; want held by h1 with a 5s TTL", l, err)
			}
			if !strings.Contains(r.stderr, fmt.Sprintf("fence %d", l.Fence)) || strings.Contains(r.stderr, token) {
				t.Errorf("got stderr %q, want the grant with its fence and without the token", r.stderr)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	c := client(t)
	held := name(t) + ".held"
	h, err := c.Acquire(bg, held, &lease.AcquireOptions{TTL: time.Minute, Holder: "other"})
	if err != nil {
		t.Fatal(err)
	}
	down := "redis://127.0.0.1:1/0"
	tok := "-" + lease.NewToken()[1:] // tokens may start with "-": it must parse as a value
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"held", []string{"acquire", held}, 75, `held by "other"`},
		{"held -E", []string{"acquire", held, "-E", "3"}, 3, "for another"},
		{"held --conflict-exit-code", []string{"acquire", "--conflict-exit-code", "0", held}, 0, "held"},
		{"run held", []string{"run", held, "--redis", srv.URL(), "--", "false"}, 75, "held"},
		{"run held -q", []string{"run", held, "-q", "-E", "0", "--redis", srv.URL(), "--", "false"}, 0, ""},
		{"renew not found", []string{"renew", "nothing-here", "--token", tok}, 1, "not found"},
		{"renew not holder", []string{"renew", held, "--token", tok}, 1, "not by this token"},
		{"release not holder", []string{"release", held, "--token", tok}, 1, `held by "other"`},
		{"release not found", []string{"release", "nothing-here", "--token", tok}, 1, "not found"},
		{"get not found", []string{"get", "nothing-here"}, 1, "not found"},
		{"get", []string{"get", held}, 0, ""},
		{"invalid name", []string{"acquire", "bad/name"}, 64, "use only"},
		{"ttl without unit", []string{"acquire", "x", "--ttl", "30"}, 64, "needs a unit"},
		{"unknown flag", []string{"acquire", "x", "--nope"}, 64, "unknown flag"},
		{"no command", []string{"run", "x"}, 64, "after --"},
		{"hold without unit", []string{"run", "x", "--hold", "10", "--redis", srv.URL(), "--", "true"}, 64, "needs a unit"},
		{"hold 0s", []string{"run", "x", "--hold", "0s", "--redis", srv.URL(), "--", "true"}, 0, ""},
		{"kill-after without unit", []string{"run", "x", "--kill-after", "5", "--redis", srv.URL(), "--", "true"}, 64, "kill-after"},
		{"renew without token", []string{"renew", "x"}, 64, "--token"},
		{"renew --token with no value", []string{"renew", "x", "--redis", srv.URL(), "--token"}, 64, "--token is empty"},
		{"release --token that is no token", []string{"release", "x", "--token", "short"}, 64, "--token:"},
		{"flag before the command", []string{"--ttl", "5s", "acquire", "x"}, 64, "--ttl is a flag of acquire, renew, run, elect: put it after the command"},
		{"unknown flag before the command", []string{"--bogus", "acquire", "x"}, 64, "unknown flag --bogus"},
		{"redis down", []string{"acquire", "x", "--redis", down}, 69, "unavailable"},
		{"redis down on get", []string{"get", "x", "--redis", down}, 69, "unavailable"},
		{"server down", []string{"get", "x", "--server", "http://127.0.0.1:1"}, 69, "the Leasehold server is unavailable"},
		{"server down says what to do", []string{"--server", "http://127.0.0.1:1", "acquire", "x"}, 69, "start one with `leasehold serve`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if joined := strings.Join(args, " "); !strings.Contains(joined, "--redis") && !strings.Contains(joined, "--server") {
				args = append(args, "--redis", srv.URL())
			}
			r := lh(t, args...)
			if r.code != tc.code {
				t.Errorf("got exit %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			if tc.stderr == "" && r.stderr != "" {
				t.Errorf("got stderr %q, want none", r.stderr)
			}
			if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(tc.stderr)) {
				t.Errorf("got stderr %q, want it to mention %q", r.stderr, tc.stderr)
			}
		})
	}
	if l, err := c.Verify(bg, held, lease.Proof{Token: h.Token}); err != nil || l.Fence != h.Fence {
		t.Errorf("the held lease after all that: %v, %v; want untouched", l, err)
	}
}

func TestRenewReleaseGetListJSON(t *testing.T) {
	n := name(t)
	r := lh(t, "acquire", n, "--ttl", "10s", "--holder", "me", "--metadata", "m1", "--redis", srv.URL(), "--json")
	var grant leaseJSON
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &grant) != nil || grant.Token == "" || grant.Fence == 0 {
		t.Fatalf("acquire --json: exit %d, stdout %q; want a grant with token and fence", r.code, r.stdout)
	}
	r = lh(t, "renew", n, "--ttl", "20s", "--redis", srv.URL(), "--json", "--token", grant.Token)
	var renewed leaseJSON
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &renewed) != nil || renewed.Fence != grant.Fence || renewed.TTLMillis != 20000 {
		t.Errorf("renew --json: exit %d, stdout %q; want fence %d ttl_ms 20000", r.code, r.stdout, grant.Fence)
	}
	r = lh(t, "get", n, "--redis", srv.URL(), "--json")
	var got map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil {
		t.Fatalf("get --json: exit %d, stdout %q", r.code, r.stdout)
	}
	if _, ok := got["token"]; ok || got["holder"] != "me" || got["metadata"] != "m1" || got["fence"] != float64(grant.Fence) {
		t.Errorf("get --json = %v, want holder me, metadata m1, fence %d and no token", got, grant.Fence)
	}
	for _, other := range []string{n + ".b", n + ".c"} {
		if _, err := client(t).Acquire(bg, other, &lease.AcquireOptions{TTL: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	r = lh(t, "list", "--prefix", n, "--limit", "1", "--redis", srv.URL(), "--json")
	var page struct{ Leases []leaseJSON }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Leases) != 3 {
		t.Errorf("list --json over pages of 1: exit %d, stdout %q; want 3 leases", r.code, r.stdout)
	}
	r = lh(t, "list", "--prefix", n, "--redis", srv.URL())
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); r.code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Errorf("list: exit %d, stdout %q; want a header and 3 rows", r.code, r.stdout)
	}
	r = lh(t, "release", n, "--redis", srv.URL(), "--token", grant.Token)
	if r.code != 0 {
		t.Errorf("release: exit %d (%s)", r.code, r.stderr)
	}
	if _, err := client(t).Get(bg, n); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after release: %v, want not found", err)
	}
}

func TestTokenComesFromLEASE_TOKEN(t *testing.T) {
	n := name(t)
	l, err := client(t).Acquire(bg, n, &lease.AcquireOptions{TTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cmd := command("release", n, "--redis", srv.URL())
	cmd.Env = append(cmd.Env, "LEASE_TOKEN="+l.Token)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release with LEASE_TOKEN: %v: %s", err, out)
	}
}

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	for _, c := range []string{"serve", "acquire", "renew", "release", "get", "list", "run", "elect", "leader", "history", "break", "health"} {
		r := lh(t, c, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "leasehold "+c) {
			t.Errorf("leasehold %s --help: exit %d, want help with examples; got %q", c, r.code, r.stdout)
		}
	}
}

// alive reports whether process pid exists and is not a zombie (an orphan
// whose reaping is up to init, which in a container may never come).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// TestHelpAndVersionTakeNoEnvironment: --help and --version have no
// LEASEHOLD_* variable, so LEASEHOLD_VERSION and LEASEHOLD_HELP set to
// anything (false, empty, 1) leave every command, serve too, doing its work.
func TestHelpAndVersionTakeNoEnvironment(t *testing.T) {
	for i, env := range [][]string{
		{"LEASEHOLD_VERSION=false"},
		{"LEASEHOLD_VERSION="},
		{"LEASEHOLD_VERSION=1", "LEASEHOLD_HELP=1"},
		{"LEASEHOLD_HELP=true"},
	} {
		n := fmt.Sprintf("TestHelpAndVersionTakeNoEnvironment.%d", i)
		t.Run(strings.Join(env, " "), func(t *testing.T) {
			run := func(args ...string) result { t.Helper(); return lhEnv(t, env, args...) }
			r := run("acquire", n, "--ttl", "5s", "--redis", srv.URL())
			token := strings.TrimSpace(r.stdout)
			if r.code != 0 || lease.ValidateToken(token) != nil {
				t.Fatalf("acquire: got exit %d stdout %q stderr %q, want 0 and a token", r.code, r.stdout, r.stderr)
			}
			if r := run("get", n+".missing", "--redis", srv.URL()); r.code != 1 {
				t.Errorf("get of a missing lease: got exit %d stdout %q, want 1", r.code, r.stdout)
			}
			if r := run("release", n, "--token", token, "--redis", srv.URL()); r.code != 0 {
				t.Errorf("release: got exit %d stdout %q stderr %q, want 0", r.code, r.stdout, r.stderr)
			}
			if _, err := client(t).Get(bg, n); !errors.Is(err, lease.ErrNotFound) {
				t.Errorf("after release: Get got %v, want not_found", err)
			}
			if r := run("--version"); r.code != 0 || strings.TrimSpace(r.stdout) == "" {
				t.Errorf("--version: got exit %d stdout %q, want 0 and the version", r.code, r.stdout)
			}
			if r := run("get", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
				t.Errorf("get --help: got exit %d, want 0 and the help", r.code)
			}
			p := startServe(t, bin, env, "--redis", srv.URL())
			if st, g, _ := servePost(t, p.url+"/v1/leases/"+n+"/acquire?ttl=5s"); st != 200 {
				t.Errorf("serve: acquire got %d %v, want 200", st, g)
			}
			if code, logs := p.stop(t); code != 0 {
				t.Errorf("serve: got exit %d after SIGTERM, want 0\n%s", code, logs)
			}
		})
	}
}

// TestClientFlagsComeFromTheEnvironment: every client flag has its
// LEASEHOLD_* variable (the contract's CLI section); LEASEHOLD_REDIS used
// to be read by serve only, and --ttl, --holder, --wait had none. A server
// and Redis both given is a usage error, never a silent choice.
func TestClientFlagsComeFromTheEnvironment(t *testing.T) {
	n := name(t)
	run := func(env []string, args ...string) result { return lhEnv(t, env, args...) }
	r := run([]string{"LEASEHOLD_REDIS=" + srv.Addr(), "LEASEHOLD_TTL=7s", "LEASEHOLD_HOLDER=from-env"}, "acquire", n)
	if r.code != 0 {
		t.Fatalf("acquire with LEASEHOLD_REDIS: exit %d, stderr %q", r.code, r.stderr)
	}
	l, err := client(t).Get(bg, n)
	if err != nil || l.Holder != "from-env" || l.TTL > 7*time.Second || l.TTL < 5*time.Second {
		t.Fatalf("the lease: %+v, %v; want holder from-env, ttl about 7s", l, err)
	}
	r = run([]string{"LEASEHOLD_REDIS=" + srv.Addr(), "LEASEHOLD_CONFLICT_EXIT_CODE=3", "LEASEHOLD_QUIET=true"}, "run", n, "--", "true")
	if r.code != 3 || r.stderr != "" {
		t.Errorf("run on a held lease with LEASEHOLD_CONFLICT_EXIT_CODE=3, LEASEHOLD_QUIET: exit %d, stderr %q; want 3 and nothing", r.code, r.stderr)
	}
	r = run([]string{"LEASEHOLD_REDIS=" + srv.Addr(), "LEASEHOLD_WAIT=8s"}, "acquire", n)
	if r.code != 0 || r.took < 4*time.Second {
		t.Errorf("acquire with LEASEHOLD_WAIT=8s on a 7s lease: exit %d after %v (%q); want 0 after it expired", r.code, r.took, r.stderr)
	}
	r = run([]string{"LEASEHOLD_REDIS=" + srv.Addr()}, "get", n, "--server", "http://127.0.0.1:1")
	if r.code != 64 || !strings.Contains(r.stderr, "give one of them") {
		t.Errorf("--server with LEASEHOLD_REDIS: exit %d, stderr %q; want 64 saying to give one", r.code, r.stderr)
	}
	// The default URL given explicitly is a server given too: it was taken
	// for "no server" and the command went to Redis.
	for _, tc := range []struct {
		env  []string
		args []string
	}{
		{[]string{"LEASEHOLD_REDIS=" + srv.Addr()}, []string{"get", n, "--server", "http://127.0.0.1:7070"}},
		{[]string{"LEASEHOLD_SERVER=http://127.0.0.1:7070"}, []string{"get", n, "--redis", srv.Addr()}},
		{nil, []string{"get", n, "--server", "http://127.0.0.1:7070", "--redis", srv.Addr()}},
	} {
		if r := run(tc.env, tc.args...); r.code != 64 || !strings.Contains(r.stderr, "both a server (http://127.0.0.1:7070)") {
			t.Errorf("%v %v: exit %d, stderr %q; want 64 saying both are given", tc.env, tc.args, r.code, r.stderr)
		}
	}
	r = run([]string{"LEASEHOLD_REDIS=" + srv.Addr()}, "get", n, "--redis", "", "--server", "http://127.0.0.1:1")
	if r.code != 69 {
		t.Errorf("--redis '' overriding LEASEHOLD_REDIS, with a server that is not there: exit %d (%q), want 69", r.code, r.stderr)
	}
}

// TestNoArgumentsListsEveryCommand: leasehold alone prints the whole list of
// commands and exits 64; it printed `expected one of "serve", "acquire",
// "renew", "release", "get", ...`, cut off before run.
func TestNoArgumentsListsEveryCommand(t *testing.T) {
	r := lh(t)
	if r.code != 64 || r.stdout != "" {
		t.Errorf("got exit %d, stdout %q; want 64 and nothing on stdout", r.code, r.stdout)
	}
	for _, cmd := range []string{"serve", "acquire", "renew", "release", "get", "list", "run <name>", "elect <name>", "leader <name>", "history <name>", "break", "give a command"} {
		if !strings.Contains(r.stderr, cmd) {
			t.Errorf("stderr %q does not mention %q", r.stderr, cmd)
		}
	}
}
