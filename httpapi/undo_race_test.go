package httpapi_test

import (
	"context"
	"github.com/leasehold/leasehold/internal/redistest"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/lease"
)

// TestClientUndoOutlastsTheServersCall: the HTTP client's undo must
// outlast the server's own call of the acquire it gave up on. When the path
// from the server to Redis delays the acquire more than the undo's release
// (a lost segment on one connection, a congested path that clears), a
// release that answered not_found at once would end the undo before the
// acquire lands and makes a grant nobody holds the token of.
func TestClientUndoOutlastsTheServersCall(t *testing.T) {
	e := newEnv(t, &envOptions{proxy: true})
	c := httpapi.NewClient(e.ts.URL, nil)
	defer c.Close()
	name := uniq(t)
	key := "leasehold:{" + name + "}"
	e.proxy.SetDelay(800 * time.Millisecond) // the acquire's chunk is slow...
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	_, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute})
	e.proxy.SetDelay(0) // ...the path recovers for later chunks
	if !lease.Unknown(err) {
		t.Fatalf("Acquire = %v, want an unknown outcome", err)
	}
	sctx, scancel := context.WithTimeout(bg, 10*time.Second)
	defer scancel()
	if err := c.Settle(sctx); err != nil {
		t.Fatalf("Settle = %v", err)
	}
	settled := time.Now()
	time.Sleep(1500 * time.Millisecond) // the server's call lands
	if n, _ := live(e.rdb, key); n != 0 {
		pttl, _ := redistest.LeaseLeft(bg, e.rdb, key)
		t.Errorf("Settle returned at %s, yet a grant nobody holds the token of is there for another %v", settled.Format("15:04:05.000"), pttl)
	}
}
