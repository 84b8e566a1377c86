package lease_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"go.uber.org/goleak"
)

// collect reads events until each of names has one, or fails after a
// second (a poll tells a change within about 250ms plus a pass).
func collect(t *testing.T, ch <-chan lease.Event, names []string) map[string]lease.Event {
	t.Helper()
	got := map[string]lease.Event{}
	deadline := time.After(time.Second)
	for len(got) < len(names) {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatal("the events channel closed")
			}
			if _, dup := got[e.Name]; dup {
				t.Fatalf("got a second event %+v of %s before the others had theirs (%v)", e, e.Name, got)
			}
			got[e.Name] = e
		case <-deadline:
			t.Fatalf("within 1s got events of %d names %v, want %d", len(got), got, len(names))
		}
	}
	return got
}

// On a Cluster, Watch polls every master: acquire, renew, release, break
// and expiry of names in different slots (and masters) each come as their
// event, in order per name, within a second; what was there before the
// Watch is told nothing; a resume starts with Missed; the Watch ends
// within a second of its context, and leaves no goroutine.
func TestClusterWatch(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	c := lease.New(rdb, clientOptions(&lease.Options{KeyPrefix: "cw:"}))
	if err := c.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	masters := map[string]bool{}
	for i := 0; i < 6; i++ {
		name := fmt.Sprintf("jobs:%d", i)
		names = append(names, name)
		m, err := rdb.MasterForKey(ctx, "cw:{"+name+"}")
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Fatalf("the names are all on one master (%v): the test proves nothing", masters)
	}
	// A grant made before the Watch: the first pass only takes it in.
	if _, err := c.Acquire(ctx, "jobs:before", &lease.AcquireOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := c.Watch(wctx, "jobs:", "$")
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string, got map[string]lease.Event, want func(name string) lease.Event) {
		t.Helper()
		for _, name := range names {
			g, w := got[name], want(name)
			if !strings.HasPrefix(g.ID, "c") || g.At.IsZero() {
				t.Errorf("%s %s: got id %q at %v, want a c-id and a time", step, name, g.ID, g.At)
			}
			g.ID, g.At = "", time.Time{}
			if g != w {
				t.Errorf("%s: got %+v, want %+v", step, g, w)
			}
		}
	}

	grants := map[string]*lease.Lease{}
	for _, name := range names {
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "web-1"})
		if err != nil {
			t.Fatal(err)
		}
		grants[name] = l
	}
	check("acquire", collect(t, ch, names), func(n string) lease.Event {
		return lease.Event{Kind: lease.Granted, Name: n, Holder: "web-1", Fence: grants[n].Fence, TTL: time.Minute}
	})
	for _, name := range names {
		if _, err := c.Renew(ctx, name, grants[name].Token, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	check("renew", collect(t, ch, names), func(n string) lease.Event {
		return lease.Event{Kind: lease.Renewed, Name: n, Holder: "web-1", Fence: grants[n].Fence, TTL: 2 * time.Minute}
	})
	for _, name := range names {
		if err := c.Release(ctx, name, grants[name].Token); err != nil {
			t.Fatal(err)
		}
	}
	check("release", collect(t, ch, names), func(n string) lease.Event {
		return lease.Event{Kind: lease.ReleasedKind, Name: n, Holder: "web-1", Fence: grants[n].Fence}
	})
	for _, name := range names {
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		grants[name] = l
	}
	check("acquire again", collect(t, ch, names), func(n string) lease.Event {
		return lease.Event{Kind: lease.Granted, Name: n, Fence: grants[n].Fence, TTL: time.Minute}
	})
	for _, name := range names {
		if _, err := c.Break(ctx, name, &lease.BreakOptions{Reason: "stuck", By: "ops"}); err != nil {
			t.Fatal(err)
		}
	}
	check("break", collect(t, ch, names), func(n string) lease.Event {
		return lease.Event{Kind: lease.BrokenKind, Name: n, Fence: grants[n].Fence, By: "ops", Reason: "stuck"}
	})
	for _, name := range names {
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 300 * time.Millisecond, Holder: "short"})
		if err != nil {
			t.Fatal(err)
		}
		grants[name] = l
	}
	check("short acquire", collect(t, ch, names), func(n string) lease.Event {
		return lease.Event{Kind: lease.Granted, Name: n, Holder: "short", Fence: grants[n].Fence, TTL: 300 * time.Millisecond}
	})
	expired := collect(t, ch, names)
	check("expiry", expired, func(n string) lease.Event {
		return lease.Event{Kind: lease.ExpiredKind, Name: n, Holder: "short", Fence: grants[n].Fence}
	})
	for _, name := range names {
		if e := expired[name]; e.At.After(grants[name].ExpiresAt.Add(time.Millisecond)) || e.At.Before(grants[name].ExpiresAt.Add(-time.Second)) {
			t.Errorf("expired %s at %v, want at its grant's expiry %v", name, e.At, grants[name].ExpiresAt)
		}
		// The poll had the history record it (CheckExpiry).
		h, err := c.History(ctx, name, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 1 || h[0].Ending != lease.Expired || h[0].Fence != grants[name].Fence {
			t.Errorf("history of %s: got %+v, want its expiry of fence %d recorded", name, h, grants[name].Fence)
		}
	}
	// Nothing more: the recorded expiry is not told again.
	select {
	case e := <-ch:
		t.Fatalf("got %+v after the expiries, want nothing", e)
	case <-time.After(600 * time.Millisecond):
	}

	// A resume: no poll keeps the past, so it starts with Missed.
	rctx, rcancel := context.WithCancel(ctx)
	rch, err := c.Watch(rctx, "jobs:", expired[names[0]].ID)
	if err != nil {
		t.Fatal(err)
	}
	if e := next(t, rch); e.Kind != lease.Missed {
		t.Errorf("resume: got %+v, want missed", e)
	}
	rcancel()
	for range rch {
	}

	start := time.Now()
	cancel()
	for range ch {
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Watch ended %v after its context, want within 1s", d)
	}
}

// A Cluster Watch whose pass the limit cuts says so (Truncated) rather
// than pretend it watches every name; one within the limit does not.
func TestClusterWatchTruncated(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	for _, tc := range []struct {
		limit int
		want  bool
	}{{limit: 4, want: true}, {limit: 0, want: false}} {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			c := lease.New(rdb, clientOptions(&lease.Options{KeyPrefix: "tr" + uniq(t) + ":", WatchLimit: tc.limit}))
			for i := 0; i < 30; i++ {
				if _, err := c.Acquire(ctx, fmt.Sprintf("n%02d", i), &lease.AcquireOptions{TTL: time.Minute}); err != nil {
					t.Fatal(err)
				}
			}
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch, err := c.Watch(wctx, "", "$")
			if err != nil {
				t.Fatal(err)
			}
			var got bool
			select {
			case e := <-ch:
				got = e.Kind == lease.Truncated
				if !got {
					t.Errorf("got %+v, want nothing or truncated", e)
				}
			case <-time.After(600 * time.Millisecond):
			}
			if got != tc.want {
				t.Errorf("limit %d over 30 names: got truncated %v, want %v", tc.limit, got, tc.want)
			}
			cancel()
			for range ch {
			}
		})
	}
}

// On a Cluster the scripts (given a key of the name's own slot) write no
// stream: the poll is all there is.
func TestClusterWritesNoStream(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	c := lease.New(rdb, clientOptions(nil))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := c.Watch(wctx, "", "$")
	if err != nil {
		t.Fatal(err)
	}
	name := uniq(t)
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Renew(ctx, name, l.Token, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, name, l.Token); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(ctx, "leasehold:{"+name+"}:e").Result(); err != nil || n != 0 {
		t.Fatalf("got %d (%v), want no events key in the name's slot", n, err)
	}
	cancel()
	for range ch {
	}
}
