package cmd

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"ok", nil, ExitOK, ""},
		{"check failed", errCheckFailed, ExitCheckFailed, ""},
		{"check failed, wrapped", fmt.Errorf("doctor: %w", errCheckFailed), ExitCheckFailed, ""},
		{"usage", usagef("--pid %q: not a process ID", "x"), ExitUsage, `kata-cr: --pid "x": not a process ID (see kata-cr --help)` + "\n"},
		{"usage, wrapped", fmt.Errorf("parse: %w", usagef("bad")), ExitUsage, "kata-cr: parse: bad (see kata-cr --help)\n"},
		{"cobra unknown command", errors.New(`unknown command "bogus" for "kata-cr"`), ExitUsage,
			`kata-cr: unknown command "bogus" for "kata-cr" (see kata-cr --help)` + "\n"},
		{"pflag unknown flag", errors.New("unknown flag: --bogus"), ExitUsage, "kata-cr: unknown flag: --bogus (see kata-cr --help)\n"},
		{"cobra arguments", errors.New("accepts 0 arg(s), received 1"), ExitUsage, "kata-cr: accepts 0 arg(s), received 1 (see kata-cr --help)\n"},
		{"tool error", errors.New("boot guest: qemu exited"), ExitToolError, "kata-cr: boot guest: qemu exited\n"},
		// EINVAL reads "invalid argument", as pflag's bad flag values do:
		// it is still a tool error.
		{"EINVAL", fmt.Errorf("mount devpts: %w", unix.EINVAL), ExitToolError, "kata-cr: mount devpts: invalid argument\n"},
		{"several lines", errors.New("run criu: failed\nline two\n"), ExitToolError, "kata-cr: run criu: failed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			if code := exitCode(tt.err, &stderr); code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if stderr.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.stderr)
			}
		})
	}
}

// TestRootUsage checks that cobra's own command-line errors, which do not
// pass through the flag error function, exit with ExitUsage and one line.
func TestRootUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown command", []string{"bogus"}},
		{"unknown flag", []string{"--bogus"}},
		{"unknown subcommand flag", []string{"explain", "--bogus", "x.log"}},
		{"flag without value", []string{"explain", "-o"}},
		{"bad output format", []string{"explain", "-o", "yaml", "x.log"}},
		{"bad colour", []string{"explain", "--color", "sometimes", "x.log"}},
		{"too many arguments", []string{"doctor", "extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr %q", code, ExitUsage, stderr)
			}
			if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "(see kata-cr --help)\n") {
				t.Errorf("want one usage line on stderr and nothing on stdout; stdout %q stderr %q", stdout, stderr)
			}
		})
	}
}
