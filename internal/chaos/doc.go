// Package chaos is Leasehold's reliability suite: a fault-injection checker
// in the spirit of Jepsen's lock tests and etcd's robustness tests.
//
// Its tests drive real clients (the SDK over Redis, the SDK over HTTP to real
// `leasehold serve` processes, and `leasehold run` children) doing acquire,
// renew, release and waiting on a few names while a nemesis injects one
// class of fault, and then judge the recorded history with Check:
//
//   - every holder writes to a fenced store (Store) that rejects any write
//     whose fence is below the highest it has seen for the name;
//   - every holder records, from its own view, the interval in which it
//     believed it held each grant (Grant): from the moment the grant's answer
//     arrived until its keeper reported the loss, it sent the release, or its
//     own TTL (counted from the send) ran out, whichever came first;
//   - the checker counts overlapping believed intervals, fences that go
//     backwards, stale writes the store accepted, acknowledged releases and
//     grants that later observations contradict, grants nobody holds the
//     token of that outlive their cleanup bound, and waiters that miss a
//     release; and it checks the lease register for linearizability with
//     porcupine (Model).
//
// All timestamps are this machine's CLOCK_MONOTONIC (Now), which child
// processes read too, so their records compare with the parent's.
//
// The package holds the history, the store and the checker; the workload,
// the nemeses and the broken variants that prove the checker's sensitivity
// are in its tests. docs/reliability.md says what is tested and how to rerun
// it.
package chaos
