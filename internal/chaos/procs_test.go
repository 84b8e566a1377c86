package chaos_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/chaos"
)

// proc is a child process of the suite, killed by pid when the test ends.
type proc struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

func startProc(t testing.TB, env []string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv(env)
	p := &proc{cmd: cmd, out: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: p.out}, &lockedWriter{w: p.out}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p, nil
}

// kill ends the process with SIGKILL (after SIGCONT, should it be paused)
// and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// cleanEnv is this process's environment without LEASEHOLD_ and LEASE_
// variables, plus env.
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEASEHOLD_") && !strings.HasPrefix(kv, "LEASE_") && !strings.HasPrefix(kv, "CHAOS_") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w.Len() > 1<<20 {
		return len(b), nil
	}
	return l.w.Write(b)
}

// server is one `leasehold serve` process, which can be killed and started
// again on the same address.
type server struct {
	t    testing.TB
	addr string
	args []string
	mu   sync.Mutex // guards p
	p    *proc
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer starts `leasehold serve` with the backend flags given.
func startServer(t testing.TB, backend ...string) *server {
	s := &server{t: t, addr: freeAddr(t), args: backend}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *server) url() string { return "http://" + s.addr }

func (s *server) start() error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		var p *proc
		p, err = startProc(s.t, nil, append([]string{"serve", "--listen", s.addr, "--log-level", "warn"}, s.args...)...)
		if err != nil {
			return err
		}
		if err = waitReady(s.url(), p, 10*time.Second); err == nil {
			s.mu.Lock()
			s.p = p
			s.mu.Unlock()
			return nil
		}
		p.kill()
		time.Sleep(50 * time.Millisecond) // the port may linger
	}
	return err
}

func waitReady(url string, p *proc, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("leasehold serve exited: %s", p.out.String())
		default:
		}
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("leasehold serve at %s not ready within %s", url, within)
}

// kill kills the server with SIGKILL, as a crash would.
func (s *server) kill() {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// runLoop runs `leasehold run` children one after the other on a name,
// each with the helper as its command, until stop.
type runLoop struct {
	id       string
	redis    string // the --redis URL
	name     string
	ttl      time.Duration
	storeURL string
	h        *chaos.History
	dir      string

	mu     sync.Mutex // guards cur, helper, label
	cur    *proc      // the running `leasehold run`
	helper string     // its helper's pid file
	label  string
}

func (r *runLoop) loop(t testing.TB, stop *atomic.Bool) {
	for seq := 1; !stop.Load(); seq++ {
		label := fmt.Sprintf("%s-%d", r.id, seq)
		pidfile := filepath.Join(r.dir, label+".pid")
		hold := time.Duration(rand.Int64N(int64(r.ttl) * 2))
		sent := chaos.Now()
		p, err := startProc(t, []string{
			"CHAOS_HELPER=1", "CHAOS_STORE=" + r.storeURL, "CHAOS_LABEL=" + label, "CHAOS_CLIENT=" + r.id,
			"CHAOS_SENT=" + strconv.FormatInt(sent, 10), "CHAOS_HOLD=" + hold.String(), "CHAOS_PIDFILE=" + pidfile,
		}, "run", r.name, "--redis", r.redis, "--ttl", r.ttl.String(), "--wait", (2 * r.ttl).String(),
			"--holder", label, "--kill-after", "2s", "-q", "--", self)
		if err != nil {
			t.Errorf("start leasehold run: %v", err)
			return
		}
		r.mu.Lock()
		r.cur, r.helper, r.label = p, pidfile, label
		r.mu.Unlock()
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.kill()
		}
		r.mu.Lock()
		r.cur = nil
		r.mu.Unlock()
		code := p.cmd.ProcessState.ExitCode()
		o := chaos.Op{Client: r.id, Kind: chaos.Acquire, Name: r.name, Label: label, TTL: r.ttl, Wait: 2 * r.ttl,
			Call: sent, End: chaos.Now()}
		o.Return = o.End
		switch {
		case r.h.Granted(label):
			o.Outcome = chaos.Granted
		case code == 75:
			o.Outcome = chaos.Held
		default:
			o.Outcome, o.Return = chaos.Unknown, chaos.Never
		}
		r.h.AddOp(o)
		if code != 0 && code != 75 && code != 76 && code != 69 {
			t.Logf("leasehold run %s exited %d: %s", label, code, lastLines(p.out.String(), 3))
		}
		os.Remove(pidfile)
	}
}

// pauseHolder stops the current `leasehold run` and its command (SIGSTOP)
// for d and continues them: the GC-pause case. It reports false when no
// run holds the lease at the moment.
func (r *runLoop) pauseHolder(d time.Duration) (string, bool) {
	r.mu.Lock()
	p, pidfile, label := r.cur, r.helper, r.label
	r.mu.Unlock()
	if p == nil {
		return "", false
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return "", false // not holding yet: the command has not started
	}
	child, err := strconv.Atoi(string(b))
	if err != nil {
		return "", false
	}
	r.h.MarkPaused(label)
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP)
	syscall.Kill(child, syscall.SIGSTOP)
	time.Sleep(d)
	syscall.Kill(child, syscall.SIGCONT)
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
	return label, true
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
