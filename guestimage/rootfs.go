package guestimage

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/internal/excerpt"
	"github.com/kata-cr/kata-cr/internal/filecopy"
)

// CRIUPayload is a CRIU build with everything it needs to run in a guest.
type CRIUPayload struct {
	// Binary is the guest path of the criu executable.
	Binary string
	// Files maps guest paths to the host files to copy there: criu, its
	// dynamic loader and shared libraries (at the paths the loader searches
	// without an ld.so.cache), and GNU tar at /usr/bin/tar, which CRIU runs
	// to save tmpfs contents (busybox tar cannot). The files of one payload
	// go together: none may be replaced by a file from another system, and
	// they win over anything else the image puts at the same paths.
	Files map[string]string
	// Version is CRIU's version, e.g. "4.1.1".
	Version string
	// Suite is the Debian suite the files come from, e.g. "trixie".
	Suite string
}

// GuestTar is where the payload puts GNU tar: u-root's PATH searches
// /usr/bin before /bin, where busybox's tar may be.
const GuestTar = "/usr/bin/tar"

// HostCRIU is the host's criu (criuPath, or criu on PATH or in /usr/sbin
// when empty) with its loader, libraries and the host's GNU tar.
func HostCRIU(criuPath string) (*CRIUPayload, error) {
	if criuPath == "" {
		p, err := lookPath("criu")
		if err != nil {
			return nil, errors.New("criu not found on PATH or in /usr/sbin: install it (apt-get install criu) or pass its path")
		}
		criuPath = p
	}
	abs, err := filepath.Abs(criuPath)
	if err != nil {
		return nil, fmt.Errorf("criu %s: %w", criuPath, err)
	}
	host := rootFS{dir: "/"}
	bin, err := host.resolve(abs)
	if err != nil {
		return nil, fmt.Errorf("criu %s: %w", criuPath, shortErr(err))
	}
	tarPath, err := lookPath("tar")
	if err != nil {
		return nil, errors.New("tar not found on PATH: install GNU tar (apt-get install tar)")
	}
	tarBin, err := host.resolve(tarPath)
	if err != nil {
		return nil, fmt.Errorf("tar %s: %w", tarPath, shortErr(err))
	}
	files, err := host.closure(map[string]string{bin: bin, GuestTar: tarBin})
	if err != nil {
		return nil, err
	}
	if err := requireGNUTar(host, tarBin); err != nil {
		return nil, err
	}
	p := &CRIUPayload{Binary: bin, Files: map[string]string{}, Suite: host.codename()}
	for guest, v := range files {
		p.Files[guest] = host.real(v)
	}
	p.Version = hostCRIUVersion(bin)
	if p.Version == "" {
		p.Version = host.dpkgVersion("criu")
	}
	if p.Version == "" {
		return nil, fmt.Errorf("criu %s: cannot tell its version (criu --version failed and dpkg does not know it)", bin)
	}
	return p, nil
}

// RootfsCRIU is CRIU from a Debian-like rootfs tarball (--rootfs TAR, any
// compression GNU tar reads), extracted once into cacheDir/rootfs/.
func RootfsCRIU(ctx context.Context, tarPath, cacheDir string) (*CRIUPayload, error) {
	if cacheDir == "" {
		return nil, errors.New("rootfs criu: no cache directory given")
	}
	abs, err := filepath.Abs(tarPath)
	if err != nil {
		return nil, fmt.Errorf("--rootfs %s: %w", tarPath, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("--rootfs %s: %w", tarPath, shortErr(err))
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("--rootfs %s: not a regular file: pass a rootfs tarball (mmdebstrap SUITE OUT.tar)", tarPath)
	}
	// Keyed by what identifies the file cheaply: hashing a 100 MB tarball
	// would cost more than a cached build is allowed to take.
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", abs, st.Size(), st.ModTime().UnixNano()))
	dir := filepath.Join(cacheDir, "rootfs", "custom-"+hex.EncodeToString(sum[:8]))
	unlock, err := lockCache(ctx, filepath.Join(cacheDir, "rootfs"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	p, err := rootfsPayload(ctx, abs, dir)
	if err != nil {
		return nil, fmt.Errorf("--rootfs %s: %w", tarPath, err)
	}
	return p, nil
}

// lockCache serialises builders of the rootfs cache (parallel test
// packages, two kata-cr runs) so that none replaces a payload another is
// about to use.
func lockCache(ctx context.Context, dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	return lockDir(ctx, dir)
}

// manifest is written beside an extracted payload so that later calls
// skip the extraction while the tarball is unchanged.
type manifest struct {
	// Layout is payloadLayout of the code that wrote it: a payload laid
	// out by another is extracted again.
	Layout   int
	Tar      string
	TarSize  int64
	TarMTime time.Time
	Payload  CRIUPayload
}

const manifestName = "payload.json"

// payloadLayout numbers the way payloads place their libraries
// (rootFS.closure); 2: every library outside a DT_RUNPATH in the loader's
// first directory.
const payloadLayout = 2

func rootfsPayload(ctx context.Context, tarPath, dir string) (*CRIUPayload, error) {
	st, err := os.Stat(tarPath)
	if err != nil {
		return nil, shortErr(err)
	}
	if p := loadManifest(dir, tarPath, st); p != nil {
		return p, nil
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	staging, err := os.MkdirTemp(parent, ".staging-")
	if err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	defer os.RemoveAll(staging)
	if err := extractTar(ctx, tarPath, staging); err != nil {
		return nil, err
	}
	root := rootFS{dir: staging}
	var bin string
	for _, c := range []string{"/usr/sbin/criu", "/sbin/criu", "/usr/bin/criu", "/usr/local/sbin/criu"} {
		if v, err := root.resolve(c); err == nil {
			bin = v
			break
		}
	}
	if bin == "" {
		return nil, errors.New("rootfs has no criu in /usr/sbin, /sbin or /usr/bin: build it with `mmdebstrap --include=criu,tar SUITE OUT.tar`")
	}
	tarBin, err := root.resolve("/usr/bin/tar")
	if err != nil {
		if tarBin, err = root.resolve("/bin/tar"); err != nil {
			return nil, errors.New("rootfs has no tar: CRIU needs GNU tar to save tmpfs mounts: include the tar package")
		}
	}
	if err := requireGNUTar(root, tarBin); err != nil {
		return nil, err
	}
	files, err := root.closure(map[string]string{bin: bin, GuestTar: tarBin})
	if err != nil {
		return nil, err
	}
	version := root.dpkgVersion("criu")
	if version == "" {
		return nil, fmt.Errorf("rootfs has %s but dpkg does not list the criu package: cannot tell its version", bin)
	}

	out, err := os.MkdirTemp(parent, ".payload-")
	if err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	defer os.RemoveAll(out)
	if err := os.Chmod(out, 0o755); err != nil {
		return nil, err
	}
	p := &CRIUPayload{Binary: bin, Files: map[string]string{}, Version: version, Suite: root.codename()}
	for guest, v := range files {
		dst := filepath.Join(out, guest)
		if err := copyFile(root.real(v), dst); err != nil {
			return nil, fmt.Errorf("copy %s from the rootfs: %w", v, err)
		}
		p.Files[guest] = filepath.Join(dir, guest)
	}
	m, err := json.MarshalIndent(manifest{Layout: payloadLayout, Tar: tarPath, TarSize: st.Size(), TarMTime: st.ModTime(), Payload: *p}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(out, manifestName), m, 0o644); err != nil {
		return nil, fmt.Errorf("write payload manifest: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("replace stale payload %s: %w", dir, err)
	}
	if err := os.Rename(out, dir); err != nil {
		return nil, fmt.Errorf("store payload: %w", err)
	}
	return p, nil
}

// loadManifest returns the cached payload in dir when it was extracted
// from this very tarball and all its files are still there.
func loadManifest(dir, tarPath string, st fs.FileInfo) *CRIUPayload {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil
	}
	var m manifest
	if json.Unmarshal(b, &m) != nil || m.Layout != payloadLayout || m.Tar != tarPath || m.TarSize != st.Size() || !m.TarMTime.Equal(st.ModTime()) {
		return nil
	}
	for _, h := range m.Payload.Files {
		if _, err := os.Stat(h); err != nil {
			return nil
		}
	}
	if m.Payload.Binary == "" || len(m.Payload.Files) == 0 {
		return nil
	}
	return &m.Payload
}

// mmdebstrapTar builds a rootfs of suite with CRIU and GNU tar into the
// tarball out, written under a temporary name and renamed when complete.
func mmdebstrapTar(ctx context.Context, suite, out string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("create cache: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	defer os.Remove(tmp)
	if err := mmdebstrap(ctx, suite, tmp, "tar", []string{"criu", "tar"}); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("store %s rootfs: %w", suite, err)
	}
	return nil
}

// mmdebstrap builds an essential rootfs of suite with the packages
// include into out, in format ("tar" or "directory"; a directory must be
// empty), from the mirror apt already uses.
func mmdebstrap(ctx context.Context, suite, out, format string, include []string) error {
	bin, err := lookPath("mmdebstrap")
	if err != nil {
		return fmt.Errorf("mmdebstrap not found: install it (apt-get install mmdebstrap) to build the %s rootfs", suite)
	}
	args := append([]string{"--variant=essential", "--include=" + strings.Join(include, ","), "--format=" + format}, aptOptions(suite)...)
	cmd := exec.CommandContext(ctx, bin, append(args, suite, out, debianMirror())...)
	// mmdebstrap cleans up its temporary root on SIGTERM, not on SIGKILL.
	// It runs in a process group of its own: once it has ended, whatever
	// it started (apt, dpkg) and left behind is killed with the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("build %s rootfs: %w", suite, ctx.Err())
		}
		return fmt.Errorf("build %s rootfs with %s: %w: %s", suite, strings.Join(cmd.Args, " "), err, excerpt.TailLines(log.String(), 3))
	}
	return nil
}

// DebianTree returns a directory tree of an essential Debian rootfs of
// suite with packages, for a container's rootfs (an OCI bundle's). It is
// built once with mmdebstrap into cacheDir/rootfs/tree-HASH, HASH being
// the hash of the suite and the sorted packages: one entry per input. The
// tree is built in a staging directory and renamed into place when
// complete, so a half-built tree is never found.
func DebianTree(ctx context.Context, cacheDir, suite string, packages []string) (string, error) {
	if cacheDir == "" {
		return "", errors.New("debian tree: no cache directory given")
	}
	pkgs := slices.Clone(packages)
	slices.Sort(pkgs)
	sum := sha256.Sum256([]byte("tree 1\x00" + suite + "\x00" + strings.Join(pkgs, "\x00")))
	parent := filepath.Join(cacheDir, "rootfs")
	dir := filepath.Join(parent, "tree-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	unlock, err := lockCache(ctx, parent)
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another kata-cr may have built it while this one waited.
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	staging, err := os.MkdirTemp(parent, ".staging-tree-")
	if err != nil {
		return "", fmt.Errorf("create cache: %w", err)
	}
	defer os.RemoveAll(staging)
	if err := os.Chmod(staging, 0o755); err != nil {
		return "", fmt.Errorf("create cache: %w", err)
	}
	if err := mmdebstrap(ctx, suite, staging, "directory", pkgs); err != nil {
		return "", err
	}
	if err := os.Rename(staging, dir); err != nil {
		return "", fmt.Errorf("store the %s tree: %w", suite, err)
	}
	return dir, nil
}

// debianSuite matches the suites of Debian's main archive in an apt source
// (not -security, which lives elsewhere, and not third-party suites).
var debianSuite = regexp.MustCompile(`^(bullseye|bookworm|trixie|forky|sid|oldstable|stable|testing|unstable)(-updates|-backports)?$`)

// debianMirror is the mirror the system's apt uses for Debian, so that
// mmdebstrap goes where apt-get already can ($KATA_CR_MIRROR overrides;
// scripts/fetch-kernel.sh follows the same rule).
func debianMirror() string {
	if m := os.Getenv("KATA_CR_MIRROR"); m != "" {
		return m
	}
	if m := mirrorFromSources("/etc/apt"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

var (
	blankLine     = regexp.MustCompile(`\n[ \t]*\n`)
	sourceOptions = regexp.MustCompile(`\[[^]]*\]`)
)

func mirrorFromSources(etcApt string) string {
	deb822, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*.sources"))
	for _, f := range deb822 {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, stanza := range blankLine.Split(string(b), -1) {
			fields := map[string][]string{}
			for _, line := range strings.Split(stanza, "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(strings.TrimSpace(line), "#") {
					fields[strings.ToLower(strings.TrimSpace(k))] = strings.Fields(v)
				}
			}
			if !slices.Contains(fields["types"], "deb") || len(fields["uris"]) == 0 {
				continue
			}
			if slices.ContainsFunc(fields["suites"], debianSuite.MatchString) {
				return fields["uris"][0]
			}
		}
	}
	lists, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*.list"))
	for _, f := range append([]string{filepath.Join(etcApt, "sources.list")}, lists...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			line, _, _ = strings.Cut(line, "#")
			line = sourceOptions.ReplaceAllString(line, "")
			if w := strings.Fields(line); len(w) >= 3 && w[0] == "deb" && debianSuite.MatchString(w[2]) {
				return w[1]
			}
		}
	}
	return ""
}

// extractTar unpacks a rootfs with GNU tar, which detects the compression
// and, unlike a naive extractor, never writes through a symlink that an
// earlier member of the archive created. Device nodes are left out: they
// need privileges and CRIU's payload never uses them.
func extractTar(ctx context.Context, tarPath, dir string) error {
	cmd := exec.CommandContext(ctx, "tar", "--extract", "--file", tarPath, "--directory", dir,
		"--anchored", "--exclude=./dev/*", "--exclude=dev/*", "--no-same-owner", "--warning=no-unknown-keyword")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("extract %s: %w", tarPath, ctx.Err())
		}
		return fmt.Errorf("extract %s: %w: %s", tarPath, err, excerpt.TailLines(log.String(), 3))
	}
	return nil
}

// rootFS is a root filesystem seen from the host: "/" itself or an
// extracted rootfs. Paths inside it ("virtual" paths) are absolute and
// symlinks are followed as the guest would follow them, so an absolute
// link in a rootfs stays inside it.
type rootFS struct {
	dir string
}

func (r rootFS) real(v string) string {
	return filepath.Join(r.dir, filepath.FromSlash(v))
}

// resolve follows every symlink in v and returns the virtual path of the
// file it names.
func (r rootFS) resolve(v string) (string, error) {
	todo := strings.Split(v, "/")
	cur := "/"
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		st, err := os.Lstat(r.real(next))
		if err != nil {
			if u := errors.Unwrap(err); u != nil {
				err = u
			}
			return "", &fs.PathError{Op: "resolve", Path: v, Err: err}
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", &fs.PathError{Op: "resolve", Path: v, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(r.real(next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return cur, nil
}

// closure adds to the given guest-path-to-file map the dynamic loader and
// every shared library the files need, transitively, found the way
// glibc's loader finds them. Libraries go where the guest's loader looks
// first without an ld.so.cache: the directory they were found in when
// that is a DT_RUNPATH, else the first built-in directory.
func (r rootFS) closure(want map[string]string) (map[string]string, error) {
	files := map[string]string{}
	type item struct{ guest, file string }
	var queue []item
	for g, f := range want {
		queue = append(queue, item{g, f})
	}
	slices.SortFunc(queue, func(a, b item) int { return strings.Compare(a.guest, b.guest) })
	confDirs := r.ldSoConfDirs()
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if _, done := files[it.guest]; done {
			continue
		}
		files[it.guest] = it.file
		f, err := elf.Open(r.real(it.file))
		if err != nil {
			return nil, fmt.Errorf("read ELF %s: %w", it.file, err)
		}
		interp, needed, runpath, err := dynInfo(f)
		machine, class := f.Machine, f.Class
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read ELF %s: %w", it.file, err)
		}
		if interp != "" {
			v, err := r.resolve(interp)
			if err != nil {
				return nil, fmt.Errorf("%s: dynamic loader %s: %w", it.file, interp, shortErr(err))
			}
			queue = append(queue, item{interp, v})
		}
		system := systemDirs(machine)
		var origin []string
		for _, d := range runpath {
			origin = append(origin, path.Clean(strings.NewReplacer("$ORIGIN", path.Dir(it.file), "${ORIGIN}", path.Dir(it.file)).Replace(d)))
		}
		for _, name := range needed {
			guest, file, err := r.findLib(name, machine, class, origin, confDirs, system)
			if err != nil {
				return nil, fmt.Errorf("%s needs %s: %w", it.file, name, err)
			}
			queue = append(queue, item{guest, file})
		}
	}
	return files, nil
}

// findLib searches like ld.so: DT_RUNPATH, ld.so.conf (what ld.so.cache
// holds), then the built-in directories; a file of another ELF class or
// machine is skipped, as ld.so skips it.
func (r rootFS) findLib(name string, machine elf.Machine, class elf.Class, runpath, confDirs, system []string) (guest, file string, err error) {
	if strings.Contains(name, "/") {
		v, err := r.resolve(name)
		return name, v, err
	}
	dirs := slices.Concat(runpath, confDirs, system)
	for _, d := range dirs {
		v, err := r.resolve(path.Join(d, name))
		if err != nil || !sameArch(r.real(v), machine, class) {
			continue
		}
		// Outside a DT_RUNPATH, a library goes to the loader's first
		// directory, whichever directory of the rootfs held it: an
		// --include's host library of the same name (added later, with
		// ldd) must find the place taken, or the loader would pick the
		// host's older one there first (seen: forky's CRIU, whose
		// ld.so.conf lists /usr/lib first, got the host's glibc 2.36).
		g := path.Join(d, name)
		if !slices.Contains(runpath, d) {
			g = path.Join(system[0], name)
		}
		return g, v, nil
	}
	return "", "", fmt.Errorf("not found in %s", strings.Join(dirs, ", "))
}

func sameArch(file string, machine elf.Machine, class elf.Class) bool {
	f, err := elf.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Machine == machine && f.Class == class
}

func dynInfo(f *elf.File) (interp string, needed, runpath []string, err error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return "", nil, nil, err
			}
			interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	if f.Section(".dynamic") == nil && !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_DYNAMIC }) {
		return interp, nil, nil, nil // static
	}
	if needed, err = f.ImportedLibraries(); err != nil {
		return "", nil, nil, err
	}
	// DT_RPATH only counts when there is no DT_RUNPATH.
	rp, _ := f.DynString(elf.DT_RUNPATH)
	if len(rp) == 0 {
		rp, _ = f.DynString(elf.DT_RPATH)
	}
	for _, s := range rp {
		runpath = append(runpath, strings.Split(s, ":")...)
	}
	return interp, needed, runpath, nil
}

// systemDirs are glibc's built-in search directories on Debian (ld.so
// --help lists them), in order.
func systemDirs(m elf.Machine) []string {
	triplet := map[elf.Machine]string{
		elf.EM_X86_64:  "x86_64-linux-gnu",
		elf.EM_AARCH64: "aarch64-linux-gnu",
		elf.EM_386:     "i386-linux-gnu",
		elf.EM_RISCV:   "riscv64-linux-gnu",
		elf.EM_PPC64:   "powerpc64le-linux-gnu",
		elf.EM_S390:    "s390x-linux-gnu",
	}[m]
	var dirs []string
	if triplet != "" {
		dirs = append(dirs, "/lib/"+triplet, "/usr/lib/"+triplet)
	}
	return append(dirs, "/lib", "/usr/lib")
}

// ldSoConfDirs reads /etc/ld.so.conf and its includes inside the root.
func (r rootFS) ldSoConfDirs() []string {
	var dirs []string
	seen := map[string]bool{}
	var read func(v string, depth int)
	read = func(v string, depth int) {
		if depth > 8 || seen[v] {
			return
		}
		seen[v] = true
		real, err := r.resolve(v)
		if err != nil {
			return
		}
		f, err := os.Open(r.real(real))
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			w := strings.Fields(line)
			switch {
			case len(w) == 0:
			case w[0] == "include":
				for _, pat := range w[1:] {
					if !path.IsAbs(pat) {
						pat = path.Join(path.Dir(v), pat)
					}
					matches, _ := filepath.Glob(r.real(pat))
					slices.Sort(matches)
					for _, m := range matches {
						rel, _ := filepath.Rel(r.dir, m)
						read("/"+filepath.ToSlash(rel), depth+1)
					}
				}
			case path.IsAbs(w[0]) && !slices.Contains(dirs, w[0]):
				dirs = append(dirs, path.Clean(w[0]))
			}
		}
	}
	read("/etc/ld.so.conf", 0)
	return dirs
}

// codename is VERSION_CODENAME from the root's os-release.
func (r rootFS) codename() string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		v, err := r.resolve(p)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(r.real(v))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if c, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok {
				return strings.Trim(c, `"'`)
			}
		}
	}
	return ""
}

// dpkgVersion is the upstream version of an installed package, read from
// the root's dpkg status file: "4.1.1" for "4.1.1-1", "3.17.1" for
// "1:3.17.1-2+deb12u1".
func (r rootFS) dpkgVersion(pkg string) string {
	b, err := os.ReadFile(r.real("/var/lib/dpkg/status"))
	if err != nil {
		return ""
	}
	for _, stanza := range strings.Split(string(b), "\n\n") {
		var name, version, status string
		for _, line := range strings.Split(stanza, "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch k {
			case "Package":
				name = strings.TrimSpace(v)
			case "Version":
				version = strings.TrimSpace(v)
			case "Status":
				status = strings.TrimSpace(v)
			}
		}
		if name == pkg && strings.HasSuffix(status, " installed") {
			return upstreamVersion(version)
		}
	}
	return ""
}

func upstreamVersion(v string) string {
	if _, after, ok := strings.Cut(v, ":"); ok {
		v = after
	}
	if i := strings.LastIndex(v, "-"); i > 0 {
		v = v[:i]
	}
	if i := strings.IndexAny(v, "+~"); i > 0 {
		v = v[:i]
	}
	return v
}

var criuVersionLine = regexp.MustCompile(`(?m)^Version:\s*(\S+)`)

// hostCRIUVersion asks criu itself; it needs no privileges for --version.
func hostCRIUVersion(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return ""
	}
	if m := criuVersionLine.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}

// requireGNUTar refuses busybox's tar (or any other): CRIU's tmpfs dump
// uses GNU options busybox does not have.
func requireGNUTar(r rootFS, v string) error {
	b, err := os.ReadFile(r.real(v))
	if err != nil {
		return fmt.Errorf("read tar %s: %w", v, err)
	}
	if !bytes.Contains(b, []byte("GNU tar")) {
		return fmt.Errorf("tar %s is not GNU tar: CRIU needs GNU tar to save tmpfs mounts: install the tar package", v)
	}
	return nil
}

// lookPath is exec.LookPath that also tries the sbin directories, which a
// non-root PATH often lacks.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// copyFile copies src to dst with src's mode, making dst's directories.
func copyFile(src, dst string) error {
	return filecopy.Copy(src, dst, filecopy.Options{MakeParents: true})
}

// shortErr drops the repeated path from a *fs.PathError when the caller
// already names the file.
func shortErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, fs.ErrNotExist) {
			return errors.New("no such file")
		}
		return pe.Err
	}
	return err
}
