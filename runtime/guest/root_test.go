package guest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	mustWrite := func(p string, data string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(filepath.Join(src, "bin/kata-cr-agent"), "agent", 0o755)
	mustWrite(filepath.Join(src, "etc/kata-cr/image.json"), "{}", 0o644)
	mustWrite(filepath.Join(src, "proc/ignored"), "x", 0o644)
	if err := os.Symlink("kata-cr-agent", filepath.Join(src, "bin/uinit")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "tmp"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "tmp"), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(src, dst, map[string]bool{filepath.Join(src, "proc"): true}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dst, "bin/kata-cr-agent"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("agent: %v %v", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "etc/kata-cr/image.json")); err != nil || string(b) != "{}" {
		t.Errorf("manifest: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "bin/uinit")); err != nil || l != "kata-cr-agent" {
		t.Errorf("uinit link: %q %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("tmp: %v %v, want sticky", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "proc")); !os.IsNotExist(err) {
		t.Errorf("skipped /proc was copied: %v", err)
	}
}
