package lease_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/leasehold/leasehold/lease"
)

func TestRedisLoggerRoutesGoRedisLines(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var _ interface {
		Printf(context.Context, string, ...any)
	} = lease.RedisLogger(l, slog.LevelWarn)
	redis.SetLogger(lease.RedisLogger(l, slog.LevelWarn)) // go-redis takes it
	defer redis.SetLogger(lease.RedisLogger(nil, 0))
	lease.RedisLogger(l, slog.LevelWarn).Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v\n", 5, "refused")
	got := buf.String()
	if !strings.Contains(got, "level=WARN") || !strings.Contains(got, `msg="redis: connection pool: failed to dial after 5 attempts: refused"`) ||
		!strings.Contains(got, "from=go-redis") {
		t.Errorf("got %q, want one WARN line with the message and from=go-redis", got)
	}
	buf.Reset()
	lease.RedisLogger(l, slog.LevelDebug).Printf(context.Background(), "dropped")
	lease.RedisLogger(nil, slog.LevelError).Printf(context.Background(), "dropped too")
	if buf.Len() != 0 {
		t.Errorf("below the handler's level, or with a nil logger: got %q, want nothing", buf.String())
	}
}
