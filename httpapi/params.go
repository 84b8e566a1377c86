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
	nParams
)

var paramNames = [nParams]string{"ttl", "holder", "token", "metadata", "wait", "fence", "prefix", "limit", "cursor"}

// numeric marks the parameters that a JSON body may give as a number: the
// durations (so that a bare 30 answers "needs a unit", not "must be a
// string") and the integers.
const numeric = 1<<pTTL | 1<<pWait | 1<<pFence | 1<<pLimit

// The parameters each route takes, as bit sets.
const (
	acquireParams = 1<<pTTL | 1<<pHolder | 1<<pToken | 1<<pMetadata | 1<<pWait
	renewParams   = 1<<pTTL | 1<<pToken
	releaseParams = 1 << pToken
	verifyParams  = 1<<pFence | 1<<pToken
	listParams    = 1<<pPrefix | 1<<pLimit | 1<<pCursor
	noParams      = 0
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
func readParams(r *http.Request, allowed uint16, p *params) error {
	if r.URL.RawQuery != "" {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return badRequest("the query string is malformed: %v", err)
		}
		for k, vs := range q {
			i, err := lookupParam(k, allowed)
			if err != nil {
				return err
			}
			for _, v := range vs {
				if err := p.put(i, v); err != nil {
					return err
				}
			}
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if r.ContentLength > MaxBodyBytes {
		return errTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return badRequest("the request body could not be read: %v", err)
	}
	if len(body) > MaxBodyBytes {
		return errTooLarge
	}
	return parseBody(body, allowed, p)
}

// parseBody reads a JSON object of parameters. Keys match exactly, once
// each; values are strings (numbers too for numeric parameters); null is
// the same as leaving the parameter out. An empty body has no parameters.
func parseBody(body []byte, allowed uint16, p *params) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return badJSON(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return badRequest("the body must be a JSON object of parameters, like {\"ttl\":\"30s\"}")
	}
	var seen uint16
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return badJSON(err)
		}
		key, _ := tok.(string) // object keys are always strings
		i, err := lookupParam(key, allowed)
		if err != nil {
			return err
		}
		if seen&(1<<i) != 0 {
			return badRequest("the parameter %q appears twice in the JSON body: give it once", key)
		}
		seen |= 1 << i
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
