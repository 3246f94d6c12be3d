package images

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"golang.org/x/sys/unix"
)

var compat = Compat{KernelRelease: "6.1.0-50-amd64", CRIUVersion: "3.17.1", Arch: "x86_64"}

func manifest() Manifest {
	return Manifest{
		KataCRVersion:  "test",
		KernelRelease:  compat.KernelRelease,
		CRIUVersion:    compat.CRIUVersion,
		Arch:           compat.Arch,
		Workload:       "counter",
		Command:        []string{"sh", "-c", "loop"},
		DumpOptions:    criuopt.Set{FileLocks: true, ExternalMounts: []criuopt.Mount{{Key: "hosts", Path: "/etc/hosts"}}},
		RestoreOptions: criuopt.Set{FileLocks: true},
		ExternalMounts: []ExternalMount{{Key: "hosts", Target: "/etc/hosts"}},
	}
}

// criuDir makes a directory that looks like CRIU's output.
func criuDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"pstree.img":     "pstree",
		"inventory.img":  "inventory",
		"core-1.img":     strings.Repeat("core", 1000),
		"pages-1.img":    strings.Repeat("\x00\x01", 4096),
		"dump.log":       "(00.1) Dumping finished successfully\n",
		RootfsDiffName:   "tar",
		"sub/nested.img": "nested",
		DeletedFilesName: "[]",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func writeSet(t *testing.T) *Set {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "ckpt")
	s, err := Write(dst, manifest(), FromDir(criuDir(t)))
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return s
}

func TestWriteModesAndManifest(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	s := writeSet(t)
	err := filepath.Walk(s.Dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(s.Dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	m := got.Manifest
	if !m.Complete || m.SchemaVersion != SchemaVersion || m.Created.IsZero() {
		t.Errorf("manifest not sealed: complete=%v schema=%d created=%v", m.Complete, m.SchemaVersion, m.Created)
	}
	if len(m.Files) != 8 {
		t.Errorf("manifest lists %d files, want 8: %+v", len(m.Files), m.Files)
	}
	for _, f := range m.Files {
		if len(f.SHA256) != 64 {
			t.Errorf("%s: checksum %q", f.Name, f.SHA256)
		}
	}
	if got.Size() != int64(len("pstree")+len("inventory")+4000+8192+len("(00.1) Dumping finished successfully\n")+3+6+2) {
		t.Errorf("Size = %d", got.Size())
	}
	if err := got.Verify(compat); err != nil {
		t.Errorf("Verify: %v", err)
	}
	leftovers, _ := filepath.Glob(s.Dir + partialInfix + "*")
	if len(leftovers) != 0 {
		t.Errorf("partial directories left: %v", leftovers)
	}
	if want := manifest(); !reflect.DeepEqual(m.DumpOptions, want.DumpOptions) || !reflect.DeepEqual(m.RestoreOptions, want.RestoreOptions) {
		t.Errorf("options read back as dump %+v, restore %+v", m.DumpOptions, m.RestoreOptions)
	}
}

// TestOpenSchema1 reads a checkpoint directory as schema 1 wrote it (the
// CRIU options as argv words; testdata/v1-checkpoint was written by
// images.Write before schema 2): its files check out and its options come
// back typed.
func TestOpenSchema1(t *testing.T) {
	s, err := Open("testdata/v1-checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(compat); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	m := s.Manifest
	if m.SchemaVersion != 1 || m.Workload != "counter" || !m.Terminal || m.WorkloadState["count"] != "42" {
		t.Errorf("manifest: %+v", m)
	}
	wantDump := criuopt.Set{LeaveRunning: true, FileLocks: true, TCPEstablished: true,
		ExternalMounts: []criuopt.Mount{{Key: "hosts", Path: "/etc/hosts"}},
		UnixSockets:    []uint32{4242}, TTYs: []criuopt.TTY{{Rdev: 0x8800, Dev: 0x27}}}
	if !reflect.DeepEqual(m.DumpOptions, wantDump) {
		t.Errorf("dump options %+v, want %+v", m.DumpOptions, wantDump)
	}
	if want := (criuopt.Set{FileLocks: true, TCPEstablished: true}); !reflect.DeepEqual(m.RestoreOptions, want) {
		t.Errorf("restore options %+v, want %+v", m.RestoreOptions, want)
	}
	// The words it was written with come back from the typed options.
	if got, want := m.DumpOptions.DumpArgs(), []string{"--leave-running", "--file-locks", "--tcp-established",
		"--external", "mnt[/etc/hosts]:hosts", "--external", "unix[4242]", "--external", "tty[8800:27]"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dump words %q, want %q", got, want)
	}

	// Words a schema 1 reader would not know are a damaged manifest.
	dir := filepath.Join(t.TempDir(), "bad")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data := `{"schema_version": 1, "complete": true, "dump_options": ["--tree", "1"], "files": []}`
	if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	var refused *RefusedError
	if _, err := Open(dir); !errors.As(err, &refused) || refused.Reason() != ReasonManifest || !strings.Contains(err.Error(), "--tree") {
		t.Errorf("Open of schema 1 with unknown options = %v, want %s", err, ReasonManifest)
	}
}

func TestVerifyRefuses(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, s *Set)
		want   Compat
		reason string
	}{
		{"truncated image", func(t *testing.T, s *Set) {
			if err := os.Truncate(s.Path("core-1.img"), 100); err != nil {
				t.Fatal(err)
			}
		}, compat, ReasonTruncated},
		{"wrong checksum", func(t *testing.T, s *Set) {
			f, err := os.OpenFile(s.Path("pages-1.img"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0xff}, 17); err != nil {
				t.Fatal(err)
			}
		}, compat, ReasonChecksum},
		{"missing file", func(t *testing.T, s *Set) {
			if err := os.Remove(s.Path("sub/nested.img")); err != nil {
				t.Fatal(err)
			}
		}, compat, ReasonMissingFile},
		{"unexpected file", func(t *testing.T, s *Set) {
			if err := os.WriteFile(s.Path("extra.img"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, compat, ReasonUnexpectedFile},
		{"other kernel", nil, Compat{"7.3.0-1-amd64", compat.CRIUVersion, compat.Arch}, ReasonKernelMismatch},
		{"other criu", nil, Compat{compat.KernelRelease, "4.1.1", compat.Arch}, ReasonCRIUMismatch},
		{"other arch", nil, Compat{compat.KernelRelease, compat.CRIUVersion, "aarch64"}, ReasonArchMismatch},
		{"unknown restoring kernel", nil, Compat{"", compat.CRIUVersion, compat.Arch}, ReasonKernelMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := writeSet(t)
			if tt.damage != nil {
				tt.damage(t, s)
			}
			err := s.Verify(tt.want)
			var refused *RefusedError
			if !errors.As(err, &refused) {
				t.Fatalf("Verify = %v, want a *RefusedError", err)
			}
			if refused.Reason() != tt.reason {
				t.Errorf("reason %s, want %s (%v)", refused.Reason(), tt.reason, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("message %q does not name the reason", err)
			}
		})
	}
}

func TestKernelInManifestRefused(t *testing.T) {
	// The manifest edited on disk, as a checkpoint from another machine
	// would arrive: Open accepts it, Verify names the kernel.
	s := writeSet(t)
	m := s.Manifest
	m.KernelRelease = "7.3.0-1-amd64"
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(ManifestName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Open(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	err = got.Verify(compat)
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Reason() != ReasonKernelMismatch {
		t.Fatalf("Verify = %v, want %s", err, ReasonKernelMismatch)
	}
	if !strings.Contains(err.Error(), "7.3.0-1-amd64") || !strings.Contains(err.Error(), compat.KernelRelease) {
		t.Errorf("message does not name both kernels: %v", err)
	}
}

func TestOpenRefusesIncomplete(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T) string
		reason string
	}{
		{"partial dir", func(t *testing.T) string {
			s := writeSet(t)
			p := s.Dir + partialInfix + "1234"
			if err := os.Rename(s.Dir, p); err != nil {
				t.Fatal(err)
			}
			return p
		}, ReasonIncomplete},
		{"no manifest", func(t *testing.T) string { return criuDir(t) }, ReasonIncomplete},
		{"not complete", func(t *testing.T) string {
			dir := criuDir(t)
			data, _ := json.Marshal(Manifest{SchemaVersion: SchemaVersion})
			if err := os.WriteFile(filepath.Join(dir, ManifestName), data, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, ReasonIncomplete},
		{"garbage manifest", func(t *testing.T) string {
			dir := criuDir(t)
			if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, ReasonManifest},
		{"future schema", func(t *testing.T) string {
			dir := criuDir(t)
			data, _ := json.Marshal(Manifest{SchemaVersion: SchemaVersion + 1, Complete: true})
			if err := os.WriteFile(filepath.Join(dir, ManifestName), data, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, ReasonSchema},
		{"missing dir", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, ReasonNotImagesDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.setup(t))
			var refused *RefusedError
			if !errors.As(err, &refused) || refused.Reason() != tt.reason {
				t.Fatalf("Open = %v, want reason %s", err, tt.reason)
			}
		})
	}
}

// failingReader yields some of a tar stream, then fails like a channel
// that dropped.
type failingReader struct {
	r io.Reader
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("channel closed")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestWriteInterruptedLeavesNothing(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTar(&buf, criuDir(t)); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	dst := filepath.Join(parent, "ckpt")
	_, err := Write(dst, manifest(), FromTar(&failingReader{r: &buf, n: buf.Len() / 2}))
	if err == nil {
		t.Fatal("Write from a broken stream succeeded")
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	if _, err := Open(dst); err == nil {
		t.Error("Open accepted the directory of a failed Write")
	}
}

func TestWriteFromTarRoundTrip(t *testing.T) {
	src := criuDir(t)
	var buf bytes.Buffer
	if err := WriteTar(&buf, src); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "ckpt")
	s, err := Write(dst, manifest(), FromTar(&buf))
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := s.Verify(compat); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want, _ := os.ReadFile(filepath.Join(src, "core-1.img"))
	got, _ := os.ReadFile(s.Path("core-1.img"))
	if !bytes.Equal(want, got) {
		t.Error("core-1.img differs after the round trip")
	}
}

func TestWriteTargets(t *testing.T) {
	t.Run("empty existing dir is used", func(t *testing.T) {
		dst := t.TempDir()
		if _, err := Write(dst, manifest(), FromDir(criuDir(t))); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dst)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("mode %v, %v", fi.Mode(), err)
		}
	})
	t.Run("non-empty dir is refused", func(t *testing.T) {
		dst := criuDir(t)
		_, err := Write(dst, manifest(), FromDir(criuDir(t)))
		if err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("Write = %v, want a not-empty error", err)
		}
	})
	t.Run("a file is refused", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(dst, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Write(dst, manifest(), FromDir(criuDir(t)))
		if err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("Write = %v", err)
		}
	})
	t.Run("unwritable parent", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Fatal("this test mounts a read-only tmpfs: run it as root")
		}
		ro := t.TempDir()
		if err := unix.Mount("tmpfs", ro, "tmpfs", unix.MS_RDONLY, "size=1m"); err != nil {
			t.Fatalf("mount read-only tmpfs: %v", err)
		}
		defer unix.Unmount(ro, unix.MNT_DETACH)
		dst := filepath.Join(ro, "ckpt")
		_, err := Write(dst, manifest(), FromDir(criuDir(t)))
		if err == nil {
			t.Fatal("Write into a read-only directory succeeded")
		}
		msg := err.Error()
		if !strings.Contains(msg, dst) || !strings.Contains(msg, "read-only file system") || strings.Count(msg, "\n") > 0 {
			t.Errorf("error is not one clear line naming the directory and the cause: %q", msg)
		}
	})
	t.Run("partial name refused", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "x"+partialInfix+"1")
		if _, err := Write(dst, manifest(), FromDir(criuDir(t))); err == nil {
			t.Fatal("Write accepted a partial name")
		}
	})
}

type entry struct {
	name, link string
	typ        byte
	body       string
}

func tarOf(t *testing.T, entries []entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestExtractTarRefusesEscapes(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
	}{
		{"dot dot", []entry{{name: "../evil", typ: tar.TypeReg, body: "x"}}},
		{"nested dot dot", []entry{{name: "a/../../evil", typ: tar.TypeReg, body: "x"}}},
		{"absolute", []entry{{name: "/tmp/evil", typ: tar.TypeReg, body: "x"}}},
		{"through own symlink", []entry{
			{name: "link", typ: tar.TypeSymlink, link: "OUTSIDE"},
			{name: "link/evil", typ: tar.TypeReg, body: "x"},
		}},
		{"through relative symlink", []entry{
			{name: "up", typ: tar.TypeSymlink, link: "../.."},
			{name: "up/evil", typ: tar.TypeReg, body: "x"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range tt.entries {
				tt.entries[i].link = strings.ReplaceAll(tt.entries[i].link, "OUTSIDE", outside)
			}
			dst := filepath.Join(base, "dst")
			err := ExtractTar(tarOf(t, tt.entries), dst)
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("ExtractTar = %v, want ErrUnsafePath", err)
			}
			for _, p := range []string{filepath.Join(outside, "evil"), filepath.Join(base, "evil"), "/tmp/evil"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
		})
	}
}

func TestExtractTarKinds(t *testing.T) {
	dst := t.TempDir()
	err := ExtractTar(tarOf(t, []entry{
		{name: "d/", typ: tar.TypeDir},
		{name: "d/f", typ: tar.TypeReg, body: "hello"},
		{name: "d/l", typ: tar.TypeSymlink, link: "/bin/busybox"},
		{name: "deep/er/f", typ: tar.TypeReg, body: "implicit parents"},
	}), dst)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "d/f")); string(b) != "hello" {
		t.Errorf("d/f = %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "d/l")); l != "/bin/busybox" {
		t.Errorf("d/l -> %q", l)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "deep/er/f")); string(b) != "implicit parents" {
		t.Errorf("deep/er/f = %q", b)
	}
	// A truncated stream is an error, not a short file.
	full := tarOf(t, []entry{{name: "big", typ: tar.TypeReg, body: strings.Repeat("x", 4096)}})
	short := bytes.NewReader(full.Bytes()[:1024])
	if err := ExtractTar(short, t.TempDir()); err == nil {
		t.Error("ExtractTar of a truncated stream succeeded")
	}
}

// TestCheckIncludes: a recorded --include must still be the same file on
// the restoring host; the user's own --include for its guest path takes
// the place of the recorded host path.
func TestCheckIncludes(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	moved := filepath.Join(dir, "moved")
	other := filepath.Join(dir, "other")
	for p, content := range map[string]string{prog: "v1", moved: "v1", other: "v2"} {
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := SumFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	m := manifest()
	m.Includes = []Include{{Host: prog, Guest: "/usr/bin/prog", SHA256: sum}}
	gone := m
	gone.Includes = []Include{{Host: filepath.Join(dir, "gone"), Guest: "/usr/bin/prog", SHA256: sum}}
	changed := m
	changed.Includes = []Include{{Host: other, Guest: "/usr/bin/prog", SHA256: sum}}
	tests := []struct {
		name   string
		m      Manifest
		given  map[string]string
		reason string
	}{
		{"unchanged", m, nil, ""},
		{"vanished", gone, nil, ReasonIncludeMissing},
		{"changed", changed, nil, ReasonIncludeChanged},
		{"moved and given", gone, map[string]string{"/usr/bin/prog": moved}, ""},
		{"given another file", m, map[string]string{"/usr/bin/prog": other}, ReasonIncludeChanged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := CheckIncludes(tt.m, tt.given)
			switch {
			case tt.reason == "" && len(probs) > 0:
				t.Errorf("refused: %+v", probs)
			case tt.reason != "" && (len(probs) != 1 || probs[0].Reason != tt.reason):
				t.Errorf("problems %+v, want one %s", probs, tt.reason)
			}
		})
	}
}

// TestWriteRefusesEmptyStream: a stream cut before its first file ends
// like an empty tar; it must not make a complete checkpoint, and a
// manifest that lists no CRIU inventory is refused.
func TestWriteRefusesEmptyStream(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "ckpt")
	if _, err := Write(dst, manifest(), FromTar(bytes.NewReader(nil))); err == nil || !strings.Contains(err.Error(), "inventory.img") {
		t.Fatalf("an empty stream: %v, want a refusal naming inventory.img", err)
	}
	if _, err := Open(dst); err == nil {
		t.Errorf("%s opens after an empty stream", dst)
	}
}
