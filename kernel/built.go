package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// BuiltDir is where `kata-cr kernel build` keeps the kernels it built, one
// directory per build named as BuiltName says, under kata-cr's cache.
func BuiltDir(cache string) string { return filepath.Join(cache, "kernel-build") }

// The files of a built kernel's directory; SHA256SUMS seals them.
const (
	BuiltImage   = "vmlinuz"
	BuiltConfig  = "config"
	BuiltRelease = "release"
	BuiltReport  = "build.json"
)

// BuiltNames lists the kernels `kata-cr kernel build` left in cache, in
// name order. Work directories (names starting with a dot) are not kernels.
func BuiltNames(cache string) []string {
	ents, err := os.ReadDir(BuiltDir(cache))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || e.Name() == "trees" {
			continue
		}
		if regularFile(filepath.Join(BuiltDir(cache), e.Name(), BuiltImage)) == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// builtKernel is the kernel `kata-cr kernel build` left under name: a
// built kernel has everything built in, so it has no modules directory.
// A unique prefix of a name is enough.
func builtKernel(cache, name string) (*Guest, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("unknown kernel version %q: use one of %s, or the name of a kernel built by kata-cr kernel build", name, strings.Join(Series, ", "))
	}
	dir := filepath.Join(BuiltDir(cache), name)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		var match []string
		for _, n := range BuiltNames(cache) {
			if strings.HasPrefix(n, name) {
				match = append(match, n)
			}
		}
		switch len(match) {
		case 1:
			dir = filepath.Join(BuiltDir(cache), match[0])
		case 0:
			built := "none yet"
			if names := BuiltNames(cache); len(names) > 0 {
				built = strings.Join(names, ", ")
			}
			return nil, fmt.Errorf("unknown kernel version %q: use one of %s, or a kernel built by kata-cr kernel build (built: %s)", name, strings.Join(Series, ", "), built)
		default:
			return nil, fmt.Errorf("kernel %q names %d built kernels (%s): give more of the name", name, len(match), strings.Join(match, ", "))
		}
	}
	if err := verifySums(dir); err != nil {
		return nil, fmt.Errorf("built kernel %s is damaged (%v): remove it and run kata-cr kernel build again", dir, err)
	}
	image := filepath.Join(dir, BuiltImage)
	release, err := ImageRelease(image)
	if err != nil {
		return nil, fmt.Errorf("built kernel %s: %w: remove %s and run kata-cr kernel build again", image, err, dir)
	}
	return &Guest{
		Image:   image,
		Release: release,
		Config:  filepath.Join(dir, BuiltConfig),
		Source:  "built: " + dir,
	}, nil
}

// SealBuilt writes dir's SHA256SUMS over the files of a built kernel (and
// extra files of dir), the seal builtKernel verifies.
func SealBuilt(dir string, extra ...string) error {
	return writeSums(dir, append([]string{BuiltImage, BuiltConfig, BuiltRelease, BuiltReport}, extra...)...)
}

// writeSums writes dir/SHA256SUMS, in sha256sum's format, over names.
func writeSums(dir string, names ...string) error {
	var b strings.Builder
	for _, n := range names {
		sum, err := FileSHA256(filepath.Join(dir, n))
		if err != nil {
			return fmt.Errorf("seal %s: %w", dir, err)
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, n)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("seal %s: %w", dir, err)
	}
	return nil
}

// FileSHA256 returns the hex SHA-256 of the file at path.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// VerifySums checks the files dir/SHA256SUMS lists (an entry of the cache
// written by scripts/fetch-kernel.sh or kata-cr kernel build).
func VerifySums(dir string) error { return verifySums(dir) }

// FragmentRoot is the directory of a Kata fragment tree holding common/
// and the arch directories: dir itself, or dir/fragments.
func FragmentRoot(dir string) (string, error) { return fragmentRoot(dir) }
