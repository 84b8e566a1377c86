package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/redistest"
)

func TestAcquireWaitIsGrantedOnRelease(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	base := "/v1/leases/" + name
	g := e.do("POST", base+"/acquire?ttl=30s&holder=a", "").want(t, 200, "")
	got := make(chan *resp, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.ts.URL+base+"/acquire?wait=10s&holder=b", nil)
		got <- doReq(t, req)
	}()
	waitFor(t, func() bool { return strings.Contains(metricsText(t, e), "leasehold_waiting_acquires 1") })
	start := time.Now()
	e.do("POST", base+"/release?token="+g.str("token"), "").want(t, 200, "")
	r := <-got
	r.want(t, 200, "")
	if r.str("holder") != "b" || r.num("fence") <= g.num("fence") {
		t.Errorf("got %s, want holder b with a fence above %d", r.body, g.num("fence"))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the waiter was granted %v after the release, want promptly", d)
	}
	if !strings.Contains(metricsText(t, e), `leasehold_waits_total{result="granted"} 1`) {
		t.Errorf("metrics: want one granted wait")
	}
}

func TestAcquireWaitThatElapsesIs409(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	e.do("POST", "/v1/leases/"+name+"/acquire?ttl=3s&holder=a", "").want(t, 200, "")
	start := time.Now()
	r := e.do("POST", "/v1/leases/"+name+"/acquire?wait=1500ms", "").want(t, 409, "lease_held")
	if d := time.Since(start); d < 1500*time.Millisecond || d > 4*time.Second {
		t.Errorf("got the 409 after %v, want after the 1.5s wait", d)
	}
	// ttl_ms and Retry-After say what is left when the wait ends (about
	// 1.5s of the 3s lease), not what the first attempt saw.
	if r.str("holder") != "a" || r.header.Get("Retry-After") != "2" || r.num("ttl_ms") > 1520 || r.num("ttl_ms") <= 0 {
		t.Errorf("got %s (Retry-After %q), want holder a, ttl_ms about 1500 and Retry-After 2", r.body, r.header.Get("Retry-After"))
	}
}

func TestWaitingAcquireGets503ShuttingDownOnStop(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	base := "/v1/leases/" + name
	e.do("POST", base+"/acquire?ttl=30s", "").want(t, 200, "")
	got := make(chan *resp, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.ts.URL+base+"/acquire?wait=1m", nil)
		got <- doReq(t, req)
	}()
	waitFor(t, func() bool { return strings.Contains(metricsText(t, e), "leasehold_waiting_acquires 1") })
	start := time.Now()
	e.srv.Stop()
	r := <-got
	r.want(t, 503, "shutting_down")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the waiter answered %v after Stop, want promptly", d)
	}
	// After Stop, a new wait is refused at once; a plain request still works.
	e.do("POST", base+"/acquire?wait=5s", "").want(t, 503, "shutting_down")
	e.do("GET", base, "").want(t, 200, "")
}

func TestWaitingClientThatGoesAwayLeavesNothing(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	base := "/v1/leases/" + name
	e.do("POST", base+"/acquire?ttl=30s", "").want(t, 200, "")
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", e.ts.URL+base+"/acquire?wait=1m", nil)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	waitFor(t, func() bool { return strings.Contains(metricsText(t, e), "leasehold_waiting_acquires 1") })
	cancel()
	if err := <-done; err == nil {
		t.Errorf("got an answer, want the request cancelled")
	}
	waitFor(t, func() bool { return strings.Contains(metricsText(t, e), "leasehold_waiting_acquires 0") })
	if !strings.Contains(metricsText(t, e), `leasehold_waits_total{result="canceled"} 1`) {
		t.Errorf("metrics: want one canceled wait")
	}
}

func TestPausedRedisAnswers503Promptly(t *testing.T) {
	rs := redistest.Start(t)
	e := newEnv(t, &envOptions{redis: rs, redisTimeout: 300 * time.Millisecond})
	name := uniq(t)
	base := "/v1/leases/" + name
	g := e.do("POST", base+"/acquire?ttl=30s", "").want(t, 200, "")
	e.do("GET", "/readyz", "").want(t, 200, "")
	rs.Pause()
	defer rs.Resume()
	for _, tc := range []struct {
		method, path string
		applied      any
	}{
		{"POST", base + "/acquire", true},
		{"POST", base + "/renew?token=" + g.str("token"), true},
		{"POST", base + "/release?token=" + g.str("token"), true},
		{"GET", base, false},
		{"POST", base + "/verify?fence=1", false},
		{"GET", "/v1/leases", false},
		{"GET", "/readyz", false},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			start := time.Now()
			r := e.do(tc.method, tc.path, "").want(t, 503, "backend_unavailable")
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Errorf("answered after %v, want within about the 300ms redis timeout", d)
			}
			if r.json["may_have_applied"] != tc.applied {
				t.Errorf("got may_have_applied %v, want %v (%s)", r.json["may_have_applied"], tc.applied, r.body)
			}
			if strings.Contains(string(r.body), g.str("token")) {
				t.Errorf("got the token in %s", r.body)
			}
		})
	}
	e.do("GET", "/healthz", "").want(t, 200, "")
	rs.Resume()
	waitFor(t, func() bool {
		req, _ := http.NewRequest("GET", e.ts.URL+"/readyz", nil)
		return doReq(t, req).status == 200
	})
}

func TestReadyzAfterRedisRestartReloadsScripts(t *testing.T) {
	rs := redistest.Start(t)
	e := newEnv(t, &envOptions{redis: rs})
	e.do("GET", "/readyz", "").want(t, 200, "")
	rs.Kill()
	e.do("GET", "/readyz", "").want(t, 503, "backend_unavailable")
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		req, _ := http.NewRequest("GET", e.ts.URL+"/readyz", nil)
		return doReq(t, req).status == 200
	})
}

// waitFor polls cond until it holds, failing the test after 5s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func metricsText(t testing.TB, e *env) string {
	req, _ := http.NewRequest("GET", e.ts.URL+"/metrics", nil)
	return string(doReq(t, req).body)
}

func TestWaitingAcquireOnPausedRedisAnswers503BeforeItsWaitEnds(t *testing.T) {
	rs := redistest.Start(t)
	e := newEnv(t, &envOptions{redis: rs, redisTimeout: 300 * time.Millisecond})
	name := uniq(t)
	e.do("POST", "/v1/leases/"+name+"/acquire?ttl=30s", "").want(t, 200, "")
	got := make(chan *resp, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.ts.URL+"/v1/leases/"+name+"/acquire?wait=30s", nil)
		got <- doReq(t, req)
	}()
	waitFor(t, func() bool { return strings.Contains(metricsText(t, e), "leasehold_waiting_acquires 1") })
	rs.Pause()
	defer rs.Resume()
	select {
	case r := <-got:
		r.want(t, 503, "backend_unavailable")
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting acquire on a paused Redis did not answer within 10s (its wait is 30s)")
	}
}
