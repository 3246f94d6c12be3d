package cmd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/internal/promtool"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// needGuest starts every test that boots a guest: it skips the test under
// -short (make test-unit) and fails it, never skips it, when qemu or the
// cached Debian kernel of series is missing.
func needGuest(t testing.TB, series string) *kernel.Guest {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a guest under qemu: not with -short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 not found: run scripts/install-deps.sh and make guest-kernels")
	}
	k, err := kernel.Find(kernel.FindOptions{Version: series})
	if err != nil {
		t.Fatalf("no cached Debian %s kernel (run scripts/install-deps.sh and make guest-kernels): %v", series, err)
	}
	return k
}

// hostCRIUVersion is the version of the host's criu, which the default
// guest image carries, as the doctor reports it.
func hostCRIUVersion(t testing.TB) criu.Version {
	t.Helper()
	b, err := criu.Find("")
	if err != nil {
		t.Fatalf("no criu on the host (run scripts/install-deps.sh): %v", err)
	}
	v, err := b.Version(context.Background())
	if err != nil {
		t.Fatalf("host criu %s: %v", b.Path, err)
	}
	return v
}

// runKataCR runs kata-cr with args and returns its exit code and output.
func runKataCR(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := Main(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// guestFindings indexes a report's findings by ID.
func guestFindings(r *reports.Report) map[string]reports.Finding {
	m := map[string]reports.Finding{}
	for _, f := range r.Findings {
		m[f.ID] = f
	}
	return m
}

// configWithout writes a copy of the kernel config at src with option
// turned off, as a kernel built without it would have it.
func configWithout(t *testing.T, src, option string) string {
	t.Helper()
	in, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	found := false
	sc := bufio.NewScanner(bytes.NewReader(in))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "CONFIG_"+option+"=") {
			l = "# CONFIG_" + option + " is not set"
			found = true
		}
		out.WriteString(l + "\n")
	}
	if !found {
		t.Fatalf("%s does not set CONFIG_%s", src, option)
	}
	p := filepath.Join(t.TempDir(), "config-without-"+option)
	if err := os.WriteFile(p, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGuestDoctor boots the default guest twice under qemu and checks the
// report the agent sends back. Without --fix the guest is as Kata boots it:
// CRIU's modules are not loaded, so the sock-diag finding and `criu check`
// fail; it also ships a kernel config without CHECKPOINT_RESTORE, which
// must fail in the guest report. With --fix the fixers load the modules,
// say so, and the same checks pass against the real config.
func TestGuestDoctor(t *testing.T) {
	k := needGuest(t, "6.1")
	noCR := configWithout(t, k.Config, "CHECKPOINT_RESTORE")

	run := func(t *testing.T, args ...string) (int, *reports.Report) {
		t.Helper()
		args = append([]string{"doctor", "-o", "json", "--kernel-version", "6.1", "--timeout", "8m"}, args...)
		code, stdout, stderr := runKataCR(args...)
		var r reports.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("kata-cr %s: exit %d, no JSON report: %v\nstderr: %s", strings.Join(args, " "), code, err, stderr)
		}
		boot := guestFindings(&r)["guest.boot"]
		t.Logf("kata-cr %s: exit %d, %s", strings.Join(args, " "), code, boot.Summary)
		for _, e := range boot.Evidence {
			t.Logf("  %s", e)
		}
		checkGuestTarget(t, &r, k)
		// The same report as -o prometheus writes it: promtool accepts it.
		var prom bytes.Buffer
		if err := reports.Render(&prom, &r, reports.Options{Format: reports.Prometheus}); err != nil || !strings.Contains(prom.String(), `kata_cr_target_info{target="guest"`) {
			t.Fatalf("-o prometheus of the guest report: %v\n%s", err, prom.String())
		}
		promtool.Check(t, prom.Bytes())
		return code, &r
	}

	t.Run("without fix", func(t *testing.T) {
		code, r := run(t, "--kernel-config", noCR)
		fs := guestFindings(r)
		if code != ExitCheckFailed || !r.Failed {
			t.Errorf("exit %d (failed=%v), want %d", code, r.Failed, ExitCheckFailed)
		}
		for id, want := range map[string]reports.Status{
			"kernel.UNIX_DIAG":          reports.Fail,
			"kernel.CHECKPOINT_RESTORE": reports.Fail,
			"criu.check":                reports.Fail,
			"system.loopback":           reports.Pass,
		} {
			if got := fs[id].Status; got != want {
				t.Errorf("%s: %s (%s), want %s", id, got, fs[id].Summary, want)
			}
		}
		for _, a := range r.Actions {
			if a.Applied {
				t.Errorf("action applied without --fix: %+v", a)
			}
		}
	})

	t.Run("with fix", func(t *testing.T) {
		code, r := run(t, "--fix")
		fs := guestFindings(r)
		if code != ExitOK || r.Failed {
			t.Errorf("exit %d (failed=%v), want %d; verdict %s", code, r.Failed, ExitOK, r.Verdict)
		}
		for _, id := range []string{"kernel.UNIX_DIAG", "kernel.CHECKPOINT_RESTORE", "criu.check", "kernel.NF_TABLES"} {
			if fs[id].Status != reports.Pass {
				t.Errorf("%s: %s (%s), want pass", id, fs[id].Status, fs[id].Summary)
			}
		}
		loaded := map[string]bool{}
		for _, a := range r.Actions {
			if a.Fixer == "load-module" && a.Applied {
				for _, w := range strings.FieldsFunc(a.Summary, func(r rune) bool { return r == ' ' || r == ',' }) {
					loaded[w] = true
				}
			}
		}
		for _, m := range []string{"unix_diag", "inet_diag", "netlink_diag", "nf_tables"} {
			if !loaded[m] {
				t.Errorf("actions do not say %s was loaded: %+v", m, r.Actions)
			}
		}
	})
}

func checkGuestTarget(t *testing.T, r *reports.Report, k *kernel.Guest) {
	t.Helper()
	tg := r.Target
	if tg.Kind != "guest" || tg.KernelRelease != k.Release || !strings.HasPrefix(tg.KernelRelease, "6.1.") {
		t.Errorf("target %+v: want the guest's kernel %s", tg, k.Release)
	}
	if want := hostCRIUVersion(t).String(); tg.CRIUVersion != want {
		t.Errorf("CRIU version %q, want the host's %s", tg.CRIUVersion, want)
	}
	if (tg.Accelerator != vm.AccelKVM && tg.Accelerator != vm.AccelTCG) || tg.AcceleratorReason == "" {
		t.Errorf("accelerator %q (%q): want kvm or tcg with the reason", tg.Accelerator, tg.AcceleratorReason)
	}
	boot := guestFindings(r)["guest.boot"]
	ev := strings.Join(boot.Evidence, "\n")
	if boot.Status != reports.Pass || !strings.Contains(ev, "qemu: ") {
		t.Errorf("guest.boot finding %+v: want the qemu command line as evidence", boot)
	}
	// CRIU cannot dump files on the initramfs root: the agent must have
	// moved to a tmpfs.
	if !strings.Contains(ev, "on a tmpfs root") {
		t.Errorf("guest.boot evidence does not say the agent runs on a tmpfs root:\n%s", ev)
	}
}

// TestGuestDoctorBadInput checks that bad guest input gets one clear line
// and boots nothing.
func TestGuestDoctorBadInput(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "not-a-kernel")
	if err := os.WriteFile(text, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name     string
		args     []string
		wantExit int
		want     string
	}{
		{"missing kernel", []string{"doctor", "--kernel", missing}, ExitToolError, missing},
		{"not a kernel", []string{"doctor", "--kernel", text}, ExitToolError, text},
		{"kernel and version", []string{"doctor", "--kernel", text, "--kernel-version", "6.1"}, ExitUsage, "both"},
		{"bad accel", []string{"doctor", "--accel", "hvf"}, ExitUsage, "--accel"},
		{"bad suite", []string{"doctor", "--criu-suite", "buster"}, ExitUsage, `--criu-suite "buster": use host, bookworm, trixie, forky, sid`},
		{"pid in guest", []string{"doctor", "--pid", "1"}, ExitUsage, "--target host"},
		{"bad include", []string{"doctor", "--include", "/x:relative"}, ExitUsage, "absolute"},
		{"image without output", []string{"image", "build"}, ExitUsage, "-o FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runKataCR(tt.args...)
			if code != tt.wantExit {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantExit, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q: want one line mentioning %q", stderr, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

func TestImageBuild(t *testing.T) {
	out := filepath.Join(t.TempDir(), "guest.cpio")
	code, stdout, stderr := runKataCR("image", "build", "-o", out, "--kernel-version", "6.1")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 1<<20 {
		t.Fatalf("image %s: %d bytes, want at least 1 MB", out, fi.Size())
	}
	if !strings.HasPrefix(stdout, out+": guest image for kernel 6.1.") {
		t.Errorf("stdout %q", stdout)
	}
	t.Log(strings.TrimSpace(stdout))
}

// TestGuestDoctorOneScreen: the README's first doctor command (`doctor
// --fix`, text) fits on one screen when nothing is wrong, and --all shows
// every finding.
func TestGuestDoctorOneScreen(t *testing.T) {
	needGuest(t, "6.1")
	code, stdout, stderr := runKataCR("doctor", "--fix", "--kernel-version", "6.1", "--timeout", "5m")
	if code != ExitOK {
		t.Fatalf("doctor --fix: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	t.Logf("%d lines:\n%s", len(lines), stdout)
	if len(lines) > 30 {
		t.Errorf("the default report is %d lines, want at most 30", len(lines))
	}
	if strings.Contains(stdout, "PASS  kernel.") {
		t.Error("passing findings listed one by one without --all")
	}
	code, all, _ := runKataCR("doctor", "--fix", "--all", "--kernel-version", "6.1", "--timeout", "5m")
	if code != ExitOK || !strings.Contains(all, "PASS  kernel.CHECKPOINT_RESTORE") {
		t.Errorf("--all: exit %d, CHECKPOINT_RESTORE not listed:\n%s", code, all)
	}
}
