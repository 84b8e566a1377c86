package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

func TestBackendErrors(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	c := lease.New(rdb, nil)
	held, err := c.Acquire(ctx, "b", nil)
	if err != nil {
		t.Fatal(err)
	}

	srv.Pause()
	_, err = c.Renew(ctx, "b", held.Token, 0)
	var be *lease.BackendError
	if !errors.As(err, &be) || !errors.Is(err, lease.ErrBackend) || !be.MayHaveApplied || be.Op != "renew" {
		t.Errorf("renew on a paused Redis: got %v, want *BackendError that may have applied", err)
	}
	_, err = c.Get(ctx, "b")
	if !errors.As(err, &be) || be.MayHaveApplied {
		t.Errorf("get on a paused Redis: got %v, want *BackendError that did not apply", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Get(cctx, "b"); !errors.Is(err, context.Canceled) || errors.Is(err, lease.ErrBackend) {
		t.Errorf("get with a cancelled context: got %v, want context.Canceled", err)
	}
	srv.Resume()

	srv.Kill()
	_, err = c.Acquire(ctx, "b", nil)
	if !errors.As(err, &be) || be.MayHaveApplied {
		t.Errorf("acquire with Redis down (connection refused): got %v, want *BackendError that did not apply", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, lease.ErrBackend) {
		t.Errorf("Ping with Redis down: got %v, want ErrBackend", err)
	}
}
