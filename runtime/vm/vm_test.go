package vm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/guestimage"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// These tests boot real guests under qemu (TCG unless KVM works): the
// Debian 6.1 kernel that make guest-kernel caches, and either kata-cr's
// guest image or a trivial initramfs. Each has a timeout and logs the qemu
// command line. Under -short (make test-unit) they are skipped; otherwise
// a missing qemu or kernel fails them, never skips them.

// needQEMU starts every test that boots a guest: it skips the test under
// -short and fails it when qemu is missing.
func needQEMU(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a guest under qemu: not with -short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 not found: run scripts/install-deps.sh and make guest-kernels")
	}
}

// testKernel is the cached Debian 6.1 kernel, after needQEMU.
func testKernel(t testing.TB) *kernel.Guest {
	t.Helper()
	needQEMU(t)
	k, err := kernel.Find(kernel.FindOptions{Version: "6.1"})
	if err != nil {
		t.Fatalf("no cached Debian 6.1 kernel (run scripts/install-deps.sh and make guest-kernels): %v", err)
	}
	return k
}

func bareImage(t testing.TB) string {
	t.Helper()
	p, err := guestimage.BuildBare("", "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func guestImage(t testing.TB, k *kernel.Guest) string {
	t.Helper()
	p, _, err := guestimage.Build(context.Background(), guestimage.Spec{
		KernelRelease: k.Release, ModulesDir: k.ModulesDir, KernelConfig: k.Config, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// qemuChildren lists the qemu processes this test process started that
// are still there.
func qemuChildren(t testing.TB) []string {
	t.Helper()
	me := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []string
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		line := string(b)
		i := strings.LastIndexByte(line, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(line[i+1:])
		if len(f) > 1 && f[1] == me && strings.Contains(line[:i], "qemu") {
			out = append(out, line[:i+1])
		}
	}
	return out
}

func checkNoQEMU(t testing.TB) {
	t.Helper()
	if left := qemuChildren(t); len(left) > 0 {
		t.Errorf("qemu still running: %v", left)
	}
}

// checkCleaned checks that the VM's temporary directory under dir is gone.
func checkCleaned(t testing.TB, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		t.Errorf("temporary file left behind: %s", filepath.Join(dir, e.Name()))
	}
}

// nextError boots spec and reads events until the guest fails.
func nextError(t *testing.T, ctx context.Context, spec vm.BootSpec) (*vm.GuestError, time.Duration, error) {
	t.Helper()
	start := time.Now()
	v, err := vm.Boot(ctx, spec)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	defer v.Close()
	for {
		ev, err := v.Next(ctx)
		if err != nil {
			var ge *vm.GuestError
			if !errors.As(err, &ge) {
				t.Fatalf("error %v (%T) is not a *GuestError", err, err)
			}
			return ge, time.Since(start), err
		}
		t.Logf("event %s", ev.Kind)
	}
}

func TestKernelPanic(t *testing.T) {
	k := testKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	// No init at rdinit: the kernel falls back to a root device it does
	// not have, and panics.
	ge, took, err := nextError(t, ctx, vm.BootSpec{
		Kernel: k.Image, Initrd: bareImage(t), Cmdline: []string{"rdinit=/nonexistent"},
		TempDir: tmp, Logf: t.Logf,
	})
	if !errors.Is(err, vm.ErrKernelPanic) {
		t.Fatalf("error %v, want a kernel panic; console:\n%s", err, strings.Join(ge.Console, "\n"))
	}
	if !strings.Contains(ge.Msg, "Kernel panic") || strings.Contains(ge.Msg, "\n") {
		t.Errorf("message %q: want one line quoting the panic", ge.Msg)
	}
	if len(ge.Console) == 0 || len(ge.Console) > 20 {
		t.Errorf("console tail has %d lines, want 1 to 20", len(ge.Console))
	}
	t.Logf("%s after %s; console tail:\n%s", ge.Msg, took.Round(time.Millisecond), strings.Join(ge.Console, "\n"))
	checkNoQEMU(t)
	checkCleaned(t, tmp)
}

func TestBootTimeout(t *testing.T) {
	k := testKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	// A guest that boots but never starts an agent: init sleeps.
	const timeout = 8 * time.Second
	ge, took, err := nextError(t, ctx, vm.BootSpec{
		Kernel: k.Image, Initrd: bareImage(t), Cmdline: []string{"rdinit=/bin/busybox", "--", "sleep", "600"},
		BootTimeout: timeout, TempDir: tmp, Logf: t.Logf,
	})
	if !errors.Is(err, vm.ErrBootTimeout) {
		t.Fatalf("error %v, want a boot timeout; console:\n%s", err, strings.Join(ge.Console, "\n"))
	}
	if took < timeout || took > timeout+15*time.Second {
		t.Errorf("gave up after %s, want about %s", took, timeout)
	}
	t.Logf("%s after %s", ge.Msg, took.Round(time.Millisecond))
	checkNoQEMU(t)
	checkCleaned(t, tmp)
}

func TestGuestExitsEarly(t *testing.T) {
	k := testKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	// The trivial initramfs powers off without starting an agent.
	ge, _, err := nextError(t, ctx, vm.BootSpec{Kernel: k.Image, Initrd: bareImage(t), TempDir: tmp, Logf: t.Logf})
	if !errors.Is(err, vm.ErrGuestExited) {
		t.Fatalf("error %v, want ErrGuestExited", err)
	}
	if !strings.Contains(strings.Join(ge.Console, "\n"), vm.BareMarker) {
		t.Errorf("console tail lacks %s:\n%s", vm.BareMarker, strings.Join(ge.Console, "\n"))
	}
	checkNoQEMU(t)
	checkCleaned(t, tmp)
}

// TestAgentCrash boots an image whose agent dies without powering off (a
// script standing in for a crashed agent): the guest must stop at once,
// not at the boot timeout, and the console must say what happened.
func TestAgentCrash(t *testing.T) {
	k := testKernel(t)
	fake := filepath.Join(t.TempDir(), "agent")
	script := "#!/bin/busybox sh\n/bin/busybox echo fake agent crashed\nexit 3\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	img, _, err := guestimage.Build(context.Background(), guestimage.Spec{
		AgentBinary: fake, KernelRelease: k.Release, ModulesDir: k.ModulesDir, KernelConfig: k.Config, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	ge, took, err := nextError(t, ctx, vm.BootSpec{Kernel: k.Image, Initrd: img, TempDir: tmp, Logf: t.Logf})
	if !errors.Is(err, vm.ErrGuestExited) {
		t.Fatalf("error %v, want ErrGuestExited", err)
	}
	console := strings.Join(ge.Console, "\n")
	for _, want := range []string{"fake agent crashed", vm.AgentGoneMarker} {
		if !strings.Contains(console, want) {
			t.Errorf("console tail lacks %q:\n%s", want, console)
		}
	}
	if took > time.Minute {
		t.Errorf("took %s: the crash was found by a timeout", took)
	}
	if !strings.Contains(ge.Msg, "crashed") {
		t.Errorf("message %q does not say the agent crashed", ge.Msg)
	}
	t.Logf("%s after %s", ge.Msg, took.Round(time.Millisecond))
	checkNoQEMU(t)
	checkCleaned(t, tmp)
}

func TestCancelKillsQEMU(t *testing.T) {
	k := testKernel(t)
	img := guestImage(t, k)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tmp := t.TempDir()
	v, err := vm.Boot(ctx, vm.BootSpec{Kernel: k.Image, Initrd: img, TempDir: tmp, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	// What Ctrl-C does: the command's signal context is cancelled.
	time.AfterFunc(time.Second, cancel)
	start := time.Now()
	_, err = v.Next(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %s to stop", d)
	}
	checkNoQEMU(t)
	if err := v.Close(); err != nil {
		t.Error(err)
	}
	checkCleaned(t, tmp)
}

func TestProbeKVM(t *testing.T) {
	k := testKernel(t)
	bare := bareImage(t)
	cache := t.TempDir()
	const timeout = 4 * time.Second
	for _, cpu := range []string{"", "qemu64"} {
		t.Run("cpu="+cpu, func(t *testing.T) {
			p := vm.KVMProbe{Kernel: k.Image, Initrd: bare, Timeout: timeout, CacheDir: cache, CPU: cpu}
			start := time.Now()
			a := vm.ProbeKVM(context.Background(), p)
			took := time.Since(start)
			t.Logf("%s: %s (%s)", a.Name, a.Reason, took.Round(time.Millisecond))
			if (a.Name != vm.AccelKVM && a.Name != vm.AccelTCG) || a.Reason == "" {
				t.Errorf("accel %+v: want kvm or tcg with a reason", a)
			}
			if took > timeout+5*time.Second {
				t.Errorf("probe took %s, bound is %s", took, timeout)
			}
			checkNoQEMU(t)
			start = time.Now()
			b := vm.ProbeKVM(context.Background(), p)
			if b.Name != a.Name || !strings.Contains(b.Reason, "probed earlier") || time.Since(start) > time.Second {
				t.Errorf("second probe %+v in %s: want the cached verdict", b, time.Since(start))
			}
		})
	}
	a := vm.ProbeKVM(context.Background(), vm.KVMProbe{Kernel: k.Image, Initrd: bare, Device: filepath.Join(t.TempDir(), "kvm")})
	if a.Name != vm.AccelTCG || !strings.Contains(a.Reason, "no ") {
		t.Errorf("missing device: %+v, want tcg saying there is no device", a)
	}
}

// BenchmarkBareBoot boots the kernel with a trivial initramfs that powers
// off at once: the floor under BenchmarkBootToVerdict.
func BenchmarkBareBoot(b *testing.B) {
	k := testKernel(b)
	bare := bareImage(b)
	var total time.Duration
	n := 0
	for b.Loop() {
		d, err := vm.BareBoot(context.Background(), vm.BootSpec{Kernel: k.Image, Initrd: bare}, 2*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		total += d
		n++
	}
	b.ReportMetric(total.Seconds()/float64(n), "boot-s")
}

// BenchmarkBootToVerdict boots kata-cr's guest and runs the doctor in it,
// from starting qemu to the agent's report. It also boots the bare guest
// in the same run and reports the ratio: the target is 1.2 or below,
// kata-cr adding a fifth at most to a bare boot of the same kernel.
func BenchmarkBootToVerdict(b *testing.B) {
	k := testKernel(b)
	img := guestImage(b, k)
	bare := bareImage(b)
	tplDir := b.TempDir()
	// toVerdict runs the doctor in a guest of spec: the time from starting
	// qemu to the report, and the run.
	toVerdict := func(spec vm.BootSpec) (time.Duration, *vm.Result) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		var at time.Duration
		res, err := vm.RunWith(ctx, spec, agentapi.Job{Kind: agentapi.JobDoctor},
			func(_ *vm.VM, ev agentapi.Event) error {
				if ev.Kind == agentapi.EventReport {
					at = time.Since(start)
				}
				return nil
			})
		if err != nil {
			b.Fatal(err)
		}
		if res.Report == nil {
			b.Fatal("no report")
		}
		return at, res
	}
	// The VM template the clones start from, saved before the iterations.
	tplSpec := vm.BootSpec{Kernel: k.Image, Initrd: img, TemplateDir: tplDir}
	if _, res := toVerdict(tplSpec); res.Template == nil || !res.Template.Saved {
		b.Fatalf("no VM template saved: %+v", res.Template)
	}
	var verdict, agent, floor, fromTemplate time.Duration
	n := 0
	for b.Loop() {
		at, res := toVerdict(vm.BootSpec{Kernel: k.Image, Initrd: img})
		tat, tres := toVerdict(tplSpec)
		if tres.Template == nil || !tres.Template.Cloned {
			b.Fatalf("the guest did not start from its VM template: %+v", tres.Template)
		}
		fromTemplate += tat
		b.StopTimer()
		d, err := vm.BareBoot(context.Background(), vm.BootSpec{Kernel: k.Image, Initrd: bare}, 2*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		verdict += at
		agent += res.Boot
		floor += d
		n++
	}
	b.ReportMetric(agent.Seconds()/float64(n), "to-agent-s")
	b.ReportMetric(verdict.Seconds()/float64(n), "to-verdict-s")
	b.ReportMetric(floor.Seconds()/float64(n), "bare-s")
	b.ReportMetric(float64(verdict)/float64(floor), "x-bare")
	b.ReportMetric(float64(fromTemplate)/float64(floor), "x-bare-template")
	ratio := float64(verdict) / float64(floor)
	b.Logf("boot to verdict %.2fs (agent up %.2fs) / bare boot %.2fs = %.2fx (target <= 1.20x: %s)",
		verdict.Seconds()/float64(n), agent.Seconds()/float64(n), floor.Seconds()/float64(n), ratio, targetVerdict(ratio, 1.2))
	ratio = float64(fromTemplate) / float64(floor)
	b.Logf("with a VM template: boot to verdict %.2fs / bare boot %.2fs = %.2fx (target <= 1.20x: %s)",
		fromTemplate.Seconds()/float64(n), floor.Seconds()/float64(n), ratio, targetVerdict(ratio, 1.2))
}

// targetVerdict says whether ratio meets target, or by how much it misses.
func targetVerdict(ratio, target float64) string {
	if ratio > target {
		return fmt.Sprintf("MISSED by %.0f%%", (ratio/target-1)*100)
	}
	return "met"
}
