package rawlock_test

import (
	"testing"
	"time"

	"github.com/leasehold/leasehold/bench/rawlock"
	"github.com/leasehold/leasehold/internal/redistest"
)

// TestScripts runs every branch of both scripts against a real Redis.
func TestScripts(t *testing.T) {
	ctx := t.Context()
	rdb := redistest.Start(t).Client(t)
	if err := rawlock.Load(ctx, rdb); err != nil {
		t.Fatalf("Load: %v", err)
	}
	a, b := rawlock.NewToken(), rawlock.NewToken()
	if a == b || len(a) < 16 {
		t.Fatalf("NewToken: got %q and %q, want two different tokens of at least 16 bytes", a, b)
	}
	steps := []struct {
		what string
		op   func() (bool, error)
		want bool
	}{
		{"acquire a free key", func() (bool, error) { return rawlock.Acquire(ctx, rdb, "k", a, time.Minute) }, true},
		{"acquire a held key", func() (bool, error) { return rawlock.Acquire(ctx, rdb, "k", b, time.Minute) }, false},
		{"release with another token", func() (bool, error) { return rawlock.Release(ctx, rdb, "k", b) }, false},
		{"release with the holder's token", func() (bool, error) { return rawlock.Release(ctx, rdb, "k", a) }, true},
		{"release a free key", func() (bool, error) { return rawlock.Release(ctx, rdb, "k", a) }, false},
		{"acquire after release", func() (bool, error) { return rawlock.Acquire(ctx, rdb, "k", b, time.Minute) }, true},
	}
	for _, s := range steps {
		got, err := s.op()
		if err != nil || got != s.want {
			t.Fatalf("%s: got %v, %v; want %v, nil", s.what, got, err, s.want)
		}
	}
	if ttl := rdb.PTTL(ctx, "k").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL after acquire: got %s, want (0, 1m]", ttl)
	}
}
