// Package promtool lets tests check kata-cr's Prometheus metrics with
// Prometheus's own linter, `promtool check metrics` (Debian's prometheus
// package; scripts/install-deps.sh installs it).
package promtool

import (
	"bytes"
	"os/exec"
	"testing"
)

// Check fails t when promtool rejects metrics (a syntax error, or a lint
// problem such as a missing HELP line or a badly named metric). Under
// -short it skips when promtool is missing; otherwise a missing promtool
// fails the test, so that CI never passes without the check.
func Check(t testing.TB, metrics []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool not found (Debian's prometheus package): not checked with -short")
		}
		t.Fatal("promtool not found: run scripts/install-deps.sh (Debian's prometheus package)")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(metrics)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\nmetrics:\n%s", err, out, metrics)
	}
	if len(bytes.TrimSpace(out)) > 0 {
		t.Logf("promtool check metrics: %s", out)
	}
}
