package lease_test

import (
	"context"
	"testing"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func redistestStart(t *testing.T) *redistest.Server { return redistest.Start(t) }

// live is 1 when the lease hash key holds a live grant, else 0: the
// EXISTS of the lease, whose key outlives it by the fence retention.
func live(rdb redis.Scripter, key string) (int64, error) {
	ok, err := redistest.LeaseLive(context.Background(), rdb, key)
	if ok {
		return 1, err
	}
	return 0, err
}
