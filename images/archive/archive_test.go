package archive

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/images"
)

// checkpointDir writes a small images directory as kata-cr checkpoint
// does: CRIU images, the rootfs diff, deleted.files, stats-dump, dump.log.
func checkpointDir(t *testing.T) *images.Set {
	t.Helper()
	src := t.TempDir()
	for name, data := range map[string]string{
		"inventory.img": "inventory", "pstree.img": "pstree", "core-1.img": "core",
		"pages-1.img": strings.Repeat("p", 4096), "pagemap-1.img": "pagemap",
		"rootfs-diff.tar": "tar", "deleted.files": "[]", "stats-dump": "stats", "dump.log": "log\n",
	} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := images.Manifest{
		Created: time.Date(2026, 12, 1, 16, 26, 14, 0, time.UTC), KataCRVersion: "dev",
		KernelRelease: "6.1.0-57-amd64", CRIUVersion: "3.17.1", Arch: "x86_64",
		Workload: "sleep", Command: []string{"busybox", "sleep", "3600"},
	}
	set, err := images.Write(filepath.Join(t.TempDir(), "sleep"), m, images.FromDir(src))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func export(t *testing.T, set *images.Set) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "sleep.tar")
	if _, err := Export(set, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// entries lists an archive's entries with their contents.
func entries(t *testing.T, p string) ([]*tar.Header, [][]byte) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdrs []*tar.Header
	var data [][]byte
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs, data = append(hdrs, h), append(data, b)
	}
}

func TestExportLayout(t *testing.T) {
	set := checkpointDir(t)
	dst := export(t, set)
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %o, want 600", fi.Mode().Perm())
	}
	hdrs, data := entries(t, dst)
	var names []string
	for i, h := range hdrs {
		names = append(names, h.Name)
		want := int64(0o600)
		if h.Typeflag == tar.TypeDir {
			want = 0o700
		}
		if h.Mode != want {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, want)
		}
		switch h.Name {
		case ConfigDumpName:
			var c containerConfig
			if err := json.Unmarshal(data[i], &c); err != nil || c.Name != "sleep" || len(c.ID) != 64 || c.OCIRuntime != runtimeName {
				t.Errorf("config.dump %+v (%v)", c, err)
			}
		case SpecDumpName:
			var s struct {
				Process     struct{ Args []string }
				Annotations map[string]string
			}
			if err := json.Unmarshal(data[i], &s); err != nil || strings.Join(s.Process.Args, " ") != "busybox sleep 3600" ||
				s.Annotations[annotationContainerName] != "sleep" || s.Annotations[annotationCRIU] != "3.17.1" {
				t.Errorf("spec.dump %+v (%v)", s, err)
			}
		}
	}
	want := []string{ManifestName, ConfigDumpName, SpecDumpName, "checkpoint/", "checkpoint/core-1.img", "deleted.files", "dump.log",
		"checkpoint/inventory.img", "checkpoint/pagemap-1.img", "checkpoint/pages-1.img", "checkpoint/pstree.img", "rootfs-diff.tar", "stats-dump"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("entries\n%s\nwant\n%s", strings.Join(names, " "), strings.Join(want, " "))
	}
	if _, err := Export(set, dst); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a second export onto %s: %v, want a refusal", dst, err)
	}
}

func TestImportRoundTrip(t *testing.T) {
	set := checkpointDir(t)
	dir := filepath.Join(t.TempDir(), "imported")
	got, err := Import(export(t, set), dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Manifest.Workload != "sleep" || len(got.Manifest.Files) != len(set.Manifest.Files) {
		t.Errorf("imported manifest %+v", got.Manifest)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("imported directory: %v, mode %v, want 0700", err, fi.Mode().Perm())
	}
	for _, f := range got.Manifest.Files {
		fi, err := os.Stat(got.Path(f.Name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want a 0600 file", f.Name, err)
		}
	}
}

// rewrite copies the archive at src, letting edit change, drop (nil) or
// add entries, and returns the new archive's path.
func rewrite(t *testing.T, src string, edit func(h *tar.Header, data []byte) []tarEntry) string {
	t.Helper()
	hdrs, data := entries(t, src)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, h := range hdrs {
		for _, e := range edit(h, data[i]) {
			if e.h.Typeflag == tar.TypeReg {
				e.h.Size = int64(len(e.data))
			}
			if err := tw.WriteHeader(e.h); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "edited.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type tarEntry struct {
	h    *tar.Header
	data []byte
}

func keep(h *tar.Header, data []byte) []tarEntry { return []tarEntry{{h, data}} }

// at applies f to the entry called name and keeps the others.
func at(name string, f func(h *tar.Header, data []byte) []tarEntry) func(*tar.Header, []byte) []tarEntry {
	return func(h *tar.Header, data []byte) []tarEntry {
		if h.Name == name {
			return f(h, data)
		}
		return keep(h, data)
	}
}

// after adds e after the entry called name.
func after(name string, e tarEntry) func(*tar.Header, []byte) []tarEntry {
	return at(name, func(h *tar.Header, data []byte) []tarEntry { return []tarEntry{{h, data}, e} })
}

func TestImportRefuses(t *testing.T) {
	set := checkpointDir(t)
	good := export(t, set)
	reg := func(name, data string) tarEntry {
		return tarEntry{&tar.Header{Name: name, Mode: 0o600, Typeflag: tar.TypeReg}, []byte(data)}
	}
	flip := func(h *tar.Header, data []byte) []tarEntry {
		d := bytes.Clone(data)
		d[len(d)/2] ^= 1
		return []tarEntry{{h, d}}
	}
	for _, tt := range []struct {
		name   string
		edit   func(*tar.Header, []byte) []tarEntry
		reason string
		says   string
	}{
		{"a flipped byte in a pages image", at("checkpoint/pages-1.img", flip), images.ReasonChecksum, "checkpoint/pages-1.img does not match its checksum"},
		{"a longer file", at("dump.log", func(h *tar.Header, d []byte) []tarEntry { return []tarEntry{{h, append(bytes.Clone(d), 'x')}} }), images.ReasonChecksum, "dump.log is 5 bytes, the manifest says 4"},
		{"a missing file", at("checkpoint/pstree.img", func(*tar.Header, []byte) []tarEntry { return nil }), images.ReasonMissingFile, "checkpoint/pstree.img is missing"},
		{"a file not in the manifest", after("stats-dump", reg("checkpoint/extra.img", "x")), ReasonUnexpectedEntry, "checkpoint/extra.img is not in the manifest"},
		{"an absolute path", after("stats-dump", reg("/etc/passwd", "x")), ReasonUnsafeEntry, `"/etc/passwd"`},
		{"a path with ..", after("stats-dump", reg("checkpoint/../../x", "x")), ReasonUnsafeEntry, "checkpoint/../../x"},
		{"a symlink", after("stats-dump", tarEntry{&tar.Header{Name: "checkpoint/evil", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, nil}), ReasonUnsafeEntry, "is a symlink"},
		{"a hard link", after("stats-dump", tarEntry{&tar.Header{Name: "checkpoint/evil", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}, nil}), ReasonUnsafeEntry, "is a hard link"},
		{"a device node", after("stats-dump", tarEntry{&tar.Header{Name: "checkpoint/sda", Typeflag: tar.TypeBlock, Mode: 0o600, Devmajor: 8}, nil}), ReasonUnsafeEntry, "device node"},
		{"a file twice", after("stats-dump", reg("stats-dump", "stats")), ReasonUnexpectedEntry, "stats-dump appears twice"},
		{"no manifest first", at(ManifestName, func(h *tar.Header, d []byte) []tarEntry { return nil }), ReasonNotArchive, "not kata-cr's"},
		{"a manifest listing ..", at(ManifestName, func(h *tar.Header, d []byte) []tarEntry {
			return []tarEntry{{h, bytes.Replace(d, []byte(`"name": "stats-dump"`), []byte(`"name": "../stats-dump"`), 1)}}
		}), ReasonUnsafeEntry, "leaves the directory"},
		{"a manifest listing more than the archive holds", at(ManifestName, func(h *tar.Header, d []byte) []tarEntry {
			return []tarEntry{{h, bytes.Replace(d, []byte(`"size": 4096`), []byte(`"size": 409600000`), 1)}}
		}), ReasonTooLarge, "more than the archive's"},
		{"a huge config.dump", at(ConfigDumpName, func(h *tar.Header, d []byte) []tarEntry {
			return []tarEntry{{h, make([]byte, metadataSizeLimit+1)}}
		}), ReasonTooLarge, "config.dump is"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := rewrite(t, good, tt.edit)
			parent := t.TempDir()
			dir := filepath.Join(parent, "imported")
			_, err := Import(src, dir)
			var ref *images.RefusedError
			if !errors.As(err, &ref) {
				t.Fatalf("Import: %v, want a refusal (%s)", err, tt.reason)
			}
			if ref.Reason() != tt.reason || !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), src) {
				t.Errorf("Import: %v\nwant reason %s, naming %s and saying %q", err, tt.reason, src, tt.says)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the refusal is more than one line: %q", err)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Errorf("a refused import left %d entries in %s", len(left), parent)
			}
			if _, err := os.Lstat("/etc/passwd.kata-cr-test"); err == nil {
				t.Error("something was written outside the directory")
			}
		})
	}
}

func TestImportNotATar(t *testing.T) {
	p := filepath.Join(t.TempDir(), "junk.tar")
	if err := os.WriteFile(p, []byte("not a tar archive at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Import(p, filepath.Join(t.TempDir(), "x"))
	var ref *images.RefusedError
	if !errors.As(err, &ref) || ref.Reason() != ReasonNotArchive {
		t.Errorf("Import of junk: %v, want %s", err, ReasonNotArchive)
	}
}

func TestImportIntoNonEmptyDir(t *testing.T) {
	set := checkpointDir(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(export(t, set), dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Import into a non-empty directory: %v", err)
	}
}
