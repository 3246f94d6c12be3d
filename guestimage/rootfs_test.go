package guestimage

import (
	"archive/tar"
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testCacheDir is kata-cr's cache (kernel.CacheDir's rule, repeated here
// so that this package's tests do not depend on the runtime package), so
// the trixie rootfs is built once per machine, not once per test run.
func testCacheDir() string {
	if d := os.Getenv("KATA_CR_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "kata-cr")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "kata-cr")
}

// assemble lays a payload out as the guest will see it, in a fresh
// directory: the guest path of each file, nothing else.
func assemble(t *testing.T, p *CRIUPayload) string {
	t.Helper()
	root := t.TempDir()
	for guest, host := range p.Files {
		if err := copyFile(host, filepath.Join(root, guest)); err != nil {
			t.Fatalf("copy %s to %s: %v", host, guest, err)
		}
	}
	return root
}

// runChrooted runs a payload's binary inside the assembled payload and
// nothing else, which proves the loader and libraries are complete and
// found at their guest paths.
func runChrooted(t *testing.T, root string, args ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test runs the payload in a chroot and needs root")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s %s: %v\n%s", root, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func checkPayload(t *testing.T, p *CRIUPayload, wantVersion *regexp.Regexp, wantSuite string) {
	t.Helper()
	if !wantVersion.MatchString(p.Version) {
		t.Errorf("Version = %q, want %v", p.Version, wantVersion)
	}
	if p.Suite != wantSuite {
		t.Errorf("Suite = %q, want %q", p.Suite, wantSuite)
	}
	for _, g := range []string{p.Binary, GuestTar, "/lib64/ld-linux-x86-64.so.2"} {
		if _, ok := p.Files[g]; !ok {
			t.Errorf("payload has no %s", g)
		}
	}
	var libc bool
	for guest, host := range p.Files {
		if !path.IsAbs(guest) || path.Clean(guest) != guest {
			t.Errorf("guest path %q is not clean and absolute", guest)
		}
		if st, err := os.Stat(host); err != nil || !st.Mode().IsRegular() {
			t.Errorf("payload file %s -> %s: not a regular file (%v)", guest, host, err)
		}
		libc = libc || path.Base(guest) == "libc.so.6"
	}
	if !libc {
		t.Errorf("payload has no libc.so.6: %v", p.Files)
	}
	if t.Failed() {
		t.FailNow()
	}
	root := assemble(t, p)
	out := runChrooted(t, root, p.Binary, "--version")
	if !strings.Contains(out, "Version: "+p.Version) {
		t.Errorf("%s --version in the payload says %q, want version %s", p.Binary, out, p.Version)
	}
	if out := runChrooted(t, root, GuestTar, "--version"); !strings.Contains(out, "GNU tar") {
		t.Errorf("%s --version in the payload says %q, want GNU tar", GuestTar, out)
	}
}

func TestHostCRIU(t *testing.T) {
	if _, err := lookPath("criu"); err != nil {
		t.Fatal("criu is not installed: apt-get install criu")
	}
	p, err := HostCRIU("")
	if err != nil {
		t.Fatalf("HostCRIU: %v", err)
	}
	checkPayload(t, p, regexp.MustCompile(`^[0-9]+\.[0-9]+(\.[0-9]+)?$`), rootFS{dir: "/"}.codename())
	if h := p.Files[p.Binary]; h != p.Binary {
		t.Errorf("host criu %s is taken from %s", p.Binary, h)
	}
}

func TestHostCRIUErrors(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "criu.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho Version: 1.0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{filepath.Join(dir, "nope"), "criu " + filepath.Join(dir, "nope") + ": no such file"},
		{script, "read ELF " + script},
	}
	for _, tt := range tests {
		_, err := HostCRIU(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("HostCRIU(%s) = %v, want an error containing %q", tt.path, err, tt.want)
		}
	}
}

// TestSuiteCRIU builds (once per machine) the trixie and forky rootfs with
// mmdebstrap from the Debian mirror and checks that CRIU runs from each
// payload alone: with the suite's own loader and libc, not the host's.
// Forky's Release file on the mirror may be past its Valid-Until date.
func TestSuiteCRIU(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Debian rootfs with mmdebstrap (minutes on a fresh machine): not with -short")
	}
	if _, err := lookPath("mmdebstrap"); err != nil {
		t.Fatal("mmdebstrap is not installed: run scripts/install-deps.sh")
	}
	for _, tt := range []struct {
		suite   string
		version *regexp.Regexp
	}{
		{TrixieSuite, regexp.MustCompile(`^4\.1\.[0-9]+$`)},
		{"forky", regexp.MustCompile(`^4\.([2-9]|[1-9][0-9])\.[0-9]+$`)},
	} {
		t.Run(tt.suite, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cache := testCacheDir()
			p, err := SuiteCRIU(ctx, cache, tt.suite)
			if err != nil {
				t.Fatalf("SuiteCRIU: %v", err)
			}
			checkPayload(t, p, tt.version, tt.suite)
			for guest, host := range p.Files {
				if !strings.HasPrefix(host, filepath.Join(cache, "rootfs", tt.suite)+"/") {
					t.Errorf("%s payload file %s comes from %s, outside the extracted rootfs", tt.suite, guest, host)
				}
			}
			start := time.Now()
			again, err := SuiteCRIU(ctx, cache, tt.suite)
			if err != nil {
				t.Fatalf("SuiteCRIU, cached: %v", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("cached SuiteCRIU took %v, want well under a second", d)
			}
			if again.Version != p.Version || len(again.Files) != len(p.Files) {
				t.Errorf("cached payload differs: %+v, first %+v", again, p)
			}
		})
	}
}

func TestSuites(t *testing.T) {
	if got := strings.Join(SuiteNames(), " "); got != "bookworm trixie forky sid" {
		t.Errorf("SuiteNames = %q", got)
	}
	for _, tt := range []struct {
		suite string
		opts  []string
	}{
		{"bookworm", nil}, {TrixieSuite, nil},
		{"forky", []string{`--aptopt=Acquire::Check-Valid-Until "false"`}},
		{"sid", []string{`--aptopt=Acquire::Check-Valid-Until "false"`}},
	} {
		if _, err := LookupSuite(tt.suite); err != nil {
			t.Errorf("LookupSuite(%s): %v", tt.suite, err)
		}
		if got := aptOptions(tt.suite); !slices.Equal(got, tt.opts) {
			t.Errorf("aptOptions(%s) = %q, want %q", tt.suite, got, tt.opts)
		}
	}
	if _, err := LookupSuite("buster"); err == nil || !strings.Contains(err.Error(), "bookworm, trixie, forky, sid") {
		t.Errorf("LookupSuite(buster) = %v, want an error naming the suites", err)
	}
	if _, err := SuiteCRIU(context.Background(), t.TempDir(), "buster"); err == nil {
		t.Error("SuiteCRIU of an unknown suite built something")
	}
}

type tarEntry struct {
	name, data, link string
	mode             int64
}

func writeTar(t *testing.T, file string, entries []tarEntry) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, e := range entries {
		h := &tar.Header{Name: "./" + strings.TrimPrefix(e.name, "/"), Mode: e.mode, ModTime: time.Unix(1700000000, 0)}
		switch {
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag = tar.TypeDir
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRootfsCRIU packs the host's CRIU into a usrmerged rootfs whose
// loader is an absolute symlink, as Debian ships it: the payload must
// follow that link inside the rootfs, never to the host's file.
func TestRootfsCRIU(t *testing.T) {
	host, err := HostCRIU("")
	if err != nil {
		t.Fatalf("HostCRIU: %v (apt-get install criu)", err)
	}
	const multiarch = "/usr/lib/x86_64-linux-gnu/"
	entries := []tarEntry{
		{name: "/usr/", mode: 0o755},
		{name: "/usr/lib/", mode: 0o755},
		{name: "/lib", link: "usr/lib"},
		{name: "/lib64/", mode: 0o755},
		{name: "/lib64/ld-linux-x86-64.so.2", link: "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"},
		{name: "/etc/", mode: 0o755},
		{name: "/etc/os-release", link: "../usr/lib/os-release"},
		{name: "/usr/lib/os-release", data: "ID=debian\nVERSION_CODENAME=testsuite\n", mode: 0o644},
		{name: "/var/lib/dpkg/status", mode: 0o644, data: "Package: tar\nStatus: install ok installed\nVersion: 1.34-1\n\n" +
			"Package: criu\nStatus: install ok installed\nVersion: 1:9.9.9-1+b1\n"},
	}
	for guest, file := range host.Files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		name := guest
		switch {
		case guest == "/lib64/ld-linux-x86-64.so.2":
			name = multiarch + "ld-linux-x86-64.so.2"
		case strings.HasPrefix(guest, "/lib/x86_64-linux-gnu/") || strings.HasPrefix(guest, multiarch):
			name = multiarch + path.Base(guest)
		}
		entries = append(entries, tarEntry{name: name, data: string(b), mode: 0o755})
	}
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	writeTar(t, tarPath, entries)

	cache := t.TempDir()
	p, err := RootfsCRIU(context.Background(), tarPath, cache)
	if err != nil {
		t.Fatalf("RootfsCRIU: %v", err)
	}
	if p.Version != "9.9.9" || p.Suite != "testsuite" {
		t.Errorf("Version, Suite = %q, %q, want 9.9.9 (from dpkg status), testsuite", p.Version, p.Suite)
	}
	for guest, h := range p.Files {
		if !strings.HasPrefix(h, cache+"/") {
			t.Errorf("%s comes from %s, outside the cache", guest, h)
		}
	}
	root := assemble(t, p)
	out := runChrooted(t, root, p.Binary, "--version")
	if !strings.Contains(out, "Version: "+host.Version) {
		t.Errorf("criu from the rootfs says %q, want %s", out, host.Version)
	}
}

func TestRootfsCRIUErrors(t *testing.T) {
	dir := t.TempDir()
	noCRIU := filepath.Join(dir, "nocriu.tar")
	writeTar(t, noCRIU, []tarEntry{{name: "/etc/os-release", data: "VERSION_CODENAME=x\n", mode: 0o644}})
	garbage := filepath.Join(dir, "garbage.tar")
	if err := os.WriteFile(garbage, []byte("not a tarball at all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busyboxTar := filepath.Join(dir, "busybox.tar")
	criu, _ := lookPath("criu")
	criuBytes, err := os.ReadFile(criu)
	if err != nil {
		t.Fatalf("read host criu: %v (apt-get install criu)", err)
	}
	writeTar(t, busyboxTar, []tarEntry{
		{name: "/usr/sbin/criu", data: string(criuBytes), mode: 0o755},
		{name: "/bin/tar", data: "\x7fELF BusyBox v1.36.1", mode: 0o755},
	})
	tests := []struct{ tar, want string }{
		{filepath.Join(dir, "missing.tar"), "--rootfs " + filepath.Join(dir, "missing.tar") + ": no such file"},
		{dir, "--rootfs " + dir + ": not a regular file"},
		{garbage, "--rootfs " + garbage + ": extract"},
		{noCRIU, "--rootfs " + noCRIU + ": rootfs has no criu"},
		{busyboxTar, "is not GNU tar"},
	}
	for _, tt := range tests {
		_, err := RootfsCRIU(context.Background(), tt.tar, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("RootfsCRIU(%s) = %v, want an error containing %q", tt.tar, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("RootfsCRIU(%s) error is more than one line: %q", tt.tar, err)
		}
	}
}

func TestMirrorFromSources(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{
			name: "deb822, security stanza and a third-party repo first",
			files: map[string]string{
				"sources.list.d/a-docker.sources": "Types: deb\nURIs: https://download.docker.com/linux/debian\nSuites: bookworm-stable\nComponents: stable\n",
				"sources.list.d/debian.sources": "Types: deb\n# http://snapshot.debian.org/archive/debian-security/x\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n" +
					"Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
			},
			want: "http://mirror.example/debian",
		},
		{
			name:  "deb-src only is not used",
			files: map[string]string{"sources.list.d/debian.sources": "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n"},
			want:  "",
		},
		{
			name: "one-line format with options",
			files: map[string]string{
				"sources.list": "# deb http://old.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://line.example/debian trixie main\n",
			},
			want: "http://line.example/debian",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := mirrorFromSources(dir); got != tt.want {
				t.Errorf("mirrorFromSources = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUpstreamVersion(t *testing.T) {
	for in, want := range map[string]string{
		"4.1.1-1":           "4.1.1",
		"3.17.1-2+deb12u1":  "3.17.1",
		"1:9.9.9-1+b1":      "9.9.9",
		"4.0~rc1-1~bpo12+1": "4.0",
		"3.16":              "3.16",
	} {
		if got := upstreamVersion(in); got != want {
			t.Errorf("upstreamVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
