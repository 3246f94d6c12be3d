package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGateBadMatrix: every bad matrix file of the gate's testdata exits 2
// with one line naming the file, the line and the key, before anything
// boots (no guest is built: -short suffices).
func TestGateBadMatrix(t *testing.T) {
	files, err := filepath.Glob("../gate/testdata/bad/*.toml")
	if err != nil || len(files) < 10 {
		t.Fatalf("bad matrices: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, stdout, stderr := runKataCR("gate", "--matrix", f, "--dir", filepath.Join(t.TempDir(), "gate"))
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != ExitUsage || len(lines) != 1 || !strings.HasPrefix(lines[0], "kata-cr: "+f+":") || stdout != "" {
				t.Errorf("exit %d, stderr %q, stdout %q: want %d and one line naming %s", code, stderr, stdout, ExitUsage, f)
			}
		})
	}
}

// TestGateCommandNotInImage: a command workload whose program is not in
// the guest image is a mistake of the matrix, at its line.
func TestGateCommandNotInImage(t *testing.T) {
	dir := t.TempDir()
	m := filepath.Join(dir, "gate.toml")
	body := "[[kernel]]\ndebian = \"6.1\"\n\n[[criu]]\nhost = true\n\n[[workload]]\nname = \"app\"\ncommand = [\"/opt/app/server\"]\n"
	if err := os.WriteFile(m, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runKataCR("gate", "--matrix", m, "--check")
	if code != ExitUsage || !strings.Contains(stderr, m+":7: workload.command: ") || !strings.Contains(stderr, "not in the guest image") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	// With the program included it is fine.
	prog := filepath.Join(dir, "server")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	body += "include = [\"server:/opt/app/server\"]\n"
	if err := os.WriteFile(m, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runKataCR("gate", "--matrix", m, "--check")
	if code != ExitOK || !strings.Contains(stdout, "6.1/host") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestGateCheckDefault: the default matrix is the corpus's cells.
func TestGateCheckDefault(t *testing.T) {
	code, stdout, stderr := runKataCR("gate", "--check")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, c := range []string{"6.1-criu3.17", "7.3-criu4.1", "7.3-criu4.2"} {
		if !strings.Contains(stdout, c) {
			t.Errorf("the default matrix lacks %s:\n%s", c, stdout)
		}
	}
}

// TestGateUsage: bad flags exit 2.
func TestGateUsage(t *testing.T) {
	for _, args := range [][]string{
		{"gate", "-j", "-1"},
		{"gate", "--time-factor", "0.5"},
		{"gate", "--baseline", "/nonexistent/base.json", "--check"},
		{"gate", "extra"},
	} {
		if code, _, stderr := runKataCR(args...); code != ExitUsage {
			t.Errorf("%q: exit %d (%s), want %d", args, code, stderr, ExitUsage)
		}
	}
}
