package redistest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET on a started server: %v", err)
	}

	s.Pause()
	if err := rdb.Get(ctx, "k").Err(); err == nil {
		t.Errorf("GET on a paused server answered, want a timeout")
	}
	s.Resume()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after Resume: %v", err)
	}

	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(ctx, "k").Result(); err != nil || n != 0 {
		// The first command may meet the old, dead connection; one retry is fair.
		if n, err = rdb.Exists(ctx, "k").Result(); err != nil || n != 0 {
			t.Errorf("after Restart: got %d keys (%v), want 0: no persistence", n, err)
		}
	}

	s.Kill()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Errorf("PING after Kill answered")
	}
}

func TestMissingRedisServerFailsWithHint(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := redistest.New()
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y redis-server") {
		t.Errorf("got %v, want the install hint", err)
	}
}
