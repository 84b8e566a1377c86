package lease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Kind says what an Event tells.
type Kind string

// The kinds of Event. Missed is no change of a lease: it says that events
// between the id Watch was given and the first it delivers may be lost:
// the stream no longer holds that id (its bounded window, EventWindow,
// passed it, or the stream went away with its last watcher; on a Redis
// Cluster, where no stream keeps the past, after any id).
const (
	Granted      Kind = "granted"
	Renewed      Kind = "renewed" // also an idempotent re-acquire
	ReleasedKind Kind = "released"
	ExpiredKind  Kind = "expired"
	BrokenKind   Kind = "broken"
	Missed       Kind = "missed"
	// Truncated, only on a Redis Cluster, is no change of a lease either:
	// a pass of Watch's poll looked at Options.WatchLimit keys before SCAN
	// had walked the whole prefix, so the names past them are not watched
	// (their changes are not told). It comes when a pass is cut after one
	// that was not, or the first pass is.
	Truncated Kind = "truncated"
)

// Event is one change of a lease, as the scripts wrote it into the events
// stream. It never holds a token.
type Event struct {
	ID     string // the stream entry's id (on a Cluster, synthetic): resume after it with Watch
	Kind   Kind
	Name   string
	Holder string
	Fence  int64
	At     time.Time     // on Redis's clock; an expiry's is the grant's expiry
	TTL    time.Duration // granted and renewed
	By     string        // broken: who broke it
	Reason string        // broken: why
}

// EventWindow is about how many events the stream keeps (XADD MAXLEN ~):
// Watch resumes after an id within it, and tells Missed past it.
const EventWindow = 10000

// ErrEventsUnsupported is Watch's error on a Redlock, where each master
// grants with a fence of its own before the quorum decides the grant's, so
// no master's events tell the grant's fence. (On a Redis Cluster, Watch
// polls instead of reading a stream: see Watch.)
var ErrEventsUnsupported = errors.New("lease: events are not supported on a Redlock")

// errRedlockEvents is ErrEventsUnsupported on a Redlock.
var errRedlockEvents = fmt.Errorf("%w: a Redlock's masters each grant with a fence of their own before the quorum decides the grant's, so no master's events would tell the fences that Acquire and Renew report", ErrEventsUnsupported)

// Keep-alive of the stream: a watcher sets it to expire eventsTTL from now
// every eventsRefresh, so that the scripts stop writing events (and the
// stream goes) about a minute after the last watcher went.
const (
	eventsTTL     = time.Minute
	eventsRefresh = 20 * time.Second
	eventsBlock   = time.Second // one XREAD BLOCK: a Watch ends at most this long after its ctx
)

// Watch streams the events of the names that start with prefix ("" for
// all) after the stream id after: "$" or "" for new events only, "0" for
// all the stream still holds. The events come in the order they happened,
// on the channel, which closes when ctx ends (within a second) or Redis
// fails: the caller watches anew, after the last ID it got. When after is
// an id the stream no longer holds (the window passed it, or the stream
// went away with its last watcher), the first event is a Missed one.
//
// Events are written only while someone watches: the stream key exists
// only while a Watch keeps it alive (it creates it, and sets it to expire
// a minute later every 20s), so with no watcher each script pays one
// EXISTS.
//
// On a Redis Cluster no stream can be written (a prefix's stream lives in
// one slot, a name's scripts run in the name's), so Watch polls instead:
// every ClusterPoll (250ms) it SCANs the prefix on every master, at most
// Options.WatchLimit keys in all, with one pipeline of HMGET t e f h l per
// SCAN answer, and tells the difference from the pass before: a new fence
// is granted, a later expiry of the same fence renewed, a grant gone (or
// replaced) released, expired or broken as the head of the name's history
// says (released when the head is not of that fence), and a grant past its
// expiry expired at its expiry (it calls CheckExpiry, so the history
// records it at once). The first pass only takes the snapshot. An event
// comes up to about ClusterPoll plus one pass after the change; a grant
// that begins and ends between two passes is not told at all (its history
// entry keeps it), and a renew that does not move the expiry neither. A
// pass that the limit cut tells a Truncated event (the names past the
// limit are not watched). Event ids are synthetic ("c<unix_ms>-<seq>"):
// no poll keeps the past, so a Watch after any id starts with Missed.
// Each Watch costs one SCAN walk of the prefix per master per pass.
func (c *Client) Watch(ctx context.Context, prefix, after string) (<-chan Event, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if c.sharded {
		return c.watchCluster(ctx, prefix, after)
	}
	if after != "" && after != "$" && !validID(after) {
		return nil, invalid(CodeInvalidRequest, "the event id %q is not a stream id (MS-SEQ)", after)
	}
	if err := c.keepEvents(ctx); err != nil {
		return nil, c.backendErr("watch", false, err)
	}
	var missed bool
	var err error
	after, missed, err = c.resolveAfter(ctx, after)
	if err != nil {
		return nil, c.backendErr("watch", false, err)
	}
	out := make(chan Event, 64)
	go c.watch(ctx, prefix, after, missed, out)
	return out, nil
}

// keepEvents creates the stream when it is missing (empty: XADD MAXLEN 0)
// and sets it to expire eventsTTL from now.
func (c *Client) keepEvents(ctx context.Context) error {
	_, err := boundedCall(ctx, func() (bool, error) {
		n, err := c.rdb.Exists(ctx, c.events).Result()
		if err != nil {
			return false, err
		}
		if n == 0 {
			// An empty stream: the entry goes at once (go-redis's XAddArgs
			// takes MaxLen 0 as no limit).
			if err := c.rdb.Do(ctx, "xadd", c.events, "maxlen", "0", "*", "k", "watch").Err(); err != nil {
				return false, err
			}
		}
		return c.rdb.PExpire(ctx, c.events, eventsTTL).Result()
	})
	return err
}

// resolveAfter turns "$" into the stream's last id, so that no event
// falls between the start and the first read, and says whether events
// after an explicit id are gone from the window.
func (c *Client) resolveAfter(ctx context.Context, after string) (string, bool, error) {
	if after == "" || after == "$" {
		last, err := boundedCall(ctx, func() ([]redis.XMessage, error) { return c.rdb.XRevRangeN(ctx, c.events, "+", "-", 1).Result() })
		if err != nil || len(last) == 0 {
			return "0-0", false, err
		}
		return last[0].ID, false, nil
	}
	if after == "0" || after == "0-0" {
		return "0-0", false, nil
	}
	// The id a watcher resumes after is the last event it got: while the
	// stream holds it, nothing after it is lost. Gone, it was trimmed (the
	// window passed it) or the stream went away with its last watcher, and
	// events after it may be lost too.
	at, err := boundedCall(ctx, func() ([]redis.XMessage, error) { return c.rdb.XRangeN(ctx, c.events, after, after, 1).Result() })
	return after, err == nil && len(at) == 0, err
}

// validID says whether id is a stream id, MS or MS-SEQ.
func validID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if ok {
		if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
			return false
		}
	}
	return true
}

// watch reads the stream after the id after until ctx ends, keeping it
// alive, and closes out.
func (c *Client) watch(ctx context.Context, prefix, after string, missed bool, out chan<- Event) {
	defer close(out)
	send := func(e Event) bool { return sendEvent(ctx, out, e) }
	if missed && !send(Event{Kind: Missed}) {
		return
	}
	kept := time.Now()
	for ctx.Err() == nil {
		if time.Since(kept) >= eventsRefresh {
			if err := c.keepEvents(ctx); err != nil {
				return
			}
			kept = time.Now()
		}
		res, err := c.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{c.events, after}, Count: 256, Block: eventsBlock}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return
		}
		for _, s := range res {
			for _, m := range s.Messages {
				after = m.ID
				e, ok := parseEvent(m)
				if !ok || !strings.HasPrefix(e.Name, prefix) {
					continue
				}
				if !send(e) {
					return
				}
			}
		}
	}
}

// sendEvent delivers e on out, and says false when ctx ended first.
func sendEvent(ctx context.Context, out chan<- Event, e Event) bool {
	select {
	case out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// parseEvent reads one stream entry (see common.lua); ok is false for an
// entry that is no event (the watcher's own that created the stream).
func parseEvent(m redis.XMessage) (Event, bool) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	num := func(k string) int64 { n, _ := strconv.ParseInt(str(k), 10, 64); return n }
	e := Event{
		ID: m.ID, Kind: Kind(str("k")), Name: str("n"), Holder: str("h"), Fence: num("f"),
		At: msTime(num("t")), By: str("b"), Reason: str("r"),
	}
	if l := num("l"); l > 0 {
		e.TTL = msDur(l)
	}
	switch e.Kind {
	case Granted, Renewed, ReleasedKind, ExpiredKind, BrokenKind:
		return e, e.Name != ""
	}
	return e, false
}

// CheckExpiry records the expiry of name's grant of fence now, when that
// grant is still the name's and has expired: in the history, and as an
// expired event (the scripts otherwise record it when they next touch the
// name). A queue's head then gets the lease. It says whether it recorded
// it; false when the grant is another's, live, or recorded already.
func (c *Client) CheckExpiry(ctx context.Context, name string, fence int64) (bool, error) {
	if err := ValidateName(name); err != nil {
		return false, err
	}
	key, queue, hist := c.keys(name)
	res, err := c.run(ctx, expireScript, key, queue, hist, c.eventsKey(key), strconv.FormatInt(fence, 10), c.retention, c.announce, c.hist)
	if err != nil {
		return false, c.backendErr("expire", true, err)
	}
	r := reply(res)
	switch r.str(0) {
	case "expired":
		return true, nil
	case "none":
		return false, nil
	}
	return false, r.unexpected("expire")
}

// Watch is ErrEventsUnsupported on a Redlock (see it): the events of
// one master are what that master did, with its own fences, not what the
// quorum decided. A first version streamed the first master's, and its
// test saw a granted event whose fence was not the grant's.
func (r *Redlock) Watch(ctx context.Context, prefix, after string) (<-chan Event, error) {
	return nil, errRedlockEvents
}

// CheckExpiry records an expired grant on the first master only
// (Client.CheckExpiry); the others record it when a script next touches
// the name there.
func (r *Redlock) CheckExpiry(ctx context.Context, name string, fence int64) (bool, error) {
	return r.nodes[0].CheckExpiry(ctx, name, fence)
}
