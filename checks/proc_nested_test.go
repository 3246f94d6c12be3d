package checks

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// TestProcNestedPIDNSLive: a session-leader init whose child lives in a
// nested pid namespace (unshare -p). process.pidns fails on the nested
// namespace; process.session-leader leaves the nested process to it (its
// session leader is outside its own namespace whatever the init does, so a
// restart would not help) and passes the init.
func TestProcNestedPIDNSLive(t *testing.T) {
	procNeedRoot(t)
	unshare := procNeedTool(t, "unshare", "util-linux")
	sleep := procNeedTool(t, "sleep", "coreutils")
	cmd := exec.Command(unshare, "-p", "-f", sleep, "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pid := procStart(t, cmd, procCount("sleep", 1))
	fs := procRunAll(t, pid)
	ns := procOne(t, fs, "process.pidns")
	if ns.Status != reports.Fail || !strings.Contains(ns.Summary, "nested pid namespaces") {
		t.Errorf("process.pidns: %s %q, want a failure on the nested namespace", ns.Status, ns.Summary)
	}
	sl := procOne(t, fs, "process.session-leader")
	if sl.Status != reports.Pass || !strings.Contains(strings.Join(sl.Evidence, "\n"), "in a nested pid namespace") {
		t.Errorf("process.session-leader: %s %q\n%s\nwant a pass that leaves the nested process to process.pidns", sl.Status, sl.Summary, strings.Join(sl.Evidence, "\n"))
	}
	if p := Predict(fs); p.WithOptions || !strings.Contains(strings.Join(p.BlockedBy, " "), "process.pidns") {
		t.Errorf("prediction %+v: want a failure on process.pidns that no option fixes", p)
	}
}
