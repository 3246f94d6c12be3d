package checks

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// TestProcUserNSLive: a shell whose child runs in a user namespace of its
// own (unshare -U) fails process.userns, and the prediction says no option
// helps; the shell alone passes.
func TestProcUserNSLive(t *testing.T) {
	procNeedRoot(t)
	sh := procNeedTool(t, "sh", "dash")
	unshare := procNeedTool(t, "unshare", "util-linux")
	sleep := procNeedTool(t, "sleep", "coreutils")
	for _, tc := range []struct {
		name   string
		script string
		want   reports.Status
	}{
		{"nested", unshare + " -U " + sleep + " 1000; :", reports.Fail},
		{"flat", sleep + " 1000; :", reports.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(sh, "-c", tc.script)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			pid := procStart(t, cmd, procCount("sleep", 1))
			fs := procRunAll(t, pid)
			f := procOne(t, fs, "process.userns")
			if f.Status != tc.want {
				t.Fatalf("process.userns: %s %q\n%s\nwant %s", f.Status, f.Summary, strings.Join(f.Evidence, "\n"), tc.want)
			}
			if tc.want == reports.Fail {
				if !strings.Contains(f.Summary, "nested user namespaces") {
					t.Errorf("summary %q", f.Summary)
				}
				if p := Predict(fs); p.WithOptions || !strings.Contains(strings.Join(p.BlockedBy, " "), "process.userns") {
					t.Errorf("prediction %+v: want a failure on process.userns that no option fixes", p)
				}
			}
		})
	}
}
