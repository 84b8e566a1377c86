// Package shell holds the tests of the POSIX shell example with-lease.sh,
// run against a real `leasehold serve` on a real Redis.
package shell

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

var bg = context.Background()

// env is one server for a test: Redis, `leasehold serve`, and a lease client.
type env struct {
	url string
	c   *lease.Client
	srv *redistest.Server
}

func setup(t *testing.T) *env {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not on PATH: install it (apt-get install -y curl)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "leasehold")
	if b, err := exec.Command("go", "build", "-o", bin, "../../cmd/leasehold").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	srv := redistest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "serve", "--redis", srv.URL(), "--listen", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	url := "http://" + addr
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("leasehold serve not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &env{url: url, c: lease.New(srv.Client(t), nil), srv: srv}
}

// script is a running with-lease.sh.
type script struct {
	cmd       *exec.Cmd
	out, errb bytes.Buffer
	done      chan struct{}
}

func (e *env) start(t *testing.T, ttl int, args ...string) *script {
	t.Helper()
	return e.startVia(t, e.url, ttl, nil, args...)
}

// startVia is start with the server at url and more environment.
func (e *env) startVia(t *testing.T, url string, ttl int, more []string, args ...string) *script {
	t.Helper()
	s := &script{cmd: exec.Command("./with-lease.sh", args...), done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), "LEASEHOLD_SERVER="+url, "LEASE_TTL="+strconv.Itoa(ttl), "KILL_AFTER=1")
	s.cmd.Env = append(s.cmd.Env, more...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.errb
	// Its own process group, so that cleanup ends the renewer and the
	// command too; and a Wait that returns even if one of them kept the
	// output pipes open.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.cmd.WaitDelay = 5 * time.Second
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.kill)
	return s
}

// kill ends the script's whole process group and waits for it.
func (s *script) kill() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

func (s *script) finish(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		s.kill() // before reading its output, which it writes until then
		t.Fatalf("with-lease.sh still running after %v; stderr %q", within, s.errb.String())
		return -1
	}
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if b, err := os.ReadFile(path); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestScriptHoldsRenewsAndReleases(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	// A 5s lease (renewed every second) over 7.5s of work.
	s := e.start(t, 5, "report", "sh", "-c", `echo "$LEASE_NAME $LEASE_FENCE $LEASE_TOKEN" > `+dir+`/env; sleep 7.5; echo done`)
	f := strings.Fields(waitFile(t, dir+"/env"))
	if len(f) != 3 || f[0] != "report" {
		t.Fatalf("the command got %q, want LEASE_NAME LEASE_FENCE LEASE_TOKEN", f)
	}
	fence, _ := strconv.ParseInt(f[1], 10, 64)
	// Another taker is refused the whole time, past the TTL.
	other := e.start(t, 5, "report", "true")
	if code := other.finish(t, 5*time.Second); code != 75 {
		t.Errorf("a second script got exit %d (%s), want 75", code, other.errb.String())
	}
	time.Sleep(5500 * time.Millisecond)
	if l, err := e.c.Verify(bg, "report", lease.Proof{Token: f[2]}); err != nil || l.Fence != fence {
		t.Errorf("5.5s into a 5s lease: Verify = %v, %v; want still held (renewed)", l, err)
	}
	if code := s.finish(t, 5*time.Second); code != 0 || s.out.String() != "done\n" {
		t.Errorf("got exit %d stdout %q (%s), want 0 and done", code, s.out.String(), s.errb.String())
	}
	if _, err := e.c.Get(bg, "report"); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after the script: %v, want released by the trap", err)
	}
}

// TestScriptStopsTheCommandBeforeAnotherHolderIsGranted: the path to the
// server hangs (a proxy that stops forwarding); the script must SIGTERM its
// command before another client can be granted the lease, as leasehold run
// does. It used to retry until the lease had expired by its own clock.
func TestScriptStopsTheCommandBeforeAnotherHolderIsGranted(t *testing.T) {
	e := setup(t)
	p, err := faultproxy.New(strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	dir := t.TempDir()
	s := e.startVia(t, "http://"+p.Addr(), 5, nil, "hung", "sh", "-c",
		`trap 'echo term > `+dir+`/term; exit 9' TERM; echo up > `+dir+`/up; while :; do sleep 0.05; done`)
	waitFile(t, dir+"/up")
	time.Sleep(1200 * time.Millisecond) // a renewal or so through the proxy
	p.Set(faultproxy.Hang)
	hung := time.Now()
	termAt := make(chan time.Time, 1)
	go func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(dir + "/term"); err == nil {
				termAt <- time.Now()
				return
			}
		}
		close(termAt)
	}()
	other, err := e.c.Acquire(bg, "hung", &lease.AcquireOptions{TTL: 10 * time.Second, Holder: "other", Wait: 10 * time.Second})
	if err != nil {
		t.Fatalf("the other client's waiting acquire: %v", err)
	}
	granted := time.Now()
	term, ok := <-termAt
	if !ok {
		t.Fatalf("the command got no SIGTERM within 10s of the hang (other granted %v after it)", granted.Sub(hung))
	}
	if !term.Before(granted) {
		t.Errorf("the command got SIGTERM %v after the other client was granted the lease (hang at 0, grant at %v)",
			term.Sub(granted), granted.Sub(hung))
	}
	t.Logf("SIGTERM %v before the other client's grant", granted.Sub(term).Round(time.Millisecond))
	if code := s.finish(t, 5*time.Second); code != 76 {
		t.Errorf("got exit %d (%s), want 76", code, s.errb.String())
	}
	e.c.Release(bg, "hung", other.Token)
}

func TestScriptStopsTheCommandWhenTheLeaseIsLost(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	s := e.start(t, 5, "job", "sh", "-c", `trap 'echo term > `+dir+`/term; exit 9' TERM; echo up > `+dir+`/up; while :; do sleep 0.1; done`)
	waitFile(t, dir+"/up")
	e.srv.Client(t).Del(bg, "leasehold:{job}")
	if code := s.finish(t, 5*time.Second); code != 76 {
		t.Errorf("got exit %d (%s), want 76", code, s.errb.String())
	}
	if got := waitFile(t, dir+"/term"); got != "term\n" {
		t.Errorf("the command got %q, want SIGTERM", got)
	}
	if !strings.Contains(s.errb.String(), "lost the lease job (renew answered not_found)") {
		t.Errorf("got stderr %q, want it to say why the lease was lost", s.errb.String())
	}
}

func TestScriptPassesSIGTERMAndReleases(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	s := e.start(t, 30, "job", "sh", "-c", `trap 'exit 7' TERM; echo up > `+dir+`/up; while :; do sleep 0.1; done`)
	waitFile(t, dir+"/up")
	s.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.finish(t, 5*time.Second); code != 7 {
		t.Errorf("got exit %d (%s), want the command's 7", code, s.errb.String())
	}
	if _, err := e.c.Get(bg, "job"); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after SIGTERM: %v, want released", err)
	}
}

// TestScriptKilledLetsTheLeaseExpire: a script killed with SIGKILL runs no
// trap, and its renewer must not keep the lease alive without it.
func TestScriptKilledLetsTheLeaseExpire(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	s := e.start(t, 5, "killed", "sh", "-c", `echo up > `+dir+`/up; sleep 30`)
	waitFile(t, dir+"/up")
	s.cmd.Process.Signal(syscall.SIGKILL) // the script alone: its renewer and command stay
	// Renewed at most a second ago, a 5s lease is gone within 6s, plus the
	// renewer's one last renewal if one was under way.
	for deadline := time.Now().Add(8 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := e.c.Get(bg, "killed")
		if errors.Is(err, lease.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("8s after the script was killed: Get = %v, want the lease expired", err)
		}
	}
}

func TestScriptExitCodes(t *testing.T) {
	e := setup(t)
	if code := e.start(t, 5, "bad/name", "true").finish(t, 5*time.Second); code != 64 {
		t.Errorf("bad name: exit %d, want 64", code)
	}
	s := e.start(t, 5, "x")
	if code := s.finish(t, 5*time.Second); code != 64 {
		t.Errorf("no command: exit %d, want 64", code)
	}
	s = &script{cmd: exec.Command("./with-lease.sh", "x", "true"), done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), "LEASEHOLD_SERVER=http://127.0.0.1:1")
	s.cmd.Stderr = &s.errb
	if err := s.cmd.Run(); s.cmd.ProcessState.ExitCode() != 69 {
		t.Errorf("server down: %v (%s), want exit 69", err, s.errb.String())
	}
	// curl's reason is quoted; it used to be thrown away ("cannot reach ...: ").
	if msg := s.errb.String(); !strings.Contains(msg, "cannot reach http://127.0.0.1:1: ") || !strings.Contains(strings.ToLower(msg), "connect") {
		t.Errorf("server down: stderr %q, want curl's reason after \"cannot reach http://127.0.0.1:1: \"", msg)
	}
	for _, bad := range []string{"LEASE_TTL=3", "LEASE_TTL=4", "LEASE_TTL=30s", "LEASE_WAIT=1m", "KILL_AFTER=x"} {
		s := e.startVia(t, e.url, 30, []string{bad}, "x", "true")
		if code := s.finish(t, 5*time.Second); code != 64 {
			t.Errorf("%s: exit %d (%s), want 64", bad, code, s.errb.String())
		}
	}
	if code := e.start(t, 5, "x", "sh", "-c", "exit 5").finish(t, 5*time.Second); code != 5 {
		t.Errorf("command exit 5: got %d", code)
	}
}

// TestScriptWaitsWithLeaseWait: LEASE_WAIT waits for a held lease (woken
// when it expires here) and then runs the command; without it, 75 at once.
func TestScriptWaitsWithLeaseWait(t *testing.T) {
	e := setup(t)
	other, err := e.c.Acquire(bg, "waited", &lease.AcquireOptions{TTL: 2 * time.Second, Holder: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if code := e.start(t, 5, "waited", "true").finish(t, 5*time.Second); code != 75 {
		t.Errorf("without LEASE_WAIT: exit %d, want 75", code)
	}
	start := time.Now()
	s := e.startVia(t, e.url, 5, []string{"LEASE_WAIT=10"}, "waited", "sh", "-c", `echo "$LEASE_FENCE"`)
	if code := s.finish(t, 10*time.Second); code != 0 {
		t.Fatalf("LEASE_WAIT=10: exit %d (%s), want 0", code, s.errb.String())
	}
	if f, err := strconv.ParseInt(strings.TrimSpace(s.out.String()), 10, 64); err != nil || f <= other.Fence {
		t.Errorf("the command got fence %q, want one above the other's %d", s.out.String(), other.Fence)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("got the lease after %v, want after the other's 2s lease ran out", took)
	}
}
