// Package redistest starts real redis-server processes for tests: each on a
// free loopback port, in its own temporary directory, without persistence,
// and stopped when the test ends. A server can be stopped, killed, restarted
// (losing its data) and paused, for fault tests.
//
// redis-server must be on PATH. When it is not, Start fails the test with a
// message saying how to install it: the suite never skips silently.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// InstallHint says how to get redis-server.
const InstallHint = "redis-server is not on PATH: install it (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis) or run ./scripts/test, which does"

// Server is one redis-server process.
type Server struct {
	bin  string
	dir  string
	port int
	conf string // a config file to start with ("" for none): Sentinel needs one
	args []string

	mu   sync.Mutex // guards proc
	proc *proc      // nil while stopped
}

// proc is one run of redis-server; done is closed when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a redis-server for tb and stops it when tb ends. Extra
// arguments are passed to redis-server ("--maxmemory", "1mb", ...).
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	s, err := New(args...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// New starts a redis-server outside a test (for TestMain and Example
// functions); Close stops it and removes its directory.
func New(args ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New(InstallHint)
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, err
	}
	return launch(&Server{bin: bin, dir: dir, args: args})
}

// launch starts s on a free port, retrying when another process takes it first.
func launch(s *Server) (*Server, error) {
	var err, lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			break
		}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	os.RemoveAll(s.dir)
	return nil, fmt.Errorf("redistest: start redis-server: %v", errors.Join(err, lastErr))
}

// Close kills the server and removes its directory.
func (s *Server) Close() {
	s.Kill()
	os.RemoveAll(s.dir)
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

func (s *Server) start() error {
	args := append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--save", "", "--appendonly", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}, s.args...)
	if s.conf != "" {
		args = append([]string{s.conf}, args...)
	}
	p := &proc{cmd: exec.Command(s.bin, args...), done: make(chan struct{})}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited at start (%v): %s", p.cmd.ProcessState, s.logTail())
		default:
		}
		if s.ping() == nil {
			s.mu.Lock()
			s.proc = p
			s.mu.Unlock()
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("redis-server did not answer within 10s: %s", s.logTail())
}

func (s *Server) ping() error {
	conn, err := net.DialTimeout("tcp", s.Addr(), 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "+PONG") {
		return fmt.Errorf("PING answered %q", buf[:n])
	}
	return nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// stop sends sig to the process and waits for it to exit.
func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot act on SIGTERM
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Stop shuts the server down with SIGTERM. Without persistence its data is gone.
func (s *Server) Stop() { s.stop(syscall.SIGTERM) }

// Kill ends the server with SIGKILL, as a crash would.
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

// Restart kills the server and starts a new one on the same port, with no data.
func (s *Server) Restart() error {
	s.Kill()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger briefly
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redistest: restart redis-server: %w", err)
}

// Pause stops the process (SIGSTOP): connections stay open and nothing
// answers, like a hung server. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.cmd.Process.Signal(sig)
	}
}

// Flush empties the server (FLUSHALL), as a data loss would.
func (s *Server) Flush(ctx context.Context) error {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	return rdb.FlushAll(ctx).Err()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
