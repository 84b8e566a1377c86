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
#   LEASE_TTL         lease TTL in whole seconds, at least 3 (default 30)
#   KILL_AFTER        seconds between SIGTERM and SIGKILL on loss (default 10)
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
kill_after=${KILL_AFTER:-10}
case $ttl in '' | *[!0-9]*) echo "LEASE_TTL must be whole seconds" >&2; exit 64 ;; esac
if [ "$ttl" -lt 3 ]; then echo "LEASE_TTL must be at least 3" >&2; exit 64; fi
every=$((ttl / 3))

# post PATH: POST to the server; prints the body, then the HTTP status on a
# line of its own (curl writes "000" when the server could not be reached).
post() {
	if [ -n "${LEASEHOLD_TOKEN:-}" ]; then
		curl -sS -X POST --max-time "$every" -H "Authorization: Bearer $LEASEHOLD_TOKEN" -w '\n%{http_code}' "$server$1" 2>/dev/null
	else
		curl -sS -X POST --max-time "$every" -w '\n%{http_code}' "$server$1" 2>/dev/null
	fi
}
status() { printf '%s\n' "$1" | tail -n 1; }
body() { printf '%s\n' "$1" | sed '$d'; }
# field NAME JSON: a string or number field of a flat JSON object.
field() {
	printf '%s\n' "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([A-Za-z0-9_.:-]*\).*/\1/p" | head -n 1
}

resp=$(post "/v1/leases/$name/acquire?ttl=${ttl}s&holder=$(hostname)")
case $(status "$resp") in
200) ;;
409) echo "$0: held by another: $(body "$resp")" >&2; exit 75 ;;
401 | 403) echo "$0: $(body "$resp")" >&2; exit 77 ;;
000 | 503) echo "$0: cannot reach $server: $(body "$resp")" >&2; exit 69 ;;
400) echo "$0: $(body "$resp")" >&2; exit 64 ;;
*) echo "$0: $(body "$resp")" >&2; exit 1 ;;
esac
LEASE_NAME=$name
LEASE_TOKEN=$(field token "$(body "$resp")")
LEASE_FENCE=$(field fence "$(body "$resp")")
export LEASE_NAME LEASE_TOKEN LEASE_FENCE
echo "$0: acquired $name, fence $LEASE_FENCE, ttl ${ttl}s" >&2

lost=$(mktemp)
rm -f "$lost" # its existence will mean: the lease was lost
release() {
	[ -e "$lost" ] && { rm -f "$lost"; return; }
	post "/v1/leases/$name/release?token=$LEASE_TOKEN" >/dev/null
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
# other failure is retried every second until the lease would have expired.
(
	trap - INT TERM HUP EXIT
	expires=$(($(date +%s) + ttl))
	pause=$every
	while sleep "$pause" </dev/null >/dev/null 2>&1; do
		# $$ is this script (also in the subshell): once it is gone (SIGKILL
		# runs no trap), stop renewing and let the lease expire.
		kill -0 $$ 2>/dev/null || exit 0
		sent=$(date +%s)
		resp=$(post "/v1/leases/$name/renew?token=$LEASE_TOKEN")
		case $(status "$resp") in
		200) expires=$((sent + ttl)); pause=$every; continue ;;
		404 | 409) why="renew answered $(field error "$(body "$resp")")" ;;
		*)
			if [ "$(date +%s)" -lt "$expires" ]; then pause=1; continue; fi
			why="renewals failed until the lease expired"
			;;
		esac
		echo "$0: lost the lease $name ($why): sending SIGTERM to the command" >&2
		: >"$lost"
		kill -TERM "$work" 2>/dev/null
		sleep "$kill_after" </dev/null >/dev/null 2>&1
		kill -KILL "$work" 2>/dev/null
		exit 0
	done
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
