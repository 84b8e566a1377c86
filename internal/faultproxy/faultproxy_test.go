package faultproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func TestModes(t *testing.T) {
	srv := redistest.Start(t)
	p, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 300 * time.Millisecond, MaxRetries: -1, PoolSize: 1})
	defer rdb.Close()
	ctx := context.Background()

	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("forward: PING = %v, want PONG", err)
	}

	p.Set(faultproxy.Hang)
	start := time.Now()
	err = rdb.Ping(ctx).Err()
	if err == nil || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("hang: PING = %v after %v, want a timeout after about 300ms", err, time.Since(start))
	}

	p.Set(faultproxy.Forward)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("forward again: PING = %v, want PONG", err)
	}

	p.SetDelay(100 * time.Millisecond)
	start = time.Now()
	if err := rdb.Ping(ctx).Err(); err != nil || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("delay: PING = %v after %v, want PONG after at least 100ms", err, time.Since(start))
	}
	p.SetDelay(0)

	p.Set(faultproxy.Refuse)
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("refuse: PING = PONG, want a connection error")
	}
	p.Set(faultproxy.Forward)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("forward after refuse: PING = %v, want PONG", err)
	}
}
