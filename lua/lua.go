// Package lua holds Leasehold's Redis scripts. Every state change of a lease is
// one of these scripts, run atomically by Redis; each file starts with a header
// that gives its KEYS, ARGV and replies.
//
// The package only embeds the source text; package lease turns it into
// runnable scripts.
package lua

import _ "embed"

// Acquire is the insert-if-missing-with-TTL primitive: it grants a free lease,
// re-grants it idempotently to the same token, or answers the remaining TTL of
// the current holder. It is fence.lua followed by acquire.lua.
var Acquire = fence + acquire

//go:embed fence.lua
var fence string

//go:embed acquire.lua
var acquire string

// Renew extends a lease for the holder of its token.
//
//go:embed renew.lua
var Renew string

// Release ends a lease for the holder of its token: it deletes and
// announces it, or hands it to a waiter of the caller's client. It is
// fence.lua followed by release.lua.
var Release = fence + release

//go:embed release.lua
var release string

// Inspect reads a lease without its token, and says whether a token matches.
//
//go:embed inspect.lua
var Inspect string

// Raise sets a grant's fence on one master of a Redlock quorum to the fence
// the quorum decided (the largest it granted), and marks it decided.
//
//go:embed raise.lua
var Raise string
