package lease_test

import (
	"testing"

	"github.com/leasehold/leasehold/lease"
	"github.com/redis/go-redis/v9"
)

// TestAutoPipeline runs the script tests again with Options.AutoPipeline,
// every call sent through go-redis's autopipeliner (also those made while no
// other is in flight, which would otherwise go straight to Redis): the
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

// TestAutoPipelineSettings checks which autopipeliner a Client uses: full
// duplex on a single Redis client with no settings of its own, the
// client's own settings otherwise, none without Options.AutoPipeline.
func TestAutoPipelineSettings(t *testing.T) {
	for _, tt := range []struct {
		name           string
		own            *redis.AutoPipelineOptions
		autoPipeline   bool
		wantNone       bool
		wantFullDuplex bool
		wantBatch      int
	}{
		{name: "off", autoPipeline: false, wantNone: true},
		{name: "no settings of its own", autoPipeline: true, wantFullDuplex: true, wantBatch: redis.DefaultAutoPipelineOptions().MaxBatchSize},
		{name: "its own settings", own: &redis.AutoPipelineOptions{MaxBatchSize: 50}, autoPipeline: true, wantBatch: 50},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: backendAddr, AutoPipelineOptions: tt.own})
			defer rdb.Close()
			ap := lease.New(rdb, &lease.Options{AutoPipeline: tt.autoPipeline}).AutoPipeliner()
			if tt.wantNone {
				if ap != nil {
					t.Fatalf("got an autopipeliner, want none")
				}
				return
			}
			if ap == nil {
				t.Fatalf("got no autopipeliner, want one")
			}
			got := ap.Config()
			if got.FullDuplex != tt.wantFullDuplex || got.MaxBatchSize != tt.wantBatch {
				t.Errorf("got FullDuplex %v, MaxBatchSize %d; want %v, %d", got.FullDuplex, got.MaxBatchSize, tt.wantFullDuplex, tt.wantBatch)
			}
		})
	}
}
