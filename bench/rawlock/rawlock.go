// Package rawlock is the smallest correct Redis lock: one script that sets a
// key only if it is absent, with a time to live, and one that deletes it only
// for the holder of its token. It is the baseline of the benchmark: two
// EVALSHA round trips per acquire+release, no fence, no holder, no waiting.
package rawlock

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// acquire sets KEYS[1] to the token ARGV[1] for ARGV[2] milliseconds if it
// is absent. It returns "OK", or nil when the key exists.
var acquire = redis.NewScript(`return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])`)

// release deletes KEYS[1] if it holds the token ARGV[1]. It returns 1 when
// it deleted the key, else 0.
var release = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// NewToken returns a random token of 128 bits.
func NewToken() string { return rand.Text() }

// Acquire takes key for ttl with token. It reports false when the key is held.
func Acquire(ctx context.Context, rdb redis.Scripter, key, token string, ttl time.Duration) (bool, error) {
	err := acquire.Run(ctx, rdb, []string{key}, token, ttl.Milliseconds()).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return err == nil, err
}

// Release deletes key if token holds it. It reports false when it did not.
func Release(ctx context.Context, rdb redis.Scripter, key, token string) (bool, error) {
	n, err := release.Run(ctx, rdb, []string{key}, token).Int()
	return n == 1, err
}

// Load loads both scripts, so that the first calls need no EVAL.
func Load(ctx context.Context, rdb redis.Scripter) error {
	if err := acquire.Load(ctx, rdb).Err(); err != nil {
		return err
	}
	return release.Load(ctx, rdb).Err()
}
