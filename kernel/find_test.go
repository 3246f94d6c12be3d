package kernel

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeFindBzImage is the smallest file with an x86 setup header that carries
// a kernel_version string, as the kernel's boot protocol lays it out.
func fakeFindBzImage(version string) []byte {
	b := make([]byte, 0x400)
	b[0x1FE], b[0x1FF] = 0x55, 0xAA
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020F)
	binary.LittleEndian.PutUint16(b[0x20E:], 0x100)
	copy(b[0x300:], version+"\x00")
	return b
}

// fakeFindVmlinux is an ELF header followed by padding and linux_banner, far
// enough in to cross bannerRelease's read chunks.
func fakeFindVmlinux(release string) []byte {
	b := append([]byte("\x7fELF\x02\x01\x01"), bytes.Repeat([]byte{0}, 1<<20-10)...)
	b = append(b, "Linux version %s (%s@%s) garbage"...)
	return append(b, "\x00Linux version "+release+" (kata@builder) (gcc) #1 SMP\n\x00"...)
}

type fakeFile struct {
	path, data, link string
}

// makeTree writes files under root, replacing @ROOT@ in their paths,
// contents and link targets.
func makeTree(t *testing.T, root string, files []fakeFile) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(root, strings.ReplaceAll(f.path, "@ROOT@", root))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if f.link != "" {
			err = os.Symlink(strings.ReplaceAll(f.link, "@ROOT@", root), p)
		} else {
			err = os.WriteFile(p, []byte(strings.ReplaceAll(f.data, "@ROOT@", root)), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func kataTestdata(t *testing.T, name, dest string) fakeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name, "configuration.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return fakeFile{path: dest, data: string(b)}
}

const (
	etcKata   = "/etc/kata-containers/configuration.toml"
	shareKata = "/usr/share/defaults/kata-containers/configuration.toml"
	optKata   = "/opt/kata/share/defaults/kata-containers/configuration.toml"
)

// cacheFiles is the layout scripts/fetch-kernel.sh leaves for one version.
func cacheFiles(version, release string) []fakeFile {
	dir := "/cache/kernels/" + version
	return []fakeFile{
		{path: dir + "/vmlinuz", data: string(fakeFindBzImage(release + " (debian-kernel@lists.debian.org) #1 SMP Debian"))},
		{path: dir + "/config", data: "CONFIG_CHECKPOINT_RESTORE=y\n"},
		{path: dir + "/release", data: release + "\n"},
		{path: dir + "/package", data: "linux-image-" + release + " 1.0-1\n"},
		{path: dir + "/modules/" + release + "/modules.dep", data: "kernel/net/unix/unix_diag.ko:\n"},
	}
}

func TestFindKernel(t *testing.T) {
	kataQemuFiles := func(t *testing.T, at string) []fakeFile {
		return []fakeFile{
			kataTestdata(t, "kata-qemu", at),
			{path: "/opt/kata/share/kata-containers/vmlinuz-6.18.5-175", data: string(fakeFindBzImage("6.18.5 (kata@build) #1 SMP"))},
			{path: "/opt/kata/share/kata-containers/vmlinuz.container", link: "vmlinuz-6.18.5-175"},
			{path: "/opt/kata/share/kata-containers/config-6.18.5-175", data: "CONFIG_PID_NS=y\n"},
			{path: "/opt/kata/share/kata-containers/config-6.12.1-150", data: "CONFIG_PID_NS=y\n"},
		}
	}
	tests := []struct {
		name  string
		files func(t *testing.T) []fakeFile
		opts  FindOptions // paths may use @ROOT@; nil KataConfigPaths means all three under the root
		want  Guest
		kata  *KataHypervisor
	}{
		{
			name: "kata qemu via opt, symlinked versioned kernel and its config",
			files: func(t *testing.T) []fakeFile {
				return append(kataQemuFiles(t, optKata), cacheFiles("6.1", "6.1.0-99-amd64")...)
			},
			want: Guest{
				Image:   "@ROOT@/opt/kata/share/kata-containers/vmlinuz-6.18.5-175",
				Config:  "@ROOT@/opt/kata/share/kata-containers/config-6.18.5-175",
				Release: "6.18.5",
				Source:  "kata: @ROOT@" + optKata,
			},
			kata: &KataHypervisor{
				ConfigPath:   "@ROOT@" + optKata,
				Name:         "qemu",
				Path:         "@ROOT@/opt/kata/bin/qemu-system-x86_64",
				Kernel:       "@ROOT@/opt/kata/share/kata-containers/vmlinuz.container",
				Image:        "@ROOT@/opt/kata/share/kata-containers/kata-containers.img",
				KernelParams: "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1",
				MachineType:  "q35",
			},
		},
		{
			name: "etc wins over usr/share",
			files: func(t *testing.T) []fakeFile {
				return append(kataQemuFiles(t, etcKata), kataTestdata(t, "kata-broken", shareKata))
			},
			want: Guest{
				Image:   "@ROOT@/opt/kata/share/kata-containers/vmlinuz-6.18.5-175",
				Config:  "@ROOT@/opt/kata/share/kata-containers/config-6.18.5-175",
				Release: "6.18.5",
				Source:  "kata: @ROOT@" + etcKata,
			},
		},
		{
			name: "kata clh only, ELF vmlinux, the one config in the directory",
			files: func(t *testing.T) []fakeFile {
				return []fakeFile{
					kataTestdata(t, "kata-clh", shareKata),
					{path: "/usr/share/kata-containers/vmlinux-6.12.28-153", data: string(fakeFindVmlinux("6.12.28"))},
					{path: "/usr/share/kata-containers/vmlinux.container", link: "@ROOT@/usr/share/kata-containers/vmlinux-6.12.28-153"},
					{path: "/usr/share/kata-containers/config-6.12.28-kata", data: "CONFIG_PID_NS=y\n"},
				}
			},
			want: Guest{
				Image:   "@ROOT@/usr/share/kata-containers/vmlinux-6.12.28-153",
				Config:  "@ROOT@/usr/share/kata-containers/config-6.12.28-kata",
				Release: "6.12.28",
				Source:  "kata: @ROOT@" + shareKata,
			},
			kata: &KataHypervisor{
				ConfigPath:   "@ROOT@" + shareKata,
				Name:         "clh",
				Path:         "@ROOT@/usr/bin/cloud-hypervisor",
				Kernel:       "@ROOT@/usr/share/kata-containers/vmlinux.container",
				Initrd:       "@ROOT@/usr/share/kata-containers/kata-containers-initrd.img",
				KernelParams: "systemd.unit=kata-containers.target",
			},
		},
		{
			name: "no kata: the default cached kernel",
			files: func(*testing.T) []fakeFile {
				return append(cacheFiles("6.1", "6.1.0-99-amd64"), cacheFiles("7.3", "7.3.4+deb13-amd64")...)
			},
			want: Guest{
				Image:      "@ROOT@/cache/kernels/6.1/vmlinuz",
				Config:     "@ROOT@/cache/kernels/6.1/config",
				ModulesDir: "@ROOT@/cache/kernels/6.1/modules/6.1.0-99-amd64",
				Release:    "6.1.0-99-amd64",
				Source:     "cache: @ROOT@/cache/kernels/6.1 (linux-image-6.1.0-99-amd64 1.0-1)",
			},
		},
		{
			name: "version picks a cached kernel over kata",
			files: func(t *testing.T) []fakeFile {
				return append(kataQemuFiles(t, etcKata), cacheFiles("7.3", "7.3.4+deb13-amd64")...)
			},
			opts: FindOptions{Version: "7.3"},
			want: Guest{
				Image:      "@ROOT@/cache/kernels/7.3/vmlinuz",
				Config:     "@ROOT@/cache/kernels/7.3/config",
				ModulesDir: "@ROOT@/cache/kernels/7.3/modules/7.3.4+deb13-amd64",
				Release:    "7.3.4+deb13-amd64",
				Source:     "cache: @ROOT@/cache/kernels/7.3 (linux-image-7.3.4+deb13-amd64 1.0-1)",
			},
		},
		{
			name: "kernel flag beats kata, config beside it, modules from a root",
			files: func(t *testing.T) []fakeFile {
				return append(kataQemuFiles(t, etcKata),
					fakeFile{path: "/k/vmlinuz-6.1.0-7-amd64", data: string(fakeFindBzImage("6.1.0-7-amd64 (x@y) #1"))},
					fakeFile{path: "/k/config-6.1.0-7-amd64", data: "CONFIG_PID_NS=y\n"},
					fakeFile{path: "/rootfs/usr/lib/modules/6.1.0-7-amd64/modules.dep", data: ""},
				)
			},
			opts: FindOptions{Kernel: "@ROOT@/k/vmlinuz-6.1.0-7-amd64", Modules: "@ROOT@/rootfs"},
			want: Guest{
				Image:      "@ROOT@/k/vmlinuz-6.1.0-7-amd64",
				Config:     "@ROOT@/k/config-6.1.0-7-amd64",
				ModulesDir: "@ROOT@/rootfs/usr/lib/modules/6.1.0-7-amd64",
				Release:    "6.1.0-7-amd64",
				Source:     "flag: --kernel",
			},
		},
		{
			name: "kernel flag with explicit config and modules directory",
			files: func(*testing.T) []fakeFile {
				return []fakeFile{
					{path: "/k/bzImage", data: string(fakeFindBzImage("7.0.0 (x@y) #1"))},
					{path: "/k/my.config", data: "CONFIG_PID_NS=y\n"},
					{path: "/mods/modules.dep", data: ""},
				}
			},
			opts: FindOptions{Kernel: "@ROOT@/k/bzImage", Config: "@ROOT@/k/my.config", Modules: "@ROOT@/mods"},
			want: Guest{
				Image:      "@ROOT@/k/bzImage",
				Config:     "@ROOT@/k/my.config",
				ModulesDir: "@ROOT@/mods",
				Release:    "7.0.0",
				Source:     "flag: --kernel",
			},
		},
		{
			name: "config override for a cached kernel",
			files: func(*testing.T) []fakeFile {
				return append(cacheFiles("6.1", "6.1.0-99-amd64"), fakeFile{path: "/other.config", data: "X=y\n"})
			},
			opts: FindOptions{Config: "@ROOT@/other.config"},
			want: Guest{
				Image:      "@ROOT@/cache/kernels/6.1/vmlinuz",
				Config:     "@ROOT@/other.config",
				ModulesDir: "@ROOT@/cache/kernels/6.1/modules/6.1.0-99-amd64",
				Release:    "6.1.0-99-amd64",
				Source:     "cache: @ROOT@/cache/kernels/6.1 (linux-image-6.1.0-99-amd64 1.0-1)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			makeTree(t, root, tt.files(t))
			got, err := Find(testOptions(root, tt.opts))
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			sub := func(s string) string { return strings.ReplaceAll(s, "@ROOT@", root) }
			want := Guest{Image: sub(tt.want.Image), Config: sub(tt.want.Config), ModulesDir: sub(tt.want.ModulesDir),
				Release: tt.want.Release, Source: sub(tt.want.Source)}
			gotKata := got.Kata
			got.Kata = nil
			if *got != want {
				t.Errorf("Find:\n got %+v\nwant %+v", *got, want)
			}
			if tt.kata != nil {
				wk := *tt.kata
				for _, p := range []*string{&wk.ConfigPath, &wk.Path, &wk.Kernel, &wk.Image, &wk.Initrd} {
					*p = sub(*p)
				}
				if gotKata == nil || *gotKata != wk {
					t.Errorf("Kata:\n got %+v\nwant %+v", gotKata, wk)
				}
			}
		})
	}
}

// testOptions points the options at root: the cache at root/cache and
// Kata's three places under root.
func testOptions(root string, o FindOptions) FindOptions {
	sub := func(s string) string { return strings.ReplaceAll(s, "@ROOT@", root) }
	o.Kernel, o.Config, o.Modules = sub(o.Kernel), sub(o.Config), sub(o.Modules)
	o.CacheDir = filepath.Join(root, "cache")
	if o.KataConfigPaths == nil {
		for _, p := range DefaultKataConfigPaths {
			o.KataConfigPaths = append(o.KataConfigPaths, filepath.Join(root, p))
		}
	}
	return o
}

func TestFindKernelErrors(t *testing.T) {
	tests := []struct {
		name  string
		files []fakeFile
		opts  FindOptions
		want  []string // substrings of the error, @ROOT@ replaced
	}{
		{
			name: "missing kernel file",
			opts: FindOptions{Kernel: "@ROOT@/nope/vmlinuz"},
			want: []string{"--kernel @ROOT@/nope/vmlinuz: no such file"},
		},
		{
			name:  "text file as kernel",
			files: []fakeFile{{path: "/notes.txt", data: "this is not a kernel, just some text that is long enough\n"}},
			opts:  FindOptions{Kernel: "@ROOT@/notes.txt"},
			want:  []string{"--kernel @ROOT@/notes.txt: not a Linux kernel image", `"HdrS"`},
		},
		{
			name:  "empty file as kernel",
			files: []fakeFile{{path: "/empty", data: ""}},
			opts:  FindOptions{Kernel: "@ROOT@/empty"},
			want:  []string{"--kernel @ROOT@/empty: not a Linux kernel image"},
		},
		{
			name:  "ELF that is not a kernel",
			files: []fakeFile{{path: "/bin-true", data: "\x7fELF\x02\x01\x01" + strings.Repeat("x", 5000)}},
			opts:  FindOptions{Kernel: "@ROOT@/bin-true"},
			want:  []string{"--kernel @ROOT@/bin-true:", "not a Linux kernel"},
		},
		{
			name:  "directory as kernel",
			files: []fakeFile{{path: "/d/x", data: ""}},
			opts:  FindOptions{Kernel: "@ROOT@/d"},
			want:  []string{"--kernel @ROOT@/d: not a regular file"},
		},
		{
			name:  "missing kernel config",
			files: []fakeFile{{path: "/k/bzImage", data: string(fakeFindBzImage("6.1.0 #1"))}},
			opts:  FindOptions{Kernel: "@ROOT@/k/bzImage", Config: "@ROOT@/k/nope"},
			want:  []string{"--kernel-config @ROOT@/k/nope: no such file"},
		},
		{
			name: "modules without modules.dep",
			files: []fakeFile{
				{path: "/k/bzImage", data: string(fakeFindBzImage("6.1.0 #1"))},
				{path: "/mods/6.1.0/kernel/x.ko", data: ""},
			},
			opts: FindOptions{Kernel: "@ROOT@/k/bzImage", Modules: "@ROOT@/mods"},
			want: []string{"--modules @ROOT@/mods: no modules.dep for 6.1.0", "depmod"},
		},
		{
			name: "kernel and version together",
			opts: FindOptions{Kernel: "@ROOT@/k", Version: "6.1"},
			want: []string{"--kernel @ROOT@/k and kernel version 6.1 both given"},
		},
		{
			name: "nothing anywhere",
			want: []string{"no guest kernel: no --kernel, no Kata configuration, and no cached 6.1 kernel in @ROOT@/cache/kernels/6.1: run `make guest-kernel`"},
		},
		{
			name:  "version not fetched",
			files: cacheFiles("6.1", "6.1.0-99-amd64"),
			opts:  FindOptions{Version: "7.3"},
			want:  []string{"no guest kernel: no cached 7.3 kernel in @ROOT@/cache/kernels/7.3: run `make guest-kernel KERNEL=7.3`"},
		},
		{
			name: "unknown version",
			opts: FindOptions{Version: "../../etc"},
			want: []string{`unknown kernel version "../../etc": use one of 6.1, 6.12, 7.3`},
		},
		{
			name: "cached kernel corrupt",
			files: append(cacheFiles("6.1", "6.1.0-99-amd64")[1:],
				fakeFile{path: "/cache/kernels/6.1/vmlinuz", data: "<html>proxy error</html>"}),
			want: []string{"cached kernel @ROOT@/cache/kernels/6.1/vmlinuz: not a Linux kernel image", "remove @ROOT@/cache/kernels/6.1"},
		},
		{
			name:  "cached kernel without modules",
			files: cacheFiles("6.1", "6.1.0-99-amd64")[:4],
			want:  []string{"cached kernel @ROOT@/cache/kernels/6.1 is incomplete", "modules.dep: no such file"},
		},
		{
			name: "kata names a missing kernel",
			files: []fakeFile{
				{path: etcKata, data: "[hypervisor.qemu]\nkernel = \"@ROOT@/usr/share/kata-containers/vmlinuz.container\"\n"},
				{path: "/usr/share/kata-containers/vmlinuz.container", link: "vmlinuz-6.18.5-175"},
			},
			want: []string{"kata configuration @ROOT@" + etcKata + ": kernel @ROOT@/usr/share/kata-containers/vmlinuz.container: no such file"},
		},
		{
			name:  "kata configuration is not toml",
			files: []fakeFile{{path: shareKata, data: mustRead(t, "testdata/kata-broken/configuration.toml")}},
			want:  []string{"read kata configuration @ROOT@" + shareKata + ":"},
		},
		{
			name:  "kata configuration with two hypervisors and no qemu",
			files: []fakeFile{{path: optKata, data: mustRead(t, "testdata/kata-two/configuration.toml")}},
			want:  []string{"no [hypervisor.qemu] section (found 2 hypervisor sections: clh, firecracker)"},
		},
		{
			name:  "kata configuration without kernel",
			files: []fakeFile{{path: etcKata, data: "[hypervisor.qemu]\npath = \"/usr/bin/qemu\"\n"}},
			want:  []string{"kata configuration @ROOT@" + etcKata + ": [hypervisor.qemu] names no kernel"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			makeTree(t, root, tt.files)
			k, err := Find(testOptions(root, tt.opts))
			if err == nil {
				t.Fatalf("Find succeeded with %+v, want an error", k)
			}
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "@ROOT@", root); !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCacheDir(t *testing.T) {
	tests := []struct {
		cache, xdg, home, want string
	}{
		{cache: "/c", xdg: "/x", home: "/h", want: "/c"},
		{xdg: "/x", home: "/h", want: "/x/kata-cr"},
		{home: "/h", want: "/h/.cache/kata-cr"},
	}
	for _, tt := range tests {
		t.Setenv("KATA_CR_CACHE", tt.cache)
		t.Setenv("XDG_CACHE_HOME", tt.xdg)
		t.Setenv("HOME", tt.home)
		if got := CacheDir(); got != tt.want {
			t.Errorf("CacheDir with KATA_CR_CACHE=%q XDG_CACHE_HOME=%q HOME=%q = %q, want %q", tt.cache, tt.xdg, tt.home, got, tt.want)
		}
	}
}

// TestFetchedKernels checks the real kernels scripts/fetch-kernel.sh put in
// the cache: the release read from each image matches what the script
// recorded from the Debian package, and the modules are there with their
// modules.dep. The default 6.1 kernel must be there; the others are checked
// when fetched.
func TestFetchedKernels(t *testing.T) {
	cache := CacheDir()
	for _, v := range Series {
		t.Run(v, func(t *testing.T) {
			recorded, err := os.ReadFile(filepath.Join(cache, "kernels", v, "release"))
			if err != nil && v != DefaultSeries {
				t.Skipf("kernel %s not fetched (make guest-kernel KERNEL=%s): %v", v, v, err)
			}
			opts := FindOptions{Version: v}
			if v == DefaultSeries {
				// The default path, with no Kata installed.
				opts = FindOptions{KataConfigPaths: []string{}}
			}
			k, err := Find(opts)
			if err != nil {
				t.Fatalf("Find(%+v): %v", opts, err)
			}
			if want := strings.TrimSpace(string(recorded)); k.Release != want {
				t.Errorf("release from %s = %q, the package says %q", k.Image, k.Release, want)
			}
			if !strings.HasPrefix(k.Release, v+".") {
				t.Errorf("release %q is not a %s kernel", k.Release, v)
			}
			if !strings.HasPrefix(k.Source, "cache: ") {
				t.Errorf("Source = %q, want the cache", k.Source)
			}
			cfg := mustRead(t, k.Config)
			if !strings.Contains(cfg, "CONFIG_CHECKPOINT_RESTORE=y") {
				t.Errorf("%s has no CONFIG_CHECKPOINT_RESTORE=y: not Debian's config?", k.Config)
			}
			dep := mustRead(t, filepath.Join(k.ModulesDir, "modules.dep"))
			if !strings.Contains(dep, "/unix_diag.ko") {
				t.Errorf("%s/modules.dep does not list unix_diag", k.ModulesDir)
			}
		})
	}
}

// FuzzKernelRelease feeds ImageRelease arbitrary files: it must answer
// with a release or an error, never panic or return an unprintable release.
func FuzzKernelRelease(f *testing.F) {
	f.Add(fakeFindBzImage("6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1"))
	f.Add(fakeFindVmlinux("6.12.28")[:0x300])
	f.Add([]byte("hello"))
	short := fakeFindBzImage("x")
	binary.LittleEndian.PutUint16(short[0x20E:], 0xFFFF)
	f.Add(short)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "image")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		rel, err := ImageRelease(p)
		if err == nil && !validRelease(rel) {
			t.Errorf("ImageRelease = %q with no error, not a valid release", rel)
		}
	})
}

// bzImageHeader is the start of a file with an x86 boot protocol header.
func bzImageHeader() []byte {
	b := make([]byte, 0x400)
	b[0x1FE], b[0x1FF] = 0x55, 0xAA
	binary.LittleEndian.PutUint32(b[0x202:], 0x53726448)
	return b
}

func TestCheckKernelImage(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{"bzImage", write("vmlinuz", bzImageHeader()), ""},
		{"elf vmlinux", write("vmlinux", append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 64)...)), ""},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"directory", dir, "is a directory"},
		{"text file", write("passwd", []byte("root:x:0:0:root:/root:/bin/bash\n")), "not a Linux kernel image"},
		{"empty", write("empty", nil), "not a Linux kernel image"},
		{"none given", "", "no guest kernel given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckImage(tt.path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// TestCachedKernelSealed: a cached kernel whose files no longer match
// their SHA256SUMS is refused with the command that fetches it again; one
// without the file (fetched before the seal) is still used.
func TestCachedKernelSealed(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(cache, "kernels", "6.1")
	rel := "6.1.0-99-amd64"
	files := map[string][]byte{
		"vmlinuz":                         fakeFindVmlinux(rel),
		"config":                          []byte("CONFIG_CHECKPOINT_RESTORE=y\n"),
		"modules/" + rel + "/modules.dep": []byte("kernel/net/unix/unix_diag.ko:\n"),
	}
	var sums strings.Builder
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), name)
	}
	if _, err := cachedKernel(cache, "6.1", ""); err != nil {
		t.Fatalf("unsealed entry: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cachedKernel(cache, "6.1", ""); err != nil {
		t.Fatalf("sealed entry: %v", err)
	}
	img := filepath.Join(dir, "vmlinuz")
	if err := os.Truncate(img, int64(len(files["vmlinuz"])-10)); err != nil {
		t.Fatal(err)
	}
	_, err := cachedKernel(cache, "6.1", "")
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "make guest-kernel") {
		t.Fatalf("truncated vmlinuz: %v, want damaged with the command to fetch it again", err)
	}
}
