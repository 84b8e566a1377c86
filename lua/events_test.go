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

// The events stream of the prefix "t:" (see common.lua).
const events = "t:events"

// watch creates the stream empty, as a watcher does.
func watch(t *testing.T, rdb *redis.Client) {
	t.Helper()
	if err := rdb.Do(ctx, "xadd", events, "maxlen", "0", "*", "k", "watch").Err(); err != nil {
		t.Fatal(err)
	}
}

// emitted is the stream's entries, oldest first, without their ids; the
// times (t) are replaced by "<t>" once checked to lie in [lo, hi] ms.
func emitted(t *testing.T, rdb *redis.Client, lo, hi int64) []map[string]any {
	t.Helper()
	msgs, err := rdb.XRange(ctx, events, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := []map[string]any{}
	for _, m := range msgs {
		at, _ := strconv.ParseInt(m.Values["t"].(string), 10, 64)
		if at < lo || at > hi {
			t.Errorf("got event time %d, want within [%d, %d]", at, lo, hi)
		}
		m.Values["t"] = "<t>"
		out = append(out, m.Values)
	}
	return out
}

func ev(kind string, fence int64, kv ...string) map[string]any {
	m := map[string]any{"k": kind, "n": "n", "f": strconv.FormatInt(fence, 10), "t": "<t>"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func keys4() []string { return []string{key, queue, hist, events} }

func checkEvents(t *testing.T, got, want []map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got events %v, want %v", got, want)
	}
}

// Each branch that changes a grant emits its event, with exactly these
// fields, while the stream exists.
func TestEvents(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ms := func() int64 { return redisNow(t, rdb) / 1000 }

	t.Run("granted, renewed (renew and re-acquire), released", func(t *testing.T) {
		fresh(t, rdb)
		watch(t, rdb)
		lo := ms()
		r := run(t, rdb, lua.Acquire, keys4(), tokA, "web-1", "meta", 5000, ret, "", "p", 0)
		f := r[1].(int64)
		run(t, rdb, lua.Renew, []string{key, events}, tokA, 7000, ret)
		run(t, rdb, lua.Acquire, keys4(), tokA, "", "", 3000, ret, "", "p", 0)
		run(t, rdb, lua.Release, keys4(), tokA, ret, "p", 0)
		checkEvents(t, emitted(t, rdb, lo, ms()), []map[string]any{
			ev("granted", f, "h", "web-1", "l", "5000"),
			ev("renewed", f, "h", "web-1", "l", "7000"),
			ev("renewed", f, "l", "3000"), // no holder: this call drops it
			ev("released", f),
		})
	})

	t.Run("renew with the grant's own TTL", func(t *testing.T) {
		fresh(t, rdb)
		watch(t, rdb)
		lo := ms()
		f := run(t, rdb, lua.Acquire, keys4(), tokA, "", "", 5000, ret, "", "p", 0)[1].(int64)
		run(t, rdb, lua.Renew, []string{key, events}, tokA, 0, ret)
		checkEvents(t, emitted(t, rdb, lo, ms()), []map[string]any{
			ev("granted", f, "l", "5000"), ev("renewed", f, "l", "5000"),
		})
	})

	t.Run("expired at the grant's expiry, found by acquire, then granted", func(t *testing.T) {
		fresh(t, rdb)
		watch(t, rdb)
		f := run(t, rdb, lua.Acquire, keys4(), tokA, "a", "", 5000, ret, "", "p", 0)[1].(int64)
		expire(t, rdb)
		e, _ := strconv.ParseInt(hash(t, rdb)["e"], 10, 64)
		r := run(t, rdb, lua.Acquire, keys4(), tokB, "b", "", 5000, ret, "", "p", 0)
		msgs, _ := rdb.XRange(ctx, events, "-", "+").Result()
		if len(msgs) != 3 || msgs[1].Values["t"] != strconv.FormatInt(e, 10) {
			t.Fatalf("got %v, want the expiry at the grant's e %d", msgs, e)
		}
		checkEvents(t, emitted(t, rdb, e, ms()), []map[string]any{
			ev("granted", f, "h", "a", "l", "5000"), ev("expired", f, "h", "a"), ev("granted", r[1].(int64), "h", "b", "l", "5000"),
		})
	})

	t.Run("expired, with no history kept, is recorded once", func(t *testing.T) {
		fresh(t, rdb)
		watch(t, rdb)
		f := run(t, rdb, lua.Acquire, keys4(), tokA, "", "", 5000, ret, "", "p", 0)[1].(int64)
		expire(t, rdb)
		lo := ms() - 2
		run(t, rdb, lua.Release, keys4(), tokA, ret, "p", 0)
		run(t, rdb, lua.Release, keys4(), tokA, ret, "p", 0)
		got := emitted(t, rdb, lo-5000, ms())
		checkEvents(t, got, []map[string]any{ev("granted", f, "l", "5000"), ev("expired", f)})
	})

	t.Run("released and granted on a hand-over", func(t *testing.T) {
		fresh(t, rdb)
		watch(t, rdb)
		lo := ms()
		f := run(t, rdb, lua.Acquire, keys4(), tokA, "a", "", 5000, ret, "", "p", 0)[1].(int64)
		w := newWaiter("n", 4000, "w", "")
		sub := subscribe(t, rdb, w, "p")
		defer sub.Close()
		run(t, rdb, lua.Acquire, keys4(), w.token, w.holder, "", 4000, ret, w.entry(), "p", 0, 60000, "0")
		r := run(t, rdb, lua.Release, keys4(), tokA, ret, "p", 0)
		if r[0] != "handed" {
			t.Fatalf("got %v, want handed", r)
		}
		checkEvents(t, emitted(t, rdb, lo, ms()), []map[string]any{
			ev("granted", f, "h", "a", "l", "5000"), ev("released", f, "h", "a"), ev("granted", r[1].(int64), "h", "w", "l", "4000"),
		})
	})

	t.Run("leave releases a lease handed to the waiter", func(t *testing.T) {
		fresh(t, rdb)
		watch(t, rdb)
		lo := ms()
		w := newWaiter("n", 4000, "w", "")
		f := run(t, rdb, lua.Acquire, keys4(), w.token, "w", "", 4000, ret, "", "p", 0)[1].(int64)
		run(t, rdb, lua.Leave, keys4(), w.token, w.entry(), ret, "p", 0)
		checkEvents(t, emitted(t, rdb, lo, ms()), []map[string]any{
			ev("granted", f, "h", "w", "l", "4000"), ev("released", f, "h", "w"),
		})
	})

	t.Run("broken, with by and reason", func(t *testing.T) {
		fresh(t, rdb)
		watch(t, rdb)
		lo := ms()
		f := run(t, rdb, lua.Acquire, keys4(), tokA, "a", "", 5000, ret, "", "p", 0)[1].(int64)
		run(t, rdb, lua.Break, keys4(), "", "stuck", "ops", ret, "p", 0)
		checkEvents(t, emitted(t, rdb, lo, ms()), []map[string]any{
			ev("granted", f, "h", "a", "l", "5000"), ev("broken", f, "h", "a", "b", "ops", "r", "stuck"),
		})
	})

	t.Run("expire.lua: only the same fence, once expired, once", func(t *testing.T) {
		fresh(t, rdb)
		watch(t, rdb)
		f := run(t, rdb, lua.Acquire, keys4(), tokA, "a", "", 5000, ret, "", "p", 0)[1].(int64)
		fd := strconv.FormatInt(f, 10)
		if r := run(t, rdb, lua.Expire, keys4(), fd, ret, "p", 0); r[0] != "none" {
			t.Fatalf("live: got %v, want none", r)
		}
		expire(t, rdb)
		if r := run(t, rdb, lua.Expire, keys4(), strconv.FormatInt(f+1, 10), ret, "p", 0); r[0] != "none" {
			t.Fatalf("another fence: got %v, want none", r)
		}
		if r := run(t, rdb, lua.Expire, keys4(), fd, ret, "p", 20); r[0] != "expired" {
			t.Fatalf("expired: got %v, want expired", r)
		}
		if r := run(t, rdb, lua.Expire, keys4(), fd, ret, "p", 20); r[0] != "none" {
			t.Fatalf("again: got %v, want none", r)
		}
		if got := recorded(t, rdb); len(got) != 1 || got[0].Kind != "expired" {
			t.Fatalf("got history %+v, want one expired entry", got)
		}
		checkEvents(t, emitted(t, rdb, 0, ms()), []map[string]any{ev("granted", f, "h", "a", "l", "5000"), ev("expired", f, "h", "a")})
	})
}

// With no stream (nobody watches), no script writes one, and each asks
// Redis once whether it exists.
func TestNoEventsUnwatched(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	fresh(t, rdb)
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	run(t, rdb, lua.Acquire, keys4(), tokA, "a", "", 5000, ret, "", "p", 20)
	run(t, rdb, lua.Renew, []string{key, events}, tokA, 7000, ret)
	run(t, rdb, lua.Break, keys4(), "", "why", "", ret, "p", 20)
	run(t, rdb, lua.Acquire, keys4(), tokB, "b", "", 5000, ret, "", "p", 20)
	expire(t, rdb)
	run(t, rdb, lua.Release, keys4(), tokB, ret, "p", 20)
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	stats := parseStats(info)
	if got := stats["exists"]; got != 5 {
		t.Errorf("got %d EXISTS calls for 5 script calls, want 5", got)
	}
	if got := stats["xadd"]; got != 0 {
		t.Errorf("got %d XADD calls, want 0", got)
	}
	if n, err := rdb.Exists(ctx, events).Result(); err != nil || n != 0 {
		t.Fatalf("got %d (%v) streams, want none", n, err)
	}
}

// parseStats reads INFO commandstats: calls by lower-case command name.
func parseStats(info string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range splitLines(info) {
		name, rest, ok := cut(line, ":")
		if !ok || len(name) < 9 || name[:8] != "cmdstat_" {
			continue
		}
		calls, _, _ := cut(rest, ",")
		if v, ok := cutPrefix(calls, "calls="); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[name[8:]] = n
		}
	}
	return out
}

func splitLines(s string) []string             { return strings.Split(strings.ReplaceAll(s, "\r", ""), "\n") }
func cut(s, sep string) (string, string, bool) { return strings.Cut(s, sep) }
func cutPrefix(s, p string) (string, bool)     { return strings.CutPrefix(s, p) }
