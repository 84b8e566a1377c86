package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// httpWaiter is what one waiting HTTP client saw.
type httpWaiter struct {
	idx, server        int
	status             int
	fence              int64
	granted, releasing time.Time
	heldFence          int64 // the fence GET answered while it held (from another server)
	relStatus          int
	err                error
}

// httpCall POSTs (or GETs, when post is false) url and decodes the JSON answer.
func httpCall(ctx context.Context, hc *http.Client, post bool, url string) (int, map[string]any, error) {
	method := http.MethodGet
	if post {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, nil, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return res.StatusCode, nil, fmt.Errorf("%s %s: body %q is not JSON", method, url, b)
	}
	return res.StatusCode, v, nil
}

// TestServeWaitersInArrivalOrderAcrossThreeServers: three `leasehold
// serve` processes on one Redis; nine HTTP clients wait for one name,
// spread round-robin over the servers, each sent once the one before has
// joined the queue in Redis. One of them disconnects while it waits: its
// server's waiter leaves the queue at once. The holder's release (sent to
// another server than its acquire) hands the lease down the queue: the
// eight that still wait are granted in the order they came, each fence
// above the one before, none while the one before still held it, and the
// one that went away never.
func TestServeWaitersInArrivalOrderAcrossThreeServers(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client(t)
	lc := lease.New(rc, nil)
	var servers []string
	for range 3 {
		servers = append(servers, startServerOn(t, rs.URL()))
	}
	n := name(t)
	queue := "leasehold:{" + n + "}:q"
	ctx := context.Background()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 40 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)

	code, body, err := httpCall(ctx, hc, true, servers[0]+"/v1/leases/"+n+"/acquire?ttl=30s&holder=holder")
	if err != nil || code != 200 {
		t.Fatalf("holder's acquire: %d %v %v", code, body, err)
	}
	holderToken, holderFence := body["token"].(string), int64(body["fence"].(float64))

	queued := func(want int) time.Duration {
		t.Helper()
		began := time.Now()
		for {
			got, err := rc.LLen(ctx, queue).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got == int64(want) {
				l, err := lc.Get(ctx, n)
				if err != nil || l.Waiting != want {
					t.Fatalf("Get with %d queued: got %+v, %v, want Waiting %d", want, l, err, want)
				}
				return time.Since(began)
			}
			if time.Since(began) > 10*time.Second {
				t.Fatalf("LLEN %s: got %d after 10s, want %d", queue, got, want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	const waiters, gone = 9, 4
	results := make(chan httpWaiter, waiters)
	goneCtx, disconnect := context.WithCancel(ctx)
	defer disconnect()
	for i := range waiters {
		wctx := ctx
		if i == gone {
			wctx = goneCtx
		}
		go func(i int, wctx context.Context) {
			s := i % len(servers)
			w := httpWaiter{idx: i, server: s}
			defer func() { results <- w }()
			var v map[string]any
			w.status, v, w.err = httpCall(wctx, hc, true, fmt.Sprintf("%s/v1/leases/%s/acquire?wait=30s&ttl=10s&holder=http-%d", servers[s], n, i))
			if w.err != nil || w.status != 200 {
				return
			}
			w.granted = time.Now()
			w.fence = int64(v["fence"].(float64))
			token := v["token"].(string)
			if _, g, err := httpCall(ctx, hc, false, servers[(s+1)%len(servers)]+"/v1/leases/"+n); err == nil {
				if f, ok := g["fence"].(float64); ok {
					w.heldFence = int64(f)
				}
			}
			time.Sleep(20 * time.Millisecond)
			w.releasing = time.Now()
			w.relStatus, _, w.err = httpCall(ctx, hc, true, servers[s]+"/v1/leases/"+n+"/release?token="+token)
		}(i, wctx)
		queued(i + 1)
	}

	disconnected := time.Now()
	disconnect()
	left := queued(waiters - 1)
	t.Logf("the disconnected client's waiter left the queue %s after the disconnect", left)
	if left > time.Second {
		t.Errorf("the disconnected client's waiter left the queue %s after the disconnect, want < 1s", left)
	}
	entries, err := rc.LRange(ctx, queue, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var holders []string
	for _, e := range entries {
		if f := strings.SplitN(e, "\n", 6); len(f) == 6 {
			holders = append(holders, f[4])
		}
	}
	var want []int
	var wantHolders []string
	for i := range waiters {
		if i != gone {
			want = append(want, i)
			wantHolders = append(wantHolders, fmt.Sprintf("http-%d", i))
		}
	}
	if !slices.Equal(holders, wantHolders) {
		t.Errorf("queue after the disconnect: got holders %q, want %q", holders, wantHolders)
	}

	released := time.Now()
	code, body, err = httpCall(ctx, hc, true, servers[1]+"/v1/leases/"+n+"/release?token="+holderToken)
	if err != nil || code != 200 {
		t.Fatalf("holder's release through another server: %d %v %v", code, body, err)
	}
	var got []httpWaiter
	timeout := time.After(15 * time.Second)
	for range waiters {
		select {
		case w := <-results:
			if w.idx == gone {
				if w.status != 0 || !errors.Is(w.err, context.Canceled) {
					t.Errorf("the disconnected client: got %d, %v, want its own cancellation", w.status, w.err)
				}
				continue
			}
			if w.err != nil || w.status != 200 || w.relStatus != 200 {
				t.Errorf("waiter %d (server %d): acquire %d, release %d, %v", w.idx, w.server, w.status, w.relStatus, w.err)
				continue
			}
			got = append(got, w)
		case <-timeout:
			t.Fatalf("only %d of %d waiters answered within 15s of the release (disconnected at %s)", len(got), waiters-1, disconnected.Format(time.StampMilli))
		}
	}
	slices.SortFunc(got, func(a, b httpWaiter) int { return a.granted.Compare(b.granted) })
	var order []int
	for _, w := range got {
		order = append(order, w.idx)
	}
	if !slices.Equal(order, want) {
		t.Errorf("HTTP waiters were granted in the order %v, want the order of arrival %v", order, want)
	}
	prevFence, prevEnd := holderFence, released
	var gaps []time.Duration
	for i, w := range got {
		if w.fence <= prevFence {
			t.Errorf("grant %d (waiter %d): fence %d, want more than the previous %d", i, w.idx, w.fence, prevFence)
		}
		if !w.granted.After(prevEnd) {
			t.Errorf("grant %d (waiter %d) at %s, before the previous holder began to release at %s: they overlap",
				i, w.idx, w.granted.Format(time.StampMicro), prevEnd.Format(time.StampMicro))
		}
		if w.heldFence != w.fence {
			t.Errorf("waiter %d held fence %d, but GET on another server answered fence %d", w.idx, w.fence, w.heldFence)
		}
		gaps = append(gaps, w.granted.Sub(prevEnd))
		prevFence, prevEnd = w.fence, w.releasing
	}
	t.Logf("hand-overs (release to next grant, over HTTP): %v", gaps)
	if l, err := lc.Get(ctx, n); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after the last release: got %+v, %v, want not found", l, err)
	}
	if got, err := rc.LLen(ctx, queue).Result(); err != nil || got != 0 {
		t.Errorf("LLEN %s after the last release: got %d, %v, want 0", queue, got, err)
	}
	if w, err := rc.HGet(ctx, "leasehold:{"+n+"}", "w").Result(); err != redis.Nil {
		t.Errorf("the queue mark w after the last release: got %q, %v, want none", w, err)
	}
}
