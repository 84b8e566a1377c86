package lease_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

// TestCluster runs the lease operations on a real three-master Redis Cluster:
// every script touches one slot (the hash tag), releases are announced with
// SPUBLISH, and List walks every master.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	c := lease.New(rdb, clientOptions(nil))
	if err := c.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	const n = 40
	grants := map[string]*lease.Lease{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("jobs:%02d", i)
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "h"})
		if err != nil {
			t.Fatalf("Acquire %s: %v", name, err)
		}
		grants[name] = l
	}
	// The names spread over the masters, so List must visit all of them.
	perNode := map[string]int{}
	for name := range grants {
		addr, err := rdb.MasterForKey(ctx, "leasehold:{"+name+"}")
		if err != nil {
			t.Fatal(err)
		}
		perNode[addr.Options().Addr]++
	}
	if len(perNode) < 2 {
		t.Fatalf("all %d leases landed on one master (%v): the test proves nothing", n, perNode)
	}

	seen := map[string]bool{}
	cursor := ""
	for pages := 0; pages < 100; pages++ {
		p, err := c.List(ctx, &lease.ListOptions{Prefix: "jobs:", Limit: 7, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range p.Leases {
			if g := grants[l.Name]; g == nil || g.Fence != l.Fence {
				t.Errorf("listed %+v, not a grant of this test", l)
			}
			seen[l.Name] = true
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != n {
		t.Errorf("listed %d distinct leases over %d masters, want %d", len(seen), len(perNode), n)
	}

	l := grants["jobs:07"]
	waiter := lease.New(rdb, nil)
	defer waiter.Close()
	sub := rdb.SSubscribe(ctx, waiter.Channel(l.Name))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Renew(ctx, l.Name, l.Token, 0); err != nil {
		t.Errorf("Renew: %v", err)
	}
	if _, err := c.Acquire(ctx, l.Name, nil); !errors.Is(err, lease.ErrHeld) {
		t.Errorf("Acquire of a held lease: got %v, want ErrHeld", err)
	}
	// A caller of another Client waits: the release hands the lease over
	// and tells the waiter's Client on the lease's shard.
	got := make(chan error, 1)
	go func() {
		w, err := waiter.Acquire(ctx, l.Name, &lease.AcquireOptions{Wait: 10 * time.Second})
		if err == nil {
			err = waiter.Release(ctx, w.Name, w.Token)
		}
		got <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); waiter.Waiters(l.Name) == 0 || rdb.HGet(ctx, "leasehold:{jobs:07}", "w").Val() == ""; {
		if time.Now().After(deadline) {
			t.Fatal("the waiter did not join the queue")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := c.Release(ctx, l.Name, l.Token); err != nil {
		t.Fatalf("Release: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := sub.ReceiveMessage(tctx)
	if f := strings.Fields(fmt.Sprint(msg.Payload)); err != nil || len(f) != 3 || f[1] <= fmt.Sprint(l.Fence) {
		t.Errorf("got sharded hand-over %v (%v), want the waiter's id, a fence above %d and a time", msg, err, l.Fence)
	}
	if err := <-got; err != nil {
		t.Errorf("the waiter of another Client: %v", err)
	}
	if _, err := c.Get(ctx, l.Name); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after release: got %v, want ErrNotFound", err)
	}
}
