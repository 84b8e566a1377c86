package regress_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// TestHelperWaiters is the child process: REVIEW_N waiters on REVIEW_NAME.
func TestHelperWaiters(t *testing.T) {
	addr := os.Getenv("REVIEW_ADDR")
	if addr == "" {
		t.Skip("child only")
	}
	n, _ := strconv.Atoi(os.Getenv("REVIEW_N"))
	name := os.Getenv("REVIEW_NAME")
	c := lease.New(redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64}), nil)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Acquire(context.Background(), name, &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "child", Wait: 4 * time.Minute})
		}()
	}
	fmt.Println("started")
	wg.Wait()
}

func startChild(t *testing.T, addr, name string, n int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWaiters$", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), "REVIEW_ADDR="+addr, "REVIEW_NAME="+name, "REVIEW_N="+strconv.Itoa(n))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// R4: 1100 waiters of a process that was SIGKILLed stand before a live
// waiter. The release drops 1000 of them and then releases the lease
// without telling anyone: the live waiter sleeps until the holder's TTL
// (as its last attempt saw it) plus 1s. The contract bounds a dead
// waiter's delay to 5s.
func TestR4ManyDeadWaiters(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	raw := newRdb(t, srv.Addr())
	B := lease.New(newRdb(t, srv.Addr()), nil)
	X := lease.New(newRdb(t, srv.Addr()), nil)
	name := "r4"
	h, err := B.Acquire(ctx, name, &lease.AcquireOptions{TTL: 20 * time.Second, Holder: "B"})
	if err != nil {
		t.Fatal(err)
	}
	child := startChild(t, srv.Addr(), name, 1100)
	waitFor(t, 30*time.Second, "1100 queued", func() bool { n, _ := raw.LLen(ctx, "leasehold:{r4}:q").Result(); return n == 1100 })
	t.Logf("killing child pid %d", child.Process.Pid)
	syscall.Kill(child.Process.Pid, syscall.SIGKILL)
	child.Wait()
	waitFor(t, 5*time.Second, "child's subscription gone", func() bool {
		n, _ := raw.PubSubNumPat(ctx).Result()
		ch, _ := raw.PubSubChannels(ctx, "*").Result()
		return n == 0 && len(ch) == 0
	})
	resX := make(chan error, 1)
	var lx *lease.Lease
	go func() {
		var err error
		lx, err = X.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "X", Wait: 60 * time.Second})
		resX <- err
	}()
	waitFor(t, 5*time.Second, "X queued", func() bool { n, _ := raw.LLen(ctx, "leasehold:{r4}:q").Result(); return n == 1101 })
	rel := time.Now()
	if err := B.Release(ctx, name, h.Token); err != nil {
		t.Fatal(err)
	}
	n, _ := raw.LLen(ctx, "leasehold:{r4}:q").Result()
	_, gerr := B.Get(ctx, name)
	t.Logf("after the release: queue %d entries, Get: %v", n, gerr)
	select {
	case err := <-resX:
		d := time.Since(rel)
		if err != nil {
			t.Fatalf("X: %v", err)
		}
		if d > 5*time.Second {
			t.Errorf("DEFECT: X granted (fence %d) %s after the release (the lease was free all that time); bound 5s", lx.Fence, ms(d))
		} else {
			t.Logf("held: X granted %s after the release", ms(d))
		}
	case <-time.After(40 * time.Second):
		t.Errorf("DEFECT: X not granted 40s after the release")
	}
}
