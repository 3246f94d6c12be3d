package criu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeCRIU writes a shell script that stands in for criu swrk.
func fakeCRIU(t *testing.T, script string) *Binary {
	t.Helper()
	p := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return newBinary(p)
}

// TestDumpHung: a CRIU that never answers is killed at the dump's time
// limit, with what it started, and the error says it hung; the cancelling
// of the context alone does not stop it.
func TestDumpHung(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	b := fakeCRIU(t, "sleep 1000 & echo $! > "+pidFile+"\nwait\n")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Dump(ctx, DumpOpts{PID: os.Getpid(), ImagesDir: dir})
	took := time.Since(start)
	var ce *Error
	if !errors.As(err, &ce) || !ce.Hung || !errors.Is(err, ErrHung) {
		t.Fatalf("Dump = %v, want a hung *Error", err)
	}
	if !strings.Contains(err.Error(), "criu dump hung") || !strings.Contains(err.Error(), "no answer within") {
		t.Errorf("error %q does not say CRIU hung", err)
	}
	if took < time.Second || took > 10*time.Second {
		t.Errorf("took %s, want about the 1.5 s limit", took)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(child, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("criu's child %d survived the kill", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCallErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("criu exits without an answer", func(t *testing.T) {
		b := fakeCRIU(t, "echo 'swrk: bad socket' >&2\nexit 1\n")
		_, err := b.Dump(ctx, DumpOpts{PID: os.Getpid(), ImagesDir: t.TempDir()})
		var ce *Error
		if !errors.As(err, &ce) || ce.Hung || !strings.Contains(err.Error(), "swrk: bad socket") {
			t.Errorf("Dump = %v, want a failure quoting criu's stderr, not a hang", err)
		}
	})
	t.Run("no time left", func(t *testing.T) {
		b := fakeCRIU(t, "exit 0\n")
		dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		defer cancel()
		if _, err := b.Restore(dctx, RestoreOpts{ImagesDir: writeInventory(t)}); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Restore past the deadline = %v, want DeadlineExceeded", err)
		}
	})
}

// writeInventory makes a directory that looks like images to Restore.
func writeInventory(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "inventory.img"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}
