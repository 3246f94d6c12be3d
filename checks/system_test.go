package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

// sysTree writes files (path relative to a fresh root: "proc/self/status")
// and returns an Env whose proc and sys roots are in that tree. A content
// of "<dir>" makes a directory.
func sysTree(t *testing.T, files map[string]string) (*Env, string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"proc/self", "sys/class/net", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if c == "<dir>" {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(strings.ReplaceAll(c, "ROOT", root)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &Env{ProcRoot: filepath.Join(root, "proc"), SysRoot: filepath.Join(root, "sys"), Root: os.Geteuid() == 0}, root
}

func runSys(t *testing.T, id string, env *Env) reports.Finding {
	t.Helper()
	for _, c := range SystemChecks() {
		if c.ID == id {
			fs := Runner{Checks: []Check{c}}.Run(context.Background(), env)
			if len(fs) != 1 {
				t.Fatalf("%s: %d findings, want 1: %+v", id, len(fs), fs)
			}
			return fs[0]
		}
	}
	t.Fatalf("no check %s", id)
	return reports.Finding{}
}

func status(uid, capEff string) string {
	return fmt.Sprintf("Name:\tkata-cr\nUid:\t%s\t%s\t%s\t%s\nCapInh:\t0000000000000000\nCapEff:\t%s\n", uid, uid, uid, uid, capEff)
}

func TestPrivileges(t *testing.T) {
	tests := []struct {
		name, status string
		want         reports.Status
		wantText     string
	}{
		{"root all caps", status("0", "000001ffffffffff"), reports.Pass, "CAP_SYS_ADMIN"},
		// This machine's CapEff: everything but CAP_SYS_RESOURCE.
		{"root without sys_resource", status("0", "000001fffeffffff"), reports.Pass, "missing: CAP_SYS_RESOURCE"},
		{"user with checkpoint_restore", status("1000", fmt.Sprintf("%016x", uint64(1)<<40|1<<19)), reports.Warn, "--unprivileged"},
		{"user without caps", status("1000", "0000000000000000"), reports.Fail, "not root"},
		{"root in a restricted container", status("0", "00000000a80425fb"), reports.Fail, "without CAP_SYS_ADMIN"},
		{"garbage", "Name: x\n", reports.Error, "no Uid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := sysTree(t, map[string]string{"proc/self/status": tt.status})
			f := runSys(t, "system.privileges", env)
			if f.Status != tt.want {
				t.Fatalf("status %s, want %s: %+v", f.Status, tt.want, f)
			}
			if !strings.Contains(findingText(f), tt.wantText) {
				t.Errorf("finding does not mention %q: %+v", tt.wantText, f)
			}
		})
	}
	env, _ := sysTree(t, nil)
	if f := runSys(t, "system.privileges", env); f.Status != reports.Error || f.Reason == "" {
		t.Errorf("missing status file: %+v, want error with reason", f)
	}
}

func findingText(f reports.Finding) string {
	s := f.Summary + "\n" + f.Reason + "\n" + strings.Join(f.Evidence, "\n")
	if f.Fix != nil {
		s += "\n" + f.Fix.Description + " " + f.Fix.CRIU.DumpLine()
	}
	return s
}

func TestLoopback(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  reports.Status
		fixer FixerID
	}{
		{"up", map[string]string{"sys/class/net/lo/flags": "0x9\n", "sys/class/net/lo/operstate": "unknown\n"}, reports.Pass, ""},
		{"down", map[string]string{"sys/class/net/lo/flags": "0x8\n", "sys/class/net/lo/operstate": "down\n"}, reports.Fail, FixerIDLoopbackUp},
		{"no lo", map[string]string{"sys/class/net/eth0/flags": "0x1003\n"}, reports.Fail, ""},
		{"garbage flags", map[string]string{"sys/class/net/lo/flags": "up\n"}, reports.Error, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := sysTree(t, tt.files)
			f := runSys(t, "system.loopback", env)
			if f.Status != tt.want {
				t.Fatalf("status %s, want %s: %+v", f.Status, tt.want, f)
			}
			if tt.fixer != "" && (f.Fix == nil || !f.Fix.AutoFixable || f.Fix.Fixer != tt.fixer) {
				t.Errorf("fix %+v, want auto-fixable by %s", f.Fix, tt.fixer)
			}
		})
	}
	env := &Env{ProcRoot: "/proc", SysRoot: filepath.Join(t.TempDir(), "nosys")}
	if f := runSys(t, "system.loopback", env); f.Status != reports.Skip || f.Reason == "" {
		t.Errorf("no sysfs: %+v, want skip with reason", f)
	}
}

func TestDevpts(t *testing.T) {
	const root = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
	const pts = "26 24 0:24 / ROOT/dev/pts rw,nosuid - devpts devpts rw,mode=620,ptmxmode=666\n"
	tests := []struct {
		name  string
		files map[string]string
		want  reports.Status
	}{
		{"mounted and ptmx", map[string]string{"proc/self/mountinfo": root + pts, "dev/ptmx": ""}, reports.Pass},
		{"mounted, no ptmx", map[string]string{"proc/self/mountinfo": root + pts}, reports.Fail},
		{"not mounted, no ptmx", map[string]string{"proc/self/mountinfo": root}, reports.Fail},
		{"ptmx but no devpts", map[string]string{"proc/self/mountinfo": root, "dev/ptmx": ""}, reports.Warn},
		{"devpts elsewhere", map[string]string{"proc/self/mountinfo": root + strings.Replace(pts, "/dev/pts", "/mnt/pts", 1)}, reports.Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := sysTree(t, tt.files)
			f := runSys(t, "system.devpts", env)
			if f.Status != tt.want {
				t.Fatalf("status %s, want %s: %+v", f.Status, tt.want, f)
			}
			if f.Status != reports.Pass && (f.Fix == nil || f.Fix.Fixer != FixerIDMountDevpts) {
				t.Errorf("fix %+v, want the %s fixer", f.Fix, FixerIDMountDevpts)
			}
		})
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/a\040b`:  "/mnt/a b",
		`/plain`:       "/plain",
		`/tab\011x`:    "/tab\tx",
		`/trailing\04`: `/trailing\04`,
		`/back\134x`:   `/back\x`,
	} {
		if got := procUnescape(in); got != want {
			t.Errorf("procUnescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNsLastPidAndPidMax(t *testing.T) {
	env, _ := sysTree(t, map[string]string{"proc/sys/kernel/ns_last_pid": "4242\n", "proc/sys/kernel/pid_max": "32768\n"})
	want := reports.Pass
	if !env.Root {
		want = reports.Skip
	}
	if f := runSys(t, "system.ns-last-pid", env); f.Status != want {
		t.Errorf("ns_last_pid present: %+v, want %s", f, want)
	}
	if f := runSys(t, "system.pid-max", env); f.Status != reports.Pass || !strings.Contains(f.Summary, "32768") {
		t.Errorf("pid_max: %+v", f)
	}
	env, _ = sysTree(t, map[string]string{"proc/sys/kernel/pid_max": "lots\n"})
	if f := runSys(t, "system.ns-last-pid", env); f.Status != reports.Fail || !strings.Contains(f.Summary, "CHECKPOINT_RESTORE") {
		t.Errorf("ns_last_pid missing: %+v, want a fail naming CONFIG_CHECKPOINT_RESTORE", f)
	}
	if f := runSys(t, "system.pid-max", env); f.Status != reports.Error {
		t.Errorf("pid_max garbage: %+v, want error", f)
	}
}

// sysPathWith returns a PATH holding only the named real binaries.
func sysPathWith(t *testing.T, links map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, target := range links {
		if _, err := os.Stat(target); err != nil {
			t.Fatalf("this test uses %s: install it (%v)", target, err)
		}
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestNetworkLock(t *testing.T) {
	sh, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(v string) *kernel.Config {
		c := &kernel.Config{Values: map[string]string{}, Source: "test config"}
		if v != "" {
			c.Values["NF_TABLES"] = v
		}
		return c
	}
	tests := []struct {
		name     string
		ipt      bool
		loaded   bool
		config   *kernel.Config
		want     reports.Status
		wantOpts bool
	}{
		{"iptables", true, false, nil, reports.Pass, false},
		{"nf_tables built in", false, false, cfg("y"), reports.Warn, false},
		{"nf_tables loaded", false, true, nil, reports.Warn, false},
		{"nf_tables module not loaded", false, false, cfg("m"), reports.Fail, false},
		{"nothing", false, false, cfg(""), reports.Fail, false},
		{"nothing known", false, false, nil, reports.Fail, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links := map[string]string{}
			if tt.ipt {
				// Only its presence on PATH matters: criu execs it by name.
				links["iptables-restore"] = sh
			}
			t.Setenv("PATH", sysPathWith(t, links))
			files := map[string]string{}
			if tt.loaded {
				files["sys/module/nf_tables"] = "<dir>"
			}
			env, _ := sysTree(t, files)
			env.Config = tt.config
			f := runSys(t, "system.network-lock", env)
			if f.Status != tt.want {
				t.Fatalf("status %s, want %s: %+v", f.Status, tt.want, f)
			}
			if got := f.Fix != nil && !f.Fix.CRIU.IsZero(); got != tt.wantOpts {
				t.Errorf("fix %+v: CRIU options %v, want %v", f.Fix, got, tt.wantOpts)
			}
		})
	}
}

func TestTar(t *testing.T) {
	gnu, err := exec.LookPath("tar")
	if err != nil {
		t.Fatal("this test needs GNU tar: apt-get install tar")
	}
	tests := []struct {
		name  string
		links map[string]string
		want  reports.Status
	}{
		{"gnu", map[string]string{"tar": gnu}, reports.Pass},
		{"busybox", map[string]string{"tar": "/usr/bin/busybox"}, reports.Warn},
		{"none", nil, reports.Warn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", sysPathWith(t, tt.links))
			env, _ := sysTree(t, nil)
			if f := runSys(t, "system.tar", env); f.Status != tt.want {
				t.Errorf("status %s, want %s: %+v", f.Status, tt.want, f)
			}
		})
	}
}

// The fixer tests run in a re-executed test binary inside fresh network and
// mount namespaces, so the host's lo and /dev stay as they are. The helper
// prints one JSON object per step on stdout.

const sysHelperEnv = "KATA_CR_SYSTEM_FIXER_HELPER"

type sysHelperStep struct {
	Step    string          `json:"step"`
	Finding reports.Finding `json:"finding,omitempty"`
	Action  *reports.Action `json:"action,omitempty"`
}

func TestSystemFixerHelper(t *testing.T) {
	mode := os.Getenv(sysHelperEnv)
	if mode == "" {
		return
	}
	// Exit here rather than return: the test framework must not print its
	// own output into the JSON.
	if err := sysHelperMain(mode); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func sysHelperMain(mode string) error {
	enc := json.NewEncoder(os.Stdout)
	// Mounts made here must not propagate back to the host's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	root, err := os.MkdirTemp("", "kata-cr-fixer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	env := &Env{Root: true}
	var check Check
	var fixer Fixer
	switch mode {
	case "loopback":
		// A sysfs mounted now shows this process's new network namespace.
		env.ProcRoot, env.SysRoot = "/proc", filepath.Join(root, "sys")
		if err := os.Mkdir(env.SysRoot, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("sysfs", env.SysRoot, "sysfs", 0, ""); err != nil {
			return fmt.Errorf("mount sysfs: %w", err)
		}
		defer unix.Unmount(env.SysRoot, unix.MNT_DETACH)
		fixer = LoopbackFixer()
	case "devpts":
		// A root of our own: proc shows this mount namespace, and dev is
		// an empty tmpfs without devpts or ptmx.
		env.ProcRoot, env.SysRoot = filepath.Join(root, "proc"), "/sys"
		for _, m := range []struct{ fstype, dir string }{{"proc", "proc"}, {"tmpfs", "dev"}} {
			dir := filepath.Join(root, m.dir)
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			if err := unix.Mount(m.fstype, dir, m.fstype, 0, ""); err != nil {
				return fmt.Errorf("mount %s: %w", m.fstype, err)
			}
			defer unix.Unmount(dir, unix.MNT_DETACH)
		}
		fixer = DevptsFixer()
	default:
		return fmt.Errorf("unknown helper mode %q", mode)
	}
	for _, c := range SystemChecks() {
		if c.ID == "system."+mode {
			check = c
		}
	}
	ctx := context.Background()
	before := Runner{Checks: []Check{check}}.Run(ctx, env)
	_ = enc.Encode(sysHelperStep{Step: "before", Finding: before[0]})
	acts := ApplyFixes(ctx, env, before, []Fixer{fixer}, false)
	for i := range acts {
		_ = enc.Encode(sysHelperStep{Step: "fix", Action: &acts[i]})
	}
	after := Runner{Checks: []Check{check}}.Run(ctx, env)
	return enc.Encode(sysHelperStep{Step: "after", Finding: after[0]})
}

func runSysHelper(t *testing.T, mode string) []sysHelperStep {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the fixer tests create namespaces and mount: run them as root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSystemFixerHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), sysHelperEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s: %v\nstderr: %s\nstdout: %s", mode, err, stderr.String(), out)
	}
	var steps []sysHelperStep
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var s sysHelperStep
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("helper %s output: %v\n%s", mode, err, out)
		}
		steps = append(steps, s)
	}
	return steps
}

func TestFixers(t *testing.T) {
	for _, mode := range []string{"loopback", "devpts"} {
		t.Run(mode, func(t *testing.T) {
			steps := runSysHelper(t, mode)
			if len(steps) != 3 {
				t.Fatalf("want before, fix, after; got %+v", steps)
			}
			before, fix, after := steps[0], steps[1], steps[2]
			if before.Finding.Status != reports.Fail {
				t.Errorf("before the fix: %+v, want fail (a fresh namespace is broken)", before.Finding)
			}
			if fix.Action == nil || !fix.Action.Applied || fix.Action.Error != "" {
				t.Fatalf("fix: %+v, want applied", fix.Action)
			}
			t.Logf("fixer: %s", fix.Action.Summary)
			if after.Finding.Status != reports.Pass {
				t.Errorf("after the fix: %+v, want pass", after.Finding)
			}
		})
	}
}
