package cmd

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/kernel/kbuild/kbuildtest"
)

// TestKernelBuildBadInput: each bad input of kata-cr kernel build gets one
// line naming it, the documented exit code, and leaves no entry (nor a
// work directory) in the cache. The builds run on a stand-in kernel tree:
// no compiler, no guest.
func TestKernelBuildBadInput(t *testing.T) {
	frags := kbuildtest.Fragments(t)
	kernelTar := kbuildtest.Tarball(t, kbuildtest.Tree{})
	dir := t.TempDir()
	notTree := filepath.Join(dir, "not-fragments")
	if err := os.MkdirAll(filepath.Join(notTree, "x86_64"), 0o755); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk")
	if err := os.MkdirAll(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, "README"), []byte("not a kernel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notKernel := filepath.Join(dir, "not-a-kernel.tar.gz")
	if out, err := exec.Command("tar", "-czf", notKernel, "-C", dir, "junk").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	notTar := filepath.Join(dir, "not-a-tarball.tar.xz")
	if err := os.WriteFile(notTar, []byte("plain text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bigImage := kbuildtest.Tarball(t, kbuildtest.Tree{ImageKB: 8192})
	unlanded := kbuildtest.Tarball(t, kbuildtest.Tree{Drop: []string{"CONFIG_OLD_OPTION"}})

	tests := []struct {
		name  string
		args  []string
		code  int
		names string // what the line must name
		// smallDisk mounts a 2 MiB tmpfs as the cache.
		smallDisk bool
	}{
		{"fragments: a directory that is not a fragment tree", []string{"--fragments", notTree, "--source", kernelTar}, ExitToolError, "without a common/ fragment directory", false},
		{"fragments: missing", []string{"--fragments", filepath.Join(dir, "nope"), "--source", kernelTar}, ExitToolError, filepath.Join(dir, "nope"), false},
		{"source: a tarball that is not a kernel", []string{"--fragments", frags, "--source", notKernel}, ExitToolError, notKernel + " is not a kernel source tarball", false},
		{"source: a file that is not a tarball", []string{"--fragments", frags, "--source", notTar}, ExitToolError, notTar + " is not a kernel source tarball", false},
		{"source: a series not fetched", []string{"--fragments", frags, "--source", "9.9"}, ExitToolError, "scripts/fetch-kernel.sh source 9.9", false},
		{"arch: one the tree has no fragments for", []string{"--fragments", frags, "--source", kernelTar, "--arch", "riscv"}, ExitToolError, "riscv/*.conf", false},
		{"arch: one Kata does not know", []string{"--fragments", frags, "--source", kernelTar, "--arch", "sparc"}, ExitUsage, `--arch "sparc"`, false},
		{"options that did not land", []string{"--fragments", frags, "--source", unlanded}, ExitCheckFailed, "CONFIG_OLD_OPTION=y (got n)", false},
		{"a full disk during the build", []string{"--fragments", frags, "--source", bigImage}, ExitToolError, "no space left on device", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			if tt.smallDisk {
				if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", cache).CombinedOutput(); err != nil {
					t.Skipf("a full disk needs a small tmpfs, and mount failed (not root?): %v: %s", err, out)
				}
				t.Cleanup(func() { _ = exec.Command("umount", cache).Run() })
			}
			t.Setenv("KATA_CR_CACHE", cache)
			code, stdout, stderr := runKataCR(append([]string{"kernel", "build", "--jobs", "1"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.names) {
				t.Errorf("stderr %q does not name %q", stderr, tt.names)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 || stdout != "" {
				t.Errorf("want one line on stderr, got %q (stdout %q)", stderr, stdout)
			}
			ents, _ := os.ReadDir(kernel.BuiltDir(cache))
			for _, e := range ents {
				if e.Name() != "trees" {
					t.Errorf("the failed build left %s in the cache", e.Name())
				}
			}
			trees, _ := filepath.Glob(filepath.Join(kernel.BuiltDir(cache), "trees", "*", ".extract-*"))
			if len(trees) > 0 {
				t.Errorf("the failed build left %v", trees)
			}
		})
	}
}

// TestKernelBuildReport: the text and JSON twins of a build on the
// stand-in tree, the cache hit, and the Kata drop-in (--print and
// --kata-config-dir).
func TestKernelBuildReport(t *testing.T) {
	t.Setenv("KATA_CR_CACHE", t.TempDir())
	frags := kbuildtest.Fragments(t)
	src := kbuildtest.Tarball(t, kbuildtest.Tree{})
	args := []string{"kernel", "build", "--fragments", frags, "--source", src, "--jobs", "1"}

	code, stdout, stderr := runKataCR(append(args, "-o", "json")...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r struct {
		Name     string `json:"name"`
		Kernel   string `json:"kernel"`
		Variant  string `json:"variant"`
		CacheHit bool   `json:"cache_hit"`
		Source   struct {
			Version string `json:"version"`
		} `json:"source"`
		VersionNote string `json:"version_note"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("no JSON: %v\n%s", err, stdout)
	}
	if r.Variant != "criu" || r.CacheHit || r.Source.Version != "6.99.1" || r.Name == "" {
		t.Errorf("first build: %+v", r)
	}
	if !strings.Contains(r.VersionNote, "6.99.1") {
		t.Errorf("version note %q does not name the source version", r.VersionNote)
	}

	code, stdout, _ = runKataCR(args...)
	if code != ExitOK || !strings.Contains(stdout, "taken from the cache") || !strings.Contains(stdout, "name:      "+r.Name) {
		t.Errorf("cache hit: exit %d, text:\n%s", code, stdout)
	}

	code, stdout, _ = runKataCR(append(args, "--print")...)
	if code != ExitOK || !strings.Contains(stdout, "[hypervisor.qemu]") || !strings.Contains(stdout, `kernel = "`+r.Kernel+`"`) {
		t.Errorf("--print: exit %d:\n%s", code, stdout)
	}
	kataDir := t.TempDir()
	code, _, stderr = runKataCR(append(args, "--kata-config-dir", kataDir)...)
	data, err := os.ReadFile(filepath.Join(kataDir, "config.d", "50-kata-cr-kernel.toml"))
	if code != ExitOK || err != nil {
		t.Fatalf("--kata-config-dir: exit %d, %v: %s", code, err, stderr)
	}
	h, err := kernel.ReadKataConfig(filepath.Join(kataDir, "config.d", "50-kata-cr-kernel.toml"))
	if err != nil || h.Kernel != r.Kernel {
		t.Errorf("the drop-in names kernel %v (%v), want %s:\n%s", h, err, r.Kernel, data)
	}
}
