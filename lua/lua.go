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
// the current holder.
//
//go:embed acquire.lua
var Acquire string

// Renew extends a lease for the holder of its token.
//
//go:embed renew.lua
var Renew string

// Release deletes a lease for the holder of its token and announces it.
//
//go:embed release.lua
var Release string

// Inspect reads a lease without its token, and says whether a token matches.
//
//go:embed inspect.lua
var Inspect string

// Raise lifts a grant's fence on one master of a Redlock quorum to the
// largest fence the quorum granted.
//
//go:embed raise.lua
var Raise string
