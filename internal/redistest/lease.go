package redistest

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// What tests read and change of a lease's hash (see lua/common.lua): a
// grant is live while its token t is set and its expiry e (Redis TIME in
// ms) is ahead of Redis's clock. The key itself outlives the grant by the
// fence retention, so its PTTL and EXISTS say nothing about the lease.

var leftScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 't', 'e')
if not cur[1] or not cur[2] then return 0 end
local now = redis.call('TIME')
local left = tonumber(cur[2]) - (tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
if left < 0 then return 0 end
return left`)

var expireInScript = redis.NewScript(`
local now = redis.call('TIME')
local e = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'e', string.format('%.0f', e))
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1`)

// LeaseLeft returns how long the grant in the lease hash key still lives by
// Redis's clock; 0 when it has no live grant (none, released or expired).
func LeaseLeft(ctx context.Context, rdb redis.Scripter, key string) (time.Duration, error) {
	ms, err := leftScript.Run(ctx, rdb, []string{key}).Int64()
	return time.Duration(ms) * time.Millisecond, err
}

// LeaseLive says whether the lease hash key holds a live grant.
func LeaseLive(ctx context.Context, rdb redis.Scripter, key string) (bool, error) {
	d, err := LeaseLeft(ctx, rdb, key)
	return d > 0, err
}

// ExpireLeaseIn makes the grant in the lease hash key expire d from now by
// Redis's clock, as if time had passed.
func ExpireLeaseIn(ctx context.Context, rdb redis.Scripter, key string, d time.Duration) error {
	return expireInScript.Run(ctx, rdb, []string{key}, d.Milliseconds()).Err()
}
