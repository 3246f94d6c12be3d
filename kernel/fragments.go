package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// KataArches are the architecture directories of Kata's fragment tree, as
// the Linux build names them (Kata's build-kernel.sh arch_to_kernel).
var KataArches = []string{"x86_64", "arm64", "s390", "powerpc", "riscv"}

// KataArch maps a GOARCH, a uname -m name or a Kata name to the name of
// Kata's fragment directory; "" when there is none.
func KataArch(arch string) string {
	switch arch {
	case "amd64", "x86_64", "x86":
		return "x86_64"
	case "arm64", "aarch64":
		return "arm64"
	case "s390x", "s390":
		return "s390"
	case "ppc64le", "ppc64", "powerpc":
		return "powerpc"
	case "riscv64", "riscv":
		return "riscv"
	}
	return ""
}

// LoadFragments merges a Kata kernel config fragment tree the way Kata's
// tools/packaging/kernel/build-kernel.sh does: every common/*.conf except
// those mentioning "!<arch>" (the exclusion tag in their header), then
// <arch>/*.conf, each in name order, a later setting winning. Kata hands
// that list to the kernel's merge_config.sh -n, whose base is allnoconfig:
// an option no fragment sets is off unless Kconfig turns it on by itself,
// which Implied records for the options this package knows. dir may also
// be the configs/ directory above fragments/. arch "" means the host's.
func LoadFragments(dir, arch string) (*Config, error) {
	karch := KataArch(arch)
	if arch == "" {
		karch = KataArch(runtime.GOARCH)
	}
	if karch == "" {
		return nil, fmt.Errorf("arch %q: use one of %s", arch, strings.Join(KataArches, ", "))
	}
	root, err := fragmentRoot(dir)
	if err != nil {
		return nil, err
	}
	common, err := confFiles(filepath.Join(root, "common"))
	if err != nil {
		return nil, err
	}
	archFiles, err := confFiles(filepath.Join(root, karch))
	if err != nil {
		return nil, err
	}
	if len(archFiles) == 0 {
		return nil, fmt.Errorf("%s has no %s/*.conf fragments (arches here: %s): pass --arch", dir, karch, strings.Join(arches(root), ", "))
	}

	c := newConfig(dir)
	c.Arch = karch
	tag := []byte("!" + karch)
	for _, group := range [][]string{common, archFiles} {
		for _, path := range group {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("read kernel config fragment: %w", err)
			}
			rel, _ := filepath.Rel(root, path)
			// build-kernel.sh excludes with grep -L over the whole file, so
			// "!s390" also matches a "!s390x" header; do the same.
			if bytes.Contains(data, tag) {
				c.Excluded = append(c.Excluded, rel)
				continue
			}
			if !looksLikeText(data) {
				return nil, fmt.Errorf("kernel config fragment %s is a binary file: remove it from the tree", path)
			}
			if _, err := c.parse(bytes.NewReader(data), rel); err != nil {
				return nil, fmt.Errorf("read kernel config fragment %s: %w", path, err)
			}
			c.Fragments = append(c.Fragments, rel)
		}
	}
	if len(c.Values) == 0 {
		return nil, fmt.Errorf("the fragments in %s set no CONFIG_ option", dir)
	}
	resolveImplied(c)
	return c, nil
}

// fragmentRoot finds the directory holding common/ and the arch
// directories: dir itself, or dir/fragments.
func fragmentRoot(dir string) (string, error) {
	for _, d := range []string{dir, filepath.Join(dir, "fragments")} {
		fi, err := os.Stat(filepath.Join(d, "common"))
		if err == nil && fi.IsDir() {
			return d, nil
		}
	}
	if _, err := os.ReadDir(dir); err != nil {
		return "", fmt.Errorf("read kernel config fragments: %w", err)
	}
	return "", fmt.Errorf("%s is a directory without a common/ fragment directory: give a Kata kernel config fragment tree (tools/packaging/kernel/configs/fragments) or a config file", dir)
}

// confFiles lists dir/*.conf in name order (the C locale's, which the
// shell glob in build-kernel.sh gives under LANG=C). A missing dir is
// empty.
func confFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read kernel config fragments: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".conf") && (e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

func arches(root string) []string {
	var out []string
	for _, a := range KataArches {
		if files, _ := confFiles(filepath.Join(root, a)); len(files) > 0 {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = []string{"none"}
	}
	return out
}
