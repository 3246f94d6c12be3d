package cmd

import (
	"bytes"
	"flag"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// Several test files of this package write golden files; the -update flag
// is registered once, by whichever file gets there first.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files in testdata")
	}
}

// goldenUpdate reports whether -update asks to rewrite the golden files.
func goldenUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// runCLI runs kata-cr with args the way main does, with stdin and without a
// terminal, and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	deps := &Deps{Stdout: &stdout, Stderr: &stderr,
		IsTerminal: func(io.Writer) bool { return false }, Getenv: func(string) string { return "" }}
	root := newRootCmd(deps)
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	code := exitCode(root.Execute(), &stderr)
	return stdout.String(), stderr.String(), code
}

const criuLogs = "../criulog/testdata/"

func TestExplainCommand(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		golden string // compared with stdout, then stderr
	}{
		{"session leader", []string{"explain", criuLogs + "dump-sl-plain.log"}, "", ExitCheckFailed, "sl.text"},
		{"all fixtures as json", []string{"explain", "-o", "json", criuLogs + "check-host-vdso.log",
			criuLogs + "check-lo-nomodules.log", criuLogs + "dump-sl-plain.log"}, "", ExitCheckFailed, "all.json"},
		{"junit", []string{"explain", "-o", "junit", criuLogs + "check-lo-nomodules.log"}, "", ExitCheckFailed, "nomodules.junit"},
		{"markdown", []string{"explain", "-o", "markdown", criuLogs + "check-host-vdso.log"}, "", ExitCheckFailed, "vdso.markdown"},
		{"clean check output on stdin", []string{"explain", "-"},
			"Warn  (criu/kerndat.c:1538): CRIU was built without libnftables support\nLooks good.\n", ExitOK, "clean.text"},
		{"unknown error on stdin", []string{"explain", "-"},
			"(00.1) Dumping processes (pid: 9)\n(00.2) Error (criu/new.c:7): something nobody has seen\n(00.3) Error (criu/cr-dump.c:2053): Dumping FAILED.\n",
			ExitCheckFailed, "unknown.text"},
		{"empty log", []string{"explain", "testdata/explain/empty.log"}, "", ExitOK, "empty.text"},
		{"missing log", []string{"explain", "testdata/explain/no-such.log"}, "", ExitToolError, "missing"},
		{"binary log", []string{"explain", criuLogs + "dump-sl-plain.log", "testdata/explain/binary.log"}, "", ExitToolError, "binary"},
		{"directory", []string{"explain", "testdata/explain"}, "", ExitToolError, "directory"},
		{"no log", []string{"explain"}, "", ExitUsage, "nolog"},
		{"stdin twice", []string{"explain", "-", "-"}, "Error (criu/x.c:1): boom\n", ExitUsage, "stdin-twice"},
		{"follow-on line only", []string{"explain", "-"}, "(00.1) Error (criu/cr-dump.c:2053): Dumping FAILED.\n",
			ExitCheckFailed, "follow-on.text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			explainGolden(t, tt.golden+".stdout.golden", stdout)
			explainGolden(t, tt.golden+".stderr.golden", stderr)
			if code == ExitToolError && (stdout != "" || strings.Count(stderr, "\n") != 1) {
				t.Errorf("bad input must give one line on stderr and no report; stdout %q stderr %q", stdout, stderr)
			}
		})
	}
}

func TestExplainColor(t *testing.T) {
	on, _, _ := runCLI(t, "", "explain", "--color", "always", criuLogs+"dump-sl-plain.log")
	off, _, _ := runCLI(t, "", "explain", "--color", "never", criuLogs+"dump-sl-plain.log")
	if !strings.Contains(on, "\x1b[") || strings.Contains(off, "\x1b") {
		t.Errorf("--color always must colour and --color never must not:\n%s\n%s", on, off)
	}
}

// TestExplainNamesCauseAndFix is the acceptance test: every real log
// in shared/fixtures/criu-logs (copied into criulog/testdata) gets a known
// cause and a fix.
func TestExplainNamesCauseAndFix(t *testing.T) {
	logs, err := filepath.Glob(criuLogs + "*.log")
	if err != nil || len(logs) == 0 {
		t.Fatalf("no CRIU logs in %s: %v", criuLogs, err)
	}
	for _, l := range logs {
		stdout, stderr, code := runCLI(t, "", "explain", l)
		if code != ExitCheckFailed {
			t.Errorf("%s: exit %d, want %d; stderr %s", l, code, ExitCheckFailed, stderr)
		}
		if !strings.Contains(stdout, "cause: ") || !strings.Contains(stdout, "fix: ") || strings.Contains(stdout, "unknown") {
			t.Errorf("%s: no known cause and fix in:\n%s", l, stdout)
		}
	}
}

func explainGolden(t *testing.T, name, got string) {
	t.Helper()
	checkGolden(t, filepath.Join("explain", name), got)
}
