package lease_test

import (
	"testing"

	"github.com/leasehold/leasehold/lease"
)

// TestAutoPipeline runs the script tests again with every call sent through
// go-redis's autopipeliner (on by default, but only for calls made while 15
// others are in flight; here also for lone calls): the
// replies, the EVAL fallback after SCRIPT FLUSH, waiting woken by releases,
// and a real Redis Cluster, where the autopipeliner routes by slot.
func TestAutoPipeline(t *testing.T) {
	defer lease.PipelineLoneCalls()()
	autoPipeline = true
	defer func() { autoPipeline = false }()

	for _, tt := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"AcquireGrantsAFreeLease", TestAcquireGrantsAFreeLease},
		{"AcquireHeldAnswersRemainingTTLAndChangesNothing", TestAcquireHeldAnswersRemainingTTLAndChangesNothing},
		{"AcquireSameTokenIsIdempotent", TestAcquireSameTokenIsIdempotent},
		{"Renew", TestRenew},
		{"Release", TestRelease},
		{"GetAndVerify", TestGetAndVerify},
		{"RaceOneWinner", TestRaceOneWinner},
		{"FenceStrictlyIncreases", TestFenceStrictlyIncreases},
		{"NoScriptRecovery", TestNoScriptRecovery},
		{"WaitMissesNoReleaseAfterTheFirstAttempt", TestWaitMissesNoReleaseAfterTheFirstAttempt},
		{"WaitMissesNoReleaseRacing", TestWaitMissesNoReleaseRacing},
		{"WaitTakesOverAtExpiry", TestWaitTakesOverAtExpiry},
		{"WaitServesArrivalOrder", TestWaitServesArrivalOrder},
		{"WaitAcrossClients", TestWaitAcrossClients},
		{"WaitCluster", TestWaitCluster},
		{"Cluster", TestCluster},
	} {
		t.Run(tt.name, tt.fn)
	}
}
