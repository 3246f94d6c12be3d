package images

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckBundle: a checkpoint of a bundle is refused when its rootfs is
// gone or changed, and accepted while it is the tree the fingerprint
// recorded.
func TestCheckBundle(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, rootfs string)
		reason string
	}{
		{"unchanged", func(*testing.T, string) {}, ""},
		{"a file rewritten", func(t *testing.T, rootfs string) {
			p := filepath.Join(rootfs, "usr/bin/app")
			if err := os.WriteFile(p, []byte("other\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(p, later, later); err != nil {
				t.Fatal(err)
			}
		}, ReasonBundleChanged},
		{"a file added", func(t *testing.T, rootfs string) {
			if err := os.WriteFile(filepath.Join(rootfs, "new"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, ReasonBundleChanged},
		{"a link retargeted", func(t *testing.T, rootfs string) {
			p := filepath.Join(rootfs, "bin")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("usr/sbin", p); err != nil {
				t.Fatal(err)
			}
		}, ReasonBundleChanged},
		{"gone", func(t *testing.T, rootfs string) {
			if err := os.RemoveAll(rootfs); err != nil {
				t.Fatal(err)
			}
		}, ReasonBundleMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rootfs := filepath.Join(t.TempDir(), "rootfs")
			if err := os.MkdirAll(filepath.Join(rootfs, "usr/bin"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(rootfs, "usr/bin/app"), []byte("app\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("usr/bin", filepath.Join(rootfs, "bin")); err != nil {
				t.Fatal(err)
			}
			fp, err := TreeFingerprint(rootfs)
			if err != nil {
				t.Fatal(err)
			}
			m := Manifest{Bundle: &Bundle{Rootfs: rootfs, Fingerprint: fp}}
			tt.change(t, rootfs)
			probs := CheckBundle(m)
			switch {
			case tt.reason == "" && len(probs) > 0:
				t.Errorf("refused: %+v", probs)
			case tt.reason != "" && (len(probs) != 1 || probs[0].Reason != tt.reason):
				t.Errorf("problems %+v, want one %s", probs, tt.reason)
			}
		})
	}
	if probs := CheckBundle(Manifest{}); probs != nil {
		t.Errorf("a checkpoint without a bundle: %+v", probs)
	}
}
