// Command waitmem measures the memory of a `leasehold serve` process that
// holds many waiting HTTP acquires: issue 6's "10,000 waiting HTTP
// requests in at most 200 MB of server RSS".
//
// It builds the server binary (or takes -bin), starts its own redis-server
// on a free loopback port (or takes -redis), starts the server, takes
// -names leases, and sends -waiters acquires with ?wait= on those names,
// each on a keep-alive connection of its own, spread evenly over the names.
// Once the server reports them all waiting (leasehold_waiting_acquires), it
// lets the server settle, reads VmRSS and VmHWM from /proc/PID/status,
// prints them, and stops everything it started. Everything runs on
// loopback, and the whole run is bounded by -timeout.
//
//	go run ./bench/waitmem                       # 10,000 waiters on 100 names
//	go run ./bench/waitmem -names 1              # 10,000 waiters on one name
//	go run ./bench/waitmem -runs 3 -heap heap.out
//
// Each connection is a file descriptor in this process and in the server:
// the soft limit of open files must exceed -waiters (Go raises its own soft
// limit to the hard limit, so a hard limit of 20,000 is enough for 10,000).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
)

type config struct {
	bin, redis, heap string
	names, waiters   int
	wait, settle     time.Duration
	timeout          time.Duration
	runs             int
	warm             int
	extraArgs        string
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "", "leasehold binary (default: go build ./cmd/leasehold into a temporary directory)")
	flag.StringVar(&c.redis, "redis", "", "address of a Redis to use (default: start redis-server on a free port)")
	flag.IntVar(&c.names, "names", 100, "names held, over which the waiters are spread")
	flag.IntVar(&c.waiters, "waiters", 10000, "waiting requests, one connection each")
	flag.DurationVar(&c.wait, "wait", 60*time.Second, "the wait each acquire asks for; must outlast the measurement")
	flag.DurationVar(&c.settle, "settle", 3*time.Second, "time between all waiting and reading the RSS")
	flag.DurationVar(&c.timeout, "timeout", 50*time.Second, "bound of one run, from start to stop")
	flag.IntVar(&c.runs, "runs", 1, "runs, each with a fresh server; the median is printed too")
	flag.IntVar(&c.warm, "warm", 0, "waves of waiters that fill the server and hang up before the measured one, as a server that has been busy a while")
	flag.StringVar(&c.heap, "heap", "", "write a heap profile of the server's last run here (starts it with --pprof)")
	flag.StringVar(&c.extraArgs, "serve-args", "", "more arguments for leasehold serve, space-separated")
	flag.Parse()
	if err := run(&c); err != nil {
		fmt.Fprintln(os.Stderr, "waitmem:", err)
		os.Exit(1)
	}
}

func run(c *config) error {
	if c.wait < c.timeout {
		return errors.New("-wait must be at least -timeout, so that no waiter leaves before the measurement")
	}
	tmp, err := os.MkdirTemp("", "waitmem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if c.bin == "" {
		c.bin = filepath.Join(tmp, "leasehold")
		build := exec.Command("go", "build", "-o", c.bin, "./cmd/leasehold")
		build.Dir, err = moduleRoot()
		if err != nil {
			return err
		}
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	redisAddr := c.redis
	if redisAddr == "" {
		srv, err := redistest.New()
		if err != nil {
			return err
		}
		defer srv.Close()
		redisAddr = srv.Addr()
	}
	fmt.Printf("waitmem: %d waiters on %d names, wait=%s, bin=%s\n", c.waiters, c.names, c.wait, c.bin)
	var rss []int
	for i := 0; i < c.runs; i++ {
		heap := ""
		if i == c.runs-1 {
			heap = c.heap
		}
		r, err := measure(c, redisAddr, fmt.Sprintf("waitmem%d-%d", os.Getpid(), i), heap)
		if err != nil {
			return err
		}
		fmt.Printf("run %d: VmRSS %d MB  VmHWM %d MB  Go stacks %.0f MB  heap in use %.0f MB  heap free, kept %.0f MB  goroutines %d  (%d waiting)\n",
			i+1, r.rssKB>>10, r.hwmKB>>10, r.stackMB, r.heapMB, r.idleMB, r.goroutines, r.waiting)
		rss = append(rss, r.rssKB)
	}
	sort.Ints(rss)
	fmt.Printf("median VmRSS %d MB over %d runs (%.1f KB per waiter)\n",
		rss[len(rss)/2]>>10, len(rss), float64(rss[len(rss)/2])/float64(c.waiters))
	return nil
}

// moduleRoot is the directory of the go.mod this command belongs to.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the leasehold module, or give -bin")
	}
	return filepath.Dir(mod), nil
}

type result struct {
	rssKB, hwmKB        int
	goroutines, waiting int
	stackMB, heapMB     float64 // Go's stack and heap in use, from /metrics
	idleMB              float64 // Go's free heap not yet returned to the OS
}

// measure runs one server, fills it with waiters, and reads its memory.
func measure(c *config, redisAddr, prefix, heap string) (*result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()

	args := []string{"serve", "--redis", "redis://" + redisAddr + "/0", "--listen", "127.0.0.1:0",
		"--max-wait", c.wait.String()}
	if heap != "" {
		args = append(args, "--pprof", "127.0.0.1:0")
	}
	args = append(args, strings.Fields(c.extraArgs)...)
	srv, err := startServer(c.bin, args)
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	names := make([]string, c.names)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
		if err := post(srv.url + "/v1/leases/" + names[i] + "/acquire?ttl=5m"); err != nil {
			return nil, fmt.Errorf("holding %s: %w", names[i], err)
		}
	}

	// Each wave fills the server with waiters; all but the last hang up.
	var (
		conns []net.Conn
		r     *result
	)
	defer func() { closeAll(conns) }()
	for wave := 0; ; wave++ {
		if conns, r, err = fill(ctx, c, srv, names); err != nil {
			return nil, err
		}
		if wave == c.warm {
			break
		}
		closeAll(conns)
		if err := drained(ctx, srv); err != nil {
			return nil, err
		}
	}
	select {
	case <-ctx.Done():
		return nil, errors.New("timeout while settling")
	case <-time.After(c.settle):
	}
	if r.rssKB, r.hwmKB, err = procMem(srv.cmd.Process.Pid); err != nil {
		return nil, err
	}
	m, err := scrape(srv.url + "/metrics")
	if err != nil {
		return nil, err
	}
	// The goroutines are read again after the settle: one scrape's series
	// are not one instant (the registry gathers its collectors apart), so
	// the count of the scrape that saw the last waiter arrive can predate
	// the last connections.
	r.goroutines = int(m["go_goroutines"])
	r.stackMB, r.heapMB = m["go_memstats_stack_inuse_bytes"]/(1<<20), m["go_memstats_heap_inuse_bytes"]/(1<<20)
	r.idleMB = (m["go_memstats_heap_idle_bytes"] - m["go_memstats_heap_released_bytes"]) / (1 << 20)
	if heap != "" {
		// gc=1: the profile, and the figures after it, follow a full GC.
		if err := fetch("http://"+srv.pprof+"/debug/pprof/heap?gc=1", heap); err != nil {
			return nil, err
		}
		rss, _, err := procMem(srv.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		m, err := scrape(srv.url + "/metrics")
		if err != nil {
			return nil, err
		}
		fmt.Printf("after a forced GC: VmRSS %d MB  Go heap in use %.0f MB; heap profile in %s\n",
			rss>>10, m["go_memstats_heap_inuse_bytes"]/(1<<20), heap)
	}
	return r, nil
}

// fill opens c.waiters connections, each with a waiting acquire on one of
// names, and returns once the server counts them all waiting.
func fill(ctx context.Context, c *config, srv *server, names []string) ([]net.Conn, *result, error) {
	conns := make([]net.Conn, c.waiters)
	// Dial and send from a few goroutines, so the accept queue keeps up.
	var wg sync.WaitGroup
	errs := make(chan error, c.waiters)
	const senders = 64
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			var d net.Dialer
			for i := s; i < c.waiters; i += senders {
				conn, err := d.DialContext(ctx, "tcp", srv.addr)
				if err != nil {
					errs <- err
					return
				}
				conns[i] = conn
				req := "POST /v1/leases/" + names[i%len(names)] + "/acquire?wait=" + c.wait.String() +
					" HTTP/1.1\r\nHost: waitmem\r\nContent-Length: 0\r\n\r\n"
				if _, err := io.WriteString(conn, req); err != nil {
					errs <- err
					return
				}
			}
		}(s)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return conns, nil, fmt.Errorf("sending the waiters: %w", err)
	}

	r := &result{}
	for {
		m, err := scrape(srv.url + "/metrics")
		if err != nil {
			return conns, nil, err
		}
		r.waiting, r.goroutines = int(m["leasehold_waiting_acquires"]), int(m["go_goroutines"])
		if r.waiting >= c.waiters {
			return conns, r, nil
		}
		select {
		case <-ctx.Done():
			return conns, nil, fmt.Errorf("only %d of %d acquires waiting before the timeout", r.waiting, c.waiters)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func closeAll(conns []net.Conn) {
	for _, conn := range conns {
		if conn != nil {
			conn.Close()
		}
	}
}

// drained waits until the server counts no waiting acquire.
func drained(ctx context.Context, srv *server) error {
	for {
		m, err := scrape(srv.url + "/metrics")
		if err != nil {
			return err
		}
		if m["leasehold_waiting_acquires"] == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v acquires still waiting after their clients hung up", m["leasehold_waiting_acquires"])
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// server is a running `leasehold serve`.
type server struct {
	cmd         *exec.Cmd
	addr, url   string
	pprof       string
	stderrLines []string
	done        chan struct{}
}

var (
	urlPattern   = regexp.MustCompile(`url=(http://(\S+))`)
	pprofPattern = regexp.MustCompile(`pprof_addr=(\S+)`)
)

func startServer(bin string, args []string) (*server, error) {
	s := &server{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if m := pprofPattern.FindStringSubmatch(line); m != nil {
				s.pprof = m[1]
			}
			if m := urlPattern.FindStringSubmatch(line); m != nil && s.url == "" {
				s.url, s.addr = m[1], m[2]
				close(ready)
			}
			if len(s.stderrLines) < 20 {
				s.stderrLines = append(s.stderrLines, line)
			}
		}
	}()
	select {
	case <-ready:
		return s, nil
	case <-time.After(20 * time.Second):
		s.stop()
		return nil, fmt.Errorf("leasehold serve did not log its URL within 20s: %s", strings.Join(s.stderrLines, "\n"))
	}
}

// stop sends SIGTERM, waits up to 15 s, then kills.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd.Wait()
}

func post(url string) error {
	res, err := http.Post(url, "", nil)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("got %d %s", res.StatusCode, b)
	}
	return nil
}

// scrape reads the unlabelled series of a Prometheus text page.
func scrape(url string) (map[string]float64, error) {
	res, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

func fetch(url, file string) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// procMem reads VmRSS and VmHWM, in KB, from /proc/PID/status.
func procMem(pid int) (rss, hwm int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, nil
}
