package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/leasehold/leasehold/bench/rawlock"
	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// leaseTTL is the TTL of every lock taken; each cycle releases its own long before.
const leaseTTL = 10 * time.Second

// A cycleFunc is one caller's acquire+release of name. It returns
// errNotGranted when the lock was held (contended runs), which is not an error.
// On a grant it sets st's instants, which the handoff figure pairs up.
type cycleFunc func(ctx context.Context, name string, st *stamps) error

// stamps are the instants of one grant that the handoff figure needs: when
// the acquire returned it, and when its release began. Handoff is the next
// grant's granted less this one's releasing.
type stamps struct{ granted, releasing time.Time }

// mark sets st.granted to now and st.releasing to now, for a cycle that
// releases at once.
func (st *stamps) mark() {
	st.granted = time.Now()
	st.releasing = st.granted
}

var errNotGranted = errors.New("not granted")

// A driver is a lock library or server under test, opened for one measurement.
type driver struct {
	worker func() cycleFunc // a new caller's cycle
	sent   *cmdCounter      // commands the client sent to Redis; nil over HTTP
	close  func()
}

// An opener makes a driver for one measurement. wait > 0 asks for the
// contended mode: wait for the lock (in the library's own way) rather than try once.
type opener func(ctx context.Context, redisAddr string, wait time.Duration) (*driver, error)

// sdkVariant is one configuration of the lease SDK.
type sdkVariant struct {
	name string
	opts *lease.Options
}

// sdkVariants are the SDK configurations measured, each one set of
// lease.Options. Targets are checked for "sdk", the default; the ratio
// tables show every variant.
var sdkVariants = []sdkVariant{
	{name: "sdk"},
	{name: "sdk-plain", opts: &lease.Options{NoAutoPipeline: true}},
}

// serveVariant is one configuration of leasehold serve: extra flags.
type serveVariant struct {
	name string
	args []string
}

// serveVariants are the leasehold serve configurations measured, each its own
// process. Targets are checked for "serve", the default; the ratio tables
// show every variant.
var serveVariants = []serveVariant{
	{name: "serve"},
	{name: "serve-plain", args: []string{"--no-redis-autopipeline"}},
}

// newRedis is the go-redis client of one in-process measurement, with
// go-redis's defaults (a pool of 10 connections per GOMAXPROCS), as a user
// gets them, and a hook that counts the commands sent.
func newRedis(addr string) (*redis.Client, *cmdCounter) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	n := &cmdCounter{}
	rdb.AddHook(n)
	return rdb, n
}

func openSDK(opts *lease.Options) opener {
	return func(ctx context.Context, addr string, wait time.Duration) (*driver, error) {
		rdb, sent := newRedis(addr)
		c := lease.New(rdb, opts)
		if err := c.LoadScripts(ctx); err != nil {
			rdb.Close()
			return nil, err
		}
		cycle := func(ctx context.Context, name string, st *stamps) error {
			l, err := c.Acquire(ctx, name, &lease.AcquireOptions{TTL: leaseTTL, Wait: wait})
			if err != nil {
				if _, held := errors.AsType[*lease.HeldError](err); held {
					return errNotGranted
				}
				return err
			}
			st.mark()
			return c.Release(ctx, name, l.Token)
		}
		return &driver{
			worker: func() cycleFunc { return cycle },
			sent:   sent,
			close: func() {
				// A waiter whose wait the window's end cut short leaves
				// the queue in the background: let it, before the
				// Redis client goes.
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c.Settle(sctx)
				cancel()
				c.Close()
				rdb.Close()
			},
		}, nil
	}
}

func openRaw(ctx context.Context, addr string, wait time.Duration) (*driver, error) {
	if wait > 0 {
		return nil, errors.New("raw has no contended mode")
	}
	rdb, sent := newRedis(addr)
	if err := rawlock.Load(ctx, rdb); err != nil {
		rdb.Close()
		return nil, err
	}
	cycle := func(ctx context.Context, name string, st *stamps) error {
		key, token := "raw:{"+name+"}", rawlock.NewToken()
		ok, err := rawlock.Acquire(ctx, rdb, key, token, leaseTTL)
		if err != nil {
			return err
		}
		if !ok {
			return errNotGranted
		}
		st.mark()
		if ok, err = rawlock.Release(ctx, rdb, key, token); err == nil && !ok {
			err = errors.New("raw: release found another holder")
		}
		return err
	}
	return &driver{worker: func() cycleFunc { return cycle }, sent: sent, close: func() { rdb.Close() }}, nil
}

// openRedislock obtains without retries, or, contended, with a linear
// backoff of 10ms until the context ends.
func openRedislock(ctx context.Context, addr string, wait time.Duration) (*driver, error) {
	rdb, sent := newRedis(addr)
	locker := redislock.New(rdb)
	var opts *redislock.Options
	if wait > 0 {
		opts = &redislock.Options{RetryStrategy: redislock.LinearBackoff(10 * time.Millisecond)}
	}
	cycle := func(ctx context.Context, name string, st *stamps) error {
		l, err := locker.Obtain(ctx, "redislock:"+name, leaseTTL, opts)
		if errors.Is(err, redislock.ErrNotObtained) {
			return errNotGranted
		}
		if err != nil {
			return err
		}
		st.mark()
		return l.Release(ctx)
	}
	return &driver{worker: func() cycleFunc { return cycle }, sent: sent, close: func() { rdb.Close() }}, nil
}

// openRedsync tries once (TryLockContext) on a new mutex per name, or,
// contended, keeps one mutex per caller and locks it with redsync's default
// retries (32 tries, 50 to 250ms apart).
func openRedsync(ctx context.Context, addr string, wait time.Duration) (*driver, error) {
	rdb, sent := newRedis(addr)
	rs := redsync.New(goredis.NewPool(rdb))
	unlock := func(ctx context.Context, m *redsync.Mutex) error {
		ok, err := m.UnlockContext(ctx)
		if err == nil && !ok {
			err = errors.New("redsync: unlock found another holder")
		}
		return err
	}
	notGranted := func(err error) bool {
		_, taken := errors.AsType[*redsync.ErrTaken](err)
		return taken || errors.Is(err, redsync.ErrFailed)
	}
	worker := func() cycleFunc {
		return func(ctx context.Context, name string, st *stamps) error {
			m := rs.NewMutex("redsync:"+name, redsync.WithExpiry(leaseTTL))
			if err := m.TryLockContext(ctx); err != nil {
				if notGranted(err) {
					return errNotGranted
				}
				return err
			}
			st.mark()
			return unlock(ctx, m)
		}
	}
	if wait > 0 {
		worker = func() cycleFunc {
			var m *redsync.Mutex
			return func(ctx context.Context, name string, st *stamps) error {
				if m == nil {
					m = rs.NewMutex("redsync:"+name, redsync.WithExpiry(leaseTTL))
				}
				if err := m.LockContext(ctx); err != nil {
					if notGranted(err) {
						return errNotGranted
					}
					return err
				}
				st.mark()
				return unlock(ctx, m)
			}
		}
	}
	return &driver{worker: worker, sent: sent, close: func() { rdb.Close() }}, nil
}

// openHTTP drives a server over HTTP keep-alive with a plain net/http
// client, as a user without the SDK would: POST acquire with {"ttl":"10s"},
// decode the token, POST release with it. Leasehold serve and the naive
// server answer the same routes, so both get the very same client.
func openHTTP(base string) opener {
	return func(ctx context.Context, _ string, wait time.Duration) (*driver, error) {
		if wait > 0 {
			return nil, errors.New("HTTP drivers have no contended mode")
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 1024, 1024
		hc := &http.Client{Transport: tr}
		cycle := func(ctx context.Context, name string, st *stamps) error {
			var grant struct {
				Token string `json:"token"`
			}
			if err := postJSON(ctx, hc, base+"/v1/leases/"+name+"/acquire", map[string]string{"ttl": "10s"}, &grant); err != nil {
				return err
			}
			st.mark()
			return postJSON(ctx, hc, base+"/v1/leases/"+name+"/release", map[string]string{"token": grant.Token}, nil)
		}
		return &driver{worker: func() cycleFunc { return cycle }, close: tr.CloseIdleConnections}, nil
	}
}

// postJSON posts in as JSON and decodes a 200 into out (when not nil). A 409
// is errNotGranted.
func postJSON(ctx context.Context, hc *http.Client, url string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusConflict:
		return errNotGranted
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(data))
	case out != nil:
		return json.Unmarshal(data, out)
	}
	return nil
}
