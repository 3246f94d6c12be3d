package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-cr/kata-cr/guestimage"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// httpCounter serves the number of requests it has answered, counted in
// its memory only: a restarted server answers 1 again, a restored one
// carries on.
const httpCounter = `import http.server
n = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global n
        n += 1
        b = str(n).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", 8080), H).serve_forever()
`

// fetchCounter is the probe: it fetches the counter over loopback, inside
// the container, and prints it.
const fetchCounter = `["python3","-c","import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/', timeout=20).read().decode())"]`

// pythonTree is a Debian bookworm tree with python3, built once by
// mmdebstrap into kata-cr's cache. Without -short a missing mmdebstrap
// fails the test.
func pythonTree(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Fatal("mmdebstrap is not installed: run scripts/install-deps.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	dir, err := guestimage.DebianTree(ctx, kernel.CacheDir(), "bookworm", []string{"python3"})
	if err != nil {
		t.Fatalf("build the python3 tree: %v", err)
	}
	t.Logf("python3 tree %s (%s)", dir, time.Since(start).Round(time.Second))
	return dir
}

// TestCheckpointBundle checkpoints a user's OCI bundle whose rootfs is a
// Debian tree: python3 serving a counter over HTTP on loopback, kept only
// in its memory, with memory and pids limits. The probe, run inside the
// container, fetches the counter before the dump and in the restored
// container: it must carry on past its value before the dump. The
// container's root is the overlay over the 9p share of the tree, and its
// cgroup has the bundle's limits, before and after. kata-cr restore then
// restores the same checkpoint again, with the same probe.
func TestCheckpointBundle(t *testing.T) {
	needGuest(t, "6.1")
	tree := pythonTree(t)
	bundle := t.TempDir()
	spec := container.GenerateSpec("http-counter", []string{"python3", "-c", httpCounter})
	spec.Root.Path = tree
	spec.Hostname = "bundle-test"
	mem, pids := int64(256<<20), int64(128)
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}, Pids: &specs.LinuxPids{Limit: &pids}}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, container.BundleConfig), data, 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := images.TreeFingerprint(tree)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "images")
	code, r := runCheckpointVM(t, "checkpoint", "--bundle", bundle, "--auto-fix", "--images-dir", dir,
		"--verify-exec-before", fetchCounter, "--verify-exec", fetchCounter)
	c := r.Checkpoint
	if code != ExitOK || !c.OK() || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s %s", code, c.Verified, c.Verification, c.Error)
	}
	// CRIU is the judge: the dump after the fixes was predicted to succeed
	// (a plain one to fail, for the reasons logged), and it did.
	plan := guestFindings(r)["checkpoint.plan"]
	if c.PredictionMatched == nil || !*c.PredictionMatched || plan.Status != reports.Pass || r.Prediction == nil {
		t.Errorf("plan %s %q, matched %v: want the fixed dump predicted to succeed, as CRIU did", plan.Status, plan.Summary, c.PredictionMatched)
	} else {
		t.Logf("prediction: a plain dump fails on %v; %s; CRIU dumped in %.2fs and restored in %.2fs", r.Prediction.BlockedBy, plan.Summary, c.DumpSeconds, c.RestoreSeconds)
	}
	var at, after int
	for _, p := range c.Probes {
		t.Logf("probe %s: exit %d after %d attempt(s), %.1fs: %q", p.Phase, p.ExitCode, p.Attempts, p.Seconds, p.Output)
		n, err := strconv.Atoi(strings.TrimSpace(p.Output))
		if !p.Passed() || err != nil {
			t.Errorf("probe %s %q: exit %d, output %q, error %q", p.Phase, p.Args, p.ExitCode, p.Output, p.Error)
		}
		switch p.Phase {
		case reports.ProbeBefore:
			at = n
		case reports.ProbeAfter:
			after = n
		}
	}
	if at < 1 || after <= at {
		t.Errorf("the counter was %d before the dump and %d after the restore: want it to carry on past its value", at, after)
	}
	for what, ci := range map[string]*reports.ContainerInfo{"container": c.Container, "restored container": c.RestoredContainer} {
		if ci == nil {
			t.Fatalf("no %s info", what)
		}
		if ci.Spec != bundle || ci.CgroupLimits["memory.max"] != strconv.FormatInt(mem, 10) || ci.CgroupLimits["pids.max"] != "128" {
			t.Errorf("%s: spec %s, cgroup %s, limits %v: want the bundle's spec with memory.max %d and pids.max 128", what, ci.Spec, ci.Cgroup, ci.CgroupLimits, mem)
		}
		if m := mountAt(ci, "/"); m == nil || m.FSType != "overlay" {
			t.Errorf("%s: the root is %+v, want the overlay over the rootfs share", what, m)
		}
		assertKataMounts(t, what, ci)
	}
	assertSameMounts(t, c.Container, c.RestoredContainer)
	set, err := images.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b := set.Manifest.Bundle; b == nil || b.Rootfs != tree || b.Fingerprint != before {
		t.Errorf("manifest bundle %+v: want the rootfs %s and its fingerprint", b, tree)
	}
	// The bundle's rootfs, shared read-only, was not written.
	if now, err := images.TreeFingerprint(tree); err != nil || now != before {
		t.Errorf("the bundle's rootfs changed during the checkpoint (%v)", err)
	}

	// kata-cr restore shares the rootfs again and runs the checkpoint's
	// own probe: the counter carries on from the dump once more.
	code, r = runCheckpointVM(t, "restore", "--images-dir", dir)
	c = r.Checkpoint
	if code != ExitOK || !c.Verified || len(c.Probes) != 1 {
		t.Fatalf("kata-cr restore: exit %d, verified %v, probes %+v: %s %s", code, c.Verified, c.Probes, c.Verification, c.Error)
	}
	n, err := strconv.Atoi(strings.TrimSpace(c.Probes[0].Output))
	if err != nil || n <= at {
		t.Errorf("kata-cr restore: the counter answered %q, want more than %d, its value before the dump", c.Probes[0].Output, at)
	}
	t.Logf("kata-cr restore: the counter answered %d (%d before the dump), restored in %.2fs", n, at, c.RestoreSeconds)
}

// mountAt is the last mount of the container on path, nil when none.
func mountAt(ci *reports.ContainerInfo, path string) *reports.ContainerMount {
	var found *reports.ContainerMount
	for i, m := range ci.Mounts {
		if m.Path == path {
			found = &ci.Mounts[i]
		}
	}
	return found
}

// assertKataMounts checks, on the mount table the guest reported, that a
// container has what Kata's agent gives every container from a CRI spec:
// a devpts instance (terminal or not), /dev/mqueue, a read-only /sys, a
// read-only cgroup2 file system, and a cgroup of its own.
func assertKataMounts(t *testing.T, what string, ci *reports.ContainerInfo) {
	t.Helper()
	if ci == nil {
		t.Errorf("%s: no container info in the report", what)
		return
	}
	want := []struct {
		path, fstype string
		ro           bool
	}{
		{"/proc", "proc", false}, {"/dev", "tmpfs", false}, {"/dev/pts", "devpts", false}, {"/dev/shm", "tmpfs", false},
		{"/dev/mqueue", "mqueue", false}, {"/sys", "sysfs", true}, {"/sys/fs/cgroup", "cgroup2", true},
	}
	for _, w := range want {
		m := mountAt(ci, w.path)
		if m == nil || m.FSType != w.fstype || (w.ro && !m.ReadOnly) {
			t.Errorf("%s: %s is %+v, want %s (read-only %v)", what, w.path, m, w.fstype, w.ro)
		}
	}
	if ci.Cgroup == "" || ci.Cgroup == "/" {
		t.Errorf("%s: the container has no cgroup of its own (%q)", what, ci.Cgroup)
	}
}

// assertSameMounts checks that CRIU gave the restored container every
// mount the dumped one had: the same mount points, file system types and
// read-only flags (CRIU mounts them in its own order).
func assertSameMounts(t *testing.T, dumped, restored *reports.ContainerInfo) {
	t.Helper()
	if dumped == nil || restored == nil {
		t.Errorf("container info missing: dumped %v, restored %v", dumped != nil, restored != nil)
		return
	}
	key := func(ci *reports.ContainerInfo) []string {
		var out []string
		for _, m := range ci.Mounts {
			out = append(out, fmt.Sprintf("%s %s ro=%v", m.Path, m.FSType, m.ReadOnly))
		}
		slices.Sort(out)
		return out
	}
	if a, b := key(dumped), key(restored); !slices.Equal(a, b) {
		t.Errorf("the restored container's mounts differ from the dumped one's:\ndumped   %q\nrestored %q", a, b)
	}
}
