package main

import (
	"errors"
	"fmt"
	"net/url"

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
