package lease

import (
	"context"
	"errors"
	"time"
)

// acquireWait tries to acquire until it is granted, o.Wait has passed, or ctx
// ends. When the wait ends without a grant the error is the last *HeldError.
func (c *Client) acquireWait(ctx context.Context, name string, o *AcquireOptions) (*Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
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
			return nil, held
		case <-t.C:
		}
	}
}
