package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/chaos"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/leasehold/leasehold/lua"
	"github.com/redis/go-redis/v9"
)

// The broken variants prove the checker's sensitivity: each is a client
// with one of the bugs the suite exists to find, run under the fault that
// exposes it. Every one must be caught; a checker that catches none of them
// is not a checker.

// keys are a lease's hash and fence counter, as package lease names them.
func keys(name string) []string {
	return []string{"leasehold:{" + name + "}", "leasehold:{" + name + "}:q"}
}

// grantReply turns acquire.lua's reply into a grant or a *lease.HeldError.
func grantReply(name string, o *lease.AcquireOptions, token string, res []any) (*lease.Lease, *lease.HeldError) {
	num := func(i int) int64 { n, _ := res[i].(int64); return n }
	str := func(i int) string { s, _ := res[i].(string); return s }
	if str(0) == "granted" {
		return &lease.Lease{Name: name, Holder: o.Holder, Token: token, Fence: num(1), TTL: o.TTL,
			ExpiresAt: time.UnixMilli(num(2) + o.TTL.Milliseconds())}, nil
	}
	return nil, &lease.HeldError{Name: name, Holder: str(1), Fence: num(2), TTL: max(time.Duration(num(3))*time.Millisecond, time.Millisecond)}
}

// clocklessFence acquires through acquire.lua with a fence that ignores
// Redis's clock (the last fence plus one): after Redis loses its data, the
// fences start again from 1 and go backwards.
type clocklessFence struct {
	*lease.Client
	rdb    *redis.Client
	script *redis.Script
}

func newClocklessFence(rdb *redis.Client) *clocklessFence {
	start := strings.Index(lua.Acquire, "local function next_fence(")
	end := start + strings.Index(lua.Acquire[start:], "\nend\n") + len("\nend\n")
	src := lua.Acquire[:start] + `local function next_fence(last, floor)
  local fence = tonumber(last or '0') + 1
  return fence, string.format('%.0f', fence)
end
` + lua.Acquire[end:]
	return &clocklessFence{Client: lease.New(rdb, nil), rdb: rdb, script: redis.NewScript(src)}
}

func (c *clocklessFence) Acquire(ctx context.Context, name string, o *lease.AcquireOptions) (*lease.Lease, error) {
	token := lease.NewToken()
	deadline := time.Now().Add(o.Wait)
	for {
		res, err := c.script.Run(ctx, c.rdb, keys(name), token, o.Holder, o.Metadata, o.TTL.Milliseconds(), lease.DefaultFenceRetention.Milliseconds()).Slice()
		if err != nil {
			return nil, &lease.BackendError{Op: "acquire", MayHaveApplied: true, Err: err}
		}
		l, held := grantReply(name, o, token, res)
		if l != nil {
			return l, nil
		}
		if !time.Now().Before(deadline) {
			return nil, held
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lateSubscriber waits by attempting first, which queues it, and
// subscribing to its hand-over channel after: a release between the two
// finds nobody listening and skips it, and the waiter sleeps until the
// holder's TTL runs out. A random pause of up to 50ms between the attempt
// and the subscription stands for the goroutine being preempted or a GC
// pause there; it widens the window so that a short run meets it.
type lateSubscriber struct {
	*lease.Client
	rdb    *redis.Client
	script *redis.Script
}

func newLateSubscriber(rdb *redis.Client) *lateSubscriber {
	return &lateSubscriber{Client: lease.New(rdb, nil), rdb: rdb, script: redis.NewScript(lua.Acquire)}
}

func (c *lateSubscriber) Acquire(ctx context.Context, name string, o *lease.AcquireOptions) (*lease.Lease, error) {
	if o.Wait == 0 {
		return c.Client.Acquire(ctx, name, o)
	}
	token := lease.NewToken()
	deadline := time.Now().Add(o.Wait)
	client := lease.NewToken()[:12]
	channel := keys(name)[0] + ":w:" + client
	entry := "w\n" + client + "\n" + strconv.FormatInt(o.TTL.Milliseconds(), 10) + "\n" + token + "\n" + o.Holder + "\n" + o.Metadata
	rejoin := "0"
	attempt := func() (*lease.Lease, *lease.HeldError, error) {
		res, err := c.script.Run(ctx, c.rdb, keys(name), token, o.Holder, o.Metadata, o.TTL.Milliseconds(),
			lease.DefaultFenceRetention.Milliseconds(), entry, "p", (o.Wait + time.Minute).Milliseconds(), rejoin).Slice()
		rejoin = "1"
		if err != nil {
			return nil, nil, &lease.BackendError{Op: "acquire", MayHaveApplied: true, Err: err}
		}
		l, held := grantReply(name, o, token, res)
		return l, held, nil
	}
	l, held, err := attempt()
	if l != nil || err != nil {
		return l, err
	}
	time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
	ps := c.rdb.Subscribe(ctx, channel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return nil, &lease.BackendError{Op: "acquire", Err: err}
	}
	msgs := ps.Channel()
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, held
		}
		t := time.NewTimer(min(held.TTL, left))
		select {
		case <-msgs:
		case <-t.C:
		}
		t.Stop()
		if l, held, err = attempt(); l != nil || err != nil {
			return l, err
		}
	}
}

// sdkWorld is one Redis and n SDK workers straight on it, each with the
// client make builds, on names.
func (e *env) sdkWorld(n int, names []string, make func(*redis.Client) lease.Interface, o workerOptions) {
	e.redis = redistest.Start(e.t)
	e.names = names
	lin := e.lin(names...)
	for i := 0; i < n; i++ {
		rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
		e.t.Cleanup(func() { rdb.Close() })
		e.addWorker(fmt.Sprintf("sdk%d", i), make(rdb), lin, o)
	}
	e.observer(redis.NewClient(observerOptions(e.redis.Addr())), lin)
}

func plainClient(rdb *redis.Client) lease.Interface { return lease.New(rdb, nil) }

func classNamed(name string) class {
	for _, c := range singleClasses {
		if c.name == name {
			return c
		}
	}
	panic("no class " + name)
}

// variantRuns is how many runs a broken variant gets to be caught in.
const variantRuns = 3

// TestVariants runs each broken variant and fails when the checker does
// not catch it. Each also runs as a control: the same world and fault with
// the correct client, whose result is printed beside the variant's (a
// control that fails is a finding of its fault class, reported there).
func TestVariants(t *testing.T) {
	variants := []struct {
		name  string
		ttl   time.Duration
		world func(e *env, broken bool)
		class class
	}{
		{"late-keeper", time.Second, func(e *env, broken bool) {
			e.worker = func(o *workerOptions) { o.lateKeeper = broken }
			e.single()
		}, classNamed("proxy-hang")},
		{"unchecked-release", 500 * time.Millisecond, func(e *env, broken bool) {
			o := e.defaults("n0")
			o.plain = 1
			var rdb *redis.Client
			if broken {
				o.release = func(ctx context.Context, l *lease.Lease) error {
					return rdb.Del(ctx, keys(l.Name)[0]).Err() // whoever holds it now
				}
			}
			e.sdkWorld(3, []string{"n0"}, plainClient, o)
			rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
			t.Cleanup(func() { rdb.Close() })
		}, class{name: "none"}},
		{"clockless-fence", time.Second, func(e *env, broken bool) {
			mk := plainClient
			if broken {
				mk = func(rdb *redis.Client) lease.Interface { return newClocklessFence(rdb) }
			}
			e.sdkWorld(3, []string{"n0", "n1"}, mk, e.defaults("n0", "n1"))
		}, classNamed("flushall")},
		{"late-subscribe", 3 * time.Second, func(e *env, broken bool) {
			o := e.defaults("n0", "n1")
			o.hold, o.uniformHold, o.waitShare, o.rest = 60*time.Millisecond, true, 1, 1500*time.Millisecond
			mk := plainClient
			if broken {
				mk = func(rdb *redis.Client) lease.Interface { return newLateSubscriber(rdb) }
			}
			e.minDur = 20 * time.Second
			e.sdkWorld(4, []string{"n0", "n1"}, mk, o)
		}, class{name: "none"}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			var control *chaos.Result
			done := make(chan struct{})
			ce := newEnv(t, v.ttl)
			v.world(ce, false)
			go func() {
				defer close(done)
				control = ce.run(v.class)
			}()
			e := newEnv(t, v.ttl)
			v.world(e, true)
			r := e.run(v.class)
			// A bug is seen only when the workload meets its window (a
			// late keeper needs a hang to meet a holder while another
			// client waits; a late subscriber a release in a few ms), which
			// a short run on a loaded machine may not: it gets up to two
			// runs more, and each miss is logged.
			for run := 2; r.OK() && run <= variantRuns; run++ {
				t.Logf("not caught in run %d of %d: %s; running again", run-1, variantRuns, r.Summary(v.class.name))
				e = newEnv(t, v.ttl)
				v.world(e, true)
				r = e.run(v.class)
			}
			<-done
			t.Log("control: " + control.Summary(v.class.name))
			report(t, control)
			line := fmt.Sprintf("chaos: variant=%s caught=%v control=%s", v.name, !r.OK(), map[bool]string{true: "ok", false: "FAIL"}[control.OK()])
			t.Log(r.Summary(v.class.name))
			t.Log(line)
			fmt.Println(line)
			if r.OK() {
				t.Errorf("%s: the checker did not catch the broken variant", v.name)
			} else {
				report(t, r)
			}
		})
	}
}
