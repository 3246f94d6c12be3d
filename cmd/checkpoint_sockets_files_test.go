package cmd

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// proofsOf returns the signatures raw CRIU failed on in the --prove dumps
// without finding's options, failing the test for a dump that did not fail
// or that failed on a cause the finding does not name.
func proofsOf(t *testing.T, c *reports.Checkpoint, finding string) []string {
	t.Helper()
	var sigs []string
	for _, p := range c.Proofs {
		if p.Finding != finding {
			continue
		}
		t.Logf("raw CRIU without %s: failed %v on %q (confirmed %v)", p.Without, p.Failed, p.Signature, p.Confirmed)
		if !p.Failed || !p.Confirmed {
			t.Errorf("proof of %s without %s: failed %v on %q, confirmed %v", finding, p.Without, p.Failed, p.Signature, p.Confirmed)
		}
		sigs = append(sigs, p.Signature)
	}
	slices.Sort(sigs)
	return sigs
}

// stateInt reads a number of a workload's state.
func stateInt(t *testing.T, st map[string]string, key string) int {
	t.Helper()
	n, err := strconv.Atoi(st[key])
	if err != nil {
		t.Fatalf("state %v: no number under %s", st, key)
	}
	return n
}

// TestCheckpointTCPEstablished: a TCP server and a connected client inside
// the tree. The plan dumps the connections with --tcp-established and
// locks them with nftables (the guest has no iptables, CRIU's default
// lock); raw CRIU confirms both: without --tcp-established it refuses the
// connection, without --network-lock nftables its iptables lock fails.
// The restored connection still answers.
func TestCheckpointTCPEstablished(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "tcp-established", "--runtime-setsid", "--auto-fix", "--prove",
		"--images-dir", filepath.Join(t.TempDir(), "images"))
	c := r.Checkpoint
	if code != ExitOK || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s %s", code, c.Verified, c.Verification, c.Error)
	}
	if got := proofsOf(t, c, "process.tcp"); !slices.Equal(got, []string{"network-lock-iptables", "tcp-established"}) {
		t.Errorf("raw CRIU failed on %q without process.tcp's options, want network-lock-iptables and tcp-established", got)
	}
	if i := slices.Index(c.DumpOptions, "--network-lock"); i < 0 || i+1 >= len(c.DumpOptions) || c.DumpOptions[i+1] != "nftables" || !slices.Contains(c.DumpOptions, "--tcp-established") {
		t.Errorf("dump options %q: want --tcp-established and --network-lock nftables", c.DumpOptions)
	}
	if !slices.Contains(c.RestoreOptions, "--tcp-established") {
		t.Errorf("restore options %q lack --tcp-established", c.RestoreOptions)
	}
	if before, after := stateInt(t, c.StateBefore, "tcp_echoes"), stateInt(t, c.StateAfter, "tcp_echoes"); after <= before {
		t.Errorf("round trips over the connection: %d at the dump, %d after the restore", before, after)
	}
}

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

// TestCheckpointInotifyRemoved: an inotify watch on a file whose name was
// removed, with no other link (the process holds it open): CRIU cannot
// find a path for the watch on tmpfs and refuses the dump, as
// process.inotify predicts; no option helps.
func TestCheckpointInotifyRemoved(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "--runtime-setsid", "--auto-fix", "--no-restore", "--images-dir", filepath.Join(t.TempDir(), "images"),
		"--", "/bin/kata-cr-testload", "inotify-removed", "fd")
	c := r.Checkpoint
	if code != ExitCheckFailed || c.DumpOK {
		t.Fatalf("exit %d, dump ok %v: want a refused dump", code, c.DumpOK)
	}
	if c.FailureSignature != "inotify-no-path" || !slices.Equal(c.PredictedBy, []string{"process.inotify"}) {
		t.Errorf("raw CRIU failed on %q, predicted by %q: want inotify-no-path, predicted by process.inotify", c.FailureSignature, c.PredictedBy)
	}
	if c.PredictionMatched == nil || !*c.PredictionMatched || c.WorkloadRunning == nil || !*c.WorkloadRunning {
		t.Errorf("prediction matched %v, workload running %v: want both", c.PredictionMatched, c.WorkloadRunning)
	}
}

// TestCheckpointFiles: one process holds a FIFO and a device node it made
// in its files, a deleted 2 MiB file (over CRIU's ghost limit) and an
// inotify watch on a file whose name it removed, still open and linked
// elsewhere. Raw CRIU confirms the ghost limit and the link remap; the
// plan dumps with --ghost-limit and --link-remap, the FIFO and the device
// node travel with the changed files, and the restored process finds its
// FIFO's data, its deleted file's content and its watch.
func TestCheckpointFiles(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "files", "--runtime-setsid", "--auto-fix", "--prove",
		"--images-dir", filepath.Join(t.TempDir(), "images"))
	c := r.Checkpoint
	if code != ExitOK || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s %s", code, c.Verified, c.Verification, c.Error)
	}
	if got := proofsOf(t, c, "process.ghost-files"); !slices.Equal(got, []string{"ghost-limit"}) {
		t.Errorf("raw CRIU without --ghost-limit failed on %q, want ghost-limit", got)
	}
	if got := proofsOf(t, c, "process.link-remap"); !slices.Equal(got, []string{"link-remap"}) {
		t.Errorf("raw CRIU without --link-remap failed on %q, want link-remap", got)
	}
	if !slices.Contains(c.DumpOptions, "--link-remap") || !slices.Contains(c.DumpOptions, "--ghost-limit") {
		t.Errorf("dump options %q lack --link-remap or --ghost-limit", c.DumpOptions)
	}
	fs := guestFindings(r)
	if f := fs["process.inotify"]; f.Status != reports.Warn {
		t.Errorf("process.inotify: %s %q, want a warning: the watch is found through the other link", f.Status, f.Summary)
	}
	if c.StateAfter["ghost_sha256"] != c.StateBefore["ghost_sha256"] || c.StateAfter["inotify_watches"] != "1" {
		t.Errorf("state after the restore %v, before %v", c.StateAfter, c.StateBefore)
	}
}

// TestCheckpointGhostSparse: a deleted 8 MiB file of which 4 KiB hold
// data. CRIU 3.17.1 measures a ghost file by its size and refuses it
// without --ghost-limit, as predicted; CRIU 4.1.1 (trixie) counts the
// blocks it occupies and dumps it as it is, as predicted.
func TestCheckpointGhostSparse(t *testing.T) {
	t.Run("CRIU 3.17.1", func(t *testing.T) {
		code, r := runCheckpointVM(t, "checkpoint", "ghost-sparse", "--runtime-setsid", "--auto-fix", "--prove", "--no-restore",
			"--images-dir", filepath.Join(t.TempDir(), "images"))
		c := r.Checkpoint
		if code != ExitOK || !c.DumpOK {
			t.Fatalf("exit %d, dump ok %v: %s", code, c.DumpOK, c.Error)
		}
		if got := proofsOf(t, c, "process.ghost-files"); !slices.Equal(got, []string{"ghost-limit"}) {
			t.Errorf("raw CRIU without --ghost-limit failed on %q, want ghost-limit", got)
		}
		if f := guestFindings(r)["process.ghost-files"]; f.Fix == nil || f.Fix.CRIU.GhostLimit != 8<<20 {
			t.Errorf("process.ghost-files: %s %q, fix %+v: want --ghost-limit 8 MiB", f.Status, f.Summary, f.Fix)
		}
	})
	t.Run("CRIU 4.1.1", func(t *testing.T) {
		code, r := runCheckpointVM(t, "checkpoint", "ghost-sparse", "--criu-suite", "trixie", "--runtime-setsid", "--auto-fix", "--no-restore",
			"--images-dir", filepath.Join(t.TempDir(), "images"))
		c := r.Checkpoint
		if code != ExitOK || !c.DumpOK {
			t.Fatalf("exit %d, dump ok %v: %s", code, c.DumpOK, c.Error)
		}
		if f := guestFindings(r)["process.ghost-files"]; f.Status != reports.Pass {
			t.Errorf("process.ghost-files: %s %q, want pass: CRIU 4.1.1 counts the 4 KiB allocated", f.Status, f.Summary)
		}
		if slices.Contains(c.DumpOptions, "--ghost-limit") {
			t.Errorf("dump options %q: CRIU 4.1.1 needs no --ghost-limit for a sparse file", c.DumpOptions)
		}
	})
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
