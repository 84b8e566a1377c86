package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes is the largest request body the server reads: 64 KiB.
const MaxBodyBytes = 64 << 10

// The parameters of every route, as indexes into params.val.
const (
	pTTL = iota
	pHolder
	pToken
	pMetadata
	pWait
	pFence
	pPrefix
	pLimit
	pCursor
	pReason
	pExitCode
	pDuration
	pLastEventID
	nParams
)

var paramNames = [nParams]string{"ttl", "holder", "token", "metadata", "wait", "fence", "prefix", "limit", "cursor", "reason", "exit_code", "duration", "last_event_id"}

// numeric marks the parameters that a JSON body may give as a number: the
// durations (so that a bare 30 answers "needs a unit", not "must be a
// string") and the integers.
const numeric = 1<<pTTL | 1<<pWait | 1<<pFence | 1<<pLimit | 1<<pExitCode | 1<<pDuration

// The parameters each route takes, as bit sets.
const (
	acquireParams = 1<<pTTL | 1<<pHolder | 1<<pToken | 1<<pMetadata | 1<<pWait
	renewParams   = 1<<pTTL | 1<<pToken | 1<<pExitCode | 1<<pDuration
	releaseParams = 1<<pToken | 1<<pExitCode | 1<<pDuration
	breakParams   = 1<<pReason | 1<<pFence
	historyParams = 1 << pLimit
	verifyParams  = 1<<pFence | 1<<pToken
	listParams    = 1<<pPrefix | 1<<pLimit | 1<<pCursor
	eventsParams  = 1<<pPrefix | 1<<pLastEventID
	noParams      = 0
	allParams     = 1<<nParams - 1
)

// params holds a request's parameters from its query and its JSON body.
type params struct {
	val [nParams]string
	set uint16 // bit i: val[i] was given
}

func (p *params) has(i int) bool { return p.set&(1<<i) != 0 }

// put records a value; the same parameter again must have the same value.
func (p *params) put(i int, v string) error {
	if p.has(i) && p.val[i] != v {
		return badRequest("the parameter %q is given twice with different values: give it once, in the query or in the JSON body", paramNames[i])
	}
	p.val[i] = v
	p.set |= 1 << i
	return nil
}

// bodyKey looks up a key of the JSON body and marks it in seen, the keys
// met so far: a key given twice is an error.
func bodyKey(key string, allowed uint16, seen *uint16) (int, error) {
	i, err := lookupParam(key, allowed)
	if err != nil {
		return 0, err
	}
	if *seen&(1<<i) != 0 {
		return 0, badRequest("the parameter %q appears twice in the JSON body: give it once", key)
	}
	*seen |= 1 << i
	return i, nil
}

func lookupParam(name string, allowed uint16) (int, error) {
	for i, n := range paramNames {
		if n == name && allowed&(1<<i) != 0 {
			return i, nil
		}
	}
	return 0, badRequest("unknown parameter %q: this route takes %s", clip(name), allowedText(allowed))
}

func allowedText(allowed uint16) string {
	var names []string
	for i, n := range paramNames {
		if allowed&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "no parameters"
	}
	return strings.Join(names, ", ")
}

// readParams reads the parameters of r that allowed permits: from the query
// string and from a JSON object in the body, whatever the Content-Type says.
//
// It runs on the way to every waiting acquire, whose goroutine keeps the
// stack it grew for the whole wait, so it parses the query without a map
// and reads the body in a frame of its own (see
// TestWaitingRequestsKeepSmallStacks).
func readParams(r *http.Request, allowed uint16, p *params) error {
	if r.URL.RawQuery != "" {
		if err := readQuery(r.URL.RawQuery, allowed, p); err != nil {
			return err
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	return readBody(r, allowed, p)
}

// readQuery reads the parameters of a query string, as url.ParseQuery
// splits and unescapes it.
//
//go:noinline
func readQuery(query string, allowed uint16, p *params) error {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		if kv == "" {
			continue
		}
		if strings.Contains(kv, ";") {
			return badRequest("the query string is malformed: invalid semicolon separator in query")
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return badRequest("the query string is malformed: %v", err)
		}
		v, err = url.QueryUnescape(v)
		if err != nil {
			return badRequest("the query string is malformed: %v", err)
		}
		i, err := lookupParam(k, allowed)
		if err != nil {
			return err
		}
		if err := p.put(i, v); err != nil {
			return err
		}
	}
	return nil
}

// readBody reads r's body, up to MaxBodyBytes, and its parameters.
//
//go:noinline
func readBody(r *http.Request, allowed uint16, p *params) error {
	if r.ContentLength > MaxBodyBytes {
		return errTooLarge
	}
	// Like io.ReadAll, whose frame alone takes 384 bytes of stack: sized
	// by Content-Length when the client sends a small one, grown as the
	// bytes come otherwise, so that a client cannot make the server hold
	// 64 KiB by announcing a body it does not send.
	size := int64(512)
	if r.ContentLength > 0 {
		size = min(r.ContentLength+1, 4<<10) // +1: room to find the end
	}
	body := make([]byte, 0, size)
	for {
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := r.Body.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if len(body) > MaxBodyBytes {
			return errTooLarge
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return badRequest("the request body could not be read: %v", err)
		}
	}
	return parseBody(body, allowed, p)
}

// parseBody reads a JSON object of parameters. Keys match exactly, once
// each; values are strings (numbers too for numeric parameters); null is
// the same as leaving the parameter out. An empty body has no parameters.
//
// A body that json.Valid accepts is read by objectReader, which needs no
// allocation per token; any other body by parseBodyTokens, whose
// json.Decoder errors say where the body goes wrong. Both answer the same
// for the same body (FuzzParseBodyPaths checks it).
func parseBody(body []byte, allowed uint16, p *params) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if !json.Valid(body) {
		return parseBodyTokens(body, allowed, p)
	}
	r := objectReader{s: string(body)}
	return r.params(allowed, p)
}

// objectReader reads the parameters of a body that json.Valid has
// accepted. Since the syntax is known to be right, it only has to find
// where each key and value ends; values are substrings of s.
type objectReader struct {
	s string
	i int // offset of the next byte to read
}

func (r *objectReader) params(allowed uint16, p *params) error {
	if r.peek() != '{' {
		return errNotObject
	}
	r.i++
	var seen uint16
	for {
		switch r.peek() {
		case '}':
			return nil // json.Valid: only space follows
		case ',':
			r.i++
			r.peek()
		}
		key := r.str()
		i, err := bodyKey(key, allowed, &seen)
		if err != nil {
			return err
		}
		r.peek()
		r.i++ // the colon
		var v string
		switch c := r.peek(); {
		case c == 'n': // null
			r.i += len("null")
			continue
		case c == '"':
			v = r.str()
		case c == '-' || '0' <= c && c <= '9':
			if numeric&(1<<i) == 0 {
				return badRequest("the parameter %q must be a JSON string", key)
			}
			v = r.number()
		default: // true, false, or the start of an array or object
			if numeric&(1<<i) != 0 {
				return badRequest("the parameter %q must be a JSON string or number", key)
			}
			return badRequest("the parameter %q must be a JSON string", key)
		}
		if err := p.put(i, v); err != nil {
			return err
		}
	}
}

// peek skips white space and returns the next byte, leaving it unread.
// Within a valid JSON value there is always one.
func (r *objectReader) peek() byte {
	for r.s[r.i] == ' ' || r.s[r.i] == '\t' || r.s[r.i] == '\n' || r.s[r.i] == '\r' {
		r.i++
	}
	return r.s[r.i]
}

// str reads the string that starts at r.i. One without escapes is a
// substring of the body; one with escapes, or with bytes that are not
// UTF-8, is decoded as json.Decoder decodes it (invalid bytes and lone
// surrogates become U+FFFD).
func (r *objectReader) str() string {
	start := r.i
	escaped := false
	for r.i++; r.s[r.i] != '"'; r.i++ {
		if r.s[r.i] == '\\' {
			escaped = true
			r.i++ // the escaped byte; the hex digits of \uXXXX hold no quote
		}
	}
	r.i++
	quoted := r.s[start:r.i]
	if s := quoted[1 : len(quoted)-1]; !escaped && utf8.ValidString(s) {
		return s
	}
	var s string
	json.Unmarshal([]byte(quoted), &s) // a valid JSON string: no error
	return s
}

// number reads the number that starts at r.i, as its literal text (as
// json.Number keeps it).
func (r *objectReader) number() string {
	start := r.i
	for r.i < len(r.s) && strings.IndexByte("+-.0123456789eE", r.s[r.i]) >= 0 {
		r.i++
	}
	return r.s[start:r.i]
}

var (
	errNotObject = badRequest("the body must be a JSON object of parameters, like {\"ttl\":\"30s\"}")
	errFormBody  = badRequest("the body looks like a form (ttl=30s&holder=x, what curl -d sends as written): " +
		"send a JSON object instead, like -d '{\"ttl\":\"30s\",\"holder\":\"x\"}', or put the parameters " +
		"in the query string, like .../acquire?ttl=30s&holder=x")
)

// looksLikeForm reports whether body reads as key=value[&key=value...], the
// form encoding that curl -d and HTML forms send.
func looksLikeForm(body []byte) bool {
	for _, pair := range bytes.Split(bytes.TrimSpace(body), []byte("&")) {
		if len(pair) == 0 {
			continue // a&&b and a trailing & are still a form
		}
		k, _, ok := bytes.Cut(pair, []byte("="))
		if !ok || len(k) == 0 || bytes.ContainsAny(k, "{}[]\" :,") {
			return false
		}
	}
	return len(bytes.TrimSpace(body)) > 0
}

// parseBodyTokens reads the parameters of body with json.Decoder's tokens,
// for bodies that are not valid JSON: its errors give the offset and the
// cause. It answers valid bodies the same as objectReader.
func parseBodyTokens(body []byte, allowed uint16, p *params) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if looksLikeForm(body) && (err != nil || tok != json.Delim('{')) {
		return errFormBody
	}
	if err != nil {
		return badJSON(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errNotObject
	}
	var seen uint16
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return badJSON(err)
		}
		key, _ := tok.(string) // object keys are always strings
		i, err := bodyKey(key, allowed, &seen)
		if err != nil {
			return err
		}
		tok, err = dec.Token()
		if err != nil {
			return badJSON(err)
		}
		var v string
		switch t := tok.(type) {
		case nil:
			continue
		case string:
			v = t
		case json.Number:
			if numeric&(1<<i) == 0 {
				return badRequest("the parameter %q must be a JSON string", key)
			}
			v = t.String()
		default: // bool, or the start of an array or object
			if numeric&(1<<i) != 0 {
				return badRequest("the parameter %q must be a JSON string or number", key)
			}
			return badRequest("the parameter %q must be a JSON string", key)
		}
		if err := p.put(i, v); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return badJSON(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the body has more after its JSON object: send one object")
	}
	return nil
}

func badJSON(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return badRequest("the body is not valid JSON (at byte %d: %v)", se.Offset, se)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return badRequest("the body is not valid JSON: it ends too soon")
	}
	return badRequest("the body is not valid JSON: %v", err)
}

// parseInt reads a decimal integer parameter.
func parseInt(name, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, badRequest("the %s %q is not an integer", name, clip(s))
	}
	return n, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
