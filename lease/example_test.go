package lease_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// exampleRedis stands for your own client, such as
// redis.NewClient(&redis.Options{Addr: "localhost:6379"}); here it is the
// test suite's redis-server.
func exampleRedis() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: backendAddr})
}

func Example() {
	ctx := context.Background()
	rdb := exampleRedis()
	defer rdb.Close()
	c := lease.New(rdb, nil)

	l, err := c.Acquire(ctx, "example:nightly-report", &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "web-1"})
	if err != nil {
		fmt.Println("not acquired:", err)
		return
	}
	fmt.Println("acquired by", l.Holder, "for", l.TTL)
	// ... do the work, passing l.Fence to every store written to ...
	if err := c.Release(ctx, l.Name, l.Token); err != nil {
		fmt.Println("release:", err)
	}
	// Output: acquired by web-1 for 30s
}

func ExampleHeldError() {
	ctx := context.Background()
	rdb := exampleRedis()
	defer rdb.Close()
	c := lease.New(rdb, nil)

	first, _ := c.Acquire(ctx, "example:held", &lease.AcquireOptions{TTL: time.Minute, Holder: "host-a"})
	defer c.Release(ctx, first.Name, first.Token)

	_, err := c.Acquire(ctx, "example:held", &lease.AcquireOptions{Holder: "host-b"})
	var held *lease.HeldError
	if errors.As(err, &held) {
		fmt.Printf("held by %s, retry in %.0fs\n", held.Holder, held.TTL.Round(time.Second).Seconds())
	}
	// Output: held by host-a, retry in 60s
}

func ExampleClient_Renew() {
	ctx := context.Background()
	rdb := exampleRedis()
	defer rdb.Close()
	c := lease.New(rdb, nil)

	l, _ := c.Acquire(ctx, "example:renew", &lease.AcquireOptions{TTL: 10 * time.Second})
	defer c.Release(ctx, l.Name, l.Token)

	r, err := c.Renew(ctx, l.Name, l.Token, time.Minute)
	if errors.Is(err, lease.ErrNotHolder) || errors.Is(err, lease.ErrNotFound) {
		fmt.Println("lost the lease: stop working")
		return
	}
	fmt.Println("renewed for", r.TTL, "same fence:", r.Fence == l.Fence)
	// Output: renewed for 1m0s same fence: true
}

func ExampleClient_Verify() {
	ctx := context.Background()
	rdb := exampleRedis()
	defer rdb.Close()
	c := lease.New(rdb, nil)

	l, _ := c.Acquire(ctx, "example:verify", nil)
	defer c.Release(ctx, l.Name, l.Token)

	// A downstream service that keeps no fence record asks Leasehold instead.
	_, err := c.Verify(ctx, "example:verify", lease.Proof{Fence: l.Fence})
	fmt.Println("current fence valid:", err == nil)
	_, err = c.Verify(ctx, "example:verify", lease.Proof{Fence: l.Fence - 1})
	fmt.Println("older fence valid:", err == nil, errors.Is(err, lease.ErrNotHolder))
	// Output:
	// current fence valid: true
	// older fence valid: false true
}
