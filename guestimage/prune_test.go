package guestimage

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPruneImages keeps the newest images, the current one, and any image
// used within pruneGrace, however many there are: another kata-cr may be
// between the two boots of a checkpoint with it.
func TestPruneImages(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ages := map[string]time.Duration{
		"guest-new1.cpio":    time.Minute,
		"guest-new2.cpio":    2 * time.Minute,
		"guest-recent.cpio":  10 * time.Minute,
		"guest-old1.cpio":    2 * time.Hour,
		"guest-old2.cpio":    3 * time.Hour,
		"guest-current.cpio": 4 * time.Hour,
	}
	for name, age := range ages {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	pruneImages(dir, filepath.Join(dir, "guest-current.cpio"), 2)
	for name, want := range map[string]bool{
		"guest-new1.cpio": true, "guest-new2.cpio": true, "guest-recent.cpio": true,
		"guest-old1.cpio": false, "guest-old2.cpio": false, "guest-current.cpio": true,
	} {
		_, err := os.Stat(filepath.Join(dir, name))
		if got := err == nil; got != want {
			t.Errorf("%s kept = %v, want %v", name, got, want)
		}
	}
}
