package httpclient_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNeitherEchoNorPrometheus: a program that only talks to a
// server over HTTP imports this package, and must not pull in the server's
// dependencies (through httpapi it was 105 packages outside the standard
// library, 16 MB).
func TestImportsNeitherEchoNorPrometheus(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !strings.Contains(string(out), "github.com/leasehold/leasehold/lease") {
		t.Fatalf("go list -deps gave %d packages, not this package's deps:\n%s", len(deps), out)
	}
	var nonStd int
	for _, d := range deps {
		for _, bad := range []string{"labstack/echo", "prometheus", "protobuf", "httpapi\n"} {
			if strings.Contains(d+"\n", bad) {
				t.Errorf("httpclient depends on %s", d)
			}
		}
		if strings.Contains(strings.SplitN(d, "/", 2)[0], ".") {
			nonStd++
		}
	}
	t.Logf("%d packages, %d outside the standard library", len(deps), nonStd)
}
