// Package kbuild builds Kata's guest kernel the way Kata's own kernel build
// (tools/packaging/kernel/build-kernel.sh) does: Kata's fragment tree merged
// on allnoconfig by the kernel's scripts/kconfig/merge_config.sh, a refusal
// when an option the fragments ask for did not land in the final .config
// (unless Kata's whitelist names it), then the kernel image. By default
// kata-cr's CRIU fragment (what `kata-cr kernel check --emit-fragment`
// writes for the merged fragments) is merged last; Stock leaves it out.
//
// Finished kernels live in kata-cr's cache under kernel.BuiltDir, one
// directory per set of inputs (kernel.BuiltName), sealed with SHA256SUMS
// and renamed into place only when complete. The source tree and the
// object tree of one (source, arch) pair are kept under trees/ so that a
// second configuration of the same source builds incrementally.
package kbuild

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kata-cr/kata-cr/kernel"
)

// Variant says whether kata-cr's CRIU fragment is merged.
type Variant string

// The variants.
const (
	CRIU  Variant = "criu"  // Kata's fragments plus kata-cr's CRIU fragment
	Stock Variant = "stock" // Kata's fragments as they are
)

// Recipe names the way kbuild builds; it is part of every cache key, so a
// change to the commands below gives new cache entries.
const Recipe = "kata-cr-kbuild-1"

// Options are the inputs of a build.
type Options struct {
	// Fragments is Kata's fragment tree: a Kata checkout's
	// tools/packaging/kernel/configs, or the fragments directory in it.
	Fragments string
	// Source is a Debian kernel source series fetched into the cache by
	// scripts/fetch-kernel.sh source SERIES ("6.12"), or the path of a
	// kernel source tarball.
	Source string
	// Arch is a Kata arch name, a GOARCH or a uname -m name; "" is the
	// host's.
	Arch string
	// Variant is CRIU (the default when empty) or Stock.
	Variant Variant
	// CacheDir is kata-cr's cache; "" is kernel.CacheDir().
	CacheDir string
	// Jobs is make's -j; 0 means every CPU.
	Jobs int
	// Log receives the output of merge_config.sh and make; nil discards
	// it (the last lines are quoted in an error either way).
	Log io.Writer
	// Progress, when set, is told what the build is doing.
	Progress func(msg string)
	// Make is the make program; "" is "make" on PATH.
	Make string
}

func (o *Options) fill() error {
	if o.Fragments == "" {
		return errors.New("no fragments: give Kata's kernel config fragment tree (tools/packaging/kernel/configs)")
	}
	// The tools run in the source tree: every path they get is absolute.
	if abs, err := filepath.Abs(o.Fragments); err == nil {
		o.Fragments = abs
	}
	if o.Source == "" {
		return errors.New("no source: give a Debian kernel series (6.12) or a kernel source tarball")
	}
	switch o.Variant {
	case "":
		o.Variant = CRIU
	case CRIU, Stock:
	default:
		return fmt.Errorf("variant %q: use %s or %s", o.Variant, CRIU, Stock)
	}
	host := kernel.KataArch(runtime.GOARCH)
	if o.Arch == "" {
		o.Arch = host
	}
	a := kernel.KataArch(o.Arch)
	if a == "" {
		return &ArchError{Arch: o.Arch}
	}
	o.Arch = a
	if o.CacheDir == "" {
		o.CacheDir = kernel.CacheDir()
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.Make == "" {
		o.Make = "make"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	return nil
}

// ArchError is an architecture Kata's build does not know.
type ArchError struct{ Arch string }

func (e *ArchError) Error() string {
	return fmt.Sprintf("arch %q: use one of %s", e.Arch, strings.Join(kernel.KataArches, ", "))
}

// makeArch is the ARCH= value of the kernel's make for a Kata arch name
// (x86_64 and not x86: allnoconfig with ARCH=x86 gives a 32-bit kernel),
// and image the path of the boot image under the object tree.
var makeArch = map[string]struct{ arch, target, image string }{
	"x86_64":  {"x86_64", "bzImage", "arch/x86/boot/bzImage"},
	"arm64":   {"arm64", "Image", "arch/arm64/boot/Image"},
	"s390":    {"s390", "bzImage", "arch/s390/boot/bzImage"},
	"powerpc": {"powerpc", "vmlinux", "vmlinux"},
	"riscv":   {"riscv", "Image", "arch/riscv/boot/Image"},
}
