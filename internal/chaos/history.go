package chaos

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Now is this machine's monotonic clock (CLOCK_MONOTONIC) in nanoseconds:
// one clock for every process on the machine, unlike time.Now's monotonic
// reading, which only compares within a process.
func Now() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	return ts.Nano()
}

// Never is the Return of an operation whose outcome is unknown: it may take
// effect at any time after its call (porcupine's convention).
const Never = math.MaxInt64

// Kind is what an operation did.
type Kind string

// Kinds of operations.
const (
	Acquire Kind = "acquire"
	Renew   Kind = "renew"
	Release Kind = "release"
	Get     Kind = "get"
)

// Outcome is how an operation ended.
type Outcome string

// Outcomes.
const (
	Granted   Outcome = "granted"
	Held      Outcome = "held" // acquire: held by Holder; get: the lease of Holder
	Renewed   Outcome = "renewed"
	Released  Outcome = "released"
	NotFound  Outcome = "not_found"
	NotHolder Outcome = "not_holder"
	// Unknown: the call failed in a way that may have applied it.
	Unknown Outcome = "unknown"
	// Failed: the call failed and surely changed nothing.
	Failed Outcome = "failed"
)

// Op is one call of a client, as the client saw it.
type Op struct {
	Client string
	Kind   Kind
	Name   string
	// Label identifies the grant: the holder label asked by an acquire (unique
	// to the attempt), and the label of the grant renewed or released.
	Label string
	TTL   time.Duration
	Wait  time.Duration
	// Call and Return are Now at the call and at the answer. Return is Never
	// for an Unknown outcome; End is the answer's time all the same.
	Call, Return, End int64
	Outcome           Outcome
	// Fence is the grant's fence (granted, renewed) or the observed holder's
	// (held, not_holder).
	Fence int64
	// Holder is the label of the holder observed (held, not_holder).
	Holder string
	// Lin includes the operation in the linearizability check.
	Lin bool
}

// Grant is one grant as its holder believed in it.
type Grant struct {
	Client string
	Name   string
	Label  string
	Fence  int64
	// Sent is when the acquire was sent, Got when its grant arrived, End when
	// the holder stopped believing it held (loss reported, release sent, own
	// TTL passed, or process exit).
	Sent, Got, End int64
	// Ended says why: "released", "lost", "expired" (its TTL from the send
	// passed) or "exit".
	Ended string
	// Paused says that the nemesis stopped the holder's process while it
	// believed it held: the GC-pause case, where its belief outlives the lease.
	Paused bool
}

// Write is one write to the fenced store.
type Write struct {
	Name, Label string
	Fence       int64
	At          int64
	Accepted    bool
}

// Fault is one fault the nemesis injected, from its start to its healing.
type Fault struct {
	Kind   string
	Target string
	Start  int64
	End    int64
	// DataLoss says that Redis may have lost leases (restart, FLUSHALL,
	// failover): the register may reset between Start and End.
	DataLoss bool
}

// History is everything recorded in one run. It is safe for concurrent use.
type History struct {
	mu     sync.Mutex // guards all below
	ops    []Op
	grants []Grant
	writes []Write
	faults []Fault
	paused map[string]bool // labels of grants whose process was paused
}

// AddOp records an operation.
func (h *History) AddOp(o Op) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

// AddGrant records a grant's believed interval.
func (h *History) AddGrant(g Grant) {
	h.mu.Lock()
	h.grants = append(h.grants, g)
	h.mu.Unlock()
}

// AddWrite records a write to the store.
func (h *History) AddWrite(w Write) {
	h.mu.Lock()
	h.writes = append(h.writes, w)
	h.mu.Unlock()
}

// AddFault records a fault.
func (h *History) AddFault(f Fault) {
	h.mu.Lock()
	h.faults = append(h.faults, f)
	h.mu.Unlock()
}

// MarkPaused marks the grant of label as paused (see Grant.Paused), also
// when it is recorded later.
func (h *History) MarkPaused(label string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.paused == nil {
		h.paused = map[string]bool{}
	}
	h.paused[label] = true
}

// Granted reports whether a grant of label was recorded.
func (h *History) Granted(label string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, g := range h.grants {
		if g.Label == label {
			return true
		}
	}
	return false
}

// Ops returns the number of operations recorded so far.
func (h *History) Ops() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Faults returns the number of faults recorded so far.
func (h *History) Faults() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.faults)
}

// snapshot copies the history for the checker.
func (h *History) snapshot() ([]Op, []Grant, []Write, []Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	grants := append([]Grant(nil), h.grants...)
	for i := range grants {
		if h.paused[grants[i].Label] {
			grants[i].Paused = true
		}
	}
	return append([]Op(nil), h.ops...), grants,
		append([]Write(nil), h.writes...), append([]Fault(nil), h.faults...)
}

// Dump describes the grants and faults, for debugging a run.
func (h *History) Dump() string {
	_, grants, _, faults := h.snapshot()
	var b strings.Builder
	t0 := int64(0)
	for _, g := range grants {
		if t0 == 0 || g.Sent < t0 {
			t0 = g.Sent
		}
	}
	at := func(t int64) string { return time.Duration(t - t0).Round(time.Millisecond).String() }
	for _, f := range faults {
		fmt.Fprintf(&b, "fault %s %s %s..%s\n", f.Kind, f.Target, at(f.Start), at(f.End))
	}
	for _, g := range grants {
		fmt.Fprintf(&b, "grant %s %s fence=%d %s..%s %s paused=%v\n", g.Name, g.Label, g.Fence, at(g.Got), at(g.End), g.Ended, g.Paused)
	}
	return b.String()
}
