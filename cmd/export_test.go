package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/images/archive"
)

// flipInArchive flips one byte in the middle of the archive entry name,
// in place, as a tampered or damaged copy would have it.
func flipInArchive(t *testing.T, p, name string, content []byte) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// A tar entry's data starts on the 512-byte block after its header,
	// whose first bytes are the name.
	hdr := bytes.Index(data, append([]byte(name), 0))
	if hdr < 0 || hdr%512 != 0 {
		t.Fatalf("no tar header for %s in %s", name, p)
	}
	at := hdr + 512 + len(content)/2
	if !bytes.Equal(data[hdr+512:hdr+512+len(content)], content) {
		t.Fatalf("%s in %s does not hold the expected content", name, p)
	}
	data[at] ^= 0x01
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreImportRefusesTampered: restore --import refuses an archive
// with one flipped byte in a pages image, in one line naming the entry,
// exit 1, before any guest boots; the intact archive passes the same
// check.
func TestRestoreImportRefusesTampered(t *testing.T) {
	set, err := images.Open(fakeCheckpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "counter.tar")
	if _, err := archive.Export(set, tarPath); err != nil {
		t.Fatal(err)
	}
	o := &restoreCmdOptions{Import: tarPath}
	got, cleanup, err := o.openSet()
	if err != nil {
		t.Fatalf("the intact archive: %v", err)
	}
	if got.Manifest.Workload != "counter" {
		t.Errorf("imported workload %q", got.Manifest.Workload)
	}
	cleanup()
	if _, err := os.Stat(got.Dir); !os.IsNotExist(err) {
		t.Errorf("cleanup left %s: %v", got.Dir, err)
	}

	pages, err := os.ReadFile(set.Path("pages-1.img"))
	if err != nil {
		t.Fatal(err)
	}
	flipInArchive(t, tarPath, "checkpoint/pages-1.img", pages)
	code, stdout, stderr := runKataCR("restore", "--import", tarPath)
	if code != ExitToolError {
		t.Errorf("exit %d, want %d", code, ExitToolError)
	}
	for _, want := range []string{tarPath, images.ReasonChecksum, "checkpoint/pages-1.img does not match its checksum"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not say %q", stderr, want)
		}
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 || stdout != "" {
		t.Errorf("want one line on stderr and nothing on stdout, got stderr %q stdout %q", stderr, stdout)
	}
}

// TestExportFlagRefused: --export to an existing file or a missing
// directory is a usage error before any guest boots.
func TestExportFlagRefused(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "old.tar")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, path, want string }{
		{"an existing file", existing, "the file exists"},
		{"a missing directory", filepath.Join(dir, "missing", "x.tar"), "cannot write in"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runKataCR("checkpoint", "--images-dir", filepath.Join(t.TempDir(), "images"), "--export", tt.path)
			if code != ExitUsage || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, %q; want %d saying %q", code, stderr, ExitUsage, tt.want)
			}
		})
	}
	for _, args := range [][]string{{"restore", "--import", filepath.Join(dir, "missing.tar")}, {"restore", "--import", dir}} {
		if code, _, stderr := runKataCR(args...); code != ExitUsage || !strings.Contains(stderr, "--import") {
			t.Errorf("kata-cr %s: exit %d, %q; want %d naming --import", strings.Join(args, " "), code, stderr, ExitUsage)
		}
	}
}
