package httpapi_test

import (
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// TestWaitingRequestsKeepSmallStacks guards the memory of waiting
// acquires. Each keeps net/http's connection goroutine parked inside the
// handler for the whole wait. Go gives a goroutine a 4 KiB stack, doubles
// it the first time a call chain goes deeper than about 3 KiB, and halves
// it again only when less than 1.2 KiB is in use, which a parked handler
// never is. net/http's connection goroutine takes 1.2 KiB before it calls
// the handler, and the Go runtime's slow path of an allocation up to
// 0.6 KiB more, so every frame between net/http and the lease wait, and
// every call made from there (reading the parameters, joining the queue),
// must keep within about 1.3 KiB, or 10,000 waiting requests take 40 MB
// more (docs/benchmarks.md). Calls that go deeper are made from frames that
// return before the wait parks; only the one waiter per name that attempts
// the acquire goes deep, through go-redis.
//
// The clients are bare TCP connections, so that the stacks counted are the
// server's: the connection goroutine and net/http's background reader,
// 6 KiB a request when all fits in 4 KiB, 10 KiB when it does not. What
// freed stacks the runtime keeps from earlier tests adds up to about 1.5 KiB
// of noise, hence the bound of 8.5 KiB.
//
// To find the call that grows the stack: hold the lease, start one waiting
// request and let it attempt, then call debug.SetMaxStack(4096) before the
// others; the first goroutine to grow crashes the test with its stack,
// whose sp= offsets give each frame's depth.
//
// The race detector makes every frame larger, so under -race the test
// stops short of its check; ./scripts/test runs it again without.
func TestWaitingRequestsKeepSmallStacks(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes every frame larger: scripts/test runs this test again without -race")
	}
	e := newEnv(t, nil)
	name := uniq(t)
	e.do("POST", "/v1/leases/"+name+"/acquire?ttl=1m", "").want(t, 200, "")

	const n = 1000
	addr := strings.TrimPrefix(e.ts.URL, "http://")
	requests := []string{
		// Parameters in the query, and in a JSON body.
		fmt.Sprintf("POST /v1/leases/%s/acquire?wait=1m&ttl=30s&holder=h HTTP/1.1\r\nHost: x\r\n\r\n", name),
		fmt.Sprintf("POST /v1/leases/%s/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n\r\n{\"wait\":\"1m\",\"ttl\":\"30s\",\"holder\":\"h\"}    ", name),
	}
	before := stackBytes()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte(requests[i%len(requests)])); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		return strings.Contains(metricsText(t, e), fmt.Sprintf("leasehold_waiting_acquires %d", n))
	})
	per := (stackBytes() - before) / n
	t.Logf("%d waiting requests: %d bytes of goroutine stack each", n, per)
	if want := int64(8704); per > want {
		t.Errorf("got %d bytes of stack per waiting request, want at most %d: a call on the waiting path grows the connection goroutine's stack to 8 KiB", per, want)
	}

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitFor(t, func() bool { return strings.Contains(metricsText(t, e), "leasehold_waiting_acquires 0") })
}

// stackBytes is the memory that goroutine stacks take, after a GC has
// shrunk what it can.
func stackBytes() int64 {
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
