package lua_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lua"
	"github.com/redis/go-redis/v9"
)

// The history (common.lua): which script records which end of a grant,
// with which fields, bounded and expiring; break.lua's branches; and
// history.lua's reply.

// entry is one history entry, its fields by name.
type entry struct {
	Kind, Fence, Granted, Ended, Code, Dur, By, Holder, Reason string
}

func parseEntry(t *testing.T, s string) entry {
	t.Helper()
	p := strings.SplitN(s, "\n", 9)
	if len(p) != 9 {
		t.Fatalf("history entry %q: got %d fields, want 9", s, len(p))
	}
	return entry{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]}
}

// recorded is the history list, parsed, newest first.
func recorded(t *testing.T, rdb *redis.Client) []entry {
	t.Helper()
	l, err := rdb.LRange(ctx, hist, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []entry
	for _, s := range l {
		out = append(out, parseEntry(t, s))
	}
	return out
}

func d(n int64) string { return strconv.FormatInt(n, 10) }

func acquireH(t *testing.T, rdb *redis.Client, tok, holder string, ttl, n int) []any {
	t.Helper()
	return run(t, rdb, lua.Acquire, []string{key, queue, hist}, tok, holder, "", ttl, ret, "", "p", n)
}

func releaseH(t *testing.T, rdb *redis.Client, tok string, n int, code, dur string) []any {
	t.Helper()
	return run(t, rdb, lua.Release, []string{key, queue, hist}, tok, ret, "p", n, code, dur)
}

func breakH(t *testing.T, rdb *redis.Client, fence, reason, by string, n int) []any {
	t.Helper()
	return run(t, rdb, lua.Break, []string{key, queue, hist}, fence, reason, by, ret, "p", n)
}

func readHistory(t *testing.T, rdb *redis.Client, max int) []any {
	t.Helper()
	return run(t, rdb, lua.History, []string{key, hist}, max)
}

// checkHistoryExpiry checks that the history expires a retention after
// a Redis now_ms in [lo, hi].
func checkHistoryExpiry(t *testing.T, rdb *redis.Client, lo, hi int64) {
	t.Helper()
	if at := expiresAt(t, rdb, hist); at < lo+ret || at > hi+ret {
		t.Errorf("got the history's expiry %d, want now + retention in [%d, %d]", at, lo+ret, hi+ret)
	}
}

func TestHistoryRecordsEachEnd(t *testing.T) {
	rdb := redistest.Start(t).Client(t)

	t.Run("released, with exit code and duration", func(t *testing.T) {
		fresh(t, rdb)
		r := acquireH(t, rdb, tokA, "web-1", 5000, 20)
		f, granted := r[1].(int64), r[2].(int64)
		lo := redisNow(t, rdb) / 1000
		if r := releaseH(t, rdb, tokA, 20, "3", "1500"); r[0] != "released" {
			t.Fatalf("release: got %v, want released", r)
		}
		now := redisNow(t, rdb) / 1000
		got := recorded(t, rdb)
		want := []entry{{Kind: "released", Fence: d(f), Granted: d(granted), Code: "3", Dur: "1500", Holder: "web-1"}}
		if len(got) == 1 {
			want[0].Ended = got[0].Ended
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got history %+v, want %+v", got, want)
		}
		if e, _ := strconv.ParseInt(got[0].Ended, 10, 64); e < granted || e > now {
			t.Errorf("got ended_at %d, want between the grant %d and now %d", e, granted, now)
		}
		checkHistoryExpiry(t, rdb, lo, now)
	})

	t.Run("released without exit code: empty fields", func(t *testing.T) {
		fresh(t, rdb)
		acquireH(t, rdb, tokA, "", 5000, 20)
		releaseH(t, rdb, tokA, 20, "", "")
		if got := recorded(t, rdb); len(got) != 1 || got[0].Kind != "released" || got[0].Code != "" || got[0].Dur != "" || got[0].Holder != "" {
			t.Fatalf("got %+v, want one released entry with no exit code, duration or holder", got)
		}
	})

	t.Run("handed_over", func(t *testing.T) {
		fresh(t, rdb)
		r := acquireH(t, rdb, tokA, "a", 5000, 20)
		f := r[1].(int64)
		b := newWaiter("b", 4000, "b", "")
		join(t, rdb, b, 0)
		subscribe(t, rdb, b, "p")
		if r := releaseH(t, rdb, tokA, 20, "0", "10"); r[0] != "handed" {
			t.Fatalf("release: got %v, want handed", r)
		}
		got := recorded(t, rdb)
		if len(got) != 1 || got[0].Kind != "handed_over" || got[0].Fence != d(f) || got[0].Holder != "a" || got[0].Code != "0" {
			t.Fatalf("got %+v, want one handed_over entry of fence %d, holder a, exit code 0", got, f)
		}
	})

	t.Run("expired, at its own expiry, found by acquire", func(t *testing.T) {
		fresh(t, rdb)
		r := acquireH(t, rdb, tokA, "a", 5000, 20)
		f := r[1].(int64)
		expire(t, rdb)
		e := hash(t, rdb)["e"]
		if r := acquireH(t, rdb, tokB, "b", 5000, 20); r[0] != "granted" {
			t.Fatalf("acquire: got %v, want granted", r)
		}
		got := recorded(t, rdb)
		if len(got) != 1 || got[0].Kind != "expired" || got[0].Fence != d(f) || got[0].Ended != e || got[0].Holder != "a" {
			t.Fatalf("got %+v, want one expired entry of fence %d ended at its e %s", got, f, e)
		}
	})

	for _, tt := range []struct {
		name string
		call func(t *testing.T, rdb *redis.Client) []any
		want string
	}{
		{"release", func(t *testing.T, rdb *redis.Client) []any { return releaseH(t, rdb, tokA, 20, "", "") }, "not_found"},
		{"break", func(t *testing.T, rdb *redis.Client) []any { return breakH(t, rdb, "", "r", "op", 20) }, "not_found"},
		{"leave", func(t *testing.T, rdb *redis.Client) []any {
			return run(t, rdb, lua.Leave, []string{key, queue, hist}, "", "no-such-entry", ret, "p", 20)
		}, "left"},
	} {
		t.Run("expired, found by "+tt.name+", recorded once", func(t *testing.T) {
			fresh(t, rdb)
			acquireH(t, rdb, tokA, "a", 5000, 20)
			expire(t, rdb)
			if r := tt.call(t, rdb); r[0] != tt.want {
				t.Fatalf("got %v, want %s", r, tt.want)
			}
			if _, ok := hash(t, rdb)["t"]; ok {
				t.Error("the expired grant kept its token: a later script records it again")
			}
			tt.call(t, rdb)
			acquireH(t, rdb, tokB, "", 5000, 20)
			if got := recorded(t, rdb); len(got) != 1 || got[0].Kind != "expired" {
				t.Fatalf("got %+v, want the expiry recorded once", got)
			}
		})
	}

	t.Run("renew keeps an exit code for the expiry", func(t *testing.T) {
		fresh(t, rdb)
		acquireH(t, rdb, tokA, "a", 5000, 20)
		if r := run(t, rdb, lua.Renew, []string{key}, tokA, 3000, ret, "7", "2500"); r[0] != "renewed" {
			t.Fatalf("renew: got %v", r)
		}
		if h := hash(t, rdb); h["x"] != "7" || h["d"] != "2500" || h["l"] != "3000" {
			t.Fatalf("got hash %v, want x 7, d 2500, l 3000", h)
		}
		expire(t, rdb)
		acquireH(t, rdb, tokB, "", 5000, 20)
		if got := recorded(t, rdb); len(got) != 1 || got[0].Kind != "expired" || got[0].Code != "7" || got[0].Dur != "2500" {
			t.Fatalf("got %+v, want expired with exit code 7, duration 2500", got)
		}
		// The new grant does not inherit them.
		if h := hash(t, rdb); h["x"] != "" || h["d"] != "" {
			t.Errorf("the next grant kept x/d: %v", h)
		}
		// A release's own exit code wins over the renew's.
		run(t, rdb, lua.Renew, []string{key}, tokB, 0, ret, "9", "1")
		releaseH(t, rdb, tokB, 20, "0", "5")
		if got := recorded(t, rdb); got[0].Code != "0" || got[0].Dur != "5" {
			t.Errorf("got %+v first, want the release's exit code 0, duration 5", got[0])
		}
	})

	t.Run("renew with 0 keeps the TTL, and its exit code", func(t *testing.T) {
		fresh(t, rdb)
		acquireH(t, rdb, tokA, "a", 5000, 20)
		run(t, rdb, lua.Renew, []string{key}, tokA, 0, ret, "1", "")
		if h := hash(t, rdb); h["x"] != "1" || h["l"] != "5000" {
			t.Fatalf("got hash %v, want x 1, l 5000", h)
		}
	})

	t.Run("bounded: the newest N, trimmed every slack + 1 ends", func(t *testing.T) {
		fresh(t, rdb)
		const n, slack = 3, 16 // hist_max, and common.lua's HIST_SLACK
		var fences []string
		for i := range n + slack + 1 {
			r := acquireH(t, rdb, tokA, "h"+strconv.Itoa(i), 5000, n)
			fences = append(fences, d(r[1].(int64)))
			releaseH(t, rdb, tokA, n, "", "")
			if got := len(recorded(t, rdb)); i < n+slack && got != i+1 {
				t.Fatalf("after %d ends: got %d entries, want all of them before the trim", i+1, got)
			}
		}
		got := recorded(t, rdb)
		last := len(fences) - 1
		if len(got) != n || got[0].Fence != fences[last] || got[1].Fence != fences[last-1] || got[2].Fence != fences[last-2] {
			t.Fatalf("after %d ends: got %+v, want the last %d, newest first", len(fences), got, n)
		}
		// A reader asks for the first hist_max + 1 (the current grant).
		if r := readHistory(t, rdb, n+1); len(r) != 2+n {
			t.Errorf("history.lua with max %d: got %d elements, want now, current and %d", n+1, len(r), n)
		}
	})

	t.Run("none kept with 0", func(t *testing.T) {
		fresh(t, rdb)
		acquireH(t, rdb, tokA, "a", 5000, 0)
		releaseH(t, rdb, tokA, 0, "1", "2")
		acquireH(t, rdb, tokA, "a", 5000, 0)
		expire(t, rdb)
		acquireH(t, rdb, tokB, "b", 5000, 0)
		if n := rdb.Exists(ctx, hist).Val(); n != 0 {
			t.Errorf("a history key exists with 0 kept")
		}
	})

	t.Run("the start of a grant whose fence is not the clock", func(t *testing.T) {
		fresh(t, rdb)
		acquireH(t, rdb, tokA, "a", 5000, 20)
		releaseH(t, rdb, tokA, 20, "", "")
		set(t, rdb, "f", strconv.FormatInt(1<<52, 10)) // ahead of the clock
		r := acquireH(t, rdb, tokB, "b", 5000, 20)
		if h := hash(t, rdb); h["g"] != d(r[2].(int64)) {
			t.Fatalf("got g %q, want the grant's now_ms %d", h["g"], r[2])
		}
		releaseH(t, rdb, tokB, 20, "", "")
		if got := recorded(t, rdb); got[0].Granted != d(r[2].(int64)) || got[0].Fence != d(1<<52+1) {
			t.Errorf("got %+v, want granted_at %d, fence 2^52+1", got[0], r[2])
		}
		if _, ok := hash(t, rdb)["g"]; ok {
			t.Error("g outlived its grant")
		}
	})

	t.Run("raise keeps the start", func(t *testing.T) {
		fresh(t, rdb)
		r := acquireH(t, rdb, tokA, "a", 5000, 20)
		now := r[2].(int64)
		raise(t, rdb, tokA, r[1].(int64)+5_000_000)
		if h := hash(t, rdb); h["g"] != d(now) {
			t.Fatalf("after a raise: got g %q, want %d", h["g"], now)
		}
	})
}

func TestBreak(t *testing.T) {
	rdb := redistest.Start(t).Client(t)

	t.Run("broken", func(t *testing.T) {
		fresh(t, rdb)
		r := acquireH(t, rdb, tokA, "a", 5000, 20)
		f, granted := r[1].(int64), r[2].(int64)
		r = breakH(t, rdb, "", "stuck job", "ops", 20)
		if want := []any{"broken", "a", f, "<int>", int64(0), "", "", granted}; !reflect.DeepEqual(shape(r, 3), want) {
			t.Fatalf("got %v, want %v", r, want)
		}
		now := r[3].(int64)
		checkReleased(t, rdb, f, now*1000, (now+1)*1000)
		got := recorded(t, rdb)
		if len(got) != 1 || got[0] != (entry{Kind: "broken", Fence: d(f), Granted: got[0].Granted, Ended: d(now), By: "ops", Holder: "a", Reason: "stuck job"}) {
			t.Fatalf("got %+v, want one broken entry by ops, reason stuck job", got)
		}
		if r := renew(t, rdb, tokA, 5000); r[0] != "not_found" {
			t.Errorf("the broken holder's renew: got %v, want not_found", r)
		}
		if r := releaseH(t, rdb, tokA, 20, "", ""); r[0] != "not_found" {
			t.Errorf("the broken holder's release: got %v, want not_found", r)
		}
		if f2, _ := grant(t, rdb, tokB, "", "", 1000); f2 <= f {
			t.Errorf("the next fence %d is not above the broken one %d", f2, f)
		}
	})

	t.Run("by fence", func(t *testing.T) {
		fresh(t, rdb)
		r := acquireH(t, rdb, tokA, "a", 5000, 20)
		f := r[1].(int64)
		before := snapshot(t, rdb)
		r = breakH(t, rdb, d(f-1), "old grant", "ops", 20)
		if want := []any{"not_holder", "a", f, "<int>", "<int>"}; !reflect.DeepEqual(shape(r, 3, 4), want) {
			t.Fatalf("another fence: got %v, want %v", r, want)
		}
		unchanged(t, rdb, "a break of another fence", before)
		if r := breakH(t, rdb, d(f), "this grant", "", 20); r[0] != "broken" {
			t.Fatalf("its own fence: got %v, want broken", r)
		}
	})

	t.Run("not found", func(t *testing.T) {
		fresh(t, rdb)
		before := snapshot(t, rdb)
		if r := breakH(t, rdb, "", "r", "", 20); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Fatalf("no name: got %v, want not_found", r)
		}
		unchanged(t, rdb, "a break of nothing", before)
		acquireH(t, rdb, tokA, "a", 5000, 20)
		releaseH(t, rdb, tokA, 20, "", "")
		before = snapshot(t, rdb)
		if r := breakH(t, rdb, "", "r", "", 20); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Fatalf("released: got %v, want not_found", r)
		}
		unchanged(t, rdb, "a break of a released name", before)
	})

	t.Run("hands over to the head", func(t *testing.T) {
		fresh(t, rdb)
		r := acquireH(t, rdb, tokA, "a", 5000, 20)
		f := r[1].(int64)
		b := newWaiter("b", 4000, "b", "mb")
		join(t, rdb, b, 0)
		sub := subscribe(t, rdb, b, "p")
		r = breakH(t, rdb, "", "r", "ops", 20)
		if len(r) != 8 || r[0] != "broken" || r[2] != f || r[5] != b.wid || r[6] != b.client {
			t.Fatalf("got %v, want broken and handed to %s", r, b.wid)
		}
		nf := r[4].(int64)
		if nf <= f {
			t.Errorf("the waiter's fence %d is not above the broken one %d", nf, f)
		}
		told(t, sub, b, nf)
		if h := hash(t, rdb); h["t"] != b.token || h["h"] != "b" {
			t.Errorf("got hash %v, want b's grant", h)
		}
		if got := recorded(t, rdb); len(got) != 1 || got[0].Kind != "broken" || got[0].Fence != d(f) {
			t.Errorf("got %+v, want the broken grant recorded", got)
		}
	})

	t.Run("an expired grant with waiters: their turn", func(t *testing.T) {
		fresh(t, rdb)
		acquireH(t, rdb, tokA, "a", 5000, 20)
		b := newWaiter("b", 4000, "b", "")
		join(t, rdb, b, 0)
		sub := subscribe(t, rdb, b, "p")
		expire(t, rdb)
		if r := breakH(t, rdb, "", "r", "", 20); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Fatalf("got %v, want not_found", r)
		}
		if h := hash(t, rdb); h["t"] != b.token {
			t.Errorf("got hash %v, want b's grant", h)
		}
		told(t, sub, b, mustInt(t, hash(t, rdb)["f"]))
		if got := recorded(t, rdb); len(got) != 1 || got[0].Kind != "expired" {
			t.Errorf("got %+v, want the expiry recorded", got)
		}
	})
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestHistoryRead(t *testing.T) {
	rdb := redistest.Start(t).Client(t)

	t.Run("nothing", func(t *testing.T) {
		fresh(t, rdb)
		if r := readHistory(t, rdb, 20); len(r) != 2 || r[1] != "" {
			t.Fatalf("got %v, want {now, \"\"}", r)
		}
	})

	t.Run("held, then the ended ones, at most max", func(t *testing.T) {
		fresh(t, rdb)
		var fences []int64
		for range 3 {
			r := acquireH(t, rdb, tokA, "a", 5000, 20)
			fences = append(fences, r[1].(int64))
			releaseH(t, rdb, tokA, 20, "", "")
		}
		r := acquireH(t, rdb, tokB, "b", 5000, 20)
		held, at := r[1].(int64), r[2].(int64)
		r = readHistory(t, rdb, 3)
		if len(r) != 4 {
			t.Fatalf("got %d elements %v, want now, the current and 2 ended", len(r), r)
		}
		cur := parseEntry(t, r[1].(string))
		if cur != (entry{Kind: "held", Fence: d(held), Granted: d(at), Ended: d(at + 5000), Holder: "b"}) {
			t.Errorf("got current %+v, want b's grant, ending at its expiry", cur)
		}
		if e := parseEntry(t, r[2].(string)); e.Fence != d(fences[2]) || e.Kind != "released" {
			t.Errorf("got %+v, want the newest ended grant first", e)
		}
		if e := parseEntry(t, r[3].(string)); e.Fence != d(fences[1]) {
			t.Errorf("got %+v, want the second newest", e)
		}
	})

	t.Run("expired, not yet recorded", func(t *testing.T) {
		fresh(t, rdb)
		acquireH(t, rdb, tokA, "a", 5000, 20)
		run(t, rdb, lua.Renew, []string{key}, tokA, 0, ret, "2", "30")
		expire(t, rdb)
		e := hash(t, rdb)["e"]
		before := snapshot(t, rdb)
		r := readHistory(t, rdb, 20)
		unchanged(t, rdb, "a read of the history", before)
		cur := parseEntry(t, r[1].(string))
		if cur.Kind != "expired" || cur.Ended != e || cur.Code != "2" || cur.Dur != "30" {
			t.Errorf("got current %+v, want expired at %s with exit code 2", cur, e)
		}
	})
}
