// Command leader is a service that elects one leader among its replicas
// with lease.Election. Run it several times with different -id:
//
//	go run ./examples/leader -id a -redis redis://127.0.0.1:6379/0
//	go run ./examples/leader -id b -server http://127.0.0.1:7070
//
// The leader does its work (here: a line every -every) with the lease's fence,
// which a real service passes to every write so that a deposed leader's late
// writes are refused. Kill the leader and another replica takes over within
// the TTL; stop it with SIGINT/SIGTERM and it resigns, so the next one takes
// over at once.
//
// It prints one line per event, for people and for the test:
//
//	leader a                    (OnNewLeader: the leader is now a)
//	started a fence 1795...     (OnStartedLeading)
//	work a fence 1795...        (work done as leader)
//	stopped a                   (OnStoppedLeading)
package main

import (
	"context"
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
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "leader:", err)
		os.Exit(1)
	}
}

func run() error {
	host, _ := os.Hostname()
	id := flag.String("id", fmt.Sprintf("%s-%d", host, os.Getpid()), "this replica's identity")
	name := flag.String("name", "example-leader", "the lease the replicas compete for")
	ttl := flag.Duration("ttl", 15*time.Second, "lease TTL: the longest the service is without a leader after a crash")
	every := flag.Duration("every", time.Second, "how often the leader works")
	redisURL := flag.String("redis", "", "Redis URL (redis://host:port/db); or use -server")
	server := flag.String("server", "http://127.0.0.1:7070", "Leasehold server URL, when -redis is not given")
	flag.Parse()

	var c lease.Interface
	if *redisURL != "" {
		opts, err := redis.ParseURL(*redisURL)
		if err != nil {
			return err
		}
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		c = lease.New(rdb, nil)
	} else {
		hc := httpclient.New(*server, &httpclient.Options{Token: os.Getenv("LEASEHOLD_TOKEN")})
		defer hc.Close()
		c = hc
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := lease.NewElection(c, lease.ElectionConfig{
		Name: *name, Identity: *id, TTL: *ttl,
		Callbacks: lease.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context, l *lease.Lease) {
				fmt.Printf("started %s fence %d\n", *id, l.Fence)
				t := time.NewTicker(*every)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done(): // lost or resigned: stop acting as leader at once
						return
					case <-t.C:
						// A real service writes here, passing l.Fence along.
						fmt.Printf("work %s fence %d\n", *id, l.Fence)
					}
				}
			},
			OnStoppedLeading: func() { fmt.Printf("stopped %s\n", *id) },
			OnNewLeader:      func(leader string) { fmt.Printf("leader %s\n", leader) },
		},
	})
	if err != nil {
		return err
	}
	err = e.Run(ctx)
	if ctx.Err() != nil {
		return nil // stopped by a signal: Run has resigned
	}
	return err
}
