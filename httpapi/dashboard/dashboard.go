// Package dashboard is Leasehold's web page, served at / by the HTTP API:
// one HTML file with its CSS and JavaScript inline, embedded in the binary,
// with nothing to build and nothing fetched from anywhere but the server it
// came from, so it works offline.
//
// The page is static and holds no secret; it calls the API (GET /v1/leases,
// /v1/events, /v1/auth, history and break) from the viewer's browser with
// the bearer token the viewer types in, which it keeps in sessionStorage.
// What the viewer sees and may do is what that token may do: the server
// decides, the page only leaves out the break button a token may not use.
package dashboard

import (
	_ "embed"
	"net/http"
)

// Page is the dashboard's HTML.
//
//go:embed index.html
var Page []byte

// contentSecurityPolicy lets the page run its own inline script and style
// and talk to its own origin, and nothing else: no other origin's script,
// frame or form target.
const contentSecurityPolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " +
	"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves Page, for GET and HEAD.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(Page)
		}
	})
}
