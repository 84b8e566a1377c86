package main

import (
	"bytes"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

// startLH starts the binary and returns it running; finish waits for it.
func startLH(t *testing.T, args ...string) *startedCmd {
	t.Helper()
	return startLHEnv(t, nil, args...)
}

// startLHEnv is startLH with more environment variables (KEY=value).
func startLHEnv(t *testing.T, env []string, args ...string) *startedCmd {
	t.Helper()
	cmd := command(args...)
	cmd.Env = append(cmd.Env, env...)
	s := &startedCmd{out: &bytes.Buffer{}, errb: &bytes.Buffer{}, start: time.Now(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.pid = cmd.Process.Pid
	go func() { cmd.Wait(); s.state = cmd.ProcessState; close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			syscall.Kill(s.pid, syscall.SIGKILL)
			<-s.done
		}
	})
	return s
}

type startedCmd struct {
	pid       int
	out, errb *bytes.Buffer
	start     time.Time
	done      chan struct{}
	state     *os.ProcessState
}

func (s *startedCmd) finish(t *testing.T, within time.Duration) result {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(within):
		t.Fatalf("leasehold still running after %v; stderr so far %q", within, s.errb.String())
	}
	return result{code: s.state.ExitCode(), stdout: s.out.String(), stderr: s.errb.String(), took: time.Since(s.start)}
}

// waitFile waits until path exists and returns its contents.
func waitFile(t *testing.T, path string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within %v", filepath.Base(path), within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func TestRunGivesTheLeaseToTheCommandAndPassesItsExitCode(t *testing.T) {
	n := name(t)
	r := lh(t, "run", n, "--redis", srv.URL(), "--ttl", "5s", "--",
		"sh", "-c", `echo "$LEASE_NAME $LEASE_FENCE $LEASE_TOKEN"; exit 3`)
	if r.code != 3 {
		t.Fatalf("got exit %d (%s), want the command's 3", r.code, r.stderr)
	}
	f := strings.Fields(r.stdout)
	if len(f) != 3 || f[0] != n || lease.ValidateToken(f[2]) != nil {
		t.Fatalf("got child output %q, want LEASE_NAME LEASE_FENCE LEASE_TOKEN", r.stdout)
	}
	if fence, err := strconv.ParseInt(f[1], 10, 64); err != nil || fence <= 0 {
		t.Errorf("got LEASE_FENCE %q, want a positive integer", f[1])
	}
	if _, err := client(t).Get(bg, n); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after run: %v, want released", err)
	}
	// A command killed by a signal exits 128+N, as in a shell.
	if r := lh(t, "run", n, "--redis", srv.URL(), "--", "sh", "-c", "kill -9 $$"); r.code != 137 {
		t.Errorf("got exit %d for a command killed by SIGKILL, want 137", r.code)
	}
	if r := lh(t, "run", n, "--redis", srv.URL(), "--", "/no/such/command"); r.code != 127 {
		t.Errorf("got exit %d for a missing command, want 127", r.code)
	}
	if _, err := client(t).Get(bg, n); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after a failed start: %v, want released", err)
	}
}

func TestRunOneSecondLeaseSurvivesAThreeSecondCommand(t *testing.T) {
	n := name(t)
	r := lh(t, "run", n, "--ttl", "1s", "--redis", srv.URL(), "--", "sh", "-c",
		"sleep 3")
	if r.code != 0 || strings.Contains(r.stderr, "lost") {
		t.Fatalf("got exit %d, stderr %q; want 0 and no loss", r.code, r.stderr)
	}
	if r.took < 3*time.Second {
		t.Errorf("run took %v, want the command's 3s", r.took)
	}
}

func TestRunRenewsSoOthersStayOut(t *testing.T) {
	n := name(t)
	dir := t.TempDir()
	s := startLH(t, "run", n, "--ttl", "500ms", "--redis", srv.URL(), "--", "sh", "-c",
		`echo go > `+dir+`/started; sleep 2`)
	waitFile(t, dir+"/started", 5*time.Second)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) { // three TTLs: renewed or someone would get in
		r := lh(t, "run", n, "--redis", srv.URL(), "--", "true")
		if r.code != 75 {
			t.Fatalf("a second run during the first got exit %d, want 75", r.code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := s.finish(t, 5*time.Second); r.code != 0 {
		t.Errorf("first run: exit %d (%s), want 0", r.code, r.stderr)
	}
}

// TestRunAndElectStopTheCommandWhenTheLeaseIsStolen: the lease of run, or of
// elect's leader, deleted or taken under it: the command's whole group gets
// SIGTERM (SIGKILL after --kill-after when it ignores that) and leasehold
// exits 76, saying so, without spinning while it waits.
func TestRunAndElectStopTheCommandWhenTheLeaseIsStolen(t *testing.T) {
	const ttl, killAfter = time.Second, time.Second
	cases := []struct {
		name  string
		steal func(t *testing.T, n string)
		trap  string // the command's answer to SIGTERM
	}{
		{"deleted", func(t *testing.T, n string) {
			rdb(t).Del(bg, "leasehold:{"+n+"}")
		}, ""},
		{"taken-and-TERM-ignored", func(t *testing.T, n string) {
			rdb(t).Del(bg, "leasehold:{"+n+"}")
			thief, err := client(t).Acquire(bg, n, &lease.AcquireOptions{TTL: time.Minute, Holder: "thief"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client(t).Release(bg, n, thief.Token) }) // for the next -count
		}, `trap "" TERM;`},
	}
	for _, cmd := range []string{"run", "elect"} {
		for _, tc := range cases {
			t.Run(cmd+"/"+tc.name, func(t *testing.T) {
				n := name(t)
				dir := t.TempDir()
				// The command and a grandchild in its group write their pids and live long.
				s := startLH(t, cmd, n, "--ttl", ttl.String(), "--kill-after", killAfter.String(), "--redis", srv.URL(), "--",
					"sh", "-c", tc.trap+`sleep 60 & echo $! > `+dir+`/grandchild; echo $$ > `+dir+`/pid; while :; do sleep 0.05; done`)
				pid, _ := strconv.Atoi(strings.TrimSpace(waitFile(t, dir+"/pid", 5*time.Second)))
				grand, _ := strconv.Atoi(strings.TrimSpace(waitFile(t, dir+"/grandchild", 5*time.Second)))
				t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) }) // should leasehold fail to
				stolen := time.Now()
				tc.steal(t, n)
				r := s.finish(t, 10*time.Second)
				took := time.Since(stolen)
				if r.code != 76 {
					t.Errorf("got exit %d, want 76 (lost)", r.code)
				}
				if took > ttl+killAfter+500*time.Millisecond {
					t.Errorf("%s ended %v after the lease was stolen, want within ttl + kill-after = %v", cmd, took, ttl+killAfter)
				}
				if !strings.Contains(r.stderr, "lost") || !strings.Contains(r.stderr, "SIGTERM") {
					t.Errorf("got stderr %q, want it to say the lease was lost and SIGTERM sent", r.stderr)
				}
				// Waiting out --kill-after must not spin: leasehold's CPU time stays far
				// below the second it waited.
				if cpu := s.state.UserTime() + s.state.SystemTime(); cpu > 600*time.Millisecond {
					t.Errorf("leasehold used %v of CPU over %v, want it idle while it waits", cpu, r.took)
				} else {
					t.Logf("leasehold used %v of CPU over %v", cpu, r.took)
				}
				if tc.trap != "" && !strings.Contains(r.stderr, "SIGKILL") {
					t.Errorf("got stderr %q, want SIGKILL after --kill-after for a command that ignores SIGTERM", r.stderr)
				}
				if tc.trap == "" && strings.Contains(r.stderr, "outlived --kill-after") {
					t.Errorf("got stderr %q, want no SIGKILL: SIGTERM ends a command that does not trap it", r.stderr)
				}
				if want := `leadership of "` + n + `"`; cmd == "elect" && !strings.Contains(r.stderr, want) {
					t.Errorf("got stderr %q, want it to mention %q", r.stderr, want)
				}
				for _, p := range []int{pid, grand} {
					deadline := time.Now().Add(time.Second)
					for alive(p) && time.Now().Before(deadline) {
						time.Sleep(10 * time.Millisecond)
					}
					if alive(p) {
						t.Errorf("process %d of the command's group still alive after %s exited", p, cmd)
						syscall.Kill(p, syscall.SIGKILL)
					}
				}
			})
		}
	}
}

func TestRunHoldKeepsTheLeaseAfterTheCommand(t *testing.T) {
	n := name(t)
	start := time.Now()
	r := lh(t, "run", n, "--ttl", "1s", "--hold", "3s", "--redis", srv.URL(), "--", "true")
	if r.code != 0 {
		t.Fatalf("got exit %d (%s), want 0", r.code, r.stderr)
	}
	if r.took > time.Second {
		t.Errorf("run took %v, want it to exit at once after the command", r.took)
	}
	l, err := client(t).Get(bg, n)
	if err != nil {
		t.Fatalf("Get after run --hold 3s: %v, want the lease kept", err)
	}
	want := 3*time.Second - time.Since(start)
	if l.TTL < want-200*time.Millisecond || l.TTL > want+200*time.Millisecond {
		t.Errorf("got remaining TTL %v, want about %v (grant + 3s)", l.TTL, want)
	}
	if r := lh(t, "run", n, "--redis", srv.URL(), "--", "true"); r.code != 75 {
		t.Errorf("a run inside the hold period got exit %d, want 75", r.code)
	}
	// A command that runs past the hold is released at its end as usual.
	r = lh(t, "run", n+".long", "--ttl", "1s", "--hold", "200ms", "--redis", srv.URL(), "--", "sleep", "0.5")
	if _, err := client(t).Get(bg, n+".long"); r.code != 0 || !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("run past its hold: exit %d, Get %v; want 0 and released", r.code, err)
	}
}

func TestRunSIGTERMWhileWaitingStopsWithoutRunning(t *testing.T) {
	sigtermWhileHeld(t, name(t), "run", "--wait", "20s")
}

// sigtermWhileHeld starts `leasehold CMD n ARGS... -- COMMAND` while
// another holder has n, sends it SIGTERM once it waits, and checks that it
// exits 143 within a second without running COMMAND, leaving the other's
// lease alone. It returns the result and that lease.
func sigtermWhileHeld(t *testing.T, n, cmd string, args ...string) (result, *lease.Lease) {
	t.Helper()
	dir := t.TempDir()
	other, err := client(t).Acquire(bg, n, &lease.AcquireOptions{TTL: time.Minute, Holder: "other"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client(t).Release(bg, n, other.Token) }) // for the next -count
	s := startLH(t, slices.Concat([]string{cmd, n}, args, []string{"--redis", srv.URL(), "--", "sh", "-c", "echo ran > " + dir + "/ran"})...)
	time.Sleep(300 * time.Millisecond) // let it start waiting; a signal before that must work too
	sent := time.Now()
	syscall.Kill(s.pid, syscall.SIGTERM)
	r := s.finish(t, 5*time.Second)
	if r.code != 128+int(syscall.SIGTERM) {
		t.Errorf("got exit %d (%s), want %d (128+SIGTERM)", r.code, r.stderr, 128+int(syscall.SIGTERM))
	}
	if took := time.Since(sent); took > time.Second {
		t.Errorf("%s took %v to stop waiting after SIGTERM, want well under 1s", cmd, took)
	}
	if exists(dir + "/ran") {
		t.Error("the command ran after SIGTERM during the wait")
	}
	if l, err := client(t).Verify(bg, n, lease.Proof{Token: other.Token}); err != nil || l.Holder != "other" {
		t.Errorf("the other holder's lease: %v, %v; want untouched", l, err)
	}
	return r, other
}

// TestRunAndElectForwardSignalsToTheCommandAndRelease: SIGTERM, SIGINT and
// SIGHUP sent to leasehold run or elect while its command runs reach the
// command; leasehold exits with the command's code once it has exited, and
// releases the lease (elect resigns).
func TestRunAndElectForwardSignalsToTheCommandAndRelease(t *testing.T) {
	for _, cmd := range []string{"run", "elect"} {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
			t.Run(cmd+"/"+sig.String(), func(t *testing.T) {
				n := strings.ReplaceAll(name(t), " ", "_")
				dir := t.TempDir()
				s := startLH(t, cmd, n, "--redis", srv.URL(), "--", "sh", "-c",
					`trap 'echo `+strconv.Itoa(int(sig))+` > `+dir+`/got; exit 7' `+strings.TrimPrefix(signame(sig), "SIG")+
						`; echo up > `+dir+`/up; while :; do sleep 0.05; done`)
				waitFile(t, dir+"/up", 5*time.Second)
				syscall.Kill(s.pid, sig)
				r := s.finish(t, 5*time.Second)
				if r.code != 7 {
					t.Errorf("got exit %d (%s), want the command's 7 after its trap", r.code, r.stderr)
				}
				if got := waitFile(t, dir+"/got", time.Second); got != strconv.Itoa(int(sig))+"\n" {
					t.Errorf("command got signal %q, want %d", got, sig)
				}
				if _, err := client(t).Get(bg, n); !errors.Is(err, lease.ErrNotFound) {
					t.Errorf("Get after %s: %v, want released", cmd, err)
				}
			})
		}
	}
}

func signame(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return ""
}

func TestRunWaitGetsTheLeaseWhenReleased(t *testing.T) {
	n := name(t)
	other, err := client(t).Acquire(bg, n, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s := startLH(t, "run", n, "--wait", "10s", "--redis", srv.URL(), "--", "sh", "-c", "echo ran")
	time.Sleep(200 * time.Millisecond)
	if err := client(t).Release(bg, n, other.Token); err != nil {
		t.Fatal(err)
	}
	if r := s.finish(t, 5*time.Second); r.code != 0 || r.stdout != "ran\n" {
		t.Errorf("got exit %d stdout %q, want 0 and the command run", r.code, r.stdout)
	}
}

func TestRunRidesOutABriefRedisOutage(t *testing.T) {
	own := redistest.Start(t)
	n := name(t)
	dir := t.TempDir()
	s := startLH(t, "run", n, "--ttl", "2s", "--redis", own.URL(), "--", "sh", "-c",
		`echo up > `+dir+`/up; sleep 3.5`)
	waitFile(t, dir+"/up", 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	own.Pause() // Redis hangs for less than the TTL
	time.Sleep(time.Second)
	own.Resume()
	if r := s.finish(t, 10*time.Second); r.code != 0 || strings.Contains(r.stderr, "lost") {
		t.Errorf("got exit %d, stderr %q; want 0: a 1s outage of a 2s lease is ridden out", r.code, r.stderr)
	}
}

func TestRunRedisGoneLosesTheLeaseAtItsExpiry(t *testing.T) {
	own := redistest.Start(t)
	n := name(t)
	dir := t.TempDir()
	const ttl = 1500 * time.Millisecond
	s := startLH(t, "run", n, "--ttl", ttl.String(), "--kill-after", "1s", "--redis", own.URL(), "--", "sh", "-c",
		`echo up > `+dir+`/up; while :; do sleep 0.05; done`)
	waitFile(t, dir+"/up", 5*time.Second)
	killed := time.Now()
	own.Kill()
	r := s.finish(t, 10*time.Second)
	took := time.Since(killed)
	if r.code != 76 || !strings.Contains(r.stderr, "renewals failed until the lease expired") {
		t.Errorf("got exit %d, stderr %q; want 76 saying renewals failed until expiry", r.code, r.stderr)
	}
	if took < ttl/3 || took > ttl+time.Second {
		t.Errorf("run ended %v after Redis died, want after the lease could expire and within ttl + 1s", took)
	}
}

// TestRunInterruptedDuringItsAcquireLeavesNoGrant: SIGINT while run's
// acquire is on its way (the server's path to Redis is slow, so Redis
// grants it after run gave up) must not leave the lease held by nobody for
// its TTL: run releases what it may have been granted before it exits, and
// the next run gets the lease.
func TestRunInterruptedDuringItsAcquireLeavesNoGrant(t *testing.T) {
	p, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	url := startServerOn(t, "redis://"+p.Addr()+"/0")
	n := name(t)
	dir := t.TempDir()
	p.SetDelay(400 * time.Millisecond) // each way: Redis grants about 400ms after the request, answers 400ms later
	s := startLH(t, "run", n, "--ttl", "1h", "--server", url, "--", "sh", "-c", "echo ran > "+dir+"/ran")
	// Interrupt once the acquire has reached Redis and been granted, before
	// its answer is back.
	waitGranted(t, n)
	syscall.Kill(s.pid, syscall.SIGINT)
	r := s.finish(t, 15*time.Second)
	if r.code != 128+int(syscall.SIGINT) || exists(dir+"/ran") {
		t.Errorf("got exit %d (ran: %v), stderr %q; want %d without running the command", r.code, exists(dir+"/ran"), r.stderr, 128+int(syscall.SIGINT))
	}
	p.SetDelay(0)
	if l, err := client(t).Get(bg, n); err == nil {
		t.Errorf("after run exited, %q is still held (fence %d) for another %v by a grant nobody has the token of", n, l.Fence, l.TTL)
	}
}

// termStamp is not a test: when the test binary runs as a command with
// LHTEST_TERM_FILE set (see TestMain), it waits for SIGTERM and writes the
// time it came, in Unix nanoseconds, to that file.
func termStamp(path string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	os.WriteFile(path+".ready", []byte("ready\n"), 0o600)
	select {
	case <-term:
		os.WriteFile(path, []byte(strconv.FormatInt(time.Now().UnixNano(), 10)+"\n"), 0o600)
	case <-time.After(30 * time.Second):
	}
	return 0
}

// TestRunSignalsItsCommandBeforeAnotherHolderIsGranted is the first safety
// promise through the CLI: with the path to Redis hung (no answer, no
// error), run's command gets SIGTERM no later than the moment another
// client is granted the lease, with a go-redis client of default options.
func TestRunSignalsItsCommandBeforeAnotherHolderIsGranted(t *testing.T) {
	p, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	n := name(t)
	stamp := filepath.Join(t.TempDir(), "term")
	t.Setenv("LHTEST_TERM_FILE", stamp)
	s := startLH(t, "run", n, "--ttl", "1s", "--kill-after", "5s", "--redis", "redis://"+p.Addr()+"/0", "--",
		os.Args[0])
	waitFile(t, stamp+".ready", 10*time.Second)
	time.Sleep(500 * time.Millisecond) // a renewal or two went through
	p.Set(faultproxy.Hang)
	hung := time.Now()
	thief := client(t)
	var granted time.Time
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		at := time.Now()
		if _, err := thief.Acquire(bg, n, &lease.AcquireOptions{TTL: time.Minute, Holder: "thief"}); err == nil {
			granted = at
			break
		}
	}
	if granted.IsZero() {
		t.Fatal("the thief was never granted the lease")
	}
	got, err := strconv.ParseInt(strings.TrimSpace(waitFile(t, stamp, 15*time.Second)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	termAt := time.Unix(0, got)
	r := s.finish(t, 15*time.Second)
	if r.code != 76 {
		t.Errorf("run exited %d (stderr %q), want 76: the lease was lost", r.code, r.stderr)
	}
	if termAt.After(granted) {
		t.Errorf("the command got SIGTERM at +%v after the path hung, %v after the thief was granted at +%v; want no later than the grant",
			termAt.Sub(hung).Round(time.Millisecond), termAt.Sub(granted).Round(time.Millisecond), granted.Sub(hung).Round(time.Millisecond))
	}
	t.Logf("path hung at 0; SIGTERM reached the command at +%v; thief granted at +%v", termAt.Sub(hung).Round(time.Millisecond), granted.Sub(hung).Round(time.Millisecond))
}

// TestRunHoldOnFailure: by default --hold is kept whatever the command's
// exit (a job runs at most once a period); --no-hold-on-failure releases the
// lease at once when the command fails, so the failed job can run again.
func TestRunHoldOnFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flags  []string
		script string
		code   int
		held   bool
	}{
		{"failed, default", nil, "exit 3", 3, true},
		{"failed, --no-hold-on-failure", []string{"--no-hold-on-failure"}, "exit 3", 3, false},
		{"succeeded, --no-hold-on-failure", []string{"--no-hold-on-failure"}, "exit 0", 0, true},
		{"failed, LEASEHOLD_HOLD_ON_FAILURE=false", nil, "exit 4", 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := strings.NewReplacer(" ", "_", ",", "", "=", "-").Replace(name(t))
			args := append([]string{"run", n, "--ttl", "2s", "--hold", "1m", "--redis", srv.URL()}, tc.flags...)
			var env []string
			if strings.Contains(tc.name, "LEASEHOLD_HOLD_ON_FAILURE") {
				env = append(env, "LEASEHOLD_HOLD_ON_FAILURE=false")
			}
			r := lhEnv(t, env, append(args, "--", "sh", "-c", tc.script)...)
			if r.code != tc.code {
				t.Errorf("exit %d (%s), want %d", r.code, r.stderr, tc.code)
			}
			l, err := client(t).Get(bg, n)
			if tc.held && (err != nil || l.TTL < 50*time.Second) {
				t.Errorf("after the command: Get = %v, %v; want held for the rest of the 1m hold", l, err)
			}
			if !tc.held && !errors.Is(err, lease.ErrNotFound) {
				t.Errorf("after the command: Get = %v, %v; want released", l, err)
			}
		})
	}
}

// TestAcquireInterruptedDuringItsCallLeavesNoGrant is the same for
// acquire, over a server and straight to Redis: SIGINT used to kill it
// mid-call, and the grant it had made stayed for the whole 1h TTL with
// nobody holding its token (found by an adversarial review: 3,595,404 ms
// left 5s after the SIGINT).
func TestAcquireInterruptedDuringItsCallLeavesNoGrant(t *testing.T) {
	p, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	url := startServerOn(t, "redis://"+p.Addr()+"/0")
	for _, via := range [][]string{{"--server", url}, {"--redis", p.Addr()}} {
		t.Run(via[0], func(t *testing.T) {
			n := strings.TrimPrefix(name(t), "-")
			p.SetDelay(400 * time.Millisecond)
			s := startLH(t, append([]string{"acquire", n, "--ttl", "1h"}, via...)...)
			waitGranted(t, n)
			syscall.Kill(s.pid, syscall.SIGINT)
			r := s.finish(t, 15*time.Second)
			p.SetDelay(0)
			if r.code != 128+int(syscall.SIGINT) || strings.TrimSpace(r.stdout) != "" {
				t.Errorf("got exit %d, stdout %q, stderr %q; want %d and no token", r.code, r.stdout, r.stderr, 128+int(syscall.SIGINT))
			}
			if l, err := client(t).Get(bg, n); err == nil {
				t.Errorf("after acquire exited, %q is still held (fence %d) for another %v by a grant nobody has the token of", n, l.Fence, l.TTL)
			}
		})
	}
}

// waitGranted waits until the lease n exists in Redis: an acquire has
// reached it and been granted, whether or not its answer is back.
func waitGranted(t *testing.T, n string) {
	t.Helper()
	rdb := srv.Client(t)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if live, _ := redistest.LeaseLive(bg, rdb, "leasehold:{"+n+"}"); live {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the acquire never reached Redis")
		}
	}
}
