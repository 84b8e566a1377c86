package httpapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"encoding/json"
	"github.com/leasehold/leasehold/lease"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestPanicIsAnsweredAsJSON500(t *testing.T) {
	s := New(nil, &Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.echo.GET("/panic", func(echo.Context) error { panic("boom") })
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "/panic", nil))
	var b errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil || w.Code != 500 || b.Error != CodeInternal || b.Message == "" {
		t.Errorf("got %d %q (%v), want 500 internal as JSON", w.Code, w.Body, err)
	}
}

func TestRetryAfterRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want int
	}{{0, 1}, {1, 1}, {999, 1}, {1000, 1}, {1001, 2}, {29990, 30}, {30000, 30}} {
		if got := retryAfter(tc.ms); got != tc.want {
			t.Errorf("retryAfter(%d): got %d, want %d", tc.ms, got, tc.want)
		}
	}
}

func TestMapErrorFindsWrappedErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{&lease.HeldError{Name: "n", TTL: 1500 * time.Millisecond}, 409, CodeLeaseHeld},
		{fmt.Errorf("wrapped: %w", &lease.NotFoundError{Name: "n"}), 404, CodeNotFound},
		{errors.Join(errors.New("x"), &lease.InvalidError{Code: lease.CodeInvalidTTL, Message: "m"}), 400, lease.CodeInvalidTTL},
		{fmt.Errorf("op: %w", context.Canceled), statusClientClosed, codeCanceled},
		{&lease.BackendError{Op: "acquire", MayHaveApplied: true}, 503, CodeBackendUnavailable},
		{errTooLarge, 413, CodePayloadTooLarge},
		{echo.ErrMethodNotAllowed, 405, CodeMethodNotAllowed},
		{errors.New("boom"), 500, CodeInternal},
	} {
		a := mapError(tc.err)
		if a.status != tc.status || a.body.Error != tc.code || a.body.Message == "" {
			t.Errorf("mapError(%v): got %d %q %q, want %d %q", tc.err, a.status, a.body.Error, a.body.Message, tc.status, tc.code)
		}
	}
	if a := mapError(&lease.HeldError{TTL: 1500 * time.Millisecond}); a.retryAfter != 2 {
		t.Errorf("got Retry-After %d for 1.5s, want 2", a.retryAfter)
	}
}
