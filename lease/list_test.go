package lease_test

import (
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

func TestListPagesThroughEveryLease(t *testing.T) {
	c, _ := newClient(t, nil)
	prefix := uniq(t) + ":"
	want := map[string]bool{}
	for i := 0; i < 150; i++ { // a page of 100 is one pipeline of 100 scripts
		name := fmt.Sprintf("%sjob-%03d", prefix, i)
		if _, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Minute, Holder: "h", Metadata: "m"}); err != nil {
			t.Fatal(err)
		}
		want[name] = true
	}
	// A lease outside the prefix, released and never-held names must not appear.
	if _, err := c.Acquire(ctx, uniq(t)+"-other", nil); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 5, 10, 100} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			seen := map[string]bool{}
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 200 {
					t.Fatal("more than 200 pages: the cursor does not advance")
				}
				p, err := c.List(ctx, &lease.ListOptions{Prefix: prefix, Limit: limit, Cursor: cursor})
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Leases) > limit {
					t.Fatalf("got a page of %d, want at most %d", len(p.Leases), limit)
				}
				for _, l := range p.Leases {
					if !want[l.Name] {
						t.Errorf("got %q, which is not a lease under %q", l.Name, prefix)
					}
					if l.Token != "" || l.Holder != "h" || l.Metadata != "m" || l.Fence == 0 || l.TTL <= 0 {
						t.Errorf("got %+v, want holder h, metadata m, a fence and a TTL, and no token", l)
					}
					seen[l.Name] = true
				}
				if p.NextCursor == "" {
					break
				}
				cursor = p.NextCursor
			}
			if len(seen) != len(want) {
				t.Errorf("got %d distinct leases, want %d: missing %v", len(seen), len(want), missing(want, seen))
			}
		})
	}
}

func missing(want, seen map[string]bool) []string {
	var out []string
	for n := range want {
		if !seen[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func TestListSkipsReleasedAndFenceKeys(t *testing.T) {
	c, _ := newClient(t, nil)
	prefix := uniq(t) + ":"
	kept, err := c.Acquire(ctx, prefix+"kept", nil)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := c.Acquire(ctx, prefix+"gone", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, prefix+"gone", gone.Token); err != nil {
		t.Fatal(err)
	}
	p, err := c.List(ctx, &lease.ListOptions{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Leases) != 1 || p.Leases[0].Name != prefix+"kept" || p.Leases[0].Fence != kept.Fence || p.NextCursor != "" {
		t.Errorf("got %+v, want only %s with fence %d and no next cursor (the released lease's fence key stays)", p, prefix+"kept", kept.Fence)
	}
}

func TestListRejectsBadInput(t *testing.T) {
	c, _ := newClient(t, nil)
	for _, o := range []lease.ListOptions{
		{Prefix: "a/b"},
		{Prefix: "has space"},
		{Limit: -1},
		{Limit: lease.MaxListLimit + 1},
		{Cursor: "not-a-cursor!"},
		{Cursor: "MTIz"}, // base64 of "123", no separator
	} {
		_, err := c.List(ctx, &o)
		var inv *lease.InvalidError
		if !errors.As(err, &inv) || inv.Code != lease.CodeInvalidRequest {
			t.Errorf("List(%+v): got %v, want invalid_request", o, err)
		}
	}
}

func TestKeyPrefixAndHashTag(t *testing.T) {
	c, rdb := newClient(t, &lease.Options{KeyPrefix: "app1:"})
	name := uniq(t)
	if _, err := c.Acquire(ctx, name, nil); err != nil {
		t.Fatal(err)
	}
	if n, _ := live(rdb, "app1:{"+name+"}"); n != 1 {
		t.Errorf("lease %q missing", "app1:{"+name+"}")
	}
	if n, _ := live(rdb, "leasehold:{"+name+"}"); n != 0 {
		t.Errorf("the default prefix was used despite KeyPrefix")
	}
	// Another prefix is another namespace.
	other, _ := newClient(t, nil)
	if _, err := other.Acquire(ctx, name, nil); err != nil {
		t.Errorf("the same name under another prefix: got %v, want a grant", err)
	}
	p, err := c.List(ctx, &lease.ListOptions{Prefix: name})
	if err != nil || len(p.Leases) != 1 {
		t.Errorf("List under app1: got %+v (%v), want one lease", p, err)
	}
}
