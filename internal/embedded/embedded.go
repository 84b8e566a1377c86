// Package embedded is Leasehold's zero-setup store: an in-process,
// Redis-compatible server (miniredis), so `leasehold serve` works on a
// machine with nothing installed. The lease package talks to it through the
// same go-redis client and runs the same Lua scripts as on Redis.
//
// The store is private to its process: it has no listener, no port and no
// socket. Each client connection is one end of an in-memory net.Pipe whose
// other end miniredis serves (Store.Dial, the Dialer of Options), so no
// other process can read or change it, whatever auth the API has.
//
// miniredis only expires keys when told time has passed, so Store advances its
// clock with the real one every Tick. Expiry is therefore up to one Tick late,
// and PTTL answers are up to one Tick stale. State lives in this process's
// memory on one node: it is lost when the process ends and is not shared with
// any other server. Use Redis for anything that matters.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Tick is how often the store's clock catches up with real time.
const Tick = 5 * time.Millisecond

// Addr is the address that Options gives go-redis. It is a label for logs
// and errors only: Dial connects in process, whatever the address.
const Addr = "embedded"

// ErrClosed is Dial's error after Close.
var ErrClosed = errors.New("embedded: store closed")

// Store is a running embedded store. Close stops it.
type Store struct {
	m    *miniredis.Miniredis
	stop chan struct{}
	done sync.WaitGroup

	mu     sync.RWMutex // guards closed; Dial holds it to serve a new conn
	closed bool
}

// Start starts a store. It listens nowhere: connect with Dial.
func Start() (*Store, error) {
	s := &Store{m: miniredis.NewMiniRedis(), stop: make(chan struct{})}
	// miniredis starts a server without a listener on its first Dial; this
	// one starts it now, so that a fault shows here rather than later.
	c, err := s.m.Dial()
	if err != nil {
		return nil, fmt.Errorf("embedded: start: %w", err)
	}
	c.Close()
	s.done.Add(1)
	go s.clock()
	return s, nil
}

// Dial returns a new connection to the store: one end of a net.Pipe whose
// other end the store serves. Its signature is that of redis.Options.Dialer;
// network and addr are ignored.
func (s *Store) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed // miniredis would start afresh, empty
	}
	return s.m.Dial()
}

// Options returns the options of a go-redis client of the store: Addr and
// Dialer are set, the rest is the caller's to fill in.
func (s *Store) Options() *redis.Options {
	return &redis.Options{Addr: Addr, Dialer: s.Dial}
}

// Close stops the clock and the server, and closes every connection; the
// data is gone. Dial fails afterwards.
func (s *Store) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.done.Wait()
	s.m.Close()
}

// clock advances the store's TTLs by the real time that passed, so leases
// expire on their own. It measures elapsed time rather than counting ticks,
// so a late tick does not make leases live longer.
func (s *Store) clock() {
	defer s.done.Done()
	t := time.NewTicker(Tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.m.FastForward(now.Sub(last))
			last = now
		}
	}
}
