package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// runPodVM runs kata-cr pod checkpoint with args in a guest on the cached
// 6.1 kernel and decodes its JSON report.
func runPodVM(t *testing.T, args ...string) (int, *reports.Report) {
	t.Helper()
	needGuest(t, "6.1")
	args = append([]string{"pod", "checkpoint", "-o", "json", "--kernel-version", "6.1", "--timeout", "5m", "-v"}, args...)
	code, stdout, stderr := runKataCR(args...)
	var r reports.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("exit %d, no JSON report: %v\nstderr:\n%s", code, err, stderr)
	}
	if code != 0 {
		t.Logf("stderr:\n%s", stderr)
	}
	return code, &r
}

// TestPodCheckpointContainer checkpoints the sidecar of a pod alone: its
// one connection to the server of the other container (a unix stream
// socket on the pod's volume) is predicted (process.unix-pod-peer), raw
// CRIU confirms it (the dump without --external unix[INODE] fails on
// "External socket is used"), the planned dump succeeds as predicted, and
// the sidecar, restored in place with a new connection (--inherit-fd),
// carries on: its answers go on counting, and the server answers it.
func TestPodCheckpointContainer(t *testing.T) {
	code, r := runPodVM(t, "../pod/testdata/sidecar.toml", "--container", "client", "--auto-fix", "--prove", "--images-dir", t.TempDir()+"/cp")
	cp := r.Checkpoint
	if code != 0 || cp == nil {
		t.Fatalf("exit %d, checkpoint %+v", code, cp)
	}
	peers := findingsByID(r, "process.unix-pod-peer")
	if len(peers) != 1 || peers[0].Fix == nil || len(peers[0].Fix.CRIU.UnixSockets) != 1 {
		t.Fatalf("process.unix-pod-peer: %+v", peers)
	}
	ino := peers[0].Fix.CRIU.UnixSockets[0]
	without := "--external unix[" + strconv.FormatUint(uint64(ino), 10) + "]"
	if r.Plan == nil || !slices.Contains(r.Plan.CRIU.UnixSockets, ino) || len(r.Plan.Losses) > 0 {
		t.Errorf("plan %+v: want --external unix[%d] and no loss", r.Plan, ino)
	}
	if !slices.Contains(cp.DumpOptions, "unix["+strconv.FormatUint(uint64(ino), 10)+"]") {
		t.Errorf("dump options %q", cp.DumpOptions)
	}
	proved := false
	for _, p := range cp.Proofs {
		if p.Finding == "process.unix-pod-peer" && p.Without == without {
			proved = p.Failed && p.Confirmed && p.Signature == "unix-external"
			t.Logf("raw CRIU without %s: failed %v, signature %s, confirmed %v", p.Without, p.Failed, p.Signature, p.Confirmed)
		}
	}
	if !proved {
		t.Errorf("no confirmed proof of process.unix-pod-peer without %s: %+v", without, cp.Proofs)
	}
	if cp.Plain == nil || cp.Plain.OK || len(cp.Plain.PredictedBy) == 0 {
		t.Errorf("plain raw dump %+v: want a failure the prediction names", cp.Plain)
	} else {
		t.Logf("raw CRIU plain: ok %v, signature %s, predicted by %s; prediction: dump will succeed %v, blocked by %s",
			cp.Plain.OK, cp.Plain.Signature, strings.Join(cp.Plain.PredictedBy, ","), r.Prediction.DumpWillSucceed, strings.Join(r.Prediction.BlockedBy, ","))
	}
	if cp.PredictionMatched == nil || !*cp.PredictionMatched || !cp.DumpOK {
		t.Errorf("planned dump: ok %v, prediction matched %v", cp.DumpOK, cp.PredictionMatched)
	}
	t.Logf("planned dump (%s): ok %v, predicted %v", strings.Join(cp.DumpOptions, " "), cp.DumpOK, r.Plan != nil && r.Plan.WithOptions)
	inherited := slices.ContainsFunc(cp.RestoreOptions, func(o string) bool { return strings.HasSuffix(o, ":socket:["+strconv.FormatUint(uint64(ino), 10)+"]") })
	if !cp.RestoreOK || !cp.Verified || !inherited {
		t.Errorf("restore in the pod: ok %v, verified %v, options %q: %s", cp.RestoreOK, cp.Verified, cp.RestoreOptions, cp.Error)
	}
	before, _ := strconv.Atoi(cp.StateBefore["pod_answered"])
	after, _ := strconv.Atoi(cp.StateAfter["pod_answered"])
	if before < 1 || after <= before {
		t.Errorf("the client's answers: %d at the dump, %d after the restore", before, after)
	}
	t.Logf("client: %d answers at the dump (last %q), %d after (last %q)", before, cp.StateBefore["pod_last_answer"], after, cp.StateAfter["pod_last_answer"])
	server := findingsByID(r, "pod.peer")
	if len(server) != 1 || server[0].Status != reports.Pass {
		t.Errorf("pod.peer: %+v", server)
	} else {
		t.Logf("%s", server[0].Summary)
	}
	logSharedNamespaces(t, r)
}

// TestPodCheckpointWhole checkpoints the whole pod: both containers
// stopped together, each dumped with its end of their connection
// external, saved as one pod checkpoint (a checkpoint per container and
// the pod's manifest), restored together in a fresh guest with a new
// socketpair for the connection, and each verified: the client's answers
// and the server's count go on over the new pair.
func TestPodCheckpointWhole(t *testing.T) {
	dir := t.TempDir() + "/pod"
	code, r := runPodVM(t, "../pod/testdata/sidecar.toml", "--auto-fix", "--runtime-setsid", "--images-dir", dir)
	cp := r.Checkpoint
	if code != 0 || cp == nil {
		t.Fatalf("exit %d, checkpoint %+v", code, cp)
	}
	if !cp.DumpOK || cp.PredictionMatched == nil || !*cp.PredictionMatched || !cp.RestoreOK || !cp.Verified {
		t.Errorf("dump %v (prediction matched %v), restore %v, verified %v: %s", cp.DumpOK, cp.PredictionMatched, cp.RestoreOK, cp.Verified, cp.Error)
	}
	peers := findingsByID(r, "process.unix-pod-peer")
	if len(peers) != 2 {
		t.Errorf("process.unix-pod-peer: %d findings, want one per container", len(peers))
	}
	for _, f := range peers {
		if f.Status != reports.Warn || f.Fix == nil || len(f.Fix.CRIU.UnixSockets) != 1 {
			t.Errorf("process.unix-pod-peer: %s %s: want worked around with --external unix[INODE]", f.Status, f.Summary)
		}
	}
	var m podManifest
	data, err := os.ReadFile(filepath.Join(dir, podManifestName))
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil || len(m.Containers) != 2 || len(m.Connections) != 1 {
		t.Fatalf("pod manifest %+v: %v", m, err)
	}
	for _, c := range m.Containers {
		if _, err := os.Stat(filepath.Join(dir, c, "manifest.json")); err != nil {
			t.Errorf("container %s: %v", c, err)
		}
	}
	t.Logf("connection: %s socket:[%d] <-> %s socket:[%d]", m.Connections[0].A, m.Connections[0].AInode, m.Connections[0].B, m.Connections[0].BInode)
	for _, k := range []string{"server/pod_served", "client/pod_answered"} {
		before, _ := strconv.Atoi(cp.StateBefore[k])
		after, _ := strconv.Atoi(cp.StateAfter[k])
		if before < 1 || after <= before {
			t.Errorf("%s: %d at the dump, %d after the restore", k, before, after)
		}
		t.Logf("%s: %d at the dump, %d after the restore", k, before, after)
	}
	verified := findingsByID(r, "pod.container")
	if len(verified) != 2 {
		t.Errorf("pod.container: %d findings, want 2", len(verified))
	}
	for _, f := range verified {
		if f.Status != reports.Pass {
			t.Errorf("pod.container %s: %s %s", f.Status, f.Summary, f.Reason)
		}
	}
	logSharedNamespaces(t, r)
}

// logSharedNamespaces logs whether each restored container is in the
// sandbox's IPC and UTS namespaces again (pod.shared-namespaces).
func logSharedNamespaces(t *testing.T, r *reports.Report) {
	t.Helper()
	fs := findingsByID(r, "pod.shared-namespaces")
	if len(fs) == 0 {
		t.Errorf("no pod.shared-namespaces finding")
	}
	for _, f := range fs {
		t.Logf("pod.shared-namespaces %s: %s %q", f.Status, f.Summary, f.Evidence)
	}
}
