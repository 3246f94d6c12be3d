package cmd

import (
	"path/filepath"
	"slices"
	"testing"

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
		// Without CAP_SYS_ADMIN the nested pid namespace comes with a
		// user namespace of its own, which CRIU cannot dump either.
		blockers := []string{"process.pidns"}
		if c.StateBefore[testload.KeyNestedUserNS] == "yes" {
			blockers = append(blockers, "process.userns")
		}
		want := []reports.Refusal{{Step: string(checks.FixerIDRestartSetsid), BlockedBy: blockers}}
		if len(c.Refusals) != 1 || c.Refusals[0].Step != want[0].Step || !slices.Equal(c.Refusals[0].BlockedBy, want[0].BlockedBy) {
			t.Errorf("refusals %+v, want %+v", c.Refusals, want)
		}
		if actionApplied(r, checks.FixerIDRestartSetsid) {
			t.Errorf("the workload was restarted: %+v", r.Actions)
		}
		i := slices.IndexFunc(r.Actions, func(a reports.Action) bool { return a.Fixer == checks.FixerIDRestartSetsid })
		if i < 0 || !slices.Equal(r.Actions[i].BlockedBy, blockers) {
			t.Errorf("actions %+v: want restart-setsid not applied, blocked by %q", r.Actions, blockers)
		}
		if !isTrue(c.WorkloadRunning) || c.StateBefore[testload.KeyNested] == "" {
			t.Errorf("workload_running %v, state %v: want the workload running on with its nested child", c.WorkloadRunning, c.StateBefore)
		}
		if f := guestFindings(r)["checkpoint.refused"]; f.Status != reports.Fail {
			t.Errorf("checkpoint.refused: %s %q, want fail", f.Status, f.Summary)
		}
	})
}
