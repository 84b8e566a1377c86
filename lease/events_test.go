package lease_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/embedded"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// next reads one event or fails after a second.
func next(t *testing.T, ch <-chan lease.Event) lease.Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("the events channel closed")
		}
		return e
	case <-time.After(3 * time.Second):
		t.Fatal("no event within 3s")
	}
	return lease.Event{}
}

// cycle acquires, renews, breaks and releases name on c, and returns what
// events it must yield.
func cycle(t *testing.T, c *lease.Client, name string) []lease.Event {
	t.Helper()
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Renew(ctx, name, l.Token, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, name, l.Token); err != nil {
		t.Fatal(err)
	}
	l2, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Break(ctx, name, &lease.BreakOptions{Reason: "stuck", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	return []lease.Event{
		{Kind: lease.Granted, Name: name, Holder: "web-1", Fence: l.Fence, TTL: time.Minute},
		{Kind: lease.Renewed, Name: name, Holder: "web-1", Fence: l.Fence, TTL: 2 * time.Minute},
		{Kind: lease.ReleasedKind, Name: name, Holder: "web-1", Fence: l.Fence},
		{Kind: lease.Granted, Name: name, Fence: l2.Fence, TTL: time.Minute},
		{Kind: lease.BrokenKind, Name: name, Fence: l2.Fence, By: "ops", Reason: "stuck"},
	}
}

// same compares events without their ids and times (checked to be set).
func same(t *testing.T, got, want []lease.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		if got[i].ID == "" || got[i].At.IsZero() {
			t.Errorf("event %d: got id %q at %v, want both set", i, got[i].ID, got[i].At)
		}
		g := got[i]
		g.ID, g.At = "", time.Time{}
		if g != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, g, want[i])
		}
	}
}

func testWatch(t *testing.T, rdb *redis.Client) {
	c := lease.New(rdb, &lease.Options{KeyPrefix: "ev" + uniq(t) + ":", NoAutoPipeline: true})
	name := uniq(t)
	// Nobody watched: no stream.
	c.Acquire(ctx, "other."+name, &lease.AcquireOptions{TTL: time.Minute})
	if n, _ := rdb.Exists(ctx, "ev"+t.Name()).Result(); n != 0 {
		t.Fatalf("got a stream before anyone watched")
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := c.Watch(wctx, name, "$")
	if err != nil {
		t.Fatal(err)
	}
	c.Acquire(ctx, "other."+name, &lease.AcquireOptions{TTL: time.Minute}) // not of the prefix
	want := cycle(t, c, name)
	var got []lease.Event
	for range want {
		got = append(got, next(t, ch))
	}
	same(t, got, want)

	// Resume after the second: exactly the rest.
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	ch2, err := c.Watch(rctx, name, got[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	var rest []lease.Event
	for range want[2:] {
		rest = append(rest, next(t, ch2))
	}
	same(t, rest, want[2:])

	cancel()
	for range ch {
	}
}

func TestWatch(t *testing.T) {
	_, rdb := newClient(t, nil)
	testWatch(t, rdb)
}

func TestWatchOnEmbeddedStore(t *testing.T) {
	store, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rdb := redis.NewClient(store.Options())
	defer rdb.Close()
	testWatch(t, rdb)
}

// An id older than the stream's window starts with a Missed event.
func TestWatchMissed(t *testing.T) {
	_, rdb := newClient(t, nil)
	prefix := "evm" + uniq(t) + ":"
	c := lease.New(rdb, &lease.Options{KeyPrefix: prefix})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := c.Watch(wctx, "", "$"); err != nil {
		t.Fatal(err)
	}
	name := uniq(t)
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.Release(ctx, name, l.Token)
	ch, err := c.Watch(wctx, "", "1-0")
	if err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch); e.Kind != lease.Missed {
		t.Fatalf("got %+v first, want missed", e)
	}
	if e := next(t, ch); e.Kind != lease.Granted {
		t.Fatalf("got %+v, want granted", e)
	}
}

// CheckExpiry records an expired grant at once, as an expired event.
func TestCheckExpiry(t *testing.T) {
	_, rdb := newClient(t, nil)
	c := lease.New(rdb, &lease.Options{KeyPrefix: "evx" + uniq(t) + ":"})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	name := uniq(t)
	ch, err := c.Watch(wctx, name, "")
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 100 * time.Millisecond, Holder: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.CheckExpiry(ctx, name, l.Fence); ok || err != nil {
		t.Fatalf("live: got %v, %v, want false", ok, err)
	}
	time.Sleep(150 * time.Millisecond)
	if ok, err := c.CheckExpiry(ctx, name, l.Fence); !ok || err != nil {
		t.Fatalf("expired: got %v, %v, want true", ok, err)
	}
	if ok, _ := c.CheckExpiry(ctx, name, l.Fence); ok {
		t.Fatal("again: got true, want false: recorded once")
	}
	next(t, ch)
	e := next(t, ch)
	if e.Kind != lease.ExpiredKind || e.Fence != l.Fence || !e.At.Equal(l.ExpiresAt.Truncate(time.Millisecond)) && e.At.Sub(l.ExpiresAt).Abs() > 5*time.Millisecond {
		t.Fatalf("got %+v, want expired of fence %d at %v", e, l.Fence, l.ExpiresAt)
	}
}

// A Redlock has no events (ErrEventsUnsupported): each master grants with
// a fence of its own before the quorum decides the grant's. A first
// version streamed the first master's, and this test saw "got granted of
// fence 1796422703754109, want granted of fence 1796422703755155".
func TestRedlockWatchIsUnsupported(t *testing.T) {
	r, _, rdbs := redlock(t)
	if _, err := r.Watch(ctx, "", "$"); !errors.Is(err, lease.ErrEventsUnsupported) || !strings.Contains(err.Error(), "Redlock") {
		t.Fatalf("got %v, want ErrEventsUnsupported naming the Redlock", err)
	}
	if _, err := r.Acquire(ctx, uniq(t), &lease.AcquireOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for i, rdb := range rdbs {
		if n, _ := rdb.Exists(ctx, "leasehold:events").Result(); n != 0 {
			t.Errorf("master %d has an events stream, want none", i)
		}
	}
}
