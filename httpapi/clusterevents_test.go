package httpapi_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
)

// GET /v1/events works on a Redis Cluster (the Client polls every master):
// a grant, its release and a short grant's expiry on names of different
// slots come as their events, the expiry recorded in the history; a resume
// starts with missed, since no poll keeps the past.
func TestEventsOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	lc := lease.New(rdb, nil)
	if err := lc.LoadScripts(bg); err != nil {
		t.Fatal(err)
	}
	srv := httpapi.New(lc, &httpapi.Options{RedisTimeout: 2 * time.Second})
	ts := httptest.NewServer(&conform{t: t, spec: docSpec(t), next: srv})
	t.Cleanup(ts.Close)
	e := &env{t: t, srv: srv, ts: ts, lc: lc}

	ch, _ := stream(t, e, "/v1/events?prefix=ce:")
	names := []string{"ce:a", "ce:b", "ce:c", "ce:d"}
	for _, name := range names {
		e.do("POST", "/v1/leases/"+name+"/acquire?ttl=400ms&holder=h", "")
	}
	seen := map[string][]string{}
	var lastID string
	for len(seen) < len(names) || anyShort(seen, 2) {
		ev := nextSSE(t, ch, 2*time.Second)
		name, _ := ev.data["name"].(string)
		seen[name] = append(seen[name], ev.event)
		lastID = ev.id
	}
	for _, name := range names {
		if got := seen[name]; len(got) != 2 || got[0] != "granted" || got[1] != "expired" {
			t.Errorf("%s: got %v, want [granted expired]", name, got)
		}
		if h := e.do("GET", "/v1/leases/"+name+"/history", ""); !strings.Contains(string(h.body), `"expired"`) {
			t.Errorf("history of %s: got %s, want the expiry recorded", name, h.body)
		}
	}
	r := e.do("POST", "/v1/leases/ce:a/acquire?ttl=1m", "")
	if ev := nextSSE(t, ch, 2*time.Second); ev.event != "granted" || ev.data["name"] != "ce:a" {
		t.Fatalf("got %s %v, want granted of ce:a", ev.event, ev.data)
	}
	e.do("POST", "/v1/leases/ce:a/release?token="+r.str("token"), "")
	if ev := nextSSE(t, ch, 2*time.Second); ev.event != "released" || ev.data["name"] != "ce:a" {
		t.Fatalf("got %s %v, want released of ce:a", ev.event, ev.data)
	}
	rch, _ := stream(t, e, "/v1/events?prefix=ce:", "Last-Event-ID: "+lastID)
	if ev := nextSSE(t, rch, 2*time.Second); ev.event != "missed" {
		t.Errorf("resume: got %s, want missed", ev.event)
	}
}

func anyShort(seen map[string][]string, n int) bool {
	for _, s := range seen {
		if len(s) < n {
			return true
		}
	}
	return false
}
