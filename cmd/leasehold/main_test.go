package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/leasehold/leasehold/httpapi"
)

func TestHoistConnFlags(t *testing.T) {
	for _, tt := range []struct {
		args, want []string
	}{
		{[]string{"--server", "http://h:1", "acquire", "job"}, []string{"acquire", "--server", "http://h:1", "job"}},
		{[]string{"--server=http://h:1", "--auth-token", "t", "get", "job", "--json"}, []string{"get", "--server=http://h:1", "--auth-token", "t", "job", "--json"}},
		{[]string{"--redis", "redis://r", "run", "job", "--", "--server", "x"}, []string{"run", "--redis", "redis://r", "job", "--", "--server", "x"}},
		// Nothing to move, or nothing to move it behind: left for kong.
		{[]string{"acquire", "job", "--server", "http://h:1"}, []string{"acquire", "job", "--server", "http://h:1"}},
		{[]string{"--server", "http://h:1"}, []string{"--server", "http://h:1"}},
		{[]string{"--server"}, []string{"--server"}},
		{[]string{"--server", "http://h:1", "--help"}, []string{"--server", "http://h:1", "--help"}},
		{[]string{"--ttl", "5s", "acquire", "job"}, []string{"--ttl", "5s", "acquire", "job"}},
		{[]string{"--version"}, []string{"--version"}},
		{nil, nil},
	} {
		if got := hoistConnFlags(tt.args); !slices.Equal(got, tt.want) {
			t.Errorf("hoistConnFlags(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

// TestCheckHoldOnAServerWithoutLimits: a server older than GET /v1/limits
// (404) cannot say its --max-ttl, so the hold is left to the grant; a server
// that does not answer is an error, as the acquire would be.
func TestCheckHoldOnAServerWithoutLimits(t *testing.T) {
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"not_found","message":"no such route: see /v1/openapi.json for the API"}`))
	}))
	defer old.Close()
	c := httpapi.NewClient(old.URL, nil)
	defer c.Close()
	if err := checkHold(context.Background(), c, time.Second, time.Hour); err != nil {
		t.Errorf("checkHold on a server without /v1/limits: got %v, want nil", err)
	}
	old.Close()
	if err := checkHold(context.Background(), c, time.Second, time.Hour); err == nil {
		t.Errorf("checkHold on a server that is gone: got nil, want an error")
	}
	if err := checkHold(context.Background(), c, time.Hour, time.Hour); err != nil {
		t.Errorf("checkHold of a hold within the TTL: got %v, want nil without asking", err)
	}
}
