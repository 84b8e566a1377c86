package httpapi

import (
	"net/url"
	"testing"
)

func TestRedactedURI(t *testing.T) {
	for _, tt := range []struct{ uri, want string }{
		{"/v1/leases/a/acquire", "/v1/leases/a/acquire"},
		{"/v1/leases/a/acquire?ttl=5s&holder=web-1", "/v1/leases/a/acquire?ttl=5s&holder=web-1"},
		{"/v1/leases/a/release?token=s3cret", "/v1/leases/a/release?token=REDACTED"},
		{"/v1/leases/a/release?%74oken=s3cret", "/v1/leases/a/release?token=REDACTED"},
		{"/v1/leases/a/release?%74%6F%6B%65%6E=s3cret&ttl=1s", "/v1/leases/a/release?token=REDACTED&ttl=1s"},
		{"/v1/leases/a/release?TOKEN=s3cret", "/v1/leases/a/release?REDACTED"},
		{"/v1/leases/a/release?access_token=s3cret&&ttl=1s", "/v1/leases/a/release?REDACTED&ttl=1s"},
		{"/v1/leases/a/release?token%3Ds3cret", "/v1/leases/a/release?REDACTED"},
		{"/v1/leases/a/release?s3cret", "/v1/leases/a/release?REDACTED"},
		{"/v1/leases/a/release?%74oken=s3cret%zz", "/v1/leases/a/release?REDACTED"},
		{"/v1/leases/a/release?ttl=1s;token=s3cret", "/v1/leases/a/release?REDACTED"},
		{"/v1/leases/a/acquire?holder=web%2D1%26token%3D", "/v1/leases/a/acquire?holder=web%2D1%26token%3D"},
		{"/v1/leases/a/acquire?ho%6Cder=web-1", "/v1/leases/a/acquire?holder=web-1"},
	} {
		u, err := url.ParseRequestURI(tt.uri)
		if err != nil {
			t.Fatal(err)
		}
		if got := redactedURI(u); got != tt.want {
			t.Errorf("redactedURI(%q) = %q, want %q", tt.uri, got, tt.want)
		}
	}
}
