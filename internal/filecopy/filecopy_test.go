package filecopy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCopy(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)

	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o751); err != nil {
		t.Fatal(err)
	}
	existing := func(t *testing.T, p string) {
		t.Helper()
		if err := os.WriteFile(p, []byte("old, longer contents"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		dst      string
		setup    func(t *testing.T, dst string)
		opts     Options
		wantMode fs.FileMode
		wantErr  error
	}{
		{name: "source mode, whatever the umask", dst: "a", wantMode: 0o751},
		{name: "given mode", dst: "b", opts: Options{Mode: 0o644}, wantMode: 0o644},
		{name: "overwrite", dst: "c", setup: existing, wantMode: 0o751},
		{name: "exclusive, new", dst: "d", opts: Options{Exclusive: true, Mode: 0o600}, wantMode: 0o600},
		{name: "exclusive, exists", dst: "e", setup: existing, opts: Options{Exclusive: true}, wantErr: fs.ErrExist},
		{name: "no parent", dst: "f/g/h", wantErr: fs.ErrNotExist},
		{name: "make parents", dst: "f/g/h", opts: Options{MakeParents: true}, wantMode: 0o751},
		{name: "atomic over a file", dst: "i", setup: existing, opts: Options{Atomic: true, Mode: 0o644}, wantMode: 0o644},
		{name: "atomic over a symlink replaces the link", dst: "j", setup: func(t *testing.T, dst string) {
			if err := os.Symlink("src", dst); err != nil {
				t.Fatal(err)
			}
		}, opts: Options{Atomic: true, Exclusive: true}, wantMode: 0o751},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(dir, tt.dst)
			if tt.setup != nil {
				tt.setup(t, dst)
			}
			err := Copy(src, dst, tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != tt.wantMode {
				t.Errorf("mode %v, want a regular file %v", fi.Mode(), tt.wantMode)
			}
			if b, _ := os.ReadFile(dst); string(b) != "contents" {
				t.Errorf("contents %q", b)
			}
			if ents, _ := os.ReadDir(filepath.Dir(dst)); len(ents) > 0 {
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), ".") {
						t.Errorf("temporary file %s left behind", e.Name())
					}
				}
			}
		})
	}
	if b, _ := os.ReadFile(src); string(b) != "contents" {
		t.Errorf("source changed: %q", b)
	}
}

func TestCopyRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	err := Copy(dir, filepath.Join(t.TempDir(), "x"), Options{})
	var pe *fs.PathError
	if !errors.Is(err, ErrNotRegular) || !errors.As(err, &pe) || pe.Path != dir {
		t.Fatalf("copy a directory: %v", err)
	}
	if err := Copy(filepath.Join(dir, "none"), filepath.Join(dir, "x"), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("copy a missing file: %v", err)
	}
}
