package lease

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of the contract. Every transport validates with the functions below,
// so the HTTP API, the CLI and the SDK agree on what is valid.
const (
	MaxNameLen     = 200
	MaxHolderLen   = 200
	MaxMetadataLen = 4096
	MinTokenLen    = 16
	MaxTokenLen    = 128
	MinTTL         = 10 * time.Millisecond
	// DefaultTTL is the TTL of an acquire that names none.
	DefaultTTL = 30 * time.Second
	// DefaultMaxTTL is the largest TTL a Client grants unless Options.MaxTTL says otherwise.
	DefaultMaxTTL = 24 * time.Hour
)

// ValidateName checks a lease name: 1 to 200 bytes of A-Z a-z 0-9 . _ - :
func ValidateName(name string) error {
	if name == "" {
		return invalid(CodeInvalidName, "the lease name is empty: give 1 to %d characters of A-Z a-z 0-9 . _ - :", MaxNameLen)
	}
	if name == "." || name == ".." {
		return invalid(CodeInvalidName, "the lease name %q is not allowed (paths would normalise it away): use another name", name)
	}
	return checkName(CodeInvalidName, "lease name", name)
}

// ValidatePrefix checks a name prefix for List: "" or the start of a valid name.
func ValidatePrefix(prefix string) error {
	return checkName(CodeInvalidRequest, "prefix", prefix)
}

// checkName checks the length and alphabet of a name or a prefix of one.
func checkName(code, what, s string) error {
	if len(s) > MaxNameLen {
		return invalid(code, "the %s is %d bytes long: use at most %d", what, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return invalid(code, "the %s %q has %s at byte %d: use only A-Z a-z 0-9 . _ - :",
				what, clip(s), byteText(s[i]), i)
		}
	}
	return nil
}

// byteText names a byte for an error message: 'x' when printable ASCII, else 0xNN.
func byteText(c byte) string {
	if c > ' ' && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == ':'
}

// ValidateToken checks a token that a client brings: 16 to 128 bytes of
// A-Z a-z 0-9 - _
func ValidateToken(token string) error {
	if len(token) < MinTokenLen || len(token) > MaxTokenLen {
		return invalid(CodeInvalidToken, "the token is %d bytes long: use %d to %d characters of A-Z a-z 0-9 - _",
			len(token), MinTokenLen, MaxTokenLen)
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return invalid(CodeInvalidToken, "the token has %s at byte %d: use only A-Z a-z 0-9 - _", byteText(c), i)
		}
	}
	return nil
}

// ValidateHolder checks a holder label: at most 200 bytes of printable UTF-8.
func ValidateHolder(holder string) error { return validateText("holder", holder, MaxHolderLen) }

// validateText checks a label of at most max bytes of printable UTF-8.
func validateText(what, s string, max int) error {
	if len(s) > max {
		return invalid(CodeInvalidRequest, "the %s is %d bytes long: use at most %d", what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return invalid(CodeInvalidRequest, "the %s is not valid UTF-8", what)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return invalid(CodeInvalidRequest, "the %s has the unprintable character %U: use printable text", what, r)
		}
	}
	return nil
}

// ValidateMetadata checks metadata: at most 4 KiB.
func ValidateMetadata(metadata string) error {
	if len(metadata) > MaxMetadataLen {
		return invalid(CodeInvalidRequest, "the metadata is %d bytes long: use at most %d (4 KiB)", len(metadata), MaxMetadataLen)
	}
	return nil
}

// ValidateTTL checks that ttl is between MinTTL and max.
func ValidateTTL(ttl, max time.Duration) error {
	if ttl < MinTTL || ttl > max {
		return invalid(CodeInvalidTTL, "the ttl %s is out of range: use %s to %s", ttl, MinTTL, max)
	}
	return nil
}

// ParseTTL parses a TTL with a unit ("250ms", "30s", "1h30m") and checks it
// against MinTTL and max. A bare number is an error that asks for a unit.
func ParseTTL(s string, max time.Duration) (time.Duration, error) {
	d, err := parseDuration("ttl", s)
	if err != nil {
		return 0, &InvalidError{Code: CodeInvalidTTL, Message: err.Error()}
	}
	if err := ValidateTTL(d, max); err != nil {
		return 0, err
	}
	return d, nil
}

// ParseWait parses how long an acquire may wait ("0", "500ms", "10s"), at most max.
func ParseWait(s string, max time.Duration) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := parseDuration("wait", s)
	if err != nil {
		return 0, &InvalidError{Code: CodeInvalidRequest, Message: err.Error()}
	}
	if d < 0 || d > max {
		return 0, invalid(CodeInvalidRequest, "the wait %s is out of range: use 0 to %s", d, max)
	}
	return d, nil
}

func parseDuration(what, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	// Every duration with a unit ends in a letter; "0" parses without one.
	if err == nil && s[len(s)-1] > '9' {
		return d, nil
	}
	return 0, durationError(what, s)
}

// durationError says what is wrong with a duration. It is apart from
// parseDuration, which runs on the path of every waiting HTTP request,
// because strconv.ParseFloat takes nearly 1 KiB of stack.
//
//go:noinline
func durationError(what, s string) error {
	if s == "" {
		return fmt.Errorf("the %s is empty: give a duration with a unit, like 30s", what)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return fmt.Errorf("the %s %q needs a unit, like %ss or %sms", what, clip(s), clip(s), clip(s))
	}
	return fmt.Errorf("the %s %q is not a duration: write it like 250ms, 30s, 5m or 1h30m", what, clip(s))
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
