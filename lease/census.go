package lease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/leasehold/leasehold/lua"
	"github.com/redis/go-redis/v9"
)

// Census is a count of what the Client's key prefix holds in Redis: see
// Client.Census.
type Census struct {
	// Held is how many names have a live grant, by the clock of the Redis
	// that keeps each.
	Held int
	// Waiters is how many entries the names' queues hold. Waiters whose
	// process died count until a hand-over drops them or their queue
	// expires, as in Lease.Waiting.
	Waiters int
	// Keys is how many distinct lease and queue keys were read.
	Keys int
	// Truncated is true when the limit ended the census before SCAN had
	// walked the whole keyspace: Held and Waiters are then lower bounds.
	Truncated bool
}

// DefaultCensusLimit is the limit of a Census given none.
const DefaultCensusLimit = 10000

// censusScript counts a SCAN answer's keys on a Redis that is not a
// Cluster. Run falls back to EVAL after NOSCRIPT, so LoadScripts need not
// load it.
var censusScript = redis.NewScript(lua.Census)

// censusCount is the COUNT of a census's SCAN calls.
const censusCount = 1000

// Census counts the live grants and the queued waiters under the Client's
// key prefix (on every master of a Cluster) at a bounded cost: it lets SCAN
// look at about limit keys in all, and reads the lease and queue keys of
// each SCAN call's answer in one round trip (a script, lua.Census; on a
// Cluster, a pipeline of TIME, HMGET t e of each lease and LLEN of each
// queue on the master). A limit below 1 is DefaultCensusLimit.
//
// SCAN's COUNT is how many keys one call looks at, whether they match the
// prefix or not, so keys of other applications in the same database use up
// the limit too. When the limit ends the census first, Truncated is set. On
// the embedded store (miniredis), SCAN ignores COUNT and answers every
// matching key at once; Census reads at most limit of them.
//
// Like a listing, a census follows SCAN: unless Truncated, every key that
// exists for the whole census is counted once; one that comes or goes
// meanwhile may or may not be. A key Redis answers with an error (of another type, or moved to
// another master meanwhile) is left out; any other error ends the census.
func (c *Client) Census(ctx context.Context, limit int) (*Census, error) {
	r, err := boundedCall(ctx, func() (*Census, error) { return c.census(ctx, limit) })
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("lease: census: %w", ctx.Err())
	}
	return r, err
}

func (c *Client) census(ctx context.Context, limit int) (*Census, error) {
	if limit < 1 {
		limit = DefaultCensusLimit
	}
	nodes, err := c.scanNodes(ctx)
	if err != nil {
		return nil, err
	}
	_, cluster := c.rdb.(*redis.ClusterClient)
	match := globEscape(c.prefix+"{") + "*"
	out := &Census{}
	seen := map[string]struct{}{} // SCAN may answer a key twice
	budget := limit
	for _, node := range nodes {
		for cur := uint64(0); ; {
			if budget == 0 {
				out.Truncated = true
				return out, nil
			}
			count := min(censusCount, budget)
			keys, next, err := node.Scan(ctx, cur, match, int64(count)).Result()
			if err != nil {
				return nil, c.backendErr("census", false, err)
			}
			cut := len(keys) > budget // miniredis, or a small hash table
			if cut {
				keys = keys[:budget]
			}
			budget -= min(budget, max(count, len(keys)))
			if err := c.count(ctx, node, cluster, keys, seen, out); err != nil {
				return nil, err
			}
			if cut {
				out.Truncated = true
				return out, nil
			}
			if cur = next; cur == 0 {
				break
			}
		}
	}
	return out, nil
}

// count adds what keys (one SCAN answer of node) hold to out.
func (c *Client) count(ctx context.Context, node redis.Cmdable, cluster bool, keys []string, seen map[string]struct{}, out *Census) error {
	var hashes, queues []string
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		rest, _ := strings.CutPrefix(k, c.prefix+"{")
		if name, ok := strings.CutSuffix(rest, "}:q"); ok && ValidateName(name) == nil {
			queues = append(queues, k)
		} else if name, ok := strings.CutSuffix(rest, "}"); ok && ValidateName(name) == nil {
			hashes = append(hashes, k)
		}
	}
	if len(hashes)+len(queues) == 0 {
		return nil
	}
	out.Keys += len(hashes) + len(queues)
	if !cluster {
		// One script call: a pipeline would stall on the embedded store,
		// whose connections have no buffer.
		r, err := censusScript.Run(ctx, node, append(hashes, queues...), len(hashes)).Int64Slice()
		if err != nil {
			return c.backendErr("census", false, err)
		}
		if len(r) != 2 {
			return &BackendError{Op: "census", Err: fmt.Errorf("the census script answered %v, not 2 counts", r)}
		}
		out.Held += int(r[0])
		out.Waiters += int(r[1])
		return nil
	}
	// A Cluster's keys are in many slots, which no script may span: one
	// pipeline on their master, with the master's clock.
	var (
		now *redis.TimeCmd
		hm  = make([]*redis.SliceCmd, len(hashes))
		ll  = make([]*redis.IntCmd, len(queues))
	)
	// Each command carries its own error; only Redis's answers are skipped.
	cmds, _ := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		now = p.Time(ctx)
		for i, k := range hashes {
			hm[i] = p.HMGet(ctx, k, "t", "e")
		}
		for i, k := range queues {
			ll[i] = p.LLen(ctx, k)
		}
		return nil
	})
	if err := now.Err(); err != nil {
		return c.backendErr("census", false, err)
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !answered(err) {
			return c.backendErr("census", false, err)
		}
	}
	nowMs := now.Val().UnixMilli()
	for _, cmd := range hm {
		v := cmd.Val()
		if cmd.Err() != nil || len(v) != 2 {
			continue // answered: WRONGTYPE, MOVED, ...
		}
		t, _ := v[0].(string)
		e, _ := v[1].(string)
		if exp, err := strconv.ParseInt(e, 10, 64); t != "" && err == nil && exp > nowMs {
			out.Held++
		}
	}
	for _, cmd := range ll {
		if cmd.Err() == nil {
			out.Waiters += int(cmd.Val())
		}
	}
	return nil
}

// answered reports whether err is Redis's own answer to a command (a
// script fault, WRONGTYPE, MOVED, ...) rather than a failure to reach it.
func answered(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && !isNetErr(err)
}
