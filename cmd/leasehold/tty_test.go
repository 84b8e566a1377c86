//go:build linux

package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRunOnATerminal runs `leasehold run` on a pseudo-terminal (util-linux
// script(1)): the command, in its own process group, can read the terminal,
// its exit code passes through, and afterwards the shell that ran leasehold
// has its terminal back.
func TestRunOnATerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatal("script(1) is not on PATH: install util-linux (apt-get install -y util-linux)")
	}
	n := name(t)
	shell := bin + " run " + n + " --redis " + srv.URL() + ` -- sh -c 'read line; echo "got $line"; exit 4'; ` +
		`echo "rc=$?"; read again; echo "shell-read $again"`
	cmd := exec.Command("script", "-qec", shell, "/dev/null")
	cmd.Stdin = strings.NewReader("hello\nsecond\n")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("leasehold run on a terminal hung (the command stopped by SIGTTIN?); output %q", out)
	}
	got := strings.ReplaceAll(string(out), "\r", "")
	for _, want := range []string{"got hello\n", "rc=4\n", "shell-read second\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("got output %q (%v), want it to contain %q", got, err, want)
		}
	}
}
