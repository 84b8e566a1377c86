package lease_test

import (
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/embedded"
)

// TestEmbeddedConformance runs the script tests against the embedded store
// (miniredis), so the zero-setup default and real Redis never drift apart.
// Real Redis stays the main suite: every test here also runs against it.
func TestEmbeddedConformance(t *testing.T) {
	store, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	prevAddr, prevDialer := backendAddr, backendDialer
	backendAddr, backendDialer = embedded.Addr, store.Dial
	defer func() { backendAddr, backendDialer = prevAddr, prevDialer }()
	// The embedded store's clock catches up every embedded.Tick, later when
	// the machine is loaded: expiry times read back may be a few ticks off.
	defer func(d time.Duration) { expirySlack = d }(expirySlack)
	expirySlack = 5 * embedded.Tick

	for _, tt := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"AcquireGrantsAFreeLease", TestAcquireGrantsAFreeLease},
		{"AcquireHeldAnswersRemainingTTLAndChangesNothing", TestAcquireHeldAnswersRemainingTTLAndChangesNothing},
		{"AcquireSameTokenIsIdempotent", TestAcquireSameTokenIsIdempotent},
		{"LeaseExpires", TestLeaseExpires},
		{"Renew", TestRenew},
		{"Release", TestRelease},
		{"GetAndVerify", TestGetAndVerify},
		{"RaceOneWinner", TestRaceOneWinner},
		{"FenceStrictlyIncreases", TestFenceStrictlyIncreases},
		{"CensusCountsLiveGrantsAndQueuedWaiters", TestCensusCountsLiveGrantsAndQueuedWaiters},
		{"CensusStopsAtItsLimit", TestCensusStopsAtItsLimit},
		{"ListPagesThroughEveryLease", TestListPagesThroughEveryLease},
		{"ListSkipsReleasedAndFenceKeys", TestListSkipsReleasedAndFenceKeys},
		{"BreakEndsAnyHoldersGrant", TestBreakEndsAnyHoldersGrant},
		{"HistoryRecordsEveryEnding", TestHistoryRecordsEveryEnding},
		{"FinishWithTellsTheOutcome", TestFinishWithTellsTheOutcome},
	} {
		t.Run(tt.name, tt.fn)
	}
}
