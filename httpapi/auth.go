package httpapi

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/leasehold/leasehold/lease"
)

// Access is what a bearer token may do.
type Access int

// Access levels. Admin implies write, write implies read.
const (
	Read Access = iota + 1
	Write
	// Admin may also break another holder's lease (POST .../break).
	Admin
)

// Auth is a set of bearer tokens with their access and name prefixes, as
// read from an auth file. A nil *Auth lets every request through.
type Auth struct {
	tokens []authToken
}

// String is the access's word in the auth file.
func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("Access(%d)", int(a))
}

type authToken struct {
	hash     [sha256.Size]byte // sha256 of the token: files may hold only the hash
	access   Access
	prefixes []string // nil: every name ("*")
	line     int      // its line in the auth file
}

// label names the token without revealing it, for a name's history (who
// broke a lease): the auth file's line and the first 12 hex digits of the
// token's sha256, which `sha256sum` of the token shows too.
func (t *authToken) label() string {
	return fmt.Sprintf("token sha256:%s (auth file line %d)", hex.EncodeToString(t.hash[:6]), t.line)
}

// LoadAuthFile reads an auth file; see ParseAuth.
func LoadAuthFile(path string) (*Auth, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	a, err := ParseAuth(f)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	return a, nil
}

// ParseAuth reads an auth file: one token a line,
//
//	TOKEN ACCESS PREFIXES
//
// where ACCESS is read, write or admin (admin implies write, write implies
// read; only admin may break another holder's lease), PREFIXES is a
// comma-separated list of lease name prefixes or *, and TOKEN is the token
// itself or sha256:<64 hex digits> of it. # starts a comment. An error names
// the line at fault; a file with no token is an error too.
func ParseAuth(r io.Reader) (*Auth, error) {
	a := &Auth{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		t, err := parseAuthLine(fields)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		t.line = line
		for _, o := range a.tokens {
			if o.hash == t.hash {
				return nil, fmt.Errorf("line %d: this token is already listed on an earlier line", line)
			}
		}
		a.tokens = append(a.tokens, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(a.tokens) == 0 {
		return nil, fmt.Errorf("no tokens: add lines like \"TOKEN write jobs:,ci:\"")
	}
	return a, nil
}

func parseAuthLine(fields []string) (authToken, error) {
	var t authToken
	if len(fields) != 3 {
		return t, fmt.Errorf("want 3 fields, TOKEN ACCESS PREFIXES, got %d", len(fields))
	}
	if hexHash, ok := strings.CutPrefix(fields[0], "sha256:"); ok {
		b, err := hex.DecodeString(hexHash)
		if err != nil || len(b) != sha256.Size {
			return t, fmt.Errorf("sha256: must be followed by 64 hex digits")
		}
		copy(t.hash[:], b)
	} else {
		if len(fields[0]) < 16 {
			return t, fmt.Errorf("the token is %d characters: use at least 16 random ones", len(fields[0]))
		}
		t.hash = sha256.Sum256([]byte(fields[0]))
	}
	switch fields[1] {
	case "read":
		t.access = Read
	case "write":
		t.access = Write
	case "admin":
		t.access = Admin
	default:
		return t, fmt.Errorf("access %q: want read, write or admin", fields[1])
	}
	if fields[2] == "*" {
		return t, nil
	}
	for _, p := range strings.Split(fields[2], ",") {
		if p == "*" {
			return t, fmt.Errorf("* must stand alone as the prefixes")
		}
		if p == "" {
			return t, fmt.Errorf("prefixes %q has an empty entry: separate prefixes by single commas", fields[2])
		}
		if err := lease.ValidatePrefix(p); err != nil {
			return t, fmt.Errorf("prefix %q: use only A-Z a-z 0-9 . _ - :", p)
		}
		t.prefixes = append(t.prefixes, p)
	}
	return t, nil
}

// lookup finds the token of an Authorization header value, comparing in
// constant time against every token of the file. The error says what is
// wrong with the header (missing, not a bearer token, empty, or a token the
// file lacks) without saying anything of the tokens that exist.
func (a *Auth) lookup(header string) (*authToken, error) {
	if strings.TrimSpace(header) == "" {
		return nil, unauthorized("no Authorization header: this server has auth on; send Authorization: Bearer <token> with a token of its auth file")
	}
	bearer, ok := cutPrefixFold(header, "Bearer ")
	if strings.EqualFold(strings.TrimSpace(header), "Bearer") {
		bearer, ok = "", true // HTTP trims the spaces after an empty token
	}
	if !ok {
		return nil, unauthorized(`the Authorization header is not a bearer token: send it as "Authorization: Bearer <token>" (the word Bearer, a space, the token)`)
	}
	bearer = strings.TrimSpace(bearer)
	if bearer == "" {
		return nil, unauthorized("the bearer token is empty: send Authorization: Bearer <token> with a token of the server's auth file")
	}
	h := sha256.Sum256([]byte(bearer))
	var found *authToken
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(h[:], a.tokens[i].hash[:]) == 1 {
			found = &a.tokens[i]
		}
	}
	if found == nil {
		return nil, unauthorized("the bearer token is not in the server's auth file: check that it is whole, current and of this server")
	}
	return found, nil
}

// covers reports whether the token's prefixes cover name (or a list prefix).
func (t *authToken) covers(name string) bool {
	if t.prefixes == nil {
		return true
	}
	for _, p := range t.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !bytes.EqualFold([]byte(s[:len(prefix)]), []byte(prefix)) {
		return s, false
	}
	return s[len(prefix):], true
}

// forbidden is the 403 for a name or list prefix outside the token's scope.
func forbidden(what, name string, need Access, t *authToken) error {
	if t.access < need {
		if need == Admin {
			return &apiError{403, CodeForbidden, "breaking a lease needs a token with admin access (ACCESS admin in the auth file): this one has " + t.access.String()}
		}
		return &apiError{403, CodeForbidden, "this token may only read: use a token with write access"}
	}
	return &apiError{403, CodeForbidden, fmt.Sprintf("this token does not cover the %s %q: use a token whose prefixes include it", what, clip(name))}
}
