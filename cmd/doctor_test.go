package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/reports"
)

func TestDoctorFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		want     doctorOptions
		wantExit int
	}{
		{"defaults", nil, doctorOptions{Target: "guest"}, ExitOK},
		{"host", []string{"--target", "host"}, doctorOptions{Target: "host"}, ExitOK},
		{"all flags", []string{"--target=host", "--pid", "42", "--criu", "/opt/criu/criu", "--kernel-config", "cfg", "--fix"},
			doctorOptions{Target: "host", PIDArg: "42", PID: 42, CRIUPath: "/opt/criu/criu", KernelConfig: "cfg", Fix: true}, ExitOK},
		{"pid not a number", []string{"--target", "host", "--pid", "abc"}, doctorOptions{}, ExitUsage},
		{"pid zero", []string{"--pid", "0"}, doctorOptions{}, ExitUsage},
		{"pid negative", []string{"--pid=-3"}, doctorOptions{}, ExitUsage},
		{"unknown target", []string{"--target", "vm"}, doctorOptions{}, ExitUsage},
		{"argument", []string{"extra"}, doctorOptions{}, ExitUsage},
		{"unknown flag", []string{"--bogus"}, doctorOptions{}, ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *doctorOptions
			deps := &Deps{Stdout: io.Discard, Stderr: io.Discard, IsTerminal: func(io.Writer) bool { return false }, Getenv: func(string) string { return "" }}
			c := newDoctorCmdWith(deps, &globalOptions{}, func(_ context.Context, o *doctorOptions) error {
				got = o
				return nil
			})
			c.SetArgs(append([]string{}, tt.args...))
			c.SetOut(io.Discard)
			c.SetErr(io.Discard)
			var stderr bytes.Buffer
			code := exitCode(c.Execute(), &stderr)
			if code != tt.wantExit {
				t.Fatalf("exit %d, want %d (%s)", code, tt.wantExit, stderr.String())
			}
			if tt.wantExit != ExitOK {
				if got != nil {
					t.Errorf("run was called with %+v", got)
				}
				if n := strings.Count(stderr.String(), "\n"); n != 1 {
					t.Errorf("want one line on stderr, got %q", stderr.String())
				}
				return
			}
			if got == nil {
				t.Fatal("run was not called")
			}
			// The guest flags belong to the guest target's own tests.
			mine := *got
			mine.guest = guestOptions{}
			tt.want.procRoot, tt.want.sysRoot = "/proc", "/sys"
			if !reflect.DeepEqual(mine, tt.want) {
				t.Errorf("options %+v, want %+v", mine, tt.want)
			}
		})
	}
}

// runMain runs kata-cr with args and returns its exit code and output.
func runMain(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := Main(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestDoctorBadInput checks that bad input gets one clear line and the
// documented exit code; the lines are kept in a golden file.
func TestDoctorBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name     string
		args     []string
		wantExit int
	}{
		{"pid not a number", []string{"doctor", "--target", "host", "--pid", "12ab"}, ExitUsage},
		{"pid does not exist", []string{"doctor", "--target", "host", "--pid", "2147483646"}, ExitToolError},
		{"criu does not exist", []string{"doctor", "--target", "host", "--criu", missing}, ExitToolError},
		{"kernel config does not exist", []string{"doctor", "--target", "host", "--kernel-config", missing}, ExitToolError},
		{"bad output format", []string{"doctor", "--target", "host", "-o", "yaml"}, ExitUsage},
		{"bad target", []string{"doctor", "--target", "cloud"}, ExitUsage},
	}
	var golden strings.Builder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(tt.args...)
			if code != tt.wantExit {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantExit, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "goroutine") {
				t.Errorf("want one line on stderr, got %q", stderr)
			}
			if stdout != "" {
				t.Errorf("want no report on bad input, got %q", stdout)
			}
			line := strings.ReplaceAll(stderr, missing, "MISSING")
			fmt.Fprintf(&golden, "$ kata-cr %s\nexit %d: %s", strings.Join(tt.args, " "), code, line)
		})
	}
	checkGolden(t, "doctor-bad-input.golden", strings.ReplaceAll(golden.String(), missing, "MISSING"))
}

func TestDoctorHelp(t *testing.T) {
	code, stdout, stderr := runMain("doctor", "--help")
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	checkGolden(t, "doctor-help.golden", stdout)
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if goldenUpdate() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./cmd -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// startTree starts `sh -c script` as pid 1 of a new pid namespace, the way
// a Kata agent from 2.5.0 to 4.0.0 starts a container init without a
// terminal (setsid false) or the way runc does (setsid true). It waits
// until the tree has wantProcs processes.
func startTree(t testing.TB, script string, setsid bool, wantProcs int) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test creates pid namespaces: run it as root")
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: setsid, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", script, err)
	}
	t.Cleanup(func() {
		// Killing pid 1 of the namespace kills every process in it.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := countTree(pid)
		if n >= wantProcs {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree of %d has %d processes after 10s, want %d", pid, n, wantProcs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countTree counts pid and its descendants through /proc/PID/task/*/children.
func countTree(pid int) int {
	n := 1
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, tf := range tasks {
		data, _ := os.ReadFile(tf)
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				n += countTree(c)
			}
		}
	}
	return n
}

func doctorJSON(t *testing.T, args ...string) (int, *reports.Report) {
	t.Helper()
	code, stdout, stderr := runMain(append([]string{"doctor", "-o", "json"}, args...)...)
	if stderr != "" && code != ExitCheckFailed {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r reports.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("exit %d, output is not a JSON report: %v\n%s\nstderr: %s", code, err, stdout, stderr)
	}
	return code, &r
}

func findingsByID(r *reports.Report, id string) []reports.Finding {
	var out []reports.Finding
	for _, f := range r.Findings {
		if f.ID == id {
			out = append(out, f)
		}
	}
	return out
}

func statusOf(t *testing.T, r *reports.Report, id string) reports.Status {
	t.Helper()
	fs := findingsByID(r, id)
	if len(fs) == 0 {
		t.Fatalf("no finding %s in the report", id)
	}
	worst := reports.Pass
	for _, f := range fs {
		if f.Status == reports.Fail || f.Status == reports.Error {
			return f.Status
		}
		if f.Status != reports.Pass {
			worst = f.Status
		}
	}
	return worst
}

// treeReasons are the prediction's reasons that come from the process tree
// itself rather than from the machine (criu, kernel).
func treeReasons(p *reports.Prediction) []string {
	var out []string
	for _, r := range p.Reasons {
		if strings.HasPrefix(r, "process.") || strings.HasPrefix(r, "mount.") {
			out = append(out, r)
		}
	}
	return out
}

// TestDoctorHostSeedTree is the seed's failure, predicted: a container init
// in its own pid namespace that is not a session leader.
func TestDoctorHostSeedTree(t *testing.T) {
	pid := startTree(t, "sleep 1000", false, 1)
	code, r := doctorJSON(t, "--target", "host", "--pid", strconv.Itoa(pid))
	if code != ExitCheckFailed {
		t.Errorf("exit %d, want %d", code, ExitCheckFailed)
	}
	if r.Target.Kind != "host" || r.Target.KernelRelease == "" || r.Target.Arch == "" {
		t.Errorf("target %+v", r.Target)
	}
	if s := statusOf(t, r, "process.session-leader"); s != reports.Fail {
		t.Errorf("process.session-leader: %s, want fail", s)
	}
	p := r.Prediction
	if p == nil || p.DumpWillSucceed || p.TreeDumpable {
		t.Fatalf("prediction %+v, want a failed dump of a non-dumpable tree", p)
	}
	if !strings.Contains(strings.Join(p.Reasons, "\n"), "process.session-leader") {
		t.Errorf("prediction reasons %q do not name process.session-leader", p.Reasons)
	}
}

// TestDoctorHostSetsidTree is the remedy: the container init is its own
// session leader. Whether the whole dump is predicted to succeed also
// depends on this machine's criu and kernel; the tree itself must not be a
// reason for failure.
func TestDoctorHostSetsidTree(t *testing.T) {
	pid := startTree(t, "sleep 1000", true, 1)
	_, r := doctorJSON(t, "--target", "host", "--pid", strconv.Itoa(pid))
	if s := statusOf(t, r, "process.session-leader"); s != reports.Pass {
		t.Errorf("process.session-leader: %s, want pass", s)
	}
	p := r.Prediction
	if p == nil {
		t.Fatal("no prediction with --pid")
	}
	if tr := treeReasons(p); len(tr) > 0 || !p.TreeDumpable {
		t.Errorf("the setsid tree is predicted to fail for its own reasons: %q (tree_dumpable=%v)", tr, p.TreeDumpable)
	}
	machineOK := true
	for _, id := range []string{"criu.check", "criu.kernel-compat"} {
		if statusOf(t, r, id) != reports.Pass {
			machineOK = false
		}
	}
	if machineOK != p.DumpWillSucceed {
		t.Errorf("prediction %+v, but criu on this machine ok=%v", p, machineOK)
	}
	t.Logf("prediction: succeed=%v reasons=%q", p.DumpWillSucceed, p.Reasons)
}

// TestDoctorHostVDSO: on a 6.13+ kernel with a criu before 4.1 the host
// doctor must fail both criu check (explained) and the compatibility table.
func TestDoctorHostVDSO(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs criu check: run it as root")
	}
	code, r := doctorJSON(t, "--target", "host")
	if r.Prediction != nil {
		t.Errorf("prediction without --pid: %+v", r.Prediction)
	}
	if r.Target.CRIUVersion == "" {
		t.Fatal("no criu version in the target: install criu (apt-get install criu)")
	}
	vdso := false
	for _, f := range findingsByID(r, "criu.kernel-compat") {
		if f.Status == reports.Fail && strings.Contains(f.Summary, "vvar") {
			vdso = true
			if f.Fix == nil || !strings.Contains(f.Fix.Description, "CRIU 4.1 or later (e.g. kata-cr --criu-suite trixie)") {
				t.Errorf("criu.kernel-compat fix: %+v", f.Fix)
			}
		}
	}
	if !vdso {
		t.Skipf("kernel %s with criu %s: no vDSO break on this machine to detect", r.Target.KernelRelease, r.Target.CRIUVersion)
	}
	if code != ExitCheckFailed {
		t.Errorf("exit %d, want %d", code, ExitCheckFailed)
	}
	chk := findingsByID(r, "criu.check")
	if len(chk) != 1 || chk[0].Status != reports.Fail || !strings.Contains(chk[0].Summary, "vDSO") || chk[0].Fix == nil {
		t.Errorf("criu.check: %+v, want a fail naming vDSO with a fix", chk)
	}
}

// The no-root test runs the doctor in a re-executed test binary as nobody.

const doctorHelperEnv = "KATA_CR_DOCTOR_HELPER"

// doctorHelperSysfs asks the helper to mount a fresh sysfs on /sys first,
// so that /sys/class/net shows the helper's own network namespace.
const doctorHelperSysfs = "KATA_CR_DOCTOR_HELPER_SYSFS"

func TestDoctorHelper(t *testing.T) {
	if os.Getenv(doctorHelperEnv) == "" {
		return
	}
	if os.Getenv(doctorHelperSysfs) != "" {
		// The mount must not propagate to the host's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintln(os.Stderr, "make / private:", err)
			os.Exit(ExitToolError)
		}
		if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
			fmt.Fprintln(os.Stderr, "mount sysfs:", err)
			os.Exit(ExitToolError)
		}
	}
	os.Exit(Main(strings.Fields(os.Getenv(doctorHelperEnv)), os.Stdout, os.Stderr))
}

// TestDoctorHostFix runs doctor --fix in a fresh network namespace, where
// lo starts down: the fix brings it up and the checks run again.
func TestDoctorHostFix(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test creates namespaces: run it as root")
	}
	run := func(args string) *reports.Report {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestDoctorHelper$")
		cmd.Env = append(os.Environ(), doctorHelperEnv+"="+args, doctorHelperSysfs+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, runErr := cmd.Output()
		var r reports.Report
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("not a JSON report (%v): %v\n%s\nstderr: %s", runErr, err, out, stderr.String())
		}
		return &r
	}
	r := run("doctor --target host -o json")
	if s := statusOf(t, r, "system.loopback"); s != reports.Fail {
		t.Fatalf("system.loopback in a fresh network namespace: %s, want fail", s)
	}
	planned := false
	for _, a := range r.Actions {
		if a.Fixer == checks.FixerIDLoopbackUp && !a.Applied {
			planned = true
		}
	}
	if !planned {
		t.Errorf("without --fix, want the loopback-up fix listed as not applied: %+v", r.Actions)
	}
	r = run("doctor --target host --fix -o json")
	if s := statusOf(t, r, "system.loopback"); s != reports.Pass {
		t.Errorf("system.loopback after --fix: %s, want pass", s)
	}
	applied := false
	for _, a := range r.Actions {
		if a.Fixer == checks.FixerIDLoopbackUp && a.Applied && a.Error == "" {
			applied = true
		}
	}
	if !applied {
		t.Errorf("want the loopback-up fix applied: %+v", r.Actions)
	}
}

func TestDoctorHostNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test switches to the nobody user: run it as root")
	}
	// The test binary sits in a 0700 build directory, and t.TempDir's
	// parent is 0700 too: copy it where nobody can run it.
	dir, err := os.MkdirTemp("", "kata-cr-doctor-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "doctor.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestDoctorHelper$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), doctorHelperEnv+"=doctor --target host -o json", "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var r reports.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("not a JSON report (%v): %v\n%s\nstderr: %s", runErr, err, out, stderr.String())
	}
	if s := statusOf(t, &r, "system.privileges"); s != reports.Fail {
		t.Errorf("system.privileges as nobody: %s, want fail", s)
	}
	for _, id := range []string{"criu.check", "criu.check-extra", "criu.features"} {
		fs := findingsByID(&r, id)
		if len(fs) != 1 || fs[0].Status != reports.Skip || !strings.Contains(fs[0].Reason, "root") {
			t.Errorf("%s as nobody: %+v, want skip naming root", id, fs)
		}
	}
}

// BenchmarkDoctorTree50 is the host doctor with --pid on a real tree of 50
// processes; building the tree is outside the timing. Compare with
// BenchmarkCriuVersion, measured in the same run.
func BenchmarkDoctorTree50(b *testing.B) {
	pid := startTree(b, "for i in $(seq 49); do sleep 1000 & done; wait", true, 50)
	deps := &Deps{Stdout: io.Discard, Stderr: io.Discard, IsTerminal: func(io.Writer) bool { return false }, Getenv: os.Getenv}
	g := &globalOptions{Output: "json", Color: "never"}
	o := &doctorOptions{Target: targetHost, PIDArg: strconv.Itoa(pid), PID: pid, procRoot: "/proc", sysRoot: "/sys"}
	ctx := context.Background()
	// One run outside the timing: make bench runs a single iteration, which
	// should not pay for cold page caches.
	if err := runHostDoctor(ctx, deps, g, o); err != nil && !errors.Is(err, errCheckFailed) {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := runHostDoctor(ctx, deps, g, o); err != nil && !errors.Is(err, errCheckFailed) {
			b.Fatal(err)
		}
	}
}

// BenchmarkCriuVersion is the cost of starting criu once: the floor of any
// check that asks criu.
func BenchmarkCriuVersion(b *testing.B) {
	path, err := exec.LookPath("criu")
	if err != nil {
		path = "/usr/sbin/criu"
	}
	for b.Loop() {
		if out, err := exec.Command(path, "--version").CombinedOutput(); err != nil {
			b.Fatalf("criu --version: %v: %s (apt-get install criu)", err, out)
		}
	}
}
