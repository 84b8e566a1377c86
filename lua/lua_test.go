package lua_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lua"
	"github.com/redis/go-redis/v9"
)

// These tests drive each script directly, branch by branch, against a real
// redis-server, checking the exact replies the headers promise and the exact
// state (the name's hash, its queue, both keys' expiry) after each call.
// Package lease tests the same branches through its API.
//
// A grant is made to expire at once by setting its e in the past (expire):
// that is all a script sees of an expiry, and it keeps the tests exact.
// TestRealExpiry lets a grant run out on Redis's clock instead.

var ctx = context.Background()

const (
	key      = "t:{n}"
	queue    = "t:{n}:q"
	hist     = "t:{n}:h"
	tokA     = "token-a-0123456789"
	tokB     = "token-b-0123456789"
	tokC     = "token-c-0123456789"
	ret      = 60000 // the fence retention (ms) the tests pass
	maxFence = 1<<53 - 1
)

// run runs src and fails the test on an error reply.
func run(t *testing.T, rdb *redis.Client, src string, keys []string, args ...any) []any {
	t.Helper()
	res, err := redis.NewScript(src).Run(ctx, rdb, keys, args...).Slice()
	if err != nil {
		t.Fatalf("script: %v", err)
	}
	return res
}

// shape replaces integers that depend on the clock (fences, times, TTLs) by
// their kind, so replies compare exactly.
func shape(res []any, clock ...int) []any {
	out := append([]any(nil), res...)
	for _, i := range clock {
		if _, ok := out[i].(int64); ok {
			out[i] = "<int>"
		}
	}
	return out
}

// acquire runs acquire.lua keeping no history; wait, when given, is
// entry, how, the queue's least TTL and rejoin (ARGV 6, 7, 9, 10).
func acquire(t *testing.T, rdb *redis.Client, tok, holder, meta string, ttl int, wait ...any) []any {
	t.Helper()
	return run(t, rdb, lua.Acquire, []string{key, queue, hist}, append([]any{tok, holder, meta, ttl, ret}, withHist(wait, 0)...)...)
}

// withHist puts the history's length n into acquire's wait arguments,
// after entry and how.
func withHist(wait []any, n int) []any {
	if len(wait) < 3 {
		return wait
	}
	return append(append(slices.Clip(wait[:2]), n), wait[2:]...)
}

func release(t *testing.T, rdb *redis.Client, tok, how string) []any {
	t.Helper()
	return run(t, rdb, lua.Release, []string{key, queue, hist}, tok, ret, how)
}

func renew(t *testing.T, rdb *redis.Client, tok string, ttl int) []any {
	t.Helper()
	return run(t, rdb, lua.Renew, []string{key}, tok, ttl, ret)
}

func leave(t *testing.T, rdb *redis.Client, w waiter, how string) []any {
	t.Helper()
	return run(t, rdb, lua.Leave, []string{key, queue, hist}, w.token, w.entry(), ret, how)
}

func inspect(t *testing.T, rdb *redis.Client, tok string) []any {
	t.Helper()
	return run(t, rdb, lua.Inspect, []string{key, queue}, tok)
}

func raise(t *testing.T, rdb *redis.Client, tok string, fence int64) []any {
	t.Helper()
	return run(t, rdb, lua.Raise, []string{key}, tok, strconv.FormatInt(fence, 10))
}

// grant takes the free lease for tok and returns its fence and Redis's now_ms.
func grant(t *testing.T, rdb *redis.Client, tok, holder, meta string, ttl int) (fence, now int64) {
	t.Helper()
	r := acquire(t, rdb, tok, holder, meta, ttl)
	if len(r) != 4 || r[0] != "granted" || r[3] != int64(0) {
		t.Fatalf("grant: got %v, want a new grant", r)
	}
	return r[1].(int64), r[2].(int64)
}

// waiter is one queue entry (see common.lua).
type waiter struct {
	wid, client string
	ttl         int
	token       string
	holder      string
	meta        string
}

var ids atomic.Int64

// newWaiter makes a waiter with its own wid, client and token: a client id
// is never reused, so a subscription a finished test closed cannot count.
func newWaiter(name string, ttl int, holder, meta string) waiter {
	n := strconv.FormatInt(ids.Add(1), 10)
	return waiter{wid: "w" + name + n, client: "c" + name + n, ttl: ttl, token: "token-" + name + "-" + n + "-0123456789", holder: holder, meta: meta}
}

func (w waiter) entry() string {
	return strings.Join([]string{w.wid, w.client, strconv.Itoa(w.ttl), w.token, w.holder, w.meta}, "\n")
}

func (w waiter) channel() string { return key + ":w:" + w.client }

// join is w's first attempt on a held lease: it joins the queue, at position.
func join(t *testing.T, rdb *redis.Client, w waiter, position int64) {
	t.Helper()
	r := acquire(t, rdb, w.token, w.holder, w.meta, w.ttl, w.entry(), "p", 120000, "0")
	if len(r) != 6 || r[0] != "held" || r[5] != position {
		t.Fatalf("join %s: got %v, want held at position %d", w.wid, r, position)
	}
}

// subscribe listens as w's client does, on its channel (how "s": SSUBSCRIBE).
func subscribe(t *testing.T, rdb *redis.Client, w waiter, how string) *redis.PubSub {
	t.Helper()
	var sub *redis.PubSub
	if how == "s" {
		sub = rdb.SSubscribe(ctx, w.channel())
	} else {
		sub = rdb.Subscribe(ctx, w.channel())
	}
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	return sub
}

// told checks that the next message on sub is the hand-over to w,
// "wid fence now_ms", and returns that now_ms.
func told(t *testing.T, sub *redis.PubSub, w waiter, fence int64) int64 {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	msg, err := sub.ReceiveMessage(tctx)
	if err != nil {
		t.Fatalf("waiting for the hand-over to %s: %v", w.wid, err)
	}
	parts := strings.Split(msg.Payload, " ")
	if msg.Channel != w.channel() || len(parts) != 3 || parts[0] != w.wid || parts[1] != strconv.FormatInt(fence, 10) {
		t.Fatalf("got %q on %s, want %q on %s", msg.Payload, msg.Channel, fmt.Sprintf("%s %d <now_ms>", w.wid, fence), w.channel())
	}
	now, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		t.Fatalf("got now_ms %q in %q", parts[2], msg.Payload)
	}
	return now
}

// toldHead checks that the next message on sub tells w that it is the
// queue's head now, behind a grant of ttl ms: "wid h ttl".
func toldHead(t *testing.T, sub *redis.PubSub, w waiter, ttl int) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	msg, err := sub.ReceiveMessage(tctx)
	if want := fmt.Sprintf("%s h %d", w.wid, ttl); err != nil || msg.Payload != want || msg.Channel != w.channel() {
		t.Fatalf("got %v (%v), want %q on %s: the next waiter told it is the head", msg, err, want, w.channel())
	}
}

// quiet checks that nothing was published to w's client: a marker sent now
// is the first message it gets.
func quiet(t *testing.T, rdb *redis.Client, sub *redis.PubSub, w waiter, how string) {
	t.Helper()
	if how == "s" {
		rdb.SPublish(ctx, w.channel(), "marker")
	} else {
		rdb.Publish(ctx, w.channel(), "marker")
	}
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	msg, err := sub.ReceiveMessage(tctx)
	if err != nil || msg.Payload != "marker" {
		t.Fatalf("got %v (%v) first on %s, want no message but the marker", msg, err, w.channel())
	}
}

func fresh(t *testing.T, rdb *redis.Client) {
	t.Helper()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

// redisNow is Redis's TIME in µs.
func redisNow(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	tm, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMicro()
}

func hash(t *testing.T, rdb *redis.Client) map[string]string {
	t.Helper()
	h, err := rdb.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func list(t *testing.T, rdb *redis.Client) []string {
	t.Helper()
	l, err := rdb.LRange(ctx, queue, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// expiresAt is k's PEXPIRETIME: Unix ms, -1 without expiry, -2 when absent.
func expiresAt(t *testing.T, rdb *redis.Client, k string) int64 {
	t.Helper()
	n, err := rdb.Do(ctx, "PEXPIRETIME", k).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// state is all that a script may change of the name.
type state struct {
	Hash            map[string]string
	Queue           []string
	HashAt, QueueAt int64
	History         []string
	HistoryAt       int64
}

func snapshot(t *testing.T, rdb *redis.Client) state {
	t.Helper()
	h, err := rdb.LRange(ctx, hist, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return state{hash(t, rdb), list(t, rdb), expiresAt(t, rdb, key), expiresAt(t, rdb, queue), h, expiresAt(t, rdb, hist)}
}

func unchanged(t *testing.T, rdb *redis.Client, what string, before state) {
	t.Helper()
	if after := snapshot(t, rdb); !reflect.DeepEqual(after, before) {
		t.Errorf("%s changed the state:\n got %+v\nwant %+v", what, after, before)
	}
}

func set(t *testing.T, rdb *redis.Client, fieldValues ...any) {
	t.Helper()
	if err := rdb.HSet(ctx, key, fieldValues...).Err(); err != nil {
		t.Fatal(err)
	}
}

// expire ends the current grant now: its e goes into the past.
func expire(t *testing.T, rdb *redis.Client) {
	t.Helper()
	set(t, rdb, "e", strconv.FormatInt(redisNow(t, rdb)/1000-1, 10))
}

// granted is the hash of a grant made at now: the fields t f e l, h and m
// when not empty, and extra ones (g, the grant's start, when its fence is
// not Redis's clock in µs: see startedAt).
func granted(tok string, fence, now int64, ttl int, holder, meta string, extra ...string) map[string]string {
	h := map[string]string{"t": tok, "f": strconv.FormatInt(fence, 10), "e": strconv.FormatInt(now+int64(ttl), 10), "l": strconv.Itoa(ttl)}
	if holder != "" {
		h["h"] = holder
	}
	if meta != "" {
		h["m"] = meta
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

// startedAt is the field g of a grant made at now whose fence is not
// Redis's clock in µs (common.lua).
func startedAt(now int64) []string { return []string{"g", strconv.FormatInt(now, 10)} }

// checkGrant checks that the hash is want and that the key expires at its
// e + the retention.
func checkGrant(t *testing.T, rdb *redis.Client, want map[string]string) {
	t.Helper()
	if got := hash(t, rdb); !reflect.DeepEqual(got, want) {
		t.Errorf("got hash %v, want %v", got, want)
	}
	e, _ := strconv.ParseInt(want["e"], 10, 64)
	if got := expiresAt(t, rdb, key); got != e+ret {
		t.Errorf("got the key's expiry %d, want e + retention = %d", got, e+ret)
	}
}

// checkClockFence checks that fence rests on Redis's clock: it is the
// TIME in µs of the call that answered now_ms.
func checkClockFence(t *testing.T, fence, now int64) {
	t.Helper()
	if fence/1000 != now {
		t.Errorf("got fence %d at now_ms %d, want Redis TIME in µs", fence, now)
	}
}

// checkReleased checks that only the fence (and the fields in keep) is
// left, expiring a retention after the release, between lo and hi µs.
func checkReleased(t *testing.T, rdb *redis.Client, fence, lo, hi int64, keep ...string) {
	t.Helper()
	want := map[string]string{"f": strconv.FormatInt(fence, 10)}
	for i := 0; i+1 < len(keep); i += 2 {
		want[keep[i]] = keep[i+1]
	}
	if got := hash(t, rdb); !reflect.DeepEqual(got, want) {
		t.Errorf("after the release: got hash %v, want %v", got, want)
	}
	if at := expiresAt(t, rdb, key); at < lo/1000+ret || at > hi/1000+ret {
		t.Errorf("after the release: got the key's expiry %d, want now + retention in [%d, %d]", at, lo/1000+ret, hi/1000+ret)
	}
	if n := rdb.Exists(ctx, queue).Val(); n != 0 {
		t.Errorf("after the release: the queue key exists")
	}
}

func TestAcquireNewGrant(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	for _, tt := range []struct {
		holder, meta string
		fields       []string
	}{
		{"", "", []string{"e", "f", "l", "t"}},
		{"web-1", "", []string{"e", "f", "h", "l", "t"}},
		{"", "meta\nwith a newline", []string{"e", "f", "l", "m", "t"}},
		{"web-1", "meta", []string{"e", "f", "h", "l", "m", "t"}},
	} {
		t.Run(fmt.Sprintf("holder=%q,metadata=%q", tt.holder, tt.meta), func(t *testing.T) {
			fresh(t, rdb)
			lo := redisNow(t, rdb)
			r := acquire(t, rdb, tokA, tt.holder, tt.meta, 5000)
			hi := redisNow(t, rdb)
			if want := []any{"granted", "<int>", "<int>", int64(0)}; !reflect.DeepEqual(shape(r, 1, 2), want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			f, now := r[1].(int64), r[2].(int64)
			if f < lo || f > hi {
				t.Errorf("got fence %d, want Redis TIME in µs, in [%d, %d]", f, lo, hi)
			}
			checkClockFence(t, f, now)
			checkGrant(t, rdb, granted(tokA, f, now, 5000, tt.holder, tt.meta))
			if keys := slices.Sorted(maps.Keys(hash(t, rdb))); !reflect.DeepEqual(keys, tt.fields) {
				t.Errorf("got fields %v, want %v", keys, tt.fields)
			}
			if pttl := rdb.PTTL(ctx, key).Val(); pttl <= (5000+ret-1000)*time.Millisecond || pttl > (5000+ret)*time.Millisecond {
				t.Errorf("got PTTL %v, want about ttl + retention (%dms)", pttl, 5000+ret)
			}
			if n := rdb.Exists(ctx, queue).Val(); n != 0 {
				t.Error("a grant made the queue key")
			}
		})
	}
}

// The same token again: the same grant and fence, with this call's TTL,
// holder and metadata (those it lacks are dropped), and the rest (q, c,
// w, the queue) as they were.
func TestAcquireRegrant(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	for _, tt := range []struct {
		holder, meta, holder2, meta2 string
	}{
		{"a", "m", "b", "n"},
		{"a", "m", "", ""},
		{"a", "m", "", "n"},
		{"a", "m", "b", ""},
		{"", "", "", ""},
		{"", "", "b", ""},
		{"", "", "", "n"},
		{"", "", "b", "n"},
		{"a", "", "", "n"},
		{"", "m", "b", ""},
	} {
		t.Run(fmt.Sprintf("%q,%q->%q,%q", tt.holder, tt.meta, tt.holder2, tt.meta2), func(t *testing.T) {
			fresh(t, rdb)
			f, _ := grant(t, rdb, tokA, tt.holder, tt.meta, 5000)
			r := acquire(t, rdb, tokA, tt.holder2, tt.meta2, 9000)
			if want := []any{"granted", f, "<int>", int64(1)}; !reflect.DeepEqual(shape(r, 2), want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			checkGrant(t, rdb, granted(tokA, f, r[2].(int64), 9000, tt.holder2, tt.meta2))
		})
	}

	t.Run("keeps q, c, w and the queue", func(t *testing.T) {
		fresh(t, rdb)
		f, _ := grant(t, rdb, tokA, "a", "m", 5000)
		w := newWaiter("b", 4000, "b", "")
		join(t, rdb, w, 0)
		set(t, rdb, "q", "7", "c", "8")
		q := list(t, rdb)
		qAt := expiresAt(t, rdb, queue)
		r := acquire(t, rdb, tokA, "a2", "", 3000, newWaiter("x", 1, "", "").entry(), "p", 1000, "1")
		if want := []any{"granted", f, "<int>", int64(1)}; !reflect.DeepEqual(shape(r, 2), want) {
			t.Fatalf("got %v, want %v", r, want)
		}
		checkGrant(t, rdb, granted(tokA, f, r[2].(int64), 3000, "a2", "", "q", "7", "c", "8", "w", "1"))
		if got := list(t, rdb); !reflect.DeepEqual(got, q) || expiresAt(t, rdb, queue) != qAt {
			t.Errorf("got queue %q, want %q as it was", got, q)
		}
	})
}

func TestAcquireHeld(t *testing.T) {
	rdb := redistest.Start(t).Client(t)

	t.Run("not waiting", func(t *testing.T) {
		for _, holder := range []string{"a", ""} {
			fresh(t, rdb)
			f, _ := grant(t, rdb, tokA, holder, "m", 5000)
			before := snapshot(t, rdb)
			r := acquire(t, rdb, tokB, "b", "mb", 1000)
			if want := []any{"held", holder, f, "<int>", "<int>", int64(-1)}; !reflect.DeepEqual(shape(r, 3, 4), want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			e, _ := strconv.ParseInt(before.Hash["e"], 10, 64)
			if pttl, now := r[3].(int64), r[4].(int64); pttl != e-now || pttl <= 4000 || pttl > 5000 {
				t.Errorf("got remaining TTL %d at now %d, want e - now = %d, in (4000, 5000]", pttl, now, e-now)
			}
			unchanged(t, rdb, "a held attempt", before)
			// An entry of "" (ARGV[6..9] given) is one that does not wait.
			acquire(t, rdb, tokB, "b", "mb", 1000, "", "p", 5000, "0")
			unchanged(t, rdb, "a held attempt with an empty entry", before)
		}
	})

	t.Run("waiting", func(t *testing.T) {
		fresh(t, rdb)
		f, _ := grant(t, rdb, tokA, "a", "", 5000)
		hashAt := expiresAt(t, rdb, key)
		b, c, d := newWaiter("b", 4000, "b", "mb"), newWaiter("c", 3000, "", "m\nc"), newWaiter("d", 2000, "d", "")
		attempt := func(w waiter, wait int, rejoin string) []any {
			return acquire(t, rdb, w.token, w.holder, w.meta, w.ttl, w.entry(), "p", wait, rejoin)
		}
		check := func(what string, r []any, position int64, entries []string, queueTTL int) {
			t.Helper()
			if want := []any{"held", "a", f, "<int>", "<int>", position}; !reflect.DeepEqual(shape(r, 3, 4), want) {
				t.Fatalf("%s: got %v, want %v", what, r, want)
			}
			if got := list(t, rdb); !reflect.DeepEqual(got, entries) {
				t.Errorf("%s: got queue %q, want %q", what, got, entries)
			}
			if h := hash(t, rdb); h["w"] != "1" || h["t"] != tokA || expiresAt(t, rdb, key) != hashAt {
				t.Errorf("%s: got hash %v, want the holder's with w=1", what, h)
			}
			if pttl := rdb.PTTL(ctx, queue).Val(); pttl <= time.Duration(queueTTL-1000)*time.Millisecond || pttl > time.Duration(queueTTL)*time.Millisecond {
				t.Errorf("%s: got the queue's PTTL %v, want about %dms", what, pttl, queueTTL)
			}
		}
		check("b joins", attempt(b, 10000, "0"), 0, []string{b.entry()}, 10000)
		check("c joins with a shorter wait", attempt(c, 5000, "0"), 1, []string{b.entry(), c.entry()}, 10000)
		check("d joins with a longer wait", attempt(d, 20000, "0"), 2, []string{b.entry(), c.entry(), d.entry()}, 20000)
		at := expiresAt(t, rdb, queue)
		check("b rejoins", attempt(b, 90000, "1"), 0, []string{b.entry(), c.entry(), d.entry()}, 20000)
		check("c rejoins", attempt(c, 90000, "1"), 1, []string{b.entry(), c.entry(), d.entry()}, 20000)
		if got := expiresAt(t, rdb, queue); got != at {
			t.Errorf("a rejoin moved the queue's expiry from %d to %d", at, got)
		}
		// A rejoin whose entry is gone (a hand-over dropped it, or the
		// waiter left and this attempt came late) is not queued again: -2;
		// a waiter that still waits joins anew with a first attempt.
		rdb.LRem(ctx, queue, 1, b.entry())
		check("b rejoins after its entry went", attempt(b, 1000, "1"), -2, []string{c.entry(), d.entry()}, 20000)
		check("b joins again", attempt(b, 1000, "0"), 2, []string{c.entry(), d.entry(), b.entry()}, 20000)
		// A rejoin that finds its entry but not the mark (the hash was made
		// anew while the queue lived on) sets the mark again.
		rdb.HDel(ctx, key, "w")
		check("c rejoins without the mark", attempt(c, 1000, "1"), 0, []string{c.entry(), d.entry(), b.entry()}, 20000)
		// Not waiting: position -1, the queue as it was.
		before := snapshot(t, rdb)
		if r := acquire(t, rdb, tokC, "", "", 1000); !reflect.DeepEqual(shape(r, 3, 4), []any{"held", "a", f, "<int>", "<int>", int64(-1)}) {
			t.Errorf("not waiting: got %v, want held at -1", r)
		}
		unchanged(t, rdb, "a held attempt that does not wait", before)
	})

	t.Run("w set and the queue expired", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		set(t, rdb, "w", "1")
		b := newWaiter("b", 4000, "", "")
		join(t, rdb, b, 0)
		if got := list(t, rdb); !reflect.DeepEqual(got, []string{b.entry()}) {
			t.Errorf("got queue %q, want b's entry", got)
		}
	})
}

// A free lease (expired, here) with a queue goes to the queue's head whose
// client listens, before the caller is answered.
func TestAcquireHandOver(t *testing.T) {
	rdb := redistest.Start(t).Client(t)

	for _, how := range []string{"p", "s"} {
		t.Run("to the head, the caller is told held/"+how, func(t *testing.T) {
			fresh(t, rdb)
			fA, _ := grant(t, rdb, tokA, "a", "ma", 5000)
			b, c := newWaiter("b", 4000, "b", ""), newWaiter("c", 3000, "", "mc")
			join(t, rdb, b, 0)
			join(t, rdb, c, 1)
			subB, subC := subscribe(t, rdb, b, how), subscribe(t, rdb, c, how)
			set(t, rdb, "q", strconv.FormatInt(fA, 10), "c", strconv.FormatInt(fA, 10))
			expire(t, rdb)
			r := acquire(t, rdb, tokC+"x", "x", "", 1000, "", how)
			if want := []any{"held", "b", "<int>", int64(4000), "<int>", int64(-1)}; !reflect.DeepEqual(shape(r, 2, 4), want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			fB, now := r[2].(int64), r[4].(int64)
			if fB <= fA {
				t.Errorf("got fence %d after %d, want it higher", fB, fA)
			}
			checkClockFence(t, fB, now)
			if got := told(t, subB, b, fB); got != now {
				t.Errorf("the message says now_ms %d, the reply %d", got, now)
			}
			toldHead(t, subC, c, b.ttl)
			quiet(t, rdb, subC, c, how)
			// The waiter's own TTL, holder, metadata; A's h, m, q and c are gone.
			checkGrant(t, rdb, granted(b.token, fB, now, 4000, "b", "", "w", "1"))
			if got := list(t, rdb); !reflect.DeepEqual(got, []string{c.entry()}) {
				t.Errorf("got queue %q, want c's entry", got)
			}
		})
	}

	t.Run("dead heads are dropped", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		d1, d2, b, c := newWaiter("d1", 1000, "", ""), newWaiter("d2", 1000, "", ""), newWaiter("b", 4000, "", "mb"), newWaiter("c", 4000, "", "")
		join(t, rdb, d1, 0)
		rdb.RPush(ctx, queue, "not an entry") // malformed: dropped too
		join(t, rdb, d2, 2)
		join(t, rdb, b, 3)
		join(t, rdb, c, 4)
		subB, subC := subscribe(t, rdb, b, "p"), subscribe(t, rdb, c, "p")
		expire(t, rdb)
		r := acquire(t, rdb, tokC, "", "", 1000)
		if want := []any{"held", "", "<int>", int64(4000), "<int>", int64(-1)}; !reflect.DeepEqual(shape(r, 2, 4), want) {
			t.Fatalf("got %v, want %v", r, want)
		}
		told(t, subB, b, r[2].(int64))
		toldHead(t, subC, c, b.ttl)
		quiet(t, rdb, subC, c, "p")
		checkGrant(t, rdb, granted(b.token, r[2].(int64), r[4].(int64), 4000, "", "mb", "w", "1"))
		if got := list(t, rdb); !reflect.DeepEqual(got, []string{c.entry()}) {
			t.Errorf("got queue %q, want c's entry alone", got)
		}
	})

	t.Run("the caller is the head", func(t *testing.T) {
		fresh(t, rdb)
		fA, _ := grant(t, rdb, tokA, "a", "", 5000)
		b, c := newWaiter("b", 4000, "b", "mb"), newWaiter("c", 4000, "", "")
		join(t, rdb, b, 0)
		join(t, rdb, c, 1)
		subB := subscribe(t, rdb, b, "p")
		expire(t, rdb)
		r := acquire(t, rdb, b.token, b.holder, b.meta, b.ttl, b.entry(), "p", 120000, "1")
		if want := []any{"granted", "<int>", "<int>", int64(0)}; !reflect.DeepEqual(shape(r, 1, 2), want) {
			t.Fatalf("got %v, want %v", r, want)
		}
		if r[1].(int64) <= fA {
			t.Errorf("got fence %d after %d, want it higher", r[1], fA)
		}
		told(t, subB, b, r[1].(int64))
		checkGrant(t, rdb, granted(b.token, r[1].(int64), r[2].(int64), 4000, "b", "mb", "w", "1"))
		if got := list(t, rdb); !reflect.DeepEqual(got, []string{c.entry()}) {
			t.Errorf("got queue %q, want c's entry", got)
		}
	})

	t.Run("the caller behind a dead head", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		d, b := newWaiter("d", 1000, "", ""), newWaiter("b", 4000, "", "")
		join(t, rdb, d, 0)
		join(t, rdb, b, 1)
		subscribe(t, rdb, b, "p")
		expire(t, rdb)
		r := acquire(t, rdb, b.token, "", "", b.ttl, b.entry(), "p", 120000, "1")
		if r[0] != "granted" || r[3] != int64(0) {
			t.Fatalf("got %v, want granted", r)
		}
		checkGrant(t, rdb, granted(b.token, r[1].(int64), r[2].(int64), 4000, "", "", "w", "1"))
		if n := rdb.Exists(ctx, queue).Val(); n != 0 {
			t.Errorf("got queue %q, want it empty", list(t, rdb))
		}
	})

	t.Run("a waiting caller queues behind the new holder", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		b, c := newWaiter("b", 4000, "b", ""), newWaiter("c", 4000, "", "")
		join(t, rdb, b, 0)
		subB := subscribe(t, rdb, b, "p")
		expire(t, rdb)
		r := acquire(t, rdb, c.token, c.holder, c.meta, c.ttl, c.entry(), "p", 30000, "0")
		if want := []any{"held", "b", "<int>", int64(4000), "<int>", int64(0)}; !reflect.DeepEqual(shape(r, 2, 4), want) {
			t.Fatalf("got %v, want %v", r, want)
		}
		told(t, subB, b, r[2].(int64))
		checkGrant(t, rdb, granted(b.token, r[2].(int64), r[4].(int64), 4000, "b", "", "w", "1"))
		if got := list(t, rdb); !reflect.DeepEqual(got, []string{c.entry()}) {
			t.Errorf("got queue %q, want c's entry", got)
		}
		if pttl := rdb.PTTL(ctx, queue).Val(); pttl <= 29*time.Second || pttl > 30*time.Second {
			t.Errorf("got the queue's PTTL %v, want about 30s", pttl)
		}
	})

	t.Run("a queued caller keeps its place behind the new holder", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		b, c := newWaiter("b", 4000, "b", ""), newWaiter("c", 4000, "", "")
		join(t, rdb, b, 0)
		join(t, rdb, c, 1)
		subB := subscribe(t, rdb, b, "p")
		subscribe(t, rdb, c, "p")
		expire(t, rdb)
		r := acquire(t, rdb, c.token, c.holder, c.meta, c.ttl, c.entry(), "p", 1000, "1")
		if want := []any{"held", "b", "<int>", int64(4000), "<int>", int64(0)}; !reflect.DeepEqual(shape(r, 2, 4), want) {
			t.Fatalf("got %v, want %v", r, want)
		}
		told(t, subB, b, r[2].(int64))
		checkGrant(t, rdb, granted(b.token, r[2].(int64), r[4].(int64), 4000, "b", "", "w", "1"))
		if got := list(t, rdb); !reflect.DeepEqual(got, []string{c.entry()}) {
			t.Errorf("got queue %q, want c's entry once", got)
		}
	})

	t.Run("all dead: the caller gets it and w goes", func(t *testing.T) {
		fresh(t, rdb)
		fA, _ := grant(t, rdb, tokA, "a", "ma", 5000)
		join(t, rdb, newWaiter("d1", 1000, "", ""), 0)
		join(t, rdb, newWaiter("d2", 1000, "", ""), 1)
		expire(t, rdb)
		f, now := grant(t, rdb, tokC, "", "", 2000)
		if f <= fA {
			t.Errorf("got fence %d after %d, want it higher", f, fA)
		}
		checkGrant(t, rdb, granted(tokC, f, now, 2000, "", ""))
		if n := rdb.Exists(ctx, queue).Val(); n != 0 {
			t.Errorf("got queue %q, want it gone", list(t, rdb))
		}
	})

	t.Run("w without a queue goes", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		set(t, rdb, "w", "1")
		expire(t, rdb)
		f, now := grant(t, rdb, tokC, "c", "", 2000)
		checkGrant(t, rdb, granted(tokC, f, now, 2000, "c", ""))
	})

	t.Run("a released name with w", func(t *testing.T) {
		// The hash holds only f and w (the grant ended, the queue may hold waiters).
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		b := newWaiter("b", 4000, "", "")
		join(t, rdb, b, 0)
		rdb.HDel(ctx, key, "t", "e", "l", "h")
		subB := subscribe(t, rdb, b, "p")
		r := acquire(t, rdb, tokC, "", "", 1000)
		if want := []any{"held", "", "<int>", int64(4000), "<int>", int64(-1)}; !reflect.DeepEqual(shape(r, 2, 4), want) {
			t.Fatalf("got %v, want %v", r, want)
		}
		told(t, subB, b, r[2].(int64))
		checkGrant(t, rdb, granted(b.token, r[2].(int64), r[4].(int64), 4000, "", "", "w", "1"))
	})
}

// TestRealExpiry lets a grant run out on Redis's clock.
func TestRealExpiry(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	fA, _ := grant(t, rdb, tokA, "a", "", 50)
	b := newWaiter("b", 4000, "", "")
	join(t, rdb, b, 0)
	subB := subscribe(t, rdb, b, "p")
	time.Sleep(100 * time.Millisecond)
	before := snapshot(t, rdb)
	for _, tt := range []struct {
		name string
		got  []any
		want []any
	}{
		{"inspect", inspect(t, rdb, tokA), []any{"not_found"}},
		{"renew", renew(t, rdb, tokA, 1000), []any{"not_found"}},
		{"raise", raise(t, rdb, tokA, fA+5), []any{"not_holder"}},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s of an expired lease: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	unchanged(t, rdb, "reads of an expired lease", before)
	if r := release(t, rdb, tokA, "p"); !reflect.DeepEqual(r, []any{"not_found"}) {
		t.Fatalf("release of an expired lease: got %v, want not_found", r)
	}
	fB := hash(t, rdb)["f"]
	f, _ := strconv.ParseInt(fB, 10, 64)
	now := told(t, subB, b, f)
	checkGrant(t, rdb, granted(b.token, f, now, 4000, "", "", "w", "1"))
}

// The next fence is max(last + 1, c + 1, Redis TIME in µs), whatever ended
// the last grant; without the key (the retention passed) it is the clock.
func TestAcquireFence(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ahead := redisNow(t, rdb) + int64(1000*time.Hour/time.Microsecond)
	for _, tt := range []struct {
		name  string
		end   func(t *testing.T) // ends the grant of tokA
		last  int64              // the f to set after the end (0: as it is)
		floor int64              // the c to set (0: none)
		want  int64              // the fence (0: the clock's)
	}{
		{"released", func(t *testing.T) { release(t, rdb, tokA, "p") }, 0, 0, 0},
		{"released, last ahead", func(t *testing.T) { release(t, rdb, tokA, "p") }, ahead, 0, ahead + 1},
		{"expired", func(t *testing.T) { expire(t, rdb) }, 0, 0, 0},
		{"expired, last ahead", func(t *testing.T) { expire(t, rdb) }, ahead, 0, ahead + 1},
		{"released, floor ahead", func(t *testing.T) { release(t, rdb, tokA, "p") }, 0, ahead + 7, ahead + 8},
		{"released, floor last + 1", func(t *testing.T) { release(t, rdb, tokA, "p") }, ahead, ahead + 1, ahead + 2},
		{"released, last ahead of the floor", func(t *testing.T) { release(t, rdb, tokA, "p") }, ahead + 9, ahead, ahead + 10},
		{"expired, floor behind", func(t *testing.T) { expire(t, rdb) }, 0, 1000, 0},
		{"released, last 2^53-2", func(t *testing.T) { release(t, rdb, tokA, "p") }, maxFence - 1, 0, maxFence},
		{"released, floor 2^53-2", func(t *testing.T) { release(t, rdb, tokA, "p") }, 0, maxFence - 1, maxFence},
		{"key gone", func(t *testing.T) { rdb.Del(ctx, key) }, 0, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fresh(t, rdb)
			f0, _ := grant(t, rdb, tokA, "a", "m", 5000)
			tt.end(t)
			if tt.last != 0 {
				set(t, rdb, "f", strconv.FormatInt(tt.last, 10))
			}
			if tt.floor != 0 {
				set(t, rdb, "c", strconv.FormatInt(tt.floor, 10))
			}
			f, now := grant(t, rdb, tokB, "", "", 1000)
			if tt.want == 0 {
				checkClockFence(t, f, now)
				if f <= f0 {
					t.Errorf("got fence %d after %d, want it higher", f, f0)
				}
			} else if f != tt.want {
				t.Errorf("got fence %d, want %d", f, tt.want)
			}
			// Stored as exact digits; c is gone (f now exceeds it); g
			// keeps the grant's start when the fence is not the clock.
			var extra []string
			if tt.want != 0 {
				extra = startedAt(now)
			}
			checkGrant(t, rdb, granted(tokB, f, now, 1000, "", "", extra...))
		})
	}

	t.Run("after the retention", func(t *testing.T) {
		fresh(t, rdb)
		r := run(t, rdb, lua.Acquire, []string{key, queue, hist}, tokA, "", "", 20, 30)
		f0 := r[1].(int64)
		if at := expiresAt(t, rdb, key); at != r[2].(int64)+50 {
			t.Errorf("got the key's expiry %d, want e + retention = %d", at, r[2].(int64)+50)
		}
		time.Sleep(100 * time.Millisecond)
		if n := rdb.Exists(ctx, key).Val(); n != 0 {
			t.Fatal("the key outlived the retention")
		}
		f, now := grant(t, rdb, tokB, "", "", 1000)
		checkClockFence(t, f, now)
		if f <= f0 {
			t.Errorf("got fence %d after %d, want it higher", f, f0)
		}
	})
}

// A fence field (f or c) that is not a fence below 2^53-1 makes every
// script that would grant answer an error and change nothing.
func TestCorruptFence(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	type branch struct {
		name string
		// setup makes the state; the script must then refuse. It returns
		// the waiter whose client would be handed the lease, if any.
		setup func(t *testing.T) (waiter, bool)
		call  func() error
		// gone is the entry the call takes out of the queue even so (leave).
		gone string
	}
	var leaving waiter
	script := func(src string, args ...any) func() error {
		return func() error {
			return redis.NewScript(src).Run(ctx, rdb, []string{key, queue, hist}, args...).Err()
		}
	}
	branches := []branch{
		{name: "acquire a released name", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			release(t, rdb, tokA, "p")
			return waiter{}, false
		}, call: script(lua.Acquire, tokB, "", "", 1000, ret)},
		{name: "acquire an expired lease", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			expire(t, rdb)
			return waiter{}, false
		}, call: script(lua.Acquire, tokB, "", "", 1000, ret)},
		{name: "acquire hands over", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			b := newWaiter("b", 4000, "", "")
			join(t, rdb, b, 0)
			expire(t, rdb)
			return b, true
		}, call: script(lua.Acquire, tokC, "", "", 1000, ret)},
		{name: "release hands over", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			b := newWaiter("b", 4000, "", "")
			join(t, rdb, b, 0)
			return b, true
		}, call: script(lua.Release, tokA, ret, "p")},
		{name: "release of an expired lease hands over", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			b := newWaiter("b", 4000, "", "")
			join(t, rdb, b, 0)
			expire(t, rdb)
			return b, true
		}, call: script(lua.Release, tokA, ret, "p")},
		{name: "leave of a handed lease hands over", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			leaving = newWaiter("l", 4000, "", "")
			join(t, rdb, leaving, 0)
			c := newWaiter("c", 4000, "", "")
			join(t, rdb, c, 1)
			subscribe(t, rdb, leaving, "p")
			if r := release(t, rdb, tokA, "p"); r[0] != "handed" {
				t.Fatalf("release: got %v, want handed", r)
			}
			return c, true
		}, call: func() error { return script(lua.Leave, leaving.token, leaving.entry(), ret, "p")() }},
		{name: "leave of a queued waiter hands over", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			leaving = newWaiter("l", 4000, "", "")
			join(t, rdb, leaving, 0)
			c := newWaiter("c", 4000, "", "")
			join(t, rdb, c, 1)
			expire(t, rdb)
			return c, true
		}, call: func() error { return script(lua.Leave, leaving.token, leaving.entry(), ret, "p")() }},
		// With a history kept, an expiry found is recorded first: not
		// when the fence is corrupt.
		{name: "acquire an expired lease, with history", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			expire(t, rdb)
			return waiter{}, false
		}, call: script(lua.Acquire, tokB, "", "", 1000, ret, "", "p", 20)},
		{name: "release of an expired lease, with history", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			expire(t, rdb)
			return waiter{}, false
		}, call: script(lua.Release, tokA, ret, "p", 20)},
		{name: "leave after an expiry, with history", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			leaving = newWaiter("l", 4000, "", "")
			join(t, rdb, leaving, 0)
			expire(t, rdb)
			return waiter{}, false
		}, call: func() error { return script(lua.Leave, leaving.token, leaving.entry(), ret, "p", 20)() }},
		{name: "break of an expired lease, with history", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			expire(t, rdb)
			return waiter{}, false
		}, call: script(lua.Break, "", "why", "op", ret, "p", 20)},
		{name: "break hands over", setup: func(t *testing.T) (waiter, bool) {
			grant(t, rdb, tokA, "a", "", 5000)
			b := newWaiter("b", 4000, "", "")
			join(t, rdb, b, 0)
			return b, true
		}, call: script(lua.Break, "", "why", "op", ret, "p", 20)},
	}
	for _, field := range []string{"f", "c"} {
		for _, v := range []string{
			strconv.Itoa(maxFence), strconv.Itoa(1 << 53), "99999999999999999", "9223372036854775808",
			"00000000000000005", "-5", "12abc", "abc", "1e300", "1.5", " 12", "", "0x10",
		} {
			for _, b := range branches {
				t.Run(fmt.Sprintf("%s=%q/%s", field, v, b.name), func(t *testing.T) {
					fresh(t, rdb)
					w, listens := b.setup(t)
					var sub *redis.PubSub
					if listens {
						sub = subscribe(t, rdb, w, "p")
					}
					set(t, rdb, field, v)
					before := snapshot(t, rdb)
					err := b.call()
					if err == nil || !strings.Contains(err.Error(), "not a fence below 2^53-1") || !strings.Contains(err.Error(), "nothing was changed") {
						t.Fatalf("got %v, want an error reply about the fence", err)
					}
					if strings.HasPrefix(b.name, "leave of a queued") || strings.HasPrefix(b.name, "leave after an expiry") {
						// The leaving waiter's entry is gone even so.
						before.Queue = slices.DeleteFunc(before.Queue, func(e string) bool { return e == leaving.entry() })
						if len(before.Queue) == 0 {
							before.QueueAt = -2
						}
					}
					unchanged(t, rdb, "a refused call", before)
					if listens {
						quiet(t, rdb, sub, w, "p")
					}
				})
			}
		}
	}
}

func TestRelease(t *testing.T) {
	rdb := redistest.Start(t).Client(t)

	t.Run("not_found", func(t *testing.T) {
		fresh(t, rdb)
		if r := release(t, rdb, tokA, "p"); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("absent: got %v, want not_found", r)
		}
		if n := rdb.Exists(ctx, key, queue).Val(); n != 0 {
			t.Error("a release of nothing made a key")
		}
		grant(t, rdb, tokA, "a", "", 5000)
		expire(t, rdb)
		for _, tok := range []string{tokA, tokB} {
			before := snapshot(t, rdb)
			if r := release(t, rdb, tok, "p"); !reflect.DeepEqual(r, []any{"not_found"}) {
				t.Errorf("expired, token %s: got %v, want not_found", tok, r)
			}
			unchanged(t, rdb, "a release of an expired lease", before)
		}
		release(t, rdb, tokA, "p") // still expired: not_found
		rdb.HDel(ctx, key, "t", "e", "l", "h")
		before := snapshot(t, rdb)
		if r := release(t, rdb, tokA, "p"); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("released (only f): got %v, want not_found", r)
		}
		unchanged(t, rdb, "a release of a released name", before)
	})

	t.Run("not_holder", func(t *testing.T) {
		for _, holder := range []string{"a", ""} {
			fresh(t, rdb)
			f, _ := grant(t, rdb, tokA, holder, "m", 5000)
			b := newWaiter("b", 4000, "", "")
			join(t, rdb, b, 0)
			subB := subscribe(t, rdb, b, "p")
			before := snapshot(t, rdb)
			r := release(t, rdb, tokB, "p")
			if want := []any{"not_holder", holder, f, "<int>", "<int>"}; !reflect.DeepEqual(shape(r, 3, 4), want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			e, _ := strconv.ParseInt(before.Hash["e"], 10, 64)
			if r[3].(int64) != e-r[4].(int64) {
				t.Errorf("got remaining TTL %d at now %d, want e - now = %d", r[3], r[4], e-r[4].(int64))
			}
			unchanged(t, rdb, "a release by another token", before)
			quiet(t, rdb, subB, b, "p")
		}
	})

	t.Run("released", func(t *testing.T) {
		for _, tt := range []struct {
			name  string
			extra []any
			keep  []string
		}{
			{"plain", nil, nil},
			{"q goes, c stays", []any{"q", "5", "c", "6"}, []string{"c", "6"}},
			{"w without a queue goes", []any{"w", "1"}, nil},
		} {
			t.Run(tt.name, func(t *testing.T) {
				fresh(t, rdb)
				f, _ := grant(t, rdb, tokA, "a", "m", 5000)
				if tt.extra != nil {
					set(t, rdb, tt.extra...)
				}
				lo := redisNow(t, rdb)
				if r := release(t, rdb, tokA, "p"); !reflect.DeepEqual(r, []any{"released"}) {
					t.Fatalf("got %v, want released", r)
				}
				checkReleased(t, rdb, f, lo, redisNow(t, rdb), tt.keep...)
			})
		}
	})

	t.Run("all dead: released", func(t *testing.T) {
		fresh(t, rdb)
		f, _ := grant(t, rdb, tokA, "a", "m", 5000)
		join(t, rdb, newWaiter("d1", 1000, "", ""), 0)
		join(t, rdb, newWaiter("d2", 1000, "", ""), 1)
		lo := redisNow(t, rdb)
		if r := release(t, rdb, tokA, "p"); !reflect.DeepEqual(r, []any{"released"}) {
			t.Fatalf("got %v, want released", r)
		}
		checkReleased(t, rdb, f, lo, redisNow(t, rdb))
	})

	for _, how := range []string{"p", "s"} {
		t.Run("handed/"+how, func(t *testing.T) {
			for _, tt := range []struct {
				relHolder, relMeta, holder, meta string
			}{
				{"a", "ma", "w", "mw"},
				{"a", "ma", "", ""},
				{"a", "ma", "w", ""},
				{"a", "ma", "", "mw"},
				{"", "", "w", "mw"},
			} {
				fresh(t, rdb)
				fA, _ := grant(t, rdb, tokA, tt.relHolder, tt.relMeta, 5000)
				set(t, rdb, "q", strconv.FormatInt(fA, 10), "c", strconv.FormatInt(fA-1, 10))
				d, b, c := newWaiter("d", 1000, "", ""), newWaiter("b", 7000, tt.holder, tt.meta), newWaiter("c", 1000, "", "")
				join(t, rdb, d, 0)
				join(t, rdb, b, 1)
				join(t, rdb, c, 2)
				subB, subC := subscribe(t, rdb, b, how), subscribe(t, rdb, c, how)
				r := release(t, rdb, tokA, how)
				if want := []any{"handed", "<int>", "<int>", b.wid, b.client}; !reflect.DeepEqual(shape(r, 1, 2), want) {
					t.Fatalf("got %v, want %v", r, want)
				}
				f, now := r[1].(int64), r[2].(int64)
				if f <= fA {
					t.Errorf("got fence %d after %d, want it higher", f, fA)
				}
				checkClockFence(t, f, now)
				if got := told(t, subB, b, f); got != now {
					t.Errorf("the message says now_ms %d, the reply %d", got, now)
				}
				toldHead(t, subC, c, b.ttl)
				quiet(t, rdb, subC, c, how)
				checkGrant(t, rdb, granted(b.token, f, now, 7000, tt.holder, tt.meta, "w", "1"))
				if got := list(t, rdb); !reflect.DeepEqual(got, []string{c.entry()}) {
					t.Errorf("got queue %q, want c's entry", got)
				}
			}
		})
	}

	t.Run("handed, last fence ahead", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		b := newWaiter("b", 7000, "", "")
		join(t, rdb, b, 0)
		subscribe(t, rdb, b, "p")
		ahead := redisNow(t, rdb) + int64(time.Hour/time.Microsecond)
		set(t, rdb, "f", strconv.FormatInt(ahead, 10))
		if r := release(t, rdb, tokA, "p"); r[0] != "handed" || r[1] != ahead+1 {
			t.Errorf("got %v, want handed with fence %d", r, ahead+1)
		}
	})

	t.Run("expired with a queue: not_found, handed to the head", func(t *testing.T) {
		for _, tok := range []string{tokA, tokB} {
			fresh(t, rdb)
			fA, _ := grant(t, rdb, tokA, "a", "ma", 5000)
			b := newWaiter("b", 7000, "b", "")
			join(t, rdb, b, 0)
			subB := subscribe(t, rdb, b, "p")
			expire(t, rdb)
			if r := release(t, rdb, tok, "p"); !reflect.DeepEqual(r, []any{"not_found"}) {
				t.Fatalf("got %v, want not_found", r)
			}
			h := hash(t, rdb)
			f, _ := strconv.ParseInt(h["f"], 10, 64)
			if f <= fA {
				t.Errorf("got fence %d after %d, want it higher", f, fA)
			}
			now := told(t, subB, b, f)
			checkClockFence(t, f, now)
			checkGrant(t, rdb, granted(b.token, f, now, 7000, "b", "", "w", "1"))
		}
	})

	t.Run("expired with a dead queue: not_found, w goes", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		join(t, rdb, newWaiter("d", 1000, "", ""), 0)
		expire(t, rdb)
		before := snapshot(t, rdb)
		if r := release(t, rdb, tokA, "p"); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Fatalf("got %v, want not_found", r)
		}
		delete(before.Hash, "w")
		before.Queue, before.QueueAt = []string{}, -2
		unchanged(t, rdb, "a release of an expired lease with dead waiters", before)
	})

	t.Run("at most 1000 dead entries a call", func(t *testing.T) {
		fresh(t, rdb)
		f, _ := grant(t, rdb, tokA, "a", "", 5000)
		var dead []waiter
		for i := range 1006 {
			dead = append(dead, newWaiter("d", 1000, "", ""))
			join(t, rdb, dead[i], int64(i))
		}
		if r := release(t, rdb, tokA, "p"); !reflect.DeepEqual(r, []any{"released"}) {
			t.Fatalf("got %v, want released", r)
		}
		var rest []string
		for _, w := range dead[1000:] {
			rest = append(rest, w.entry())
		}
		if got := list(t, rdb); !reflect.DeepEqual(got, rest) {
			t.Errorf("got %d entries left, want the last 6", len(got))
		}
		if h, want := hash(t, rdb), map[string]string{"f": strconv.FormatInt(f, 10), "w": "1"}; !reflect.DeepEqual(h, want) {
			t.Errorf("got hash %v, want %v (w: the rest may still wait)", h, want)
		}
		// The next call drops the rest.
		b := newWaiter("b", 1000, "", "")
		subscribe(t, rdb, b, "p")
		grant(t, rdb, tokB, "", "", 1000)
		join(t, rdb, b, 0)
		release(t, rdb, tokB, "p")
		if r := release(t, rdb, b.token, "p"); !reflect.DeepEqual(r, []any{"released"}) {
			t.Errorf("got %v, want released", r)
		}
		if n := rdb.Exists(ctx, queue).Val(); n != 0 || hash(t, rdb)["w"] != "" {
			t.Errorf("got queue %d entries and hash %v, want both empty of waiters", len(list(t, rdb)), hash(t, rdb))
		}
	})
}

func TestRenew(t *testing.T) {
	rdb := redistest.Start(t).Client(t)

	t.Run("not_found", func(t *testing.T) {
		fresh(t, rdb)
		if r := renew(t, rdb, tokA, 1000); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("absent: got %v, want not_found", r)
		}
		if n := rdb.Exists(ctx, key).Val(); n != 0 {
			t.Error("a renew of nothing made the key")
		}
		grant(t, rdb, tokA, "a", "", 5000)
		expire(t, rdb)
		for _, tok := range []string{tokA, tokB} {
			before := snapshot(t, rdb)
			if r := renew(t, rdb, tok, 0); !reflect.DeepEqual(r, []any{"not_found"}) {
				t.Errorf("expired, token %s: got %v, want not_found", tok, r)
			}
			unchanged(t, rdb, "a renew of an expired lease", before)
		}
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		release(t, rdb, tokA, "p")
		before := snapshot(t, rdb)
		if r := renew(t, rdb, tokA, 1000); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("released: got %v, want not_found", r)
		}
		unchanged(t, rdb, "a renew of a released name", before)
	})

	t.Run("not_holder", func(t *testing.T) {
		for _, holder := range []string{"a", ""} {
			fresh(t, rdb)
			f, _ := grant(t, rdb, tokA, holder, "m", 5000)
			before := snapshot(t, rdb)
			r := renew(t, rdb, tokB, 60000)
			if want := []any{"not_holder", holder, f, "<int>", "<int>"}; !reflect.DeepEqual(shape(r, 3, 4), want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			e, _ := strconv.ParseInt(before.Hash["e"], 10, 64)
			if r[3].(int64) != e-r[4].(int64) {
				t.Errorf("got remaining TTL %d at now %d, want e - now = %d", r[3], r[4], e-r[4].(int64))
			}
			unchanged(t, rdb, "a renew by another token", before)
		}
	})

	t.Run("renewed", func(t *testing.T) {
		for _, tt := range []struct{ holder, meta string }{{"a", "m"}, {"", ""}} {
			fresh(t, rdb)
			f, _ := grant(t, rdb, tokA, tt.holder, tt.meta, 5000)
			b := newWaiter("b", 1000, "", "")
			join(t, rdb, b, 0)
			set(t, rdb, "q", "5", "c", "6")
			q, qAt := list(t, rdb), expiresAt(t, rdb, queue)
			extra := []string{"q", "5", "c", "6", "w", "1"}

			r := renew(t, rdb, tokA, 7000)
			if want := []any{"renewed", f, int64(7000), "<int>", tt.holder, tt.meta}; !reflect.DeepEqual(shape(r, 3), want) {
				t.Fatalf("with a TTL: got %v, want %v", r, want)
			}
			checkGrant(t, rdb, granted(tokA, f, r[3].(int64), 7000, tt.holder, tt.meta, extra...))

			r = renew(t, rdb, tokA, 0)
			if want := []any{"renewed", f, int64(7000), "<int>", tt.holder, tt.meta}; !reflect.DeepEqual(shape(r, 3), want) {
				t.Fatalf("with 0: got %v, want %v", r, want)
			}
			checkGrant(t, rdb, granted(tokA, f, r[3].(int64), 7000, tt.holder, tt.meta, extra...))

			r = renew(t, rdb, tokA, 100)
			if want := []any{"renewed", f, int64(100), "<int>", tt.holder, tt.meta}; !reflect.DeepEqual(shape(r, 3), want) {
				t.Fatalf("shorter: got %v, want %v", r, want)
			}
			checkGrant(t, rdb, granted(tokA, f, r[3].(int64), 100, tt.holder, tt.meta, extra...))
			if got := list(t, rdb); !reflect.DeepEqual(got, q) || expiresAt(t, rdb, queue) != qAt {
				t.Errorf("a renew changed the queue: %q", got)
			}
		}
	})
}

func TestLeave(t *testing.T) {
	rdb := redistest.Start(t).Client(t)

	t.Run("left", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		b, c := newWaiter("b", 1000, "", ""), newWaiter("c", 1000, "", "")
		join(t, rdb, b, 0)
		join(t, rdb, c, 1)
		before := snapshot(t, rdb)
		if r := leave(t, rdb, b, "p"); !reflect.DeepEqual(r, []any{"left", int64(1)}) {
			t.Fatalf("queued: got %v, want left 1", r)
		}
		before.Queue = []string{c.entry()}
		unchanged(t, rdb, "a leave", before)
		if r := leave(t, rdb, b, "p"); !reflect.DeepEqual(r, []any{"left", int64(0)}) {
			t.Fatalf("again: got %v, want left 0", r)
		}
		unchanged(t, rdb, "a second leave", before)
	})

	t.Run("the head leaves: the next is told it is the head", func(t *testing.T) {
		for _, how := range []string{"p", "s"} {
			fresh(t, rdb)
			grant(t, rdb, tokA, "a", "", 5000)
			b, c, d := newWaiter("b", 1000, "", ""), newWaiter("c", 1000, "", ""), newWaiter("d", 1000, "", "")
			join(t, rdb, b, 0)
			join(t, rdb, c, 1)
			join(t, rdb, d, 2)
			subC, subD := subscribe(t, rdb, c, how), subscribe(t, rdb, d, how)
			before := snapshot(t, rdb)
			// d, not the head, leaves: nobody is told anything.
			if r := leave(t, rdb, d, how); !reflect.DeepEqual(r, []any{"left", int64(1)}) {
				t.Fatalf("%s: d: got %v, want left 1", how, r)
			}
			quiet(t, rdb, subC, c, how)
			if r := leave(t, rdb, b, how); !reflect.DeepEqual(r, []any{"left", int64(1)}) {
				t.Fatalf("%s: b: got %v, want left 1", how, r)
			}
			tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			msg, err := subC.ReceiveMessage(tctx)
			cancel()
			var ttl int
			if err != nil || msg.Channel != c.channel() {
				t.Fatalf("%s: got %v (%v), want %q on %s", how, msg, err, c.wid+" h TTL", c.channel())
			}
			if n, _ := fmt.Sscanf(msg.Payload, c.wid+" h %d", &ttl); n != 1 || ttl <= 0 || ttl > 5000 {
				t.Errorf("%s: got %q, want %q with the holder's remaining TTL (0, 5000]", how, msg.Payload, c.wid+" h TTL")
			}
			quiet(t, rdb, subC, c, how)
			quiet(t, rdb, subD, d, how)
			before.Queue = []string{c.entry()}
			unchanged(t, rdb, "the leaves", before)
		}
	})

	t.Run("nothing there", func(t *testing.T) {
		fresh(t, rdb)
		b := newWaiter("b", 1000, "", "")
		if r := leave(t, rdb, b, "p"); !reflect.DeepEqual(r, []any{"left", int64(0)}) {
			t.Fatalf("got %v, want left 0", r)
		}
		rdb.RPush(ctx, queue, b.entry())
		if r := leave(t, rdb, b, "p"); !reflect.DeepEqual(r, []any{"left", int64(1)}) {
			t.Fatalf("queued without a hash: got %v, want left 1", r)
		}
		if n := rdb.Exists(ctx, key, queue).Val(); n != 0 {
			t.Error("a key is left")
		}
	})

	t.Run("expired, no queue", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		expire(t, rdb)
		before := snapshot(t, rdb)
		b := newWaiter("b", 1000, "", "")
		if r := leave(t, rdb, b, "p"); !reflect.DeepEqual(r, []any{"left", int64(0)}) {
			t.Fatalf("got %v, want left 0", r)
		}
		unchanged(t, rdb, "a leave", before)
	})

	t.Run("handed, then left: released", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		b := newWaiter("b", 4000, "b", "mb")
		join(t, rdb, b, 0)
		subscribe(t, rdb, b, "p")
		r := release(t, rdb, tokA, "p")
		if r[0] != "handed" {
			t.Fatalf("release: got %v, want handed", r)
		}
		lo := redisNow(t, rdb)
		if r := leave(t, rdb, b, "p"); !reflect.DeepEqual(r, []any{"released"}) {
			t.Fatalf("got %v, want released", r)
		}
		checkReleased(t, rdb, r[1].(int64), lo, redisNow(t, rdb))
	})

	t.Run("granted without a queue, then left: released", func(t *testing.T) {
		fresh(t, rdb)
		f, _ := grant(t, rdb, tokA, "a", "m", 5000)
		lo := redisNow(t, rdb)
		a := waiter{wid: "wa", client: "ca", ttl: 5000, token: tokA, holder: "a", meta: "m"}
		if r := leave(t, rdb, a, "p"); !reflect.DeepEqual(r, []any{"released"}) {
			t.Fatalf("got %v, want released", r)
		}
		checkReleased(t, rdb, f, lo, redisNow(t, rdb))
	})

	for _, how := range []string{"p", "s"} {
		t.Run("handed, then left: handed to the next/"+how, func(t *testing.T) {
			fresh(t, rdb)
			grant(t, rdb, tokA, "a", "", 5000)
			b, d, c, e := newWaiter("b", 4000, "b", "mb"), newWaiter("d", 1000, "", ""), newWaiter("c", 3000, "c", ""), newWaiter("e", 1000, "", "")
			join(t, rdb, b, 0)
			join(t, rdb, d, 1)
			join(t, rdb, c, 2)
			join(t, rdb, e, 3)
			subscribe(t, rdb, b, how)
			subC, subE := subscribe(t, rdb, c, how), subscribe(t, rdb, e, how)
			r := release(t, rdb, tokA, how)
			if r[0] != "handed" || r[3] != b.wid {
				t.Fatalf("release: got %v, want handed to %s", r, b.wid)
			}
			fB := r[1].(int64)
			r = leave(t, rdb, b, how)
			if want := []any{"handed", "<int>", "<int>", c.wid, c.client}; !reflect.DeepEqual(shape(r, 1, 2), want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			f, now := r[1].(int64), r[2].(int64)
			if f <= fB {
				t.Errorf("got fence %d after %d, want it higher", f, fB)
			}
			checkClockFence(t, f, now)
			if got := told(t, subC, c, f); got != now {
				t.Errorf("the message says now_ms %d, the reply %d", got, now)
			}
			toldHead(t, subE, e, c.ttl)
			quiet(t, rdb, subE, e, how)
			checkGrant(t, rdb, granted(c.token, f, now, 3000, "c", "", "w", "1"))
			if got := list(t, rdb); !reflect.DeepEqual(got, []string{e.entry()}) {
				t.Errorf("got queue %q, want e's entry", got)
			}
		})
	}

	t.Run("handed, then left, the rest dead: released", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		b := newWaiter("b", 4000, "", "")
		join(t, rdb, b, 0)
		join(t, rdb, newWaiter("d", 1000, "", ""), 1)
		subscribe(t, rdb, b, "p")
		r := release(t, rdb, tokA, "p")
		lo := redisNow(t, rdb)
		if r := leave(t, rdb, b, "p"); !reflect.DeepEqual(r, []any{"released"}) {
			t.Fatalf("got %v, want released", r)
		}
		checkReleased(t, rdb, r[1].(int64), lo, redisNow(t, rdb))
	})

	t.Run("someone else's live lease: left", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		b, c := newWaiter("b", 4000, "", ""), newWaiter("c", 4000, "", "")
		join(t, rdb, b, 0)
		join(t, rdb, c, 1)
		subB := subscribe(t, rdb, b, "p")
		before := snapshot(t, rdb)
		if r := leave(t, rdb, c, "p"); !reflect.DeepEqual(r, []any{"left", int64(1)}) {
			t.Fatalf("got %v, want left 1", r)
		}
		before.Queue = []string{b.entry()}
		unchanged(t, rdb, "a leave", before)
		// Not queued any more, and the lease lives: nothing happens.
		if r := leave(t, rdb, c, "p"); !reflect.DeepEqual(r, []any{"left", int64(0)}) {
			t.Fatalf("got %v, want left 0", r)
		}
		unchanged(t, rdb, "a leave", before)
		quiet(t, rdb, subB, b, "p")
	})

	t.Run("expired with a queue: the next head gets it", func(t *testing.T) {
		fresh(t, rdb)
		fA, _ := grant(t, rdb, tokA, "a", "ma", 5000)
		b, d, c := newWaiter("b", 4000, "", ""), newWaiter("d", 1000, "", ""), newWaiter("c", 3000, "c", "")
		join(t, rdb, b, 0)
		join(t, rdb, d, 1)
		join(t, rdb, c, 2)
		subscribe(t, rdb, b, "p")
		subC := subscribe(t, rdb, c, "p")
		expire(t, rdb)
		if r := leave(t, rdb, b, "p"); !reflect.DeepEqual(r, []any{"left", int64(1)}) {
			t.Fatalf("got %v, want left 1", r)
		}
		h := hash(t, rdb)
		f, _ := strconv.ParseInt(h["f"], 10, 64)
		if f <= fA {
			t.Errorf("got fence %d after %d, want it higher", f, fA)
		}
		now := told(t, subC, c, f)
		checkGrant(t, rdb, granted(c.token, f, now, 3000, "c", "", "w", "1"))
		if n := rdb.Exists(ctx, queue).Val(); n != 0 {
			t.Errorf("got queue %q, want it empty", list(t, rdb))
		}
	})

	t.Run("expired with a dead queue: left, w goes", func(t *testing.T) {
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		b := newWaiter("b", 4000, "", "")
		join(t, rdb, b, 0)
		join(t, rdb, newWaiter("d", 1000, "", ""), 1)
		expire(t, rdb)
		before := snapshot(t, rdb)
		if r := leave(t, rdb, b, "p"); !reflect.DeepEqual(r, []any{"left", int64(1)}) {
			t.Fatalf("got %v, want left 1", r)
		}
		delete(before.Hash, "w")
		before.Queue, before.QueueAt = []string{}, -2
		unchanged(t, rdb, "a leave", before)
	})
}

func TestInspect(t *testing.T) {
	rdb := redistest.Start(t).Client(t)

	t.Run("not_found", func(t *testing.T) {
		fresh(t, rdb)
		if r := inspect(t, rdb, ""); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("absent: got %v, want not_found", r)
		}
		grant(t, rdb, tokA, "a", "", 5000)
		expire(t, rdb)
		before := snapshot(t, rdb)
		if r := inspect(t, rdb, tokA); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("expired: got %v, want not_found", r)
		}
		unchanged(t, rdb, "inspect", before)
		fresh(t, rdb)
		grant(t, rdb, tokA, "a", "", 5000)
		release(t, rdb, tokA, "p")
		if r := inspect(t, rdb, tokA); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("released (only f): got %v, want not_found", r)
		}
	})

	t.Run("held", func(t *testing.T) {
		for _, tt := range []struct{ holder, meta string }{{"a", "meta"}, {"", ""}} {
			fresh(t, rdb)
			f, _ := grant(t, rdb, tokA, tt.holder, tt.meta, 5000)
			check := func(waiting int64) {
				t.Helper()
				before := snapshot(t, rdb)
				e, _ := strconv.ParseInt(before.Hash["e"], 10, 64)
				for _, m := range []struct {
					token string
					match int64
				}{{"", 0}, {tokA, 1}, {tokB, 0}} {
					r := inspect(t, rdb, m.token)
					if want := []any{"held", tt.holder, f, "<int>", "<int>", tt.meta, m.match, waiting}; !reflect.DeepEqual(shape(r, 3, 4), want) {
						t.Errorf("token %q: got %v, want %v", m.token, r, want)
						continue
					}
					if r[3].(int64) != e-r[4].(int64) {
						t.Errorf("got remaining TTL %d at now %d, want e - now = %d", r[3], r[4], e-r[4].(int64))
					}
					if slices.Contains(r, any(tokA)) {
						t.Errorf("inspect returned the token: %v", r)
					}
				}
				unchanged(t, rdb, "inspect", before)
			}
			check(0)
			join(t, rdb, newWaiter("b", 1000, "", ""), 0)
			join(t, rdb, newWaiter("c", 1000, "", ""), 1)
			check(2)
			rdb.Del(ctx, queue) // w set, the queue expired
			check(0)
			rdb.RPush(ctx, queue, "x") // a queue, but w not set: not counted
			rdb.HDel(ctx, key, "w")
			check(0)
		}
	})
}

func TestRaise(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	// fields reads f, q and c ("" for none).
	fields := func(t *testing.T) [3]string {
		t.Helper()
		h := hash(t, rdb)
		return [3]string{h["f"], h["q"], h["c"]}
	}
	d := func(n int64) string { return strconv.FormatInt(n, 10) }

	t.Run("not_holder", func(t *testing.T) {
		fresh(t, rdb)
		if r := raise(t, rdb, tokA, 5); !reflect.DeepEqual(r, []any{"not_holder"}) {
			t.Errorf("absent: got %v, want not_holder", r)
		}
		if n := rdb.Exists(ctx, key).Val(); n != 0 {
			t.Error("a raise of nothing made the key")
		}
		for _, tt := range []struct {
			name, token string
			prep        func()
		}{
			{"another token", tokB, func() {}},
			{"expired", tokA, func() { expire(t, rdb) }},
			{"released", tokA, func() { release(t, rdb, tokA, "p") }},
		} {
			fresh(t, rdb)
			f, _ := grant(t, rdb, tokA, "a", "", 5000)
			tt.prep()
			before := snapshot(t, rdb)
			if r := raise(t, rdb, tt.token, f+10); !reflect.DeepEqual(r, []any{"not_holder"}) {
				t.Errorf("%s: got %v, want not_holder", tt.name, r)
			}
			unchanged(t, rdb, "a raise of "+tt.name, before)
		}
	})

	t.Run("raised", func(t *testing.T) {
		fresh(t, rdb)
		f, _ := grant(t, rdb, tokA, "a", "", 5000)
		at := expiresAt(t, rdb, key)
		step := func(what string, to int64, reply int64, want [3]string) {
			t.Helper()
			if r := raise(t, rdb, tokA, to); !reflect.DeepEqual(r, []any{"raised", reply}) {
				t.Errorf("%s: got %v, want raised %d", what, r, reply)
			}
			if got := fields(t); got != want {
				t.Errorf("%s: got f, q, c %q, want %q", what, got, want)
			}
			if got := expiresAt(t, rdb, key); got != at {
				t.Errorf("%s: the key's expiry moved from %d to %d", what, at, got)
			}
		}
		step("to its own fence", f, f, [3]string{d(f), d(f), ""})
		up := f + 1000
		step("up", up, up, [3]string{d(up), d(up), ""})
		step("below the decided fence: q stays", f, up, [3]string{d(up), d(up), ""})
		big := int64(9007199254740000)
		step("to a fence near 2^53: exact digits", big, big, [3]string{d(big), d(big), ""})
	})

	t.Run("lowered", func(t *testing.T) {
		fresh(t, rdb)
		late, _ := grant(t, rdb, tokA, "a", "", 5000)
		// An undecided grant above the decision comes down to it; c keeps its fence.
		if r := raise(t, rdb, tokA, late-500); !reflect.DeepEqual(r, []any{"raised", late - 500}) {
			t.Errorf("got %v, want raised %d", r, late-500)
		}
		if got, want := fields(t), [3]string{d(late - 500), d(late - 500), d(late)}; got != want {
			t.Errorf("got f, q, c %q, want %q", got, want)
		}
		// Lower again, below a c that is above f: c stays.
		rdb.HDel(ctx, key, "q")
		raise(t, rdb, tokA, late-700)
		if got, want := fields(t), [3]string{d(late - 700), d(late - 700), d(late)}; got != want {
			t.Errorf("lowered below c: got f, q, c %q, want %q", got, want)
		}
		// A c below f is replaced by f.
		rdb.HDel(ctx, key, "q")
		set(t, rdb, "c", "5")
		raise(t, rdb, tokA, late-900)
		if got, want := fields(t), [3]string{d(late - 900), d(late - 900), d(late - 700)}; got != want {
			t.Errorf("lowered with c below f: got f, q, c %q, want %q", got, want)
		}
		// The next grant still exceeds every fence this master granted.
		rdb.HSet(ctx, key, "c", d(late+int64(time.Hour/time.Microsecond)))
		release(t, rdb, tokA, "p")
		if got := fields(t); got[2] == "" {
			t.Fatalf("the release dropped c: %q", got)
		}
		f, now := grant(t, rdb, tokB, "", "", 1000)
		if want := late + int64(time.Hour/time.Microsecond) + 1; f != want {
			t.Errorf("got fence %d, want c + 1 = %d", f, want)
		}
		checkGrant(t, rdb, granted(tokB, f, now, 1000, "", "", startedAt(now)...))
	})
}

// TestNothingLeftAfterRetention: whatever a name went through, nothing of
// it is left once the fence retention has passed.
func TestNothingLeftAfterRetention(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	const retention = 300
	// Every waiter's client of every name listens.
	sub := rdb.PSubscribe(ctx, "t:{n*}:w:cb*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		k := fmt.Sprintf("t:{n%d}", i)
		q := k + ":q"
		acq := func(tok string, wait ...any) []any {
			return run(t, rdb, lua.Acquire, []string{k, q, k + ":h"}, append([]any{tok, "h", "m", 1000, retention}, withHist(wait, 0)...)...)
		}
		if r := acq(tokA); r[0] != "granted" {
			t.Fatalf("%s: got %v, want granted", k, r)
		}
		if i%4 == 1 {
			// A waiter joins and leaves.
			w := newWaiter("b", 1000, "", "")
			acq(w.token, w.entry(), "p", retention, "0")
			run(t, rdb, lua.Leave, []string{k, q, k + ":h"}, w.token, w.entry(), retention, "p")
		}
		tok := tokA
		if i%4 == 2 {
			// A waiter is handed the lease, and releases it in turn.
			w := newWaiter("b", 1000, "", "")
			acq(w.token, w.entry(), "p", retention, "0")
			if r := run(t, rdb, lua.Release, []string{k, q, k + ":h"}, tokA, retention, "p"); r[0] != "handed" {
				t.Fatalf("%s: got %v, want handed", k, r)
			}
			tok = w.token
		}
		if i%4 == 3 {
			// A waiter whose process died is dropped by the release.
			rdb.RPush(ctx, q, "w\nc-dead\n1000\n"+tokB+"\n\n")
			rdb.PExpire(ctx, q, retention*time.Millisecond)
			rdb.HSet(ctx, k, "w", "1")
		}
		if r := run(t, rdb, lua.Release, []string{k, q, k + ":h"}, tok, retention, "p"); r[0] != "released" {
			t.Fatalf("%s: got %v, want released", k, r)
		}
	}
	// One more left to expire without a release.
	run(t, rdb, lua.Acquire, []string{"t:{x}", "t:{x}:q", "t:{x}:h"}, tokA, "", "", 50, retention)

	var cursor uint64
	seen := 0
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "*", 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			seen++
			if strings.HasSuffix(k, ":q") {
				t.Errorf("queue %s is left: nobody waits", k)
			}
			if pttl := rdb.PTTL(ctx, k).Val(); pttl > (retention+50)*time.Millisecond || (pttl < 0 && pttl != -2*time.Nanosecond) {
				t.Errorf("key %s: got PTTL %v, want at most the retention (%dms) + the grant", k, pttl, retention)
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if seen != 201 {
		t.Errorf("got %d keys before the retention passed, want the 201 hashes", seen)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := rdb.DBSize(ctx).Val()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			keys, _ := rdb.Keys(ctx, "*").Result()
			t.Fatalf("%d keys left after the retention: %q", n, keys)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// More dead waiters than one hand-over drops: the lease stays free for the
// waiters behind them, and a newcomer does not take it ahead of them.
func TestAcquireBehindManyDeadWaiters(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	grant(t, rdb, tokA, "a", "", 5000)
	for i := range 2001 {
		join(t, rdb, newWaiter("d", 1000, "", ""), int64(i))
	}
	live := newWaiter("live", 1000, "", "")
	sub := subscribe(t, rdb, live, "p")
	join(t, rdb, live, 2001)
	if r := release(t, rdb, tokA, "p"); !reflect.DeepEqual(r, []any{"released"}) {
		t.Fatalf("got %v, want released (1000 dead dropped, 1001 dead and the live one left)", r)
	}
	// A caller that does not wait: not granted ahead of the live waiter
	// (its call drops 1000 more dead ones).
	r := acquire(t, rdb, tokB, "", "", 1000)
	if len(r) != 6 || r[0] != "held" || r[1] != "" || r[3] != int64(1) || r[5] != int64(-1) {
		t.Fatalf("newcomer behind 1001 dead waiters: got %v, want held by nobody for 1ms, not queued", r)
	}
	// The live waiter's own attempt drops the rest and takes the lease.
	r = acquire(t, rdb, live.token, live.holder, live.meta, live.ttl, live.entry(), "p", 120000, "1")
	if len(r) != 4 || r[0] != "granted" {
		t.Fatalf("the live waiter's attempt: got %v, want granted", r)
	}
	told(t, sub, live, r[1].(int64))
	if n, _ := rdb.LLen(ctx, key+":q").Result(); n != 0 {
		t.Errorf("got %d entries left, want none", n)
	}
}

// A hash whose expiry is not a number (a layout before the expiry field,
// or a hand-made one) reads as no grant in every script, not as an error.
func TestExpiryThatIsNoNumberIsNoGrant(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	for _, e := range []string{"", "soon", "1e"} {
		fresh(t, rdb)
		fields := []any{"t", tokB, "f", "17"}
		if e != "" {
			fields = append(fields, "e", e)
		}
		rdb.HSet(ctx, key, fields...)
		if r := inspect(t, rdb, ""); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("e %q: inspect got %v, want not_found", e, r)
		}
		if r := renew(t, rdb, tokB, 1000); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("e %q: renew got %v, want not_found", e, r)
		}
		if r := release(t, rdb, tokB, "p"); !reflect.DeepEqual(r, []any{"not_found"}) {
			t.Errorf("e %q: release got %v, want not_found", e, r)
		}
		if r := acquire(t, rdb, tokA, "", "", 1000); len(r) != 4 || r[0] != "granted" || r[1].(int64) <= 17 {
			t.Errorf("e %q: acquire got %v, want a new grant above fence 17", e, r)
		}
	}
}

func TestCensus(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	census := func(hashes []string, queues ...string) []any {
		t.Helper()
		return run(t, rdb, lua.Census, append(hashes, queues...), len(hashes))
	}
	const (
		key2, queue2 = "t:{m}", "t:{m}:q"
		released     = "t:{r}"
		other        = "t:{s}" // a string where a hash or queue would be
	)
	fresh(t, rdb)
	if r := census(nil); !reflect.DeepEqual(r, []any{int64(0), int64(0)}) {
		t.Errorf("no keys: got %v, want [0 0]", r)
	}
	if r := census([]string{key, queue}, key, queue); !reflect.DeepEqual(r, []any{int64(0), int64(0)}) {
		t.Errorf("absent keys: got %v, want [0 0]", r)
	}

	grant(t, rdb, tokA, "a", "", 5000)
	join(t, rdb, newWaiter("b", 1000, "", ""), 0)
	join(t, rdb, newWaiter("c", 1000, "", ""), 1)
	if err := rdb.HSet(ctx, key2, "t", tokB, "f", "1", "e", strconv.FormatInt(redisNow(t, rdb)/1000+5000, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.RPush(ctx, queue2, "x").Err(); err != nil { // a queue behind a free lease counts too
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, released, "f", "7").Err(); err != nil { // only the fence: no grant
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, other, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, rdb)
	for _, tt := range []struct {
		name           string
		hashes, queues []string
		want           []any
	}{
		{"two live grants and three waiters", []string{key, key2}, []string{queue, queue2}, []any{int64(2), int64(3)}},
		{"the hashes only", []string{key, key2, released}, nil, []any{int64(2), int64(0)}},
		{"the queues only", nil, []string{queue, queue2}, []any{int64(0), int64(3)}},
		{"keys of another type count nothing", []string{key, other, queue}, []string{other, key}, []any{int64(1), int64(0)}},
	} {
		if r := census(tt.hashes, tt.queues...); !reflect.DeepEqual(r, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, r, tt.want)
		}
	}
	unchanged(t, rdb, "census", before)

	expire(t, rdb)
	if r := census([]string{key, key2}); !reflect.DeepEqual(r, []any{int64(1), int64(0)}) {
		t.Errorf("one grant expired: got %v, want [1 0]", r)
	}
}
