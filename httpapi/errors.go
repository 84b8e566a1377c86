package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
)

// Error codes of the API, the "error" field of every error body. The codes
// of bad input are lease's: lease.CodeInvalidName, CodeInvalidTTL,
// CodeInvalidToken and CodeInvalidRequest.
const (
	CodeLeaseHeld          = wire.CodeLeaseHeld
	CodeNotHolder          = wire.CodeNotHolder
	CodeNotFound           = wire.CodeNotFound
	CodeUnauthorized       = wire.CodeUnauthorized
	CodeForbidden          = wire.CodeForbidden
	CodeMethodNotAllowed   = wire.CodeMethodNotAllowed
	CodePayloadTooLarge    = wire.CodePayloadTooLarge
	CodeBackendUnavailable = wire.CodeBackendUnavailable
	CodeShuttingDown       = wire.CodeShuttingDown
	CodeInternal           = wire.CodeInternal
	// codeCanceled is logged and counted when the client went away before
	// its answer; nobody reads the body.
	codeCanceled = "canceled"
)

// routeNotFound starts the message of a 404 for a path that is no route,
// so that the client can tell it from a lease that is not found.
const routeNotFound = wire.RouteNotFound

// statusClientClosed is nginx's 499: the client closed the request.
const statusClientClosed = 499

// apiError is an answer the server gives as it is.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func badRequest(format string, args ...any) error {
	return &lease.InvalidError{Code: lease.CodeInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

var (
	errTooLarge = &apiError{http.StatusRequestEntityTooLarge, CodePayloadTooLarge,
		"the request body is over 64 KiB: send at most 65536 bytes"}
	errShuttingDown = &apiError{http.StatusServiceUnavailable, CodeShuttingDown,
		"the server is shutting down: retry against another server or in a moment"}
	// errRedisTimeout is the cause of a context that ran out of --redis-timeout.
	errRedisTimeout = errors.New("no answer within --redis-timeout")
)

// unauthorized is the 401 of a request whose bearer token is missing or
// not known, saying which.
func unauthorized(msg string) error {
	return &apiError{http.StatusUnauthorized, CodeUnauthorized, msg}
}

// answer is what the one error mapper decides for an error.
type answer struct {
	status     int
	body       errorBody
	retryAfter int // seconds; 0: no Retry-After header
}

// mapError is the one place that turns an error into a status code and an
// error body. It walks err's chain of wrapped errors (without errors.As,
// whose targets would cost an allocation each on every error answered).
func mapError(err error) answer {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e := e.(type) {
		case *lease.HeldError:
			ttl := e.TTL.Milliseconds()
			return answer{
				status: http.StatusConflict,
				body: errorBody{Error: CodeLeaseHeld, Name: e.Name, Holder: &e.Holder, Fence: e.Fence, TTLMs: &ttl,
					Message: fmt.Sprintf("the lease %q is held by %s for another %s: retry after that, or acquire with a wait",
						e.Name, holderText(e.Holder), e.TTL.Round(time.Millisecond))},
				retryAfter: retryAfter(ttl),
			}
		case *lease.NotHolderError:
			ttl := e.TTL.Milliseconds()
			return answer{
				status: http.StatusConflict,
				body: errorBody{Error: CodeNotHolder, Name: e.Name, Holder: &e.Holder, Fence: e.Fence, TTLMs: &ttl,
					Message: fmt.Sprintf("the lease %q is held by %s (fence %d), not by this token or fence: they do not match "+
						"the current grant (mistyped, or from a grant that ended); if it was yours, you have lost it",
						e.Name, holderText(e.Holder), e.Fence)},
			}
		case *lease.NotFoundError:
			return answer{status: http.StatusNotFound, body: errorBody{Error: CodeNotFound,
				Message: fmt.Sprintf("there is no lease %q: it was released, expired, or never taken", e.Name)}}
		case *lease.InvalidError:
			return answer{status: http.StatusBadRequest, body: errorBody{Error: e.Code, Message: e.Message}}
		case *unknownAcquire:
			applied := true
			msg := "redis did not answer in time, so the lease may have been granted: retry with the same token, which gets the same grant if it was made, or release with it"
			if !e.ownToken {
				msg = "redis did not answer in time, so the lease may have been granted: the server releases that grant in the background; retry, and send your own token so that a retry after a timeout gets the same grant"
			}
			return answer{status: http.StatusServiceUnavailable,
				body: errorBody{Error: CodeBackendUnavailable, Message: msg, MayHaveApplied: &applied}}
		case *lease.BackendError:
			applied := e.MayHaveApplied
			msg := "redis did not answer; the change was not applied: retry later"
			if applied {
				msg = "redis did not answer; the change may have been applied: retry, or check with a read"
			}
			if e.Op == "get" || e.Op == "list" || e.Op == "ping" {
				msg = "redis did not answer: retry later"
			}
			return answer{status: http.StatusServiceUnavailable,
				body: errorBody{Error: CodeBackendUnavailable, Message: msg, MayHaveApplied: &applied}}
		case *apiError:
			return answer{status: e.status, body: errorBody{Error: e.code, Message: e.msg}}
		case *echo.HTTPError:
			return mapEchoError(e)
		}
		if e == context.Canceled {
			return answer{status: statusClientClosed, body: errorBody{Error: codeCanceled, Message: "the client went away"}}
		}
		if joined, ok := e.(interface{ Unwrap() []error }); ok { // errors.Join: the first error that maps
			for _, sub := range joined.Unwrap() {
				if a := mapError(sub); a.status != http.StatusInternalServerError {
					return a
				}
			}
		}
	}
	return answer{status: http.StatusInternalServerError, body: errorBody{Error: CodeInternal,
		Message: "the server failed unexpectedly: retry, and report it if it lasts"}}
}

func mapEchoError(he *echo.HTTPError) answer {
	switch he.Code {
	case http.StatusNotFound:
		return answer{status: he.Code, body: errorBody{Error: CodeNotFound,
			Message: routeNotFound + ": see /v1/openapi.json for the API"}}
	case http.StatusMethodNotAllowed:
		return answer{status: he.Code, body: errorBody{Error: CodeMethodNotAllowed,
			Message: "this route does not take that method: see the Allow header"}}
	case http.StatusRequestEntityTooLarge:
		return answer{status: he.Code, body: errorBody{Error: CodePayloadTooLarge, Message: errTooLarge.msg}}
	}
	if he.Code >= 400 && he.Code < 500 {
		return answer{status: he.Code, body: errorBody{Error: lease.CodeInvalidRequest,
			Message: fmt.Sprintf("the request is malformed (%s)", http.StatusText(he.Code))}}
	}
	return answer{status: http.StatusInternalServerError, body: errorBody{Error: CodeInternal,
		Message: "the server failed unexpectedly: retry, and report it if it lasts"}}
}

// retryAfter is ttl in whole seconds, rounded up, at least 1.
func retryAfter(ttlMs int64) int {
	s := (ttlMs + 999) / 1000
	if s < 1 {
		s = 1
	}
	return int(s)
}

func holderText(h string) string { return wire.HolderText(h) }
