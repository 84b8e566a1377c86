package lease

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// RedisLogger adapts l to go-redis's logger interface, so that the lines
// go-redis logs itself (during an outage, "redis: connection pool: failed
// to dial after 5 attempts ..." again and again, on stderr by default) go
// where the program's own logs go, at level; a nil l drops them. The SDK
// reports every failure of its own calls as an error either way. go-redis's
// logger is global: set it once, at start.
//
//	redis.SetLogger(lease.RedisLogger(slog.Default(), slog.LevelDebug))
func RedisLogger(l *slog.Logger, level slog.Level) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return redisLogger{l: l, level: level}
}

type redisLogger struct {
	l     *slog.Logger
	level slog.Level
}

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if r.l == nil || !r.l.Enabled(ctx, r.level) {
		return
	}
	r.l.Log(ctx, r.level, strings.TrimSpace(fmt.Sprintf(format, v...)), "from", "go-redis")
}
