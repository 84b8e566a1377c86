package main

import (
	"slices"
	"testing"
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
