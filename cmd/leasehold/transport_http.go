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
	max, bound, err := maxTTL(ctx, lc)
	if err != nil || bound == "" || hold <= max {
		return err
	}
	return usageErr(fmt.Errorf("--hold %s is longer than the longest lease granted, %s (%s): give --hold %s or less",
		hold, max, bound, max))
}

// maxTTL is the longest TTL that lc grants, and what sets it: a server's
// --max-ttl, which it is asked for, or the Redis client's own bound. bound
// is "" when lc cannot tell (a server older than GET /v1/limits): then the
// grant alone says.
func maxTTL(ctx context.Context, lc lease.Interface) (max time.Duration, bound string, err error) {
	switch c := lc.(type) {
	case *httpapi.Client:
		l, err := c.Limits(ctx)
		var se *httpapi.StatusError
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			return 0, "", nil
		}
		if err != nil {
			return 0, "", err
		}
		return l.MaxTTL, "the server's --max-ttl", nil
	case interface{ MaxTTL() time.Duration }:
		return c.MaxTTL(), "with --redis, the default --max-ttl", nil
	}
	return 0, "", nil
}
