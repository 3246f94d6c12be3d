package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/guestimage"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

func TestCheckpointFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want func(o *checkpointOptions) string
	}{
		{"default workload", nil, func(o *checkpointOptions) string {
			if o.Workload != "" || o.Command != nil || o.AutoFix || o.NoRestore {
				return "want the zero options"
			}
			return ""
		}},
		{"named workload with fixes", []string{"counter", "--auto-fix", "--images-dir", "/tmp/x", "--no-restore"}, func(o *checkpointOptions) string {
			if o.Workload != "counter" || !o.AutoFix || o.ImagesDir != "/tmp/x" || !o.NoRestore {
				return "flags not captured"
			}
			return ""
		}},
		{"command after --", []string{"--auto-fix", "--", "sh", "-c", "sleep 9"}, func(o *checkpointOptions) string {
			if o.Workload != "" || !slices.Equal(o.Command, []string{"sh", "-c", "sleep 9"}) || !o.AutoFix {
				return "command not captured"
			}
			return ""
		}},
		{"runtime flags", []string{"-t", "--runtime-setsid", "--no-restart", "--leave-running", "--include", "/bin/true:/usr/bin/mytrue", "--accel", "tcg", "--kernel-version", "6.1"}, func(o *checkpointOptions) string {
			if !o.Terminal || !o.RuntimeSetsid || !o.NoRestart || !o.LeaveRunning {
				return "runtime flags not captured"
			}
			if o.guest.Accel != "tcg" || o.guest.KernelVersion != "6.1" || o.guest.Include.List()[0] != "/bin/true:/usr/bin/mytrue" {
				return "guest flags not captured"
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *checkpointOptions
			deps := &Deps{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, IsTerminal: func(io.Writer) bool { return false }, Getenv: os.Getenv}
			c := newCheckpointCmdWith(deps, &globalOptions{}, func(_ context.Context, o *checkpointOptions) error {
				got = o
				return nil
			})
			c.SetArgs(tt.args)
			if err := c.Execute(); err != nil {
				t.Fatalf("checkpoint %v: %v", tt.args, err)
			}
			if msg := tt.want(got); msg != "" {
				t.Errorf("checkpoint %v: %s: %+v", tt.args, msg, got)
			}
		})
	}
}

// TestCheckpointBadInput: every mistake is refused with one line and a
// documented exit code before any guest boots.
func TestCheckpointBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full")
	if err := os.MkdirAll(filepath.Join(full, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown workload", []string{"nosuch"}, ExitUsage, `unknown workload "nosuch": known workloads are `},
		{"two workloads", []string{"sleep", "counter"}, ExitUsage, "one workload at a time"},
		{"workload and command", []string{"sleep", "--", "sleep", "1"}, ExitUsage, "not both"},
		{"command not in image", []string{"--", "no-such-program", "x"}, ExitUsage, `command "no-such-program" is not in the guest image`},
		{"images dir under a file", []string{"--images-dir", filepath.Join(file, "images")}, ExitUsage, "--images-dir " + filepath.Join(file, "images")},
		{"images dir not empty", []string{"--images-dir", full}, ExitUsage, "not empty"},
		{"bad accel", []string{"--accel", "warp"}, ExitUsage, `--accel "warp"`},
		{"unknown criu suite", []string{"--criu-suite", "buster"}, ExitUsage, `--criu-suite "buster": use host, bookworm, trixie, forky, sid`},
		{"prove without fixes", []string{"--prove"}, ExitUsage, "--prove proves the fixes of --auto-fix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runKataCR(append([]string{"checkpoint"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not say %q", stderr, tt.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 || stdout != "" {
				t.Errorf("want one line on stderr and nothing on stdout, got stderr %q stdout %q", stderr, stdout)
			}
		})
	}
	if code, _, stderr := runKataCR("restore"); code != ExitUsage || !strings.Contains(stderr, "--images-dir or --import is required") {
		t.Errorf("restore without --images-dir: exit %d, %q", code, stderr)
	}
}

// fakeCheckpoint writes an images directory through images.Write, as
// kata-cr checkpoint does, for the kernel, CRIU and architecture the
// default guest runs, with stand-in image files and one --include'd host
// file: the refusals only read the manifest and the checksums.
func fakeCheckpoint(t *testing.T) string {
	t.Helper()
	k, err := kernel.Find(kernel.FindOptions{Version: "6.1"})
	if err != nil {
		t.Fatalf("no cached Debian 6.1 kernel (run scripts/install-deps.sh and make guest-kernels): %v", err)
	}
	p, err := guestimage.HostCRIU("")
	if err != nil {
		t.Fatalf("no criu on the host (run scripts/install-deps.sh): %v", err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for name, size := range map[string]int{"pages-1.img": 8192, "pstree.img": 64, "inventory.img": 32, images.RootfsDiffName: 1024} {
		if err := os.WriteFile(filepath.Join(src, name), bytes.Repeat([]byte{0x5a}, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	inc := filepath.Join(t.TempDir(), "myprog")
	if err := os.WriteFile(inc, []byte("#!/bin/sh\nsleep 3600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := guestOptions{}
	if err := o.Include.Set(inc + ":/usr/bin/myprog"); err != nil {
		t.Fatal(err)
	}
	includes, err := o.includeRecords()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "images")
	_, err = images.Write(dir, images.Manifest{
		KernelRelease: k.Release, CRIUVersion: p.Version, Arch: unix.ByteSliceToString(uts.Machine[:]),
		Workload: "counter", WorkloadState: map[string]string{"counter": "12"}, Includes: includes,
	}, images.FromDir(src))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRestoreRefuses: a damaged checkpoint, or one from another kernel, is
// refused with its stable reason before any guest boots.
func TestRestoreRefuses(t *testing.T) {
	// The control: the untouched checkpoint is accepted.
	set, err := openCheckpoint(fakeCheckpoint(t))
	if err != nil {
		t.Fatalf("an intact checkpoint is refused: %v", err)
	}
	k, _ := kernel.Find(kernel.FindOptions{Version: "6.1"})
	if set.Manifest.KernelRelease != k.Release {
		t.Fatalf("manifest kernel %q, want %q", set.Manifest.KernelRelease, k.Release)
	}
	// The restore rebuilds the image with the recorded --include, without
	// the user repeating it.
	var o guestOptions
	if err := o.includeFrom(set); err != nil {
		t.Fatalf("the intact include is refused: %v", err)
	}
	if inc := set.Manifest.Includes; len(inc) != 1 || !slices.Equal(o.Include.List(), []string{inc[0].Host + ":/usr/bin/myprog"}) {
		t.Errorf("restore includes %q, want the recorded %+v", o.Include.List(), inc)
	}
	includeOf := func(t *testing.T, dir string) string {
		set, err := images.Open(dir)
		if err != nil || len(set.Manifest.Includes) != 1 {
			t.Fatalf("open %s: %v (includes %+v)", dir, err, set.Manifest.Includes)
		}
		return set.Manifest.Includes[0].Host
	}

	editManifest := func(t *testing.T, dir string, edit func(m map[string]any)) {
		p := filepath.Join(dir, images.ManifestName)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		data, _ = json.Marshal(m)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		reason string
	}{
		{"truncated image", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "pages-1.img"), 100); err != nil {
				t.Fatal(err)
			}
		}, images.ReasonTruncated},
		{"wrong checksum", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, "pages-1.img"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0x00}, 4000); err != nil {
				t.Fatal(err)
			}
		}, images.ReasonChecksum},
		{"other kernel", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["kernel_release"] = "7.3.0-1-amd64" })
		}, images.ReasonKernelMismatch},
		{"included file changed", func(t *testing.T, dir string) {
			if err := os.WriteFile(includeOf(t, dir), []byte("#!/bin/sh\nsleep 1\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, images.ReasonIncludeChanged},
		{"included file gone", func(t *testing.T, dir string) {
			if err := os.Remove(includeOf(t, dir)); err != nil {
				t.Fatal(err)
			}
		}, images.ReasonIncludeMissing},
		{"unfinished", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, images.ManifestName)); err != nil {
				t.Fatal(err)
			}
		}, images.ReasonIncomplete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fakeCheckpoint(t)
			tt.damage(t, dir)
			code, stdout, stderr := runKataCR("restore", "--images-dir", dir, "--accel", "tcg", "--kernel-version", "6.1")
			if code != ExitToolError {
				t.Errorf("exit %d, want %d; stderr %q", code, ExitToolError, stderr)
			}
			if !strings.Contains(stderr, "("+tt.reason+")") {
				t.Errorf("stderr %q does not give the reason %s", stderr, tt.reason)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 || stdout != "" {
				t.Errorf("want one line on stderr, got %q (stdout %q)", stderr, stdout)
			}
		})
	}
}

// runCheckpointVM runs kata-cr checkpoint (or restore) against the cached
// Debian 6.1 guest, logs how the guests were booted, and returns the exit
// code and the JSON report.
func runCheckpointVM(t *testing.T, args ...string) (int, *reports.Report) {
	t.Helper()
	return runCheckpointOn(t, "6.1", args...)
}

// runCheckpointOn is runCheckpointVM on the cached Debian kernel of
// series.
func runCheckpointOn(t *testing.T, series string, args ...string) (int, *reports.Report) {
	t.Helper()
	needGuest(t, series)
	cmd, rest := args[0], args[1:]
	dash := slices.Index(rest, "--")
	flags := []string{cmd, "-o", "json", "--kernel-version", series, "--timeout", "5m", "-v"}
	if dash >= 0 {
		args = append(append(flags, rest[:dash]...), rest[dash:]...)
	} else {
		args = append(flags, rest...)
	}
	code, stdout, stderr := runKataCR(args...)
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "qemu command line") || strings.Contains(l, "guest: ") {
			t.Log(l)
		}
	}
	var r reports.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("kata-cr %s: exit %d, no JSON report: %v\nstderr: %s", strings.Join(args, " "), code, err, stderr)
	}
	if r.Checkpoint == nil {
		t.Fatalf("kata-cr %s: no checkpoint in the report", strings.Join(args, " "))
	}
	c := r.Checkpoint
	t.Logf("kata-cr %s: exit %d; stage %s, dump %v (%.2fs), restore %v (%.2fs), verified %v: %s; error %q",
		strings.Join(args, " "), code, c.Stage, c.DumpOK, c.DumpSeconds, c.RestoreOK, c.RestoreSeconds, c.Verified, c.Verification, c.Error)
	return code, &r
}

func actionApplied(r *reports.Report, fixer reports.FixerID) bool {
	for _, a := range r.Actions {
		if a.Fixer == fixer && a.Applied {
			return true
		}
	}
	return false
}

// TestCheckpointSeedWorkload boots the seed's workload (busybox sleep 3600
// started as the Kata agent 2.5 to 4.0 starts it). Without --auto-fix the
// preflight predicts the failure (session leader outside the pid
// namespace), the plain dump fails as predicted and the workload keeps
// running. With --auto-fix it is dumped, restored in a fresh guest and
// verified, with the sandbox's /etc/hosts back on its bind mount, and the
// container's mount table (devpts, mqueue, sysfs, cgroup2) and cgroup on
// both sides.
func TestCheckpointSeedWorkload(t *testing.T) {
	t.Run("without auto-fix", func(t *testing.T) {
		code, r := runCheckpointVM(t, "checkpoint", "--images-dir", filepath.Join(t.TempDir(), "images"))
		c := r.Checkpoint
		if code != ExitCheckFailed {
			t.Errorf("exit %d, want %d", code, ExitCheckFailed)
		}
		if r.Prediction == nil || r.Prediction.DumpWillSucceed || !slices.Contains(r.Prediction.BlockedBy, "process.session-leader") {
			t.Errorf("prediction %+v does not fail on process.session-leader", r.Prediction)
		}
		if c.DumpOK {
			t.Errorf("the plain dump succeeded")
		}
		if c.PredictionMatched == nil || !*c.PredictionMatched {
			t.Errorf("prediction_matched %v, want true", c.PredictionMatched)
		}
		if c.WorkloadRunning == nil || !*c.WorkloadRunning {
			t.Errorf("workload_running %v after the failed dump, want true", c.WorkloadRunning)
		}
		// As Kata boots the guest, CRIU stops at the first thing it
		// misses, which must be among the predicted reasons.
		if f := guestFindings(r)["checkpoint.prediction"]; f.Status != reports.Pass {
			t.Errorf("checkpoint.prediction: %s %q", f.Status, f.Summary)
		}
		for _, a := range r.Actions {
			if a.Applied {
				t.Errorf("action applied without --auto-fix: %+v", a)
			}
		}
	})

	t.Run("auto-fix", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "images")
		code, r := runCheckpointVM(t, "checkpoint", "--auto-fix", "--prove", "--images-dir", dir)
		c := r.Checkpoint
		if code != ExitOK || !c.OK() {
			t.Fatalf("exit %d, want 0: %+v", code, c)
		}
		// Each external bind, left undeclared, makes CRIU fail on that
		// mount, as mount.external-bind predicted.
		if n := provedAs(t, r, "checkpoint.proof.mount.external-bind", "mount-no-root"); n != 3 {
			t.Errorf("%d proofs for mount.external-bind, want one per sandbox bind (3)", n)
		}
		if !actionApplied(r, "restart-setsid") {
			t.Errorf("no restart-setsid action: %+v", r.Actions)
		}
		if !slices.Contains(c.DumpOptions, "mnt[/etc/hosts]:hosts") {
			t.Errorf("dump options %v do not declare /etc/hosts external", c.DumpOptions)
		}
		// The masked directories, empty read-only tmpfs mounts, are
		// declared external too (no tar of each inside the freeze), and
		// come back as read-only tmpfs mounts (assertSameMounts below).
		for _, o := range []string{"mnt[/proc/acpi]:masked-proc-acpi", "mnt[/sys/firmware]:masked-sys-firmware"} {
			if !slices.Contains(c.DumpOptions, o) {
				t.Errorf("dump options %v do not declare %s", c.DumpOptions, o)
			}
		}
		if f := guestFindings(r)["mount.masked-dirs"]; f.Status != reports.Pass || f.Fix == nil || !f.Fix.Speedup {
			t.Errorf("mount.masked-dirs: %s %q, fix %+v: want a pass with a speed-up", f.Status, f.Summary, f.Fix)
		}
		if !slices.Contains(c.SandboxFilesSeen, "/etc/hosts") || c.RestoredPID == 0 {
			t.Errorf("sandbox files seen %q (pid %d): the restored container must see the sandbox's /etc/hosts", c.SandboxFilesSeen, c.RestoredPID)
		}
		// The non-terminal container has what Kata's agent gives every
		// container of a CRI spec, and CRIU dumped and restored it all.
		assertKataMounts(t, "container", c.Container)
		assertKataMounts(t, "restored container", c.RestoredContainer)
		assertSameMounts(t, c.Container, c.RestoredContainer)
		if c.PredictionMatched == nil || !*c.PredictionMatched {
			t.Errorf("prediction_matched %v, want true", c.PredictionMatched)
		}
		set, err := images.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("images dir mode %v (%v), want 0700", fi.Mode(), err)
		}
		binds, masked := 0, 0
		for _, em := range set.Manifest.ExternalMounts {
			if checks.IsMaskedKey(em.Key) {
				masked++
			} else {
				binds++
			}
		}
		if m := set.Manifest; m.KernelRelease == "" || m.CRIUVersion == "" || m.Arch == "" || binds != 3 || masked != 2 || m.Workload != "sleep" {
			t.Errorf("manifest lacks what a restore needs (external mounts: %d sandbox binds, want 3; %d masked directories, want 2): %+v", binds, masked, m)
		}
		if c.ImageBytes != set.Size() || c.ImagesDir != dir {
			t.Errorf("report says %s with %d bytes, the set is %s with %d", c.ImagesDir, c.ImageBytes, dir, set.Size())
		}
	})
}

// TestCheckpointNoRestart: with the environment fixed but the restart
// refused, the prediction after the fixes still fails on the session
// leader, and CRIU agrees with exactly that error.
func TestCheckpointNoRestart(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "--auto-fix", "--no-restart", "--no-restore", "--images-dir", filepath.Join(t.TempDir(), "images"))
	c := r.Checkpoint
	if code != ExitCheckFailed || c.DumpOK {
		t.Fatalf("exit %d, dump ok %v: want a failed dump", code, c.DumpOK)
	}
	if c.FailureSignature != "session-leader-outside-pidns" {
		t.Errorf("CRIU failed on %q (%s), want session-leader-outside-pidns", c.FailureSignature, c.Error)
	}
	if f := guestFindings(r)["checkpoint.prediction"]; f.Status != reports.Pass || !slices.Equal(c.PredictedBy, []string{"process.session-leader"}) {
		t.Errorf("checkpoint.prediction: %s, predicted by %q, want CRIU's error predicted by process.session-leader", f.Status, c.PredictedBy)
	}
	if c.PredictionMatched == nil || !*c.PredictionMatched {
		t.Errorf("prediction_matched %v, want true", c.PredictionMatched)
	}
	if c.WorkloadRunning == nil || !*c.WorkloadRunning {
		t.Errorf("workload_running %v, want true", c.WorkloadRunning)
	}
	for _, a := range r.Actions {
		if a.Fixer == "restart-setsid" && (a.Applied || !strings.Contains(a.Error, "--no-restart")) {
			t.Errorf("restart-setsid with --no-restart: %+v", a)
		}
	}
}

// TestCheckpointSeedFix: the seed's proposed fix makes the container exit
// at once (pid 1 leads its process group, so setsid(1) forks and pid 1
// exits); kata-cr says so rather than blaming CRIU.
func TestCheckpointSeedFix(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "seed-fix", "--auto-fix", "--no-restore", "--images-dir", filepath.Join(t.TempDir(), "images"))
	if code != ExitCheckFailed || r.Checkpoint.DumpOK {
		t.Errorf("exit %d, dump ok %v: want 3 and no dump", code, r.Checkpoint.DumpOK)
	}
	f := guestFindings(r)["workload.start"]
	if f.Status != reports.Fail || r.Checkpoint.InitExit == nil {
		t.Errorf("workload.start: %s %q, init exit %v: want a failure with the init's exit status", f.Status, f.Summary, r.Checkpoint.InitExit)
	}
	if !strings.Contains(strings.Join(f.Evidence, "\n"), "setsid() refuses a group leader") {
		t.Errorf("workload.start does not explain why: %v", f.Evidence)
	}
}

// counters are the counter workload's values at the dump and after the
// restore, from the report's state fields.
func counters(t *testing.T, c *reports.Checkpoint) (dumped, restored int) {
	t.Helper()
	dumped, err1 := strconv.Atoi(c.StateBefore["counter"])
	restored, err2 := strconv.Atoi(c.StateAfter["counter"])
	if err1 != nil || err2 != nil {
		t.Fatalf("state before %v, after %v: want the counter's values", c.StateBefore, c.StateAfter)
	}
	return dumped, restored
}

// TestCheckpointCounter: the counter keeps its count only in memory; the
// restored one carries on from at least the value it had at the dump.
func TestCheckpointCounter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	code, r := runCheckpointVM(t, "checkpoint", "counter", "--auto-fix", "--images-dir", dir)
	c := r.Checkpoint
	if code != ExitOK || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s %s", code, c.Verified, c.Verification, c.Error)
	}
	dumped, restored := counters(t, c)
	if restored < dumped || dumped < 10 {
		t.Errorf("counter %d at the dump, %d after the restore", dumped, restored)
	}
	checkTiming(t, c, 0)
	set, err := images.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if set.Manifest.WorkloadState["counter"] != c.StateBefore["counter"] {
		t.Errorf("manifest state %v, want counter %s", set.Manifest.WorkloadState, c.StateBefore["counter"])
	}

	// kata-cr restore restores the same checkpoint again, in another
	// fresh guest, and the counter again carries on from the dump.
	code, r = runCheckpointVM(t, "restore", "--images-dir", dir)
	c = r.Checkpoint
	if code != ExitOK || !c.Verified || r.Command != "restore" {
		t.Fatalf("kata-cr restore: exit %d, verified %v: %s %s", code, c.Verified, c.Verification, c.Error)
	}
	if dumped2, restored2 := counters(t, c); dumped2 != dumped || restored2 < dumped {
		t.Errorf("kata-cr restore: counter %d at the dump, %d after the restore, want it from %d on", dumped2, restored2, dumped)
	}
}

// TestCheckpointTerminal: a terminal container (-t) keeps its pty's master
// outside the tree; kata-cr declares the pty an external tty on dump and
// hands the restored init a new pty, rather than --shell-job.
func TestCheckpointTerminal(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "-t", "--auto-fix", "--images-dir", filepath.Join(t.TempDir(), "images"))
	c := r.Checkpoint
	if code != ExitOK || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s %s", code, c.Verified, c.Verification, c.Error)
	}
	if !slices.ContainsFunc(c.DumpOptions, func(a string) bool { return strings.HasPrefix(a, "tty[") }) || slices.Contains(c.DumpOptions, "--shell-job") {
		t.Errorf("dump options %q: want an external tty and no --shell-job", c.DumpOptions)
	}
	if !slices.Contains(c.RestoreOptions, "--inherit-fd") {
		t.Errorf("restore options %q: want --inherit-fd with a new pty", c.RestoreOptions)
	}
	if f := guestFindings(r)["process.tty"]; f.Status != reports.Warn {
		t.Errorf("process.tty: %s %q, want a warning worked around by the external tty", f.Status, f.Summary)
	}
}

// TestCheckpointSaveFails: the images directory becomes unusable between
// the dump and the write (a file appears where it should be). The dump has
// stopped the workload, so the agent, told that the host could not save
// the images, restores it in place in guest A from its own images: the
// counter runs again there and carries on, and no directory that looks
// like a checkpoint is left.
func TestCheckpointSaveFails(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "images")
	orig := writeImages
	t.Cleanup(func() { writeImages = orig })
	writeImages = func(d string, m images.Manifest, r io.Reader) (*images.Set, error) {
		if err := os.WriteFile(d, []byte("in the way\n"), 0o600); err != nil {
			t.Error(err)
		}
		return orig(d, m, r)
	}
	code, r := runCheckpointVM(t, "checkpoint", "counter", "--auto-fix", "--no-restore", "--images-dir", dir)
	c := r.Checkpoint
	if code != ExitCheckFailed {
		t.Errorf("exit %d, want %d", code, ExitCheckFailed)
	}
	if !c.DumpOK {
		t.Fatalf("the dump failed: %s", c.Error)
	}
	fs := guestFindings(r)
	if f := fs["checkpoint.saved"]; f.Status != reports.Fail || !strings.Contains(f.Reason, "not a directory") {
		t.Errorf("checkpoint.saved: %s %q (%s), want a failure saying why", f.Status, f.Summary, f.Reason)
	}
	f := fs["checkpoint.restored-in-place"]
	if f.Status != reports.Pass {
		t.Errorf("checkpoint.restored-in-place: %s %q (%s), want the counter put back", f.Status, f.Summary, f.Reason)
	}
	if dumped, restored := counters(t, c); restored < dumped {
		t.Errorf("restored in place: counter %d at the dump, %d after, want it carrying on", dumped, restored)
	}
	if c.WorkloadRunning == nil || !*c.WorkloadRunning {
		t.Errorf("workload_running %v, want true", c.WorkloadRunning)
	}
	if !actionApplied(r, "restore-in-place") {
		t.Errorf("no restore-in-place action applied: %+v", r.Actions)
	}
	if !strings.Contains(c.Error, "could not save") {
		t.Errorf("error %q does not say the images were not saved", c.Error)
	}
	if _, err := images.Open(dir); err == nil {
		t.Errorf("%s opens as a checkpoint", dir)
	}
	if left, _ := filepath.Glob(filepath.Join(parent, "*partial*")); len(left) > 0 {
		t.Errorf("partial directories left: %v", left)
	}
}

// TestCheckpointRuntimeSetsid: with the runtime making the init a session
// leader (runc, Kata agent 4.1.0) the default workload needs no restart:
// the prediction passes process.session-leader, the dump and the restore
// are verified. With --leave-running the original still runs in guest A
// after the dump, and the report says so.
func TestCheckpointRuntimeSetsid(t *testing.T) {
	code, r := runCheckpointVM(t, "checkpoint", "--runtime-setsid", "--leave-running", "--auto-fix", "--images-dir", filepath.Join(t.TempDir(), "images"))
	c := r.Checkpoint
	if code != ExitOK || !c.OK() || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s %s", code, c.Verified, c.Verification, c.Error)
	}
	fs := guestFindings(r)
	if f := fs["process.session-leader"]; f.Status != reports.Pass {
		t.Errorf("process.session-leader: %s %q, want pass", f.Status, f.Summary)
	}
	if slices.Contains(r.Prediction.BlockedBy, "process.session-leader") {
		t.Errorf("the prediction blames the session leader: %q", r.Prediction.BlockedBy)
	}
	for _, a := range r.Actions {
		if a.Fixer == "restart-setsid" {
			t.Errorf("restart-setsid action with --runtime-setsid: %+v", a)
		}
	}
	if f := fs["checkpoint.leave-running"]; f.Status != reports.Pass {
		t.Errorf("checkpoint.leave-running: %s %q, want the original still running", f.Status, f.Summary)
	}
	if c.WorkloadRunning == nil || !*c.WorkloadRunning {
		t.Errorf("workload_running %v after a --leave-running dump, want true", c.WorkloadRunning)
	}
	if c.RestoredPID == 0 {
		t.Errorf("no restored pid")
	}
}

// provedAs counts the findings with id, failing the test for any that does
// not show CRIU failing on signature without the option.
func provedAs(t *testing.T, r *reports.Report, id, signature string) int {
	t.Helper()
	n := 0
	for _, f := range r.Findings {
		if f.ID == id && f.Status != reports.Pass {
			t.Errorf("%s: %s %q, want pass", id, f.Status, f.Summary)
		}
	}
	for _, p := range r.Checkpoint.Proofs {
		if "checkpoint.proof."+p.Finding != id {
			continue
		}
		n++
		if !p.Failed || !p.Confirmed || p.Signature != signature {
			t.Errorf("proof of %s without %s: failed %v on %q, confirmed %v: want CRIU failing on %s", p.Finding, p.Without, p.Failed, p.Signature, p.Confirmed, signature)
		}
	}
	return n
}

// TestRestoreSchema1Checkpoint restores a checkpoint that kata-cr wrote
// before the CRIU options were typed (manifest schema 1: the options as
// argv words; made with `kata-cr checkpoint counter --auto-fix
// --no-restore` at commit 2fa6eac on Debian's 6.1.0-57 kernel). The
// manifest is converted when it is read, and the counter carries on from
// its dumped value. CRIU images are bound to the kernel they were dumped
// on: where the cached 6.1 kernel is another release, the checkpoint must
// be refused before any boot with the stable reason images.kernel-mismatch.
func TestRestoreSchema1Checkpoint(t *testing.T) {
	needGuest(t, "6.1")
	dir := filepath.Join(t.TempDir(), "schema1")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	src := "testdata/schema1-counter"
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	set, err := images.Open(dir)
	if err != nil {
		t.Fatalf("a schema 1 checkpoint is refused: %v", err)
	}
	if set.Manifest.SchemaVersion != 1 || len(set.Manifest.ExternalMounts) != 3 {
		t.Fatalf("manifest %+v: want schema 1 with the three sandbox binds", set.Manifest)
	}
	k, err := kernel.Find(kernel.FindOptions{Version: "6.1"})
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != set.Manifest.KernelRelease {
		code, _, stderr := runKataCR("restore", "-o", "json", "--kernel-version", "6.1", "--images-dir", dir)
		if code != ExitToolError || !strings.Contains(stderr, images.ReasonKernelMismatch) {
			t.Fatalf("checkpoint from kernel %s on kernel %s: exit %d (%s), want %d refusing with %s",
				set.Manifest.KernelRelease, k.Release, code, stderr, ExitToolError, images.ReasonKernelMismatch)
		}
		t.Logf("the cached kernel is %s, the checkpoint's %s: refused as %s", k.Release, set.Manifest.KernelRelease, images.ReasonKernelMismatch)
		return
	}
	code, r := runCheckpointVM(t, "restore", "--images-dir", dir)
	c := r.Checkpoint
	if code != ExitOK || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s %s", code, c.Verified, c.Verification, c.Error)
	}
	if dumped, restored := counters(t, c); dumped != 38 || restored < dumped {
		t.Errorf("counter %d at the dump, %d after the restore: want it to carry on from 38", dumped, restored)
	}
	if !slices.Contains(c.SandboxFilesSeen, "/etc/hosts") {
		t.Errorf("sandbox files seen %q: want /etc/hosts back on its bind", c.SandboxFilesSeen)
	}
}
