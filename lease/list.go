package lease

import (
	"context"
	"encoding/base64"
	"sort"
	"strconv"
	"strings"

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
// A cursor is opaque: the SCAN cursor the page started from, and the last name
// returned from that SCAN batch, so a batch larger than Limit is split between
// pages without losing names.
func (c *Client) List(ctx context.Context, opts *ListOptions) (*Page, error) {
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
	cur, after, err := decodeCursor(o.Cursor)
	if err != nil {
		return nil, err
	}

	// Names in a key never contain glob characters (ValidateName), but the
	// prefix of keys might: escape it for MATCH.
	match := globEscape(c.prefix+"{"+o.Prefix) + "*"
	page := &Page{Leases: []Lease{}}
	var names []string
	for scans := 0; ; scans++ {
		keys, next, err := c.rdb.Scan(ctx, cur, match, int64(max(o.Limit, 64))).Result()
		if err != nil {
			return nil, c.backendErr("list", false, err)
		}
		batch := c.names(keys)
		sort.Strings(batch)
		if after != "" {
			i := sort.SearchStrings(batch, after)
			for i < len(batch) && batch[i] <= after {
				i++
			}
			batch, after = batch[i:], ""
		}
		room := o.Limit - len(names)
		if len(batch) > room {
			names = append(names, batch[:room]...)
			page.NextCursor = encodeCursor(cur, batch[room-1])
			break
		}
		names = append(names, batch...)
		cur = next
		if cur == 0 {
			break
		}
		if len(names) == o.Limit || scans == maxScansPerPage {
			page.NextCursor = encodeCursor(cur, "")
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
				cmds[i] = inspectScript.EvalSha(ctx, p, []string{c.key(n)}, "")
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
// not the fence counters "PREFIX{NAME}:fence".
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

func encodeCursor(scan uint64, after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatUint(scan, 10) + "|" + after))
}

func decodeCursor(s string) (uint64, string, error) {
	if s == "" {
		return 0, "", nil
	}
	bad := invalid(CodeInvalidRequest, "the cursor is not one this server gave: pass next_cursor from the previous page unchanged")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, "", bad
	}
	num, after, ok := strings.Cut(string(b), "|")
	if !ok {
		return 0, "", bad
	}
	scan, err := strconv.ParseUint(num, 10, 64)
	if err != nil || after != "" && ValidateName(after) != nil {
		return 0, "", bad
	}
	return scan, after, nil
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
