package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

const (
	adminToken  = "dash-admin-token-0123456789"
	writerToken = "dash-writer-token-0123456789"
)

// server is a Leasehold API server with auth on, over a real redis-server.
// With events, that answers GET /v1/events in its place.
func server(t *testing.T, events http.Handler) string {
	t.Helper()
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	lc := lease.New(rdb, nil)
	if err := lc.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	auth, err := httpapi.ParseAuth(strings.NewReader(adminToken + " admin jobs:\n" + writerToken + " write jobs:\n"))
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = httpapi.New(lc, &httpapi.Options{Auth: auth, Logger: slog.New(slog.DiscardHandler)})
	if events != nil {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		mux.Handle("GET /v1/events", events)
		h = mux
	}
	ts := httptest.NewUnstartedServer(h)
	ts.Listener = httpapi.Listener(ts.Listener)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.URL
}

// call sends one API request with token and answers its status and JSON body.
func call(t *testing.T, method, url, token string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: body %q is not JSON", method, url, b)
	}
	return res.StatusCode, m
}

// chromium is the browser's path. The test fails without one: the
// dashboard's promise is that it is tested in a real browser, and a skip
// would let CI pass without that.
func chromium(t *testing.T) string {
	for _, name := range []string{os.Getenv("LEASEHOLD_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium found: install it (apt-get install -y chromium; scripts/test does) or set LEASEHOLD_CHROMIUM")
	return ""
}

// browser is a headless chromium tab; the test fails on any uncaught
// exception of the page's script.
func browser(t *testing.T) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // the tests may run as root, where chromium's sandbox does not start
		chromedp.WindowSize(1280, 760),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	var thrown []string
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			thrown = append(thrown, fmt.Sprintf("%s (line %d)", msg, d.LineNumber+1))
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		for _, s := range thrown {
			t.Errorf("the page threw: %s", s)
		}
		mu.Unlock()
		cancelT()
		cancelC()
		cancelA()
	})
	return ctx
}

// eval runs js in the page and answers its value.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// within polls the boolean js until it is true, and fails after d.
func within(t *testing.T, ctx context.Context, d time.Duration, what, js string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if eval[bool](t, ctx, js) {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func row(name string) string { return fmt.Sprintf(`document.querySelector('tr[data-name=%q]')`, name) }

// signIn types token and the prefix jobs: into the page and applies them,
// and waits until the page knows the token's access.
func signIn(t *testing.T, ctx context.Context, token, access string) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("token"), token),
		chromedp.SetValue(chromedp.ID("prefix"), "jobs:"),
		chromedp.Click(chromedp.ID("apply")),
	); err != nil {
		t.Fatal(err)
	}
	within(t, ctx, 2*time.Second, "the page shows the token's access",
		fmt.Sprintf(`document.getElementById('who').textContent.includes(%q)`, "token: "+access))
}

// screenshot saves the viewport to docs/NAME when LEASEHOLD_SCREENSHOTS=1.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("LEASEHOLD_SCREENSHOTS") != "1" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDashboard opens the page in headless chromium on a real server and
// Redis and checks what an operator relies on: a lease acquired through
// the API appears within 1 s, its TTL bar runs down, a release removes it,
// the feed tells both, an admin's break ends it with the reason in the
// history, and a writer gets no break button.
func TestDashboard(t *testing.T) {
	t.Parallel()
	url := server(t, nil)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/"), chromedp.WaitVisible(chromedp.ID("leases"))); err != nil {
		t.Fatal(err)
	}
	signIn(t, ctx, adminToken, "admin")

	// Appears within 1 s of its grant.
	st, grant := call(t, "POST", url+"/v1/leases/jobs:nightly-report/acquire?ttl=6s&holder=cron@web-1", writerToken)
	if st != 200 {
		t.Fatalf("acquire: got %d %v, want 200", st, grant)
	}
	took := within(t, ctx, time.Second, "the acquired lease appears", row("jobs:nightly-report")+` !== null`)
	t.Logf("the lease appeared %s after its grant", took.Round(time.Millisecond))
	cells := eval[[]string](t, ctx, `[...`+row("jobs:nightly-report")+`.cells].slice(0, 5).map(c => c.textContent)`)
	fence := strconv.FormatFloat(grant["fence"].(float64), 'f', -1, 64)
	if len(cells) != 5 || cells[1] != "cron@web-1" || cells[2] != fence || cells[4] != "0" {
		t.Errorf("got cells %q, want name, holder cron@web-1, fence %s, a TTL, waiting 0", cells, fence)
	}

	// The TTL bar runs down between two reads.
	width := row("jobs:nightly-report") + `.querySelector('.bar > span').getBoundingClientRect().width`
	w1 := eval[float64](t, ctx, width)
	time.Sleep(400 * time.Millisecond)
	w2 := eval[float64](t, ctx, width)
	if !(w2 < w1) || w1 <= 0 {
		t.Errorf("TTL bar: got width %.1f then %.1f 400ms later, want it to shrink", w1, w2)
	}

	// Some more leases, with a waiter, for the picture and the break.
	for _, l := range []struct{ name, q string }{
		{"jobs:backup-db", "ttl=45s&holder=db-2"},
		{"jobs:reindex", "ttl=20s&holder=worker-7"},
		{"jobs:stuck-sync", "ttl=10m&holder=worker-3"},
	} {
		st, body := call(t, "POST", url+"/v1/leases/"+l.name+"/acquire?"+l.q, writerToken)
		if st != 200 {
			t.Fatalf("acquire %s: got %d %v", l.name, st, body)
		}
	}
	waitCtx, stopWaiting := context.WithCancel(context.Background())
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		req, _ := http.NewRequestWithContext(waitCtx, "POST", url+"/v1/leases/jobs:backup-db/acquire?wait=30s&holder=db-3", nil)
		req.Header.Set("Authorization", "Bearer "+writerToken)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	t.Cleanup(func() { stopWaiting(); <-waited })
	within(t, ctx, 2*time.Second, "the waiter shows", row("jobs:backup-db")+`?.querySelector('.waiting').textContent === '1'`)
	screenshot(t, ctx, "dashboard.png")

	// A release removes it, and the feed (from polls: this server has no
	// event stream yet, or from the stream when it has) tells it.
	if st, body := call(t, "POST", url+"/v1/leases/jobs:nightly-report/release?token="+grant["token"].(string), writerToken); st != 200 {
		t.Fatalf("release: got %d %v, want 200", st, body)
	}
	within(t, ctx, time.Second, "the released lease goes", row("jobs:nightly-report")+` === null`)
	within(t, ctx, time.Second, "the feed tells the grant",
		`document.querySelector('#feed li[data-event=granted][data-name="jobs:reindex"]') !== null`)
	within(t, ctx, time.Second, "the feed tells the end",
		`document.querySelector('#feed li[data-event=ended][data-name="jobs:nightly-report"], #feed li[data-event=released][data-name="jobs:nightly-report"]') !== null`)

	// An admin breaks a lease with a reason: it goes, and its history
	// says broken, with the reason.
	stuck := row("jobs:stuck-sync")
	within(t, ctx, time.Second, "the break button shows", stuck+`.querySelector('button.break') !== null`)
	eval[bool](t, ctx, stuck+`.querySelector('button.break').click(), true`)
	eval[bool](t, ctx, stuck+`.querySelector('input.reason').value = 'worker-3 hung on NFS', true`)
	eval[bool](t, ctx, stuck+`.querySelector('button.confirm-break').click(), true`)
	within(t, ctx, 2*time.Second, "the broken lease goes", stuck+` === null`)
	if st, _ := call(t, "GET", url+"/v1/leases/jobs:stuck-sync", adminToken); st != 404 {
		t.Errorf("GET the broken lease: got %d, want 404", st)
	}
	// The name is no longer listed: open its history as a click would.
	eval[bool](t, ctx, `showHistory("jobs:stuck-sync"), true`)
	within(t, ctx, 2*time.Second, "the history shows the break",
		`(r => r !== null && r.dataset.ending === 'broken' && r.querySelector('.reason').textContent === 'worker-3 hung on NFS')(document.querySelector('#histrows tr'))`)
	screenshot(t, ctx, "dashboard-history.png")

	// A writer gets no break button, and a break it forces through is
	// refused, with the server's message shown.
	signIn(t, ctx, writerToken, "write")
	within(t, ctx, time.Second, "the writer sees the leases", row("jobs:reindex")+` !== null`)
	if buttons := eval[int](t, ctx, `document.querySelectorAll('button.break').length`); buttons != 0 {
		t.Errorf("with a write token: got %d break buttons, want none", buttons)
	}
	// Were the button there, the server's refusal would be shown: make
	// the page believe it may break, and try.
	reindex := row("jobs:reindex")
	eval[bool](t, ctx, `state.auth = {auth: true, access: "admin", prefixes: ["*"]}, renderActions("jobs:reindex", state.rows.get("jobs:reindex")), true`)
	eval[bool](t, ctx, reindex+`.querySelector('button.break').click(), true`)
	eval[bool](t, ctx, reindex+`.querySelector('input.reason').value = 'try', true`)
	eval[bool](t, ctx, reindex+`.querySelector('button.confirm-break').click(), true`)
	within(t, ctx, 2*time.Second, "the refusal shows with the server's message",
		reindex+`.querySelector('.breakerr').textContent.startsWith('403 forbidden: breaking a lease needs a token with admin access')`)
	if st, _ := call(t, "GET", url+"/v1/leases/jobs:reindex", writerToken); st != 200 {
		t.Errorf("after a refused break: got %d, want the lease still there (200)", st)
	}
}

// TestDashboardReadsTheEventStream serves GET /v1/events as Server-Sent
// Events, in pieces that split the lines, and checks that the page reads
// it with the viewer's token (the stream answers 401 without), shows its events in the feed, and resumes
// with Last-Event-ID after the stream ends.
func TestDashboardReadsTheEventStream(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var lastIDs []string // of the streams served
	events := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+adminToken {
			// As the server answers without a valid token (the page's first
			// load, before the viewer signs in).
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"unauthorized","message":"no Authorization header"}`)
			return
		}
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		n := len(lastIDs)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		f := w.(http.Flusher)
		f.Flush()
		if n > 1 {
			<-r.Context().Done() // the second stream stays open, with nothing new
			return
		}
		for _, piece := range []string{
			": hello\n\nid: 7\nevent: gra", "nted\ndata: {\"name\":\"jobs:a\",\"holder\":\"h-1\",\"fence\":41,\"at\":\"2026-01-01T00:00:00.000Z\",\"ttl_ms\":30000}\n",
			"\nid: 8\r\nevent: broken\r\ndata: {\"name\":\"jobs:a\",\"holder\":\"h-1\",\"fence\":41,\"at\":\"2026-01-01T00:00:01.000Z\",\"by\":\"ops\",\"reason\":\"stuck\"}\r\n\r\n",
		} {
			io.WriteString(w, piece)
			f.Flush()
			time.Sleep(50 * time.Millisecond)
		}
	})
	url := server(t, events)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/"), chromedp.WaitVisible(chromedp.ID("leases"))); err != nil {
		t.Fatal(err)
	}
	signIn(t, ctx, adminToken, "admin")
	within(t, ctx, 2*time.Second, "the feed says live", `document.getElementById('feedmode').textContent === 'live'`)
	within(t, ctx, 2*time.Second, "the feed shows the grant", `document.querySelector('#feed li[data-event=granted][data-name="jobs:a"]') !== null`)
	within(t, ctx, 2*time.Second, "the feed shows the break and its reason",
		`(li => li !== null && li.textContent.includes('reason: stuck') && li.textContent.includes('by ops'))(document.querySelector('#feed li[data-event=broken]'))`)
	// The first stream ended: the page comes back with the last id.
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), lastIDs...)
		mu.Unlock()
		if len(got) == 2 && got[0] == "" && got[1] == "8" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got Last-Event-ID headers %q, want a reconnection with 8", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
