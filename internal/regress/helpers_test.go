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

// monitor logs every command Redis runs (truncated), from a raw MONITOR.
func monitor(t *testing.T, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write([]byte("MONITOR\r\n"))
	go func() {
		buf := make([]byte, 1<<16)
		var acc []byte
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			acc = append(acc, buf[:n]...)
			for {
				i := indexCRLF(acc)
				if i < 0 {
					break
				}
				line := string(acc[:i])
				acc = acc[i+2:]
				if len(line) > 220 {
					line = line[:220]
				}
				t.Logf("MON %s", line)
			}
		}
	}()
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return -1
}
