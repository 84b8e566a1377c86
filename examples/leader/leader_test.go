package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
)

// event is one line a replica printed.
type event struct {
	replica int
	verb    string // leader, started, work, stopped
	id      string
	fence   int64
}

// TestThreeReplicasKilledLeaderMovesWithinTTL runs this example as three
// processes on a real Redis, kills the leader with SIGKILL (no resign) and
// checks that another replica leads within the TTL; then stops the new
// leader with SIGTERM (it resigns) and checks the last one leads at once.
func TestThreeReplicasKilledLeaderMovesWithinTTL(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "leader")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	srv := redistest.Start(t)
	const ttl = time.Second
	events := make(chan event, 1000)
	procs := make([]*exec.Cmd, 3)
	done := make([]chan struct{}, 3)
	for i := range procs {
		cmd := exec.Command(bin, "-id", "r"+strconv.Itoa(i), "-ttl", ttl.String(), "-every", "100ms", "-redis", srv.URL())
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i], done[i] = cmd, make(chan struct{})
		go func() {
			defer close(done[i])
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				ev := event{replica: i, verb: f[0], id: f[1]}
				if len(f) == 4 {
					ev.fence, _ = strconv.ParseInt(f[3], 10, 64)
				}
				events <- ev
			}
			cmd.Wait()
		}()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done[i]
		})
	}

	// nextStart waits for a "started" line and checks that nobody else
	// started meanwhile among the replicas that are still alive.
	nextStart := func(within time.Duration) event {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case ev := <-events:
				if ev.verb == "started" {
					return ev
				}
			case <-deadline:
				t.Fatalf("no replica started leading within %v", within)
			}
		}
	}
	first := nextStart(5 * time.Second)
	if first.id != "r"+strconv.Itoa(first.replica) {
		t.Fatalf("replica %d printed id %s", first.replica, first.id)
	}

	killed := time.Now()
	procs[first.replica].Process.Signal(syscall.SIGKILL)
	<-done[first.replica]
	second := nextStart(3 * ttl)
	took := time.Since(killed)
	if second.replica == first.replica {
		t.Fatalf("the killed replica %d led again", first.replica)
	}
	if took > ttl+500*time.Millisecond {
		t.Errorf("leadership moved %v after the leader was killed, want within the TTL %v (+0.5s)", took, ttl)
	}
	if second.fence <= first.fence {
		t.Errorf("got fence %d for the new leader, want above %d", second.fence, first.fence)
	}
	t.Logf("killed r%d; r%d leads after %v", first.replica, second.replica, took)

	// A leader stopped with SIGTERM resigns: the last replica leads at once.
	stopped := time.Now()
	procs[second.replica].Process.Signal(syscall.SIGTERM)
	third := nextStart(3 * ttl)
	if took := time.Since(stopped); took > ttl/2 {
		t.Errorf("leadership moved %v after SIGTERM, want well under the TTL (the leader resigns)", took)
	}
	if third.replica == first.replica || third.replica == second.replica || third.fence <= second.fence {
		t.Errorf("got r%d fence %d leading third, want the last replica with a fence above %d", third.replica, third.fence, second.fence)
	}
	<-done[second.replica]
	if code := procs[second.replica].ProcessState.ExitCode(); code != 0 {
		t.Errorf("the replica stopped with SIGTERM exited %d, want 0", code)
	}
}
