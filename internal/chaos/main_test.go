package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/chaos"
	"github.com/redis/go-redis/v9"
)

// bin is the leasehold binary, built once for the package; self is this
// test binary, which `leasehold run` starts as its command (helperMain).
var bin, self string

func TestMain(m *testing.M) {
	if os.Getenv("CHAOS_HELPER") != "" {
		os.Exit(helperMain())
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if _, err := exec.LookPath("redis-server"); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: redis-server is not on PATH: install it (sudo apt-get install -y redis-server) or run ./scripts/test, which does")
		return 1
	}
	dir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "leasehold")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/leasehold/leasehold/cmd/leasehold").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: go build: %v\n%s", err, out)
		return 1
	}
	if self, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	redis.SetLogger(quietLogger{}) // go-redis's reconnect chatter; failures reach the history
	return m.Run()
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// helperMain is the command that a `leasehold run` of the workload runs:
// a holder that writes to the fenced store with LEASE_FENCE every 20ms
// (and at once when it is continued after a pause: the GC-pause case's late
// write) until CHAOS_HOLD has passed or it gets SIGTERM (the lease is lost),
// then reports the interval in which it believed it held.
func helperMain() int {
	got := chaos.Now()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGCONT)
	store, label, name := os.Getenv("CHAOS_STORE"), os.Getenv("CHAOS_LABEL"), os.Getenv("LEASE_NAME")
	fence, _ := strconv.ParseInt(os.Getenv("LEASE_FENCE"), 10, 64)
	sent, _ := strconv.ParseInt(os.Getenv("CHAOS_SENT"), 10, 64)
	hold, _ := time.ParseDuration(os.Getenv("CHAOS_HOLD"))
	if f := os.Getenv("CHAOS_PIDFILE"); f != "" {
		os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())), 0o600)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	write := func() {
		resp, err := hc.Post(fmt.Sprintf("%s/write?name=%s&label=%s&fence=%d", store, name, label, fence), "text/plain", nil)
		if err == nil {
			resp.Body.Close()
		}
	}
	write()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	done := time.After(hold)
	g := chaos.Grant{Client: os.Getenv("CHAOS_CLIENT"), Name: name, Label: label, Fence: fence, Sent: sent, Got: got}
loop:
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGTERM {
				g.End, g.Ended = chaos.Now(), "lost"
				break loop
			}
			write() // continued after a pause
		case <-tick.C:
			write()
		case <-done:
			g.End, g.Ended = chaos.Now(), "released"
			break loop
		}
	}
	b, _ := json.Marshal(g)
	if resp, err := hc.Post(store+"/grant", "application/json", bytes.NewReader(b)); err == nil {
		resp.Body.Close()
	}
	return 0
}
