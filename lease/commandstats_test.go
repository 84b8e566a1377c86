package lease_test

import (
	"context"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// commandStats reads INFO commandstats: calls by lower-case command name
// (subcommands as "client|setinfo"). Calls made inside Lua scripts count
// too, under their own names.
func commandStats(ctx context.Context, rdb redis.UniversalClient) (map[string]int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	stats := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				stats[name] = n
			}
		}
	}
	return stats, nil
}
