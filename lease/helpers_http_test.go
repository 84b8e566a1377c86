package lease_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/lease"
)

// overHTTP returns an httpapi.Client of a real httpapi server over c.
func overHTTP(t *testing.T, c *lease.Client) lease.Interface {
	s := httpapi.New(c, &httpapi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ts := httptest.NewServer(s)
	t.Cleanup(func() { s.Stop(); ts.Close() })
	hc := httpapi.NewClient(ts.URL, nil)
	t.Cleanup(func() { hc.Close() })
	return hc
}

// TestHelpersOverHTTP runs the Keeper, Do and Election over the HTTP client:
// the helpers need only lease.Interface.
func TestHelpersOverHTTP(t *testing.T) {
	rc, rdb := newClient(t, nil)
	hc := overHTTP(t, rc)
	name := uniq(t)

	t.Run("keeper", func(t *testing.T) {
		l, err := hc.Acquire(ctx, name+".k", &lease.AcquireOptions{TTL: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		k := lease.Keep(ctx, hc, l, nil)
		defer k.Stop()
		select {
		case <-k.Done():
			t.Fatalf("keeper ended: %v", k.Err())
		case <-time.After(time.Second):
		}
		rdb.Del(ctx, "leasehold:{"+name+".k}")
		waitDone(t, k, time.Second)
		if err := k.Err(); !errors.Is(err, lease.ErrLost) || !errors.Is(err, lease.ErrNotFound) {
			t.Errorf("got %v, want lost: not found", err)
		}
	})

	t.Run("do", func(t *testing.T) {
		var ran atomic.Int32
		err := lease.Do(ctx, hc, name+".d", &lease.DoOptions{TTL: 300 * time.Millisecond, Hold: 2 * time.Second},
			func(ctx context.Context, l *lease.Lease) error {
				ran.Add(1)
				if err := lease.Do(ctx, hc, name+".d", nil, func(context.Context, *lease.Lease) error { ran.Add(1); return nil }); !errors.Is(err, lease.ErrHeld) {
					t.Errorf("a nested Do = %v, want ErrHeld", err)
				}
				time.Sleep(500 * time.Millisecond) // past the TTL: renewed over HTTP
				return ctx.Err()
			})
		if err != nil || ran.Load() != 1 {
			t.Fatalf("Do = %v with %d runs, want nil and 1", err, ran.Load())
		}
		if l, err := rc.Get(ctx, name+".d"); err != nil || l.TTL > 1600*time.Millisecond || l.TTL < 1200*time.Millisecond {
			t.Errorf("after Do with a 2s hold: %v, %v; want the lease kept about 1.5s more", l, err)
		}
	})

	t.Run("election", func(t *testing.T) {
		var overlap overlapCheck
		a := startCandidate(t, hc, name+".e", "a", time.Second, &overlap)
		b := startCandidate(t, hc, name+".e", "b", time.Second, &overlap)
		first := waitLeader(t, []*candidate{a, b}, 2*time.Second)
		first.stop()
		second := waitLeader(t, []*candidate{a, b}, time.Second)
		if second == first {
			t.Errorf("%s leads again after stopping", first.id)
		}
	})
}
