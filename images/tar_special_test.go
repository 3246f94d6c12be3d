package images

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExtractTarSpecialOnly: ExtractTar, which the host runs on what a
// guest sends, refuses FIFOs, device nodes and hard links; only
// ExtractTarSpecial, for a container's own files in its guest, makes them.
func TestExtractTarSpecialOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mknod needs root: run the tests as root")
	}
	entries := []struct {
		name string
		hdr  tar.Header
	}{
		{"fifo", tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600}},
		{"char device", tar.Header{Name: "run/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{"hard link", tar.Header{Name: "run/link", Typeflag: tar.TypeLink, Linkname: "run/data"}},
	}
	for _, e := range entries {
		t.Run(e.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			data := []byte("data\n")
			for _, h := range []tar.Header{{Name: "run/data", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}, e.hdr} {
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
				if h.Typeflag == tar.TypeReg {
					if _, err := tw.Write(data); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			strict := t.TempDir()
			if err := ExtractTar(bytes.NewReader(buf.Bytes()), strict); err == nil || !strings.Contains(err.Error(), "unsupported type") {
				t.Errorf("ExtractTar took a %s: %v", e.name, err)
			}
			if _, err := os.Lstat(filepath.Join(strict, e.hdr.Name)); !os.IsNotExist(err) {
				t.Errorf("ExtractTar made %s: %v", e.hdr.Name, err)
			}
			if err := ExtractTarSpecial(bytes.NewReader(buf.Bytes()), t.TempDir()); err != nil {
				t.Errorf("ExtractTarSpecial: %v", err)
			}
		})
	}
	// A hard link may only point inside the directory.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "x", Typeflag: tar.TypeLink, Linkname: "../outside"}); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	if err := ExtractTarSpecial(bytes.NewReader(buf.Bytes()), t.TempDir()); err == nil {
		t.Error("a hard link out of the directory was made")
	}
}
