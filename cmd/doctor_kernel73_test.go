package cmd

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

// TestGuestDoctorNewKernel boots Debian's 7.3 kernel, newer than 6.13,
// twice. With the host's CRIU 3.17.1 the doctor must predict the vDSO
// failure twice over: from the compatibility table and from `criu check`
// itself, explained, naming CRIU 4.1 and --criu-suite trixie as the fix.
// With --criu-suite trixie (CRIU 4.1.1) the same kernel passes.
func TestGuestDoctorNewKernel(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 not found: install qemu-system-x86")
	}
	k, err := kernel.Find(kernel.FindOptions{Version: "7.3"})
	if err != nil {
		t.Fatalf("no cached Debian 7.3 kernel (run make guest-kernel KERNEL=7.3): %v", err)
	}
	run := func(t *testing.T, args ...string) (int, *reports.Report) {
		t.Helper()
		args = append([]string{"doctor", "-o", "json", "--fix", "--kernel-version", "7.3", "--timeout", "8m"}, args...)
		code, stdout, stderr := runKataCR(args...)
		var r reports.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("kata-cr %s: exit %d, no JSON report: %v\nstderr: %s", strings.Join(args, " "), code, err, stderr)
		}
		if r.Target.KernelRelease != k.Release {
			t.Errorf("guest kernel %q, want %q", r.Target.KernelRelease, k.Release)
		}
		return code, &r
	}

	t.Run("host criu 3.17.1", func(t *testing.T) {
		code, r := run(t)
		fs := guestFindings(r)
		if code != ExitCheckFailed {
			t.Errorf("exit %d, want %d", code, ExitCheckFailed)
		}
		if r.Target.CRIUVersion != "3.17.1" {
			t.Errorf("CRIU %q, want the host's 3.17.1", r.Target.CRIUVersion)
		}
		compat := fs["criu.kernel-compat"]
		if compat.Status != reports.Fail || compat.Fix == nil || !strings.Contains(compat.Fix.Description, "4.1") ||
			!strings.Contains(compat.Fix.Description, "trixie") {
			t.Errorf("criu.kernel-compat %+v: want a failure whose fix names CRIU 4.1 and --criu-suite trixie", compat)
		}
		check := fs["criu.check"]
		if check.Status != reports.Fail || !strings.Contains(strings.Join(check.Evidence, "\n")+check.Summary, "vDSO") {
			t.Errorf("criu.check %+v: want the real vDSO failure quoted", check)
		}
	})

	t.Run("trixie criu 4.1", func(t *testing.T) {
		code, r := run(t, "--criu-suite", "trixie")
		fs := guestFindings(r)
		if code != ExitOK || r.Failed {
			t.Errorf("exit %d (failed=%v), want %d; verdict %s", code, r.Failed, ExitOK, r.Verdict)
		}
		if !strings.HasPrefix(r.Target.CRIUVersion, "4.1") {
			t.Errorf("CRIU %q, want trixie's 4.1.x", r.Target.CRIUVersion)
		}
		for _, id := range []string{"criu.kernel-compat", "criu.check"} {
			if fs[id].Status != reports.Pass {
				t.Errorf("%s: %s (%s), want pass", id, fs[id].Status, fs[id].Summary)
			}
		}
	})
}
