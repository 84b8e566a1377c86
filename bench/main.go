// Command bench measures Leasehold beside its peers in one run: the lease SDK,
// raw EVALSHA, bsm/redislock and go-redsync in-process, and leasehold serve
// beside a naive echo server over HTTP, each against the same redis-server,
// alternating configurations round by round so that drift of a shared machine
// hits them all alike. Contended, it also runs each caller as a worker
// process of its own (the bench re-executing itself), with the SDK and, when
// etcd is on PATH, with etcd's concurrency.Mutex. It prints markdown tables
// of medians across rounds, ratios to each peer, and the targets,
// met or not.
//
//	go run ./bench            # 3 rounds x 5 s per configuration, about 6 minutes
//	go run ./bench -quick     # 1 round x 1 s, a smoke run
//
// Load goes to loopback only and every run is bounded in time. See
// docs/benchmarks.md for what is measured and how.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	runWorkerIfAsked() // a worker process of a procs-* configuration never returns from it
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// settings are the parsed flags.
type settings struct {
	redis      string        // address of a Redis to use; "" starts one
	rounds     int           // rounds; each runs every configuration once
	duration   time.Duration // measured time of one configuration in one round
	warmup     time.Duration // unmeasured time before it
	conc       []int         // concurrencies of the uncontended runs
	contenders int           // callers on one name in the contended runs
	memLeases  int           // leases held for the memory figure; 0 skips it
	only       []string      // configuration names to run; nil runs all
}

func parseFlags(args []string, stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: go run ./bench [flags]

Measures acquire+release cycles of the lease SDK, raw EVALSHA, redislock,
redsync, leasehold serve and a naive echo server, uncontended and contended,
contended with a worker process per caller (the SDK, and etcd's Mutex when
etcd is on PATH), plus Redis memory per held lease. Tables go to stdout,
progress to stderr.

Flags:
`)
		fs.PrintDefaults()
	}
	var s settings
	fs.StringVar(&s.redis, "redis", "", "`host:port` of a scratch Redis to use (it keeps each lease name's last fence for the fence retention); default: start redis-server from PATH on a free loopback port")
	fs.IntVar(&s.rounds, "rounds", 3, "`rounds`; each runs every configuration once, in an order that rotates")
	fs.DurationVar(&s.duration, "duration", 5*time.Second, "measured `time` of one configuration in one round")
	fs.DurationVar(&s.warmup, "warmup", 500*time.Millisecond, "unmeasured `time` before each measurement")
	concFlag := fs.String("c", "1,8,64", "comma-separated `concurrencies` of the uncontended runs (unique names)")
	fs.IntVar(&s.contenders, "contenders", 64, "`callers` on one name in the contended runs (in procs-* runs, worker processes); 0 skips them")
	fs.IntVar(&s.memLeases, "mem-leases", 100000, "`leases` held through the SDK for the Redis memory figure; 0 skips it")
	onlyFlag := fs.String("only", "", "comma-separated configuration `names` to run (sdk, raw, redislock, redsync, serve, naive, contended-sdk, procs-sdk, procs-etcd, ...); default all")
	quick := fs.Bool("quick", false, "smoke run: 1 round x 1s, warmup 200ms, 10000 leases for memory (flags given explicitly win)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["rounds"] {
			s.rounds = 1
		}
		if !set["duration"] {
			s.duration = time.Second
		}
		if !set["warmup"] {
			s.warmup = 200 * time.Millisecond
		}
		if !set["mem-leases"] {
			s.memLeases = 10000
		}
	}
	for _, f := range strings.Split(*concFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return s, fmt.Errorf("-c: %q is not a positive integer", f)
		}
		s.conc = append(s.conc, n)
	}
	if *onlyFlag != "" {
		for _, f := range strings.Split(*onlyFlag, ",") {
			s.only = append(s.only, strings.TrimSpace(f))
		}
	}
	if s.rounds < 1 || s.duration <= 0 || s.warmup < 0 || s.contenders < 0 || s.memLeases < 0 {
		return s, errors.New("-rounds and -duration must be positive; -warmup, -contenders and -mem-leases not negative")
	}
	return s, nil
}
