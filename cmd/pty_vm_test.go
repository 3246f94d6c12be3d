package cmd

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// TestCheckpointPtyWorkload: a workload without a terminal that opens a
// pseudo-terminal pair itself (tmux, expect, an ssh server) starts, since
// every container has its own devpts; CRIU dumps the pair with the tree,
// as predicted, and the restored process still passes lines through it.
func TestCheckpointPtyWorkload(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "pty", "--runtime-setsid", "--auto-fix", "--images-dir", filepath.Join(t.TempDir(), "images"))
	c := r.Checkpoint
	if code != ExitOK || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s %s", code, c.Verified, c.Verification, c.Error)
	}
	if f := guestFindings(r)["checkpoint.plan"]; f.Status != reports.Pass {
		t.Errorf("checkpoint.plan: %s %q, want the dump predicted to succeed", f.Status, f.Summary)
	}
	if c.PredictionMatched == nil || !*c.PredictionMatched {
		t.Errorf("prediction_matched %v, want true", c.PredictionMatched)
	}
	if c.StateAfter["pty"] == "" || c.StateAfter["pty"] != c.StateBefore["pty"] {
		t.Errorf("pty before %q, after %q: want the same pair", c.StateBefore["pty"], c.StateAfter["pty"])
	}
}

// TestCheckpointPidfd: a process holding a pidfd of its child (what Go's
// os/exec keeps for every child): CRIU 3.17.1 has no dumper for pidfds,
// process.files predicts the failure, and CRIU fails on that fd.
func TestCheckpointPidfd(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "pidfd", "--runtime-setsid", "--auto-fix", "--no-restore", "--images-dir", filepath.Join(t.TempDir(), "images"))
	c := r.Checkpoint
	if code != ExitCheckFailed || c.DumpOK {
		t.Fatalf("exit %d, dump ok %v: want the dump refused", code, c.DumpOK)
	}
	if f := guestFindings(r)["process.files"]; f.Status != reports.Fail {
		t.Errorf("process.files: %s %q, want a failure naming the pidfd", f.Status, f.Summary)
	}
	if c.PredictionMatched == nil || !*c.PredictionMatched {
		t.Errorf("prediction_matched %v, want true (CRIU failed on %q)", c.PredictionMatched, c.FailureSignature)
	}
	if c.FailureSignature != "file-type-unsupported" || !slices.Contains(c.PredictedBy, "process.files") {
		t.Errorf("CRIU failed on %q, predicted by %q: want file-type-unsupported, predicted by process.files", c.FailureSignature, c.PredictedBy)
	}
	if c.WorkloadRunning == nil || !*c.WorkloadRunning {
		t.Errorf("workload_running %v, want true", c.WorkloadRunning)
	}
}
