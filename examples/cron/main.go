// Command cron is a job that several hosts start on the same schedule and
// that must run once: it runs its work under lease.Do, so one host does the
// work and the others skip it. With -hold, the lease is kept until that long
// after the grant, so a host whose schedule fires late does not run the same
// period again (kvz/cronlock's minimum hold).
//
//	go run ./examples/cron -name nightly-report -hold 10m -redis redis://127.0.0.1:6379/0
//
// It prints "ran NAME fence F" when it did the work, "skipped NAME: ..." when
// another host has it (exit 0: not an error for cron), and exits 1 on failure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/httpapi/httpclient"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

func main() {
	host, _ := os.Hostname()
	name := flag.String("name", "example-nightly-report", "the job's lease name")
	ttl := flag.Duration("ttl", time.Minute, "lease TTL, renewed about every ttl/3 while the job runs")
	hold := flag.Duration("hold", 0, "keep the lease this long from the grant, even after the job (cron skew)")
	work := flag.Duration("work", 100*time.Millisecond, "how long the pretend work takes")
	redisURL := flag.String("redis", "", "Redis URL (redis://host:port/db); or use -server")
	server := flag.String("server", "http://127.0.0.1:7070", "Leasehold server URL, when -redis is not given")
	flag.Parse()

	var c lease.Interface
	if *redisURL != "" {
		opts, err := redis.ParseURL(*redisURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cron:", err)
			os.Exit(2)
		}
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		c = lease.New(rdb, nil)
	} else {
		c = httpclient.New(*server, &httpclient.Options{Token: os.Getenv("LEASEHOLD_TOKEN")})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	err := lease.Do(ctx, c, *name, &lease.DoOptions{TTL: *ttl, Hold: *hold, Holder: host},
		func(ctx context.Context, l *lease.Lease) error {
			// The work: it stops when ctx is cancelled (the lease was lost), and
			// passes l.Fence with every write so a store can refuse a late one.
			select {
			case <-time.After(*work):
				fmt.Printf("ran %s fence %d\n", *name, l.Fence)
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
	var held *lease.HeldError
	switch {
	case errors.As(err, &held):
		fmt.Printf("skipped %s: held by %q for another %s\n", *name, held.Holder, held.TTL)
	case err != nil:
		fmt.Fprintln(os.Stderr, "cron:", err)
		os.Exit(1)
	}
}
