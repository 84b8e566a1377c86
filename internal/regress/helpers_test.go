package regress_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// waitFor polls cond every 5ms up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waiting(c *lease.Client, name string) int {
	l, err := c.Get(context.Background(), name)
	if err != nil {
		return -1
	}
	return l.Waiting
}

// dialer routes the dials whose number (1-based) is in via to addrVia, the
// others to addr: per-connection network faults.
func dialer(addr, addrVia string, via ...int) (func(ctx context.Context, network, a string) (net.Conn, error), *atomic.Int64) {
	var n atomic.Int64
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		k := int(n.Add(1))
		target := addr
		for _, v := range via {
			if v == k {
				target = addrVia
			}
		}
		if debugDial != nil {
			debugDial(k, target)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}, &n
}

func newRdb(t *testing.T, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

var debugDial func(k int, target string)
