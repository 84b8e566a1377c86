package lease

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// maxScansPerPage bounds the SCAN calls of one page, so a sparse prefix in a
// large keyspace answers a short (even empty) page with a cursor rather than
// scanning everything in one request.
const maxScansPerPage = 32

// List returns a page of the leases whose names start with opts.Prefix, in no
// particular order. Paging follows Redis SCAN: every lease that exists for the
// whole listing appears at least once; one that comes or goes meanwhile may or
// may not, and a lease may appear twice.
//
// A cursor is opaque: which node (for a Cluster, masters in address order),
// the SCAN cursor the page started from on it, and the last name returned
// from that SCAN batch, so a batch larger than Limit is split between pages
// without losing names.
func (c *Client) List(ctx context.Context, opts *ListOptions) (*Page, error) {
	p, err := boundedCall(ctx, func() (*Page, error) { return c.list(ctx, opts) })
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("lease: list: %w", ctx.Err())
	}
	return p, err
}

func (c *Client) list(ctx context.Context, opts *ListOptions) (*Page, error) {
	var o ListOptions
	if opts != nil {
		o = *opts
	}
	if err := ValidatePrefix(o.Prefix); err != nil {
		return nil, err
	}
	if o.Limit == 0 {
		o.Limit = DefaultListLimit
	}
	if o.Limit < 1 || o.Limit > MaxListLimit {
		return nil, invalid(CodeInvalidRequest, "the limit %d is out of range: use 1 to %d", o.Limit, MaxListLimit)
	}
	pos, err := decodeCursor(o.Cursor)
	if err != nil {
		return nil, err
	}
	nodes, err := c.scanNodes(ctx)
	if err != nil {
		return nil, err
	}
	if pos.node >= len(nodes) {
		return nil, invalid(CodeInvalidRequest, "the cursor names node %d of %d: the cluster changed; start the listing again", pos.node, len(nodes))
	}

	// Names in a key never contain glob characters (ValidateName), but the
	// prefix of keys might: escape it for MATCH.
	match := globEscape(c.prefix+"{"+o.Prefix) + "*"
	page := &Page{Leases: []Lease{}}
	var names []string
	for scans := 0; ; scans++ {
		keys, next, err := nodes[pos.node].Scan(ctx, pos.scan, match, int64(max(o.Limit, 64))).Result()
		if err != nil {
			return nil, c.backendErr("list", false, err)
		}
		batch := c.names(keys)
		sort.Strings(batch)
		if pos.after != "" {
			i := sort.SearchStrings(batch, pos.after)
			for i < len(batch) && batch[i] <= pos.after {
				i++
			}
			batch, pos.after = batch[i:], ""
		}
		room := o.Limit - len(names)
		if len(batch) > room {
			names = append(names, batch[:room]...)
			pos.after = batch[room-1]
			page.NextCursor = pos.encode()
			break
		}
		names = append(names, batch...)
		pos.scan = next
		if pos.scan == 0 {
			if pos.node++; pos.node == len(nodes) {
				break
			}
		}
		if len(names) == o.Limit || scans == maxScansPerPage {
			page.NextCursor = pos.encode()
			break
		}
	}
	if len(names) == 0 {
		return page, nil
	}

	cmds, err := c.inspectMany(ctx, names)
	if err != nil {
		return nil, err
	}
	for i, cmd := range cmds {
		res, err := cmd.Slice()
		if err != nil {
			if err == redis.Nil {
				continue
			}
			return nil, c.backendErr("list", false, err)
		}
		l, _, err := parseInspect(names[i], reply(res))
		if err != nil {
			if _, gone := err.(*NotFoundError); gone { // released or expired since SCAN
				continue
			}
			return nil, err
		}
		page.Leases = append(page.Leases, *l)
	}
	return page, nil
}

// inspectMany reads the leases names in one pipelined round trip. A
// pipeline cannot fall back from EVALSHA to EVAL per command, so after
// NOSCRIPT it loads the scripts and tries once more.
func (c *Client) inspectMany(ctx context.Context, names []string) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(names))
	for attempt := 0; ; attempt++ {
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, n := range names {
				key, queue, _ := c.keys(n)
				cmds[i] = inspectScript.EvalSha(ctx, p, []string{key, queue}, "")
			}
			return nil
		})
		if err == nil || err == redis.Nil {
			return cmds, nil
		}
		if attempt > 0 || !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return cmds, nil // each command carries its own error
		}
		if err := c.LoadScripts(ctx); err != nil {
			return nil, err
		}
	}
}

// names picks the lease hashes out of scanned keys: "PREFIX{NAME}" exactly,
// not the queues "PREFIX{NAME}:q". A hash that holds only a name's last
// fence (its grant ended) answers not_found and is left out.
func (c *Client) names(keys []string) []string {
	out := keys[:0]
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, c.prefix+"{")
		if !ok {
			continue
		}
		name, ok := strings.CutSuffix(rest, "}")
		if ok && ValidateName(name) == nil {
			out = append(out, name)
		}
	}
	return out
}

// scanNodes returns what SCAN runs on: the client itself, or every master of
// a Cluster in address order (SCAN on a Cluster client sees one node only).
func (c *Client) scanNodes(ctx context.Context) ([]redis.Cmdable, error) {
	cc, ok := c.rdb.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{c.rdb}, nil
	}
	var (
		mu      sync.Mutex
		masters = map[string]*redis.Client{}
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		mu.Lock()
		masters[m.Options().Addr] = m
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, c.backendErr("list", false, err)
	}
	addrs := make([]string, 0, len(masters))
	for a := range masters {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	nodes := make([]redis.Cmdable, len(addrs))
	for i, a := range addrs {
		nodes[i] = masters[a]
	}
	return nodes, nil
}

// cursor is where a listing goes on.
type cursor struct {
	node  int    // index into scanNodes
	scan  uint64 // SCAN cursor on that node
	after string // skip names up to this one in the first batch
}

func (p cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(
		strconv.Itoa(p.node) + "|" + strconv.FormatUint(p.scan, 10) + "|" + p.after))
}

func decodeCursor(s string) (cursor, error) {
	if s == "" {
		return cursor{}, nil
	}
	bad := invalid(CodeInvalidRequest, "the cursor is not one this server gave: pass next_cursor from the previous page unchanged")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, bad
	}
	parts := strings.SplitN(string(b), "|", 3)
	if len(parts) != 3 {
		return cursor{}, bad
	}
	node, err1 := strconv.Atoi(parts[0])
	scan, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || node < 0 || parts[2] != "" && ValidateName(parts[2]) != nil {
		return cursor{}, bad
	}
	return cursor{node: node, scan: scan, after: parts[2]}, nil
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
