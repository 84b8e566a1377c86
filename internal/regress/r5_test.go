package regress_test

import (
	"context"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

// R5: a hash with a token but no (or a malformed) e: docs/engine.md says
// the old layout's hashes "have no e field and read as no grant".
func TestR5HashWithoutExpiry(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	raw := newRdb(t, srv.Addr())
	c := lease.New(newRdb(t, srv.Addr()), nil)
	for _, tc := range []struct {
		name   string
		fields []any
	}{
		{"oldlayout", []any{"t", "tok-old-layout-0123456789", "f", "5", "h", "old"}},
		{"texte", []any{"t", "tok-old-layout-0123456789", "f", "5", "e", "soon"}},
	} {
		raw.HSet(ctx, "leasehold:{"+tc.name+"}", tc.fields...)
		raw.Expire(ctx, "leasehold:{"+tc.name+"}", time.Minute)
		l, err := c.Acquire(ctx, tc.name, &lease.AcquireOptions{TTL: time.Second})
		t.Logf("%s: Acquire = %v, %v", tc.name, l, err)
		if err != nil {
			t.Errorf("DEFECT(%s): Acquire errs instead of reading it as no grant: %v", tc.name, err)
		}
		_, err = c.Get(ctx, tc.name)
		t.Logf("%s: Get err = %v", tc.name, err)
		err = c.Release(ctx, tc.name, "tok-old-layout-0123456789")
		t.Logf("%s: Release err = %v", tc.name, err)
		_, err = c.Renew(ctx, tc.name, "tok-old-layout-0123456789", time.Second)
		t.Logf("%s: Renew err = %v", tc.name, err)
	}
	// A queue entry that is malformed, and one whose token is empty.
	h, _ := c.Acquire(ctx, "badq", &lease.AcquireOptions{TTL: 5 * time.Second})
	raw.RPush(ctx, "leasehold:{badq}:q", "garbage", "w\nnobody\n60000\n\nh\n")
	raw.HSet(ctx, "leasehold:{badq}", "w", "1")
	t.Logf("release with malformed entries: %v", c.Release(ctx, "badq", h.Token))
	_, err := c.Acquire(ctx, "badq", &lease.AcquireOptions{TTL: time.Second})
	t.Logf("acquire after: %v", err)
}
