package lease

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultWatchLimit is the keys one pass of a Watch on a Cluster looks at
// given no Options.WatchLimit.
const DefaultWatchLimit = 10000

// ClusterPoll is how often a Watch on a Redis Cluster walks the prefix.
const ClusterPoll = 250 * time.Millisecond

// clusterScanCount is the COUNT of a poll's SCAN calls.
const clusterScanCount = 1000

// seenGrant is what a poll knows of one name's grant.
type seenGrant struct {
	fence   int64
	exp     int64 // ms, the master's clock
	ttl     int64 // ms, the l field (0: none)
	holder  string
	expired bool // told expired: its end is told no more
}

// pollState is a Cluster Watch's snapshot and its event ids.
type pollState struct {
	grants  map[string]seenGrant
	cut     bool // the previous pass was truncated
	lastMs  int64
	seq     int64
	pending []Event
}

// id is the next synthetic event id, "c<unix_ms>-<seq>", increasing.
func (s *pollState) id() string {
	ms := time.Now().UnixMilli()
	if ms > s.lastMs {
		s.lastMs, s.seq = ms, 0
	} else {
		s.seq++
	}
	return "c" + strconv.FormatInt(s.lastMs, 10) + "-" + strconv.FormatInt(s.seq, 10)
}

func (s *pollState) emit(e Event) {
	e.ID = s.id()
	s.pending = append(s.pending, e)
}

// validClusterID says whether id is an id a Cluster Watch gave.
func validClusterID(id string) bool {
	rest, ok := strings.CutPrefix(id, "c")
	return ok && validID(rest)
}

// watchCluster is Watch on a Redis Cluster: a poll (see Watch). Its first
// pass runs before it returns, so that changes after it are told.
func (c *Client) watchCluster(ctx context.Context, prefix, after string) (<-chan Event, error) {
	var missed bool
	switch {
	case after == "" || after == "$" || after == "0" || after == "0-0":
	case validID(after) || validClusterID(after):
		// No poll keeps what happened before it began.
		missed = true
	default:
		return nil, invalid(CodeInvalidRequest, "the event id %q is not an event id", after)
	}
	st := &pollState{grants: map[string]seenGrant{}}
	if err := c.pollPass(ctx, prefix, st); err != nil {
		return nil, err
	}
	// The first pass only builds the snapshot: it tells only whether it
	// was truncated.
	st.pending = st.pending[:0]
	if st.cut {
		st.emit(Event{Kind: Truncated})
	}
	out := make(chan Event, 64)
	go c.pollLoop(ctx, prefix, st, missed, out)
	return out, nil
}

// pollLoop passes every ClusterPoll until ctx ends or Redis fails, and
// closes out.
func (c *Client) pollLoop(ctx context.Context, prefix string, st *pollState, missed bool, out chan<- Event) {
	defer close(out)
	send := func(e Event) bool { return sendEvent(ctx, out, e) }
	if missed && !send(Event{Kind: Missed}) {
		return
	}
	t := time.NewTimer(ClusterPoll)
	defer t.Stop()
	for {
		for _, e := range st.pending {
			if !send(e) {
				return
			}
		}
		st.pending = st.pending[:0]
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.pollPass(ctx, prefix, st); err != nil {
			return
		}
		t.Reset(ClusterPoll)
	}
}

// grantFields are the hash fields a poll reads, in this order.
var grantFields = []string{"t", "e", "f", "h", "l"}

// parseGrant reads HMGET grantFields; ok is false when no grant is set.
func parseGrant(v []any) (seenGrant, bool) {
	if len(v) != len(grantFields) {
		return seenGrant{}, false
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	num := func(i int) int64 { n, _ := strconv.ParseInt(str(i), 10, 64); return n }
	if str(0) == "" {
		return seenGrant{}, false
	}
	return seenGrant{fence: num(2), exp: num(1), holder: str(3), ttl: num(4)}, true
}

// pollPass walks the prefix on every master once, reads the grants it
// finds, and queues the events of what changed since the last pass.
func (c *Client) pollPass(ctx context.Context, prefix string, st *pollState) error {
	cur, nowMs, cut, err := c.pollScan(ctx, prefix)
	if err != nil {
		return err
	}
	// A name of the last pass that this one did not find has ended, or was
	// past the limit, or moved: read it (and its history's head) directly.
	var gone []string
	for name := range st.grants {
		if _, ok := cur[name]; !ok {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	heads := map[string]string{}
	if len(gone) > 0 {
		hm := make([]*redis.SliceCmd, len(gone))
		li := make([]*redis.StringCmd, len(gone))
		_, _ = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, name := range gone {
				key, _, hist := c.keys(name)
				hm[i] = p.HMGet(ctx, key, grantFields...)
				li[i] = p.LIndex(ctx, hist, 0)
			}
			return nil
		})
		for i, name := range gone {
			if err := hm[i].Err(); err != nil && !answered(err) {
				return c.backendErr("watch", false, err)
			}
			if g, ok := parseGrant(hm[i].Val()); ok {
				cur[name] = g
			}
			if err := li[i].Err(); err == nil || errors.Is(err, redis.Nil) {
				heads[name] = li[i].Val() // "" when the history is empty
			}
		}
	}
	if cut && !st.cut {
		st.emit(Event{Kind: Truncated})
	}
	st.cut = cut

	names := make([]string, 0, len(cur)+len(gone))
	for name := range cur {
		names = append(names, name)
	}
	names = append(names, gone...)
	sort.Strings(names)
	next := make(map[string]seenGrant, len(cur))
	for i, name := range names {
		if i > 0 && names[i-1] == name {
			continue
		}
		prev, had := st.grants[name]
		g, has := cur[name]
		if had && (!has || g.fence != prev.fence) && !prev.expired {
			head, ok := heads[name]
			if !ok {
				// A new fence that SCAN found: the old grant's end is the
				// history's head.
				head, _ = c.rdb.LIndex(ctx, c.key(name)+":h", 0).Result()
			}
			st.emit(endedEvent(name, prev, head, nowMs))
		}
		if !has {
			continue
		}
		switch {
		case !had || g.fence != prev.fence:
			st.emit(grantEvent(Granted, name, g, nowMs))
		case g.exp > prev.exp:
			st.emit(grantEvent(Renewed, name, g, nowMs))
		case prev.expired:
			g.expired = true
		}
		if !g.expired && g.exp <= nowMs {
			g.expired = true
			st.emit(Event{Kind: ExpiredKind, Name: name, Holder: g.holder, Fence: g.fence, At: msTime(g.exp)})
			// Have the history record it now (expire.lua's keys are all
			// in the name's slot); it is told here either way.
			_, _ = c.CheckExpiry(ctx, name, g.fence)
		}
		next[name] = g
	}
	st.grants = next
	return nil
}

// grantEvent is a granted or renewed event of g: At+TTL is its expiry.
func grantEvent(k Kind, name string, g seenGrant, nowMs int64) Event {
	ttl := g.ttl
	if ttl <= 0 || ttl > g.exp {
		ttl = max(g.exp-nowMs, 0)
	}
	return Event{Kind: k, Name: name, Holder: g.holder, Fence: g.fence, At: msTime(g.exp - ttl), TTL: msDur(ttl)}
}

// endedEvent tells how prev ended: as the history's head says when it is
// of prev's fence, else released now.
func endedEvent(name string, prev seenGrant, head string, nowMs int64) Event {
	e := Event{Kind: ReleasedKind, Name: name, Holder: prev.holder, Fence: prev.fence, At: msTime(nowMs)}
	// kind fence granted_ms ended_ms exit dur by holder reason
	f := strings.SplitN(head, "\n", 9)
	if len(f) < 9 || f[1] != strconv.FormatInt(prev.fence, 10) {
		return e
	}
	if ended, err := strconv.ParseInt(f[3], 10, 64); err == nil {
		e.At = msTime(ended)
	}
	switch f[0] {
	case "expired":
		e.Kind = ExpiredKind
	case "broken":
		e.Kind, e.By, e.Reason = BrokenKind, f[6], f[8]
	}
	if f[7] != "" {
		e.Holder = f[7]
	}
	return e
}

// pollScan reads the grants of the names under prefix on every master:
// SCAN with a pipeline of TIME and HMGET per answer, at most watchLimit
// keys looked at in all (cut: the limit ended it first). nowMs is the
// last master's clock.
func (c *Client) pollScan(ctx context.Context, prefix string) (cur map[string]seenGrant, nowMs int64, cut bool, err error) {
	nodes, err := c.scanNodes(ctx)
	if err != nil {
		return nil, 0, false, err
	}
	cur = map[string]seenGrant{}
	match := globEscape(c.prefix+"{"+prefix) + "*"
	budget := c.watchLimit
	for _, node := range nodes {
		for cursor := uint64(0); ; {
			if budget == 0 {
				return cur, nowMs, true, nil
			}
			count := min(clusterScanCount, budget)
			keys, next, err := node.Scan(ctx, cursor, match, int64(count)).Result()
			if err != nil {
				return nil, 0, false, c.backendErr("watch", false, err)
			}
			over := len(keys) > budget
			if over {
				keys = keys[:budget]
			}
			budget -= min(budget, max(count, len(keys)))
			var names []string
			for _, k := range keys {
				rest, _ := strings.CutPrefix(k, c.prefix+"{")
				if name, ok := strings.CutSuffix(rest, "}"); ok && ValidateName(name) == nil {
					names = append(names, name)
				}
			}
			var now *redis.TimeCmd
			hm := make([]*redis.SliceCmd, len(names))
			_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
				now = p.Time(ctx)
				for i, name := range names {
					hm[i] = p.HMGet(ctx, c.key(name), grantFields...)
				}
				return nil
			})
			if err := now.Err(); err != nil {
				return nil, 0, false, c.backendErr("watch", false, err)
			}
			nowMs = now.Val().UnixMilli()
			for i, name := range names {
				if err := hm[i].Err(); err != nil {
					if !answered(err) {
						return nil, 0, false, c.backendErr("watch", false, err)
					}
					continue // WRONGTYPE, MOVED: read directly if it was known
				}
				if g, ok := parseGrant(hm[i].Val()); ok {
					cur[name] = g
				}
			}
			if over {
				return cur, nowMs, true, nil
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	if nowMs == 0 {
		t, err := c.rdb.Time(ctx).Result()
		if err != nil {
			return nil, 0, false, c.backendErr("watch", false, err)
		}
		nowMs = t.UnixMilli()
	}
	return cur, nowMs, false, nil
}
