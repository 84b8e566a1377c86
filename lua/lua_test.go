package lua_test

import (
	"context"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lua"
	"github.com/redis/go-redis/v9"
)

// These tests drive each script directly, branch by branch, against a real
// redis-server, checking the exact replies the headers promise. Package lease
// tests the same branches through its API.

var ctx = context.Background()

const (
	key   = "t:{n}"
	fence = "t:{n}:fence"
	chann = "t:{n}:released"
	tokA  = "token-a-0123456789"
	tokB  = "token-b-0123456789"
)

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

func TestAcquireBranches(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	acquire := func(tok, holder, meta string, ttl int) []any {
		return run(t, rdb, lua.Acquire, []string{key, fence}, tok, holder, meta, ttl)
	}

	// Branch 1: absent -> new grant.
	g := acquire(tokA, "a", "m1", 5000)
	if want := []any{"granted", "<int>", "<int>", int64(0)}; !reflect.DeepEqual(shape(g, 1, 2), want) {
		t.Fatalf("new grant: got %v, want %v", g, want)
	}
	f := g[1].(int64)
	if now := time.Now().UnixMicro(); f < now-int64(time.Minute/time.Microsecond) || f > now+int64(time.Minute/time.Microsecond) {
		t.Errorf("got fence %d, want about Redis TIME in µs (%d)", f, now)
	}
	if s, _ := rdb.Get(ctx, fence).Result(); s != strconv.FormatInt(f, 10) {
		t.Errorf("got counter %q after a grant by the clock, want the fence %d", s, f)
	}

	// Branch 2: same token -> idempotent re-grant, same fence, new TTL/holder/metadata.
	g = acquire(tokA, "a2", "m2", 9000)
	if want := []any{"granted", f, "<int>", int64(1)}; !reflect.DeepEqual(shape(g, 2), want) {
		t.Fatalf("re-grant: got %v, want %v", g, want)
	}
	if h, _ := rdb.HGetAll(ctx, key).Result(); h["h"] != "a2" || h["m"] != "m2" || h["l"] != "9000" || h["t"] != tokA {
		t.Errorf("after re-grant: got hash %v", h)
	}

	// Branch 3: another token -> held, with the remaining TTL; nothing changes.
	before, _ := rdb.HGetAll(ctx, key).Result()
	g = acquire(tokB, "b", "mb", 1000)
	if want := []any{"held", "a2", f, "<int>", "<int>"}; !reflect.DeepEqual(shape(g, 3, 4), want) {
		t.Fatalf("held: got %v, want %v", g, want)
	}
	if pttl := g[3].(int64); pttl <= 8000 || pttl > 9000 {
		t.Errorf("got remaining TTL %d ms, want in (8000, 9000]", pttl)
	}
	if after, _ := rdb.HGetAll(ctx, key).Result(); !reflect.DeepEqual(after, before) {
		t.Errorf("held branch changed the hash: %v -> %v", before, after)
	}

	// Fence: last+1 when the counter is ahead of the clock.
	rdb.Del(ctx, key)
	rdb.Set(ctx, fence, "9007199254740000", 0) // near 2^53: still exact
	g = acquire(tokB, "", "", 1000)
	if g[1] != int64(9007199254740001) {
		t.Errorf("got fence %v, want 9007199254740001 (last+1)", g[1])
	}
	if s, _ := rdb.HGet(ctx, key, "f").Result(); s != "9007199254740001" {
		t.Errorf("got stored fence %q, want exact digits", s)
	}
	if s, _ := rdb.Get(ctx, fence).Result(); s != "9007199254740001" {
		t.Errorf("got counter %q, want the fence's exact digits", s)
	}

	// Fence: the clock when the counter is behind it.
	rdb.Del(ctx, key)
	rdb.Set(ctx, fence, "1000", 0)
	g = acquire(tokB, "", "", 1000)
	if f := g[1].(int64); f < time.Now().Add(-time.Minute).UnixMicro() {
		t.Errorf("got fence %d with the counter at 1000, want Redis TIME in µs", f)
	}
}

// An empty holder or metadata is not stored, and every reply reads the
// missing field as "": on a new grant, and on a re-grant that empties them.
func TestEmptyHolderAndMetadataAreNotStored(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	fields := func() []string {
		f, err := rdb.HKeys(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(f)
		return f
	}
	f := run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "", "", 5000)[1].(int64)
	if got, want := fields(), []string{"f", "l", "t"}; !reflect.DeepEqual(got, want) {
		t.Errorf("new grant without holder and metadata: got fields %v, want %v", got, want)
	}
	run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "a", "m", 5000)
	if got, want := fields(), []string{"f", "h", "l", "m", "t"}; !reflect.DeepEqual(got, want) {
		t.Errorf("re-grant with holder and metadata: got fields %v, want %v", got, want)
	}
	run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "", "", 5000)
	if got, want := fields(), []string{"f", "l", "t"}; !reflect.DeepEqual(got, want) {
		t.Errorf("re-grant without holder and metadata: got fields %v, want %v", got, want)
	}

	for _, tt := range []struct {
		name string
		got  []any
		want []any
		kind []int
	}{
		{"held", run(t, rdb, lua.Acquire, []string{key, fence}, tokB, "b", "mb", 5000),
			[]any{"held", "", f, "<int>", "<int>"}, []int{3, 4}},
		{"renewed", run(t, rdb, lua.Renew, []string{key}, tokA, 0),
			[]any{"renewed", f, int64(5000), "<int>", "", ""}, []int{3}},
		{"renew not_holder", run(t, rdb, lua.Renew, []string{key}, tokB, 0),
			[]any{"not_holder", "", f, "<int>", "<int>"}, []int{3, 4}},
		{"release not_holder", run(t, rdb, lua.Release, []string{key, fence}, tokB, "p"),
			[]any{"not_holder", "", f, "<int>", "<int>"}, []int{3, 4}},
		{"inspect", run(t, rdb, lua.Inspect, []string{key}, ""),
			[]any{"held", "", f, "<int>", "<int>", "", int64(0)}, []int{3, 4}},
	} {
		if got := shape(tt.got, tt.kind...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestRenewBranches(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	g := run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "a", "m", 5000)
	f := g[1].(int64)
	renew := func(tok string, ttl int) []any { return run(t, rdb, lua.Renew, []string{key}, tok, ttl) }

	if r, want := renew(tokA, 7000), []any{"renewed", f, int64(7000), "<int>", "a", "m"}; !reflect.DeepEqual(shape(r, 3), want) {
		t.Errorf("renew with a TTL: got %v, want %v", r, want)
	}
	if r, want := renew(tokA, 0), []any{"renewed", f, int64(7000), "<int>", "a", "m"}; !reflect.DeepEqual(shape(r, 3), want) {
		t.Errorf("renew with the last TTL: got %v, want %v", r, want)
	}
	if r, want := renew(tokB, 60000), []any{"not_holder", "a", f, "<int>", "<int>"}; !reflect.DeepEqual(shape(r, 3, 4), want) {
		t.Errorf("renew by another token: got %v, want %v", r, want)
	}
	if l, _ := rdb.HGet(ctx, key, "l").Result(); l != "7000" {
		t.Errorf("a not-holder renew changed the stored TTL to %q", l)
	}
	rdb.Del(ctx, key)
	if r, want := renew(tokA, 0), []any{"not_found"}; !reflect.DeepEqual(r, want) {
		t.Errorf("renew of nothing: got %v, want %v", r, want)
	}
}

func TestReleaseBranches(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	release := func(tok, announce string, handover ...any) []any {
		return run(t, rdb, lua.Release, []string{key, fence}, append([]any{tok, announce}, handover...)...)
	}
	grantAs := func(holder, meta string) int64 {
		rdb.Del(ctx, key)
		return run(t, rdb, lua.Acquire, []string{key, fence}, tokA, holder, meta, 5000)[1].(int64)
	}
	grant := func() int64 { return grantAs("a", "") }
	// mark is a failed attempt of a caller of client id that will wait.
	mark := func(id string) {
		if r := run(t, rdb, lua.Acquire, []string{key, fence}, tokB, "b", "", 5000, id); r[0] != "held" {
			t.Fatalf("marking attempt: got %v, want held", r)
		}
	}

	f := grant()
	if r, want := release(tokB, "p"), []any{"not_holder", "a", f, "<int>", "<int>"}; !reflect.DeepEqual(shape(r, 3, 4), want) {
		t.Errorf("release by another token: got %v, want %v", r, want)
	}
	if r, want := release(tokB, "p", "me", "token-w-0123456789", "w", "", 7000), []any{"not_holder", "a", f, "<int>", "<int>"}; !reflect.DeepEqual(shape(r, 3, 4), want) {
		t.Errorf("hand-over by another token: got %v, want %v", r, want)
	}
	if tok, _ := rdb.HGet(ctx, key, "t").Result(); tok != tokA {
		t.Fatalf("a not-holder release changed the lease: token %q", tok)
	}

	// Deleted, and announced only when a waiting caller marked the lease.
	for _, tt := range []struct {
		name, announce, mark string
		subscribe            func() *redis.PubSub
		announced            bool
	}{
		{"PUBLISH", "p", "c1", func() *redis.PubSub { return rdb.Subscribe(ctx, chann) }, true},
		{"SPUBLISH", "s", "c1", func() *redis.PubSub { return rdb.SSubscribe(ctx, chann) }, true},
		{"not marked: no PUBLISH", "p", "", func() *redis.PubSub { return rdb.Subscribe(ctx, chann) }, false},
		{"not marked: no SPUBLISH", "s", "", func() *redis.PubSub { return rdb.SSubscribe(ctx, chann) }, false},
		{"marked, announce off", "", "c1", func() *redis.PubSub { return rdb.Subscribe(ctx, chann) }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := grant()
			if tt.mark != "" {
				mark(tt.mark)
			}
			sub := tt.subscribe()
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			if r, want := release(tokA, tt.announce), []any{"released"}; !reflect.DeepEqual(r, want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
				t.Error("the lease survived its release")
			}
			// A marker published after the release shows whether the release did.
			if tt.announce == "s" {
				rdb.SPublish(ctx, chann, "marker")
			} else {
				rdb.Publish(ctx, chann, "marker")
			}
			tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			msg, err := sub.ReceiveMessage(tctx)
			if err != nil {
				t.Fatal(err)
			}
			want := "marker"
			if tt.announced {
				want = strconv.FormatInt(f, 10)
			}
			if msg.Channel != chann || msg.Payload != want {
				t.Errorf("got %q on %s first, want %q on %s", msg.Payload, msg.Channel, want, chann)
			}
		})
	}
	if r, want := release(tokA, "p"), []any{"not_found"}; !reflect.DeepEqual(r, want) {
		t.Errorf("release of nothing: got %v, want %v", r, want)
	}
	if r, want := release(tokA, "p", "me", "token-w-0123456789", "w", "", 7000), []any{"not_found"}; !reflect.DeepEqual(r, want) {
		t.Errorf("hand-over of nothing: got %v, want %v", r, want)
	}
	if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
		t.Error("a hand-over of nothing created a lease")
	}

	// Handed over to the caller's waiter when unmarked or marked by the
	// caller's client only: a new grant with a new fence, marked by the
	// caller's client.
	const tokW = "token-w-0123456789"
	// The waiter's holder and metadata replace the releaser's, and those
	// that the waiter lacks are gone.
	for _, tt := range []struct {
		name, mark, relHolder, relMeta, holder, meta string
	}{
		{"unmarked", "", "a", "", "w", "mw"},
		{"marked by the caller's client", "me", "a", "", "", ""},
		{"unmarked, holder and metadata dropped", "", "a", "ma", "", ""},
		{"unmarked, metadata dropped", "", "a", "ma", "w", ""},
		{"unmarked, holder dropped", "", "a", "ma", "", "mw"},
		{"unmarked, metadata replaced", "", "", "ma", "", "mw"},
	} {
		t.Run("handed "+tt.name, func(t *testing.T) {
			f := grantAs(tt.relHolder, tt.relMeta)
			if tt.mark != "" {
				mark(tt.mark)
			}
			sub := rdb.Subscribe(ctx, chann)
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			r := release(tokA, "p", "me", tokW, tt.holder, tt.meta, 7000)
			if want := []any{"handed", "<int>", "<int>"}; !reflect.DeepEqual(shape(r, 1, 2), want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			if nf := r[1].(int64); nf <= f {
				t.Errorf("got fence %d after %d, want it to increase", nf, f)
			}
			if now := time.Now().UnixMilli(); r[2].(int64) < now-60000 || r[2].(int64) > now+60000 {
				t.Errorf("got now_ms %d, want Redis's clock near %d", r[2], now)
			}
			h, _ := rdb.HGetAll(ctx, key).Result()
			want := map[string]string{"t": tokW, "f": strconv.FormatInt(r[1].(int64), 10), "l": "7000"}
			if tt.holder != "" {
				want["h"] = tt.holder
			}
			if tt.meta != "" {
				want["m"] = tt.meta
			}
			want["w"] = "me" // the caller's client: its other waiters may wait behind
			if !reflect.DeepEqual(h, want) {
				t.Errorf("got hash %v, want %v", h, want)
			}
			if s, _ := rdb.Get(ctx, fence).Result(); s != want["f"] {
				t.Errorf("got counter %q, want the new fence %s", s, want["f"])
			}
			if pttl, _ := rdb.PTTL(ctx, key).Result(); pttl <= 6000*time.Millisecond || pttl > 7000*time.Millisecond {
				t.Errorf("got PTTL %v, want the waiter's 7s", pttl)
			}
			rdb.Publish(ctx, chann, "marker")
			if msg, err := sub.ReceiveMessage(ctx); err != nil || msg.Payload != "marker" {
				t.Errorf("got %v (%v), want no announcement of a hand-over", msg, err)
			}
		})
	}

	// A waiter of another client (or of several) marked it: deleted and
	// announced, not handed over.
	for _, other := range []string{"other", "*"} {
		t.Run("not handed: marked "+other, func(t *testing.T) {
			grant()
			mark(other)
			if other == "*" {
				mark("another")
			}
			if r, want := release(tokA, "p", "me", tokW, "", "", 7000), []any{"released"}; !reflect.DeepEqual(r, want) {
				t.Fatalf("got %v, want %v", r, want)
			}
			if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
				t.Error("the lease was not deleted")
			}
		})
	}
}

// A failed attempt of a caller that will wait marks the lease with its
// client's id, or "*" once callers of two clients have; others leave it.
// A grant to a waiting caller is marked with its client's id.
func TestWaiterMarks(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	mark := func() string {
		w, err := rdb.HGet(ctx, key, "w").Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		return w
	}
	if r := run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "h", "", 5000, "c9"); r[0] != "granted" || mark() != "c9" {
		t.Errorf("new grant to a waiter of c9: got %v and mark %q, want granted and c9", r, mark())
	}
	rdb.HDel(ctx, key, "w")
	if r := run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "", "", 5000, "c8"); r[0] != "granted" || mark() != "c8" {
		t.Errorf("re-grant of an unmarked lease to a waiter of c8: got %v and mark %q, want granted and c8", r, mark())
	}
	rdb.Del(ctx, key)
	if r := run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "", "", 5000, ""); r[0] != "granted" || mark() != "" {
		t.Errorf("grant without waiting: got %v and mark %q, want granted and none", r, mark())
	}
	for _, tt := range []struct{ waiter, want string }{
		{"", ""},     // not waiting: no mark
		{"c1", "c1"}, // the first client's mark
		{"c1", "c1"}, // the same again: unchanged
		{"c2", "*"},  // a second client
		{"c3", "*"},  // and more
		{"", "*"},
	} {
		if r := run(t, rdb, lua.Acquire, []string{key, fence}, tokB, "", "", 5000, tt.waiter); r[0] != "held" {
			t.Fatalf("got %v, want held", r)
		}
		if got := mark(); got != tt.want {
			t.Errorf("after an attempt of waiter %q: got mark %q, want %q", tt.waiter, got, tt.want)
		}
	}
	// The holder's own re-grant and a renew keep the mark.
	run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "h", "m", 6000, "")
	run(t, rdb, lua.Renew, []string{key}, tokA, 7000)
	if got := mark(); got != "*" {
		t.Errorf("after re-grant and renew: got mark %q, want *", got)
	}
}

func TestInspectBranches(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	inspect := func(tok string) []any { return run(t, rdb, lua.Inspect, []string{key}, tok) }
	if r, want := inspect(""), []any{"not_found"}; !reflect.DeepEqual(r, want) {
		t.Errorf("inspect of nothing: got %v, want %v", r, want)
	}
	f := run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "a", "meta", 5000)[1].(int64)
	for _, tt := range []struct {
		token string
		match int64
	}{{"", 0}, {tokA, 1}, {tokB, 0}} {
		r := inspect(tt.token)
		if want := []any{"held", "a", f, "<int>", "<int>", "meta", tt.match}; !reflect.DeepEqual(shape(r, 3, 4), want) {
			t.Errorf("inspect with token %q: got %v, want %v", tt.token, r, want)
		}
		for _, v := range r {
			if v == tokA {
				t.Errorf("inspect returned the token: %v", r)
			}
		}
	}
}

func TestRaiseBranches(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	raise := func(tok string, f int64) []any {
		return run(t, rdb, lua.Raise, []string{key, fence}, tok, strconv.FormatInt(f, 10))
	}
	// state reads the grant's fence f, its decided fence q and the counter.
	state := func() [3]string {
		v := rdb.HMGet(ctx, key, "f", "q").Val()
		var out [3]string
		for i := range v {
			out[i], _ = v[i].(string)
		}
		out[2], _ = rdb.Get(ctx, fence).Result()
		return out
	}
	digits := func(n ...int64) [3]string {
		var out [3]string
		for i, x := range n {
			out[i] = strconv.FormatInt(x, 10)
		}
		return out
	}
	if r, want := raise(tokA, 5), []any{"not_holder"}; !reflect.DeepEqual(r, want) {
		t.Errorf("raise with no lease: got %v, want %v", r, want)
	}
	f := run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "a", "", 5000)[1].(int64)
	if r, want := raise(tokB, f+10), []any{"not_holder"}; !reflect.DeepEqual(r, want) {
		t.Errorf("raise by another token: got %v, want %v", r, want)
	}
	if got, want := state(), [3]string{strconv.FormatInt(f, 10), "", strconv.FormatInt(f, 10)}; got != want {
		t.Errorf("after a not-holder raise: f, q, counter %q, want %q", got, want)
	}

	// Decide higher: the grant, its q and the counter move up, digits exact.
	up := f + 1000
	if r, want := raise(tokA, up), []any{"raised", up}; !reflect.DeepEqual(r, want) {
		t.Errorf("raise up: got %v, want %v", r, want)
	}
	if got, want := state(), digits(up, up, up); got != want {
		t.Errorf("after raise up: f, q, counter %q, want %q", got, want)
	}
	// Lower than the decided fence: nothing moves down.
	if r, want := raise(tokA, f), []any{"raised", up}; !reflect.DeepEqual(r, want) {
		t.Errorf("raise below the decided fence: got %v, want %v", r, want)
	}
	if got, want := state(), digits(up, up, up); got != want {
		t.Errorf("after raise below the decided fence: f, q, counter %q, want %q", got, want)
	}
	// A lost counter is restored.
	rdb.Del(ctx, fence)
	raise(tokA, up)
	if got, _ := rdb.Get(ctx, fence).Result(); got != strconv.FormatInt(up, 10) {
		t.Errorf("raise with no counter: counter %q, want %d", got, up)
	}

	// An undecided grant with a fence above the decision (one that landed
	// after the quorum was made) is brought down to it; the counter stays.
	rdb.Del(ctx, key)
	late := run(t, rdb, lua.Acquire, []string{key, fence}, tokB, "", "", 5000)[1].(int64)
	if r, want := raise(tokB, late-500), []any{"raised", late - 500}; !reflect.DeepEqual(r, want) {
		t.Errorf("raise of a late grant to the decided fence: got %v, want %v", r, want)
	}
	if got, want := state(), digits(late-500, late-500, late); got != want {
		t.Errorf("after bringing a late grant down: f, q, counter %q, want %q", got, want)
	}
}

// TestFenceCounterOutOfRange: fences stay exact integers below 2^53 (so
// JSON and JavaScript read them exactly), and a counter that is not such a
// number is refused by acquire and by release's hand-over without any
// change: the counter keeps its value and no lease is made. A release
// whose hand-over cannot get a fence still releases.
func TestFenceCounterOutOfRange(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	const maxFence = 1<<53 - 1
	for _, tc := range []struct {
		counter string
		want    int64 // the fence granted; 0: refused
	}{
		{strconv.Itoa(maxFence - 1), maxFence},
		{strconv.Itoa(maxFence), 0},
		{strconv.Itoa(1 << 53), 0},
		{"9223372036854775808", 0}, // above 2^63
		{"-5", 0},
		{"12abc", 0},
		{"abc", 0},
		{"1e300", 0},
		{"", 0},
	} {
		t.Run("counter="+tc.counter, func(t *testing.T) {
			rdb.FlushAll(ctx)
			rdb.Set(ctx, fence, tc.counter, 0)
			res, err := redis.NewScript(lua.Acquire).Run(ctx, rdb, []string{key, fence}, tokA, "", "", 5000).Slice()
			after, _ := rdb.Get(ctx, fence).Result()
			exists, _ := rdb.Exists(ctx, key).Result()
			if tc.want != 0 {
				if err != nil || res[0] != "granted" || res[1] != tc.want {
					t.Fatalf("acquire = %v, %v; want granted with fence %d", res, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("acquire = %v, want an error", res)
			}
			if !strings.Contains(err.Error(), "fence counter") {
				t.Errorf("error %q, want one that names the fence counter", err)
			}
			if after != tc.counter || exists != 0 {
				t.Errorf("after the refusal: counter %q, lease exists %d; want counter %q and no lease", after, exists, tc.counter)
			}

			// A release that would hand over: it cannot make a fence, so it
			// releases plainly (and announces), and the counter stays.
			rdb.Del(ctx, fence)
			run(t, rdb, lua.Acquire, []string{key, fence}, tokA, "", "", 5000)
			rdb.Set(ctx, fence, tc.counter, 0)
			r := run(t, rdb, lua.Release, []string{key, fence}, tokA, "p", "client-1", tokB, "", "", 5000)
			after, _ = rdb.Get(ctx, fence).Result()
			exists, _ = rdb.Exists(ctx, key).Result()
			if r[0] != "released" || after != tc.counter || exists != 0 {
				t.Errorf("hand-over release = %v, counter %q, lease exists %d; want released, counter %q, no lease", r, after, exists, tc.counter)
			}
		})
	}
}
