package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// listeners returns the TCP ports on which process pid listens: the
// LISTEN entries of /proc/PID/net/tcp{,6} whose socket inode is one of the
// process's open descriptors.
func listeners(t *testing.T, pid int) []int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var ports []int
	for _, file := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			b, err := hex.DecodeString(hexPort)
			if err != nil || len(b) != 2 {
				t.Fatalf("%s: cannot read the port of %q", file, fields[1])
			}
			ports = append(ports, int(b[0])<<8|int(b[1]))
		}
		f.Close()
	}
	return ports
}

// TestServeEmbeddedStoreIsPrivate starts `leasehold serve` on the embedded
// store with auth on, takes a lease over HTTP, and tries every TCP port the
// process listens on besides the API's with a plain Redis client: none may
// read the lease's token or delete it.
func TestServeEmbeddedStoreIsPrivate(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "tokens")
	const bearer = "private-writer-4f9c2a7e1b"
	if err := os.WriteFile(authFile, []byte(bearer+" write *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, bin, nil, "--auth-file", authFile)
	req, _ := http.NewRequest(http.MethodPost, p.url+"/v1/leases/private/acquire?ttl=1m", nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("acquire with the bearer token: got %d, want 200", res.StatusCode)
	}

	u, _ := url.Parse(p.url)
	apiPort, _ := strconv.Atoi(u.Port())
	ports := listeners(t, p.cmd.Process.Pid)
	sawAPI := false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, port := range ports {
		if port == apiPort {
			sawAPI = true
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		if h, err := c.HGetAll(ctx, "leasehold:{private}").Result(); err == nil {
			t.Errorf("a plain Redis client on %s: HGETALL answered %v, want a refusal", addr, h)
		}
		if n, err := c.Del(ctx, "leasehold:{private}").Result(); err == nil {
			t.Errorf("a plain Redis client on %s: DEL answered %d, want a refusal", addr, n)
		}
		c.Close()
	}
	if !sawAPI {
		t.Fatalf("got listening ports %v, want the API's %d among them: the search does not see this process's sockets", ports, apiPort)
	}
	req, _ = http.NewRequest(http.MethodGet, p.url+"/v1/leases/private", nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	if res, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("GET the lease after the attempts: got %d, want 200 (still held)", res.StatusCode)
	}
	if code, logs := p.stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0\n%s", code, logs)
	}
}
