package httpapi

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/leasehold/leasehold/lease"
)

// MaxHeaderBytes is the most request header bytes a server should read
// (http.Server.MaxHeaderBytes; net/http allows 4 KiB over it): 64 KiB,
// like the largest body. A request with more is answered 431.
const MaxHeaderBytes = 64 << 10

// Listener returns ln with the answers that net/http gives itself, before
// any handler runs, turned into JSON error bodies like every other answer:
// a request it cannot parse (a malformed request line or header, or bad
// percent-encoding in the path such as /v1/leases/a%zzb) is 400
// invalid_request, headers over http.Server.MaxHeaderBytes are 431, an
// unsupported Transfer-Encoding 501 and an unsupported protocol version
// 505, each with the same status as before. Under TLS (http.Server.ServeTLS
// over this listener) it also turns the answer to plain HTTP sent to the
// TLS port into JSON; answers that net/http writes inside TLS stay its own.
//
// net/http writes these answers (in conn.serve) in a single Write on the
// connection, as a status line, exactly the headers "Content-Type:
// text/plain; charset=utf-8" and "Connection: close" (or none), and the
// reason. A handler's answer always carries a Date header and bodies of
// this API never hold a raw CR LF, so no handler's bytes look like that,
// and Listener rewrites only those writes.
func Listener(ln net.Listener) net.Listener { return edgeListener{ln} }

type edgeListener struct{ net.Listener }

func (l edgeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return edgeConn{c}, nil
}

type edgeConn struct{ net.Conn }

// Write passes p on, or its JSON form when p is an answer of net/http's own.
func (c edgeConn) Write(p []byte) (int, error) {
	proto, status, ok := edgeAnswer(p)
	if !ok {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(edgeJSON(proto, status)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite half-closes the connection where it can, as net/http does
// after a 431 so that the client reads the answer before the connection
// ends.
func (c edgeConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

var (
	edgeHeaders   = []byte("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n")
	edgeNoHeaders = []byte("\r\n\r\n")
)

// edgeAnswer reports whether p is a whole answer that net/http wrote
// itself, and its protocol and status.
func edgeAnswer(p []byte) (proto string, status int, ok bool) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(p, []byte("HTTP/1.0 ")) || len(p) < 12 {
		return "", 0, false
	}
	end := bytes.IndexByte(p, '\r')
	if end < 0 || !bytes.HasPrefix(p[end:], edgeHeaders) && !bytes.HasPrefix(p[end:], edgeNoHeaders) {
		return "", 0, false
	}
	status, err := strconv.Atoi(string(p[9:12]))
	if err != nil || status < 400 || p[12] != ' ' {
		return "", 0, false
	}
	return string(p[:8]), status, true
}

// edgeJSON is the JSON answer for net/http's own answer of status.
func edgeJSON(proto string, status int) []byte {
	var msg string
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		msg = fmt.Sprintf("the request's headers are over %d KiB: send less (a shorter Cookie or Authorization header)", MaxHeaderBytes>>10)
	case http.StatusNotImplemented:
		msg = "the request's Transfer-Encoding is not supported: send the body with Content-Length or chunked"
	case http.StatusHTTPVersionNotSupported:
		msg = "the request's HTTP version is not supported: use HTTP/1.1"
	default:
		msg = "the request is not valid HTTP (a malformed request line or header, or bad percent-encoding in the path: write %XX with two hex digits, %25 for a %)"
	}
	body := marshal(errorBody{Error: lease.CodeInvalidRequest, Message: msg})
	return fmt.Appendf(nil, "%s %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		proto, status, http.StatusText(status), len(body), body)
}
