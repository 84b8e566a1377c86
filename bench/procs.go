package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// env is what every measurement of a run shares: one Redis, a client for
// its INFO, and the HTTP server processes.
type env struct {
	redisAddr    string
	redisVersion string
	stats        *redis.Client      // INFO and memory probes; one connection
	redisSrv     *redistest.Server  // the redis-server started for the run; nil with -redis
	servers      map[string]*server // by configuration name
	etcd         *server            // etcd for procs-etcd; nil when not run
	etcdVersion  string
	skipped      []string // configurations left out, each with why and what to do
	dir          string   // built binaries, server logs, etcd's data
}

// newEnv starts (or connects to) Redis, builds leasehold and the naive
// server, and starts one process per HTTP configuration that s asks for.
func newEnv(ctx context.Context, s settings, stderr io.Writer) (_ *env, err error) {
	e := &env{redisAddr: s.redis, servers: map[string]*server{}}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "leasehold-bench-"); err != nil {
		return nil, err
	}
	if e.redisAddr == "" {
		if e.redisSrv, err = redistest.New(); err != nil {
			return nil, err
		}
		e.redisAddr = e.redisSrv.Addr()
		fmt.Fprintf(stderr, "bench: started redis-server on %s\n", e.redisAddr)
	}
	e.stats = redis.NewClient(&redis.Options{Addr: e.redisAddr, PoolSize: 1})
	info, err := e.stats.Info(ctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", e.redisAddr, err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			e.redisVersion = v
		}
	}

	type want struct {
		name, pkg string
		args      []string
	}
	var wants []want
	for _, v := range serveVariants {
		args := append([]string{"serve", "--redis", "redis://" + e.redisAddr + "/0", "--log-level", "warn"}, v.args...)
		wants = append(wants, want{v.name, "github.com/leasehold/leasehold/cmd/leasehold", args})
	}
	wants = append(wants, want{"naive", "github.com/leasehold/leasehold/bench/naive", []string{"-redis", e.redisAddr}})
	built := map[string]string{}
	for _, w := range wants {
		if !s.selected(w.name) {
			continue
		}
		bin, ok := built[w.pkg]
		if !ok {
			bin = filepath.Join(e.dir, filepath.Base(w.pkg))
			fmt.Fprintf(stderr, "bench: go build %s\n", w.pkg)
			if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, w.pkg).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("go build %s: %w\n%s", w.pkg, err, out)
			}
			built[w.pkg] = bin
		}
		srv, err := startServer(ctx, w.name, bin, w.args, filepath.Join(e.dir, w.name+".log"))
		if err != nil {
			return nil, err
		}
		e.servers[w.name] = srv
		fmt.Fprintf(stderr, "bench: %s listening on %s (pid %d)\n", w.name, srv.base, srv.cmd.Process.Pid)
	}
	if s.contenders > 0 && s.selected("procs-etcd") {
		e.etcd, e.etcdVersion, err = startEtcd(ctx, e.dir)
		switch {
		case errors.Is(err, exec.ErrNotFound):
			e.skipped = append(e.skipped, "procs-etcd: skipped, etcd is not on PATH ("+etcdInstall+")")
			fmt.Fprintln(stderr, "bench:", e.skipped[len(e.skipped)-1])
		case err != nil:
			return nil, err
		default:
			fmt.Fprintf(stderr, "bench: etcd %s listening on %s (pid %d), data on disk in %s\n", e.etcdVersion, e.etcd.base, e.etcd.cmd.Process.Pid, e.dir)
		}
	}
	return e, nil
}

// close stops every process the run started, by pid, and removes its files.
func (e *env) close() {
	for _, s := range e.servers {
		s.stop()
	}
	if e.etcd != nil {
		e.etcd.stop()
	}
	if e.stats != nil {
		e.stats.Close()
	}
	if e.redisSrv != nil {
		e.redisSrv.Close()
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// server is a server process under test: an HTTP server, or etcd.
type server struct {
	name     string
	base     string // http://127.0.0.1:PORT
	readyURL string // answers 200 once the server serves
	log      string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
}

// startServer runs bin with args and --listen on a free loopback port, and
// waits until its /readyz answers 200.
func startServer(ctx context.Context, name, bin string, args []string, logPath string) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	base := "http://" + addr
	return startProcess(ctx, name, bin, append(args, "--listen", addr), logPath, base, base+"/readyz")
}

// freePort is a loopback host:port that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startProcess runs bin with args, its output to logPath, and waits until
// readyURL answers 200.
func startProcess(ctx context.Context, name, bin string, args []string, logPath, base, readyURL string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	s := &server{name: name, base: base, readyURL: readyURL, log: logPath, done: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Should the bench be killed without a chance to stop it, the kernel
	// sends it SIGTERM (Linux), so no server outlives the run.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited at start (%v): %s", name, s.cmd.ProcessState, s.logTail())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if s.ready(ctx) {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s not ready within 15s: %s", name, s.logTail())
		}
	}
}

func (s *server) ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.readyURL, nil)
	if err != nil {
		return false
	}
	req.Close = true // leave no idle connection behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stop ends the process with SIGTERM, then SIGKILL after 5s.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *server) logTail() string { return fileTail(s.log) }

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on Linux.
const clockTicks = 100

// cpu is the process's user+system CPU time from /proc/PID/stat (Linux).
func (s *server) cpu() (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("%s CPU: %w", s.name, err)
	}
	// Fields after "(comm)": state is field 3, utime 14 and stime 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, errors.New("/proc/PID/stat: unexpected format")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/PID/stat: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}
