package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/lease"
)

// TestElectionStopsLeadingPromptlyWhenRunsContextEnds: OnStoppedLeading
// comes soon after Run's context is cancelled, also when the path to Redis
// hangs (the release that hands over at once cannot get through; it must
// not hold the callback back), and Run returns once the release is done or
// given up.
func TestElectionStopsLeadingPromptlyWhenRunsContextEnds(t *testing.T) {
	for _, hang := range []bool{false, true} {
		name := map[bool]string{false: "healthy", true: "hung path"}[hang]
		t.Run(name, func(t *testing.T) {
			c, p, direct := hungClient(t, redis.Options{}, nil)
			lname := uniq(t)
			started := make(chan struct{})
			stopped := make(chan time.Time, 1)
			e, err := lease.NewElection(c, lease.ElectionConfig{Name: lname, Identity: "a", TTL: 3 * time.Second,
				Callbacks: lease.LeaderCallbacks{
					OnStartedLeading: func(ctx context.Context, _ *lease.Lease) { close(started); <-ctx.Done() },
					OnStoppedLeading: func() { stopped <- time.Now() },
				}})
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.Run(rctx) }()
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("not leading after 5s")
			}
			time.Sleep(500 * time.Millisecond)
			if hang {
				p.Set(faultproxy.Hang)
			}
			cancelled := time.Now()
			cancel()
			select {
			case at := <-stopped:
				if d := at.Sub(cancelled); d > 200*time.Millisecond {
					t.Errorf("OnStoppedLeading %v after Run's context was cancelled, want within 200ms", d)
				} else {
					t.Logf("OnStoppedLeading %v after the cancel", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no OnStoppedLeading 5s after the cancel")
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5s of the cancel")
			}
			if _, err := direct.Get(context.Background(), lname); !hang && err == nil {
				t.Errorf("the lease is still held after Run returned: want it released")
			}
			p.Set(faultproxy.Forward)
		})
	}
}
