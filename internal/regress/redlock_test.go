package regress_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

func evals(t *testing.T, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "cmdstat_evalsha:") || strings.HasPrefix(line, "cmdstat_eval:") {
			_, rest, _ := strings.Cut(line, "calls=")
			v, _, _ := strings.Cut(rest, ",")
			k, _ := strconv.ParseInt(v, 10, 64)
			n += k
		}
	}
	return n
}

func rl(t *testing.T, addrs []string) *lease.Redlock {
	var ucs []redis.UniversalClient
	for _, a := range addrs {
		rdb := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { rdb.Close() })
		ucs = append(ucs, rdb)
	}
	r, err := lease.NewRedlock(ucs, &lease.Options{RestartDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// RL1: H holds the quorum (M1, M2) while M3 is unreachable from it; M3 is
// free. Redlock waiters over all three masters each win M3 alone (a
// minority), undo it, and the undo's release on M3 tells the others
// queued there. Count rounds while H holds, then release and check one
// winner at a time, and nothing left behind.
func TestRL1WaitersWhileHolderLacksOneMaster(t *testing.T) {
	ctx := context.Background()
	var srvs []*redistest.Server
	var raws []*redis.Client
	var addrs []string
	for i := 0; i < 3; i++ {
		s := redistest.Start(t)
		srvs = append(srvs, s)
		raws = append(raws, newRdb(t, s.Addr()))
		addrs = append(addrs, s.Addr())
	}
	p3, err := faultproxy.New(addrs[2])
	if err != nil {
		t.Fatal(err)
	}
	defer p3.Close()
	p3.Set(faultproxy.Refuse)
	H := rl(t, []string{addrs[0], addrs[1], p3.Addr()})
	name := "rl1"
	h, err := H.Acquire(ctx, name, &lease.AcquireOptions{TTL: 8 * time.Second, Holder: "H"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("H holds fence %d", h.Fence)
	const n = 6
	var mu sync.Mutex
	holders := 0
	maxHolders := 0
	var wg sync.WaitGroup
	results := make([]string, n)
	before := [3]int64{evals(t, raws[0]), evals(t, raws[1]), evals(t, raws[2])}
	start := time.Now()
	for i := 0; i < n; i++ {
		W := rl(t, addrs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := W.Acquire(ctx, name, &lease.AcquireOptions{TTL: 2 * time.Second, Holder: "W" + strconv.Itoa(i), Wait: 20 * time.Second})
			if err != nil {
				results[i] = "err " + err.Error()
				return
			}
			mu.Lock()
			holders++
			maxHolders = max(maxHolders, holders)
			mu.Unlock()
			results[i] = "got at " + ms(time.Since(start))
			time.Sleep(300 * time.Millisecond)
			mu.Lock()
			holders--
			mu.Unlock()
			if err := W.Release(ctx, name, l.Token); err != nil {
				t.Logf("W%d release: %v", i, err)
			}
		}()
	}
	time.Sleep(3 * time.Second)
	var during [3]int64
	for k := range 3 {
		during[k] = evals(t, raws[k]) - before[k]
	}
	t.Logf("scripts run in 3s while H held, per master: %v (%d waiters)", during, n)
	if during[2] > 20*n {
		t.Errorf("DEFECT?: %d scripts on M3 in 3s from %d waiters while H held the quorum: the waiters wake each other", during[2], n)
	}
	if err := H.Release(ctx, name, h.Token); err != nil {
		t.Logf("H release: %v", err)
	}
	wg.Wait()
	for i, r := range results {
		t.Logf("W%d: %s", i, r)
		if strings.HasPrefix(r, "err") {
			t.Errorf("W%d never got the lease: %s", i, r)
		}
	}
	if maxHolders > 1 {
		t.Errorf("DEFECT: %d holders at once", maxHolders)
	}
	time.Sleep(500 * time.Millisecond)
	for k, raw := range raws {
		tok, _ := raw.HGet(ctx, "leasehold:{"+name+"}", "t").Result()
		ql, _ := raw.LLen(ctx, "leasehold:{"+name+"}:q").Result()
		if tok != "" || ql != 0 {
			t.Errorf("M%d left behind: token %q queue %d", k+1, tok, ql)
		}
	}
}
