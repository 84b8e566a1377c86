package lease

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"
)

// ErrClosed is returned by a waiting Acquire of a Client that was closed.
var ErrClosed = errors.New("lease: client closed")

// subscriber is a Client's subscriptions to the hand-overs of leases to
// its waiters.
//
// The queue of a name's waiters is in Redis (see lua/common.lua); a lease
// handed to one of them is told on the channel PREFIX{NAME}:w:ID of its
// Client, with the waiter's id. Only a Client that is subscribed there
// when the lease is handed over gets it: a process that died has no
// subscription, and its waiters are skipped. The subscriber keeps one
// pub/sub connection (one per hash slot in use, for a Redis Cluster) while
// anybody waits, and for linger after, so that a process that waits again
// and again on a name subscribes once.
type subscriber struct {
	rdb         redis.UniversalClient
	sharded     bool
	healthEvery time.Duration
	linger      time.Duration
	// orphan releases a lease handed to a waiter that has left (set by
	// the Client; nil in tests of the subscriber alone).
	orphan func(name, token string, ttl time.Duration)

	mu     sync.Mutex
	conns  map[string]*psconn // by shard key; guarded by mu
	closed bool               // guarded by mu
	seq    uint64             // the last waiter id given; guarded by mu
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
	subscribed           // reply received: hand-overs reach us
	unsubscribing        // UNSUBSCRIBE sent, reply not yet received
)

// topic is the state of one channel (one lease name). All fields are
// guarded by subscriber.mu.
type topic struct {
	channel string
	name    string
	state   int
	// confirmed is set once a subscription was confirmed; failed when the
	// connection failed before that, so waiters attempt on their own timing.
	confirmed, failed bool
	waiters           map[string]*waiter // by waiter id
	// left holds the waiters that left while their leave may not have
	// reached Redis: a hand-over to one of them is released (by orphan).
	left    map[string]*waiter
	retries int         // wake-ups that call for new attempts: resubscriptions
	idle    *time.Timer // runs out linger after the last waiter left
}

// waiter is one waiting Acquire. Its fields are guarded by subscriber.mu,
// but for attempted, which only the waiting goroutine uses.
type waiter struct {
	s     *subscriber
	t     *topic
	c     *psconn
	id    string
	entry string          // its entry in the name's queue (see lua/common.lua)
	opts  *AcquireOptions // what the waiter asks for
	wake  chan struct{}   // buffered 1: something changed, look again

	attempted bool      // an attempt was sent: later ones keep its place
	first     time.Time // when the first attempt was sent
	helds     []held    // the attempts that answered "held"
	handed    *Lease    // the lease handed over to it, not yet taken
	notified  bool      // told that the lease is free (a notify-only waiter)
	headUntil time.Time // told it is the head, behind a grant that ends then (zero: not told)

	// notifyOnly: its entry asks to be told that the lease is free, not to
	// be handed it (a Redlock's waiter); set at join.
	notifyOnly bool
	// ownToken: its token is one the Client made for this wait, which no
	// caller can hold but through it; set at join.
	ownToken bool
	retried  int  // topic retries that an attempt has covered
	gone     bool // left its topic
}

func newSubscriber(rdb redis.UniversalClient, sharded bool) *subscriber {
	return &subscriber{rdb: rdb, sharded: sharded, healthEvery: healthEvery, linger: subscriptionLinger, conns: map[string]*psconn{}}
}

// subscriptionLinger (read by New) is how long a channel stays subscribed
// after its last waiter left.
var subscriptionLinger = 5 * time.Second

// shard names the connection that serves channel: one per hash slot in a
// Redis Cluster, one in all otherwise.
func (s *subscriber) shard(channel string) string {
	if !s.sharded {
		return ""
	}
	return strconv.Itoa(int(slot(channel)))
}

// joinAs adds a waiter for o on channel (of the lease name), subscribing the
// channel when it is not yet.
//
// A notifyOnly waiter's queue entry asks to be told that the lease is free
// rather than to be handed it (a Redlock's waiter); ownToken says that its
// token is one the Client made for this wait.
func (s *subscriber) joinAs(channel, name, client string, o *AcquireOptions, notifyOnly, ownToken bool) (*waiter, error) {
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
		t = &topic{channel: channel, name: name, state: subscribing, waiters: map[string]*waiter{}, left: map[string]*waiter{}}
		c.topics[channel] = t
		c.send(true, channel)
	}
	if t.idle != nil {
		t.idle.Stop()
		t.idle = nil
	}
	if t.state == unsubscribing {
		// Subscribed again when the UNSUBSCRIBE's reply comes (dispatch):
		// until then a hand-over would find nobody listening.
		t.confirmed = false
	}
	s.seq++
	id := strconv.FormatUint(s.seq, 36) // unique on this Client's channels
	w := &waiter{s: s, t: t, c: c, id: id, opts: o, wake: make(chan struct{}, 1), retried: t.retries, notifyOnly: notifyOnly, ownToken: ownToken}
	ttl := strconv.FormatInt(o.TTL.Milliseconds(), 10)
	if notifyOnly {
		ttl = "0"
	}
	w.entry = id + "\n" + client + "\n" + ttl + "\n" + o.Token + "\n" + o.Holder + "\n" + o.Metadata
	t.waiters[id] = w
	return w, nil
}

// held is an attempt that found the lease held by the grant of fence.
type held struct {
	sent  time.Time
	fence int64
}

// queued records that an attempt sent at sent found the lease held by the
// grant of fence. Redis ran it before any hand-over to w of a higher fence,
// so a lease handed over lives at least until its sent + TTL; and a
// hand-over of a fence not above it is old news, a grant that has ended.
func (w *waiter) queued(sent time.Time, fence int64) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.first.IsZero() {
		w.first = sent
	}
	w.helds = append(w.helds, held{sent, fence})
	if w.handed != nil && fence >= w.handed.Fence {
		w.handed = nil // it ended before this attempt: keep waiting
	}
}

// sentBefore is when the last attempt that Redis ran before the grant of
// fence was sent: one that answered "held" by a lower fence, or else the
// first (it queued w, so it came before any hand-over); with s.mu held.
func (w *waiter) sentBefore(fence int64) time.Time {
	sent := w.first
	for _, h := range w.helds {
		if h.fence < fence && h.sent.After(sent) {
			sent = h.sent
		}
	}
	return sent
}

// stale says whether an attempt found the grant of fence (or a later one)
// already held by another: then a hand-over of fence has ended; with s.mu
// held.
func (w *waiter) stale(fence int64) bool {
	for _, h := range w.helds {
		if h.fence >= fence {
			return true
		}
	}
	return false
}

// sending records when the first attempt is sent: its script queued the
// waiter, so any hand-over comes after it.
func (w *waiter) sending(sent time.Time) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.first.IsZero() {
		w.first = sent
	}
}

// deliver hands the lease, granted to waiter wid with fence at Redis time
// nowMs, to it; with s.mu not held. A waiter that has left gets it
// released; an unknown one (another process's, or long gone) is ignored.
func (s *subscriber) deliver(channel, wid string, fence, nowMs int64) {
	s.mu.Lock()
	c := s.conns[s.shard(channel)]
	var t *topic
	if c != nil {
		t = c.topics[channel]
	}
	if t == nil {
		s.mu.Unlock()
		return
	}
	s.handLocked(t, wid, fence, nowMs)
}

// handLocked is deliver with s.mu held; it unlocks it.
func (s *subscriber) handLocked(t *topic, wid string, fence, nowMs int64) {
	if fence == 0 { // "the lease is free", to a notify-only waiter
		if w := t.waiters[wid]; w != nil {
			w.notified = true
			w.poke()
		}
		s.mu.Unlock()
		return
	}
	if w := t.waiters[wid]; w != nil {
		if (w.handed == nil || fence > w.handed.Fence) && !w.stale(fence) {
			o := w.opts
			ttl := o.TTL.Milliseconds()
			w.handed = &Lease{
				Name: t.name, Holder: o.Holder, Token: o.Token, Fence: fence,
				TTL: msDur(ttl), ExpiresAt: msTime(nowMs + ttl), Metadata: o.Metadata, Sent: w.sentBefore(fence),
			}
			w.poke()
		}
		s.mu.Unlock()
		return
	}
	w := t.left[wid]
	delete(t.left, wid)
	orphan := s.orphan
	s.mu.Unlock()
	// Only a token of this process's making is released behind the
	// caller's back: one the caller brought, it may hold by now again.
	if w != nil && w.ownToken && orphan != nil {
		orphan(t.name, w.opts.Token, w.opts.TTL)
	}
}

// turn says whether w was handed the lease, or must attempt now: its
// first attempt once the channel is subscribed (or failed to be), or again
// after a resubscription (hand-overs may have been missed).
func (w *waiter) turn() (handed *Lease, attempt bool, retries int, closed bool) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	t := w.t
	switch {
	case w.s.closed:
		return nil, false, 0, true
	case w.handed != nil:
		return w.handed, false, 0, false
	case !t.confirmed && !t.failed:
		return nil, false, 0, false
	case !w.attempted || t.retries > w.retried:
		return nil, true, t.retries, false
	}
	return nil, false, 0, false
}

// ready says whether w's channel is subscribed (or failed to be, so that
// waiting goes on by the clock); notified whether it was told that the
// lease is free (or missed messages: it was resubscribed) since the last
// call, which clears it.
func (w *waiter) ready() (ready, notified bool) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	t := w.t
	notified = w.notified || t.retries > w.retried
	w.notified, w.retried = false, t.retries
	return t.confirmed || t.failed, notified
}

// told returns, and clears, when the grant it is head behind ends, as a
// hand-over told it (zero: not told since the last call).
func (w *waiter) told() time.Time {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	u := w.headUntil
	w.headUntil = time.Time{}
	return u
}

// drop forgets the hand-over l, which came too late to be trusted.
func (w *waiter) drop(l *Lease) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.handed == l {
		w.handed = nil
	}
}

// covered records that an attempt covered the topic's retries up to r.
func (w *waiter) covered(r int) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.retried = max(w.retried, r)
}

// leave takes w off its topic. pending says that w's entry may still be
// in Redis (its leave script has not run yet): until forget, a hand-over
// to it is released. When the topic has no waiters left it is unsubscribed
// after linger.
func (w *waiter) leave(pending bool) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.gone {
		return
	}
	w.gone = true
	t := w.t
	delete(t.waiters, w.id)
	if pending {
		t.left[w.id] = w
	}
	w.c.idleLater(t)
}

// forget ends what leave(true) began: the waiter's leave has run in Redis.
func (w *waiter) forget() {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(w.t.left, w.id)
	w.c.idleLater(w.t)
}

// idleLater unsubscribes t after linger once nobody waits or is leaving;
// with s.mu held.
func (c *psconn) idleLater(t *topic) {
	if len(t.waiters) > 0 || len(t.left) > 0 || c.s.closed {
		return
	}
	if c.s.linger <= 0 {
		c.unsubscribeIdle(t)
		return
	}
	if t.idle != nil {
		t.idle.Stop()
	}
	var timer *time.Timer
	timer = time.AfterFunc(c.s.linger, func() {
		c.s.mu.Lock()
		defer c.s.mu.Unlock()
		if t.idle != timer || len(t.waiters) > 0 || len(t.left) > 0 || c.topics[t.channel] != t {
			return
		}
		t.idle = nil
		c.unsubscribeIdle(t)
	})
	t.idle = timer
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
			if t.busy() == 0 {
				if t.idle != nil {
					t.idle.Stop()
				}
				delete(c.topics, t.channel)
				continue
			}
			t.state = subscribing
			t.failed = true
			t.retries++ // waiters attempt now: Redis may be gone, or hand-overs missed
			t.pokeAll()
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
	switch m := msg.(type) {
	case *redis.Subscription:
		defer c.s.mu.Unlock()
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
				t.retries++ // subscribed again after a failure: hand-overs may be lost
			}
			t.state, t.confirmed = subscribed, true
			if t.busy() == 0 && t.idle == nil {
				c.idleLater(t)
			}
			t.pokeAll()
		case "unsubscribe", "sunsubscribe":
			if t.state != unsubscribing {
				return
			}
			if t.busy() > 0 {
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
		wid, rest, ok1 := strings.Cut(m.Payload, " ")
		fs, ns, ok2 := strings.Cut(rest, " ")
		if fs == "h" { // "WID h TTL_MS": w is the head, behind a grant of TTL_MS
			ttl, err := strconv.ParseInt(ns, 10, 64)
			if w := c.topicWaiter(t, wid); w != nil && err == nil && ok1 && ok2 {
				w.headUntil = time.Now().Add(time.Duration(ttl) * time.Millisecond)
				w.poke()
			}
			c.s.mu.Unlock()
			return
		}
		fence, err1 := strconv.ParseInt(fs, 10, 64)
		nowMs, err2 := strconv.ParseInt(ns, 10, 64)
		if t == nil || !ok1 || !ok2 || err1 != nil || err2 != nil {
			c.s.mu.Unlock()
			return
		}
		c.s.handLocked(t, wid, fence, nowMs) // unlocks
	default:
		c.s.mu.Unlock()
	}
}

// topicWaiter is t's waiter wid, or nil; with s.mu held.
func (c *psconn) topicWaiter(t *topic, wid string) *waiter {
	if t == nil {
		return nil
	}
	return t.waiters[wid]
}

// busy counts the waiters of t and those that are leaving.
func (t *topic) busy() int { return len(t.waiters) + len(t.left) }

func (t *topic) pokeAll() {
	for _, w := range t.waiters {
		w.poke()
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
			if t.idle != nil {
				t.idle.Stop()
			}
			t.pokeAll()
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
