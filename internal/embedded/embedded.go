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
// other end the store serves, with its writes queued (see queuedConn). Its signature is that of redis.Options.Dialer;
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
	c, err := s.m.Dial()
	if err != nil {
		return nil, err
	}
	return newQueuedConn(c), nil
}

// queuedConn is the client's end of the store's pipe. A net.Pipe has no
// buffer: a write waits until the other end has read it all. A pipeline
// writes all its commands before it reads a reply, and the store answers
// each command as it reads it, so over a bare pipe the store blocked
// writing a reply nobody read yet while the client blocked writing the
// rest: a pipeline of 1000 commands failed with "write pipe: i/o timeout"
// (TestPipelinesDoNotStall), and with it the list of a page of leases.
// Here a write goes into a queue that a goroutine of the conn's feeds to
// the pipe, so the client can go on to read; Close ends the goroutine.
// Write deadlines do not apply (a write never waits); read deadlines do.
type queuedConn struct {
	net.Conn
	mu     sync.Mutex
	wake   *sync.Cond // signalled when queue grows or closed is set
	queue  []byte     // written by the client, not yet by the feed
	err    error      // the pipe's write error: later writes return it
	closed bool
	fed    chan struct{} // closed when the feed has returned
}

func newQueuedConn(c net.Conn) *queuedConn {
	q := &queuedConn{Conn: c, fed: make(chan struct{})}
	q.wake = sync.NewCond(&q.mu)
	go q.feed()
	return q
}

func (q *queuedConn) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return 0, net.ErrClosed
	case q.err != nil:
		return 0, q.err
	}
	q.queue = append(q.queue, p...)
	q.wake.Signal()
	return len(p), nil
}

// feed writes the queue to the pipe until the conn is closed.
func (q *queuedConn) feed() {
	defer close(q.fed)
	for {
		q.mu.Lock()
		for len(q.queue) == 0 && !q.closed {
			q.wake.Wait()
		}
		if q.closed {
			q.mu.Unlock()
			return
		}
		b := q.queue
		q.queue = nil
		q.mu.Unlock()
		if _, err := q.Conn.Write(b); err != nil {
			q.mu.Lock()
			q.err = err
			q.mu.Unlock()
			return
		}
	}
}

// Close closes the pipe (which ends a feed blocked in a write) and waits
// for the feed to return.
func (q *queuedConn) Close() error {
	q.mu.Lock()
	q.closed = true
	q.wake.Signal()
	q.mu.Unlock()
	err := q.Conn.Close()
	<-q.fed
	return err
}

func (q *queuedConn) SetDeadline(t time.Time) error    { return q.Conn.SetReadDeadline(t) }
func (q *queuedConn) SetWriteDeadline(time.Time) error { return nil }

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
