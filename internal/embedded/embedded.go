// Package embedded is Leasehold's zero-setup store: an in-process,
// Redis-compatible server (miniredis) on a loopback port, so `leasehold serve`
// works on a machine with nothing installed. The lease package talks to it
// through the same go-redis client and runs the same Lua scripts as on Redis.
//
// miniredis only expires keys when told time has passed, so Store advances its
// clock with the real one every Tick. Expiry is therefore up to one Tick late,
// and PTTL answers are up to one Tick stale. State lives in this process's
// memory on one node: it is lost when the process ends and is not shared with
// any other server. Use Redis for anything that matters.
package embedded

import (
	"fmt"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Tick is how often the store's clock catches up with real time.
const Tick = 5 * time.Millisecond

// Store is a running embedded store. Close stops it.
type Store struct {
	m    *miniredis.Miniredis
	stop chan struct{}
	done sync.WaitGroup
}

// Start starts a store listening on a free loopback port.
func Start() (*Store, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded: start: %w", err)
	}
	s := &Store{m: m, stop: make(chan struct{})}
	s.done.Add(1)
	go s.clock()
	return s, nil
}

// Addr is the host:port the store listens on.
func (s *Store) Addr() string { return s.m.Addr() }

// Close stops the clock and the server; the data is gone.
func (s *Store) Close() {
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
