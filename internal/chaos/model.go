package chaos

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability model of one name's lease register. A lease expires
// on its own, which a plain register cannot express, so the model is
// nondeterministic and timed: before each operation the lease may have
// expired, but only once the operation's Return is past the earliest
// moment Redis could expire it (the Call of the acquire or renew that last
// set its TTL, plus that TTL, less a clock epsilon); and it may have been
// lost, but only when a data-loss fault (restart, FLUSHALL, failover) lies
// between the call that set it and the operation's Return. Fences stay
// monotonic across both, as the contract says: a grant's fence must exceed
// every fence granted before it.

// linInput is an operation's input to the model.
type linInput struct {
	kind          Kind
	label         string
	ttl           int64 // ns
	call, return_ int64
}

// linOutput is its answer.
type linOutput struct {
	outcome Outcome
	fence   int64
	holder  string
}

// linState is the register: who holds it, with which fence, and since when.
type linState struct {
	holder string
	fence  int64 // 0: unknown (granted by an operation whose outcome is unknown)
	expMin int64 // the earliest moment Redis may expire it
	since  int64 // the call that last set it
	last   int64 // the highest fence known granted
}

// linEpsilon is the clock epsilon of the expiry bound: Redis counts TTLs in
// milliseconds on its own reading of the same clock.
const linEpsilon = 2 * time.Millisecond

// newModel returns the model for a history whose data-loss faults are losses.
func newModel(losses []Fault) porcupine.Model {
	lost := func(from, to int64) bool {
		for _, f := range losses {
			if f.End >= from && f.Start <= to {
				return true
			}
		}
		return false
	}
	nm := porcupine.NondeterministicModel{
		Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var names []string
			for _, o := range ops {
				n := o.Metadata.(string)
				if _, ok := by[n]; !ok {
					names = append(names, n)
				}
				by[n] = append(by[n], o)
			}
			sort.Strings(names)
			out := make([][]porcupine.Operation, 0, len(names))
			for _, n := range names {
				out = append(out, by[n])
			}
			return out
		},
		Init: func() []any { return []any{linState{}} },
		Step: func(st, in, out any) []any {
			s, i, o := st.(linState), in.(linInput), out.(linOutput)
			pre := []linState{s}
			if s.holder != "" && (i.return_ >= s.expMin || lost(s.since, i.return_)) {
				pre = append(pre, linState{last: s.last})
			}
			var next []any
			for _, p := range pre {
				for _, n := range step(p, i, o) {
					next = append(next, n)
				}
			}
			return next
		},
		DescribeOperation: func(in, out any) string {
			i, o := in.(linInput), out.(linOutput)
			return fmt.Sprintf("%s(%s) -> %s %s/%d", i.kind, i.label, o.outcome, o.holder, o.fence)
		},
		DescribeState: func(st any) string {
			s := st.(linState)
			return fmt.Sprintf("holder=%q fence=%d last=%d", s.holder, s.fence, s.last)
		},
	}
	return nm.ToModel()
}

// step applies one operation to the register p, in which expiry and loss
// were already taken into account; it returns every state that may follow.
func step(p linState, i linInput, o linOutput) []linState {
	sameFence := func(f int64) bool { return p.fence == 0 || p.fence == f }
	heldBy := func(h string, f int64) bool {
		return p.holder != "" && p.holder == h && p.holder != i.label && sameFence(f)
	}
	with := func(f int64) linState { q := p; q.fence = f; return q }
	empty := linState{last: p.last}
	granted := func(f int64) linState {
		return linState{holder: i.label, fence: f, expMin: i.call + i.ttl - int64(linEpsilon), since: i.call, last: max(p.last, f)}
	}
	switch i.kind {
	case Acquire:
		switch o.outcome {
		case Granted:
			if p.holder == "" && o.fence > p.last {
				return []linState{granted(o.fence)}
			}
		case Held:
			if heldBy(o.holder, o.fence) {
				return []linState{with(o.fence)}
			}
		case Unknown:
			if p.holder == "" {
				return []linState{p, granted(0)}
			}
			return []linState{p}
		}
	case Renew:
		renewed := func(f int64) linState {
			q := p
			q.fence, q.expMin, q.since = f, i.call+i.ttl-int64(linEpsilon), i.call
			return q
		}
		switch o.outcome {
		case Renewed:
			if p.holder == i.label && sameFence(o.fence) {
				return []linState{renewed(o.fence)}
			}
		case NotFound:
			if p.holder == "" {
				return []linState{p}
			}
		case NotHolder:
			if heldBy(o.holder, o.fence) {
				return []linState{with(o.fence)}
			}
		case Unknown:
			if p.holder == i.label {
				return []linState{p, renewed(p.fence)}
			}
			return []linState{p}
		}
	case Release:
		switch o.outcome {
		case Released:
			if p.holder == i.label {
				return []linState{empty}
			}
		case NotFound:
			if p.holder == "" {
				return []linState{p}
			}
		case NotHolder:
			if heldBy(o.holder, o.fence) {
				return []linState{with(o.fence)}
			}
		case Unknown:
			if p.holder == i.label {
				return []linState{p, empty}
			}
			return []linState{p}
		}
	case Get:
		switch o.outcome {
		case Held:
			if p.holder != "" && p.holder == o.holder && sameFence(o.fence) {
				return []linState{with(o.fence)}
			}
		case NotFound:
			if p.holder == "" {
				return []linState{p}
			}
		}
	}
	return nil
}

// linearizable checks the operations marked Lin. writesOnly leaves out
// what only observes the register: reads, and the holder an acquire, renew
// or release answered held or not_holder with (those calls changed nothing).
func linearizable(ops []Op, faults []Fault, timeout time.Duration, writesOnly bool) porcupine.CheckResult {
	var losses []Fault
	for _, f := range faults {
		if f.DataLoss {
			losses = append(losses, f)
		}
	}
	var hist []porcupine.Operation
	for _, o := range ops {
		if !o.Lin || o.Outcome == Failed || writesOnly && (o.Kind == Get || o.Outcome == Held || o.Outcome == NotHolder) {
			continue
		}
		ret := o.Return
		out := linOutput{outcome: o.Outcome, fence: o.Fence, holder: o.Holder}
		if o.Outcome == Unknown {
			ret = Never
		}
		hist = append(hist, porcupine.Operation{
			Input:    linInput{kind: o.Kind, label: o.Label, ttl: int64(o.TTL), call: o.Call, return_: ret},
			Call:     o.Call,
			Output:   out,
			Return:   ret,
			Metadata: o.Name,
		})
	}
	if len(hist) == 0 {
		return porcupine.Ok
	}
	return porcupine.CheckOperationsTimeout(newModel(losses), hist, timeout)
}

// Explain finds the earliest moment by which the history's
// linearizability-checked operations are no longer linearizable (cutting
// the history there: operations still running become pending), and
// describes the operations of that name in the 3 seconds before it: where
// to look.
func Explain(h *History, timeout time.Duration, writesOnly bool) []string {
	ops, _, _, faults := h.snapshot()
	var lin []Op
	for _, o := range ops {
		if o.Lin && o.Outcome != Failed {
			lin = append(lin, o)
		}
	}
	sort.Slice(lin, func(i, j int) bool { return lin[i].Call < lin[j].Call })
	cut := func(t int64) []Op {
		var out []Op
		for _, o := range lin {
			if o.Call > t {
				break
			}
			if o.Return > t {
				if o.Kind == Get {
					continue
				}
				o.Outcome = Unknown
			}
			out = append(out, o)
		}
		return out
	}
	if len(lin) == 0 || linearizable(lin, faults, timeout, writesOnly) != porcupine.Illegal {
		return nil
	}
	lo, hi := lin[0].Call, int64(0)
	for _, o := range lin {
		if o.End > hi {
			hi = o.End
		}
	}
	for hi-lo > int64(time.Millisecond) {
		mid := lo + (hi-lo)/2
		if linearizable(cut(mid), faults, timeout, writesOnly) == porcupine.Illegal {
			hi = mid
		} else {
			lo = mid
		}
	}
	t0 := lin[0].Call
	prefix := cut(hi)
	last := prefix[len(prefix)-1]
	for _, o := range prefix {
		if o.Return != Never && o.Return >= hi-int64(time.Millisecond) || o.Call >= hi-int64(time.Millisecond) {
			last = o
		}
	}
	out := []string{fmt.Sprintf("illegal from %s, at %s", time.Duration(hi-t0), last.Name)}
	for _, o := range prefix {
		if o.Name == last.Name && o.End >= hi-int64(3*time.Second) {
			ret := "pending"
			if o.Return != Never {
				ret = time.Duration(o.Return - t0).String()
			}
			out = append(out, fmt.Sprintf("%s %s %s(%s) ttl=%s %s..%s -> %s holder=%s fence=%d",
				o.Client, o.Name, o.Kind, o.Label, o.TTL, time.Duration(o.Call-t0), ret, o.Outcome, o.Holder, o.Fence))
		}
	}
	for _, f := range faults {
		out = append(out, fmt.Sprintf("fault %s %s %s..%s", f.Kind, f.Target, time.Duration(f.Start-t0), time.Duration(f.End-t0)))
	}
	return out
}
