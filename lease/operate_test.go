package lease_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// Break and History through the API, against redis-server (lua's tests
// check each script branch and the exact keys).

func TestBreakEndsAnyHoldersGrant(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second, Holder: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	k := lease.Keep(ctx, c, l, &lease.KeeperOptions{Interval: 100 * time.Millisecond})
	defer k.Stop()

	rec, err := c.Break(ctx, name, &lease.BreakOptions{Reason: "job stuck since 02:00", By: "ops-alice"})
	if err != nil {
		t.Fatalf("Break: %v", err)
	}
	if rec.Holder != "web-1" || rec.Fence != l.Fence || rec.Ending != lease.Broken || rec.By != "ops-alice" || rec.Reason != "job stuck since 02:00" ||
		rec.GrantedAt.Sub(l.ExpiresAt.Add(-l.TTL)).Abs() > time.Second || rec.EndedAt.Before(rec.GrantedAt) {
		t.Errorf("got %+v, want web-1's grant of fence %d, broken by ops-alice", rec, l.Fence)
	}
	// The holder's keeper learns of it at its next renew, well within the TTL.
	waitDone(t, k, 2*time.Second)
	if err := k.Err(); !errors.Is(err, lease.ErrLost) || !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("keeper: got %v, want lost, not found", err)
	}
	if _, err := c.Get(ctx, name); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("Get after the break: got %v, want not found", err)
	}
	l2, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if l2.Fence <= l.Fence {
		t.Errorf("the next fence %d is not above the broken %d", l2.Fence, l.Fence)
	}
	h, err := c.History(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].Ending != lease.Held || h[0].Fence != l2.Fence || h[1].Ending != lease.Broken || h[1].Reason != "job stuck since 02:00" || h[1].By != "ops-alice" {
		t.Fatalf("got history %+v, want the current grant, then the broken one", h)
	}
}

func TestBreakByFenceAndNotFound(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	if _, err := c.Break(ctx, name, &lease.BreakOptions{Reason: "r"}); !errors.Is(err, lease.ErrNotFound) {
		t.Fatalf("a free name: got %v, want not found", err)
	}
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second, Holder: "b"})
	if err != nil {
		t.Fatal(err)
	}
	var nh *lease.NotHolderError
	if _, err := c.Break(ctx, name, &lease.BreakOptions{Reason: "r", Fence: l.Fence - 1}); !errors.As(err, &nh) || nh.Fence != l.Fence || nh.Holder != "b" {
		t.Fatalf("another fence: got %v, want *NotHolderError of fence %d", err, l.Fence)
	}
	if _, err := c.Renew(ctx, name, l.Token, 0); err != nil {
		t.Fatalf("a break of another fence changed the lease: %v", err)
	}
	if _, err := c.Break(ctx, name, &lease.BreakOptions{Reason: "r", Fence: l.Fence}); err != nil {
		t.Fatalf("its own fence: %v", err)
	}
}

func TestBreakRejectsBadInputAndChangesNothing(t *testing.T) {
	c, _ := newClient(t, nil)
	name := uniq(t)
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, lname string
		o           *lease.BreakOptions
		want        string
	}{
		{"no options", name, nil, "give a reason"},
		{"no reason", name, &lease.BreakOptions{By: "x"}, "give a reason"},
		{"unprintable reason", name, &lease.BreakOptions{Reason: "a\nb"}, "unprintable character U+000A"},
		{"long reason", name, &lease.BreakOptions{Reason: strings.Repeat("r", 201)}, "at most 200"},
		{"bad by", name, &lease.BreakOptions{Reason: "r", By: "\x00"}, "the by has the unprintable"},
		{"negative fence", name, &lease.BreakOptions{Reason: "r", Fence: -1}, "negative"},
		{"bad name", "", &lease.BreakOptions{Reason: "r"}, "name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Break(ctx, tt.lname, tt.o)
			if !errors.Is(err, lease.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an invalid error containing %q", err, tt.want)
			}
		})
	}
	if _, err := c.Renew(ctx, name, l.Token, 0); err != nil {
		t.Fatalf("a refused break changed the lease: %v", err)
	}
}

func TestBreakHandsTheLeaseToTheWaiter(t *testing.T) {
	c, rdb := newClient(t, nil)
	other, _ := newClient(t, nil) // a waiter in another Client, as of another process
	name := uniq(t)
	l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *lease.Lease, 1)
	go func() {
		w, err := other.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Wait: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- w
	}()
	waitQueued(t, rdb, c, name, 1)
	start := time.Now()
	if _, err := c.Break(ctx, name, &lease.BreakOptions{Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-got:
		if w == nil || w.Fence <= l.Fence {
			t.Fatalf("got %+v, want a grant with a fence above %d", w, l.Fence)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the waiter got the lease %v after the break, want it at once (not at the 30s expiry)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not handed the lease after the break")
	}
}

func TestHistoryRecordsEveryEnding(t *testing.T) {
	c, rdb := newClient(t, nil)
	other, _ := newClient(t, nil)
	name := uniq(t)
	acquire := func(cl *lease.Client, holder string, ttl time.Duration) *lease.Lease {
		t.Helper()
		l, err := cl.Acquire(ctx, name, &lease.AcquireOptions{TTL: ttl, Holder: holder})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// 1: released, with the command's outcome.
	a := acquire(c, "a", 5*time.Second)
	if err := c.ReleaseWith(ctx, name, a.Token, &lease.Outcome{ExitCode: 3, Duration: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	// 2: expired, nobody watching: recorded at its own expiry.
	b := acquire(c, "b", 100*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	// 3: handed over to a waiter of another Client.
	d := acquire(c, "d", 5*time.Second)
	got := make(chan *lease.Lease, 1)
	go func() {
		l, err := other.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "e", Wait: 5 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	waitQueued(t, rdb, c, name, 1)
	if err := c.Release(ctx, name, d.Token); err != nil {
		t.Fatal(err)
	}
	e := <-got
	// 4: broken.
	if _, err := c.Break(ctx, name, &lease.BreakOptions{Reason: "test", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	f := acquire(c, "f", 5*time.Second)

	h, err := c.History(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		holder string
		fence  int64
		ending lease.Ending
	}
	var rows []row
	for _, r := range h {
		rows = append(rows, row{r.Holder, r.Fence, r.Ending})
	}
	want := []row{
		{"f", f.Fence, lease.Held}, {"e", e.Fence, lease.Broken}, {"d", d.Fence, lease.HandedOver},
		{"b", b.Fence, lease.Expired}, {"a", a.Fence, lease.Released},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("record %d: got %+v, want %+v", i, rows[i], want[i])
		}
	}
	if o := h[4].Outcome; o == nil || o.ExitCode != 3 || o.Duration != 1500*time.Millisecond {
		t.Errorf("a's outcome: got %+v, want exit code 3 after 1.5s", o)
	}
	if h[3].Outcome != nil {
		t.Errorf("b told no outcome, got %+v", h[3].Outcome)
	}
	// The expiry's time is the grant's own, not when a call found it.
	if exp := h[3].EndedAt.Sub(h[3].GrantedAt); exp != 100*time.Millisecond {
		t.Errorf("b: ended %v after its grant, want its TTL 100ms", exp)
	}
	for i, r := range h[1:] {
		if r.EndedAt.Before(r.GrantedAt) || r.Name != name {
			t.Errorf("record %d: %+v ends before it starts", i+1, r)
		}
	}
	if want := time.Until(f.ExpiresAt); h[0].EndedAt.Before(time.Now()) || want <= 0 {
		t.Errorf("the current grant's EndedAt %v is not its expiry", h[0].EndedAt)
	}
	if h, err := c.History(ctx, name, 2); err != nil || len(h) != 2 || h[1].Ending != lease.Broken {
		t.Errorf("limit 2: got %+v, %v, want the current and the broken", h, err)
	}
	if h, err := c.History(ctx, uniq(t), 0); err != nil || len(h) != 0 {
		t.Errorf("a name never used: got %+v, %v, want none", h, err)
	}
	for _, bad := range []int{-1, lease.MaxHistory + 2} {
		if _, err := c.History(ctx, name, bad); !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("limit %d: got %v, want invalid", bad, err)
		}
	}
}

func TestHistoryIsBoundedOrOff(t *testing.T) {
	for _, tt := range []struct {
		history, want int
	}{{3, 3}, {-1, 0}} {
		c, rdb := newClient(t, &lease.Options{History: tt.history})
		name := uniq(t)
		for range 30 {
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Release(ctx, name, l.Token); err != nil {
				t.Fatal(err)
			}
		}
		h, err := c.History(ctx, name, 0)
		if err != nil || len(h) != tt.want {
			t.Errorf("History %d: got %d records (%v), want %d", tt.history, len(h), err, tt.want)
		}
		// The list is trimmed once it is 16 longer than the history.
		if n, _ := rdb.LLen(ctx, "leasehold:{"+name+"}:h").Result(); n < int64(tt.want) || n > int64(tt.want)+16 {
			t.Errorf("History %d: the list holds %d, want %d to %d", tt.history, n, tt.want, tt.want+16)
		}
	}
}

func TestFinishWithTellsTheOutcome(t *testing.T) {
	c, _ := newClient(t, nil)
	for _, hold := range []time.Duration{0, 300 * time.Millisecond} {
		name := uniq(t)
		l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := lease.FinishWith(ctx, c, l, time.Now(), hold, &lease.Outcome{ExitCode: 1, Duration: time.Second}); err != nil {
			t.Fatal(err)
		}
		if hold > 0 {
			time.Sleep(hold + 100*time.Millisecond) // held to its end, then expired
		}
		h, err := c.History(ctx, name, 0)
		want := lease.Released
		if hold > 0 {
			want = lease.Expired
		}
		if err != nil || len(h) != 1 || h[0].Ending != want || h[0].Outcome == nil || h[0].Outcome.ExitCode != 1 || h[0].Outcome.Duration != time.Second {
			t.Fatalf("hold %v: got %+v, %v, want one %s record with exit code 1 after 1s", hold, h, err, want)
		}
	}
	name := uniq(t)
	l, _ := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second})
	for _, o := range []*lease.Outcome{{ExitCode: -1}, {ExitCode: 256}, {Duration: -time.Second}} {
		if err := c.ReleaseWith(ctx, name, l.Token, o); !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("%+v: got %v, want invalid", o, err)
		}
		if _, err := c.RenewWith(ctx, name, l.Token, 0, o); !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("renew %+v: got %v, want invalid", o, err)
		}
	}
	if _, err := c.Get(ctx, name); err != nil {
		t.Errorf("refused calls changed the lease: %v", err)
	}
}

func TestRedlockBreakAndHistory(t *testing.T) {
	r, _, _ := redlock(t)
	name := uniq(t)
	l, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second, Holder: "a"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Break(ctx, name, &lease.BreakOptions{Reason: "r", By: "ops"})
	if err != nil || rec.Fence != l.Fence || rec.Holder != "a" {
		t.Fatalf("Break: got %+v, %v, want a's grant of fence %d", rec, err, l.Fence)
	}
	if _, err := r.Renew(ctx, name, l.Token, 0); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("renew after the break: got %v, want not found", err)
	}
	if _, err := r.Break(ctx, name, &lease.BreakOptions{Reason: "r"}); !errors.Is(err, lease.ErrNotFound) {
		t.Errorf("second break: got %v, want not found", err)
	}
	l2, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 10 * time.Second})
	if err != nil || l2.Fence <= l.Fence {
		t.Fatalf("next grant: %+v, %v, want a fence above %d", l2, err, l.Fence)
	}
	if err := r.ReleaseWith(ctx, name, l2.Token, &lease.Outcome{ExitCode: 0, Duration: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	h, err := r.History(ctx, name, 0)
	if err != nil || len(h) != 2 || h[0].Ending != lease.Released || h[0].Outcome == nil || h[1].Ending != lease.Broken {
		t.Fatalf("got %+v, %v, want released (with outcome), then broken", h, err)
	}
}

// A Redlock round that misses quorum undoes its grants without recording
// them: the history shows only the Redlock's own grants. Found by review:
// with a master away during A's acquire, B's three failed acquires showed
// as three grants of B, released, and A's live grant was missing.
func TestRedlockHistoryHasNoUndoneGrants(t *testing.T) {
	r, nodes := redlockProxied(t, &lease.Options{RestartDelay: -1})
	name := uniq(t)
	nodes[2].proxy.Set(faultproxy.Refuse)
	a, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "A"})
	if err != nil {
		t.Fatal(err)
	}
	nodes[2].proxy.Set(faultproxy.Forward)
	for range 3 {
		if _, err := r.Acquire(ctx, name, &lease.AcquireOptions{TTL: 30 * time.Second, Holder: "B"}); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("B: got %v, want held by A", err)
		}
	}
	h, err := r.History(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h[0].Ending != lease.Held || h[0].Holder != "A" || h[0].Fence != a.Fence {
		t.Errorf("got %+v, want only A's live grant of fence %d", h, a.Fence)
	}

	// No faults: 4 goroutines race; every record is a grant Acquire returned.
	race := uniq(t)
	var (
		mu      sync.Mutex
		granted = map[int64]bool{}
		wg      sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for range 50 {
				l, err := r.Acquire(ctx, race, &lease.AcquireOptions{TTL: 5 * time.Second})
				if err == nil {
					mu.Lock()
					granted[l.Fence] = true
					mu.Unlock()
					r.Release(ctx, race, l.Token)
				}
			}
		})
	}
	wg.Wait()
	h, err = r.History(ctx, race, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range h {
		if !granted[rec.Fence] {
			t.Errorf("record %+v is of no grant that Acquire returned (%d grants)", rec, len(granted))
		}
	}
}

// A Redlock break that reaches fewer than a quorum of masters, while the
// others do not answer, is an error, not "broken": the holder keeps the
// lease on them. Found by review (an operator partitioned from two masters
// was told "broke" while the holder renewed).
func TestRedlockBreakOnAMinorityIsAnError(t *testing.T) {
	holder, nodes := redlockProxied(t, &lease.Options{RestartDelay: -1})
	name := uniq(t)
	l, err := holder.Acquire(ctx, name, &lease.AcquireOptions{TTL: 5 * time.Second, Holder: "H"})
	if err != nil {
		t.Fatal(err)
	}
	ucs := []redis.UniversalClient{nodes[0].direct}
	for _, i := range []int{1, 2} {
		p, err := faultproxy.New(nodes[i].srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		p.Set(faultproxy.Hang)
		c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
			ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, ContextTimeoutEnabled: true})
		t.Cleanup(func() { c.Close() })
		ucs = append(ucs, c)
	}
	op, err := lease.NewRedlock(ucs, &lease.Options{RestartDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithTimeout(ctx, time.Second)
	rec, err := op.Break(bctx, name, &lease.BreakOptions{Reason: "stuck"})
	cancel()
	var be *lease.BackendError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "fewer than the quorum") {
		t.Fatalf("got %+v, %v, want a *BackendError saying it broke fewer than a quorum", rec, err)
	}
	if _, err := holder.Renew(ctx, name, l.Token, 0); err != nil {
		t.Fatalf("the holder keeps a quorum, so its renew holds: %v", err)
	}
}
