package lease_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// candidate is one Election run in a goroutine, recording what it saw.
type candidate struct {
	id     string
	e      *lease.Election
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	leading bool
	terms   []int64 // fences of its terms
	seen    []string
}

func (c *candidate) isLeading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading
}

func startCandidate(t *testing.T, lc lease.Interface, name, id string, ttl time.Duration, overlap *overlapCheck) *candidate {
	t.Helper()
	c := &candidate{id: id, done: make(chan struct{})}
	var err error
	c.e, err = lease.NewElection(lc, lease.ElectionConfig{
		Name: name, Identity: id, TTL: ttl,
		Callbacks: lease.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context, l *lease.Lease) {
				overlap.enter(t, id)
				c.mu.Lock()
				c.leading = true
				c.terms = append(c.terms, l.Fence)
				c.mu.Unlock()
				<-ctx.Done()
				c.mu.Lock()
				c.leading = false
				c.mu.Unlock()
				overlap.leave(id)
			},
			OnNewLeader: func(identity string) {
				c.mu.Lock()
				c.seen = append(c.seen, identity)
				c.mu.Unlock()
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	go func() {
		defer close(c.done)
		c.e.Run(ctx)
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *candidate) stop() {
	c.cancel()
	<-c.done
}

// overlapCheck fails the test when two candidates lead at once in this
// process (no pauses here, so the lease must exclude them).
type overlapCheck struct {
	mu     sync.Mutex
	leader string
}

func (o *overlapCheck) enter(t *testing.T, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.leader != "" {
		t.Errorf("%s started leading while %s leads", id, o.leader)
	}
	o.leader = id
}

func (o *overlapCheck) leave(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.leader == id {
		o.leader = ""
	}
}

// waitLeader polls until exactly one of cs leads, and returns it.
func waitLeader(t *testing.T, cs []*candidate, within time.Duration) *candidate {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		var leaders []*candidate
		for _, c := range cs {
			if c.isLeading() {
				leaders = append(leaders, c)
			}
		}
		if len(leaders) == 1 {
			return leaders[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no single leader among %d candidates within %v", len(cs), within)
	return nil
}

func TestElectionOneLeaderAndHandOver(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	const ttl = time.Second
	var overlap overlapCheck
	var cs []*candidate
	for i := range 3 {
		cs = append(cs, startCandidate(t, c, name, fmt.Sprintf("node-%d", i), ttl, &overlap))
	}
	first := waitLeader(t, cs, 2*time.Second)
	l, err := first.e.Leader(ctx)
	if err != nil || l.Holder != first.id {
		t.Fatalf("Leader = %v, %v; want %s", l, err, first.id)
	}

	// A leader that stops (its Run's context ends) resigns: the next one is
	// elected at once, woken by the release, not after the TTL.
	start := time.Now()
	first.stop()
	rest := make([]*candidate, 0, 2)
	for _, c := range cs {
		if c != first {
			rest = append(rest, c)
		}
	}
	second := waitLeader(t, rest, ttl)
	if took := time.Since(start); took > ttl/2 {
		t.Errorf("hand-over after a resign took %v, want well under the TTL %v", took, ttl)
	}
	l2, err := second.e.Leader(ctx)
	if err != nil || l2.Holder != second.id || l2.Fence <= l.Fence {
		t.Errorf("Leader = %+v, %v; want %s with a fence above %d", l2, err, second.id, l.Fence)
	}
	if n := second.e.Transitions(); n < 2 {
		t.Errorf("got %d transitions seen by the new leader, want at least 2", n)
	}

	// Resign hands over too.
	if err := second.e.Resign(ctx); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	var third *candidate
	for _, c := range rest {
		if c != second {
			third = c
		}
	}
	if got := waitLeader(t, rest, ttl); got != third {
		t.Errorf("after a Resign got %s leading, want %s", got.id, third.id)
	}
	if err := second.e.Resign(ctx); !errors.Is(err, lease.ErrNotLeader) {
		t.Errorf("Resign when not leading = %v, want ErrNotLeader", err)
	}
}

func TestElectionLeaderLosingTheLeaseStopsLeading(t *testing.T) {
	c, rdb := newClient(t, nil)
	name := uniq(t)
	var overlap overlapCheck
	a := startCandidate(t, c, name, "a", time.Second, &overlap)
	waitLeader(t, []*candidate{a}, 2*time.Second)
	// Another takes the lease behind a's back: a stops leading at its next
	// renewal, and campaigns again.
	rdb.Del(ctx, "leasehold:{"+name+"}")
	thief, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 500 * time.Millisecond, Holder: "thief"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for a.isLeading() {
		if time.Now().After(deadline) {
			t.Fatal("a still leads 1s after its lease was taken")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// After the thief's lease expires, a is elected again with a higher fence.
	waitLeader(t, []*candidate{a}, 2*time.Second)
	a.mu.Lock()
	terms := append([]int64(nil), a.terms...)
	seen := append([]string(nil), a.seen...)
	a.mu.Unlock()
	if len(terms) != 2 || terms[1] <= thief.Fence {
		t.Errorf("got terms %v, want two with the second above the thief's fence %d", terms, thief.Fence)
	}
	if len(seen) < 3 || seen[0] != "a" || seen[1] != "thief" || seen[len(seen)-1] != "a" {
		t.Errorf("got leaders seen %q, want a, thief, ..., a", seen)
	}
}

func TestElectionObserve(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	e, err := lease.NewElection(c, lease.ElectionConfig{Name: name, Identity: "watcher", TTL: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Leader(ctx); !errors.Is(err, lease.ErrNoLeader) {
		t.Errorf("Leader with nobody leading = %v, want ErrNoLeader", err)
	}
	octx, cancel := context.WithCancel(ctx)
	ch := e.Observe(octx)
	for _, holder := range []string{"x", "y"} {
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: holder})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ch:
			if got.Holder != holder || got.Fence != l.Fence || got.Token != "" {
				t.Errorf("observed %+v, want holder %s fence %d and no token", got, holder, l.Fence)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("leader %s not observed within 2s", holder)
		}
		c.Release(ctx, name, l.Token)
	}
	cancel()
	for range ch { // closed when ctx ends
	}
}

func TestNewElectionChecksItsConfig(t *testing.T) {
	c, _ := newClient(t, nil)
	for _, cfg := range []lease.ElectionConfig{
		{Name: "", Identity: "a"},
		{Name: "bad name", Identity: "a"},
		{Name: "ok"},
	} {
		if _, err := lease.NewElection(c, cfg); !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("NewElection(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}
