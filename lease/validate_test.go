package lease_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/leasehold/leasehold/lease"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"nightly-report", true},
		{"jobs:billing.v2_eu-1", true},
		{"A", true},
		{strings.Repeat("x", 200), true},
		{"", false},
		{strings.Repeat("x", 201), false},
		{"a/b", false},
		{".", false},
		{"..", false},
		{"...", true},
		{"a b", false},
		{"a{b}", false},
		{"a*", false},
		{"é", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		err := lease.ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q): got %v, want ok=%v", clipName(tt.name), err, tt.ok)
		}
		assertCode(t, err, lease.CodeInvalidName)
	}
}

func TestValidateToken(t *testing.T) {
	tests := []struct {
		token string
		ok    bool
	}{
		{strings.Repeat("a", 16), true},
		{strings.Repeat("Z", 128), true},
		{"abc-DEF_123-xyz_0", true},
		{strings.Repeat("a", 15), false},
		{strings.Repeat("a", 129), false},
		{"abcdefghijklmnop!", false},
		{"abcdefghijklmnop=", false},
		{"", false},
	}
	for _, tt := range tests {
		err := lease.ValidateToken(tt.token)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateToken(%q): got %v, want ok=%v", tt.token, err, tt.ok)
		}
		assertCode(t, err, lease.CodeInvalidToken)
	}
	if tok := lease.NewToken(); lease.ValidateToken(tok) != nil || len(tok) != 24 {
		t.Errorf("NewToken() = %q: want 24 valid characters", tok)
	}
}

func TestParseTTL(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		errPart string
	}{
		{"30s", 30 * time.Second, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"10ms", 10 * time.Millisecond, ""},
		{"24h", 24 * time.Hour, ""},
		{"30", 0, "needs a unit"},
		{"1.5", 0, "needs a unit"},
		{"", 0, "empty"},
		{"soon", 0, "not a duration"},
		{"9ms", 0, "out of range"},
		{"-5s", 0, "out of range"},
		{"25h", 0, "out of range"},
	}
	for _, tt := range tests {
		got, err := lease.ParseTTL(tt.in, 24*time.Hour)
		if tt.errPart == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseTTL(%q): got %v, %v; want %v", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.errPart) {
			t.Errorf("ParseTTL(%q): got %v, want an error saying %q", tt.in, err, tt.errPart)
		}
		assertCode(t, err, lease.CodeInvalidTTL)
	}
}

func TestParseWait(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "0s": 0, "500ms": 500 * time.Millisecond, "5m": 5 * time.Minute} {
		if got, err := lease.ParseWait(in, 5*time.Minute); err != nil || got != want {
			t.Errorf("ParseWait(%q): got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"10", "6m", "-1s", "x", ""} {
		_, err := lease.ParseWait(in, 5*time.Minute)
		if err == nil {
			t.Errorf("ParseWait(%q): got nil, want an error", in)
		}
		assertCode(t, err, lease.CodeInvalidRequest)
	}
}

func TestValidateHolderAndMetadata(t *testing.T) {
	for _, tt := range []struct {
		holder string
		ok     bool
	}{
		{"", true}, {"web-1", true}, {"pod äöü 🚀", true}, {strings.Repeat("h", 200), true},
		{strings.Repeat("h", 201), false}, {"tab\there", false}, {"nl\n", false}, {"\xff", false},
	} {
		err := lease.ValidateHolder(tt.holder)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateHolder(%q): got %v, want ok=%v", tt.holder, err, tt.ok)
		}
		assertCode(t, err, lease.CodeInvalidRequest)
	}
	if err := lease.ValidateMetadata(strings.Repeat("m", 4096)); err != nil {
		t.Errorf("4 KiB of metadata: got %v, want ok", err)
	}
	err := lease.ValidateMetadata(strings.Repeat("m", 4097))
	if err == nil {
		t.Errorf("4 KiB + 1 of metadata: got nil, want an error")
	}
	assertCode(t, err, lease.CodeInvalidRequest)
}

// TestBadInputChangesNothing checks that every invalid call is refused before
// anything reaches Redis.
func TestBadInputChangesNothing(t *testing.T) {
	c, rdb := newClient(t, &lease.Options{KeyPrefix: uniq(t) + ":"})
	good := "good-token-0123456789"
	calls := map[string]func() error{
		"acquire bad name": func() error { _, err := c.Acquire(ctx, "a/b", nil); return err },
		"acquire ttl low":  func() error { _, err := c.Acquire(ctx, "n", &lease.AcquireOptions{TTL: time.Millisecond}); return err },
		"acquire ttl high": func() error { _, err := c.Acquire(ctx, "n", &lease.AcquireOptions{TTL: 25 * time.Hour}); return err },
		"acquire token":    func() error { _, err := c.Acquire(ctx, "n", &lease.AcquireOptions{Token: "short"}); return err },
		"acquire holder":   func() error { _, err := c.Acquire(ctx, "n", &lease.AcquireOptions{Holder: "\x01"}); return err },
		"acquire metadata": func() error {
			_, err := c.Acquire(ctx, "n", &lease.AcquireOptions{Metadata: strings.Repeat("m", 5000)})
			return err
		},
		"acquire wait":      func() error { _, err := c.Acquire(ctx, "n", &lease.AcquireOptions{Wait: time.Hour}); return err },
		"renew bad token":   func() error { _, err := c.Renew(ctx, "n", "", 0); return err },
		"renew bad ttl":     func() error { _, err := c.Renew(ctx, "n", good, time.Nanosecond); return err },
		"renew bad name":    func() error { _, err := c.Renew(ctx, "", good, 0); return err },
		"release bad token": func() error { return c.Release(ctx, "n", "bad token") },
		"release bad name":  func() error { return c.Release(ctx, "n n", good) },
		"get bad name":      func() error { _, err := c.Get(ctx, "n*"); return err },
		"verify bad name":   func() error { _, err := c.Verify(ctx, "", lease.Proof{Fence: 1}); return err },
	}
	before, err := rdb.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
	if after, _ := rdb.DBSize(ctx).Result(); after != before {
		t.Errorf("got %d keys after bad input, want %d as before", after, before)
	}
}

func assertCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		return
	}
	var inv *lease.InvalidError
	if !errors.As(err, &inv) || inv.Code != code || inv.Message == "" {
		t.Errorf("got %#v, want *InvalidError with code %s and a message", err, code)
	}
}

func clipName(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

// FuzzValidators checks that the validators never panic, agree with the
// contract's alphabet, and that every rejection is an *InvalidError.
func FuzzValidators(f *testing.F) {
	for _, s := range []string{"job", "a/b", "30s", "30", "", "\xff", "1h30m", "abc-DEF_123-xyz_0", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		nameErr := lease.ValidateName(s)
		assertCode(t, nameErr, lease.CodeInvalidName)
		if nameErr == nil {
			if len(s) == 0 || len(s) > 200 || strings.ContainsAny(s, "/ {}*?[]\\\"'") {
				t.Fatalf("ValidateName(%q) accepted a name outside the contract", s)
			}
		}
		assertCode(t, lease.ValidateToken(s), lease.CodeInvalidToken)
		assertCode(t, lease.ValidateHolder(s), lease.CodeInvalidRequest)
		if lease.ValidateHolder(s) == nil && !utf8.ValidString(s) {
			t.Fatalf("ValidateHolder(%q) accepted invalid UTF-8", s)
		}
		d, err := lease.ParseTTL(s, 24*time.Hour)
		assertCode(t, err, lease.CodeInvalidTTL)
		if err == nil && (d < lease.MinTTL || d > 24*time.Hour) {
			t.Fatalf("ParseTTL(%q) = %v, outside [10ms, 24h]", s, d)
		}
		w, err := lease.ParseWait(s, time.Minute)
		assertCode(t, err, lease.CodeInvalidRequest)
		if err == nil && (w < 0 || w > time.Minute) {
			t.Fatalf("ParseWait(%q) = %v, outside [0, 1m]", s, w)
		}
		assertCode(t, lease.ValidatePrefix(s), lease.CodeInvalidRequest)
	})
}
