package crjob

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// staticCheck always reports one finding.
func staticCheck(id string, status reports.Status, fix *reports.Fix) checks.Check {
	return checks.Check{ID: id, Category: "process", Level: reports.Required, Title: id,
		Run: func(context.Context, *checks.Env) []reports.Finding {
			return []reports.Finding{{Status: status, Summary: id + " says so", Fix: fix}}
		}}
}

var restartFix = &reports.Fix{Description: "restart", AutoFixable: true, Fixer: checks.FixerIDRestartSetsid}

// TestCheckpointRestartGate: --auto-fix restarts the workload only when
// nothing else would still block the dump; otherwise it refuses, leaves the
// workload running as it was, and never calls CRIU.
func TestCheckpointRestartGate(t *testing.T) {
	for _, tt := range []struct {
		name    string
		checks  []checks.Check
		refused bool
	}{
		{"only the session leader", []checks.Check{staticCheck("test.session", reports.Fail, restartFix)}, false},
		{"and a nested pid namespace", []checks.Check{
			staticCheck("test.session", reports.Fail, restartFix),
			staticCheck("test.nested", reports.Fail, &reports.Fix{Description: "no fix"}),
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{dumpErr: &criu.Error{Op: "dump", Err: errors.New("exit status 1")}}
			d := testDeps(t, h, rt, cr)
			d.Guest.Checks = tt.checks
			if err := Checkpoint(t.Context(), d, agentapi.CheckpointOptions{Command: selfCommand(t)}, true); err != nil {
				t.Fatal(err)
			}
			cp := onlyReport(t, h).Checkpoint
			if !tt.refused {
				if rt.starts != 2 || len(cp.Refusals) != 0 || len(cr.dumps) != 1 {
					t.Errorf("starts %d, refusals %+v, dumps %d: want the workload restarted and dumped", rt.starts, cp.Refusals, len(cr.dumps))
				}
				return
			}
			if rt.starts != 1 || rt.ctr.killed != 1 {
				t.Errorf("started %d times, killed %d times: want one start and only the job's final stop", rt.starts, rt.ctr.killed)
			}
			if len(cp.Refusals) != 1 || cp.Refusals[0].Step != string(checks.FixerIDRestartSetsid) || !slices.Equal(cp.Refusals[0].BlockedBy, []string{"test.nested"}) {
				t.Errorf("refusals %+v: want restart-setsid refused, blocked by test.nested", cp.Refusals)
			}
			if len(cr.dumps) != 0 || cp.DumpOK || cp.WorkloadRunning == nil || !*cp.WorkloadRunning {
				t.Errorf("dumps %d, dump ok %v, running %v: want no dump and the workload running", len(cr.dumps), cp.DumpOK, cp.WorkloadRunning)
			}
		})
	}
}

// TestCheckpointRefusesHang: a tree CRIU cannot seize (process.vfork) is
// never handed to CRIU; with --prove, CRIU judges it in two dumps, one where
// its own --timeout runs out first and one where kata-cr's limit does.
func TestCheckpointRefusesHang(t *testing.T) {
	vfork := staticCheck("process.vfork", reports.Fail, nil)
	t.Run("plain", func(t *testing.T) {
		h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{}
		d := testDeps(t, h, rt, cr)
		d.Guest.Checks = []checks.Check{vfork}
		if err := Checkpoint(t.Context(), d, agentapi.CheckpointOptions{Command: selfCommand(t)}, false); err != nil {
			t.Fatal(err)
		}
		r := onlyReport(t, h)
		cp := r.Checkpoint
		if len(cr.dumps) != 0 {
			t.Errorf("CRIU was called: %+v", cr.dumps)
		}
		if len(cp.Refusals) != 1 || cp.Refusals[0].Step != "dump" || !slices.Equal(cp.Refusals[0].BlockedBy, []string{"process.vfork"}) {
			t.Errorf("refusals %+v: want the dump refused on process.vfork", cp.Refusals)
		}
		if f, ok := finding(r, "checkpoint.refused"); !ok || f.Status != reports.Fail {
			t.Errorf("checkpoint.refused %+v: want a failure", f)
		}
		if cp.WorkloadRunning == nil || !*cp.WorkloadRunning {
			t.Errorf("workload_running %v, want true", cp.WorkloadRunning)
		}
	})
	t.Run("prove", func(t *testing.T) {
		h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{dumpErr: &criu.Error{Op: "dump", Hung: true, Err: criu.ErrHung}}
		d := testDeps(t, h, rt, cr)
		d.Guest.Checks = []checks.Check{vfork}
		if err := Checkpoint(t.Context(), d, agentapi.CheckpointOptions{Command: selfCommand(t), Prove: true}, true); err != nil {
			t.Fatal(err)
		}
		cp := onlyReport(t, h).Checkpoint
		// The proofs of the other findings' options come first.
		var dumps []criu.DumpOpts
		for _, o := range cr.dumps {
			if strings.Contains(o.ImagesDir, "hang-proof") {
				dumps = append(dumps, o)
			}
		}
		if len(dumps) != 2 || dumps[0].FreezeTimeout != hangProofFreeze || dumps[1].FreezeTimeout <= hangProofKillAfter || !dumps[0].LeaveRunning {
			t.Fatalf("dumps %+v: want two proofs with --leave-running, CRIU's timeout short, then beyond kata-cr's limit", dumps)
		}
		proofs := cp.Proofs[len(cp.Proofs)-2:]
		if proofs[0].Confirmed || !proofs[1].Hung || !proofs[1].Confirmed || proofs[1].Finding != "process.vfork" {
			t.Errorf("proofs %+v: want the hang confirmed by the second", proofs)
		}
		for _, p := range proofs {
			if p.WorkloadRunning == nil || !*p.WorkloadRunning {
				t.Errorf("proof %+v: the workload must run on", p)
			}
		}
		if len(cp.Refusals) != 1 || cp.DumpOK {
			t.Errorf("refusals %+v, dump ok %v: the dump itself must still be refused", cp.Refusals, cp.DumpOK)
		}
	})
}

// TestThawTree wakes a stopped process of a tree, and only that.
func TestThawTree(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	fs := proc.New("/proc")
	pid := cmd.Process.Pid
	state := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, err := fs.ReadTaskState(pid, pid)
			if err == nil && st == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("sleep %d in state %q (%v), want %s", pid, st, err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	state("S")
	if n, err := thawTree(fs, pid); n != 0 || err != nil {
		t.Errorf("thawTree of a running tree = %d, %v", n, err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	state("T")
	if n, err := thawTree(fs, pid); n != 1 || err != nil {
		t.Errorf("thawTree of a stopped tree = %d, %v, want 1", n, err)
	}
	state("S")
}
