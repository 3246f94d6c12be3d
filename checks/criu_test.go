package checks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

func fixtureLines(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "criu-logs", name))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func TestExplainedFailure(t *testing.T) {
	tests := []struct {
		log, wantSummary, wantFix string
	}{
		{"check-host-vdso.log", "Unexpected rt vDSO area bounds", "4.1"},
		{"check-lo-nomodules.log", "Diag module missing", "diag"},
	}
	for _, tt := range tests {
		t.Run(tt.log, func(t *testing.T) {
			lines := fixtureLines(t, tt.log)
			f := explainedFailure("criu check", criu.CheckResult{Args: []string{"check"}, ExitCode: 1, Lines: lines})
			if !strings.Contains(f.Summary, tt.wantSummary) {
				t.Errorf("summary %q does not name %q", f.Summary, tt.wantSummary)
			}
			if f.Fix == nil || !strings.Contains(f.Fix.Description, tt.wantFix) {
				t.Errorf("fix %+v does not mention %q", f.Fix, tt.wantFix)
			}
			if f.Reason == "" || len(f.Evidence) < 2 {
				t.Errorf("want a reason and quoted evidence: %+v", f)
			}
		})
	}
	f := explainedFailure("criu check", criu.CheckResult{ExitCode: 1, Lines: []string{"Does not look good."}, Verdict: "Does not look good."})
	if !strings.Contains(f.Summary, "Does not look good") || f.Reason == "" {
		t.Errorf("no error line: %+v", f)
	}
}

func TestLogMessage(t *testing.T) {
	for in, want := range map[string]string{
		"(00.018919) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds": "vdso: Unexpected rt vDSO area bounds",
		"Warn  (criu/net.c:3767): NSID isn't reported for network links":            "NSID isn't reported for network links",
		"Looks good.": "Looks good.",
	} {
		if got := logMessage(in); got != want {
			t.Errorf("logMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

func runCRIUChecks(env *Env) map[string]reports.Finding {
	fs := Runner{Checks: CRIUChecks()}.Run(context.Background(), env)
	m := map[string]reports.Finding{}
	for _, f := range fs {
		// A check's first finding: criu.kernel-compat gives one per
		// issue, in the table's order (the vDSO row before the inet one).
		if _, ok := m[f.ID]; !ok {
			m[f.ID] = f
		}
	}
	return m
}

func TestCRIUChecksWithoutCRIU(t *testing.T) {
	env := &Env{ProcRoot: "/proc", SysRoot: "/sys", Root: true, KernelRelease: "6.18.0",
		CRIUMissing: criu.ErrNotFound.Error()}
	m := runCRIUChecks(env)
	if f := m["criu.binary"]; f.Status != reports.Fail || f.Fix == nil || !strings.Contains(f.Fix.Description, "apt-get install criu") {
		t.Errorf("criu.binary: %+v, want fail with the install fix", f)
	}
	for _, id := range []string{"criu.check", "criu.check-extra", "criu.check-experimental", "criu.features", "criu.kernel-compat"} {
		if f := m[id]; f.Status != reports.Skip || !strings.Contains(f.Reason, "no criu binary") {
			t.Errorf("%s: %+v, want skip naming the missing criu", id, f)
		}
	}
}

func hostRelease(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(u.Release[:])
}

func hostCRIUEnv(t *testing.T) *Env {
	t.Helper()
	b, err := criu.Find("")
	if err != nil {
		t.Fatalf("this test runs the host's criu: apt-get install criu (%v)", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test runs criu check, which needs root: run it as root")
	}
	return &Env{ProcRoot: "/proc", SysRoot: "/sys", Root: true, KernelRelease: hostRelease(t), CRIU: b}
}

func TestCRIUChecksNotRoot(t *testing.T) {
	env := hostCRIUEnv(t)
	env.Root = false
	m := runCRIUChecks(env)
	for _, id := range []string{"criu.check", "criu.check-extra", "criu.check-experimental", "criu.features"} {
		if f := m[id]; f.Status != reports.Skip || !strings.Contains(f.Reason, "root") {
			t.Errorf("%s: %+v, want skip naming root", id, f)
		}
	}
	if f := m["criu.binary"]; f.Status != reports.Pass {
		t.Errorf("criu.binary needs no root: %+v", f)
	}
}

// TestCRIUChecksHost runs the checks against the host's real criu. On this
// project's machines (kernel 6.18, CRIU 3.17.1) criu cannot start: the
// checks must say so and explain it.
func TestCRIUChecksHost(t *testing.T) {
	env := hostCRIUEnv(t)
	m := runCRIUChecks(env)
	for id, f := range m {
		t.Logf("%-36s %-5s %s", id, f.Status, f.Summary)
	}
	bin := m["criu.binary"]
	if bin.Status != reports.Pass {
		t.Fatalf("criu.binary: %+v", bin)
	}
	v, err := env.CRIU.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var maj, min int
	if _, err := fmt.Sscanf(env.KernelRelease, "%d.%d", &maj, &min); err != nil {
		t.Fatal(err)
	}
	if !(maj > 6 || maj == 6 && min >= 13) || v.Int() >= 40100 {
		t.Logf("kernel %s with criu %s: no vDSO break to assert", env.KernelRelease, v)
		return
	}
	chk := m["criu.check"]
	if chk.Status != reports.Fail || chk.Level != reports.Required {
		t.Fatalf("criu.check: %+v, want a required fail", chk)
	}
	if !strings.Contains(chk.Summary, "vDSO") || !strings.Contains(strings.Join(chk.Evidence, "\n"), "Unexpected rt vDSO area bounds") {
		t.Errorf("criu.check does not name and quote the vDSO failure: %+v", chk)
	}
	if !strings.Contains(chk.Reason, "6.13") || chk.Fix == nil || !strings.Contains(chk.Fix.Description, "CRIU 4.1") {
		t.Errorf("criu.check is not explained (cause 6.13 vvar split, fix CRIU 4.1): %+v", chk)
	}
	for _, id := range []string{"criu.check-extra", "criu.check-experimental"} {
		if f := m[id]; f.Status != reports.Fail || !strings.Contains(f.Summary, "vDSO") {
			t.Errorf("%s: %+v, want a fail naming vDSO", id, f)
		}
	}
	// criu cannot start, so it is asked about one feature only.
	if f := m["criu.features"]; f.Status != reports.Skip || !strings.Contains(f.Reason, "criu.check") || len(f.Evidence) == 0 {
		t.Errorf("criu.features: %+v, want one skip pointing at criu.check, with criu's errors", f)
	}
	for _, ft := range criuFeatures {
		if f, ok := m["criu.feature."+ft.Name]; ok {
			t.Errorf("criu.feature.%s reported although criu cannot start: %+v", ft.Name, f)
		}
	}
	compat := m["criu.kernel-compat"]
	if compat.Status != reports.Fail || compat.Fix == nil || !strings.Contains(compat.Fix.Description, "CRIU 4.1 or later (e.g. kata-cr --criu-suite trixie)") {
		t.Errorf("criu.kernel-compat: %+v, want fail with the CRIU 4.1 fix", compat)
	}
}

// fakeCRIU writes a shell script that answers like criu 3.17.1: its
// --version, no swrk, `criu check --all` with allVerdict (exit 0 only for
// "Looks good."), `--feature uffd` with an error and every other check
// with success. Each check run appends its arguments to the trace file.
func fakeCRIU(t *testing.T, allVerdict string) (path, trace string) {
	t.Helper()
	dir := t.TempDir()
	trace = filepath.Join(dir, "trace")
	script := fmt.Sprintf(`#!/bin/sh
case "$1" in
--version) echo "Version: 3.17.1"; exit 0;;
swrk) exit 1;;
esac
log=; prev=
for a; do [ "$prev" = --log-file ] && log=$a; prev=$a; done
echo "$1 $2 $3" >> %s
case "$2 $3" in
"--all -v4") echo "(00.001) %s" > "$log"; [ "%s" = "Looks good." ]; exit $?;;
"--feature uffd") echo "(00.001) Error (criu/cr-check.c:1): UFFD is not supported" > "$log"; exit 1;;
"--feature "*) echo "(00.001) $3 is supported" > "$log"; exit 0;;
*) echo "(00.001) Looks good." > "$log"; exit 0;;
esac
`, trace, allVerdict, allVerdict)
	path = filepath.Join(dir, "criu")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, trace
}

// TestCRIUCheckAll: `criu check` runs first; when `criu check --all` then
// looks good it answers every other criu check and feature at once; when
// it does not, each runs on its own and says which failed.
func TestCRIUCheckAll(t *testing.T) {
	tests := []struct {
		name, verdict string
		runs          int
		uffd          reports.Status
	}{
		{"all good", "Looks good.", 2, reports.Pass},
		{"extra missing", "Looks good but some kernel features are missing\n(00.002) Error (criu/cr-check.c:2): UFFD is not supported", 1 + 3 + len(criuFeatures), reports.Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, trace := fakeCRIU(t, tt.verdict)
			b, err := criu.Find(path)
			if err != nil {
				t.Fatal(err)
			}
			m := runCRIUChecks(&Env{ProcRoot: "/proc", SysRoot: "/sys", Root: true, KernelRelease: "6.1.0", CRIU: b})
			for _, id := range []string{"criu.check", "criu.check-extra", "criu.check-experimental", "criu.feature.ns_pid", "criu.feature.timens"} {
				if m[id].Status != reports.Pass {
					t.Errorf("%s: %+v, want pass", id, m[id])
				}
			}
			if f := m["criu.feature.uffd"]; f.Status != tt.uffd {
				t.Errorf("criu.feature.uffd: %+v, want %s", f, tt.uffd)
			}
			data, _ := os.ReadFile(trace)
			if runs := strings.Count(string(data), "\n"); runs != tt.runs {
				t.Errorf("criu ran %d checks, want %d:\n%s", runs, tt.runs, data)
			}
		})
	}
}
