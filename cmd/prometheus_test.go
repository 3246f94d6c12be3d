package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/internal/promtool"
)

// TestHostDoctorPrometheus runs the host doctor with -o prometheus into
// --output-file, as the DaemonSet does, and lets promtool check the file.
func TestHostDoctorPrometheus(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "kata-cr.prom")
	code, stdout, stderr := runKataCR("doctor", "--target", "host", "-o", "prometheus", "--output-file", out)
	if code != ExitOK && code != ExitCheckFailed {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout is not empty with --output-file: %q", stdout)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != outputFileMode {
		t.Errorf("%s: mode %o, want %o", out, fi.Mode().Perm(), outputFileMode)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	promtool.Check(t, data)
	failed := `kata_cr_failed{target="host"} 0`
	if code == ExitCheckFailed {
		failed = `kata_cr_failed{target="host"} 1`
	}
	for _, want := range []string{failed, `kata_cr_last_run_timestamp_seconds{target="host"} `, `kata_cr_finding{target="host",id="kernel.CHECKPOINT_RESTORE",category="kernel",level="required",status=`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%s holds %d entries, want only the metrics file (no temporary file left)", dir, len(entries))
	}
}

// TestOutputFileKeptOnError: a run that produces no report (a usage
// error) leaves the previous file as it was and no temporary file.
func TestOutputFileKeptOnError(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		code int
	}{
		{"bad format", []string{"doctor", "--target", "host", "-o", "yaml"}, ExitUsage},
		{"bad target", []string{"doctor", "--target", "moon"}, ExitUsage},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "kata-cr.prom")
			if err := os.WriteFile(out, []byte("previous\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runKataCR(append(tt.args, "--output-file", out)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d: %s", code, tt.code, stderr)
			}
			if data, _ := os.ReadFile(out); string(data) != "previous\n" {
				t.Errorf("%s = %q, want the previous content", out, data)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("%s holds %d entries, want 1", dir, len(entries))
			}
		})
	}
}

func TestOutputFileRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ name, path string }{
		{"a directory", dir},
		{"a missing directory", filepath.Join(dir, "missing", "kata-cr.prom")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runKataCR("doctor", "--target", "host", "--output-file", tt.path)
			if code != ExitUsage || !strings.Contains(stderr, "--output-file") {
				t.Errorf("exit %d (%s), want %d naming --output-file", code, stderr, ExitUsage)
			}
		})
	}
}

// TestPrometheusRefused: the corpus and the gate write their own tables,
// not a report: -o prometheus is a usage error there, before any boot.
func TestPrometheusRefused(t *testing.T) {
	for _, args := range [][]string{{"corpus", "-o", "prometheus"}, {"gate", "-o", "prometheus"}} {
		code, _, stderr := runKataCR(args...)
		if code != ExitUsage || !strings.Contains(stderr, "-o prometheus") {
			t.Errorf("kata-cr %s: exit %d, %q; want %d naming -o prometheus", strings.Join(args, " "), code, stderr, ExitUsage)
		}
	}
}
