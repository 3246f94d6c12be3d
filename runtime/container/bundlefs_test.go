package container

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestOverlayRootfsDiff: on an overlay root (a bundle's), the diff comes
// from the upper layer: new and changed files, and whiteouts as
// deletions; the lower directory (the user's bundle) is never written,
// and ClearRootfs unmounts and drops the upper layer.
func TestOverlayRootfsDiff(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	lower := filepath.Join(base, "lower")
	for p, content := range map[string]string{"etc/os-release": "ID=test\n", "usr/bin/app": "#!/bin/sh\n", "var/lib/old": "old\n"} {
		if err := writeFile(filepath.Join(lower, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rootfs := filepath.Join(base, "rootfs")
	if err := mountOverlayRootfs(rootfs, lower); err != nil {
		t.Fatalf("mount the overlay: %v", err)
	}
	t.Cleanup(func() { _ = ClearRootfs(rootfs) })
	b, err := TakeBaseline(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if b.upper == "" {
		t.Fatal("the baseline of an overlay root does not use its upper layer")
	}
	if err := os.WriteFile(filepath.Join(rootfs, "var/lib/new"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/os-release"), []byte("ID=changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(rootfs, "var/lib/old")); err != nil {
		t.Fatal(err)
	}
	d, err := b.Diff(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"etc/os-release", "var/lib/new"} {
		if !slices.Contains(d.Changed, want) {
			t.Errorf("changed %q lacks %s", d.Changed, want)
		}
	}
	if slices.Contains(d.Changed, "usr/bin/app") {
		t.Errorf("changed %q lists an untouched lower file", d.Changed)
	}
	if !slices.Equal(d.Deleted, []string{"var/lib/old"}) {
		t.Errorf("deleted %q, want [var/lib/old]", d.Deleted)
	}
	if data, _ := os.ReadFile(filepath.Join(lower, "etc/os-release")); string(data) != "ID=test\n" {
		t.Errorf("the lower layer was written: %q", data)
	}
	if err := ClearRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	if isMountPoint(rootfs) {
		t.Error("ClearRootfs left the overlay mounted")
	}
	if _, err := os.Stat(filepath.Join(lower, "var/lib/old")); err != nil {
		t.Errorf("ClearRootfs touched the lower layer: %v", err)
	}
}
