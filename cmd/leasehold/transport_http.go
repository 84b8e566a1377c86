package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/leasehold/leasehold/httpapi"
	"github.com/leasehold/leasehold/lease"
)

// newHTTPClient returns the HTTP transport: a Leasehold server at server,
// with a bearer token when one is given.
func newHTTPClient(server, token string) (lease.Interface, func(), error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, usageErr(fmt.Errorf("--server %q: give an http:// or https:// URL, like http://127.0.0.1:7070", server))
	}
	c := httpapi.NewClient(server, &httpapi.ClientOptions{Token: token})
	return c, func() { c.Close() }, nil
}

// isAuthErr reports whether err is the server refusing the bearer token.
func isAuthErr(err error) bool {
	return errors.Is(err, httpapi.ErrUnauthorized) || errors.Is(err, httpapi.ErrForbidden)
}

// checkHold refuses a run --hold that lc would not grant, before anything
// is taken or run: when the command ends, the rest of the hold becomes the
// lease's TTL, and a TTL over the server's --max-ttl would be refused then,
// leaving the lease to expire within --ttl and the next run to start at
// once. A hold no longer than --ttl fits whenever the grant does.
func checkHold(ctx context.Context, lc lease.Interface, ttl, hold time.Duration) error {
	if hold <= ttl {
		return nil
	}
	b, err := boundsOf(ctx, lc)
	if err != nil || b.ttlFlag == "" || hold <= b.maxTTL {
		return err
	}
	return usageErr(fmt.Errorf("--hold %s is longer than the longest lease granted, %s (%s): give --hold %s or less",
		hold, b.maxTTL, b.ttlFlag, b.maxTTL))
}

// bounds are the longest TTL and wait that a transport grants, and what
// sets each; a flag is "" when the transport cannot tell (a server older
// than GET /v1/limits): then the answer alone says.
type bounds struct {
	maxTTL, maxWait   time.Duration
	ttlFlag, waitFlag string
}

// boundsOf asks a server for its --max-ttl and --max-wait, or reads the
// Redis client's own.
func boundsOf(ctx context.Context, lc lease.Interface) (bounds, error) {
	switch c := lc.(type) {
	case *httpapi.Client:
		l, err := c.Limits(ctx)
		var se *httpapi.StatusError
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			return bounds{}, nil
		}
		if err != nil {
			return bounds{}, err
		}
		return bounds{l.MaxTTL, l.MaxWait, "the server's --max-ttl", "the server's --max-wait"}, nil
	case interface {
		MaxTTL() time.Duration
		MaxWait() time.Duration
	}:
		return bounds{c.MaxTTL(), c.MaxWait(), "with --redis, the default --max-ttl", "with --redis, the longest wait of one call"}, nil
	}
	return bounds{}, nil
}

// acquireWaiting takes the lease, waiting as w says. A wait over the
// transport's bound is a usage error that names the bound; forever waits
// one bound at a time, again and again, until the lease is granted, an
// error other than "held" comes, or ctx ends.
func acquireWaiting(ctx context.Context, lc lease.Interface, name string, o lease.AcquireOptions, w waitFlag) (*lease.Lease, error) {
	o.Wait = w.d
	if w.d == 0 && !w.forever {
		return lc.Acquire(ctx, name, &o)
	}
	b, err := boundsOf(ctx, lc)
	if err != nil {
		return nil, err
	}
	if !w.forever {
		if b.waitFlag != "" && w.d > b.maxWait {
			return nil, usageErr(fmt.Errorf("--wait %s is longer than the longest wait, %s (%s): give --wait %s or less, or --wait forever",
				w.d, b.maxWait, b.waitFlag, b.maxWait))
		}
		return lc.Acquire(ctx, name, &o)
	}
	o.Wait = b.maxWait
	if b.waitFlag == "" {
		o.Wait = lease.DefaultMaxWait // a server too old to say: the usual bound
	}
	for {
		l, err := lc.Acquire(ctx, name, &o)
		var held *lease.HeldError
		if !errors.As(err, &held) || ctx.Err() != nil {
			return l, err
		}
	}
}
