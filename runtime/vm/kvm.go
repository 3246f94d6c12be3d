package vm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/kernel"
	"golang.org/x/sys/unix"
)

// BareMarker is what the trivial initramfs (guestimage.BuildBare) prints
// on the console before it powers off.
const BareMarker = "kata-cr-bare-ok"

// DefaultProbeTimeout bounds the KVM probe: a working KVM boots the bare
// guest in about a second.
const DefaultProbeTimeout = 6 * time.Second

// KVMProbe says how to find out whether KVM really works.
type KVMProbe struct {
	// QEMU is the qemu binary; empty means look it up.
	QEMU string
	// Kernel and Initrd are the guest kernel and a trivial initramfs that
	// prints BareMarker and powers off (guestimage.BuildBare).
	Kernel, Initrd string
	// Timeout defaults to DefaultProbeTimeout.
	Timeout time.Duration
	// CacheDir keeps the verdict for the rest of the host's boot; empty
	// means no caching.
	CacheDir string
	// Device is the KVM device, "/dev/kvm" when empty.
	Device string
	// CPU is qemu's -cpu model, as in BootSpec.
	CPU string
}

// probeVerdict is the cached outcome of a probe.
type probeVerdict struct {
	BootID string `json:"boot_id"`
	Key    string `json:"key"`
	Accel  Accel  `json:"accel"`
}

// ProbeKVM decides the accelerator: KVM when /dev/kvm opens, answers the
// KVM API and a test guest boots and powers off under it within the
// timeout; TCG otherwise. The reason says what was seen. On a host where
// nested virtualisation does not work a KVM guest hangs: the probe then
// times out, kills qemu and falls back to TCG. The verdict is cached for
// the rest of the host's boot.
func ProbeKVM(ctx context.Context, p KVMProbe) Accel {
	if p.Device == "" {
		p.Device = "/dev/kvm"
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultProbeTimeout
	}
	if reason := kvmDeviceProblem(p.Device); reason != "" {
		return Accel{Name: AccelTCG, Reason: reason}
	}
	cacheFile, bootID, key := "", "", ""
	if p.CacheDir != "" {
		cacheFile = filepath.Join(p.CacheDir, "kvm-probe.json")
		bootID = hostBootID()
		key = probeKey(p)
		if v, ok := readVerdict(cacheFile); ok && bootID != "" && v.BootID == bootID && v.Key == key {
			v.Accel.Reason += " (probed earlier since the host booted)"
			return v.Accel
		}
	}
	a := runProbe(ctx, p)
	if cacheFile != "" && bootID != "" && ctx.Err() == nil {
		writeVerdict(cacheFile, probeVerdict{BootID: bootID, Key: key, Accel: a})
	}
	return a
}

// kvmDeviceProblem says why the KVM device cannot be used, "" when it can.
func kvmDeviceProblem(dev string) string {
	f, err := os.OpenFile(dev, os.O_RDWR|syscall.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("no %s: the host has no KVM (not loaded, or no hardware virtualisation)", dev)
	case errors.Is(err, os.ErrPermission):
		return fmt.Sprintf("cannot open %s: permission denied (add the user to the kvm group)", dev)
	case err != nil:
		return fmt.Sprintf("cannot open %s: %v", dev, errors.Unwrap(err))
	}
	defer f.Close()
	// KVM_GET_API_VERSION is _IO(KVMIO, 0x00); the API has been 12 since
	// Linux 2.6.22.
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), 0xAE00, 0)
	if errno != 0 {
		return fmt.Sprintf("%s does not answer the KVM API: %v", dev, errno)
	}
	if v != 12 {
		return fmt.Sprintf("%s speaks KVM API %d, qemu needs 12", dev, v)
	}
	return ""
}

func runProbe(ctx context.Context, p KVMProbe) Accel {
	spec := BootSpec{QEMU: p.QEMU, Kernel: p.Kernel, Initrd: p.Initrd, Accel: Accel{Name: AccelKVM}, CPU: p.CPU}
	d, err := BareBoot(ctx, spec, p.Timeout)
	switch {
	case err == nil:
		return Accel{Name: AccelKVM, Reason: fmt.Sprintf("KVM works: a test guest booted and powered off in %s", d.Round(10*time.Millisecond))}
	case errors.Is(err, ErrBootTimeout):
		return Accel{Name: AccelTCG, Reason: fmt.Sprintf("/dev/kvm is there but a test guest did not boot under KVM within %s (nested virtualisation not working?)", p.Timeout)}
	default:
		return Accel{Name: AccelTCG, Reason: "a test guest failed under KVM: " + err.Error()}
	}
}

// BareBoot boots spec's kernel with a trivial initramfs that prints
// BareMarker and powers off, and returns how long that took. It is the
// KVM probe and the baseline of the boot benchmark. qemu is killed when
// the guest does not power off within timeout.
func BareBoot(ctx context.Context, spec BootSpec, timeout time.Duration) (time.Duration, error) {
	if err := kernel.CheckImage(spec.Kernel); err != nil {
		return 0, err
	}
	qemu, err := lookQEMU(spec.QEMU)
	if err != nil {
		return 0, err
	}
	spec = withDefaults(spec)
	dir, err := os.MkdirTemp(spec.TempDir, "kata-cr-bare-")
	if err != nil {
		return 0, fmt.Errorf("bare boot: %w", err)
	}
	defer os.RemoveAll(dir)
	console := filepath.Join(dir, "console.log")
	args := append(machineArgs(spec), "-chardev", "file,id=con,path="+console, "-serial", "chardev:con", "-monitor", "none")
	if spec.Logf != nil {
		spec.Logf("qemu command line: %s", quoteArgs(append([]string{qemu}, args...)))
	}
	var stderr syncBuffer
	cmd := exec.Command(qemu, args...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("bare boot: %w", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start qemu: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The probe stays bounded even when a KVM qemu is slow to die in the
	// kernel: the SIGKILL is sent, and the wait for it is bounded too.
	kill := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		d := time.Since(start)
		tail := tailLines(console, consoleTailLines)
		if err != nil {
			msg := qemuMessage(stderr.String())
			if msg == "" {
				msg = err.Error()
			}
			return d, &GuestError{Err: ErrQEMU, Msg: "qemu failed: " + msg, Console: tail, Stderr: stderr.String()}
		}
		for _, l := range tail {
			if strings.Contains(l, BareMarker) {
				return d, nil
			}
		}
		return d, &GuestError{Err: ErrGuestExited, Msg: "the test guest stopped without printing " + BareMarker, Console: tail, Stderr: stderr.String()}
	case <-timer.C:
		kill()
		return timeout, &GuestError{Err: ErrBootTimeout, Msg: fmt.Sprintf("test guest did not power off within %s", timeout),
			Console: tailLines(console, consoleTailLines), Stderr: stderr.String()}
	case <-ctx.Done():
		kill()
		return time.Since(start), fmt.Errorf("bare boot: %w", ctx.Err())
	}
}

// hostBootID identifies this boot of the host.
func hostBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// probeKey identifies what the probe ran: qemu, the kernel and the
// initramfs, by path, size and mtime.
func probeKey(p KVMProbe) string {
	h := sha256.New()
	qemu, _ := lookQEMU(p.QEMU)
	for _, f := range []string{qemu, p.Kernel, p.Initrd} {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", f, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(h, "%s missing\n", f)
		}
	}
	fmt.Fprintf(h, "timeout %s cpu %s\n", p.Timeout, p.CPU)
	return hex.EncodeToString(h.Sum(nil))
}

func readVerdict(path string) (probeVerdict, bool) {
	var v probeVerdict
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &v) != nil || v.Accel.Name == "" {
		return v, false
	}
	return v, true
}

func writeVerdict(path string, v probeVerdict) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
	}
}
