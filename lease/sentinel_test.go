package lease_test

import (
	"errors"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

// TestSentinel takes leases through a real Sentinel that points at a real master.
func TestSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "leasehold-test")
	c := lease.New(redistest.FailoverClient(t, "leasehold-test", sentinel), nil)

	l, err := c.Acquire(ctx, "via-sentinel", &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "h"})
	if err != nil {
		t.Fatalf("Acquire through Sentinel: %v", err)
	}
	direct := lease.New(master.Client(t), nil)
	g, err := direct.Get(ctx, "via-sentinel")
	if err != nil || g.Fence != l.Fence || g.Holder != "h" {
		t.Fatalf("the master itself: got %+v (%v), want the grant with fence %d", g, err, l.Fence)
	}
	if _, err := direct.Acquire(ctx, "via-sentinel", nil); !errors.Is(err, lease.ErrHeld) {
		t.Errorf("got %v, want ErrHeld", err)
	}
	if err := c.Release(ctx, "via-sentinel", l.Token); err != nil {
		t.Errorf("Release through Sentinel: %v", err)
	}
}
