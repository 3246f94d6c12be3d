package cmd

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/testload"
)

// The process scenarios of kata-cr-testload in a real guest: each test
// puts CRIU's own result beside kata-cr's prediction (logCRIUBeside) and
// asserts on the report's fields.

// logCRIUBeside logs the prediction of the dump that ran next to what CRIU
// did with it.
func logCRIUBeside(t *testing.T, r *reports.Report) {
	t.Helper()
	c := r.Checkpoint
	plan := "none"
	if f, ok := guestFindings(r)["checkpoint.plan"]; ok {
		plan = string(f.Status) + ": " + f.Summary
	}
	matched := "n/a"
	if c.PredictionMatched != nil {
		matched = map[bool]string{true: "yes", false: "no"}[*c.PredictionMatched]
	}
	t.Logf("prediction: plain dump succeeds %v, blocked by %q; plan %s", r.Prediction.DumpWillSucceed, r.Prediction.BlockedBy, plan)
	t.Logf("criu %s: dump ok %v (%.2fs), failure %q predicted by %q, hung %v; matched %s; refusals %+v",
		r.Target.CRIUVersion, c.DumpOK, c.DumpSeconds, c.FailureSignature, c.PredictedBy, c.CRIUHung, matched, c.Refusals)
	for _, p := range c.Proofs {
		t.Logf("proof %s: failed %v on %q, hung %v, confirmed %v", p.Finding, p.Failed, p.Signature, p.Hung, p.Confirmed)
	}
}

// checkExplained fails the test for an error line of CRIU's that kata-cr
// cannot explain.
func checkExplained(t *testing.T, c *reports.Checkpoint) {
	t.Helper()
	for _, e := range c.Explanations {
		if !e.Known {
			t.Errorf("unknown CRIU error at %s:%d: %s", e.Source, e.Line, e.Cause)
		}
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// TestCheckpointZombie: a workload that keeps an unreaped zombie child. The
// plan predicts success, CRIU dumps it, the images match the frozen tree
// (a zombie recorded without threads), and the restored workload carries
// on with its zombie.
func TestCheckpointZombie(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "zombie", "--runtime-setsid", "--auto-fix", "--images-dir", filepath.Join(t.TempDir(), "images"))
	logCRIUBeside(t, r)
	c := r.Checkpoint
	if code != ExitOK || !c.OK() || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s", code, c.Verified, c.Error)
	}
	fs := guestFindings(r)
	if f := fs["checkpoint.plan"]; f.Status != reports.Pass {
		t.Errorf("checkpoint.plan: %s %q, want the dump predicted to succeed", f.Status, f.Summary)
	}
	if !isTrue(c.PredictionMatched) {
		t.Errorf("prediction_matched %v, want true", c.PredictionMatched)
	}
	if f := fs["checkpoint.images"]; f.Status != reports.Pass {
		t.Errorf("checkpoint.images: %s %q (%s): the images must match the tree with its zombie", f.Status, f.Summary, f.Reason)
	}
	if _, ok := fs["checkpoint.restored-in-place"]; ok {
		t.Errorf("the workload was restored in place: %+v", fs["checkpoint.restored-in-place"])
	}
	if c.StateBefore[testload.KeyZombies] != "1" || c.StateAfter[testload.KeyZombies] != "1" {
		t.Errorf("zombies before %q, after %q: want the zombie dumped and restored", c.StateBefore[testload.KeyZombies], c.StateAfter[testload.KeyZombies])
	}
	if c.StateAfter[testload.KeyRun] != c.StateBefore[testload.KeyRun] {
		t.Errorf("run %q after the restore, %q at the dump: the workload started afresh", c.StateAfter[testload.KeyRun], c.StateBefore[testload.KeyRun])
	}
}

// TestCheckpointNestedPIDNS: a workload with a child in a nested pid
// namespace. With the init a session leader, the plan predicts the failure
// on process.pidns and CRIU fails on exactly that ("Can't dump nested pid
// namespace"), explained. Started as Kata 2.5 to 4.0 start it, --auto-fix
// refuses to restart it: the restart would lose its state and the dump
// would still fail, so the workload is left running as it was.
func TestCheckpointNestedPIDNS(t *testing.T) {
	t.Run("criu", func(t *testing.T) {
		code, r := runCheckpointVM(t, "checkpoint", "nested-pidns", "--runtime-setsid", "--auto-fix", "--no-restore", "--images-dir", filepath.Join(t.TempDir(), "images"))
		logCRIUBeside(t, r)
		c := r.Checkpoint
		if code != ExitCheckFailed || c.DumpOK {
			t.Fatalf("exit %d, dump ok %v: want CRIU failing", code, c.DumpOK)
		}
		if !slices.Contains(r.Prediction.BlockedBy, "process.pidns") || guestFindings(r)["checkpoint.plan"].Status != reports.Warn {
			t.Errorf("prediction blocked by %q, plan %s: want the plan failing on process.pidns", r.Prediction.BlockedBy, guestFindings(r)["checkpoint.plan"].Status)
		}
		if c.FailureSignature != "nested-pidns" || !slices.Equal(c.PredictedBy, []string{"process.pidns"}) || !isTrue(c.PredictionMatched) {
			t.Errorf("CRIU failed on %q predicted by %q (matched %v), want nested-pidns predicted by process.pidns", c.FailureSignature, c.PredictedBy, c.PredictionMatched)
		}
		checkExplained(t, c)
		if !isTrue(c.WorkloadRunning) {
			t.Errorf("workload_running %v, want true", c.WorkloadRunning)
		}
	})
	t.Run("auto-fix refuses the restart", func(t *testing.T) {
		code, r := runCheckpointVM(t, "checkpoint", "nested-pidns", "--auto-fix", "--no-restore", "--images-dir", filepath.Join(t.TempDir(), "images"))
		logCRIUBeside(t, r)
		c := r.Checkpoint
		if code != ExitCheckFailed || c.DumpOK {
			t.Fatalf("exit %d, dump ok %v: want a refusal", code, c.DumpOK)
		}
		want := []reports.Refusal{{Step: string(checks.FixerIDRestartSetsid), BlockedBy: []string{"process.pidns"}}}
		if len(c.Refusals) != 1 || c.Refusals[0].Step != want[0].Step || !slices.Equal(c.Refusals[0].BlockedBy, want[0].BlockedBy) {
			t.Errorf("refusals %+v, want %+v", c.Refusals, want)
		}
		if actionApplied(r, checks.FixerIDRestartSetsid) {
			t.Errorf("the workload was restarted: %+v", r.Actions)
		}
		i := slices.IndexFunc(r.Actions, func(a reports.Action) bool { return a.Fixer == checks.FixerIDRestartSetsid })
		if i < 0 || !slices.Equal(r.Actions[i].BlockedBy, []string{"process.pidns"}) {
			t.Errorf("actions %+v: want restart-setsid not applied, blocked by process.pidns", r.Actions)
		}
		if !isTrue(c.WorkloadRunning) || c.StateBefore[testload.KeyNested] == "" {
			t.Errorf("workload_running %v, state %v: want the workload running on with its nested child", c.WorkloadRunning, c.StateBefore)
		}
		if f := guestFindings(r)["checkpoint.refused"]; f.Status != reports.Fail {
			t.Errorf("checkpoint.refused: %s %q, want fail", f.Status, f.Summary)
		}
	})
}

// TestCheckpointVfork: a workload whose child waits in vfork() for good.
// process.vfork predicts that CRIU cannot seize it, and kata-cr does not
// start the dump; --prove lets CRIU judge: with its own --timeout short it
// fails on "Unseizable non-zombie ... state D" (explained), and with it
// longer than kata-cr's time limit it hangs, is killed and reported as
// hung. After each the workload runs on, and the whole job takes far less
// than the three minutes CRIU used to wait.
func TestCheckpointVfork(t *testing.T) {
	start := time.Now()
	code, r := runCheckpointVM(t, "checkpoint", "vfork", "--runtime-setsid", "--auto-fix", "--prove", "--no-restore", "--images-dir", filepath.Join(t.TempDir(), "images"))
	took := time.Since(start)
	logCRIUBeside(t, r)
	c := r.Checkpoint
	if code != ExitCheckFailed || c.DumpOK {
		t.Fatalf("exit %d, dump ok %v: want the dump refused", code, c.DumpOK)
	}
	if !slices.Contains(r.Prediction.BlockedBy, "process.vfork") {
		t.Errorf("prediction blocked by %q, want process.vfork", r.Prediction.BlockedBy)
	}
	if len(c.Refusals) != 1 || c.Refusals[0].Step != "dump" || !slices.Equal(c.Refusals[0].BlockedBy, []string{"process.vfork"}) {
		t.Errorf("refusals %+v: want the dump refused on process.vfork", c.Refusals)
	}
	if !isTrue(c.WorkloadRunning) || c.StateBefore[testload.KeyVforkState] != "D" {
		t.Errorf("workload_running %v, state %v: want the workload running, its vfork parent still in D", c.WorkloadRunning, c.StateBefore)
	}
	var proofs []reports.Proof
	for _, p := range c.Proofs {
		if p.Finding == "process.vfork" {
			proofs = append(proofs, p)
		}
	}
	if len(proofs) != 2 {
		t.Fatalf("proofs %+v: want two of process.vfork", c.Proofs)
	}
	if p := proofs[0]; !p.Failed || p.Hung || !p.Confirmed || (p.Signature != "seize-timeout" && p.Signature != "unseizable-task") {
		t.Errorf("first proof %+v: want CRIU giving up on its own timeout, on a cause process.vfork names", p)
	}
	if p := proofs[1]; !p.Failed || !p.Hung || !p.Confirmed {
		t.Errorf("second proof %+v: want CRIU hung and killed at kata-cr's limit", p)
	}
	for _, p := range proofs {
		if !isTrue(p.WorkloadRunning) {
			t.Errorf("proof %+v: the workload must run on after it", p)
		}
	}
	for id := range guestFindings(r) {
		if strings.HasPrefix(id, "checkpoint.proof.mount") {
			t.Errorf("%s ran: option proofs of a tree CRIU cannot seize only wait for CRIU's timeout", id)
		}
	}
	if took > 150*time.Second {
		t.Errorf("the job took %s", took.Round(time.Second))
	}
}

// TestCheckpointInetNewKernel: a TCP listener on Debian's 7.3 kernel. With
// trixie's CRIU 4.1.1, criu.inet-sockets predicts that the dump fails
// (Linux 6.16 changed SO_PASSCRED and SO_PASSSEC on inet sockets), and
// CRIU fails on exactly that ("Can't get 1:16 opt"), explained. With
// forky's CRIU 4.2.1 the same workload is predicted to dump, dumps,
// restores, and the restored listener greets with the run id of the dump.
func TestCheckpointInetNewKernel(t *testing.T) {
	t.Run("trixie criu 4.1", func(t *testing.T) {
		code, r := runCheckpointOn(t, "7.3", "checkpoint", "tcp-listen", "--criu-suite", "trixie", "--runtime-setsid", "--auto-fix", "--no-restore", "--images-dir", filepath.Join(t.TempDir(), "images"))
		logCRIUBeside(t, r)
		c := r.Checkpoint
		if !strings.HasPrefix(r.Target.CRIUVersion, "4.1") {
			t.Errorf("CRIU %s, want trixie's 4.1", r.Target.CRIUVersion)
		}
		if code != ExitCheckFailed || c.DumpOK {
			t.Fatalf("exit %d, dump ok %v: want CRIU failing", code, c.DumpOK)
		}
		if !slices.Contains(r.Prediction.BlockedBy, "criu.inet-sockets") || guestFindings(r)["checkpoint.plan"].Status != reports.Warn {
			t.Errorf("prediction blocked by %q, plan %s: want the plan failing on criu.inet-sockets", r.Prediction.BlockedBy, guestFindings(r)["checkpoint.plan"].Status)
		}
		if c.FailureSignature != "inet-sockopt-6.16" || !slices.Contains(c.PredictedBy, "criu.inet-sockets") || !isTrue(c.PredictionMatched) {
			t.Errorf("CRIU failed on %q predicted by %q (matched %v), want inet-sockopt-6.16 predicted by criu.inet-sockets", c.FailureSignature, c.PredictedBy, c.PredictionMatched)
		}
		checkExplained(t, c)
		if !isTrue(c.WorkloadRunning) {
			t.Errorf("workload_running %v, want true", c.WorkloadRunning)
		}
	})
	t.Run("forky criu 4.2", func(t *testing.T) {
		code, r := runCheckpointOn(t, "7.3", "checkpoint", "tcp-listen", "--criu-suite", "forky", "--runtime-setsid", "--auto-fix", "--images-dir", filepath.Join(t.TempDir(), "images"))
		logCRIUBeside(t, r)
		c := r.Checkpoint
		if !strings.HasPrefix(r.Target.CRIUVersion, "4.") || r.Target.CRIUVersion < "4.2" {
			t.Errorf("CRIU %s, want forky's 4.2 or later", r.Target.CRIUVersion)
		}
		if code != ExitOK || !c.OK() || !c.Verified {
			t.Fatalf("exit %d, verified %v: %s", code, c.Verified, c.Error)
		}
		fs := guestFindings(r)
		if f := fs["criu.inet-sockets"]; f.Status != reports.Pass {
			t.Errorf("criu.inet-sockets: %s %q, want pass", f.Status, f.Summary)
		}
		if f := fs["checkpoint.plan"]; f.Status != reports.Pass || !isTrue(c.PredictionMatched) {
			t.Errorf("checkpoint.plan %s, matched %v: want the dump predicted to succeed, as it did", f.Status, c.PredictionMatched)
		}
		if c.StateAfter[testload.KeyRun] != c.StateBefore[testload.KeyRun] || c.StateAfter[testload.KeyListen] != c.StateBefore[testload.KeyListen] {
			t.Errorf("state before %v, after %v: want the same listener of the same run", c.StateBefore, c.StateAfter)
		}
	})
}
