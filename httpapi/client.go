package httpapi

import "github.com/leasehold/leasehold/httpapi/httpclient"

// The HTTP client is package httpclient's, which imports neither echo nor
// Prometheus; these names keep it reachable as httpapi's too.
type (
	// Client is httpclient.Client.
	Client = httpclient.Client
	// ClientOptions is httpclient.Options.
	ClientOptions = httpclient.Options
	// Limits is httpclient.Limits.
	Limits = httpclient.Limits
	// AuthError is httpclient.AuthError.
	AuthError = httpclient.AuthError
	// StatusError is httpclient.StatusError.
	StatusError = httpclient.StatusError
)

// DefaultClientTimeout is httpclient.DefaultTimeout.
const DefaultClientTimeout = httpclient.DefaultTimeout

var (
	// ErrUnauthorized is httpclient.ErrUnauthorized.
	ErrUnauthorized = httpclient.ErrUnauthorized
	// ErrForbidden is httpclient.ErrForbidden.
	ErrForbidden = httpclient.ErrForbidden
)

// NewClient is httpclient.New.
func NewClient(baseURL string, opts *ClientOptions) *Client { return httpclient.New(baseURL, opts) }
