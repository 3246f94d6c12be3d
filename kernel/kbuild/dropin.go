package kbuild

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
)

// DropInName is the file kata-cr writes in Kata's config.d directory.
const DropInName = "50-kata-cr-kernel.toml"

// DropIn is a Kata configuration drop-in (a config.d/*.toml file, merged
// over configuration.toml by Kata's runtime) making Kata's qemu guest boot
// the built kernel r.
func DropIn(r *Result) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by kata-cr kernel build: Kata's guest kernel %s (%s build of\n", r.Release, r.Variant)
	fmt.Fprintf(&b, "# Linux %s from Kata's fragments in %s).\n", r.Source.Version, r.Fragments)
	if len(r.CRIUOptions) > 0 {
		fmt.Fprintf(&b, "# The CRIU fragment added %d option(s); %s\n", len(r.CRIUOptions), "the kernel's .config is "+r.Config)
	}
	doc := map[string]map[string]map[string]string{"hypervisor": {"qemu": {"kernel": r.Kernel}}}
	if err := toml.NewEncoder(&b).Encode(doc); err != nil {
		return nil, fmt.Errorf("write kata drop-in: %w", err)
	}
	return b.Bytes(), nil
}

// DropInPath is where the drop-in goes for dir: dir itself when it is a
// config.d directory, else dir/config.d (dir being the directory of
// Kata's configuration.toml, such as /etc/kata-containers).
func DropInPath(dir string) string {
	if filepath.Base(filepath.Clean(dir)) == "config.d" {
		return filepath.Join(dir, DropInName)
	}
	return filepath.Join(dir, "config.d", DropInName)
}

// WriteDropIn writes r's drop-in into dir (see DropInPath) and returns its
// path; the config.d directory is created when missing, dir is not.
func WriteDropIn(dir string, r *Result, write func(path string, data []byte) error) (string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("write kata drop-in: %w", unwrapPath(err))
	}
	if !st.IsDir() {
		return "", fmt.Errorf("write kata drop-in: %s is not a directory: give the directory of Kata's configuration.toml or its config.d", dir)
	}
	data, err := DropIn(r)
	if err != nil {
		return "", err
	}
	path := DropInPath(dir)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("write kata drop-in: %w", err)
	}
	if err := write(path, data); err != nil {
		return "", fmt.Errorf("write kata drop-in: %w", err)
	}
	return path, nil
}
