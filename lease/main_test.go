package lease_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// shared is one real redis-server for the tests of this package that need no
// server of their own; they keep apart by lease name.
var shared *redistest.Server

// backendAddr and backendDialer are where newClient connects: the shared
// redis-server, or the embedded store (no address, only a Dialer of
// in-process pipes) while TestEmbeddedConformance runs.
var (
	backendAddr   string
	backendDialer func(ctx context.Context, network, addr string) (net.Conn, error)
)

func TestMain(m *testing.M) {
	if os.Getenv(envWorker) != "" {
		os.Exit(workerMain()) // a worker process of procs_test.go, not the tests
	}
	var err error
	shared, err = redistest.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	backendAddr = shared.Addr()
	// Channels unsubscribe as soon as nobody waits, so that tests see no
	// connection left behind; TestWaitSubscriptionLingers sets it back.
	restore := lease.SetLinger(0)
	code := m.Run()
	restore()
	shared.Close()
	os.Exit(code)
}

// autoPipeline makes clientOptions keep the autopipeliner on (whatever
// NoAutoPipeline a test asks for), while TestAutoPipeline runs.
var autoPipeline bool

// clientOptions returns opts, without NoAutoPipeline while TestAutoPipeline runs.
func clientOptions(opts *lease.Options) *lease.Options {
	var o lease.Options
	if opts != nil {
		o = *opts
	}
	switch {
	case autoPipeline:
		o.NoAutoPipeline = false
	case backendDialer != nil:
		// The embedded store's connections are unbuffered pipes, on
		// which the autopipeliner stalls (see cmd/leasehold/serve.go).
		o.NoAutoPipeline = true
	default:
		return opts
	}
	return &o
}

// newClient returns a Client on the shared server and a go-redis client to
// look at the keys directly.
func newClient(t testing.TB, opts *lease.Options) (*lease.Client, *redis.Client) {
	rdb := redis.NewClient(&redis.Options{Addr: backendAddr, Dialer: backendDialer})
	t.Cleanup(func() { rdb.Close() })
	return lease.New(rdb, clientOptions(opts)), rdb
}

// runs counts uniq's calls, so a test run again (-count=N) gets new names.
var runs atomic.Int64

// uniq turns a test name into a valid lease name, unique to this call.
func uniq(t testing.TB) string {
	r := strings.NewReplacer("/", ".", " ", "_", "#", "-", "=", "")
	return r.Replace(t.Name()) + "." + strconv.FormatInt(runs.Add(1), 10)
}
