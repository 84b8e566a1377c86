package lease_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// exampleClient is a Client on the test Redis; a program would pass its own
// redis.NewClient(&redis.Options{Addr: "..."}).
func exampleClient() *lease.Client {
	return lease.New(redis.NewClient(&redis.Options{Addr: shared.Addr()}), nil)
}

// Do runs a job at most once across the fleet: every host calls it, one runs
// the function, the others get ErrHeld. With Hold, the lease outlives the job
// so a host whose cron fires a little late does not run it again.
func ExampleDo() {
	c := exampleClient()
	ctx := context.Background()
	err := lease.Do(ctx, c, "example-nightly-report", &lease.DoOptions{TTL: 30 * time.Second, Holder: "host-a"},
		func(ctx context.Context, l *lease.Lease) error {
			// Give l.Fence to every write; stop when ctx is cancelled (lease lost).
			fmt.Println("running the report; fence > 0:", l.Fence > 0)
			return nil
		})
	switch {
	case errors.Is(err, lease.ErrHeld):
		fmt.Println("another host runs it")
	case err != nil:
		fmt.Println("failed:", err)
	}
	// Output: running the report; fence > 0: true
}

// Keep renews a lease in the background; its Context is cancelled, with a
// *LostError as the cause, if the lease is lost.
func ExampleKeep() {
	c := exampleClient()
	ctx := context.Background()
	l, err := c.Acquire(ctx, "example-migration", &lease.AcquireOptions{TTL: 300 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	k := lease.Keep(ctx, c, l, nil)
	select {
	case <-k.Done():
		fmt.Println("lost:", k.Err())
	case <-time.After(time.Second): // work for more than three TTLs
		fmt.Println("still held after 1s:", k.Err() == nil)
	}
	if err := k.Release(ctx); err != nil {
		fmt.Println(err)
	}
	// Output: still held after 1s: true
}

// An Election runs a client-go style loop with callbacks; OnStartedLeading
// gets the lease, whose fence goes with every write the leader makes.
func ExampleElection() {
	c := exampleClient()
	ctx, stop := context.WithCancel(context.Background())
	e, err := lease.NewElection(c, lease.ElectionConfig{
		Name: "example-scheduler", Identity: "pod-1", TTL: 2 * time.Second,
		Callbacks: lease.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context, l *lease.Lease) {
				fmt.Println("leading")
				stop() // a real leader works until ctx is cancelled
			},
			OnStoppedLeading: func() { fmt.Println("stopped leading") },
			OnNewLeader:      func(id string) { fmt.Println("leader:", id) },
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(e.Run(ctx))
	// Output:
	// leader: pod-1
	// leading
	// stopped leading
	// context canceled
}
