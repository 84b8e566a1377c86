package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartSentinel starts a Redis Sentinel that monitors master under the name
// masterName (quorum 1), and stops it when tb ends.
func StartSentinel(tb testing.TB, master *Server, masterName string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatal(InstallHint)
	}
	dir := tb.TempDir()
	conf := filepath.Join(dir, "sentinel.conf") // Sentinel rewrites it: it must be writable
	text := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 1000\n",
		masterName, master.port, masterName)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	s, err := launch(&Server{bin: bin, dir: dir, conf: conf, args: []string{"--sentinel"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Kill)
	return s
}

// FailoverClient returns a go-redis client that finds the master through the
// given sentinels, closed when tb ends.
func FailoverClient(tb testing.TB, masterName string, sentinels ...*Server) *redis.Client {
	addrs := make([]string, len(sentinels))
	for i, s := range sentinels {
		addrs[i] = s.Addr()
	}
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: masterName, SentinelAddrs: addrs, DialTimeout: time.Second,
	})
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}
