#!/bin/sh
# with-lease.sh NAME COMMAND [ARGS...]
#
# Runs COMMAND while holding the Leasehold lease NAME, with nothing but POSIX
# sh and curl (no jq): takes the lease over HTTP, renews it in the background
# every TTL/3 while COMMAND works, and releases it on the way out (trap).
# COMMAND gets LEASE_NAME, LEASE_TOKEN and LEASE_FENCE in its environment;
# pass LEASE_FENCE to whatever it writes.
#
# Environment:
#   LEASEHOLD_SERVER  server URL (default http://127.0.0.1:7070)
#   LEASEHOLD_TOKEN   bearer token, when the server has auth on
#   LEASE_TTL         lease TTL in whole seconds, at least 5 (default 30)
#   LEASE_WAIT        seconds to wait for the lease when it is held, at most
#                     the server's --max-wait (default 0: do not wait)
#   KILL_AFTER        seconds between SIGTERM and SIGKILL on loss (default 10)
#
# The lease counts as lost (COMMAND gets SIGTERM) when renewals fail until
# about 1 to 2 seconds before it would expire, counted from when the renewal
# that last succeeded was sent: before any other client can be granted it.
#
# Exit codes, as `leasehold run`: COMMAND's own; 75 held by another; 76 the
# lease was lost while COMMAND ran (it got SIGTERM); 69 server unreachable;
# 77 unauthorized or forbidden; 64 usage; 1 anything else.
set -u

if [ $# -lt 2 ]; then
	echo "usage: $0 NAME COMMAND [ARGS...]" >&2
	exit 64
fi
name=$1
shift
case $name in
'' | *[!A-Za-z0-9._:-]*) echo "$0: the lease name must be 1 to 200 of A-Z a-z 0-9 . _ - :" >&2; exit 64 ;;
esac
server=${LEASEHOLD_SERVER:-http://127.0.0.1:7070}
ttl=${LEASE_TTL:-30}
wait_s=${LEASE_WAIT:-0}
kill_after=${KILL_AFTER:-10}
case $ttl in '' | *[!0-9]*) echo "$0: LEASE_TTL must be whole seconds, like 30" >&2; exit 64 ;; esac
case $wait_s in '' | *[!0-9]*) echo "$0: LEASE_WAIT must be whole seconds, like 60" >&2; exit 64 ;; esac
case $kill_after in '' | *[!0-9]*) echo "$0: KILL_AFTER must be whole seconds, like 10" >&2; exit 64 ;; esac
# Below 5 s, the margins that whole seconds need leave no time to renew.
if [ "$ttl" -lt 5 ]; then echo "$0: LEASE_TTL must be at least 5" >&2; exit 64; fi
every=$((ttl / 3))

# curl's own reason for a failure ("Connection refused", "timed out"), which
# the messages below quote.
curlerr=$(mktemp)
# post SECONDS PATH: POST to the server, giving up after SECONDS; prints the
# body, then the HTTP status on a line of its own (curl writes "000" when
# the server could not be reached, and its reason in $curlerr).
post() {
	if [ -n "${LEASEHOLD_TOKEN:-}" ]; then
		curl -sS -X POST --max-time "$1" -H "Authorization: Bearer $LEASEHOLD_TOKEN" -w '\n%{http_code}' "$server$2" 2>"$curlerr"
	else
		curl -sS -X POST --max-time "$1" -w '\n%{http_code}' "$server$2" 2>"$curlerr"
	fi
}
reason() { sed -n '1s/^curl: ([0-9]*) //p' "$curlerr"; }
status() { printf '%s\n' "$1" | tail -n 1; }
body() { printf '%s\n' "$1" | sed '$d'; }
# field NAME JSON: a string or number field of a flat JSON object.
field() {
	printf '%s\n' "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([A-Za-z0-9_.:-]*\).*/\1/p" | head -n 1
}

# The lease lives at least until TTL after the acquire was sent (for a
# wait, the grant comes later, so this is earlier than the truth: safe).
acquired=$(date +%s)
resp=$(post $((wait_s + every)) "/v1/leases/$name/acquire?ttl=${ttl}s&wait=${wait_s}s&holder=$(hostname)")
case $(status "$resp") in
200) ;;
409) echo "$0: held by another: $(body "$resp")" >&2; rm -f "$curlerr"; exit 75 ;;
401 | 403) echo "$0: $(body "$resp")" >&2; rm -f "$curlerr"; exit 77 ;;
000) echo "$0: cannot reach $server: $(reason)" >&2; rm -f "$curlerr"; exit 69 ;;
503) echo "$0: the server at $server cannot reach Redis: $(body "$resp")" >&2; rm -f "$curlerr"; exit 69 ;;
400) echo "$0: $(body "$resp")" >&2; rm -f "$curlerr"; exit 64 ;;
*) echo "$0: $(body "$resp")" >&2; rm -f "$curlerr"; exit 1 ;;
esac
LEASE_NAME=$name
LEASE_TOKEN=$(field token "$(body "$resp")")
LEASE_FENCE=$(field fence "$(body "$resp")")
export LEASE_NAME LEASE_TOKEN LEASE_FENCE
echo "$0: acquired $name, fence $LEASE_FENCE, ttl ${ttl}s" >&2

lost=$(mktemp)
rm -f "$lost" # its existence will mean: the lease was lost
release() {
	[ -e "$lost" ] && { rm -f "$lost" "$curlerr"; return; }
	post "$every" "/v1/leases/$name/release?token=$LEASE_TOKEN" >/dev/null
	rm -f "$curlerr"
}
work=""
renewer=""
trap 'release' EXIT
# Signals to this script reach the command (a background command ignores
# SIGINT in sh, so SIGINT is passed on as SIGTERM).
trap '[ -n "$work" ] && kill -TERM "$work" 2>/dev/null' INT TERM HUP

"$@" &
work=$!

# The renewer: every TTL/3, renew; a 404/409 means the lease is gone; any
# other failure is retried every second. No renewal may end later than 2 s
# before the lease would expire, counted in whole seconds from the send of
# the last renewal that succeeded (date +%s rounds down: up to 1 s of it is
# rounding), so the lease is given up a second or more before any other
# client can be granted it; and a sleep ends early enough (4 s before) that
# the renewal after it still has a second to run, however the seconds fall.
(
	trap - INT TERM HUP EXIT
	expires=$((acquired + ttl))
	pause=$every
	why=""
	while :; do
		now=$(date +%s)
		nap=$((expires - now - 4))
		[ "$nap" -gt "$pause" ] && nap=$pause
		if [ "$nap" -gt 0 ]; then
			sleep "$nap" </dev/null >/dev/null 2>&1 || exit 0
		fi
		# $$ is this script (also in the subshell): once it is gone (SIGKILL
		# runs no trap), stop renewing and let the lease expire.
		kill -0 $$ 2>/dev/null || exit 0
		sent=$(date +%s)
		bound=$((expires - sent - 2))
		[ "$bound" -gt "$every" ] && bound=$every
		if [ "$bound" -lt 1 ]; then
			why="renewals failed until it was about to expire${why:+; the last: $why}"
			break
		fi
		resp=$(post "$bound" "/v1/leases/$name/renew?token=$LEASE_TOKEN")
		case $(status "$resp") in
		200) expires=$((sent + ttl)); pause=$every; why="" ;;
		404 | 409) why="renew answered $(field error "$(body "$resp")")"; break ;;
		000) why="$(reason)"; pause=1 ;;
		*) why="renew answered HTTP $(status "$resp")"; pause=1 ;;
		esac
	done
	echo "$0: lost the lease $name ($why): sending SIGTERM to the command" >&2
	: >"$lost"
	kill -TERM "$work" 2>/dev/null
	sleep "$kill_after" </dev/null >/dev/null 2>&1
	kill -KILL "$work" 2>/dev/null
	exit 0
) &
renewer=$!

# A trapped signal ends `wait` early: wait again until the command is gone.
wait "$work"
rc=$?
while kill -0 "$work" 2>/dev/null; do
	wait "$work"
	rc=$?
done
# USR1, which this script does not trap: a renewer that has not yet reset
# the traps it inherited would run the TERM trap and go on renewing.
kill -USR1 "$renewer" 2>/dev/null
wait "$renewer" 2>/dev/null
if [ -e "$lost" ]; then
	echo "$0: the lease was lost while the command ran; exit 76" >&2
	exit 76
fi
exit "$rc"
