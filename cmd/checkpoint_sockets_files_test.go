package cmd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// TestCheckpointUDPCork: a corked UDP socket. CRIU refuses it whatever it
// is asked, and the preflight says so; the failed dump leaves CRIU's log
// on the host beside the images directory.
func TestCheckpointUDPCork(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	code, r := runCheckpointVM(t, "checkpoint", "udp-cork", "--runtime-setsid", "--auto-fix", "--no-restore", "--images-dir", dir)
	c := r.Checkpoint
	if code != ExitCheckFailed || c.DumpOK {
		t.Fatalf("exit %d, dump ok %v: want a failed dump", code, c.DumpOK)
	}
	if !slices.Contains(r.Prediction.BlockedBy, "process.udp-cork") {
		t.Errorf("the prediction is blocked by %q, want process.udp-cork", r.Prediction.BlockedBy)
	}
	if c.FailureSignature != "udp-corked" || !slices.Equal(c.PredictedBy, []string{"process.udp-cork"}) {
		t.Errorf("raw CRIU failed on %q, predicted by %q: want udp-corked, predicted by process.udp-cork", c.FailureSignature, c.PredictedBy)
	}
	if c.PredictionMatched == nil || !*c.PredictionMatched || c.WorkloadRunning == nil || !*c.WorkloadRunning {
		t.Errorf("prediction matched %v, workload running %v: want both", c.PredictionMatched, c.WorkloadRunning)
	}
	if c.DumpLog != dir+".dump.log" {
		t.Fatalf("dump log %q, want it beside %s", c.DumpLog, dir)
	}
	fi, err := os.Stat(c.DumpLog)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dump log %s: %v (%v), want 0600", c.DumpLog, fi.Mode(), err)
	}
	if data, _ := os.ReadFile(c.DumpLog); !strings.Contains(string(data), "Can't dump corked dgram socket") {
		t.Errorf("the dump log does not hold CRIU's error")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a failed checkpoint left %s: %v", dir, err)
	}
}

// TestCheckpointUnixQueued: a listening unix socket with a connection
// queued whose client has sent its request. CRIU 3.17.1 dumps it and
// drops the request: the preflight predicts the dump and the loss, the
// restore succeeds, and the workload's own probe sees the restored server
// never read the request. CRIU 4.1.1 refuses the dump, as predicted.
func TestCheckpointUnixQueued(t *testing.T) {
	t.Run("CRIU 3.17.1", func(t *testing.T) {
		code, r := runCheckpointVM(t, "checkpoint", "unix-queued", "--runtime-setsid", "--auto-fix", "--accept-loss",
			"--images-dir", filepath.Join(t.TempDir(), "images"))
		c := r.Checkpoint
		if code != ExitCheckFailed || !c.DumpOK || !c.RestoreOK || c.Verified {
			t.Fatalf("exit %d, dump %v, restore %v, verified %v: want a dump and a restore that lose the request", code, c.DumpOK, c.RestoreOK, c.Verified)
		}
		if c.PredictionMatched == nil || !*c.PredictionMatched {
			t.Errorf("prediction matched %v: the dump was predicted to succeed", c.PredictionMatched)
		}
		if f := guestFindings(r)["process.unix-queued"]; f.Status != reports.Warn || f.Loses == "" {
			t.Errorf("process.unix-queued: %s %q (loses %q), want a warning of the loss", f.Status, f.Summary, f.Loses)
		}
		if c.StateBefore["queued"] != "waiting" || !strings.HasPrefix(c.StateAfter["queued"], "lost") {
			t.Errorf("queued connection: %q at the dump, %q after the restore: want it lost", c.StateBefore["queued"], c.StateAfter["queued"])
		}
	})
	t.Run("CRIU 4.1.1", func(t *testing.T) {
		code, r := runCheckpointVM(t, "checkpoint", "unix-queued", "--criu-suite", "trixie", "--runtime-setsid", "--auto-fix", "--no-restore",
			"--images-dir", filepath.Join(t.TempDir(), "images"))
		c := r.Checkpoint
		if code != ExitCheckFailed || c.DumpOK {
			t.Fatalf("exit %d, dump ok %v: want a refused dump", code, c.DumpOK)
		}
		if c.FailureSignature != "unix-inflight-data" || !slices.Equal(c.PredictedBy, []string{"process.unix-queued"}) {
			t.Errorf("raw CRIU failed on %q, predicted by %q: want unix-inflight-data, predicted by process.unix-queued", c.FailureSignature, c.PredictedBy)
		}
		if c.PredictionMatched == nil || !*c.PredictionMatched || c.WorkloadRunning == nil || !*c.WorkloadRunning {
			t.Errorf("prediction matched %v, workload running %v: want both", c.PredictionMatched, c.WorkloadRunning)
		}
	})
}

// TestCheckpointInitDies: a workload that dies at start: the report has
// its exit status and the end of what it wrote.
func TestCheckpointInitDies(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "--runtime-setsid", "--no-restore", "--images-dir", filepath.Join(t.TempDir(), "images"),
		"--", "sh", "-c", "echo starting; echo 'kata-cr-test: no config' >&2; exit 7")
	c := r.Checkpoint
	if code != ExitCheckFailed || c.DumpOK {
		t.Fatalf("exit %d, dump ok %v: want the workload's start to fail", code, c.DumpOK)
	}
	if c.InitExit == nil || c.InitExit.Code != 7 {
		t.Errorf("init exit %+v, want status 7", c.InitExit)
	}
	if !slices.Equal(c.InitOutput, []string{"starting", "kata-cr-test: no config"}) {
		t.Errorf("init output %q, want what it wrote to stdout and stderr", c.InitOutput)
	}
}
