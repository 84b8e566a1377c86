package lease

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"
)

// ErrClosed is returned by a waiting Acquire of a Client that was closed.
var ErrClosed = errors.New("lease: client closed")

// subscriber is a Client's shared subscription to release announcements.
//
// It keeps one pub/sub connection (one per hash slot in use, for a Redis
// Cluster) while anybody waits, and none otherwise. Each channel is a topic
// with a FIFO queue of waiters; a channel is subscribed when its first waiter
// joins and unsubscribed when its last one leaves. Only the head of a queue
// acts: it attempts the acquire, and a release wakes only it, so a release
// costs one attempt per process however many goroutines wait.
type subscriber struct {
	rdb         redis.UniversalClient
	sharded     bool
	healthEvery time.Duration

	mu     sync.Mutex
	conns  map[string]*psconn // by shard key; guarded by mu
	closed bool               // guarded by mu

	// waiting counts the waiters in all queues, so that a Release finds out
	// without the lock that it has nobody to hand its lease to.
	waiting atomic.Int64
}

// psconn is one pub/sub connection and the goroutine that serves it. Its
// topics and queued commands are guarded by subscriber.mu.
type psconn struct {
	s      *subscriber
	key    string
	topics map[string]*topic
	cmds   []pscmd
	kick   chan struct{} // buffered 1: cmds were queued or the conn must stop
	stop   bool          // no topics left or Close: the goroutine ends
	done   chan struct{} // closed when the goroutine has ended
}

type pscmd struct {
	subscribe bool
	channel   string
}

// Topic states.
const (
	subscribing   = iota // SUBSCRIBE sent, reply not yet received
	subscribed           // reply received: releases reach us
	unsubscribing        // UNSUBSCRIBE sent, reply not yet received
)

// topic is the state of one channel (one lease name). All fields are
// guarded by subscriber.mu.
type topic struct {
	channel string
	state   int
	// confirmed is set once a subscription was confirmed; failed when the
	// connection failed before that, so the head attempts on its own timing.
	confirmed, failed bool
	queue             []*waiter // arrival order; queue[0] is the head

	// What this process knows about the lease, shared along the queue so a
	// new head need not ask Redis again.
	known   bool      // an attempt told holder and expiry
	holder  int64     // fence of the holder last seen; 0: none
	expiry  time.Time // when the holder's lease runs out (local clock), or when to retry
	retries int       // wake-ups: releases announced, resubscriptions
	retried int       // wake-ups that a completed attempt has covered
}

// waiter is one waiting Acquire. Its fields after wake are guarded by
// subscriber.mu.
type waiter struct {
	s    *subscriber
	t    *topic
	c    *psconn
	opts *AcquireOptions // what the waiter asks for, to hand a lease over to it
	wake chan struct{}   // buffered 1: something changed, look again

	claimed bool   // a Release is handing it the lease right now
	handed  *Lease // the lease a Release handed it, not yet taken
	gone    bool   // left its queue
	won     bool   // left with a lease of its own attempt (same token as handed)
}

func newSubscriber(rdb redis.UniversalClient, sharded bool) *subscriber {
	return &subscriber{rdb: rdb, sharded: sharded, healthEvery: healthEvery, conns: map[string]*psconn{}}
}

// shard names the connection that serves channel: one per hash slot in a
// Redis Cluster, one in all otherwise.
func (s *subscriber) shard(channel string) string {
	if !s.sharded {
		return ""
	}
	return strconv.Itoa(int(slot(channel)))
}

// join puts a waiter for o at the back of channel's queue, subscribing the
// channel when it is the first.
func (s *subscriber) join(channel string, o *AcquireOptions) (*waiter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	key := s.shard(channel)
	c := s.conns[key]
	if c == nil {
		c = &psconn{s: s, key: key, topics: map[string]*topic{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
		s.conns[key] = c
		go c.run()
	}
	t := c.topics[channel]
	if t == nil {
		t = &topic{channel: channel, state: subscribing}
		c.topics[channel] = t
		c.send(true, channel)
	}
	w := &waiter{s: s, t: t, c: c, opts: o, wake: make(chan struct{}, 1)}
	t.queue = append(t.queue, w)
	s.waiting.Add(1)
	return w, nil
}

// claim picks the waiter that a Release of channel's lease may hand it to:
// the head of the queue, unless another Release is handing it one already.
// Nil means a plain release. The claim ends with hand or unclaim.
func (s *subscriber) claim(channel string) *waiter {
	if s.waiting.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conns[s.shard(channel)]
	if s.closed || c == nil {
		return nil
	}
	t := c.topics[channel]
	if t == nil || len(t.queue) == 0 {
		return nil
	}
	w := t.queue[0]
	if w.claimed || w.handed != nil {
		return nil
	}
	w.claimed = true
	return w
}

// hand gives w the lease that a Release granted it, and says whether it is
// in good hands: false when w left without it, so the caller must release
// it again.
func (w *waiter) hand(l *Lease) bool {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.claimed = false
	if w.gone {
		// won: its own attempt took the lease with the same token, in
		// effect the same grant, and its caller holds it.
		return w.won
	}
	w.handed = l
	w.t.known, w.t.holder, w.t.expiry = true, l.Fence, time.Now().Add(l.TTL)
	w.poke()
	return true
}

// unclaim ends a claim that handed nothing over. With retry the state of
// the lease is unknown (Redis failed, or it is gone), so the head attempts.
func (w *waiter) unclaim(retry bool) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.claimed = false
	if retry && len(w.t.queue) > 0 {
		w.t.retries++
	}
	w.t.pokeHead()
}

// send queues a command for the connection's goroutine. Commands go out in
// the order they are queued, so replies can be matched to them.
func (c *psconn) send(subscribe bool, channel string) {
	c.cmds = append(c.cmds, pscmd{subscribe, channel})
	c.poke()
}

func (c *psconn) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (w *waiter) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (t *topic) pokeHead() {
	if len(t.queue) > 0 {
		t.queue[0].poke()
	}
}

// turn says whether w was handed the lease, or should attempt the acquire
// now and, if not, until when it may sleep (zero: until woken). It returns
// the retry count the attempt covers, for done.
func (w *waiter) turn(now time.Time) (handed *Lease, attempt bool, until time.Time, retries int, closed bool) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	t := w.t
	if w.s.closed {
		return nil, false, time.Time{}, 0, true
	}
	if w.handed != nil {
		return w.handed, false, time.Time{}, 0, false
	}
	if t.queue[0] != w || w.claimed || !t.confirmed && !t.failed {
		return nil, false, time.Time{}, 0, false
	}
	if !t.known || t.retries > t.retried || !now.Before(t.expiry) {
		return nil, true, time.Time{}, t.retries, false
	}
	return nil, false, t.expiry, 0, false
}

// done records the outcome of an attempt: the fence and expiry of whoever
// holds the lease now (us, if granted). The attempt's answer is what Redis
// says now, so it stands even when its fence is lower than the one seen
// before (after Redis lost the name's data, the clock may give a lower
// fence); only a hand-over to w during the attempt is newer news.
func (w *waiter) done(retries int, fence int64, expiry time.Time) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	t := w.t
	if w.handed == nil || fence >= t.holder {
		t.known, t.holder, t.expiry = true, fence, expiry
	}
	t.retried = max(t.retried, retries)
}

// leave takes w out of its queue; won says that it leaves with a lease of
// its own attempt. The next waiter becomes head and is told; whatever w
// learned stays with the topic. When the queue is empty the channel is
// unsubscribed, and the connection closed when it was the last. It returns
// a lease handed to w that w did not take, for the caller to release.
func (w *waiter) leave(won bool) (untaken *Lease) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.gone {
		return nil
	}
	w.gone, w.won = true, won
	if !won {
		untaken = w.handed
	}
	s.waiting.Add(-1)
	t, c := w.t, w.c
	for i, x := range t.queue {
		if x == w {
			t.queue = append(t.queue[:i], t.queue[i+1:]...)
			if i == 0 {
				t.pokeHead()
			}
			break
		}
	}
	if len(t.queue) > 0 {
		return untaken
	}
	t.known, t.holder, t.expiry, t.retries, t.retried = false, 0, time.Time{}, 0, 0
	c.unsubscribeIdle(t)
	return untaken
}

// unsubscribeIdle drops a topic without waiters; with s.mu held.
func (c *psconn) unsubscribeIdle(t *topic) {
	if len(c.topics) == 1 && c.s.conns[c.key] == c {
		// The last topic: close the connection rather than unsubscribe.
		delete(c.topics, t.channel)
		delete(c.s.conns, c.key)
		c.stop = true
		c.poke()
		return
	}
	if t.state == subscribed {
		t.state = unsubscribing
		c.send(false, t.channel)
	}
	// subscribing: unsubscribed when the reply comes; unsubscribing: on its way.
}

// run serves the connection until it has no topics: it writes the queued
// commands, and its reader dispatches replies and messages. When the
// connection fails it starts a new one and subscribes again every topic that
// has waiters; their heads then retry once, as releases may have been missed.
func (c *psconn) run() {
	defer close(c.done)
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval, retry.MaxInterval = 50*time.Millisecond, 2*time.Second
	for {
		began := time.Now()
		err := c.serve()
		if err == nil {
			return
		}
		if time.Since(began) > time.Minute {
			retry.Reset() // it had been healthy: this is a new outage
		}
		c.s.mu.Lock()
		for _, t := range c.topics {
			if len(t.queue) == 0 {
				delete(c.topics, t.channel)
				continue
			}
			t.state = subscribing
			t.failed = true
			t.retries++ // the head attempts now: Redis may be gone, or releases missed
			t.pokeHead()
		}
		if len(c.topics) == 0 && !c.stop {
			c.stop = true
			if c.s.conns[c.key] == c {
				delete(c.s.conns, c.key)
			}
		}
		stop := c.stop
		c.cmds = c.cmds[:0]
		for ch := range c.topics {
			c.cmds = append(c.cmds, pscmd{true, ch})
		}
		c.s.mu.Unlock()
		if stop {
			return
		}
		if !c.sleep(retry.NextBackOff()) {
			return
		}
	}
}

// sleep waits d before a reconnect; false means the connection must stop.
func (c *psconn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-c.kick:
			c.s.mu.Lock()
			stop := c.stop
			c.s.mu.Unlock()
			if stop {
				return false
			}
		}
	}
}

// healthEvery (read by New) is how long a pub/sub connection may stay silent
// before it is pinged; a second silence of that length ends it.
var healthEvery = 3 * time.Second

// serve runs one connection; nil means it ended because nobody waits.
func (c *psconn) serve() error {
	var ps *redis.PubSub
	if c.s.sharded {
		ps = c.s.rdb.SSubscribe(context.Background())
	} else {
		ps = c.s.rdb.Subscribe(context.Background())
	}
	defer ps.Close()
	failed := make(chan error, 1)
	var reader sync.WaitGroup
	defer reader.Wait()
	defer ps.Close() // ends the reader
	started := false
	for first := true; ; first = false {
		if !first {
			select {
			case <-c.kick:
			case err := <-failed:
				return err
			}
		}
		c.s.mu.Lock()
		if c.stop {
			c.s.mu.Unlock()
			return nil
		}
		cmds := c.cmds
		c.cmds = nil
		c.s.mu.Unlock()
		for _, cmd := range cmds {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var err error
			switch {
			case cmd.subscribe && c.s.sharded:
				err = ps.SSubscribe(ctx, cmd.channel)
			case cmd.subscribe:
				err = ps.Subscribe(ctx, cmd.channel)
			case c.s.sharded:
				err = ps.SUnsubscribe(ctx, cmd.channel)
			default:
				err = ps.Unsubscribe(ctx, cmd.channel)
			}
			cancel()
			if err != nil {
				return err
			}
		}
		if !started && len(cmds) > 0 {
			started = true
			reader.Add(1)
			go func() {
				defer reader.Done()
				failed <- c.read(ps)
			}()
		}
	}
}

// read dispatches what the connection receives until it fails or closes.
func (c *psconn) read(ps *redis.PubSub) error {
	ctx := context.Background()
	silent := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, c.s.healthEvery)
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && !silent {
				silent = true
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				continue
			}
			c.poke()
			return err
		}
		silent = false
		c.dispatch(msg)
	}
}

func (c *psconn) dispatch(msg any) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	switch m := msg.(type) {
	case *redis.Subscription:
		t := c.topics[m.Channel]
		if t == nil {
			return
		}
		switch m.Kind {
		case "subscribe", "ssubscribe":
			if t.state == unsubscribing {
				return
			}
			if t.confirmed || t.failed {
				t.retries++ // subscribed again after a failure: releases may be lost
			}
			t.state, t.confirmed = subscribed, true
			if len(t.queue) == 0 {
				c.unsubscribeIdle(t)
				return
			}
			t.pokeHead()
		case "unsubscribe", "sunsubscribe":
			if t.state != unsubscribing {
				return
			}
			if len(t.queue) > 0 {
				t.state = subscribing
				c.send(true, t.channel)
				return
			}
			delete(c.topics, t.channel)
			if len(c.topics) == 0 && c.s.conns[c.key] == c {
				delete(c.s.conns, c.key)
				c.stop = true
				c.poke()
			}
		}
	case *redis.Message:
		t := c.topics[m.Channel]
		if t == nil || t.state != subscribed || len(t.queue) == 0 {
			return
		}
		// A release of a holder older than the one last seen is old news.
		if fence, err := strconv.ParseInt(m.Payload, 10, 64); err == nil && fence < t.holder {
			return
		}
		t.retries++
		t.pokeHead()
	}
}

// close stops every connection and wakes every waiter; Acquire calls that
// wait return ErrClosed.
func (s *subscriber) close() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[string]*psconn{}
	for _, c := range conns {
		c.stop = true
		c.poke()
		for _, t := range c.topics {
			for _, w := range t.queue {
				w.poke()
			}
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		<-c.done
	}
}

// slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its hash
// tag, mod 16384, as CLUSTER KEYSLOT computes it.
func slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}
