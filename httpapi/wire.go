package httpapi

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// The JSON bodies of API version 1. The server writes them and the client
// reads them, so the two cannot disagree on a field name.

// grantBody answers acquire and renew: the only body with a token.
type grantBody struct {
	Name      string `json:"name"`
	Holder    string `json:"holder"`
	Token     string `json:"token"`
	Fence     int64  `json:"fence"`
	TTLMs     int64  `json:"ttl_ms"`
	ExpiresAt string `json:"expires_at"`
	Metadata  string `json:"metadata"`
}

// leaseBody answers get and is an item of list: a grant without its token.
type leaseBody struct {
	Name      string `json:"name"`
	Holder    string `json:"holder"`
	Fence     int64  `json:"fence"`
	TTLMs     int64  `json:"ttl_ms"`
	ExpiresAt string `json:"expires_at"`
	Metadata  string `json:"metadata"`
}

type releaseBody struct {
	Name     string `json:"name"`
	Released bool   `json:"released"`
}

type verifyBody struct {
	Name  string `json:"name"`
	Valid bool   `json:"valid"`
	Fence int64  `json:"fence"`
	TTLMs int64  `json:"ttl_ms"`
}

type listBody struct {
	Leases     []leaseBody `json:"leases"`
	NextCursor string      `json:"next_cursor"`
}

// limitsBody answers GET /v1/limits: the server's bounds.
type limitsBody struct {
	MinTTLMs  int64 `json:"min_ttl_ms"`
	MaxTTLMs  int64 `json:"max_ttl_ms"`
	MaxWaitMs int64 `json:"max_wait_ms"`
}

type statusBody struct {
	Status string `json:"status"`
}

// errorBody is every error. Name, Holder, Fence and TTLMs are set for
// lease_held and not_holder; MayHaveApplied for backend_unavailable.
type errorBody struct {
	Error          string  `json:"error"`
	Message        string  `json:"message"`
	Name           string  `json:"name,omitempty"`
	Holder         *string `json:"holder,omitempty"`
	Fence          int64   `json:"fence,omitempty"`
	TTLMs          *int64  `json:"ttl_ms,omitempty"`
	MayHaveApplied *bool   `json:"may_have_applied,omitempty"`
}

// timeFormat is RFC 3339 with milliseconds, always in UTC.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func newGrantBody(l *lease.Lease) grantBody {
	return grantBody{
		Name: l.Name, Holder: l.Holder, Token: l.Token, Fence: l.Fence,
		TTLMs: l.TTL.Milliseconds(), ExpiresAt: formatTime(l.ExpiresAt), Metadata: l.Metadata,
	}
}

func newLeaseBody(l *lease.Lease) leaseBody {
	return leaseBody{
		Name: l.Name, Holder: l.Holder, Fence: l.Fence,
		TTLMs: l.TTL.Milliseconds(), ExpiresAt: formatTime(l.ExpiresAt), Metadata: l.Metadata,
	}
}

func (b *grantBody) lease() (*lease.Lease, error) {
	t, err := time.Parse(time.RFC3339Nano, b.ExpiresAt)
	if err != nil {
		return nil, err
	}
	return &lease.Lease{
		Name: b.Name, Holder: b.Holder, Token: b.Token, Fence: b.Fence,
		TTL: time.Duration(b.TTLMs) * time.Millisecond, ExpiresAt: t, Metadata: b.Metadata,
	}, nil
}

func (b *leaseBody) lease() (*lease.Lease, error) {
	g := grantBody{Name: b.Name, Holder: b.Holder, Fence: b.Fence, TTLMs: b.TTLMs, ExpiresAt: b.ExpiresAt, Metadata: b.Metadata}
	return g.lease()
}

// marshal encodes v with a trailing newline, as curl users expect, and
// without HTML escaping: bodies are read by people and programs, never
// embedded in a page, and "<token>" must not read "\u003ctoken\u003e".
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // only for types that cannot be encoded: none of the above
		return []byte(`{"error":"internal","message":"the response could not be encoded"}` + "\n")
	}
	return b.Bytes()
}
