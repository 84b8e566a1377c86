// Package httpclient is the Go client of a Leasehold server's HTTP API. It
// has the methods and typed errors of lease.Client (it satisfies
// lease.Interface, so lease.Keep, lease.Do and lease.Election work over it)
// and pulls in neither echo nor Prometheus: a program that only talks to a
// server imports this package alone. httpapi.NewClient is the same client.
package httpclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
)

// DefaultTimeout bounds each call of a Client unless Options.Timeout
// says otherwise. A waiting acquire adds its wait.
const DefaultTimeout = 10 * time.Second

// Options configure a Client. A nil *Options is the zero value.
type Options struct {
	// Token is sent as "Authorization: Bearer <Token>" when set.
	Token string
	// HTTPClient sends the requests. Default: a client of its own over
	// http.DefaultTransport's settings.
	HTTPClient *http.Client
	// Timeout bounds each call; an acquire with a wait gets the wait on top.
	// Default 10s.
	Timeout time.Duration
}

// Client is a Leasehold server's API, with the methods and typed errors of
// lease.Client: a 409 lease_held is a *lease.HeldError with the remaining
// TTL, not_holder a *lease.NotHolderError, 404 a *lease.NotFoundError, 400
// a *lease.InvalidError, 503 a *lease.BackendError, 401 and 403 an
// *AuthError; any other answer is a *StatusError. A request that cannot
// reach the server is a *lease.BackendError too, and a cancelled context
// an error that wraps ctx.Err(). It is safe for concurrent use.
type Client struct {
	base    string // without a trailing slash
	auth    string // "Bearer <token>" or ""
	hc      *http.Client
	timeout time.Duration
	undo    lease.Undoer // grants of unknown outcome made with tokens of this Client's making
}

var (
	_ lease.Interface = (*Client)(nil)
	_ lease.Recorder  = (*Client)(nil)
)

// New returns a Client of the server at baseURL, like
// "http://127.0.0.1:7070".
func New(baseURL string, opts *Options) *Client {
	var o Options
	if opts != nil {
		o = *opts
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: o.HTTPClient, timeout: o.Timeout}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if o.Token != "" {
		c.auth = "Bearer " + o.Token
	}
	// The server may still be running its call of an acquire this client
	// gave up on, bounded by its --redis-timeout (default 2s): an undo goes
	// on until then, so that its release cannot overtake that call.
	c.undo.Grace = wire.DefaultRedisTimeout + time.Second
	return c
}

// Close closes the idle connections of the client's transport.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Acquire takes the lease name; see lease.Client.Acquire.
func (c *Client) Acquire(ctx context.Context, name string, opts *lease.AcquireOptions) (*lease.Lease, error) {
	var o lease.AcquireOptions
	if opts != nil {
		o = *opts
	}
	if err := lease.ValidateName(name); err != nil {
		return nil, err
	}
	if o.Wait < 0 {
		return nil, &lease.InvalidError{Code: lease.CodeInvalidRequest, Message: "the wait is negative: use 0 to wait not at all"}
	}
	// The token is made here rather than by the server, so that a call
	// whose outcome is unknown (a timeout, a cancel) can be undone: only
	// this process knows it.
	ownToken := o.Token == ""
	if ownToken {
		o.Token = lease.NewToken()
	}
	p := map[string]string{}
	if o.TTL != 0 {
		p["ttl"] = o.TTL.String()
	}
	if o.Holder != "" {
		p["holder"] = o.Holder
	}
	if o.Token != "" {
		p["token"] = o.Token
	}
	if o.Metadata != "" {
		p["metadata"] = o.Metadata
	}
	if o.Wait > 0 {
		p["wait"] = o.Wait.String()
	}
	var (
		g   wire.Grant
		hdr http.Header
	)
	sent := time.Now()
	if err := c.callHeader(ctx, "acquire", http.MethodPost, "/v1/leases/"+name+"/acquire", p, o.Wait, &g, &hdr); err != nil {
		if ownToken && lease.Unknown(err) {
			ttl := o.TTL
			if ttl == 0 {
				ttl = lease.DefaultTTL
			}
			c.undo.Undo(c, name, o.Token, ttl, nil)
		}
		return nil, err
	}
	l, err := c.grant(&g, "acquire")
	if err != nil {
		return nil, err
	}
	// The server says how long after it got the request it sent the call
	// that granted it; without that (an older server), only the send time
	// is sure.
	l.Sent = sent
	if us, err := strconv.ParseInt(hdr.Get(wire.HeaderSentAfter), 10, 64); err == nil && us > 0 {
		l.Sent = sent.Add(time.Duration(us) * time.Microsecond)
	}
	return l, nil
}

// Settle waits until every grant this Client is undoing in the background
// is undone (or has surely expired), or ctx ends; see lease.Client.Settle.
func (c *Client) Settle(ctx context.Context) error { return c.undo.Wait(ctx) }

// Renew extends the lease for the holder of token; see lease.Client.Renew.
func (c *Client) Renew(ctx context.Context, name, token string, ttl time.Duration) (*lease.Lease, error) {
	return c.renew(ctx, name, token, ttl, nil)
}

func (c *Client) renew(ctx context.Context, name, token string, ttl time.Duration, o *lease.Outcome) (*lease.Lease, error) {
	if err := lease.ValidateName(name); err != nil {
		return nil, err
	}
	p := map[string]string{"token": token}
	if ttl != 0 {
		p["ttl"] = ttl.String()
	}
	addOutcome(p, o)
	var g wire.Grant
	sent := time.Now()
	if err := c.call(ctx, "renew", http.MethodPost, "/v1/leases/"+name+"/renew", p, 0, &g); err != nil {
		return nil, err
	}
	l, err := c.grant(&g, "renew")
	if l != nil {
		l.Sent = sent
	}
	return l, err
}

// Release deletes the lease for the holder of token; see lease.Client.Release.
func (c *Client) Release(ctx context.Context, name, token string) error {
	return c.ReleaseWith(ctx, name, token, nil)
}

// ReleaseWith is Release, and tells the name's history how the holder's
// work ended (nil: nothing); see lease.Client.ReleaseWith.
func (c *Client) ReleaseWith(ctx context.Context, name, token string, o *lease.Outcome) error {
	if err := lease.ValidateName(name); err != nil {
		return err
	}
	p := map[string]string{"token": token}
	addOutcome(p, o)
	var r wire.Release
	return c.call(ctx, "release", http.MethodPost, "/v1/leases/"+name+"/release", p, 0, &r)
}

// RenewWith is Renew, and keeps o for the history's record of the grant;
// see lease.Client.RenewWith.
func (c *Client) RenewWith(ctx context.Context, name, token string, ttl time.Duration, o *lease.Outcome) (*lease.Lease, error) {
	return c.renew(ctx, name, token, ttl, o)
}

// addOutcome puts o into a request's parameters.
func addOutcome(p map[string]string, o *lease.Outcome) {
	if o != nil {
		p["exit_code"] = strconv.Itoa(o.ExitCode)
		p["duration"] = o.Duration.String()
	}
}

// Break ends the current grant of name whoever holds it; see
// lease.Client.Break. The server needs a token with admin access; it
// records the token (never its secret) as who broke it, whatever opts.By
// says.
func (c *Client) Break(ctx context.Context, name string, opts *lease.BreakOptions) (*lease.Record, error) {
	if err := lease.ValidateName(name); err != nil {
		return nil, err
	}
	var o lease.BreakOptions
	if opts != nil {
		o = *opts
	}
	p := map[string]string{"reason": o.Reason}
	if o.Fence != 0 {
		p["fence"] = strconv.FormatInt(o.Fence, 10)
	}
	var b wire.Broken
	if err := c.call(ctx, "break", http.MethodPost, "/v1/leases/"+name+"/break", p, 0, &b); err != nil {
		return nil, err
	}
	r, err := b.Record.Record(name)
	if err != nil {
		return nil, c.malformed("break", err)
	}
	return &r, nil
}

// History answers name's grants, newest first, at most limit (0: all the
// server keeps); see lease.Client.History.
func (c *Client) History(ctx context.Context, name string, limit int) ([]lease.Record, error) {
	if err := lease.ValidateName(name); err != nil {
		return nil, err
	}
	path := "/v1/leases/" + name + "/history"
	if limit != 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var b wire.History
	if err := c.call(ctx, "history", http.MethodGet, path, nil, 0, &b); err != nil {
		return nil, err
	}
	out := make([]lease.Record, 0, len(b.History))
	for i := range b.History {
		r, err := b.History[i].Record(name)
		if err != nil {
			return nil, c.malformed("history", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Get reads the lease name, never its token; see lease.Client.Get.
func (c *Client) Get(ctx context.Context, name string) (*lease.Lease, error) {
	if err := lease.ValidateName(name); err != nil {
		return nil, err
	}
	var b wire.Lease
	if err := c.call(ctx, "get", http.MethodGet, "/v1/leases/"+name, nil, 0, &b); err != nil {
		return nil, err
	}
	l, err := b.Lease()
	if err != nil {
		return nil, c.malformed("get", err)
	}
	return l, nil
}

// Verify checks that proof is the current grant of name; see
// lease.Client.Verify. The Lease returned carries the name, fence and
// remaining TTL (the API answers no more).
func (c *Client) Verify(ctx context.Context, name string, proof lease.Proof) (*lease.Lease, error) {
	if err := lease.ValidateName(name); err != nil {
		return nil, err
	}
	p := map[string]string{}
	if proof.Token != "" {
		p["token"] = proof.Token
	}
	if proof.Fence != 0 {
		p["fence"] = strconv.FormatInt(proof.Fence, 10)
	}
	var v wire.Verify
	if err := c.call(ctx, "verify", http.MethodPost, "/v1/leases/"+name+"/verify", p, 0, &v); err != nil {
		return nil, err
	}
	return &lease.Lease{Name: v.Name, Fence: v.Fence, TTL: time.Duration(v.TTLMs) * time.Millisecond}, nil
}

// List returns a page of leases; see lease.Client.List.
func (c *Client) List(ctx context.Context, opts *lease.ListOptions) (*lease.Page, error) {
	var o lease.ListOptions
	if opts != nil {
		o = *opts
	}
	q := url.Values{}
	if o.Prefix != "" {
		q.Set("prefix", o.Prefix)
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	path := "/v1/leases"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var b wire.List
	if err := c.call(ctx, "list", http.MethodGet, path, nil, 0, &b); err != nil {
		return nil, err
	}
	page := &lease.Page{Leases: make([]lease.Lease, 0, len(b.Leases)), NextCursor: b.NextCursor}
	for i := range b.Leases {
		l, err := b.Leases[i].Lease()
		if err != nil {
			return nil, c.malformed("list", err)
		}
		page.Leases = append(page.Leases, *l)
	}
	return page, nil
}

// Limits are a server's bounds: the TTLs it grants (MinTTL to its
// --max-ttl) and the longest wait it accepts (--max-wait).
type Limits struct {
	MinTTL, MaxTTL, MaxWait time.Duration
}

// Limits asks the server for its bounds (GET /v1/limits). A server older
// than that route answers a *StatusError with Status 404.
func (c *Client) Limits(ctx context.Context) (*Limits, error) {
	var b wire.Limits
	if err := c.call(ctx, "limits", http.MethodGet, "/v1/limits", nil, 0, &b); err != nil {
		return nil, err
	}
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	return &Limits{MinTTL: ms(b.MinTTLMs), MaxTTL: ms(b.MaxTTLMs), MaxWait: ms(b.MaxWaitMs)}, nil
}

// Ping checks that the server is ready: that it answers and its Redis does
// (GET /readyz).
func (c *Client) Ping(ctx context.Context) error {
	var s wire.Status
	return c.call(ctx, "ping", http.MethodGet, "/readyz", nil, 0, &s)
}

func (c *Client) grant(g *wire.Grant, op string) (*lease.Lease, error) {
	l, err := g.Lease()
	if err != nil {
		return nil, c.malformed(op, err)
	}
	return l, nil
}

func (c *Client) malformed(op string, err error) error {
	return &lease.BackendError{Op: op, Backend: serverBackend, Err: fmt.Errorf("the server's answer is malformed: %w", err)}
}

// call sends one request and decodes a 200 into out, or turns the answer
// into a typed error. params go as a JSON body.
func (c *Client) call(ctx context.Context, op, method, path string, params map[string]string, wait time.Duration, out any) error {
	return c.callHeader(ctx, op, method, path, params, wait, out, nil)
}

// callHeader is call that also returns the answer's header in hdr.
func (c *Client) callHeader(ctx context.Context, op, method, path string, params map[string]string, wait time.Duration, out any, hdr *http.Header) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.timeout+wait)
	defer cancel()
	var body io.Reader
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("httpclient: %s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportErr(parent, op, method, err)
	}
	defer resp.Body.Close()
	if hdr != nil {
		*hdr = resp.Header
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return transportErr(parent, op, method, err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return c.malformed(op, err)
		}
		return nil
	}
	return decodeError(op, resp, data)
}

// serverBackend is what a BackendError of this client says did not answer,
// unless the server itself answered that its Redis did not.
const serverBackend = "the Leasehold server"

// transportErr is a request that got no answer. The caller's own
// cancellation or deadline is returned wrapping ctx.Err(); the client's
// timeout and network failures are *lease.BackendError.
func transportErr(parent context.Context, op, method string, err error) error {
	if parent.Err() != nil {
		return fmt.Errorf("httpclient: %s: %w", op, parent.Err())
	}
	write := method == http.MethodPost && op != "verify"
	return &lease.BackendError{Op: op, Backend: serverBackend, MayHaveApplied: write && !neverSent(err), Err: err}
}

// neverSent reports whether err shows that the request never left: the
// connection to the server could not be made.
func neverSent(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// decodeError turns a non-200 answer into the error the lease package would
// give.
func decodeError(op string, resp *http.Response, data []byte) error {
	var b wire.Error
	if err := json.Unmarshal(data, &b); err != nil || b.Error == "" {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return &StatusError{Status: resp.StatusCode, Message: msg}
	}
	ttl := time.Duration(0)
	if b.TTLMs != nil {
		ttl = time.Duration(*b.TTLMs) * time.Millisecond
	}
	holder := ""
	if b.Holder != nil {
		holder = *b.Holder
	}
	switch {
	case resp.StatusCode == http.StatusConflict && b.Error == wire.CodeLeaseHeld:
		return &lease.HeldError{Name: b.Name, Holder: holder, Fence: b.Fence, TTL: ttl}
	case resp.StatusCode == http.StatusConflict && b.Error == wire.CodeNotHolder:
		return &lease.NotHolderError{Name: b.Name, Holder: holder, Fence: b.Fence, TTL: ttl}
	case resp.StatusCode == http.StatusNotFound && b.Error == wire.CodeNotFound && !strings.HasPrefix(b.Message, wire.RouteNotFound) &&
		nameFromPath(resp.Request.URL.Path) != "":
		return &lease.NotFoundError{Name: nameFromPath(resp.Request.URL.Path)}
	case resp.StatusCode == http.StatusBadRequest:
		return &lease.InvalidError{Code: b.Error, Message: b.Message}
	case resp.StatusCode == http.StatusServiceUnavailable:
		applied := b.MayHaveApplied != nil && *b.MayHaveApplied
		return &lease.BackendError{Op: op, MayHaveApplied: applied, Err: fmt.Errorf("%s: %s", b.Error, b.Message)}
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return &AuthError{Status: resp.StatusCode, Code: b.Error, Message: b.Message}
	}
	return &StatusError{Status: resp.StatusCode, Code: b.Error, Message: b.Message}
}

// nameFromPath is NAME of [/base]/v1/leases/NAME[/verb], or "" for a path
// of no lease.
func nameFromPath(p string) string {
	i := strings.LastIndex(p, "/v1/leases/")
	if i < 0 {
		return ""
	}
	name, _, _ := strings.Cut(p[i+len("/v1/leases/"):], "/")
	if lease.ValidateName(name) != nil {
		return ""
	}
	return name
}

// Errors of the HTTP client that lease has no type for.

var (
	// ErrUnauthorized is matched by an *AuthError of status 401.
	ErrUnauthorized = errors.New("httpclient: unauthorized")
	// ErrForbidden is matched by an *AuthError of status 403.
	ErrForbidden = errors.New("httpclient: forbidden")
)

// AuthError is a 401 or 403 answer: no, or a wrong, bearer token (401,
// ErrUnauthorized), or a token whose scope does not cover the name (403,
// ErrForbidden).
type AuthError struct {
	Status  int
	Code    string
	Message string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("httpclient: %s (%d): %s", e.Code, e.Status, e.Message)
}

// Is reports whether target is ErrUnauthorized (for a 401) or ErrForbidden (for a 403).
func (e *AuthError) Is(target error) bool {
	return target == ErrUnauthorized && e.Status == http.StatusUnauthorized ||
		target == ErrForbidden && e.Status == http.StatusForbidden
}

// StatusError is any other answer the client cannot turn into a lease
// error: 413 payload_too_large, 405, a 500, or a body that is not the API's.
type StatusError struct {
	Status  int
	Code    string // the "error" field, "" if the body had none
	Message string
}

func (e *StatusError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("httpclient: the server answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	}
	return fmt.Sprintf("httpclient: the server answered %d %s: %s", e.Status, e.Code, e.Message)
}
