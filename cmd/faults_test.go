package cmd

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// TestMain lets a fault test run kata-cr as a process of its own (to kill
// it): the test binary re-executed with KATA_CR_TEST_MAIN=1 is kata-cr.
func TestMain(m *testing.M) {
	if os.Getenv("KATA_CR_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// qemuLeft lists the qemu processes whose command line holds marker.
func qemuLeft(marker string) []string {
	var left []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, "qemu-system") && strings.Contains(cl, marker) {
			left = append(left, filepath.Base(filepath.Dir(p))+": "+cl)
		}
	}
	return left
}

// noQemuLeft fails when a qemu with marker in its command line still runs
// a few seconds after the fault.
func noQemuLeft(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := qemuLeft(marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu outlived the fault: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// notComplete fails when dir opens as a checkpoint.
func notComplete(t *testing.T, dir string) {
	t.Helper()
	if _, err := images.Open(dir); err == nil {
		t.Errorf("%s looks like a complete checkpoint after the fault", dir)
	}
}

// killQemuAt runs kata-cr in this process with the guest's qemu killed
// when an event matches, and returns the exit code, the report (nil when
// none was printed) and stderr.
func killQemuAt(t *testing.T, match func(agentapi.Event) bool, args ...string) (int, *reports.Report, string) {
	t.Helper()
	var once sync.Once
	killed := 0
	guestEventHook = func(v *vm.VM, ev agentapi.Event) {
		if match(ev) {
			once.Do(func() {
				killed = v.PID()
				t.Logf("killing qemu %d at %s %q", killed, ev.Kind, ev.Message)
				_ = syscall.Kill(killed, syscall.SIGKILL)
			})
		}
	}
	t.Cleanup(func() { guestEventHook = nil })
	code, stdout, stderr := runKataCR(append([]string{"-o", "json", "--kernel-version", "6.1", "--timeout", "5m"}, args...)...)
	if killed == 0 {
		t.Fatalf("the fault was never injected: exit %d, %s", code, stderr)
	}
	if syscall.Kill(killed, 0) == nil {
		if st, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(killed), "stat")); !strings.Contains(string(st), ") Z ") {
			t.Errorf("qemu %d still runs", killed)
		}
	}
	var r *reports.Report
	if strings.TrimSpace(stdout) != "" {
		r = &reports.Report{}
		if err := json.Unmarshal([]byte(stdout), r); err != nil {
			t.Fatalf("exit %d: stdout is no report: %v", code, err)
		}
	}
	return code, r, stderr
}

// TestFaultQemuKilledDuringDump: the guest dies while CRIU dumps. Nothing
// can keep a workload whose VM died; kata-cr says the guest failed, leaves
// no directory that looks like a checkpoint and no qemu.
func TestFaultQemuKilledDuringDump(t *testing.T) {
	needGuest(t, "6.1")
	dir := filepath.Join(t.TempDir(), "images")
	code, _, stderr := killQemuAt(t, func(ev agentapi.Event) bool {
		return ev.Kind == agentapi.EventProgress && ev.Stage == agentapi.StageFreeze
	}, "checkpoint", "counter", "--auto-fix", "--no-restore", "--images-dir", dir)
	if code != ExitToolError {
		t.Errorf("exit %d, want %d", code, ExitToolError)
	}
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); !strings.Contains(lines[len(lines)-1], "kata-cr:") {
		t.Errorf("stderr does not end with kata-cr's one-line error: %q", stderr)
	}
	notComplete(t, dir)
}

// TestFaultQemuKilledDuringRestore: guest B dies while the images reach
// it. The checkpoint on the host stays complete and verifiable, and a
// later kata-cr restore restores it.
func TestFaultQemuKilledDuringRestore(t *testing.T) {
	needGuest(t, "6.1")
	dir := filepath.Join(t.TempDir(), "images")
	code, r, stderr := killQemuAt(t, func(ev agentapi.Event) bool {
		return ev.Kind == agentapi.EventProgress && ev.Stage == agentapi.StageReceiveImages
	}, "checkpoint", "counter", "--auto-fix", "--images-dir", dir)
	if code != ExitCheckFailed || r == nil || r.Checkpoint == nil {
		t.Fatalf("exit %d (%s): want %d with the report of a checkpoint not restored", code, stderr, ExitCheckFailed)
	}
	c := r.Checkpoint
	if !c.DumpOK || c.Verified || !strings.HasPrefix(c.Error, "restore:") {
		t.Errorf("checkpoint %+v: want the dump saved and the restore failed", c)
	}
	set, err := images.Open(dir)
	if err != nil {
		t.Fatalf("the saved checkpoint does not open after guest B died: %v", err)
	}
	if err := set.VerifyFiles(); err != nil {
		t.Fatalf("the saved checkpoint is damaged: %v", err)
	}
	code, r2 := runCheckpointVM(t, "restore", "--images-dir", dir)
	if code != ExitOK || !r2.Checkpoint.Verified {
		t.Errorf("kata-cr restore after the fault: exit %d, verified %v: %s", code, r2.Checkpoint.Verified, r2.Checkpoint.Error)
	}
}

// startKataCR runs kata-cr as its own process with TMPDIR (which names
// qemu's socket directory, and so marks its qemu) set to tmp, and returns
// once a stderr line contains stage.
func startKataCR(t *testing.T, tmp, stage string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	return startKataCRArgs(t, tmp, stage, nil, append([]string{args[0], "-o", "json", "-v", "--kernel-version", "6.1", "--timeout", "5m"}, args[1:]...)...)
}

// startKataCRArgs is startKataCR with the command line as given and its
// stdout written to stdout (when not nil).
func startKataCRArgs(t *testing.T, tmp, stage string, stdout io.Writer, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stdout = stdout
	cmd.Env = append(os.Environ(), "KATA_CR_TEST_MAIN=1", "TMPDIR="+tmp)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	rest := make(chan string, 1)
	reached := make(chan bool, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if !seen && strings.Contains(sc.Text(), stage) {
				seen = true
				reached <- true
			}
		}
		if !seen {
			reached <- false
		}
		rest <- all.String()
	}()
	select {
	case ok := <-reached:
		if !ok {
			t.Fatalf("kata-cr ended before %q: %s", stage, <-rest)
		}
	case <-time.After(4 * time.Minute):
		t.Fatalf("kata-cr never reached %q", stage)
	}
	return cmd, rest
}

// TestFaultKataCRKilled: kata-cr itself is killed (SIGKILL, nothing runs
// on its way out) or interrupted (SIGINT) while CRIU dumps: qemu must not
// outlive it, and no directory looks like a checkpoint.
func TestFaultKataCRKilled(t *testing.T) {
	needGuest(t, "6.1")
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			tmp, err := os.MkdirTemp("", "kcrf")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(tmp) })
			dir := filepath.Join(t.TempDir(), "images")
			cmd, rest := startKataCR(t, tmp, "guest: criu dump", "checkpoint", "counter", "--auto-fix", "--no-restore", "--images-dir", dir)
			if len(qemuLeft(tmp)) == 0 {
				t.Fatal("no qemu to outlive kata-cr: the marker does not find it")
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
				// Its exit is judged from cmd.ProcessState below.
			case <-ctx.Done():
				t.Fatalf("kata-cr did not end within a minute of %s", sig)
			}
			stderr := <-rest
			noQemuLeft(t, tmp)
			notComplete(t, dir)
			if sig == syscall.SIGINT {
				if cmd.ProcessState.ExitCode() != ExitToolError || !strings.Contains(stderr, "interrupted") {
					t.Errorf("after SIGINT: exit %d, stderr %q: want %d saying it was interrupted", cmd.ProcessState.ExitCode(), stderr, ExitToolError)
				}
			}
		})
	}
}

// TestFaultImagesDirFull: the images directory's file system fills up
// while the images are saved. The dump already stopped the workload, so
// the agent restores it in place; nothing that looks like a checkpoint is
// left on the full file system.
func TestFaultImagesDirFull(t *testing.T) {
	needGuest(t, "6.1")
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount a small tmpfs (the test runs as root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	dir := filepath.Join(mnt, "images")
	code, r := runCheckpointVM(t, "checkpoint", "counter", "--auto-fix", "--no-restore", "--images-dir", dir)
	c := r.Checkpoint
	if code != ExitCheckFailed || !c.DumpOK {
		t.Fatalf("exit %d, dump ok %v: want the dump done and the save failed", code, c.DumpOK)
	}
	fs := guestFindings(r)
	if f := fs["checkpoint.saved"]; f.Status != reports.Fail {
		t.Errorf("checkpoint.saved: %s %q: want a failure", f.Status, f.Reason)
	}
	if f := fs["checkpoint.restored-in-place"]; f.Status != reports.Pass {
		t.Errorf("checkpoint.restored-in-place: %s %q (%s): want the workload put back", f.Status, f.Summary, f.Reason)
	}
	if c.WorkloadRunning == nil || !*c.WorkloadRunning {
		t.Errorf("workload_running %v, want true", c.WorkloadRunning)
	}
	notComplete(t, dir)
	if left, _ := filepath.Glob(filepath.Join(mnt, "*")); len(left) > 0 {
		t.Errorf("left on the full file system: %v", left)
	}
}

// TestFaultCRIUKilled: CRIU is killed in the guest in the middle of the
// dump, at its post-dump notification (images written, the tree stopped
// under its hold). The dump fails, the workload is thawed and carries on (its
// counter moves on from the value before the dump), and nothing looks
// like a checkpoint.
func TestFaultCRIUKilled(t *testing.T) {
	needGuest(t, "6.1")
	checkpointJobHook = func(o *agentapi.CheckpointOptions) { o.Fault = agentapi.FaultKillCRIU }
	t.Cleanup(func() { checkpointJobHook = nil })
	dir := filepath.Join(t.TempDir(), "images")
	code, r := runCheckpointVM(t, "checkpoint", "counter", "--auto-fix", "--no-restore", "--images-dir", dir)
	c := r.Checkpoint
	if f := guestFindings(r)["checkpoint.fault"]; f.Status != reports.Warn || strings.Contains(f.Summary, "no criu") {
		t.Fatalf("checkpoint.fault: %s %q %q: the fault was not injected", f.Status, f.Summary, f.Evidence)
	}
	if code != ExitCheckFailed || c.DumpOK {
		t.Fatalf("exit %d, dump ok %v: want a failed dump", code, c.DumpOK)
	}
	if c.WorkloadRunning == nil || !*c.WorkloadRunning {
		t.Fatalf("workload_running %v after CRIU was killed, want true", c.WorkloadRunning)
	}
	before, err1 := strconv.Atoi(c.StateBefore["counter"])
	after, err2 := strconv.Atoi(c.StateAfter["counter"])
	if err1 != nil || err2 != nil || after <= before {
		t.Errorf("counter %q before the dump, %q after it failed: want it counting on", c.StateBefore["counter"], c.StateAfter["counter"])
	}
	notComplete(t, dir)
}

// TestFaultQemuKilledDuringCopy: the guest dies while it streams the
// images to the host. Either the stream was cut and nothing looks like a
// checkpoint, or all of it had reached the host and the checkpoint is
// complete and verifiable: never anything in between.
func TestFaultQemuKilledDuringCopy(t *testing.T) {
	needGuest(t, "6.1")
	parent := t.TempDir()
	dir := filepath.Join(parent, "images")
	code, _, stderr := killQemuAt(t, func(ev agentapi.Event) bool {
		return ev.Kind == agentapi.EventResult && ev.Stage == agentapi.ResultImages
	}, "checkpoint", "counter", "--auto-fix", "--no-restore", "--images-dir", dir)
	if code == ExitOK {
		t.Fatalf("exit 0 although the guest died while sending the images: %s", stderr)
	}
	if set, err := images.Open(dir); err == nil {
		if err := set.VerifyFiles(); err != nil {
			t.Errorf("%s opens as a checkpoint but is damaged: %v", dir, err)
		}
		t.Logf("the whole stream had reached the host: the checkpoint is complete (%d bytes)", set.Size())
	}
	if left, _ := filepath.Glob(filepath.Join(parent, "*partial*")); len(left) > 0 {
		t.Errorf("partial directories left: %v", left)
	}
}

// TestFaultKataCRInterruptedDuringRestore: Ctrl-C while guest B restores.
// The checkpoint saved before stays complete and verifiable, and no qemu
// is left.
func TestFaultKataCRInterruptedDuringRestore(t *testing.T) {
	needGuest(t, "6.1")
	tmp, err := os.MkdirTemp("", "kcrf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	dir := filepath.Join(t.TempDir(), "images")
	// Guest B booted during the dump (--overlap) waits for the images
	// before they exist: the restore is under way once they are saved.
	cmd, rest := startKataCR(t, tmp, "checkpoint saved in", "checkpoint", "counter", "--auto-fix", "--images-dir", dir)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("kata-cr did not end within a minute of SIGINT")
	}
	stderr := <-rest
	noQemuLeft(t, tmp)
	if code := cmd.ProcessState.ExitCode(); code == ExitOK {
		t.Errorf("exit 0 after an interrupted restore: %s", stderr)
	}
	set, err := images.Open(dir)
	if err != nil {
		t.Fatalf("the checkpoint saved before the interrupt does not open: %v", err)
	}
	if err := set.VerifyFiles(); err != nil {
		t.Errorf("the checkpoint saved before the interrupt is damaged: %v", err)
	}
}
