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
	s := &script{cmd: exec.Command("./with-lease.sh", args...), done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), "LEASEHOLD_SERVER="+e.url, "LEASE_TTL="+strconv.Itoa(ttl), "KILL_AFTER=1")
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
	// A 3s lease (renewed every second) over 4.5s of work.
	s := e.start(t, 3, "report", "sh", "-c", `echo "$LEASE_NAME $LEASE_FENCE $LEASE_TOKEN" > `+dir+`/env; sleep 4.5; echo done`)
	f := strings.Fields(waitFile(t, dir+"/env"))
	if len(f) != 3 || f[0] != "report" {
		t.Fatalf("the command got %q, want LEASE_NAME LEASE_FENCE LEASE_TOKEN", f)
	}
	fence, _ := strconv.ParseInt(f[1], 10, 64)
	// Another taker is refused the whole time, past the TTL.
	other := e.start(t, 3, "report", "true")
	if code := other.finish(t, 5*time.Second); code != 75 {
		t.Errorf("a second script got exit %d (%s), want 75", code, other.errb.String())
	}
	time.Sleep(3500 * time.Millisecond)
	if l, err := e.c.Verify(bg, "report", lease.Proof{Token: f[2]}); err != nil || l.Fence != fence {
		t.Errorf("3.5s into a 3s lease: Verify = %v, %v; want still held (renewed)", l, err)
	}
	if code := s.finish(t, 5*time.Second); code != 0 || s.out.String() != "done\n" {
		t.Errorf("got exit %d stdout %q (%s), want 0 and done", code, s.out.String(), s.errb.String())
	}
	if _, err := e.c.Get(bg, "report"); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after the script: %v, want released by the trap", err)
	}
}

func TestScriptStopsTheCommandWhenTheLeaseIsLost(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	s := e.start(t, 3, "job", "sh", "-c", `trap 'echo term > `+dir+`/term; exit 9' TERM; echo up > `+dir+`/up; while :; do sleep 0.1; done`)
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
	s := e.start(t, 3, "killed", "sh", "-c", `echo up > `+dir+`/up; sleep 30`)
	waitFile(t, dir+"/up")
	s.cmd.Process.Signal(syscall.SIGKILL) // the script alone: its renewer and command stay
	// Renewed at most a second ago, a 3s lease is gone within 4s, plus the
	// renewer's one last renewal if one was under way.
	for deadline := time.Now().Add(6 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := e.c.Get(bg, "killed")
		if errors.Is(err, lease.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("6s after the script was killed: Get = %v, want the lease expired", err)
		}
	}
}

func TestScriptExitCodes(t *testing.T) {
	e := setup(t)
	if code := e.start(t, 3, "bad/name", "true").finish(t, 5*time.Second); code != 64 {
		t.Errorf("bad name: exit %d, want 64", code)
	}
	s := e.start(t, 3, "x")
	if code := s.finish(t, 5*time.Second); code != 64 {
		t.Errorf("no command: exit %d, want 64", code)
	}
	s = &script{cmd: exec.Command("./with-lease.sh", "x", "true"), done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), "LEASEHOLD_SERVER=http://127.0.0.1:1")
	s.cmd.Stderr = &s.errb
	if err := s.cmd.Run(); s.cmd.ProcessState.ExitCode() != 69 {
		t.Errorf("server down: %v (%s), want exit 69", err, s.errb.String())
	}
	if code := e.start(t, 3, "x", "sh", "-c", "exit 5").finish(t, 5*time.Second); code != 5 {
		t.Errorf("command exit 5: got %d", code)
	}
}
