package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// DefaultSeries is the cached kernel used when nothing else names
// one: the series `make guest-kernel` fetches by default.
const DefaultSeries = "6.1"

// Series are the kernel series scripts/fetch-kernel.sh can fetch.
var Series = []string{"6.1", "6.12", "7.3"}

// DefaultKataConfigPaths are where Kata looks for its configuration, in
// Kata's own order: the first file that exists wins.
var DefaultKataConfigPaths = []string{
	"/etc/kata-containers/configuration.toml",
	"/usr/share/defaults/kata-containers/configuration.toml",
	"/opt/kata/share/defaults/kata-containers/configuration.toml",
}

// FindOptions says which guest kernel to use.
type FindOptions struct {
	// Kernel, Config and Modules come from --kernel, --kernel-config and
	// --modules. Config and Modules also override what is found beside a
	// Kata or cached kernel.
	Kernel, Config, Modules string
	// Version picks a cached kernel ("6.1", "6.12", "7.3", or the name of
	// a kernel `kata-cr kernel build` built) and skips Kata's
	// configuration. Empty means Kata's kernel if there is one, else the
	// cached DefaultSeries. It cannot be combined with Kernel.
	Version string
	// CacheDir is kata-cr's cache; empty means CacheDir().
	CacheDir string
	// KataConfigPaths are searched for Kata's configuration.toml; nil means
	// DefaultKataConfigPaths, an empty slice searches nothing.
	KataConfigPaths []string
}

// Guest is a guest kernel ready to boot.
type Guest struct {
	// Image is the kernel image (a bzImage or an ELF vmlinux).
	Image string
	// Config is the kernel's .config, empty when none was found.
	Config string
	// ModulesDir holds modules.dep and the modules for Release, empty when
	// the kernel has no separate modules (Kata builds them in).
	ModulesDir string
	// Release is the kernel's uname -r, read from the image.
	Release string
	// Source says where the kernel came from: "flag: --kernel",
	// "kata: PATH-OF-CONFIGURATION.TOML" or "cache: DIR (PACKAGE VERSION)".
	Source string
	// Kata is the hypervisor section that named the kernel when Source is
	// Kata's configuration.
	Kata *KataHypervisor
}

// KataHypervisor is the part of a Kata configuration.toml hypervisor
// section that says how Kata boots its guest.
type KataHypervisor struct {
	// ConfigPath is the configuration.toml it was read from.
	ConfigPath string `toml:"-"`
	// Name is the hypervisor table's name, e.g. "qemu".
	Name         string `toml:"-"`
	Path         string `toml:"path"`
	Kernel       string `toml:"kernel"`
	Image        string `toml:"image"`
	Initrd       string `toml:"initrd"`
	KernelParams string `toml:"kernel_params"`
	MachineType  string `toml:"machine_type"`
}

// CacheDir is kata-cr's cache directory: $KATA_CR_CACHE, else
// $XDG_CACHE_HOME/kata-cr, else ~/.cache/kata-cr. scripts/fetch-kernel.sh
// follows the same rule.
func CacheDir() string {
	if d := os.Getenv("KATA_CR_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "kata-cr")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		// Without a home (a bare service environment) a per-user temporary
		// cache still lets kata-cr run; it just caches less.
		return filepath.Join(os.TempDir(), fmt.Sprintf("kata-cr-%d", os.Getuid()))
	}
	return filepath.Join(home, ".cache", "kata-cr")
}

// Find picks the guest kernel: the one given with --kernel, else
// the cached kernel opts.Version, else the kernel named by Kata's
// configuration.toml, else the cached DefaultSeries.
func Find(opts FindOptions) (*Guest, error) {
	if opts.CacheDir == "" {
		opts.CacheDir = CacheDir()
	}
	// Absolute paths survive a change of directory (qemu, the image cache).
	for _, p := range []*string{&opts.Kernel, &opts.Config, &opts.Modules} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	var (
		k   *Guest
		err error
	)
	switch {
	case opts.Kernel != "" && opts.Version != "":
		return nil, fmt.Errorf("--kernel %s and kernel version %s both given: use one", opts.Kernel, opts.Version)
	case opts.Kernel != "":
		k, err = flagKernel(opts)
	case opts.Version != "" && !slices.Contains(Series, opts.Version):
		k, err = builtKernel(opts.CacheDir, opts.Version)
	case opts.Version != "":
		k, err = cachedKernel(opts.CacheDir, opts.Version, "")
	default:
		k, err = kataKernel(opts.KataConfigPaths)
		if err == nil && k == nil {
			k, err = cachedKernel(opts.CacheDir, DefaultSeries, "no --kernel, no Kata configuration, and ")
		}
	}
	if err != nil {
		return nil, err
	}
	if opts.Kernel == "" {
		if err := applyOverrides(k, opts); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func flagKernel(opts FindOptions) (*Guest, error) {
	release, err := ImageRelease(opts.Kernel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("--kernel %s: no such file: give the path of a guest kernel (vmlinuz), or leave --kernel out to use Kata's or the cached one", opts.Kernel)
	}
	if err != nil {
		return nil, fmt.Errorf("--kernel %s: %w", opts.Kernel, err)
	}
	k := &Guest{Image: opts.Kernel, Release: release, Source: "flag: --kernel"}
	if opts.Config != "" {
		if err := regularFile(opts.Config); err != nil {
			return nil, fmt.Errorf("--kernel-config %s: %w", opts.Config, err)
		}
		k.Config = opts.Config
	} else {
		k.Config = configBeside(opts.Kernel, release, false)
	}
	if opts.Modules != "" {
		dir, err := modulesDir(opts.Modules, release)
		if err != nil {
			return nil, fmt.Errorf("--modules %s: %w", opts.Modules, err)
		}
		k.ModulesDir = dir
	} else {
		k.ModulesDir = modulesBeside(opts.Kernel, release)
	}
	return k, nil
}

// applyOverrides lets --kernel-config and --modules replace what was found
// beside a Kata or cached kernel.
func applyOverrides(k *Guest, opts FindOptions) error {
	if opts.Config != "" {
		if err := regularFile(opts.Config); err != nil {
			return fmt.Errorf("--kernel-config %s: %w", opts.Config, err)
		}
		k.Config = opts.Config
	}
	if opts.Modules != "" {
		dir, err := modulesDir(opts.Modules, k.Release)
		if err != nil {
			return fmt.Errorf("--modules %s: %w", opts.Modules, err)
		}
		k.ModulesDir = dir
	}
	return nil
}

// kataKernel returns the kernel named by the first Kata configuration
// found, or nil when there is none. A configuration that exists but names
// no usable kernel is an error rather than a silent fall-back, so that a
// Kata user is never checked against a kernel Kata does not boot.
func kataKernel(paths []string) (*Guest, error) {
	if paths == nil {
		paths = DefaultKataConfigPaths
	}
	for _, p := range paths {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		h, err := ReadKataConfig(p)
		if err != nil {
			return nil, err
		}
		if h.Kernel == "" {
			return nil, fmt.Errorf("kata configuration %s: [hypervisor.%s] names no kernel", p, h.Name)
		}
		// Kata names a stable symlink (vmlinuz.container); the versioned
		// file behind it carries the name the config is installed under.
		image, err := filepath.EvalSymlinks(h.Kernel)
		if err != nil {
			return nil, fmt.Errorf("kata configuration %s: kernel %s: %w", p, h.Kernel, notExist(err))
		}
		release, err := ImageRelease(image)
		if err != nil {
			return nil, fmt.Errorf("kata configuration %s: kernel %s: %w", p, h.Kernel, err)
		}
		k := &Guest{
			Image:      image,
			Release:    release,
			Source:     "kata: " + p,
			Kata:       h,
			Config:     configBeside(image, release, true),
			ModulesDir: modulesBeside(image, release),
		}
		if k.Config == "" && image != h.Kernel {
			k.Config = configBeside(h.Kernel, release, true)
		}
		return k, nil
	}
	return nil, nil
}

// ReadKataConfig reads the hypervisor section of a Kata configuration.toml:
// [hypervisor.qemu] when present (kata-cr boots with qemu), else the only
// hypervisor section.
func ReadKataConfig(path string) (*KataHypervisor, error) {
	var f struct {
		Hypervisor map[string]KataHypervisor `toml:"hypervisor"`
	}
	if _, err := toml.DecodeFile(path, &f); err != nil {
		return nil, fmt.Errorf("read kata configuration %s: %w", path, err)
	}
	name := "qemu"
	h, ok := f.Hypervisor[name]
	if !ok {
		if len(f.Hypervisor) != 1 {
			names := make([]string, 0, len(f.Hypervisor))
			for n := range f.Hypervisor {
				names = append(names, n)
			}
			slices.Sort(names)
			return nil, fmt.Errorf("kata configuration %s: no [hypervisor.qemu] section (found %d hypervisor sections: %s)",
				path, len(names), strings.Join(names, ", "))
		}
		for n, v := range f.Hypervisor {
			name, h = n, v
		}
	}
	h.ConfigPath = path
	h.Name = name
	return &h, nil
}

// cachedKernel is the kernel scripts/fetch-kernel.sh left in
// CACHE/kernels/VERSION; why says what was tried before, for the error.
func cachedKernel(cache, version, why string) (*Guest, error) {
	if !slices.Contains(Series, version) {
		return nil, fmt.Errorf("unknown kernel version %q: use one of %s", version, strings.Join(Series, ", "))
	}
	dir := filepath.Join(cache, "kernels", version)
	fetch := "make guest-kernel"
	if version != DefaultSeries {
		fetch += " KERNEL=" + version
	}
	image := filepath.Join(dir, "vmlinuz")
	if _, err := os.Stat(image); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no guest kernel: %sno cached %s kernel in %s: run `%s`", why, version, dir, fetch)
	}
	if err := verifySums(dir); err != nil {
		return nil, fmt.Errorf("cached kernel %s is damaged (%v): run `%s`, which fetches it again", dir, err, fetch)
	}
	release, err := ImageRelease(image)
	if err != nil {
		return nil, fmt.Errorf("cached kernel %s: %w: remove %s and run `%s`", image, err, dir, fetch)
	}
	k := &Guest{
		Image:      image,
		Release:    release,
		Config:     filepath.Join(dir, "config"),
		ModulesDir: filepath.Join(dir, "modules", release),
		Source:     "cache: " + dir,
	}
	for _, need := range []string{k.Config, filepath.Join(k.ModulesDir, "modules.dep")} {
		if _, err := os.Stat(need); err != nil {
			return nil, fmt.Errorf("cached kernel %s is incomplete (%s: %w): remove it and run `%s`", dir, need, notExist(err), fetch)
		}
	}
	if pkg, err := os.ReadFile(filepath.Join(dir, "package")); err == nil {
		k.Source += " (" + strings.TrimSpace(string(pkg)) + ")"
	}
	return k, nil
}

// verifySums checks the files a cache entry's SHA256SUMS (written by
// scripts/fetch-kernel.sh, in sha256sum's format) lists. An entry from
// before the seal has none and passes.
func verifySums(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		want, name, ok := strings.Cut(line, "  ")
		if !ok || len(want) != 64 || name == "" || !filepath.IsLocal(name) {
			return fmt.Errorf("SHA256SUMS line %q is not sha256sum's", line)
		}
		got, err := FileSHA256(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("%s: %w", name, notExist(err))
		}
		if got != want {
			return fmt.Errorf("%s does not match its checksum", name)
		}
	}
	return nil
}

// configBeside finds the .config installed next to a kernel image: Debian
// and Kata install config-VERSION beside vmlinuz-VERSION, kata-cr's cache
// has a plain "config". With anyConfig, a directory holding exactly one
// config-* file (a Kata install) gives that one.
func configBeside(image, release string, anyConfig bool) string {
	dir, base := filepath.Split(image)
	var names []string
	for _, prefix := range []string{"vmlinuz-", "vmlinux-", "bzImage-"} {
		if v, ok := strings.CutPrefix(base, prefix); ok {
			names = append(names, "config-"+v)
		}
	}
	names = append(names, "config-"+release, "config")
	for _, n := range names {
		if p := filepath.Join(dir, n); regularFile(p) == nil {
			return p
		}
	}
	if anyConfig {
		if m, _ := filepath.Glob(filepath.Join(dir, "config-*")); len(m) == 1 {
			return m[0]
		}
	}
	return ""
}

// modulesBeside finds the modules of an image given without --modules:
// the cache layout (modules/RELEASE beside it), then an installed kernel's
// /lib/modules/RELEASE.
func modulesBeside(image, release string) string {
	for _, d := range []string{
		filepath.Join(filepath.Dir(image), "modules", release),
		filepath.Join("/lib/modules", release),
	} {
		if regularFile(filepath.Join(d, "modules.dep")) == nil {
			return d
		}
	}
	return ""
}

// modulesDir resolves --modules: the directory holding modules.dep, or one
// above it (DIR/RELEASE, DIR/lib/modules/RELEASE, DIR/usr/lib/modules/RELEASE).
func modulesDir(dir, release string) (string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return "", notExist(err)
	}
	if !st.IsDir() {
		return "", errors.New("not a directory: pass the modules directory holding modules.dep")
	}
	for _, d := range []string{
		dir,
		filepath.Join(dir, release),
		filepath.Join(dir, "lib", "modules", release),
		filepath.Join(dir, "usr", "lib", "modules", release),
	} {
		if regularFile(filepath.Join(d, "modules.dep")) == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no modules.dep for %s in it or in %s: run `depmod -b ROOT %s` or pass the directory that holds modules.dep",
		release, filepath.Join(dir, release), release)
}

func regularFile(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return notExist(err)
	}
	if !st.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	return nil
}

// notExist shortens the common case to "no such file" (the caller names
// the path), still fs.ErrNotExist to errors.Is; other errors pass unchanged.
func notExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return noSuchFile{}
	}
	return err
}

type noSuchFile struct{}

func (noSuchFile) Error() string        { return "no such file" }
func (noSuchFile) Is(target error) bool { return target == fs.ErrNotExist }

// ErrNotKernel is returned for a file that is neither a bzImage nor an ELF
// vmlinux.
var ErrNotKernel = errors.New(`not a Linux kernel image (no bzImage "HdrS" magic at 0x202, not an ELF vmlinux): pass a vmlinuz/bzImage or vmlinux`)

// ImageRelease reads the release (uname -r) from a kernel image: from the
// kernel_version string of a bzImage's setup header (see the kernel's
// Documentation/arch/x86/boot.rst), or from the "Linux version" banner
// of an ELF vmlinux.
func ImageRelease(image string) (string, error) {
	f, err := os.Open(image)
	if err != nil {
		return "", notExist(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	hdr, err := readImageHeader(f)
	if err != nil {
		return "", fmt.Errorf("read kernel header: %w", err)
	}
	switch imageFormat(hdr) {
	case formatBzImage:
		h, _ := parseBzHeader(hdr)
		return h.release(f)
	case formatELF:
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		return bannerRelease(f)
	}
	return "", ErrNotKernel
}

// bannerRelease scans an uncompressed kernel for linux_banner, "Linux
// version RELEASE (builder) ...".
func bannerRelease(r io.Reader) (string, error) {
	const marker = "Linux version "
	var carry []byte
	chunk := make([]byte, 256<<10)
	for {
		n, err := io.ReadFull(r, chunk)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		data := append(carry, chunk[:n]...)
		for i := 0; ; {
			j := bytes.Index(data[i:], []byte(marker))
			if j < 0 {
				break
			}
			rest := data[i+j+len(marker):]
			if end := bytes.IndexAny(rest, " \x00"); end > 0 {
				if rel := string(rest[:end]); validRelease(rel) {
					return rel, nil
				}
			}
			i += j + 1
		}
		if keep := len(marker) + 128; len(data) > keep {
			carry = append(carry[:0], data[len(data)-keep:]...)
		} else {
			carry = append(carry[:0], data...)
		}
		if err == io.EOF {
			return "", errors.New(`ELF file without a "Linux version" banner: not a Linux kernel`)
		}
		if err != nil {
			return "", err
		}
	}
}

// validRelease accepts what uname -r can print: it starts with a digit and
// has no control characters or format specifiers (the banner is also a
// printf format with "%s" in some builds' .rodata).
func validRelease(s string) bool {
	if s == "" || len(s) > 64 || s[0] < '0' || s[0] > '9' {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c > '~' || c == '%' {
			return false
		}
	}
	return true
}

// CheckImage rejects what qemu could not boot with one clear line
// instead of qemu's own message: a missing file, a directory, or a file
// that is neither a bzImage nor an ELF vmlinux (imageFormat), the formats
// qemu's -kernel boots.
func CheckImage(path string) error {
	if path == "" {
		return errors.New("no guest kernel given: pass --kernel FILE (a vmlinuz) or run make guest-kernel")
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("kernel %s: no such file: pass a vmlinuz file as --kernel", path)
		}
		return fmt.Errorf("kernel %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return fmt.Errorf("kernel %s: is a directory: pass a vmlinuz file as --kernel", path)
	}
	hdr, err := readImageHeader(f)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", path, err)
	}
	if format := imageFormat(hdr); format != formatBzImage && format != formatELF {
		return fmt.Errorf("kernel %s: not a Linux kernel image (no x86 boot header): pass a vmlinuz file as --kernel", path)
	}
	return nil
}
