package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
)

type watchCmd struct {
	connFlags
	outFlags
	Prefix string `help:"Only the names that start with this ('' for all that the token may read)."`
}

func (c *watchCmd) Help() string {
	return `Prints the changes of the leases as they happen, one line each: time (Redis's
clock), kind (granted, renewed, released, expired, broken), name, holder and
fence; a grant's TTL, a break's author and reason. Never a token. Through a
server it reads GET /v1/events (a token with read access covering --prefix);
with --redis it reads the events stream in Redis itself. Events are written
only while someone watches, so it prints what happens from now on; when the
stream breaks it reconnects after the last event it printed. An expired event
comes within about a second of the expiry while a server's event stream is
connected; straight to Redis, when the next call touches the name. Not on a
Redis Cluster. Stops on SIGINT or SIGTERM, exiting 0.

Examples:
  leasehold watch                            # everything
  leasehold watch --prefix deploy/           # the deploy/ leases
  leasehold watch --prefix jobs: --json      # one JSON object a line, as the HTTP API's data`
}

// eventJSON is one event as --json prints it: the server's event data,
// with the id and kind.
type eventJSON struct {
	ID     string `json:"id,omitempty"`
	Kind   string `json:"kind"`
	Name   string `json:"name,omitempty"`
	Holder string `json:"holder,omitempty"`
	Fence  int64  `json:"fence,omitempty"`
	At     string `json:"at,omitempty"`
	TTLMs  int64  `json:"ttl_ms,omitempty"`
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (c *watchCmd) Run(e *env) error {
	ctx, stop := signal.NotifyContext(e.ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	lc, closeFn, err := c.connect()
	if err != nil {
		return exitFor(err, exitConflict)
	}
	defer closeFn()
	var watch func(ctx context.Context, prefix, after string) (<-chan lease.Event, error)
	switch w := lc.(type) {
	case interface {
		Watch(context.Context, string, string) (<-chan lease.Event, error)
	}:
		watch = w.Watch
	case interface {
		Events(context.Context, string, string) (<-chan lease.Event, error)
	}:
		watch = w.Events
	default:
		return fmt.Errorf("this transport (%T) has no events", lc)
	}
	last := ""
	for {
		ch, err := watch(ctx, c.Prefix, last)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return exitFor(err, exitConflict)
		}
		for ev := range ch {
			if ev.ID != "" {
				last = ev.ID
			}
			if err := c.print(e, ev); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		// The stream ended (server stopped, Redis failed): go on after
		// the last event, a moment later.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		if last == "" {
			last = "$"
		}
	}
}

func (c *watchCmd) print(e *env, ev lease.Event) error {
	if c.JSON {
		j := eventJSON{ID: ev.ID, Kind: string(ev.Kind), Name: ev.Name, Holder: ev.Holder, Fence: ev.Fence,
			TTLMs: ev.TTL.Milliseconds(), By: ev.By, Reason: ev.Reason}
		if !ev.At.IsZero() {
			j.At = wire.FormatTime(ev.At)
		}
		return json.NewEncoder(e.stdout).Encode(j) // one line an event
	}
	if ev.Kind == lease.Missed {
		_, err := fmt.Fprintln(e.stdout, "-", "missed", "(events were lost: the stream's window passed them)")
		return err
	}
	if ev.Kind == lease.Truncated {
		_, err := fmt.Fprintln(e.stdout, "-", "truncated", "(on a Redis Cluster, a pass of the poll reached its limit of keys: names past it are not watched)")
		return err
	}
	line := fmt.Sprintf("%s %-8s %s %s %d", wire.FormatTime(ev.At), ev.Kind, ev.Name, dash(ev.Holder), ev.Fence)
	if ev.TTL > 0 {
		line += " ttl=" + ev.TTL.String()
	}
	if ev.Kind == lease.BrokenKind {
		line += fmt.Sprintf(" by %s: %s", dash(ev.By), ev.Reason)
	}
	_, err := fmt.Fprintln(e.stdout, line)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
