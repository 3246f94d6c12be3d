package cmd

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

// kataFragments is Kata's fragment tree, kept in the kernel package's
// testdata.
const kataFragments = "../kernel/testdata/kata-fragments"

// copyFragments copies Kata's tree into a temporary directory.
func copyFragments(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(kataFragments, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(kataFragments, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func kernelReport(t *testing.T, stdout string) *reports.Report {
	t.Helper()
	var r reports.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("parse JSON report: %v\n%s", err, stdout)
	}
	return &r
}

// failedRequired lists the options of the blocking findings.
func failedRequired(r *reports.Report) []string {
	var out []string
	for _, f := range r.Findings {
		if f.Blocking() {
			out = append(out, strings.TrimPrefix(f.ID, "kernel."))
		}
	}
	return out
}

func TestKernelCheckFlags(t *testing.T) {
	host := kernel.KataArch(runtime.GOARCH)
	tests := []struct {
		name     string
		args     []string
		want     kernelCheckOptions
		wantExit int
	}{
		{"defaults", nil, kernelCheckOptions{Arch: host}, ExitOK},
		{"all flags", []string{"--arch", "aarch64", "--emit-fragment", "f.conf", "a", "b"},
			kernelCheckOptions{Sources: []string{"a", "b"}, Arch: "arm64", EmitFragment: "f.conf"}, ExitOK},
		{"go arch name", []string{"--arch=amd64", "dir"}, kernelCheckOptions{Sources: []string{"dir"}, Arch: "x86_64"}, ExitOK},
		{"unknown arch", []string{"--arch", "mips", "dir"}, kernelCheckOptions{}, ExitUsage},
		{"unknown flag", []string{"--bogus"}, kernelCheckOptions{}, ExitUsage},
		{"emit without file", []string{"--emit-fragment"}, kernelCheckOptions{}, ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *kernelCheckOptions
			deps := &Deps{Stdout: io.Discard, Stderr: io.Discard, IsTerminal: func(io.Writer) bool { return false }, Getenv: func(string) string { return "" }}
			// The captured command replaces kernel check under the real
			// root, so that flag errors pass through the root's flag error
			// function as they do in kata-cr.
			root := newRootCmd(deps)
			k, _, err := root.Find([]string{"kernel"})
			if err != nil {
				t.Fatal(err)
			}
			for _, sc := range k.Commands() {
				if sc.Name() == "check" {
					k.RemoveCommand(sc)
				}
			}
			k.AddCommand(newKernelCheckCmdWith(deps, &globalOptions{}, func(_ context.Context, o *kernelCheckOptions) error {
				got = o
				return nil
			}))
			root.SetArgs(append([]string{"kernel", "check"}, tt.args...))
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			var stderr bytes.Buffer
			if code := exitCode(root.Execute(), &stderr); code != tt.wantExit {
				t.Fatalf("exit %d, want %d (%s)", code, tt.wantExit, stderr.String())
			}
			if tt.wantExit != ExitOK {
				if got != nil {
					t.Errorf("run was called with %+v", got)
				}
				return
			}
			if got == nil || !slices.Equal(got.Sources, tt.want.Sources) || got.Arch != tt.want.Arch || got.EmitFragment != tt.want.EmitFragment {
				t.Errorf("options %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestKernelCheckKata is the first done-when check: Kata's tree
// fails for CHECKPOINT_RESTORE and the sock-diag options. The JSON report
// is kept in a golden file.
func TestKernelCheckKata(t *testing.T) {
	code, stdout, stderr := runMain("kernel", "check", "--arch", "x86_64", "-o", "json", kataFragments)
	if code != ExitCheckFailed {
		t.Fatalf("exit %d, want %d; stderr %q", code, ExitCheckFailed, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr %q", stderr)
	}
	r := kernelReport(t, stdout)
	want := []string{"CHECKPOINT_RESTORE", "UNIX_DIAG", "INET_DIAG", "INET_TCP_DIAG", "INET_UDP_DIAG", "NETLINK_DIAG"}
	if got := failedRequired(r); !slices.Equal(got, want) {
		t.Errorf("failed required options %v, want %v", got, want)
	}
	if r.Target.Kind != "file" || r.Target.Arch != "x86_64" || len(r.Target.Sources) != 1 {
		t.Errorf("target %+v", r.Target)
	}
	for _, f := range r.Findings {
		if f.Status != reports.Skip && (len(f.Evidence) == 0 || f.Evidence[0] != "source: "+kataFragments) {
			t.Errorf("%s: evidence %q does not name the source", f.ID, f.Evidence)
		}
	}
	checkGolden(t, "kernel-check-kata.json", stdout)

	// The text form is what people read: keep it too.
	_, text, _ := runMain("kernel", "check", "--arch", "x86_64", "--color", "never", kataFragments)
	checkGolden(t, "kernel-check-kata.txt", text)
}

// TestKernelCheckEmitFragment is the second done-when check: the
// emitted fragment, added to x86_64/ of a copy of the tree, leaves no
// required option missing.
func TestKernelCheckEmitFragment(t *testing.T) {
	tree := copyFragments(t)
	frag := filepath.Join(t.TempDir(), "criu.conf")
	code, _, stderr := runMain("kernel", "check", "--arch", "x86_64", "--emit-fragment", frag, tree)
	if code != ExitCheckFailed {
		t.Fatalf("exit %d, want %d; stderr %q", code, ExitCheckFailed, stderr)
	}
	if !strings.HasPrefix(stderr, "kata-cr: wrote "+frag+" adding CHECKPOINT_RESTORE, ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line saying what was written", stderr)
	}
	fi, err := os.Stat(frag)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("fragment mode %v, want 0644", fi.Mode().Perm())
	}
	data, err := os.ReadFile(frag)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "x86_64", "criu.conf"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runMain("kernel", "check", "--arch", "x86_64", "-o", "json", tree)
	if code != ExitOK {
		t.Fatalf("after adding the fragment: exit %d, want 0; stderr %q\n%s", code, stderr, stdout)
	}
	r := kernelReport(t, stdout)
	if got := failedRequired(r); len(got) != 0 {
		t.Errorf("still failing: %v", got)
	}
	for _, f := range r.Findings {
		if f.Level == reports.Recommended && f.Status != reports.Pass {
			t.Errorf("recommended %s still %s", f.ID, f.Status)
		}
	}

	// Emitting again from the fixed tree says nothing is missing.
	again := filepath.Join(t.TempDir(), "again.conf")
	if code, _, stderr := runMain("kernel", "check", "--arch", "x86_64", "--emit-fragment", again, tree); code != ExitOK ||
		!strings.Contains(stderr, "nothing is missing") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestKernelCheckEmitFragmentSeveralSources: the fragment must add what any
// source misses, even when the first source has it. It used to leave out
// every option the first source had, so a good config given first made
// the fragment for Kata's tree add nothing.
func TestKernelCheckEmitFragmentSeveralSources(t *testing.T) {
	dir := t.TempDir()
	good := "# Linux/x86 6.1.0 Kernel Configuration\nCONFIG_X86_64=y\n"
	for _, r := range kernel.Requirements("x86_64") {
		for _, o := range r.EnableOptions() {
			good += fmt.Sprintf("CONFIG_%s=y\n", o)
		}
	}
	goodPath := filepath.Join(dir, "good.config")
	if err := os.WriteFile(goodPath, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	frag := filepath.Join(dir, "criu.conf")
	code, _, stderr := runMain("kernel", "check", "--arch", "x86_64", "--emit-fragment", frag, goodPath, kataFragments)
	if code != ExitCheckFailed {
		t.Fatalf("exit %d, want %d; stderr %q", code, ExitCheckFailed, stderr)
	}
	data, err := os.ReadFile(frag)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"CHECKPOINT_RESTORE", "UNIX_DIAG", "INET_DIAG", "NETLINK_DIAG"} {
		if !strings.Contains(string(data), "\nCONFIG_"+o+"=y\n") {
			t.Errorf("fragment does not set CONFIG_%s=y:\n%s", o, data)
		}
	}
	if !strings.Contains(stderr, "into the x86_64/ directory") {
		t.Errorf("stderr %q, want the x86_64/ directory named", stderr)
	}
}

func TestKernelCheckSources(t *testing.T) {
	dir := t.TempDir()
	good := "# Linux/x86 6.1.0 Kernel Configuration\nCONFIG_X86_64=y\n"
	for _, r := range kernel.Requirements("x86_64") {
		good += fmt.Sprintf("CONFIG_%s=y\n", r.Option)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(good))
	zw.Close()
	plain := write("config", []byte(good))
	zipped := write("config.gz", gz.Bytes())
	noCR := write("config-nocr", []byte(strings.Replace(good, "CONFIG_CHECKPOINT_RESTORE=y\n", "", 1)))
	odd := write("config-odd", []byte(good+"this line is junk\n"))

	tests := []struct {
		name     string
		args     []string
		wantExit int
		failed   []string
		findings int
	}{
		{"plain config", []string{plain}, ExitOK, nil, 1},
		{"gzip'd config", []string{zipped}, ExitOK, nil, 1},
		// The negative control: the same config without CHECKPOINT_RESTORE.
		{"config without CHECKPOINT_RESTORE", []string{noCR}, ExitCheckFailed, []string{"CHECKPOINT_RESTORE"}, 1},
		{"two sources, one bad", []string{plain, noCR}, ExitCheckFailed, []string{"CHECKPOINT_RESTORE"}, 2},
		{"garbage lines are a warning", []string{odd}, ExitOK, nil, 1},
	}
	perSource := len(kernel.Requirements("")) + 1
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(append([]string{"kernel", "check", "-o", "json"}, tt.args...)...)
			if code != tt.wantExit {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.wantExit, stderr)
			}
			r := kernelReport(t, stdout)
			if got := failedRequired(r); !slices.Equal(got, tt.failed) {
				t.Errorf("failed %v, want %v", got, tt.failed)
			}
			if len(r.Findings) != tt.findings*perSource {
				t.Errorf("%d findings, want %d per source", len(r.Findings), perSource)
			}
			if len(r.Target.Sources) != len(tt.args) {
				t.Errorf("sources %v", r.Target.Sources)
			}
		})
	}
	_, stdout, _ := runMain("kernel", "check", "-o", "json", odd)
	for _, f := range kernelReport(t, stdout).Findings {
		if f.ID == "kernel.config" && (f.Status != reports.Warn || !strings.Contains(strings.Join(f.Evidence, "\n"), "this line is junk")) {
			t.Errorf("kernel.config = %s %q, want a warning quoting the bad line", f.Status, f.Evidence)
		}
	}
}

// TestKernelCheckBadInput checks that each bad source gets one clear line
// naming it and the documented exit code; the lines are kept in a golden
// file.
func TestKernelCheckBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	junk := make([]byte, 2048)
	for i := range junk {
		junk[i] = byte(i*7 + i/3)
	}
	nofrag := filepath.Join(dir, "notatree")
	if err := os.Mkdir(nofrag, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantExit int
	}{
		{"missing file", []string{filepath.Join(dir, "missing")}, ExitToolError},
		{"empty file", []string{write("empty", nil)}, ExitToolError},
		{"binary junk", []string{write("junk.bin", junk)}, ExitToolError},
		{"prose", []string{write("letter.txt", []byte("Dear reader,\nhello.\n"))}, ExitToolError},
		{"corrupt gzip", []string{write("config.gz", []byte("\x1f\x8b\x08\x00junk"))}, ExitToolError},
		{"directory without fragments", []string{nofrag}, ExitToolError},
		{"tree without the arch", []string{"--arch", "riscv", kataFragments}, ExitOK},
		{"unknown arch", []string{"--arch", "mips", kataFragments}, ExitUsage},
		{"bad output format", []string{"-o", "yaml", kataFragments}, ExitUsage},
		{"unwritable fragment", []string{"--emit-fragment", filepath.Join(dir, "missing", "f.conf"), kataFragments}, ExitToolError},
	}
	var golden strings.Builder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"kernel", "check"}, tt.args...)
			code, stdout, stderr := runMain(args...)
			if tt.name == "tree without the arch" {
				// Kata's tree has riscv fragments; this one is fine.
				if code == ExitToolError {
					t.Errorf("exit %d: %s", code, stderr)
				}
				return
			}
			if code != tt.wantExit {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantExit, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "goroutine") {
				t.Errorf("want one line on stderr, got %q", stderr)
			}
			if stdout != "" {
				t.Errorf("want no report on bad input, got %q", stdout)
			}
			line := strings.ReplaceAll(stderr, dir, "DIR")
			fmt.Fprintf(&golden, "$ kata-cr %s\nexit %d: %s", strings.ReplaceAll(strings.Join(args, " "), dir, "DIR"), code, line)
		})
	}
	checkGolden(t, "kernel-check-bad-input.golden", golden.String())
}

// TestKernelCheckRunning checks the running kernel: on this machine for
// real, and with a procfs that has no config, which must give one line.
func TestKernelCheckRunning(t *testing.T) {
	var stdout, stderr bytes.Buffer
	deps := &Deps{Stdout: &stdout, Stderr: &stderr, IsTerminal: func(io.Writer) bool { return false }, Getenv: func(string) string { return "" }}
	g := &globalOptions{Output: "json", Color: "never"}

	empty := t.TempDir()
	err := runKernelCheck(context.Background(), deps, g, &kernelCheckOptions{procRoot: empty, sysRoot: empty})
	var msg bytes.Buffer
	if code := exitCode(err, &msg); code != ExitToolError || strings.Count(msg.String(), "\n") != 1 ||
		!strings.Contains(msg.String(), "no SOURCE given and no config found for the running kernel") {
		t.Errorf("exit %d, %q", code, msg.String())
	}

	// Ask with the release, as the command does: without it Running tries
	// only /proc/config.gz and a kernel whose config is in /boot would be
	// skipped here although the command reads it.
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	if _, err := kernel.Running("/proc", unix.ByteSliceToString(u.Release[:])); err != nil {
		t.Skipf("this machine's kernel config cannot be read (%v); the test above covered that case", err)
	}
	stdout.Reset()
	msg.Reset()
	err = runKernelCheck(context.Background(), deps, g, &kernelCheckOptions{procRoot: "/proc", sysRoot: "/sys"})
	if code := exitCode(err, &msg); code != ExitOK && code != ExitCheckFailed {
		t.Fatalf("exit %d: %s", code, msg.String())
	}
	r := kernelReport(t, stdout.String())
	if r.Target.Kind != "host" || r.Target.KernelRelease == "" || len(r.Target.Sources) != 1 {
		t.Errorf("target %+v", r.Target)
	}
}
