package kernel

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

const sampleConfig = `#
# Linux/x86 6.18.35 Kernel Configuration
#
CONFIG_X86_64=y
CONFIG_CHECKPOINT_RESTORE=y
CONFIG_UNIX_DIAG=m
# CONFIG_NETLINK_DIAG is not set
`

// tool runs a compression tool the test needs; a missing one fails the
// test with the package to install.
func tool(t *testing.T, pkg string, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is needed for this test: apt-get install %s", name, pkg)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
	}
	return out
}

func gz(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func xzGo(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := xz.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zst(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

func lz4Legacy(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := lz4.NewWriter(&b)
	if err := w.Apply(lz4.LegacyOption(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sizeAppended adds the 4-byte uncompressed size the kernel build appends
// to a compressed payload (scripts/Makefile.lib size_append).
func sizeAppended(comp []byte, size int) []byte {
	out := append([]byte{}, comp...)
	return binary.LittleEndian.AppendUint32(out, uint32(size))
}

// fakeVmlinux is an ELF-looking blob with random code around the
// IKCONFIG block, the way kernel/configs.c lays it out.
func fakeVmlinux(t *testing.T, config string) []byte {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	pad := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	var b bytes.Buffer
	b.WriteString("\x7fELF")
	b.Write(pad(40000))
	b.WriteString("Linux version 6.18.35 (builder@kata) #1 SMP\x00")
	b.Write(pad(3000))
	if config != "" {
		b.WriteString("IKCFG_ST")
		b.Write(gz(t, []byte(config)))
		b.WriteString("IKCFG_ED")
	}
	b.Write(pad(20000))
	return b.Bytes()
}

// fakeBzImage wraps payload in an x86 boot protocol 2.15 header.
func fakeBzImage(payload []byte) []byte {
	const setupSects = 3
	img := make([]byte, (setupSects+1)*512)
	img[0x1f1] = setupSects
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x020f)
	const off = 0x3a0 // where the decompressor stub would end
	binary.LittleEndian.PutUint32(img[0x248:], off)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	img = append(img, make([]byte, off)...)
	img = append(img, payload...)
	return append(img, make([]byte, 1024)...)
}

func TestFromBytes(t *testing.T) {
	vmlinux := fakeVmlinux(t, sampleConfig)
	bare := fakeVmlinux(t, "")
	tests := []struct {
		name      string
		data      func(t *testing.T) []byte
		errSubstr string
	}{
		{name: "plain", data: func(*testing.T) []byte { return []byte(sampleConfig) }},
		{name: "gzip", data: func(t *testing.T) []byte { return gz(t, []byte(sampleConfig)) }},
		{name: "xz", data: func(t *testing.T) []byte { return xzGo(t, []byte(sampleConfig)) }},
		{name: "zstd", data: func(t *testing.T) []byte { return zst(t, []byte(sampleConfig)) }},
		{name: "bzip2", data: func(t *testing.T) []byte { return tool(t, "bzip2", []byte(sampleConfig), "bzip2", "-c") }},
		{name: "vmlinux with IKCONFIG", data: func(*testing.T) []byte { return vmlinux }},
		{name: "gzip'd vmlinux (arm64 Image.gz)", data: func(t *testing.T) []byte { return gz(t, vmlinux) }},
		{name: "bzImage gzip", data: func(t *testing.T) []byte { return fakeBzImage(sizeAppended(gz(t, vmlinux), len(vmlinux))) }},
		{name: "bzImage zstd", data: func(t *testing.T) []byte { return fakeBzImage(sizeAppended(zst(t, vmlinux), len(vmlinux))) }},
		{name: "bzImage xz with x86 BCJ", data: func(t *testing.T) []byte {
			c := tool(t, "xz-utils", vmlinux, "xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c")
			return fakeBzImage(sizeAppended(c, len(vmlinux)))
		}},
		{name: "bzImage lzma", data: func(t *testing.T) []byte {
			c := tool(t, "xz-utils", vmlinux, "xz", "--format=lzma", "-9", "-c")
			return fakeBzImage(sizeAppended(c, len(vmlinux)))
		}},
		{name: "bzImage lz4", data: func(t *testing.T) []byte { return fakeBzImage(sizeAppended(lz4Legacy(t, vmlinux), len(vmlinux))) }},
		{name: "bzImage bzip2", data: func(t *testing.T) []byte {
			return fakeBzImage(sizeAppended(tool(t, "bzip2", vmlinux, "bzip2", "-c"), len(vmlinux)))
		}},
		{name: "unknown image layout, gzip payload found by scanning", data: func(t *testing.T) []byte {
			return append(append([]byte("\x00\x01junk-header\x00"), gz(t, vmlinux)...), 0, 0, 0)
		}},
		{name: "empty", data: func(*testing.T) []byte { return nil }, errSubstr: "is empty"},
		{name: "binary junk", data: func(*testing.T) []byte {
			b := make([]byte, 4096)
			rand.New(rand.NewSource(2)).Read(b)
			b[0] = 0
			return b
		}, errSubstr: "is a binary file, not a kernel config"},
		{name: "image without IKCONFIG", data: func(t *testing.T) []byte { return fakeBzImage(gz(t, bare)) },
			errSubstr: "kernel image without an embedded config"},
		{name: "corrupt gzip", data: func(t *testing.T) []byte {
			g := gz(t, []byte(sampleConfig))
			return g[:len(g)/2]
		}, errSubstr: "gzip data is corrupt"},
		{name: "gzip of junk text", data: func(t *testing.T) []byte { return gz(t, []byte("hello\nworld\n")) },
			errSubstr: "is not a kernel config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromBytes(tt.data(t), "INPUT")
			if tt.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSubstr) {
					t.Fatalf("FromBytes error = %v, want %q", err, tt.errSubstr)
				}
				if !strings.Contains(err.Error(), "INPUT") {
					t.Errorf("error %q does not name the input", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromBytes: %v", err)
			}
			if c.State("CHECKPOINT_RESTORE") != Enabled || c.State("UNIX_DIAG") != Module || c.State("NETLINK_DIAG") != Missing {
				t.Errorf("options not read right: %v", c.Values)
			}
			if c.Version != "6.18.35" || c.Arch != "x86_64" || c.Source != "INPUT" {
				t.Errorf("Version, Arch, Source = %q, %q, %q", c.Version, c.Arch, c.Source)
			}
		})
	}
}

// TestBCJRoundTrip checks the xz decoder's x86 BCJ filter against xz's
// encoder on real x86 machine code: the test binary itself.
func TestBCJRoundTrip(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) > 4<<20 {
		code = code[:4<<20]
	}
	comp := tool(t, "xz-utils", code, "xz", "--format=xz", "--x86", "--lzma2=preset=1", "-c")
	// ulikunitz/xz reads only plain LZMA2 blocks: that it refuses the
	// stream shows the x86 filter is there to undo.
	if xr, err := xz.NewReader(bytes.NewReader(comp)); err == nil {
		if _, err := io.Copy(io.Discard, xr); err == nil {
			t.Fatal("xz --x86 output not recognised as BCJ")
		}
	}
	out, err := decompress(compXZ, comp, maxInput, true)
	if err != nil {
		t.Fatalf("decompress: %v", err)
	}
	if !bytes.Equal(out, code) {
		for i := range code {
			if i >= len(out) || out[i] != code[i] {
				t.Fatalf("BCJ round trip differs at byte %d of %d (got %d bytes)", i, len(code), len(out))
			}
		}
		t.Fatalf("BCJ round trip: got %d bytes, want %d", len(out), len(code))
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gzPath := write("config.gz", gz(t, []byte(sampleConfig)), 0o644)
	if c, err := Load(gzPath); err != nil || c.State("CHECKPOINT_RESTORE") != Enabled {
		t.Errorf("Load(config.gz) = %v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Load(missing) error = %v, want one naming the file", err)
	}
	if os.Geteuid() != 0 {
		unreadable := write("secret", []byte(sampleConfig), 0o000)
		if _, err := Load(unreadable); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("Load(unreadable) error = %v", err)
		}
	}
	empty := filepath.Join(dir, "emptydir")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(empty); err == nil || !strings.Contains(err.Error(), "without a common/ fragment directory") {
		t.Errorf("Load(empty dir) error = %v", err)
	}
}

func TestRunning(t *testing.T) {
	proc := t.TempDir()
	if _, err := Running(proc, ""); err == nil || !strings.Contains(err.Error(), "config.gz") {
		t.Errorf("Running without config.gz: error = %v, want one naming what was tried", err)
	}
	if err := os.WriteFile(filepath.Join(proc, "config.gz"), gz(t, []byte(sampleConfig)), 0o444); err != nil {
		t.Fatal(err)
	}
	c, err := Running(proc, "6.18.35")
	if err != nil {
		t.Fatalf("Running: %v", err)
	}
	if c.Source != filepath.Join(proc, "config.gz") || c.State("CHECKPOINT_RESTORE") != Enabled {
		t.Errorf("Running read %s: %v", c.Source, c.Values)
	}
	if err := os.WriteFile(filepath.Join(proc, "config.gz"), []byte("\x1f\x8b\x08junk"), 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := Running(proc, ""); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Running with a corrupt config.gz: error = %v", err)
	}
}
