package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/embedded"
	"github.com/redis/go-redis/v9"
)

func TestKeysExpireInRealTime(t *testing.T) {
	s, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	if err := rdb.Set(ctx, "k", "v", 100*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, "k").Result(); n != 1 {
		t.Fatalf("got %d keys right after SET, want 1", n)
	}
	time.Sleep(40 * time.Millisecond)
	pttl, err := rdb.PTTL(ctx, "k").Result()
	if err != nil || pttl <= 0 || pttl > 60*time.Millisecond+embedded.Tick {
		t.Errorf("got PTTL %v (%v) 40ms into a 100ms TTL, want about 60ms", pttl, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		n, err := rdb.Exists(ctx, "k").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key still exists 2s after its 100ms TTL: the clock does not advance")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCloseStopsServing(t *testing.T) {
	s, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err == nil {
		t.Errorf("PING after Close answered, want a connection error")
	}
}
