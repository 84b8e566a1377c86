package lease

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors, for errors.Is. The typed errors below match them too.
var (
	// ErrHeld means somebody else holds the lease; see *HeldError.
	ErrHeld = errors.New("lease: held by another holder")
	// ErrNotHolder means the token given is not the current holder's; see *NotHolderError.
	ErrNotHolder = errors.New("lease: not the holder")
	// ErrNotFound means there is no such lease: it was never taken, or it was
	// released, or it expired.
	ErrNotFound = errors.New("lease: not found")
	// ErrInvalid is matched by every *InvalidError.
	ErrInvalid = errors.New("lease: invalid input")
	// ErrBackend is matched by every *BackendError.
	ErrBackend = errors.New("lease: backend unavailable")
)

// HeldError is returned by Acquire when another holder has the lease. TTL is
// how long the holder's lease still lives, as Redis counts it.
type HeldError struct {
	Name   string
	Holder string
	Fence  int64
	TTL    time.Duration
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("lease: %q is held by %s (fence %d) for another %s",
		e.Name, holderText(e.Holder), e.Fence, e.TTL)
}

// Is reports whether target is ErrHeld.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// NotHolderError is returned by Renew, Release and Verify when the lease
// exists but the token or fence given is not the current grant's. The caller
// has lost the lease; Holder, Fence and TTL describe the current grant.
type NotHolderError struct {
	Name   string
	Holder string
	Fence  int64
	TTL    time.Duration
}

func (e *NotHolderError) Error() string {
	return fmt.Sprintf("lease: %q is now held by %s (fence %d), not by this token",
		e.Name, holderText(e.Holder), e.Fence)
}

// Is reports whether target is ErrNotHolder.
func (e *NotHolderError) Is(target error) bool { return target == ErrNotHolder }

// NotFoundError is returned when there is no lease by that name.
type NotFoundError struct {
	Name string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("lease: %q not found: it was released, expired, or never taken", e.Name)
}

// Is reports whether target is ErrNotFound.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// Codes of *InvalidError, the same strings as the HTTP API's error codes.
const (
	CodeInvalidName    = "invalid_name"
	CodeInvalidTTL     = "invalid_ttl"
	CodeInvalidToken   = "invalid_token"
	CodeInvalidRequest = "invalid_request"
)

// InvalidError is bad input: nothing was sent to Redis. Code is one of the
// Code constants; Message is one sentence a person can act on.
type InvalidError struct {
	Code    string
	Message string
}

func (e *InvalidError) Error() string { return "lease: " + e.Message }

// Is reports whether target is ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(code, format string, args ...any) error {
	return &InvalidError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// BackendError is a failure to reach Redis (or, for the HTTP client, the
// Leasehold server) or to get its answer in time. MayHaveApplied tells
// whether the change could have taken effect anyway (a write whose request
// may have reached Redis before the failure); it is false for reads and for
// requests that never left.
type BackendError struct {
	Op             string
	MayHaveApplied bool
	Err            error
	// Backend names what did not answer, for the message: "" is Redis; the
	// HTTP client's errors say "the Leasehold server".
	Backend string
}

func (e *BackendError) Error() string {
	applied := "it was not applied"
	if e.MayHaveApplied {
		applied = "it may have been applied"
	}
	backend := e.Backend
	if backend == "" {
		backend = "Redis"
	}
	return fmt.Sprintf("lease: %s: %s is unavailable (%v); %s", e.Op, backend, e.Err, applied)
}

// Unwrap returns the underlying error.
func (e *BackendError) Unwrap() error { return e.Err }

// Is reports whether target is ErrBackend.
func (e *BackendError) Is(target error) bool { return target == ErrBackend }

func holderText(h string) string {
	if h == "" {
		return "an unnamed holder"
	}
	return fmt.Sprintf("%q", h)
}
