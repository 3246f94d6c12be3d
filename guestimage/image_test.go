package guestimage

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/u-root/mkuimage/cpio"

	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// cachedKernel is the Debian 6.1 kernel make guest-kernel fetches: a real
// modules.dep to resolve against.
func cachedKernel(t testing.TB) *kernel.Guest {
	t.Helper()
	k, err := kernel.Find(kernel.FindOptions{Version: "6.1"})
	if err != nil {
		t.Fatalf("no cached Debian 6.1 kernel (run scripts/install-deps.sh and make guest-kernels): %v", err)
	}
	if k.ModulesDir == "" {
		t.Fatalf("cached kernel %s has no modules directory", k.Image)
	}
	return k
}

func TestResolveModules(t *testing.T) {
	k := cachedKernel(t)
	m, err := ResolveModules(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	names := m.Names()
	t.Logf("modules for %s: %v", k.Release, names)
	before := func(a, b string) {
		t.Helper()
		i, j := slices.Index(names, a), slices.Index(names, b)
		if i < 0 || j < 0 || i > j {
			t.Errorf("want %s loaded before %s in %v", a, b, names)
		}
	}
	// Debian builds the virtio transport and console as modules.
	if !slices.Equal(m.Agent, []string{"virtio_pci", "virtio_console"}) {
		t.Errorf("agent modules %v", m.Agent)
	}
	before("virtio", "virtio_console")
	before("virtio_ring", "virtio_pci")
	// nf_tables needs nfnetlink and libcrc32c, which needs a crc32c
	// provider (a soft dependency through an alias).
	before("nfnetlink", "nf_tables")
	before("libcrc32c", "nf_tables")
	before("crc32c_generic", "libcrc32c")
	before("x_tables", "xt_mark")
	for _, n := range kernel.CRIUModules() {
		if !slices.Contains(m.CRIU, n) && !slices.Contains(m.Missing, n) {
			t.Errorf("CRIU module %s neither shipped nor missing", n)
		}
		if !slices.Contains(names, n) && !slices.Contains(m.Missing, n) {
			t.Errorf("CRIU module %s not in the closure %v", n, names)
		}
	}
	if len(m.Missing) > 0 {
		t.Errorf("Debian 6.1 builds every CRIU module, missing %v", m.Missing)
	}
	for _, f := range m.Files {
		if _, err := os.Stat(filepath.Join(k.ModulesDir, f.Path)); err != nil {
			t.Errorf("module file: %v", err)
		}
	}
}

func TestResolveModulesErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ResolveModules(dir); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("no modules.dep: error %v", err)
	}
	// A kernel without virtio_console cannot host the agent.
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("kernel/net/unix/unix_diag.ko:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveModules(dir); err == nil || !strings.Contains(err.Error(), "virtio_pci") {
		t.Errorf("no virtio: error %v", err)
	}
}

// TestDepmodIndex checks that the cut-down depmod files resolve, in the
// guest's modules directory, the same closure as the kernel's own.
func TestDepmodIndex(t *testing.T) {
	k := cachedKernel(t)
	m, err := ResolveModules(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	guest := t.TempDir()
	written, err := m.depmodIndex(guest)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"modules.dep", "modules.alias", "modules.softdep", "modules.builtin"} {
		if !slices.Contains(written, want) {
			t.Errorf("%s not written: %v", want, written)
		}
	}
	dep, err := os.ReadFile(filepath.Join(guest, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(dep), "\n"); n != len(m.Files) {
		t.Errorf("guest modules.dep has %d lines, want one per shipped module (%d)", n, len(m.Files))
	}
	for _, f := range m.Files {
		src := filepath.Join(k.ModulesDir, f.Path)
		dst := filepath.Join(guest, f.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(src, dst); err != nil {
			t.Fatal(err)
		}
	}
	host, err := kernel.LoadModulesDep(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	in, err := kernel.LoadModulesDep(guest)
	if err != nil {
		t.Fatal(err)
	}
	all := append(append(append([]string{}, m.Agent...), m.CRIU...), m.Optional...)
	want, err := host.Closure(all...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := in.Closure(all...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("closure in the guest\n%v\nwant\n%v", got, want)
	}
	if in.Has("xfs") {
		t.Errorf("a module not shipped (xfs) is present in the guest's index")
	}
}

func TestParseInclude(t *testing.T) {
	tests := []struct {
		in        string
		want      ExtraFile
		wantError string
	}{
		{"/usr/bin/stress", ExtraFile{"/usr/bin/stress", "/usr/bin/stress"}, ""},
		{"/opt/app/run:/usr/local/bin/run", ExtraFile{"/opt/app/run", "/usr/local/bin/run"}, ""},
		{"/opt/x:/a/../b", ExtraFile{"/opt/x", "/b"}, ""},
		{":/x", ExtraFile{}, "give HOST"},
		{"/opt/x:relative", ExtraFile{}, "must be absolute"},
	}
	for _, tt := range tests {
		got, err := ParseInclude(tt.in)
		if tt.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantError) {
				t.Errorf("ParseInclude(%q) error %v, want %q", tt.in, err, tt.wantError)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseInclude(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

// TestAgentSourceHash checks that the key follows the agent's source: a
// change in a package the agent imports changes it, a change elsewhere in
// the tree does not.
func TestAgentSourceHash(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"go.mod":                      "module " + modulePath + "\n\ngo 1.26\n",
		"go.sum":                      "",
		"cmd/kata-cr-agent/main.go":   "package main\n\nimport _ \"" + modulePath + "/runtime/agentapi\"\n\nfunc main() {}\n",
		"cmd/kata-cr-agent/x_test.go": "package main\n",
		"runtime/agentapi/proto.go":   "package agentapi\n\nimport _ \"" + modulePath + "/reports\"\n",
		"reports/report.go":           "package reports\n",
		"cmd/root.go":                 "package cmd\n",
	}
	write := func(name, data string) {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for n, d := range files {
		write(n, d)
	}
	hash := func() string {
		h := newTestHash()
		if err := hashAgentSource(h, src); err != nil {
			t.Fatal(err)
		}
		return h.String()
	}
	h0 := hash()
	write("cmd/root.go", "package cmd\n\n// not in the agent\n")
	write("cmd/kata-cr-agent/x_test.go", "package main\n\n// a test\n")
	if h := hash(); h != h0 {
		t.Errorf("changing files the agent does not build from changed the hash")
	}
	write("reports/report.go", "package reports\n\n// changed\n")
	if h := hash(); h == h0 {
		t.Errorf("changing a package the agent imports (through agentapi) kept the hash")
	}
	if !isSourceRoot(src) || isSourceRoot(t.TempDir()) {
		t.Errorf("isSourceRoot is wrong")
	}
}

// testHash records what is hashed, so that the test compares the inputs.
type testHash struct{ bytes.Buffer }

func newTestHash() *testHash                    { return &testHash{} }
func (h *testHash) Sum(b []byte) []byte         { return append(b, h.Bytes()...) }
func (h *testHash) Size() int                   { return h.Len() }
func (h *testHash) BlockSize() int              { return 1 }
func (h *testHash) Reset()                      { h.Buffer.Reset() }
func (h *testHash) Write(p []byte) (int, error) { return h.Buffer.Write(p) }

// readArchive returns the records of a cpio file by name.
func readArchive(t *testing.T, path string) map[string]cpio.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]cpio.Record{}
	for _, r := range recs {
		out[r.Name] = r
	}
	return out
}

func recordBytes(t *testing.T, r cpio.Record) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuild builds a real image for the cached 6.1 kernel into a fresh
// cache, looks inside, and builds it again from the cache.
func TestBuild(t *testing.T) {
	k := cachedKernel(t)
	cache := t.TempDir()
	spec := Spec{CacheDir: cache, KernelRelease: k.Release, ModulesDir: k.ModulesDir, KernelConfig: k.Config, Logf: t.Logf}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	img, cached, err := Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if cached {
		t.Errorf("first build in an empty cache reported cached")
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s: %.1f MB in %s", img, float64(fi.Size())/1e6, time.Since(start).Round(time.Millisecond))

	recs := readArchive(t, img)
	mode := func(name string) os.FileMode {
		r, ok := recs[name]
		if !ok {
			t.Errorf("%s not in the image", name)
			return 0
		}
		return os.FileMode(r.Mode & 0o7777)
	}
	for _, name := range []string{"init", "bin/kata-cr-agent", "bin/busybox", "usr/sbin/criu", "usr/bin/tar",
		"lib64/ld-linux-x86-64.so.2", "lib/modules/" + k.Release + "/kernel/net/unix/unix_diag.ko",
		"lib/modules/" + k.Release + "/kernel/drivers/char/virtio_console.ko",
		"lib/modules/" + k.Release + "/modules.dep", "boot/config-" + k.Release, "dev/console"} {
		mode(name)
	}
	if m := mode("bin/kata-cr-agent"); m&0o111 == 0 {
		t.Errorf("agent mode %v is not executable", m)
	}
	for _, link := range []string{"bin/uinit", "bin/kata-cr-testload"} {
		if r := recs[link]; string(recordBytes(t, r)) != "kata-cr-agent" {
			t.Errorf("%s does not link to the agent", link)
		}
	}
	if r, ok := recs["bin/tar"]; ok {
		t.Errorf("bin/tar is in the image (%s): busybox's tar must not shadow GNU tar", recordBytes(t, r))
	}
	if _, ok := recs["bin/sh"]; !ok {
		t.Errorf("no bin/sh")
	}
	// u-root's init runs /bin/defaultsh when the agent is gone: it must
	// power off rather than wait on the console.
	if sh := string(recordBytes(t, recs["bin/defaultsh"])); !strings.Contains(sh, "poweroff -f") {
		t.Errorf("bin/defaultsh does not power off: %q", sh)
	}
	if _, ok := recs["lib/modules/"+k.Release+"/kernel/fs/xfs/xfs.ko"]; ok {
		t.Errorf("a module CRIU does not need (xfs) is in the image")
	}

	// The agent must be static: the guest has no loader for it.
	agent := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(agent, recordBytes(t, recs["bin/kata-cr-agent"]), 0o755); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(agent)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the agent is dynamically linked")
		}
	}
	ef.Close()

	var m agentapi.Manifest
	if err := json.Unmarshal(recordBytes(t, recs[strings.TrimPrefix(agentapi.ManifestPath, "/")]), &m); err != nil {
		t.Fatal(err)
	}
	if m.KernelRelease != k.Release || m.CRIU != "/usr/sbin/criu" || m.Tar != "/usr/bin/tar" ||
		m.ModulesDir != "/lib/modules/"+k.Release || m.KernelConfig != "/boot/config-"+k.Release {
		t.Errorf("manifest %+v", m)
	}
	if !slices.Contains(m.CRIUModules, "unix_diag") || !slices.Contains(m.AgentModules, "virtio_console") {
		t.Errorf("manifest modules: agent %v, criu %v", m.AgentModules, m.CRIUModules)
	}

	// Same inputs: from the cache, well under a second.
	start = time.Now()
	again, cached, err := Build(ctx, spec)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if !cached || again != img {
		t.Errorf("second build: %s cached=%v, want %s from the cache", again, cached, img)
	}
	if took > time.Second {
		t.Errorf("cached build took %s, want well under a second", took)
	}
	t.Logf("cached build in %s", took.Round(time.Microsecond))

	// A truncated image (a build killed, a full disk) is found and built
	// again, then used from the cache.
	if err := os.Truncate(img, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	rebuilt, cached, err := Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if cached || rebuilt != img {
		t.Errorf("after truncation: %s cached=%v, want %s built again", rebuilt, cached, img)
	}
	if fi2, err := os.Stat(img); err != nil || fi2.Size() != fi.Size() {
		t.Errorf("the rebuilt image is %v bytes (%v), want %d", fi2.Size(), err, fi.Size())
	}
	if _, cached, _ := Build(ctx, spec); !cached {
		t.Error("the rebuilt image is not taken from the cache")
	}

	// A different input is a different image.
	spec.KernelConfig = ""
	in1, err := resolve(spec)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := in1.key()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(img, k1[:20]) {
		t.Errorf("dropping the kernel config kept the key")
	}
	leftovers, _ := filepath.Glob(filepath.Join(cache, "images", ".build-*"))
	if len(leftovers) > 0 {
		t.Errorf("build left %v", leftovers)
	}
}

func TestBuildErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"dynamic busybox", Spec{Busybox: "/bin/ls"}, "busybox-static"},
		{"missing busybox", Spec{Busybox: "/nonexistent/busybox"}, "busybox-static"},
		{"missing include", Spec{Extra: []ExtraFile{{Host: "/nonexistent/file", Guest: "/x"}}}, "/nonexistent/file"},
		{"missing prebuilt agent", Spec{AgentBinary: "/nonexistent/agent"}, "/nonexistent/agent"},
		{"missing criu", Spec{CRIUPath: "/nonexistent/criu"}, "/nonexistent/criu"},
		{"virtio console module without modules", Spec{KernelConfig: "testdata/config-virtio-m", KernelRelease: "6.1.0-test"}, "--modules"},
		{"no virtio console", Spec{KernelConfig: "testdata/config-no-virtio", KernelRelease: "6.1.0-test"}, "CONFIG_VIRTIO_PCI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.CacheDir = t.TempDir()
			_, _, err := Build(ctx, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestFindSource(t *testing.T) {
	src, err := FindSource()
	if err != nil {
		t.Fatal(err)
	}
	if !isSourceRoot(src) {
		t.Errorf("FindSource = %s, not the source root", src)
	}
	t.Setenv("KATA_CR_SRC", t.TempDir())
	if _, err := FindSource(); err == nil || !strings.Contains(err.Error(), "KATA_CR_SRC") {
		t.Errorf("bad KATA_CR_SRC: error %v", err)
	}
}

func TestBuildBare(t *testing.T) {
	cache := t.TempDir()
	p, err := BuildBare(cache, "")
	if err != nil {
		t.Fatal(err)
	}
	recs := readArchive(t, p)
	if !strings.Contains(string(recordBytes(t, recs["init"])), vm.BareMarker) {
		t.Errorf("init does not print the marker")
	}
	if _, ok := recs["bin/busybox"]; !ok {
		t.Errorf("no busybox")
	}
	again, err := BuildBare(cache, "")
	if err != nil || again != p {
		t.Errorf("second build %s, %v; want the cached %s", again, err, p)
	}
	if _, err := BuildBare(cache, "/bin/ls"); err == nil {
		t.Errorf("a dynamic busybox was accepted")
	}
}

// BenchmarkCachedBuild measures a build whose image is cached: resolving
// the inputs, hashing the agent's source and stating the files.
func BenchmarkCachedBuild(b *testing.B) {
	k := cachedKernel(b)
	spec := Spec{KernelRelease: k.Release, ModulesDir: k.ModulesDir, KernelConfig: k.Config}
	if _, _, err := Build(context.Background(), spec); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_, cached, err := Build(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		if !cached {
			b.Fatal(errors.New("not cached"))
		}
	}
}

// TestSeal: a sealed entry passes; truncated, grown, changed at either end
// or without its seal it is damaged; a missing one is not there.
func TestSeal(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "guest-x.cpio")
	data := make([]byte, 3*fingerprintSpan+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(data)
	if err := seal(p); err != nil {
		t.Fatal(err)
	}
	if err := checkSealed(p); err != nil {
		t.Fatalf("a sealed entry: %v", err)
	}
	changed := func(i int) []byte { b := append([]byte(nil), data...); b[i]++; return b }
	for name, b := range map[string][]byte{
		"truncated":        data[:len(data)-4096],
		"grown":            append(append([]byte(nil), data...), 0),
		"changed at start": changed(10),
		"changed at end":   changed(len(data) - 10),
	} {
		write(b)
		if err := checkSealed(p); !errors.Is(err, errDamaged) {
			t.Errorf("%s: %v, want damaged", name, err)
		}
	}
	write(data)
	os.Remove(p + sealSuffix)
	if err := checkSealed(p); !errors.Is(err, errDamaged) {
		t.Errorf("no seal: %v, want damaged", err)
	}
	discard(p)
	if err := checkSealed(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("discarded: %v, want not there", err)
	}
}

// TestBuildConcurrent: two builds of the same image into one empty cache at
// once (two kata-cr processes) both get the one complete, sealed image.
func TestBuildConcurrent(t *testing.T) {
	k := cachedKernel(t)
	spec := Spec{CacheDir: t.TempDir(), KernelRelease: k.Release, ModulesDir: k.ModulesDir, KernelConfig: k.Config, Logf: t.Logf}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type result struct {
		path   string
		cached bool
		err    error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			p, cached, err := Build(ctx, spec)
			results <- result{p, cached, err}
		}()
	}
	a, b := <-results, <-results
	if a.err != nil || b.err != nil {
		t.Fatalf("builds: %v, %v", a.err, b.err)
	}
	if a.path != b.path || a.cached == b.cached {
		t.Errorf("builds gave %s (cached %v) and %s (cached %v): want one image, built once", a.path, a.cached, b.path, b.cached)
	}
	if err := checkSealed(a.path); err != nil {
		t.Errorf("the image is not complete: %v", err)
	}
	readArchive(t, a.path)
	left, _ := filepath.Glob(filepath.Join(spec.CacheDir, "images", "*tmp*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
