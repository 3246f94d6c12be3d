package checks

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/testload"
)

func TestMain(m *testing.M) {
	// The vfork test runs this binary as kata-cr-testload.
	if testload.Invoked(os.Args[0]) {
		os.Exit(testload.Main(os.Args, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestVforkWait(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    proc.Syscall
		want bool
	}{
		{"running", proc.Syscall{Running: true, Nr: -1}, false},
		{"outside a call", proc.Syscall{Nr: -1}, false},
		{"clone with CLONE_VFORK", proc.Syscall{Nr: 56, Args: [6]uint64{0x4111}}, true},
		{"clone without", proc.Syscall{Nr: 56, Args: [6]uint64{0x11}}, false},
		{"clone3", proc.Syscall{Nr: 435}, true},
		{"read", proc.Syscall{Nr: 0}, false},
	} {
		if got := vforkWait(tt.s); got != tt.want {
			t.Errorf("%s: vforkWait(%+v) = %v, want %v", tt.name, tt.s, got, tt.want)
		}
	}
}

func TestWouldHang(t *testing.T) {
	p := &reports.Prediction{BlockedBy: []string{"process.session-leader", "process.vfork"}}
	if got := WouldHang(p); len(got) != 1 || got[0] != "process.vfork" {
		t.Errorf("WouldHang = %q, want process.vfork", got)
	}
	if got := WouldHang(&reports.Prediction{BlockedBy: []string{"process.pidns"}}); got != nil {
		t.Errorf("WouldHang without a hang = %q", got)
	}
}

// TestProcVforkLive checks a real task waiting for its vfork child (the
// vfork-hold mode of kata-cr-testload: the child pauses instead of exec):
// process.vfork fails on it, and passes on a tree without one.
func TestProcVforkLive(t *testing.T) {
	procNeedRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), testload.Name)
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	pid := procStart(t, exec.Command(link, testload.ModeVforkHold), func(tr *procTree) bool { return len(tr.Procs) == 2 })
	f := procOne(t, procRunAll(t, pid), "process.vfork")
	t.Logf("%s", procDump([]reports.Finding{f}))
	ev := strings.Join(f.Evidence, "\n")
	if f.Status != reports.Fail || !strings.Contains(f.Summary, "Unseizable non-zombie") || !strings.Contains(ev, "waits for its vfork child") {
		t.Fatalf("process.vfork: %s %s\n%s", f.Status, f.Summary, ev)
	}
	if p := Predict([]reports.Finding{f}); p.WithOptions || len(WouldHang(p)) != 1 {
		t.Errorf("prediction %+v: want a failure no option fixes, one that would hang CRIU", p)
	}

	other := procStart(t, exec.Command(link, testload.ModeHold), procCount(testload.Name[:15], 1))
	if f := procOne(t, procRunAll(t, other), "process.vfork"); f.Status != reports.Pass {
		t.Errorf("process.vfork on a tree without vfork: %s %s", f.Status, f.Summary)
	}
}
