package httpapi

import (
	"encoding/json"
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
