package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Config states the bounds the checker judges by.
type Config struct {
	// Epsilon is the clock epsilon: believed intervals of two holders may
	// overlap by this much before it counts (timer and scheduling slack of
	// one machine's processes, not clock skew: all clocks are one clock).
	Epsilon time.Duration
	// WaitBound is how long after a release a waiter may still wait while
	// the name is free, outside faults.
	WaitBound time.Duration
	// CleanupBound is how long a grant that nobody holds the token of may
	// live after the call that made it returned and Redis answered again.
	CleanupBound time.Duration
	// Recovery is how long after a fault healed the waiting and cleanup
	// checks still leave alone (reconnects, re-subscriptions).
	Recovery time.Duration
	// ExcusePaused excuses overlaps and contradictions of grants whose
	// process the nemesis paused (the GC-pause case): there the fence, not
	// the lease, must keep the store safe (stale_accepted).
	ExcusePaused bool
	// ExcuseDataLoss excuses overlaps of a grant that lived through a
	// data-loss fault with one that came within the fault or one TTL after
	// it, before the first holder could learn of the loss (the contract
	// does not promise mutual exclusion across data loss, only monotonic
	// fences).
	ExcuseDataLoss bool
	// TTL is the workload's longest TTL, for ExcuseDataLoss.
	TTL time.Duration
	// LinTimeout bounds porcupine; 0 skips the linearizability check.
	LinTimeout time.Duration
	// LinWritesOnly checks linearizability without the answers that only
	// observe the register (reads, held, not_holder): for Redlock, whose
	// reads and conflicts report what a minority of masters says.
	LinWritesOnly bool
}

// Result is the checker's verdict on one history.
type Result struct {
	Ops, Grants, Writes, Faults int
	Overlaps                    int // believed intervals of two holders overlap
	Excused                     int // overlaps excused by Config
	FenceRegressions            int // a later grant's fence is not higher
	StaleAccepted               int // the store accepted a write of a superseded grant
	Contradictions              int // an acknowledged release or grant that observations contradict (each pair once)
	Orphans                     int // grants nobody holds the token of, past the cleanup bound
	MissedWakeups               int // a waiter waited past WaitBound after a release
	Linearizable                porcupine.CheckResult
	// Examples describe the first few violations of each kind.
	Examples []string
}

// OK reports whether the history shows no violation (porcupine's Unknown,
// a timeout, is not one).
func (r *Result) OK() bool {
	return r.Overlaps == 0 && r.FenceRegressions == 0 && r.StaleAccepted == 0 && r.Contradictions == 0 &&
		r.Orphans == 0 && r.MissedWakeups == 0 && r.Linearizable != porcupine.Illegal
}

// Summary is the one line a run prints.
func (r *Result) Summary(fault string) string {
	res := "ok"
	if !r.OK() {
		res = "FAIL"
	}
	lin := "skipped"
	if r.Linearizable != "" {
		lin = strings.ToLower(string(r.Linearizable))
	}
	return fmt.Sprintf("chaos: fault=%s ops=%d faults=%d grants=%d writes=%d overlaps=%d excused=%d fence_regressions=%d "+
		"stale_accepted=%d contradictions=%d orphans=%d missed_wakeups=%d linearizable=%s result=%s",
		fault, r.Ops, r.Faults, r.Grants, r.Writes, r.Overlaps, r.Excused, r.FenceRegressions,
		r.StaleAccepted, r.Contradictions, r.Orphans, r.MissedWakeups, lin, res)
}

func (r *Result) example(kind string, format string, args ...any) {
	n := 0
	for _, e := range r.Examples {
		if strings.HasPrefix(e, kind+":") {
			n++
		}
	}
	if n < 3 {
		r.Examples = append(r.Examples, kind+": "+fmt.Sprintf(format, args...))
	}
}

// Check judges the history h.
func Check(h *History, cfg Config) *Result {
	ops, grants, writes, faults := h.snapshot()
	r := &Result{Ops: len(ops), Grants: len(grants), Writes: len(writes), Faults: len(faults)}
	sort.Slice(grants, func(i, j int) bool { return grants[i].Got < grants[j].Got })
	byName := map[string][]Grant{}
	byLabel := map[string]Grant{}
	for _, g := range grants {
		byName[g.Name] = append(byName[g.Name], g)
		byLabel[g.Label] = g
	}
	eps := int64(cfg.Epsilon)
	t0 := int64(0)
	if len(ops) > 0 {
		t0 = ops[0].Call
	}
	at := func(t int64) string { return time.Duration(t - t0).Round(time.Millisecond).String() }
	excused := func(a, b Grant) bool {
		if cfg.ExcusePaused && (a.Paused || b.Paused) {
			return true
		}
		if cfg.ExcuseDataLoss {
			// One grant lived through the loss (it was asked for before the
			// fault ended and believed in after it began), and the other was
			// granted within the fault or one TTL after it, before the first
			// holder could learn of the loss. Sent, not Got: a grant of
			// `leasehold run` is known only when its command starts.
			explains := func(old, new Grant, f Fault) bool {
				return old.Sent <= f.End && old.End >= f.Start && new.Got >= f.Start && new.Got <= f.End+int64(cfg.TTL)
			}
			for _, f := range faults {
				if f.DataLoss && (explains(a, b, f) || explains(b, a, f)) {
					return true
				}
			}
		}
		return false
	}

	// Overlaps, and fences that go backwards.
	for name, gs := range byName {
		for i, a := range gs {
			for _, b := range gs[i+1:] {
				if b.Got >= a.End-eps {
					continue
				}
				if over := min(a.End, b.End) - b.Got; over > eps && a.Label != b.Label {
					if excused(a, b) {
						r.Excused++
						continue
					}
					r.Overlaps++
					r.example("overlap", "%s: %s (fence %d, %s..%s, %s) and %s (fence %d, from %s) by %s",
						name, a.Label, a.Fence, at(a.Got), at(a.End), a.Ended, b.Label, b.Fence, at(b.Got), time.Duration(over))
				}
			}
		}
		for _, b := range gs {
			for _, a := range gs {
				if b.Sent > a.Got && b.Fence <= a.Fence && a.Label != b.Label {
					r.FenceRegressions++
					r.example("fence_regression", "%s: %s got fence %d at %s, after %s had %d at %s",
						name, b.Label, b.Fence, at(b.Got), a.Label, a.Fence, at(a.Got))
					break
				}
			}
		}
	}

	// Stale writes accepted: once a later grant wrote, an earlier one's
	// write must fail, whatever the fences say.
	sort.Slice(writes, func(i, j int) bool { return writes[i].At < writes[j].At })
	latest := map[string]int64{} // name: the largest Sent of a grant that wrote
	for _, w := range writes {
		g, ok := byLabel[w.Label]
		if ok && w.Accepted && latest[w.Name] > g.Got {
			r.StaleAccepted++
			r.example("stale_accepted", "%s: %s (fence %d) wrote at %s after a later grant had written", w.Name, w.Label, w.Fence, at(w.At))
		}
		if ok {
			latest[w.Name] = max(latest[w.Name], g.Sent)
		}
	}

	// Observations: what acquires that found the lease held, renews and
	// releases answered not_holder, and reads saw.
	type obs struct {
		name, holder string
		call, ret    int64
	}
	var seen []obs
	attempts := map[string]Op{}      // label: its acquire
	releasedAt := map[string]int64{} // label: when its release was acknowledged
	for _, o := range ops {
		if o.Kind == Release && o.Outcome == Released {
			if t, ok := releasedAt[o.Label]; !ok || o.Return < t {
				releasedAt[o.Label] = o.Return
			}
		}
		if o.Holder != "" && (o.Outcome == Held || o.Outcome == NotHolder) {
			seen = append(seen, obs{o.Name, o.Holder, o.Call, o.End})
		}
		if o.Kind == Acquire {
			attempts[o.Label] = o
		}
	}
	inFault := func(from, to int64) bool {
		for _, f := range faults {
			if f.Start <= to && f.End+int64(cfg.Recovery) >= from {
				return true
			}
		}
		return false
	}
	lastHealed := func(before int64) int64 {
		var t int64
		for _, f := range faults {
			if e := f.End + int64(cfg.Recovery); e <= before && e > t {
				t = e
			}
		}
		return t
	}
	orphaned := map[string]bool{}
	contradicted := map[[2]string]bool{} // (grant, holder seen): counted once
	// lostRelease: a release acknowledged before a data-loss fault ended may
	// be lost with it (a failover promotes a replica that had not got it,
	// nor the hand-overs before it), and what it ended seen again after.
	lostRelease := func(released, seenAt int64) bool {
		if !cfg.ExcuseDataLoss {
			return false
		}
		for _, f := range faults {
			if f.DataLoss && released <= f.End && seenAt >= f.Start {
				return true
			}
		}
		return false
	}
	for _, s := range seen {
		// A release acknowledged before the observation began.
		if t, ok := releasedAt[s.holder]; ok && t < s.call && !contradicted[[2]string{s.holder, "released"}] && lostRelease(t, s.call) {
			contradicted[[2]string{s.holder, "released"}] = true
			r.Excused++
		}
		if t, ok := releasedAt[s.holder]; ok && t < s.call && !contradicted[[2]string{s.holder, "released"}] {
			contradicted[[2]string{s.holder, "released"}] = true
			r.Contradictions++
			r.example("contradiction", "%s: %s released at %s, still seen holding at %s", s.name, s.holder, at(t), at(s.call))
		}
		// A grant believed held all through the observation of another holder.
		for _, g := range byName[s.name] {
			if g.Label != s.holder && g.Got+eps <= s.call && s.ret <= g.End-eps && !contradicted[[2]string{g.Label, s.holder}] {
				if h, ok := byLabel[s.holder]; ok && excused(g, h) || cfg.ExcusePaused && g.Paused {
					continue
				}
				contradicted[[2]string{g.Label, s.holder}] = true
				r.Contradictions++
				r.example("contradiction", "%s: %s believed it held (%s..%s) while %s was seen holding at %s",
					s.name, g.Label, at(g.Got), at(g.End), s.holder, at(s.call))
			}
		}
		// A grant whose acquire did not return it to anybody.
		if _, held := byLabel[s.holder]; held || orphaned[s.holder] {
			continue
		}
		a, ok := attempts[s.holder]
		if !ok || a.Outcome == Granted {
			continue
		}
		from := max(a.End, lastHealed(s.call))
		if s.call > from+int64(cfg.CleanupBound) && !inFault(s.call, s.call) {
			orphaned[s.holder] = true
			r.Orphans++
			r.example("orphan", "%s: %s (acquire %s at %s) still held at %s", s.name, s.holder, a.Outcome, at(a.End), at(s.call))
		}
	}

	// Waiters that miss a release: a waiter that waited from before an
	// acknowledged release until WaitBound after it, while nobody was
	// granted or seen holding the name, outside faults.
	bound := int64(cfg.WaitBound)
	for _, rel := range ops {
		if rel.Kind != Release || rel.Outcome != Released || inFault(rel.Call, rel.Return+bound) {
			continue
		}
		free := true
		for _, g := range byName[rel.Name] {
			if g.Got >= rel.Call && g.Got <= rel.Return+bound {
				free = false
				break
			}
		}
		for _, s := range seen {
			if free && s.name == rel.Name && s.call >= rel.Return && s.call <= rel.Return+bound {
				free = false
			}
		}
		if !free {
			continue
		}
		for _, w := range ops {
			if w.Kind == Acquire && w.Wait > 0 && w.Name == rel.Name && w.Call < rel.Call &&
				w.End > rel.Return+bound && w.Call+int64(w.Wait) > rel.Return+bound {
				r.MissedWakeups++
				r.example("missed_wakeup", "%s: %s waited from %s to %s (%s) through the release of %s at %s",
					rel.Name, w.Label, at(w.Call), at(w.End), w.Outcome, rel.Label, at(rel.Return))
				break
			}
		}
	}

	if cfg.LinTimeout > 0 {
		r.Linearizable = linearizable(ops, faults, cfg.LinTimeout, cfg.LinWritesOnly)
		if r.Linearizable == porcupine.Illegal && !cfg.LinWritesOnly {
			// Say whether the reads alone make it so.
			w := linearizable(ops, faults, cfg.LinTimeout, true)
			r.example("linearizability", "illegal with reads; without the reads (Get): %s", strings.ToLower(string(w)))
		}
	}
	return r
}
