package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
)

// EventSource is what the events route needs of the backend, beyond
// Backend: *lease.Client (which polls on a Redis Cluster: see
// lease.Client.Watch) and *lease.Redlock (which answers
// lease.ErrEventsUnsupported) implement it. A backend without it, or one
// that answers ErrEventsUnsupported, answers the route 400.
type EventSource interface {
	Watch(ctx context.Context, prefix, after string) (<-chan lease.Event, error)
	CheckExpiry(ctx context.Context, name string, fence int64) (bool, error)
}

var (
	_ EventSource = (*lease.Client)(nil)
	_ EventSource = (*lease.Redlock)(nil)
)

// KeepaliveEvery is how often an idle event stream gets a comment, so that
// proxies and clients see it live.
const KeepaliveEvery = 15 * time.Second

// MaxExpiryTimers bounds the grants the expiry watcher tracks. Past it, a
// new grant is not tracked: its expiry is recorded (and its expired event
// sent) when a script next touches the name, not within a second.
const MaxExpiryTimers = 100_000

// eventBody is the data of one event.
type eventBody struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	Fence  int64  `json:"fence"`
	At     string `json:"at"`
	TTLMs  int64  `json:"ttl_ms,omitempty"`
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// events answers GET /v1/events: a Server-Sent Events stream of the
// events of the names that start with prefix, after Last-Event-ID (or
// last_event_id) when given, until the client goes or the server stops.
func (s *Server) events(c echo.Context) error {
	t, err := s.authenticate(c)
	if err != nil {
		return err
	}
	var p params
	if err := readParams(c.Request(), eventsParams, &p); err != nil {
		return err
	}
	prefix := p.val[pPrefix]
	if err := lease.ValidatePrefix(prefix); err != nil {
		return err
	}
	if err := authorize(t, "watch prefix", prefix, Read); err != nil {
		return err
	}
	after := "$"
	if id := c.Request().Header.Get("Last-Event-ID"); id != "" {
		after = id
	} else if p.has(pLastEventID) {
		after = p.val[pLastEventID]
	}
	src, ok := s.b.(EventSource)
	if !ok {
		return badRequest("this server's backend has no events")
	}
	if s.stopping.Err() != nil {
		return errShuttingDown
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	ch, err := src.Watch(ctx, prefix, after)
	if errors.Is(err, lease.ErrEventsUnsupported) {
		return badRequest("%s", strings.TrimPrefix(err.Error(), "lease: "))
	}
	if err != nil {
		return err
	}
	defer func() {
		cancel()
		for range ch { // the watch's goroutine ends with it
		}
	}()
	s.expiry.join(src)
	defer s.expiry.leave()
	s.m.streams.Inc()
	defer s.m.streams.Dec()

	w := c.Response()
	// The server's write timeout bounds answers, not a stream.
	http.NewResponseController(w.Writer).SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": events of prefix ", quoteComment(prefix), "\n\n")
	w.Flush()
	keep := time.NewTicker(KeepaliveEvery)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			w.Flush()
		case e, ok := <-ch:
			if !ok {
				// Redis failed: the client reconnects with its last id.
				fmt.Fprint(w, ": the backend failed; reconnect\n\n")
				return nil
			}
			if _, err := w.Write(sseEvent(e)); err != nil {
				return nil
			}
			w.Flush()
		}
	}
}

// quoteComment makes s safe in an SSE comment line.
func quoteComment(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// sseEvent is e as one Server-Sent Event.
func sseEvent(e lease.Event) []byte {
	if e.Kind == lease.Missed {
		return []byte("event: missed\ndata: {\"message\":\"events after the given id are gone from the bounded window: read the state anew\"}\n\n")
	}
	if e.Kind == lease.Truncated {
		return fmt.Appendf(nil, "id: %s\nevent: truncated\ndata: {\"message\":\"a pass of the Cluster poll looked at its limit of keys before it had walked the whole prefix: the names past it are not watched\"}\n\n", e.ID)
	}
	data, _ := json.Marshal(eventBody{
		Name: e.Name, Holder: e.Holder, Fence: e.Fence, At: wire.FormatTime(e.At),
		TTLMs: e.TTL.Milliseconds(), By: e.By, Reason: e.Reason,
	})
	return fmt.Appendf(nil, "id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Kind, data)
}

// expiryWatcher records expiries on time while anyone watches the events:
// it follows every event of the backend, keeps the expiry of each live
// grant it learned of (from granted and renewed events, at most
// MaxExpiryTimers of them), and when one passes, has the backend record
// it (CheckExpiry), so that its expired event comes within about
// expiryTick of the expiry rather than at the name's next call.
type expiryWatcher struct {
	s *Server

	mu     sync.Mutex // guards what follows
	n      int        // event streams connected
	cancel context.CancelFunc
	done   chan struct{} // closed when the running watcher ended
}

// expiryTick is how often the watcher looks for grants past their expiry.
const expiryTick = 100 * time.Millisecond

// join counts a connected stream, starting the watcher at the first.
func (x *expiryWatcher) join(src EventSource) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.n++
	if x.n == 1 {
		ctx, cancel := context.WithCancel(x.s.stopping)
		x.cancel, x.done = cancel, make(chan struct{})
		go x.run(ctx, src, x.done)
	}
}

// leave counts a stream gone; at the last, it stops the watcher and waits
// for it to end.
func (x *expiryWatcher) leave() {
	x.mu.Lock()
	x.n--
	if x.n > 0 {
		x.mu.Unlock()
		return
	}
	cancel, done := x.cancel, x.done
	x.mu.Unlock()
	cancel()
	<-done
}

// tracked is one live grant the watcher knows of.
type tracked struct {
	fence   int64
	expires time.Time // on Redis's clock, as the events tell it
	giveUp  time.Time // stop checking: the grant is surely another's or recorded
}

func (x *expiryWatcher) run(ctx context.Context, src EventSource, done chan struct{}) {
	defer close(done)
	grants := map[string]*tracked{}
	after := "0" // the whole window: grants made before the first watcher came
	tick := time.NewTicker(expiryTick)
	defer tick.Stop()
	full := false
	for ctx.Err() == nil {
		ch, err := src.Watch(ctx, "", after)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for open := true; open; {
			select {
			case e, ok := <-ch:
				if !ok {
					open = false
					break
				}
				if e.ID != "" {
					after = e.ID
				}
				switch e.Kind {
				case lease.Granted, lease.Renewed:
					g := grants[e.Name]
					if g == nil {
						if len(grants) >= MaxExpiryTimers {
							if !full {
								x.s.log.Warn("expiry watcher: too many live grants; the expiries of the others are recorded when they are next touched", "max", MaxExpiryTimers)
								full = true
							}
							continue
						}
						g = &tracked{}
						grants[e.Name] = g
					}
					g.fence, g.expires = e.Fence, e.At.Add(e.TTL)
					g.giveUp = g.expires.Add(5 * time.Second)
				case lease.ReleasedKind, lease.ExpiredKind, lease.BrokenKind:
					if g := grants[e.Name]; g != nil && g.fence == e.Fence {
						delete(grants, e.Name)
					}
				}
			case now := <-tick.C:
				x.check(ctx, src, grants, now)
			case <-ctx.Done():
				for range ch {
				}
				return
			}
		}
	}
}

// check has the backend record the grants past their expiry.
func (x *expiryWatcher) check(ctx context.Context, src EventSource, grants map[string]*tracked, now time.Time) {
	for name, g := range grants {
		if now.Before(g.expires) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, x.s.redisTimeout)
		ok, err := src.CheckExpiry(cctx, name, g.fence)
		cancel()
		if ok || (err == nil && now.After(g.giveUp)) {
			delete(grants, name)
		}
		if ctx.Err() != nil {
			return
		}
	}
}
