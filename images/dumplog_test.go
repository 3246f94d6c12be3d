package images

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteDumpLog(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "ckpt")
	p, err := WriteDumpLog(dir+"/", []byte("(00.1) Error (criu/x.c:1): it failed\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(parent, "ckpt.dump.log") {
		t.Errorf("path %s, want beside %s", p, dir)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", fi.Mode(), err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the images directory was made: %v", err)
	}
	// A second failure replaces the log.
	if _, err := WriteDumpLog(dir, []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(p); string(data) != "second\n" {
		t.Errorf("log %q, want the second", data)
	}
	// A symlink in the way is refused, not followed.
	victim := filepath.Join(parent, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(parent, "other")
	if err := os.Symlink(victim, DumpLogPath(other)); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteDumpLog(other, []byte("x")); err == nil {
		t.Error("wrote through a symlink")
	}
	if data, _ := os.ReadFile(victim); string(data) != "keep" {
		t.Errorf("the symlink's target was changed: %q", data)
	}
}
