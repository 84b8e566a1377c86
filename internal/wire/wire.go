// Package wire holds what the Leasehold HTTP server and its Go client share:
// the JSON bodies of API version 1, the error codes and the headers. Both
// sides use these types, so they cannot disagree on a field name.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// The JSON bodies of API version 1. The server writes them and the client
// reads them, so the two cannot disagree on a field name.

// Grant answers acquire and renew: the only body with a token.
type Grant struct {
	Name      string `json:"name"`
	Holder    string `json:"holder"`
	Token     string `json:"token"`
	Fence     int64  `json:"fence"`
	TTLMs     int64  `json:"ttl_ms"`
	ExpiresAt string `json:"expires_at"`
	Metadata  string `json:"metadata"`
}

// Lease answers get and is an item of list: a grant without its token,
// and how many wait for it.
type Lease struct {
	Name      string `json:"name"`
	Holder    string `json:"holder"`
	Fence     int64  `json:"fence"`
	TTLMs     int64  `json:"ttl_ms"`
	ExpiresAt string `json:"expires_at"`
	Metadata  string `json:"metadata"`
	Waiting   int    `json:"waiting"`
}

type Release struct {
	Name     string `json:"name"`
	Released bool   `json:"released"`
}

type Verify struct {
	Name  string `json:"name"`
	Valid bool   `json:"valid"`
	Fence int64  `json:"fence"`
	TTLMs int64  `json:"ttl_ms"`
}

type List struct {
	Leases     []Lease `json:"leases"`
	NextCursor string  `json:"next_cursor"`
}

// Record is one grant of a name's history (GET .../history). EndedAt and
// Ending are absent for the current grant, ExpiresAt for an ended one;
// By and Reason are a break's; ExitCode and DurationMs what its holder
// told of the command it ran (leasehold run).
type Record struct {
	Holder     string  `json:"holder"`
	Fence      int64   `json:"fence"`
	GrantedAt  string  `json:"granted_at"`
	Ending     string  `json:"ending"`
	EndedAt    *string `json:"ended_at,omitempty"`
	ExpiresAt  *string `json:"expires_at,omitempty"`
	By         string  `json:"by,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	ExitCode   *int    `json:"exit_code,omitempty"`
	DurationMs *int64  `json:"duration_ms,omitempty"`
}

// History answers GET /v1/leases/{name}/history: newest first.
type History struct {
	Name    string   `json:"name"`
	History []Record `json:"history"`
}

// Broken answers POST /v1/leases/{name}/break: the grant it ended.
type Broken struct {
	Name   string `json:"name"`
	Broken bool   `json:"broken"`
	Record
}

// Limits answers GET /v1/limits: the server's bounds.
type Limits struct {
	MinTTLMs  int64 `json:"min_ttl_ms"`
	MaxTTLMs  int64 `json:"max_ttl_ms"`
	MaxWaitMs int64 `json:"max_wait_ms"`
}

// Auth answers GET /v1/auth: whether auth is on and, when it is, what the
// caller's bearer token may do. Access and Prefixes are empty with auth off.
type Auth struct {
	Auth     bool     `json:"auth"`
	Access   string   `json:"access,omitempty"`
	Prefixes []string `json:"prefixes,omitempty"`
}

type Status struct {
	Status string `json:"status"`
}

// Error is every error. Name, Holder, Fence and TTLMs are set for
// lease_held and not_holder; MayHaveApplied for backend_unavailable.
type Error struct {
	Error          string  `json:"error"`
	Message        string  `json:"message"`
	Name           string  `json:"name,omitempty"`
	Holder         *string `json:"holder,omitempty"`
	Fence          int64   `json:"fence,omitempty"`
	TTLMs          *int64  `json:"ttl_ms,omitempty"`
	MayHaveApplied *bool   `json:"may_have_applied,omitempty"`
}

// TimeFormat is RFC 3339 with milliseconds, always in UTC.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

func NewGrant(l *lease.Lease) Grant {
	return Grant{
		Name: l.Name, Holder: l.Holder, Token: l.Token, Fence: l.Fence,
		TTLMs: l.TTL.Milliseconds(), ExpiresAt: FormatTime(l.ExpiresAt), Metadata: l.Metadata,
	}
}

func NewLease(l *lease.Lease) Lease {
	return Lease{
		Name: l.Name, Holder: l.Holder, Fence: l.Fence,
		TTLMs: l.TTL.Milliseconds(), ExpiresAt: FormatTime(l.ExpiresAt), Metadata: l.Metadata, Waiting: l.Waiting,
	}
}

func (b *Grant) Lease() (*lease.Lease, error) {
	t, err := time.Parse(time.RFC3339Nano, b.ExpiresAt)
	if err != nil {
		return nil, err
	}
	return &lease.Lease{
		Name: b.Name, Holder: b.Holder, Token: b.Token, Fence: b.Fence,
		TTL: time.Duration(b.TTLMs) * time.Millisecond, ExpiresAt: t, Metadata: b.Metadata,
	}, nil
}

func (b *Lease) Lease() (*lease.Lease, error) {
	g := Grant{Name: b.Name, Holder: b.Holder, Fence: b.Fence, TTLMs: b.TTLMs, ExpiresAt: b.ExpiresAt, Metadata: b.Metadata}
	l, err := g.Lease()
	if l != nil {
		l.Waiting = b.Waiting
	}
	return l, err
}

// NewRecord is r's body.
func NewRecord(r *lease.Record) Record {
	b := Record{Holder: r.Holder, Fence: r.Fence, GrantedAt: FormatTime(r.GrantedAt), Ending: string(r.Ending), By: r.By, Reason: r.Reason}
	at := FormatTime(r.EndedAt)
	if r.Ending == lease.Held {
		b.ExpiresAt = &at
	} else {
		b.EndedAt = &at
	}
	if o := r.Outcome; o != nil {
		code, ms := o.ExitCode, o.Duration.Milliseconds()
		b.ExitCode, b.DurationMs = &code, &ms
	}
	return b
}

// Record reads the body of a record of name.
func (b *Record) Record(name string) (lease.Record, error) {
	r := lease.Record{Name: name, Holder: b.Holder, Fence: b.Fence, Ending: lease.Ending(b.Ending), By: b.By, Reason: b.Reason}
	var err error
	if r.GrantedAt, err = time.Parse(time.RFC3339Nano, b.GrantedAt); err != nil {
		return r, err
	}
	at := b.EndedAt
	if at == nil {
		at = b.ExpiresAt
	}
	if at == nil {
		return r, errors.New("a history record with neither ended_at nor expires_at")
	}
	if r.EndedAt, err = time.Parse(time.RFC3339Nano, *at); err != nil {
		return r, err
	}
	if b.ExitCode != nil {
		r.Outcome = &lease.Outcome{ExitCode: *b.ExitCode}
		if b.DurationMs != nil {
			r.Outcome.Duration = time.Duration(*b.DurationMs) * time.Millisecond
		}
	}
	return r, nil
}

// Marshal encodes v with a trailing newline, as curl users expect, and
// without HTML escaping: bodies are read by people and programs, never
// embedded in a page, and "<token>" must not read "\u003ctoken\u003e".
func Marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // only for types that cannot be encoded: none of the above
		return []byte(`{"error":"internal","message":"the response could not be encoded"}` + "\n")
	}
	return b.Bytes()
}

// Error codes of the API, the "error" field of every error body. The codes
// of bad input are lease's: lease.CodeInvalidName, CodeInvalidTTL,
// CodeInvalidToken and CodeInvalidRequest.
const (
	CodeLeaseHeld          = "lease_held"
	CodeNotHolder          = "not_holder"
	CodeNotFound           = "not_found"
	CodeUnauthorized       = "unauthorized"
	CodeForbidden          = "forbidden"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodePayloadTooLarge    = "payload_too_large"
	CodeBackendUnavailable = "backend_unavailable"
	CodeShuttingDown       = "shutting_down"
	CodeInternal           = "internal"
)

// RouteNotFound starts the message of a 404 for a path that is no route,
// so that the client can tell it from a lease that is not found.
const RouteNotFound = "no such route"

// HeaderSentAfter is the response header of a granted acquire: how many
// microseconds after the server got the request it sent the Redis call
// that granted it.
const HeaderSentAfter = "Leasehold-Sent-After-Us"

// DefaultRedisTimeout is the server's bound of each Redis call unless
// configured otherwise (leasehold serve's --redis-timeout).
const DefaultRedisTimeout = 2 * time.Second

// HolderText is a holder for a message: quoted, or "an unnamed holder".
func HolderText(h string) string {
	if h == "" {
		return "an unnamed holder"
	}
	return strconv.Quote(h)
}
