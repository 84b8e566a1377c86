package httpclient

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
)

// Events streams the server's events (GET /v1/events) of the names that
// start with prefix, after the event id lastID ("" for new ones only), as
// lease.Client.Watch does: the first event is a lease.Missed one when
// lastID is older than the server's window. The channel closes when ctx
// ends or the stream does (the server stopped, or its Redis failed):
// watch again after the last event's ID to go on. The error is the
// server's refusal (*AuthError, *lease.InvalidError, ...) or a
// *lease.BackendError when it cannot be reached.
func (c *Client) Events(ctx context.Context, prefix, lastID string) (<-chan lease.Event, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	path := "/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, transportErr(ctx, "events", http.MethodGet, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data := make([]byte, 0, 512)
		buf := make([]byte, 512)
		for len(data) < 16<<10 {
			n, err := resp.Body.Read(buf)
			data = append(data, buf[:n]...)
			if err != nil {
				break
			}
		}
		return nil, decodeError("events", resp, data)
	}
	out := make(chan lease.Event, 64)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
		defer stop()
		readEvents(ctx, bufio.NewScanner(resp.Body), out)
	}()
	return out, nil
}

// readEvents parses a Server-Sent Events stream into out.
func readEvents(ctx context.Context, sc *bufio.Scanner, out chan<- lease.Event) {
	sc.Buffer(make([]byte, 4096), 1<<20)
	var id, kind, data string
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "event":
				kind = value
			case "data":
				data = value
			}
			continue
		}
		if kind != "" {
			e, ok := parseEvent(id, kind, data)
			if ok {
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
		id, kind, data = "", "", ""
	}
}

// parseEvent reads one event's data (httpapi's eventBody).
func parseEvent(id, kind, data string) (lease.Event, bool) {
	e := lease.Event{ID: id, Kind: lease.Kind(kind)}
	if e.Kind == lease.Missed || e.Kind == lease.Truncated {
		return e, true
	}
	var b struct {
		Name   string `json:"name"`
		Holder string `json:"holder"`
		Fence  int64  `json:"fence"`
		At     string `json:"at"`
		TTLMs  int64  `json:"ttl_ms"`
		By     string `json:"by"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(data), &b); err != nil {
		return e, false
	}
	at, err := time.Parse(wire.TimeFormat, b.At)
	if err != nil {
		at, _ = time.Parse(time.RFC3339Nano, b.At)
	}
	e.Name, e.Holder, e.Fence, e.At, e.By, e.Reason = b.Name, b.Holder, b.Fence, at, b.By, b.Reason
	e.TTL = time.Duration(b.TTLMs) * time.Millisecond
	return e, true
}
