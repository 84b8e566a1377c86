package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
)

func init() {
	// The event stream is text, which the document declares as a string.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.FileBodyDecoder)
}

// sse is one Server-Sent Event as read off the wire.
type sse struct {
	id, event string
	data      map[string]any
	at        time.Time // when the test read it
}

// stream opens GET path (with headers "K: V") and delivers its events
// until the answer ends; the channel closes then. cancel ends it.
func stream(t *testing.T, e *env, path string, headers ...string) (<-chan sse, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(bg)
	req, err := http.NewRequestWithContext(ctx, "GET", e.ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("got %d %s, want 200 text/event-stream", res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := make(chan sse, 100)
	go func() {
		defer close(out)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var cur sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					cur.at = time.Now()
					out <- cur
				}
				cur = sse{}
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				json.Unmarshal([]byte(line[6:]), &cur.data)
			}
		}
	}()
	t.Cleanup(cancel)
	return out, cancel
}

func nextSSE(t *testing.T, ch <-chan sse, within time.Duration) sse {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("the stream ended")
		}
		return e
	case <-time.After(within):
		t.Fatalf("no event within %s", within)
	}
	return sse{}
}

// brief is an event's kind, name, holder and fence, to compare.
func brief(e sse) string {
	h, _ := e.data["holder"].(string)
	n, _ := e.data["name"].(string)
	f, _ := e.data["fence"].(float64)
	return e.event + " " + n + " " + h + " " + strings.TrimSuffix(strings.TrimSuffix(jsonNum(f), ".0"), "")
}

func jsonNum(f float64) string { b, _ := json.Marshal(int64(f)); return string(b) }

// An acquire, renew, release and break over HTTP yield exactly those
// events, in order, with their fields; a resume with Last-Event-ID gets
// exactly the ones after it.
func TestEventsStream(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	ch, _ := stream(t, e, "/v1/events?prefix="+name)
	g := e.do("POST", "/v1/leases/"+name+"/acquire?ttl=20s&holder=web-1", "")
	tok, fence := g.str("token"), g.num("fence")
	e.do("POST", "/v1/leases/"+name+"/renew?ttl=30s&token="+tok, "")
	e.do("POST", "/v1/leases/"+name+"/release?token="+tok, "")
	g2 := e.do("POST", "/v1/leases/"+name+"/acquire?ttl=20s", "")
	e.do("POST", "/v1/leases/"+name+"/break?reason=stuck", "")
	f, f2 := jsonNum(float64(fence)), jsonNum(float64(g2.num("fence")))
	want := []string{
		"granted " + name + " web-1 " + f, "renewed " + name + " web-1 " + f, "released " + name + " web-1 " + f,
		"granted " + name + "  " + f2, "broken " + name + "  " + f2,
	}
	var got []sse
	for i := range want {
		ev := nextSSE(t, ch, 3*time.Second)
		got = append(got, ev)
		if b := brief(ev); b != want[i] {
			t.Errorf("event %d: got %q, want %q", i, b, want[i])
		}
		if _, err := time.Parse(wire.TimeFormat, ev.data["at"].(string)); err != nil || ev.id == "" {
			t.Errorf("event %d: got at %v, id %q, want an RFC 3339 time and an id", i, ev.data["at"], ev.id)
		}
		if _, ok := ev.data["token"]; ok {
			t.Errorf("event %d has a token", i)
		}
	}
	if got[0].data["ttl_ms"] != float64(20000) || got[1].data["ttl_ms"] != float64(30000) || got[4].data["reason"] != "stuck" {
		t.Errorf("got %v, %v, %v: want ttl_ms 20000, 30000 and reason stuck", got[0].data, got[1].data, got[4].data)
	}
	for _, h := range [][]string{{"Last-Event-ID: " + got[1].id}, nil} {
		path := "/v1/events?prefix=" + name
		if h == nil {
			path += "&last_event_id=" + got[1].id
		}
		rch, cancel := stream(t, e, path, h...)
		for i := 2; i < len(want); i++ {
			if b := brief(nextSSE(t, rch, 3*time.Second)); b != want[i] {
				t.Errorf("resumed, event %d: got %q, want %q", i, b, want[i])
			}
		}
		select {
		case ev := <-rch:
			t.Errorf("resumed: got %+v after the missed ones, want nothing more", ev)
		case <-time.After(200 * time.Millisecond):
		}
		cancel()
	}
	// An id older than the window: missed first.
	mch, _ := stream(t, e, "/v1/events?prefix="+name, "Last-Event-ID: 1-0")
	if ev := nextSSE(t, mch, 3*time.Second); ev.event != "missed" {
		t.Errorf("got %q first, want missed", ev.event)
	}
}

// An expiry while a stream is connected is told within a second of it.
func TestEventsExpiredOnTime(t *testing.T) {
	e := newEnv(t, nil)
	name := uniq(t)
	ch, _ := stream(t, e, "/v1/events?prefix="+name)
	g := e.do("POST", "/v1/leases/"+name+"/acquire?ttl=500ms&holder=h", "")
	expires, err := time.Parse(wire.TimeFormat, g.str("expires_at"))
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextSSE(t, ch, 3*time.Second); ev.event != "granted" {
		t.Fatalf("got %s, want granted", ev.event)
	}
	ev := nextSSE(t, ch, 3*time.Second)
	if ev.event != "expired" || ev.data["fence"] != float64(g.num("fence")) {
		t.Fatalf("got %s %v, want expired of fence %d", ev.event, ev.data, g.num("fence"))
	}
	if late := ev.at.Sub(expires); late > time.Second+300*time.Millisecond {
		t.Errorf("got the expired event %s after the expiry, want within 1s (+300ms slack)", late)
	} else {
		t.Logf("expired event %s after the expiry", late)
	}
	if at := ev.data["at"]; at != g.str("expires_at") {
		t.Errorf("got at %v, want the grant's expiry %s", at, g.str("expires_at"))
	}
	if h := e.do("GET", "/v1/leases/"+name+"/history", ""); !strings.Contains(string(h.body), `"expired"`) {
		t.Errorf("got history %s, want the expiry recorded", h.body)
	}
}

// Stop ends every stream; a stream's request then answers no more events.
func TestEventsEndOnStop(t *testing.T) {
	e := newEnv(t, nil)
	ch, _ := stream(t, e, "/v1/events?prefix="+uniq(t))
	if m := e.do("GET", "/metrics", ""); !strings.Contains(string(m.body), "\nleasehold_event_streams 1\n") {
		t.Errorf("got no leasehold_event_streams 1 in /metrics with one stream connected")
	}
	e.srv.Stop()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("got an event, want the stream's end")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the stream did not end within 3s of Stop")
	}
	if r := e.do("GET", "/v1/events", ""); r.status != 503 {
		t.Errorf("after Stop: got %d, want 503", r.status)
	}
}

// Nobody watching, the scripts write no stream.
func TestEventsNoStreamUnwatched(t *testing.T) {
	rs := redistest.Start(t) // of its own: no other test watches it
	e := newEnv(t, &envOptions{redis: rs})
	name := uniq(t)
	g := e.do("POST", "/v1/leases/"+name+"/acquire?ttl=20s", "")
	e.do("POST", "/v1/leases/"+name+"/release?token="+g.str("token"), "")
	if n, _ := e.rdb.Exists(bg, "leasehold:events").Result(); n != 0 {
		t.Fatal("got an events stream, want none: nobody watched")
	}
	_ = lease.EventWindow
}

// The stream needs read access covering its prefix.
func TestEventsAuth(t *testing.T) {
	a := newEnv(t, &envOptions{auth: authFile()})
	if r := a.do("GET", "/v1/events?prefix=jobs:", ""); r.status != 401 {
		t.Errorf("no token: got %d, want 401", r.status)
	}
	if r := a.do("GET", "/v1/events", "", "Authorization: Bearer "+writerToken); r.status != 403 {
		t.Errorf("a token of prefixes, all names: got %d, want 403", r.status)
	}
	ch, cancel := stream(t, a, "/v1/events?prefix=jobs:", "Authorization: Bearer "+writerToken)
	cancel()
	for range ch {
	}
}

// The HTTP client reads the stream into lease events, and resumes.
func TestClientEvents(t *testing.T) {
	e := newEnv(t, nil)
	c := httpapi.NewClient(e.ts.URL, nil)
	name := uniq(t)
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	ch, err := c.Events(ctx, name, "")
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Acquire(bg, name, &lease.AcquireOptions{TTL: 20 * time.Second, Holder: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(bg, name, l.Token); err != nil {
		t.Fatal(err)
	}
	recv := func(ch <-chan lease.Event) lease.Event {
		select {
		case ev := <-ch:
			return ev
		case <-time.After(3 * time.Second):
			t.Fatal("no event within 3s")
		}
		return lease.Event{}
	}
	g, r := recv(ch), recv(ch)
	if g.Kind != lease.Granted || g.Name != name || g.Holder != "h" || g.Fence != l.Fence || g.TTL != 20*time.Second || g.At.IsZero() {
		t.Errorf("got %+v, want granted of fence %d", g, l.Fence)
	}
	if r.Kind != lease.ReleasedKind || r.Fence != l.Fence {
		t.Errorf("got %+v, want released", r)
	}
	ch2, err := c.Events(ctx, name, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(ch2); ev.ID != r.ID {
		t.Errorf("resumed: got %+v, want the release %s", ev, r.ID)
	}
	if _, err := c.Events(ctx, name, "nope"); err == nil {
		t.Error("a bad id: got no error")
	}
	cancel()
	for range ch {
	}
}
