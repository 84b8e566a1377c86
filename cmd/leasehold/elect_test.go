package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leasehold/leasehold/lease"
)

// leaderCmdScript is the command of an elect test: it logs "start ID FENCE"
// to log, says it is up, runs until the file stop exists, logs "end ID" and
// exits with code.
func leaderCmdScript(dir, id string, code int) string {
	return `echo "start ` + id + ` $LEASE_FENCE $LEASE_NAME" >> ` + dir + `/log; echo up > ` + dir + `/up.` + id +
		`; while [ ! -e ` + dir + `/stop.` + id + ` ]; do sleep 0.02; done; echo "end ` + id + `" >> ` + dir + `/log; exit ` + strconv.Itoa(code)
}

// TestElectOneLeaderAtATimeAndHandOver: two `leasehold elect` processes on
// one name, over Redis and over a server. Only the first runs its command
// while it leads (for several TTLs: it renews); the second takes over as
// soon as the first's command exits (the first resigns), with a higher
// fence; each passes its command's exit code; `leader` names the leader
// and exits 1 once nobody leads.
func TestElectOneLeaderAtATimeAndHandOver(t *testing.T) {
	url := startServerURL(t)
	for _, via := range [][]string{{"--redis", srv.URL()}, {"--server", url}} {
		t.Run(via[0], func(t *testing.T) {
			n := name(t)
			dir := t.TempDir()
			elect := func(id string, code int) *startedCmd {
				return startLH(t, append([]string{"elect", n, "--ttl", "1s", "--holder", id}, append(via, "--", "sh", "-c", leaderCmdScript(dir, id, code))...)...)
			}
			a := elect("a", 3)
			waitFile(t, dir+"/up.a", 5*time.Second)
			b := elect("b", 0)
			time.Sleep(2500 * time.Millisecond) // over two TTLs: a renews, b campaigns
			if exists(dir + "/up.b") {
				t.Fatalf("b's command runs while a leads; log:\n%s", readFile(dir+"/log"))
			}
			r := lh(t, append([]string{"leader", n}, via...)...)
			if r.code != 0 || !strings.Contains(r.stdout, "holder      a\n") {
				t.Errorf("leader while a leads: exit %d stdout %q stderr %q; want 0 and holder a", r.code, r.stdout, r.stderr)
			}
			os.WriteFile(dir+"/stop.a", nil, 0o600)
			stopped := time.Now()
			ra := a.finish(t, 5*time.Second)
			if ra.code != 3 {
				t.Errorf("a: exit %d (stderr %q), want its command's 3", ra.code, ra.stderr)
			}
			waitFile(t, dir+"/up.b", 5*time.Second)
			if took := time.Since(stopped); took > time.Second {
				t.Errorf("b took over %v after a's command ended, want within a second: a resigns", took)
			}
			os.WriteFile(dir+"/stop.b", nil, 0o600)
			rb := b.finish(t, 5*time.Second)
			if rb.code != 0 {
				t.Errorf("b: exit %d (stderr %q), want 0", rb.code, rb.stderr)
			}
			log := strings.Split(strings.TrimSpace(readFile(dir+"/log")), "\n")
			if len(log) != 4 || !strings.HasPrefix(log[0], "start a ") || log[1] != "end a" || !strings.HasPrefix(log[2], "start b ") || log[3] != "end b" {
				t.Fatalf("got log %q, want a's command to start and end, then b's", log)
			}
			fa, fb := strings.Fields(log[0]), strings.Fields(log[2])
			if fa[3] != n || fb[3] != n {
				t.Errorf("LEASE_NAME: got %q and %q, want %q", fa[3], fb[3], n)
			}
			fenceA, _ := strconv.ParseInt(fa[2], 10, 64)
			fenceB, _ := strconv.ParseInt(fb[2], 10, 64)
			if fenceA <= 0 || fenceB <= fenceA {
				t.Errorf("got fences %d then %d, want positive and increasing", fenceA, fenceB)
			}
			if want := `elected leader of "` + n + `": fence ` + fa[2]; !strings.Contains(ra.stderr, want) {
				t.Errorf("a's stderr %q, want %q", ra.stderr, want)
			}
			if want := `elected leader of "` + n + `": fence ` + fb[2]; !strings.Contains(rb.stderr, want) || !strings.Contains(rb.stderr, `led by "a"`) {
				t.Errorf("b's stderr %q, want it to say a led, then %q", rb.stderr, want)
			}
			if r := lh(t, append([]string{"leader", n}, via...)...); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "no leader") {
				t.Errorf("leader after both resigned: exit %d stdout %q stderr %q; want 1 saying there is no leader", r.code, r.stdout, r.stderr)
			}
		})
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestElectSIGTERMWhileCampaigningStopsWithoutRunning: SIGTERM while
// another leads stops the campaign (exit 143) without running the command
// and leaves the leader alone. (Signals while leading:
// TestRunAndElectForwardSignalsToTheCommandAndRelease.)
func TestElectSIGTERMWhileCampaigningStopsWithoutRunning(t *testing.T) {
	r, _ := sigtermWhileHeld(t, name(t), "elect")
	if !strings.Contains(r.stderr, "while campaigning") {
		t.Errorf("got stderr %q, want it to say it was campaigning", r.stderr)
	}
}

// TestLeaderPrintsTheHolderNeverTheToken: leader over a lease that any
// holder took, as text and JSON; exit 1 once it is gone.
func TestLeaderPrintsTheHolderNeverTheToken(t *testing.T) {
	n := name(t)
	l, err := client(t).Acquire(bg, n, &lease.AcquireOptions{TTL: time.Minute, Holder: "replica-2"})
	if err != nil {
		t.Fatal(err)
	}
	r := lh(t, "leader", n, "--redis", srv.URL())
	fence := strconv.FormatInt(l.Fence, 10)
	if r.code != 0 || !strings.Contains(r.stdout, "replica-2") || !strings.Contains(r.stdout, fence) || !strings.Contains(r.stdout, "ttl ") {
		t.Errorf("leader: exit %d stdout %q stderr %q; want 0, the holder, fence %s and the ttl", r.code, r.stdout, r.stderr, fence)
	}
	r = lhEnv(t, []string{"LEASEHOLD_JSON=true", "LEASEHOLD_REDIS=" + srv.URL()}, "leader", n)
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("leader with LEASEHOLD_JSON: exit %d stdout %q: %v", r.code, r.stdout, err)
	}
	if got["holder"] != "replica-2" || got["fence"] != float64(l.Fence) || got["ttl_ms"].(float64) < 50_000 || got["name"] != n {
		t.Errorf("leader --json: got %v, want holder replica-2, fence %d, ttl_ms about 60000", got, l.Fence)
	}
	for _, out := range []string{r.stdout, lh(t, "leader", n, "--redis", srv.URL()).stdout} {
		if strings.Contains(out, l.Token) || strings.Contains(out, "token") {
			t.Errorf("leader printed the token: %q", out)
		}
	}
	if err := client(t).Release(bg, n, l.Token); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"leader", n}, {"leader", n, "--json"}} {
		r := lh(t, append(args, "--redis", srv.URL())...)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, `"`+n+`" has no leader`) {
			t.Errorf("%v with nobody leading: exit %d stdout %q stderr %q; want 1 saying there is no leader", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestElectFlagsAndErrors: elect's and leader's flags from LEASEHOLD_*
// variables; usage errors exit 64 and an unreachable backend 69, all
// without running the command.
func TestElectFlagsAndErrors(t *testing.T) {
	n := name(t)
	dir := t.TempDir()
	s := startLHEnv(t, []string{"LEASEHOLD_REDIS=" + srv.Addr(), "LEASEHOLD_TTL=7s", "LEASEHOLD_HOLDER=from-env"},
		"elect", n, "--", "sh", "-c", leaderCmdScript(dir, "env", 0))
	waitFile(t, dir+"/up.env", 5*time.Second)
	l, err := client(t).Get(bg, n)
	if err != nil || l.Holder != "from-env" || l.TTL > 7*time.Second || l.TTL < 5*time.Second {
		t.Errorf("the leader's lease: %+v, %v; want holder from-env, ttl about 7s", l, err)
	}
	os.WriteFile(dir+"/stop.env", nil, 0o600)
	if r := s.finish(t, 5*time.Second); r.code != 0 {
		t.Errorf("elect with its flags from the environment: exit %d (%s), want 0", r.code, r.stderr)
	}

	down := "redis://127.0.0.1:1/0"
	ran := dir + "/ran"
	cmd := []string{"--", "sh", "-c", "echo > " + ran}
	for _, tc := range []struct {
		name   string
		env    []string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, []string{"elect", n, "--redis", srv.URL()}, 64, "after --"},
		{"no name", nil, []string{"leader", "--redis", srv.URL()}, 64, "expected \"<name>\""},
		{"ttl without unit", nil, append([]string{"elect", n, "--ttl", "15", "--redis", srv.URL()}, cmd...), 64, "needs a unit"},
		{"LEASEHOLD_TTL without unit", []string{"LEASEHOLD_TTL=15"}, append([]string{"elect", n, "--redis", srv.URL()}, cmd...), 64, "needs a unit"},
		{"LEASEHOLD_KILL_AFTER without unit", []string{"LEASEHOLD_KILL_AFTER=5"}, append([]string{"elect", n, "--redis", srv.URL()}, cmd...), 64, "kill-after"},
		{"invalid name", nil, append([]string{"elect", "bad/name", "--redis", srv.URL()}, cmd...), 64, "use only"},
		{"server and redis", nil, append([]string{"elect", n, "--redis", srv.URL(), "--server", "http://127.0.0.1:1"}, cmd...), 64, "give one of them"},
		{"redis down", nil, append([]string{"elect", n, "--redis", down}, cmd...), 69, "unavailable"},
		{"server down", nil, append([]string{"elect", n, "--server", "http://127.0.0.1:1"}, cmd...), 69, "unavailable"},
		{"leader redis down", nil, []string{"leader", n, "--redis", down}, 69, "unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := lhEnv(t, tc.env, tc.args...)
			if r.code != tc.code || !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(tc.stderr)) {
				t.Errorf("got exit %d stderr %q; want %d mentioning %q", r.code, r.stderr, tc.code, tc.stderr)
			}
			if exists(ran) {
				t.Error("the command ran")
				os.Remove(ran)
			}
		})
	}
}
