package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadInput: each bad input gets one line naming the input, the
// documented exit code, no Go stack, within a bound, and nothing written
// where it should not be. None of these boots a guest.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hang := script("hang-criu", "sleep 1000")
	garbage := script("garbage-criu", "echo 'Looks good.'; echo garbage")
	fifoCk := filepath.Join(dir, "fifo-ck")
	if err := os.Mkdir(fifoCk, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(fifoCk, "manifest.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fragment.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fragments := filepath.Join("..", "kernel", "testdata", "kata-fragments")
	tests := []struct {
		name  string
		args  []string
		code  int
		names string // the input the line must name
	}{
		{"restore: the manifest is a FIFO", []string{"restore", "--images-dir", fifoCk}, ExitToolError, "images.manifest-invalid"},
		{"doctor: a criu that never answers", []string{"doctor", "--target", "host", "--criu", hang}, ExitToolError, hang},
		{"doctor: a criu that prints garbage", []string{"doctor", "--target", "host", "--criu", garbage}, ExitToolError, garbage},
		{"explain: a character device", []string{"explain", "/dev/zero"}, ExitToolError, "/dev/zero"},
		{"doctor: an empty --pid", []string{"doctor", "--target", "host", "--pid", ""}, ExitUsage, "--pid"},
		{"kernel check: --emit-fragment onto a FIFO", []string{"kernel", "check", fragments, "--emit-fragment", fifo}, ExitToolError, fifo},
		{"checkpoint: a missing --include", []string{"checkpoint", "--include", filepath.Join(dir, "nope"), "--images-dir", filepath.Join(dir, "ck1")}, ExitUsage, "--include"},
		{"checkpoint: --include of a device", []string{"checkpoint", "--include", "/dev/zero:/x", "--images-dir", filepath.Join(dir, "ck2")}, ExitUsage, "/dev/zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				code           int
				stdout, stderr string
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				code, stdout, stderr := runKataCR(tt.args...)
				done <- result{code, stdout, stderr}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("kata-cr %s hangs", strings.Join(tt.args, " "))
			}
			t.Logf("after %s: exit %d: %s", time.Since(start).Round(time.Millisecond), r.code, r.stderr)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d", r.code, tt.code)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.names) {
				t.Errorf("stderr %q: want one line naming %s", r.stderr, tt.names)
			}
			if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
				t.Errorf("a Go stack: %s", r.stderr)
			}
		})
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("the FIFO given to --emit-fragment was changed: %v %v", fi.Mode(), err)
	}
}
