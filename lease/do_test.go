package lease_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
	"go.uber.org/goleak"
)

func TestDoRunsOnceAcrossConcurrentCallers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, _ := newClient(t, nil)
	name := uniq(t)
	var ran atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, 8)
	started := make(chan struct{}, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = lease.Do(ctx, c, name, &lease.DoOptions{TTL: 5 * time.Second}, func(ctx context.Context, l *lease.Lease) error {
				ran.Add(1)
				started <- struct{}{}
				<-release
				return nil
			})
			if errs[i] != nil {
				started <- struct{}{}
			}
		})
	}
	for range errs {
		<-started // every caller ran fn or was refused
	}
	close(release)
	wg.Wait()
	held := 0
	for _, err := range errs {
		if errors.Is(err, lease.ErrHeld) {
			held++
		} else if err != nil {
			t.Errorf("Do: %v", err)
		}
	}
	if ran.Load() != 1 || held != len(errs)-1 {
		t.Errorf("got fn run %d times and %d *HeldError, want 1 and %d", ran.Load(), held, len(errs)-1)
	}
	if _, err := c.Get(ctx, name); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after Do: %v, want released", err)
	}
}

func TestDoReturnsFnErrorAndReleases(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	boom := errors.New("boom")
	var fence int64
	err := lease.Do(ctx, c, name, nil, func(ctx context.Context, l *lease.Lease) error {
		fence = l.Fence
		if v, err := c.Verify(ctx, name, lease.Proof{Fence: l.Fence}); err != nil || v.Fence != l.Fence {
			t.Errorf("Verify inside fn: %v, want the lease held", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("got %v, want fn's error", err)
	}
	if fence == 0 {
		t.Error("fn got no fence")
	}
	if _, err := c.Get(ctx, name); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after Do: %v, want released", err)
	}
}

func TestDoHoldKeepsTheLeaseUntilGrantPlusHold(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, _ := newClient(t, nil)
	name := uniq(t)
	const hold = 2 * time.Second
	start := time.Now()
	err := lease.Do(ctx, c, name, &lease.DoOptions{TTL: time.Second, Hold: hold}, func(ctx context.Context, l *lease.Lease) error {
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Get(ctx, name)
	if err != nil {
		t.Fatalf("Get right after a held Do: %v, want the lease kept", err)
	}
	left := hold - time.Since(start)
	if l.TTL < left-100*time.Millisecond || l.TTL > left+100*time.Millisecond {
		t.Errorf("got remaining TTL %v, want about %v (grant + hold - now)", l.TTL, left)
	}
	// A second run inside the hold period does not run.
	err = lease.Do(ctx, c, name, nil, func(context.Context, *lease.Lease) error {
		t.Error("fn ran inside another run's hold period")
		return nil
	})
	if !errors.Is(err, lease.ErrHeld) {
		t.Errorf("got %v, want ErrHeld inside the hold period", err)
	}
}

func TestDoCancelsFnWhenTheLeaseIsLost(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, rdb := newClient(t, nil)
	name := uniq(t)
	err := lease.Do(ctx, c, name, &lease.DoOptions{TTL: 300 * time.Millisecond}, func(ctx context.Context, l *lease.Lease) error {
		rdb.Del(ctx, "leasehold:{"+name+"}")
		select {
		case <-ctx.Done():
			if !errors.Is(context.Cause(ctx), lease.ErrLost) {
				t.Errorf("got cause %v, want ErrLost", context.Cause(ctx))
			}
			return ctx.Err()
		case <-time.After(3 * time.Second):
			t.Error("fn's context not cancelled 3s after its 300ms lease was deleted")
			return nil
		}
	})
	var lost *lease.LostError
	if !errors.As(err, &lost) || !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("got %v, want a *LostError (not found)", err)
	}
}

func TestDoRefusesAHoldAboveMaxTTL(t *testing.T) {
	c, _ := newClient(t, &lease.Options{MaxTTL: 2 * time.Second})
	ran := false
	err := lease.Do(ctx, c, uniq(t), &lease.DoOptions{TTL: time.Second, Hold: 5 * time.Second}, func(context.Context, *lease.Lease) error {
		ran = true
		return nil
	})
	var inv *lease.InvalidError
	if !errors.As(err, &inv) || inv.Code != lease.CodeInvalidTTL || ran {
		t.Errorf("Do with Hold 5s over MaxTTL 2s: got %v (ran: %v), want invalid_ttl before fn runs", err, ran)
	}
}
