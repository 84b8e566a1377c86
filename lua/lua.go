// Package lua holds Leasehold's Redis scripts. Every state change of a lease is
// one of these scripts, run atomically by Redis; each file starts with a header
// that gives its KEYS, ARGV and replies. common.lua describes the keys.
//
// The package only embeds the source text; package lease turns it into
// runnable scripts.
package lua

import _ "embed"

// Acquire is the insert-if-missing-with-TTL primitive: it grants a free lease,
// re-grants it idempotently to the same token, or answers the remaining TTL of
// the current holder and queues a caller that will wait. It is common.lua
// followed by acquire.lua.
var Acquire = common + acquire

//go:embed common.lua
var common string

//go:embed acquire.lua
var acquire string

// Renew extends a lease for the holder of its token. It is common.lua
// followed by renew.lua.
var Renew = common + renew

//go:embed renew.lua
var renew string

// Release ends a lease for the holder of its token, handing it to the
// queue's first waiter when one waits. It is common.lua followed by
// release.lua.
var Release = common + release

//go:embed release.lua
var release string

// Leave takes a waiter out of a name's queue, releasing a lease handed to
// it meanwhile. It is common.lua followed by leave.lua.
var Leave = common + leave

//go:embed leave.lua
var leave string

// Break ends the current grant of a name whoever holds it (an operator's
// override), records it in the name's history as broken, and hands the
// lease to the queue's first waiter when one waits. It is common.lua
// followed by break.lua.
var Break = common + breakLua

//go:embed break.lua
var breakLua string

// Expire records the expiry of one grant (by its fence) once it has
// passed, in the history and as an expired event, rather than when the
// next script touches the name. It is common.lua followed by expire.lua.
var Expire = common + expire

//go:embed expire.lua
var expire string

// History reads a name's current grant and the ended ones its history
// keeps, newest first, never a token.
//
//go:embed history.lua
var History string

// Inspect reads a lease without its token, and says whether a token matches.
//
//go:embed inspect.lua
var Inspect string

// Raise sets a grant's fence on one master of a Redlock quorum to the fence
// the quorum decided (the largest it granted), and marks it decided.
//
//go:embed raise.lua
var Raise string

// Census counts the live grants and the queued waiters among some lease and
// queue keys, for a census of a Redis that is not a Cluster.
//
//go:embed census.lua
var Census string
