package guestimage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDebianTree builds (once per machine) the bookworm tree with python3
// that the bundle VM test shares with its guest, and checks the cache: one
// entry per input, found again in well under a second, and no staging
// directory left behind.
func TestDebianTree(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Debian tree with mmdebstrap (a minute or two on a fresh machine): not with -short")
	}
	if _, err := lookPath("mmdebstrap"); err != nil {
		t.Fatal("mmdebstrap is not installed: run scripts/install-deps.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cache := testCacheDir()
	dir, err := DebianTree(ctx, cache, "bookworm", []string{"python3"})
	if err != nil {
		t.Fatalf("DebianTree: %v", err)
	}
	for _, p := range []string{"usr/bin/python3", "usr/lib/python3.11/http/server.py", "etc/os-release"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("the tree lacks %s: %v", p, err)
		}
	}
	start := time.Now()
	again, err := DebianTree(ctx, cache, "bookworm", []string{"python3"})
	if err != nil || again != dir {
		t.Fatalf("DebianTree again = %s, %v: want the cached %s", again, err, dir)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the cached tree took %v, want well under a second", d)
	}
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".staging-tree-") {
			t.Errorf("a staging directory is left in the cache: %s", e.Name())
		}
	}
}
