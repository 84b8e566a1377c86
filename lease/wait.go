package lease

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// acquireWait tries to acquire until it is granted or o.Wait has passed
// (then the error is the last *HeldError), or ctx ends (then the error wraps
// ctx.Err()).
//
// This first version polls; the waiting issue replaces it with waiters woken
// by the release itself.
func (c *Client) acquireWait(ctx context.Context, name string, o *AcquireOptions) (*Lease, error) {
	deadline := time.NewTimer(o.Wait)
	defer deadline.Stop()
	for {
		l, err := c.tryAcquire(ctx, name, o)
		var held *HeldError
		if !errors.As(err, &held) {
			return l, err
		}
		t := time.NewTimer(min(held.TTL, 50*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lease: acquire %q: %w", name, ctx.Err())
		case <-deadline.C:
			t.Stop()
			return nil, held
		case <-t.C:
		}
	}
}
