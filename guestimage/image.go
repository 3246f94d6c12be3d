// Package guestimage builds and caches the kata-cr guest initramfs: u-root's
// init, the kata-cr agent as its uinit, CRIU with its shared libraries, the
// kernel modules CRIU needs for the kernel being booted (resolved through
// that kernel's modules.dep), the kernel's config, busybox and GNU tar for
// workloads, and files the user adds. Everything the guest needs is decided
// here, on the host; the agent only loads and runs.
package guestimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/mkuimage/uimage/initramfs"
	"github.com/u-root/uio/llog"
	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/internal/excerpt"
	"github.com/kata-cr/kata-cr/internal/lru"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/vm"
	"github.com/kata-cr/kata-cr/testload"
)

// layoutVersion changes whenever the image's layout or the way it is built
// changes, so that images cached by an older kata-cr are not reused.
const layoutVersion = "3"

// modulePath is the Go module of kata-cr, whose source builds the agent.
const modulePath = "github.com/kata-cr/kata-cr"

// initPackage is u-root's init, kept in go.mod as a tool.
const initPackage = "github.com/u-root/u-root/cmds/core/init"

// Where things go in the guest.
const (
	guestAgent   = "/bin/kata-cr-agent"
	guestBusybox = "/bin/busybox"
)

// ExtraFile is a host file to add to the image (--include HOST[:GUEST]).
type ExtraFile struct {
	Host string
	// Guest is the absolute path in the guest; empty means the host path.
	Guest string
}

// ParseInclude reads an --include value, HOST or HOST:GUEST.
func ParseInclude(s string) (ExtraFile, error) {
	host, guest, _ := strings.Cut(s, ":")
	if host == "" {
		return ExtraFile{}, fmt.Errorf("--include %q: give HOST or HOST:GUEST", s)
	}
	abs, err := filepath.Abs(host)
	if err != nil {
		return ExtraFile{}, fmt.Errorf("--include %q: %w", s, err)
	}
	if guest == "" {
		guest = abs
	}
	if !path.IsAbs(guest) {
		return ExtraFile{}, fmt.Errorf("--include %q: the guest path %q must be absolute", s, guest)
	}
	return ExtraFile{Host: abs, Guest: path.Clean(guest)}, nil
}

// Spec says what goes into a guest image.
type Spec struct {
	// CacheDir is kata-cr's cache; empty means kernel.CacheDir().
	CacheDir string
	// SourceDir is the kata-cr source tree that builds the agent and
	// u-root's init; empty means FindSource.
	SourceDir string
	// AgentBinary and InitBinary, when set, are used instead of building
	// from source (a static agent and u-root's init).
	AgentBinary, InitBinary string
	// Version is stamped into the agent.
	Version string

	// KernelRelease is the release of the kernel the image is for.
	KernelRelease string
	// ModulesDir is that kernel's modules directory (with modules.dep); ""
	// when the kernel has no modules (Kata builds everything in).
	ModulesDir string
	// KernelConfig is the kernel's config file, shipped beside the kernel
	// in the guest; may be "".
	KernelConfig string

	// CRIU, when set, is the criu to ship with its files and GNU tar
	// (SuiteCRIU, RootfsCRIU). Otherwise HostCRIU(CRIUPath) is shipped.
	CRIU     *CRIUPayload
	CRIUPath string
	// Busybox is a static busybox (busybox-static); empty means look it up.
	Busybox string
	// Extra files, each with its shared libraries.
	Extra []ExtraFile

	// Logf receives progress lines; may be nil.
	Logf func(format string, args ...any)
}

// inputs are the resolved inputs of a build.
type inputs struct {
	spec      Spec
	cacheDir  string
	sourceDir string
	criu      *CRIUPayload
	busybox   string
}

// Build returns the path of a guest image for spec, building it unless an
// image with the same inputs is cached. The key hashes every input: the
// agent's Go source, the size and mtime of every host file, and the
// options; so a cached build only stats and hashes, well under a second.
// A new image is written to a temporary file and renamed into place.
func Build(ctx context.Context, spec Spec) (imagePath string, cached bool, err error) {
	in, err := resolve(spec)
	if err != nil {
		return "", false, err
	}
	key, err := in.key()
	if err != nil {
		return "", false, err
	}
	dir := filepath.Join(in.cacheDir, "images")
	out := filepath.Join(dir, "guest-"+key[:20]+".cpio")
	if err := checkSealed(out); err == nil {
		// Its modification time says when it was last used: pruning
		// spares recently used images.
		now := time.Now()
		_ = os.Chtimes(out, now, now)
		return out, true, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("build guest image: %w", err)
	}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	// Another kata-cr may have built it while this one waited.
	switch err := checkSealed(out); {
	case err == nil:
		return out, true, nil
	case errors.Is(err, errDamaged):
		in.logf("cached image %s is %v: building it again", out, err)
		discard(out)
	}
	if err := in.build(ctx, out, key); err != nil {
		return "", false, fmt.Errorf("build guest image: %w", err)
	}
	if err := seal(out); err != nil {
		return "", false, fmt.Errorf("build guest image: %w", err)
	}
	pruneImages(dir, out, 6)
	return out, false, nil
}

func resolve(spec Spec) (*inputs, error) {
	in := &inputs{spec: spec, cacheDir: spec.CacheDir}
	if in.cacheDir == "" {
		in.cacheDir = kernel.CacheDir()
	}
	for _, b := range []string{spec.AgentBinary, spec.InitBinary} {
		if b == "" {
			continue
		}
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("guest image: prebuilt binary %s: %w", b, errors.Unwrap(err))
		}
	}
	if spec.AgentBinary == "" || spec.InitBinary == "" {
		src := spec.SourceDir
		if src == "" {
			var err error
			if src, err = FindSource(); err != nil {
				return nil, err
			}
		}
		in.sourceDir = src
	}
	in.criu = spec.CRIU
	if in.criu == nil {
		p, err := HostCRIU(spec.CRIUPath)
		if err != nil {
			return nil, fmt.Errorf("guest image: %w", err)
		}
		in.criu = p
	}
	var err error
	if in.busybox, err = findBusybox(spec.Busybox); err != nil {
		return nil, err
	}
	for _, e := range spec.Extra {
		if _, err := os.Stat(e.Host); err != nil {
			return nil, fmt.Errorf("--include %s: %w", e.Host, errors.Unwrap(err))
		}
	}
	return in, nil
}

// FindSource finds the kata-cr source tree: $KATA_CR_SRC, else the first
// directory holding kata-cr's go.mod above the working directory, else
// above the running executable (bin/kata-cr in the tree).
func FindSource() (string, error) {
	if d := os.Getenv("KATA_CR_SRC"); d != "" {
		if !isSourceRoot(d) {
			return "", fmt.Errorf("KATA_CR_SRC=%s: no go.mod of %s there: point it at the kata-cr source tree", d, modulePath)
		}
		return d, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			starts = append(starts, filepath.Dir(exe))
		}
	}
	for _, d := range starts {
		for {
			if isSourceRoot(d) {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", errors.New("the kata-cr source tree is needed to build the guest agent: run kata-cr from it or set KATA_CR_SRC")
}

func isSourceRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "module" && f[1] == modulePath {
			return true
		}
	}
	return false
}

func findBusybox(p string) (string, error) {
	if p == "" {
		for _, c := range []string{"/bin/busybox", "/usr/bin/busybox"} {
			if _, err := os.Stat(c); err == nil {
				p = c
				break
			}
		}
		if p == "" {
			return "", errors.New("busybox not found: install busybox-static (apt-get install busybox-static)")
		}
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("busybox %s: not an executable: install busybox-static", p)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("busybox %s is dynamically linked: install busybox-static (apt-get install busybox-static)", p)
		}
	}
	return p, nil
}

// key hashes every input of the image.
func (in *inputs) key() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "layout %s\ngo %s\nrelease %s\nversion %s\n", layoutVersion, goruntime.Version(), in.spec.KernelRelease, in.spec.Version)
	if in.sourceDir != "" {
		if err := hashAgentSource(h, in.sourceDir); err != nil {
			return "", err
		}
	}
	files := []string{in.spec.AgentBinary, in.spec.InitBinary, in.busybox, in.spec.KernelConfig}
	fmt.Fprintf(h, "criu %s %s %s\n", in.criu.Binary, in.criu.Version, in.criu.Suite)
	for _, g := range sortedKeys(in.criu.Files) {
		fmt.Fprintf(h, "criu file %s -> %s\n", in.criu.Files[g], g)
		files = append(files, in.criu.Files[g])
	}
	if d := in.spec.ModulesDir; d != "" {
		fmt.Fprintf(h, "modules %s\n", d)
		for _, n := range []string{"modules.dep", "modules.softdep", "modules.alias", "modules.builtin", "modules.builtin.modinfo"} {
			files = append(files, filepath.Join(d, n))
		}
	}
	for _, e := range in.spec.Extra {
		fmt.Fprintf(h, "extra %s -> %s\n", e.Host, e.Guest)
		if err := hashTreeStat(h, e.Host); err != nil {
			return "", fmt.Errorf("--include %s: %w", e.Host, err)
		}
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		hashStat(h, f)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashStat adds a file's identity: path, size, mtime and mode. A missing
// file hashes as missing, so that creating it changes the key.
func hashStat(h hash.Hash, p string) {
	fi, err := os.Stat(p)
	if err != nil {
		fmt.Fprintf(h, "file %s missing\n", p)
		return
	}
	fmt.Fprintf(h, "file %s %d %d %o\n", p, fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
}

func hashTreeStat(h hash.Hash, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		hashStat(h, p)
		return nil
	})
}

// hashAgentSource hashes the Go source the agent is built from: the files
// of every kata-cr package it imports, found by following imports from
// cmd/kata-cr-agent, plus go.mod and go.sum (which pin u-root's init).
func hashAgentSource(h hash.Hash, src string) error {
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := hashFile(h, filepath.Join(src, f), f); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	queue := []string{"cmd/kata-cr-agent"}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		if seen[pkg] {
			continue
		}
		seen[pkg] = true
		dir := filepath.Join(src, filepath.FromSlash(pkg))
		names, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return fmt.Errorf("hash the agent's source: no Go files in %s", dir)
		}
		sort.Strings(names)
		fset := token.NewFileSet()
		for _, name := range names {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			if err := hashFile(h, name, path.Join(pkg, filepath.Base(name))); err != nil {
				return err
			}
			f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
			if err != nil {
				return fmt.Errorf("hash the agent's source: %w", err)
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if rest, ok := strings.CutPrefix(p, modulePath+"/"); ok {
					queue = append(queue, rest)
				}
			}
		}
	}
	return nil
}

func hashFile(h hash.Hash, p, name string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("hash the agent's source: %w", err)
	}
	fmt.Fprintf(h, "src %s %d\n", name, len(b))
	h.Write(b)
	return nil
}

func (in *inputs) logf(format string, args ...any) {
	if in.spec.Logf != nil {
		in.spec.Logf(format, args...)
	}
}

// build assembles the image into out.
func (in *inputs) build(ctx context.Context, out, key string) error {
	start := time.Now()
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The kernel's side first: it is quick to check and the most likely
	// to be wrong.
	var mods *Modules
	if in.spec.ModulesDir == "" {
		if err := agentBuiltIn(in.spec.KernelConfig); err != nil {
			return err
		}
	} else if mods, err = ResolveModules(in.spec.ModulesDir); err != nil {
		return err
	}
	agent, initBin := in.spec.AgentBinary, in.spec.InitBinary
	if agent == "" || initBin == "" {
		in.logf("building the guest agent and u-root's init")
		builtAgent, builtInit, err := buildBinaries(ctx, in.sourceDir, tmp, in.agentVersion(key))
		if err != nil {
			return err
		}
		if agent == "" {
			agent = builtAgent
		}
		if initBin == "" {
			initBin = builtInit
		}
	}
	// Two lists: files that come with their own libraries (the CRIU
	// payload, static binaries, data) and --include files, whose shared
	// libraries are added by ldd. The payload goes first: its loader and
	// libraries win over a library an included file would bring.
	var plain, withLibs []string
	add := func(list *[]string, host, guest string) {
		*list = append(*list, host+":"+strings.TrimPrefix(guest, "/"))
	}
	for _, g := range sortedKeys(in.criu.Files) {
		add(&plain, in.criu.Files[g], g)
	}
	add(&plain, agent, guestAgent)
	add(&plain, initBin, "/init")
	add(&plain, in.busybox, guestBusybox)
	m := agentapi.Manifest{
		KernelRelease: in.spec.KernelRelease,
		CRIU:          in.criu.Binary,
		Busybox:       guestBusybox,
		Tar:           GuestTar,
	}
	release := in.spec.KernelRelease
	if release == "" {
		release = "unknown"
	}
	if in.spec.KernelConfig != "" {
		guest := "/boot/config-" + release
		add(&plain, in.spec.KernelConfig, guest)
		m.KernelConfig = guest
	}
	if mods != nil {
		guestDir := "/lib/modules/" + release
		for _, f := range mods.Files {
			add(&plain, filepath.Join(mods.HostDir, f.Path), path.Join(guestDir, f.Path))
		}
		indexDir := filepath.Join(tmp, "modindex")
		if err := os.Mkdir(indexDir, 0o755); err != nil {
			return err
		}
		index, err := mods.depmodIndex(indexDir)
		if err != nil {
			return err
		}
		for _, n := range index {
			add(&plain, filepath.Join(indexDir, n), path.Join(guestDir, n))
		}
		m.ModulesDir = guestDir
		m.AgentModules, m.MissingModules = mods.Agent, mods.Missing
		m.CRIUModules = append(append([]string{}, mods.CRIU...), mods.Optional...)
		m.ContainerModules = mods.Container
		in.logf("shipping %d kernel modules for %s: %s", len(mods.Files), release, strings.Join(mods.Names(), " "))
	}
	for _, e := range in.spec.Extra {
		add(&withLibs, e.Host, e.Guest)
		m.Extra = append(m.Extra, e.Guest)
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	manifest := filepath.Join(tmp, "image.json")
	if err := os.WriteFile(manifest, mb, 0o644); err != nil {
		return err
	}
	add(&plain, manifest, agentapi.ManifestPath)

	base, err := in.baseArchive()
	if err != nil {
		return err
	}
	part := filepath.Join(tmp, "image.cpio")
	logger := llog.New(slog.LevelWarn, func(format string, args ...any) { in.logf(format, args...) })
	archive := &initramfs.Opts{
		Files:       initramfs.NewFiles(),
		OutputFile:  &initramfs.CPIOFile{Path: part},
		BaseArchive: &initramfs.Archive{Archive: base},
	}
	if err := uimage.ParseExtraFiles(logger, archive.Files, plain, false); err != nil {
		return err
	}
	if err := uimage.ParseExtraFiles(logger, archive.Files, withLibs, true); err != nil {
		return err
	}
	if err := initramfs.Write(archive); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := os.Rename(part, out); err != nil {
		return err
	}
	if fi, err := os.Stat(out); err == nil {
		in.logf("guest image %s: %.1f MB in %s", out, float64(fi.Size())/1e6, time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

// agentBuiltIn checks, for a kernel without a modules directory, that the
// agent will find its virtio-serial port: the kernel must build the virtio
// PCI transport and console in. Without a config there is nothing to go
// by, and the boot will tell.
func agentBuiltIn(config string) error {
	if config == "" {
		return nil
	}
	cfg, err := kernel.Load(config)
	if err != nil {
		return fmt.Errorf("kernel config %s: %w", config, err)
	}
	for _, opt := range []string{"VIRTIO_PCI", "VIRTIO_CONSOLE"} {
		switch cfg.State(opt) {
		case kernel.Module:
			return fmt.Errorf("the kernel builds CONFIG_%s as a module and no modules directory was given: pass --modules DIR (its /lib/modules/RELEASE)", opt)
		case kernel.Missing:
			return fmt.Errorf("the kernel is built without CONFIG_%s: the guest agent could not talk to the host", opt)
		}
	}
	return nil
}

func (in *inputs) agentVersion(key string) string {
	v := in.spec.Version
	if v == "" {
		v = "dev"
	}
	return v + "+" + key[:12]
}

// baseArchive holds u-root's default layout (directories, the console
// and null device nodes) and the links: /bin/uinit and
// /bin/kata-cr-testload (the test workloads) to the agent, busybox's
// applets in /bin. GNU tar stays the only tar.
func (in *inputs) baseArchive() (*cpio.Archive, error) {
	recs := []cpio.Record{
		cpio.Directory("root", 0o700),
		cpio.Directory("etc/kata-cr", 0o755),
		cpio.Symlink("bin/uinit", "kata-cr-agent"),
		cpio.Symlink(strings.TrimPrefix(testload.Path, "/"), "kata-cr-agent"),
		cpio.StaticFile("bin/defaultsh", agentGone, 0o755),
	}
	applets, err := busyboxApplets(in.busybox)
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{"tar": true, "init": true, "uinit": true, "busybox": true, "kata-cr-agent": true, "defaultsh": true, testload.Name: true}
	for _, a := range applets {
		if !skip[a] {
			recs = append(recs, cpio.Symlink("bin/"+a, "busybox"))
		}
	}
	a := uimage.DefaultRamfs()
	for _, r := range recs {
		if err := a.WriteRecord(r); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// agentGone is /bin/defaultsh, which u-root's init runs once its uinit,
// the agent, has exited. The agent powers off when it is done, even on
// error; it only gets here when it crashed or was killed. Without this,
// init would start /bin/sh on a console nobody types into and the host
// would only notice at its timeout.
// The line goes through the kernel log at a critical level: the kernel
// prints it on the console before it powers off, where an echo to the
// console could still sit in the serial port's buffer.
var agentGone = "#!/bin/busybox sh\n/bin/busybox echo '<2>" + vm.AgentGoneMarker + "' > /dev/kmsg\n/bin/busybox poweroff -f\n"

func busyboxApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	var as []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "/") {
			as = append(as, l)
		}
	}
	return as, nil
}

// buildBinaries builds the agent (static: CGO_ENABLED=0) and u-root's init
// with the go command, whose build cache makes a rebuild after a small
// change quick (u-root's own builder always rebuilds everything with -a).
func buildBinaries(ctx context.Context, src, dir, version string) (agent, initBin string, err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", "", errors.New("go not found: the guest agent is built from source: install Go (see go.mod for the version)")
	}
	binDir := filepath.Join(dir, "gobin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		return "", "", err
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+version,
		"-o", binDir+string(filepath.Separator),
		"./cmd/kata-cr-agent", initPackage)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		// The go command was killed, not broken: say why it stopped.
		if ctx.Err() != nil {
			return "", "", fmt.Errorf("build the guest agent: %w", ctx.Err())
		}
		return "", "", fmt.Errorf("build the guest agent: %w: %s", err, excerpt.TailLines(stderr.String(), 5))
	}
	return filepath.Join(binDir, "kata-cr-agent"), filepath.Join(binDir, "init"), nil
}

// lockDir takes an exclusive lock on dir's lock file, so that two kata-cr
// runs build an image once.
func lockDir(ctx context.Context, dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for another image build: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// pruneGrace is how long an image is kept after its last use whatever the
// count: another kata-cr (a checkpoint between its two boots, a parallel
// test) may be about to boot it.
const pruneGrace = time.Hour

// pruneImages keeps the newest keep images in dir (and always current),
// and any image used within pruneGrace.
func pruneImages(dir, current string, keep int) {
	entries, err := filepath.Glob(filepath.Join(dir, "guest-*.cpio"))
	if err != nil || len(entries) <= keep {
		return
	}
	for _, p := range lru.Beyond(entries, keep, pruneGrace) {
		if p != current {
			discard(p)
		}
	}
}

// bareInit is the init of the trivial initramfs: say so and power off.
var bareInit = "#!/bin/busybox sh\n/bin/busybox echo " + vm.BareMarker + "\n/bin/busybox poweroff -f\n"

// BuildBare returns a trivial initramfs, a static busybox whose init prints
// vm.BareMarker and powers off at once: the KVM probe and the
// baseline that the boot benchmark compares kata-cr's guest with. It is
// cached in cacheDir (kernel.CacheDir() when empty) by busybox's identity.
func BuildBare(cacheDir, busybox string) (string, error) {
	if cacheDir == "" {
		cacheDir = kernel.CacheDir()
	}
	bb, err := findBusybox(busybox)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "bare %s\n%s", layoutVersion, bareInit)
	hashStat(h, bb)
	dir := filepath.Join(cacheDir, "images")
	out := filepath.Join(dir, "bare-"+hex.EncodeToString(h.Sum(nil))[:20]+".cpio")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build bare initramfs: %w", err)
	}
	f, err := os.CreateTemp(dir, ".bare-")
	if err != nil {
		return "", fmt.Errorf("build bare initramfs: %w", err)
	}
	defer os.Remove(f.Name())
	rec, err := cpio.NewRecorder().GetRecord(bb)
	if err != nil {
		f.Close()
		return "", fmt.Errorf("build bare initramfs: %w", err)
	}
	rec.Name = "bin/busybox"
	w := cpio.Newc.Writer(f)
	records := []cpio.Record{
		cpio.Directory("bin", 0o755),
		cpio.Directory("dev", 0o755),
		cpio.Directory("proc", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.MakeReproducible(rec),
		cpio.StaticFile("init", bareInit, 0o755),
	}
	err = cpio.WriteRecordsAndDirs(w, records)
	if err == nil {
		err = cpio.WriteTrailer(w)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), out)
	}
	if err != nil {
		return "", fmt.Errorf("build bare initramfs: %w", err)
	}
	return out, nil
}
