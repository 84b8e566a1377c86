package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/internal/faultproxy"
	"github.com/leasehold/leasehold/internal/redistest"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// shared is one real redis-server for the tests that need no server of
// their own; they keep apart by lease name.
var shared *redistest.Server

func TestMain(m *testing.M) {
	var err error
	shared, err = redistest.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

var bg = context.Background()

// env is one API server under test over a real Redis.
type env struct {
	t    testing.TB
	srv  *httpapi.Server
	ts   *httptest.Server
	rdb  *redis.Client // to look at the keys directly
	lc   *lease.Client
	logs *logBuffer
	// proxy is between the server and Redis when envOptions.proxy is set.
	proxy *faultproxy.Proxy
}

type envOptions struct {
	redis        *redistest.Server // default shared
	auth         string            // auth file text; "" for no auth
	redisTimeout time.Duration
	maxWait      time.Duration
	proxy        bool // put a faultproxy between the server and Redis
	// censusInterval and censusLimit are the server's Options'.
	censusInterval time.Duration
	censusLimit    int
}

// redisClient is a go-redis client set up as leasehold serve sets it up.
func redisClient(t testing.TB, addr string, timeout time.Duration) *redis.Client {
	rdb := redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func newEnv(t testing.TB, o *envOptions) *env {
	t.Helper()
	if o == nil {
		o = &envOptions{}
	}
	rs := o.redis
	if rs == nil {
		rs = shared
	}
	if o.redisTimeout == 0 {
		o.redisTimeout = 2 * time.Second
	}
	addr := rs.Addr()
	var proxy *faultproxy.Proxy
	if o.proxy {
		var err error
		if proxy, err = faultproxy.New(addr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(proxy.Close)
		addr = proxy.Addr()
	}
	rdb := redisClient(t, addr, o.redisTimeout)
	lc := lease.New(rdb, &lease.Options{MaxWait: o.maxWait})
	if err := lc.LoadScripts(bg); err != nil {
		t.Fatal(err)
	}
	var auth *httpapi.Auth
	if o.auth != "" {
		var err error
		if auth, err = httpapi.ParseAuth(strings.NewReader(o.auth)); err != nil {
			t.Fatal(err)
		}
	}
	logs := &logBuffer{}
	srv := httpapi.New(lc, &httpapi.Options{
		Auth: auth, RedisTimeout: o.redisTimeout, CensusInterval: o.censusInterval, CensusLimit: o.censusLimit,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	// Every request and answer is checked against openapi.json.
	// The listener and header limit are leasehold serve's.
	ts := httptest.NewUnstartedServer(&conform{t: t, spec: docSpec(t), next: srv})
	ts.Listener = httpapi.Listener(ts.Listener)
	ts.Config.MaxHeaderBytes = httpapi.MaxHeaderBytes
	ts.Start()
	t.Cleanup(ts.Close)
	return &env{t: t, srv: srv, ts: ts, rdb: redisClient(t, rs.Addr(), 5*time.Second), lc: lc, logs: logs, proxy: proxy}
}

// resp is an answer read whole.
type resp struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (r *resp) str(k string) string {
	s, _ := r.json[k].(string)
	return s
}

func (r *resp) num(k string) int64 {
	n, _ := r.json[k].(json.Number)
	i, _ := n.Int64()
	return i
}

// do sends method path with body ("" for none) and headers as "K: V" strings.
func (e *env) do(method, path, body string, headers ...string) *resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	return doReq(e.t, req)
}

func doReq(t testing.TB, req *http.Request) *resp {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := &resp{status: res.StatusCode, header: res.Header, body: b}
	// The dashboard's page (GET /) is HTML, /metrics Prometheus text.
	page := req.Method == http.MethodGet && req.URL.Path == "/" && res.StatusCode == http.StatusOK
	if page {
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("%s %s: got Content-Type %q, want text/html", req.Method, req.URL.Path, ct)
		}
		return r
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(req.URL.Path, "/metrics") {
		t.Errorf("%s %s: got Content-Type %q, want application/json", req.Method, req.URL.Path, ct)
	}
	if !strings.HasPrefix(req.URL.Path, "/metrics") {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&r.json); err != nil {
			t.Errorf("%s %s: body %q is not a JSON object: %v", req.Method, req.URL.Path, b, err)
		}
	}
	return r
}

// want checks the status and, for errors, the error code.
func (r *resp) want(t testing.TB, status int, code string) *resp {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %d %q (%s), want %d %q", r.status, r.str("error"), r.body, status, code)
	}
	if code != "" && r.str("message") == "" {
		t.Errorf("got error body %s without a message", r.body)
	}
	return r
}

// uniq turns a test name into a valid, unique lease name.
func uniq(t testing.TB) string {
	r := strings.NewReplacer("/", ".", " ", "_", "#", "-", "(", "", ")", "", "'", "", "\"", "", ",", "", "=", "")
	return r.Replace(t.Name()) + "." + strconv.FormatInt(runs.Add(1), 10)
}

// runs counts uniq's calls, so a test run again (-count=N) gets new names.
var runs atomic.Int64

// anyJSON decodes b for a schema check.
func anyJSON(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return v
}

// live is 1 when the lease hash key holds a live grant, else 0: the
// EXISTS of the lease, whose key outlives it by the fence retention.
func live(rdb redis.Scripter, key string) (int64, error) {
	ok, err := redistest.LeaseLive(context.Background(), rdb, key)
	if ok {
		return 1, err
	}
	return 0, err
}
