package httpapi

import (
	"github.com/leasehold/leasehold/internal/wire"
	"github.com/leasehold/leasehold/lease"
)

// The JSON bodies of API version 1 are package wire's, shared with the
// client (package httpclient).
type (
	grantBody   = wire.Grant
	leaseBody   = wire.Lease
	releaseBody = wire.Release
	verifyBody  = wire.Verify
	listBody    = wire.List
	limitsBody  = wire.Limits
	authBody    = wire.Auth
	statusBody  = wire.Status
	errorBody   = wire.Error
	historyBody = wire.History
	recordBody  = wire.Record
	brokenBody  = wire.Broken
)

func newGrantBody(l *lease.Lease) grantBody { return wire.NewGrant(l) }
func newLeaseBody(l *lease.Lease) leaseBody { return wire.NewLease(l) }
func marshal(v any) []byte                  { return wire.Marshal(v) }
