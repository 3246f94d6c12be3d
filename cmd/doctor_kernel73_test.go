package cmd

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// TestGuestDoctorNewKernel boots Debian's 7.3 kernel, newer than 6.13,
// twice. With the host's CRIU (Debian 12's is 3.17.1) older than 4.1 the
// doctor must predict the vDSO failure twice over: from the compatibility
// table and from `criu check` itself, explained, naming CRIU 4.1 and
// --criu-suite trixie as the fix; a host CRIU from 4.1 on must pass. With
// --criu-suite trixie (CRIU 4.1.1) the same kernel passes, with a warning
// only from the compatibility table: from 6.16 on CRIU before 4.2 cannot
// dump a TCP or UDP socket (criu.inet-sockets judges a workload's).
func TestGuestDoctorNewKernel(t *testing.T) {
	k := needGuest(t, "7.3")
	host := hostCRIUVersion(t)
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

	t.Run("host criu "+host.String(), func(t *testing.T) {
		code, r := run(t)
		fs := guestFindings(r)
		if r.Target.CRIUVersion != host.String() {
			t.Errorf("CRIU %q, want the host's %s", r.Target.CRIUVersion, host)
		}
		if host.Int() >= 40100 {
			if code != ExitOK || r.Failed {
				t.Errorf("exit %d (failed=%v), want %d with CRIU %s; verdict %s", code, r.Failed, ExitOK, host, r.Verdict)
			}
			for _, id := range []string{"criu.kernel-compat", "criu.check"} {
				if st := statusOf(t, r, id); st == reports.Fail || st == reports.Error {
					t.Errorf("%s: %s, want no failure with CRIU %s", id, st, host)
				}
			}
			return
		}
		if code != ExitCheckFailed {
			t.Errorf("exit %d, want %d", code, ExitCheckFailed)
		}
		var compat reports.Finding
		for _, f := range findingsByID(r, "criu.kernel-compat") {
			if f.Status == reports.Fail {
				compat = f
			}
		}
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
		if f := fs["criu.check"]; f.Status != reports.Pass {
			t.Errorf("criu.check: %s (%s), want pass", f.Status, f.Summary)
		}
		compat := findingsByID(r, "criu.kernel-compat")
		if len(compat) != 1 || compat[0].Status != reports.Warn || !strings.Contains(strings.Join(compat[0].Evidence, "\n"), "compat.inet-sockopt-6.16") ||
			compat[0].Fix == nil || !strings.Contains(compat[0].Fix.Description, "--criu-suite forky") {
			t.Errorf("criu.kernel-compat %+v: want one warning, the inet sockets of 6.16, fixed with --criu-suite forky", compat)
		}
	})
}
