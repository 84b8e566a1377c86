package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// TestWatchPrintsEvents: leasehold watch prints each change of the names
// of its prefix, through a server and straight to Redis, and exits 0 on
// SIGINT.
func TestWatchPrintsEvents(t *testing.T) {
	url := startServerURL(t)
	for _, via := range [][]string{{"--redis", srv.URL()}, {"--server", url}} {
		t.Run(via[0], func(t *testing.T) {
			n := name(t)
			cmd := command(append([]string{"watch", "--prefix", n, "--json"}, via...)...)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 100)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			c := client(t)
			// Probe until the watch runs: its first line.
			var first string
			for first == "" {
				l, err := c.Acquire(bg, n+".probe", &lease.AcquireOptions{TTL: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				c.Release(bg, n+".probe", l.Token)
				select {
				case first = <-lines:
				case <-time.After(200 * time.Millisecond):
				}
			}
			l, err := c.Acquire(bg, n+".x", &lease.AcquireOptions{TTL: time.Minute, Holder: "cron-a"})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Release(bg, n+".x", l.Token); err != nil {
				t.Fatal(err)
			}
			var got []string
			deadline := time.After(5 * time.Second)
			for len(got) < 2 {
				select {
				case line := <-lines:
					var ev struct{ Kind, Name, Holder string }
					if err := json.Unmarshal([]byte(line), &ev); err != nil {
						t.Fatalf("%q: %v", line, err)
					}
					if ev.Name == n+".x" {
						got = append(got, ev.Kind+" "+ev.Holder)
					}
				case <-deadline:
					t.Fatalf("got %v within 5s, stderr %q", got, errb.String())
				}
			}
			if strings.Join(got, ",") != "granted cron-a,released cron-a" {
				t.Errorf("got %v, want granted then released", got)
			}
			cmd.Process.Signal(syscall.SIGINT)
			if err := cmd.Wait(); err != nil {
				t.Errorf("after SIGINT: %v, want exit 0; stderr %q", err, errb.String())
			}
		})
	}
}
