package kbuild

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kata-cr/kata-cr/internal/execgroup"
	"github.com/kata-cr/kata-cr/kernel"
)

// Source is the kernel source a build uses.
type Source struct {
	// Spec is what was given: a series or a tarball path.
	Spec string `json:"spec"`
	// Tarball is the source tarball, SHA256 its checksum (the source's
	// identity in the cache key).
	Tarball string `json:"tarball"`
	SHA256  string `json:"sha256"`
	// Version is the kernel version the tree's Makefile names (6.12.118),
	// Package the Debian package it came from ("" for a tarball given).
	Version string `json:"version"`
	Package string `json:"package,omitempty"`
}

// seriesPattern is what tells a series from a tarball path.
var seriesPattern = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

// resolveSource finds the tarball of spec without unpacking it.
func resolveSource(cache, spec string) (*Source, error) {
	s := &Source{Spec: spec}
	if seriesPattern.MatchString(spec) {
		dir := filepath.Join(cache, "kernel-source", spec)
		fetch := "scripts/fetch-kernel.sh source " + spec
		s.Tarball = filepath.Join(dir, "linux-source-"+spec+".tar.xz")
		if _, err := os.Stat(s.Tarball); errors.Is(err, fs.ErrNotExist) {
			return nil, &InputError{fmt.Errorf("no kernel source %s in %s: run `%s` (it downloads Debian's linux-source-%s without installing it)", spec, dir, fetch, spec)}
		}
		if err := kernel.VerifySums(dir); err != nil {
			return nil, &InputError{fmt.Errorf("kernel source %s is damaged (%v): run `%s`, which fetches it again", dir, err, fetch)}
		}
		sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
		if err != nil {
			return nil, &InputError{fmt.Errorf("kernel source %s is unsealed: run `%s`", dir, fetch)}
		}
		for _, line := range strings.Split(string(sums), "\n") {
			if sum, name, ok := strings.Cut(line, "  "); ok && name == filepath.Base(s.Tarball) {
				s.SHA256 = sum
			}
		}
		if s.SHA256 == "" {
			return nil, &InputError{fmt.Errorf("kernel source %s: SHA256SUMS does not list %s: run `%s`", dir, filepath.Base(s.Tarball), fetch)}
		}
		if v, err := os.ReadFile(filepath.Join(dir, "version")); err == nil {
			s.Version = strings.TrimSpace(string(v))
		}
		if p, err := os.ReadFile(filepath.Join(dir, "package")); err == nil {
			s.Package = strings.TrimSpace(string(p))
		}
		return s, nil
	}
	abs, err := filepath.Abs(spec)
	if err != nil {
		return nil, &InputError{fmt.Errorf("kernel source %s: %w", spec, err)}
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, &InputError{fmt.Errorf("kernel source %s: %w: give a Debian series (6.12) or a kernel source tarball", spec, unwrapPath(err))}
	}
	if !st.Mode().IsRegular() {
		return nil, &InputError{fmt.Errorf("kernel source %s is not a regular file: give a Debian series (6.12) or a kernel source tarball", spec)}
	}
	s.Tarball = abs
	if s.SHA256, err = kernel.FileSHA256(abs); err != nil {
		return nil, &InputError{fmt.Errorf("kernel source %s: %w", spec, err)}
	}
	return s, nil
}

// extract unpacks s.Tarball into dest (which must not exist) through a
// work directory beside it: dest appears complete or not at all.
func extract(ctx context.Context, s *Source, dest string) error {
	work, err := os.MkdirTemp(filepath.Dir(dest), ".extract-"+filepath.Base(dest)+"-")
	if err != nil {
		return fmt.Errorf("unpack kernel source: %w", err)
	}
	defer os.RemoveAll(work)
	// GNU tar tells the compression from the content.
	out, err := execgroup.Command(ctx, "tar", "-xf", s.Tarball, "-C", work, "--no-same-owner").CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("unpack kernel source: %w", ctx.Err())
		}
		if noSpace(string(out)) {
			return fmt.Errorf("unpack kernel source %s: no space left on device in %s", s.Spec, filepath.Dir(dest))
		}
		return &InputError{fmt.Errorf("kernel source %s is not a kernel source tarball: tar: %s", s.Spec, firstLine(string(out), err))}
	}
	root, err := treeRoot(work)
	if err != nil {
		return &InputError{fmt.Errorf("kernel source %s is not a kernel source tarball: %w", s.Spec, err)}
	}
	if err := os.Rename(root, dest); err != nil {
		return fmt.Errorf("unpack kernel source: %w", err)
	}
	return nil
}

// treeRoot finds the kernel tree in an unpacked tarball: the directory
// itself or its only subdirectory, holding the top Makefile and
// merge_config.sh.
func treeRoot(dir string) (string, error) {
	cands := []string{dir}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 1 && ents[0].IsDir() {
		cands = append(cands, filepath.Join(dir, ents[0].Name()))
	}
	for _, c := range cands {
		if isKernelTree(c) {
			return c, nil
		}
	}
	return "", errors.New("it holds no Linux tree (a top-level Makefile naming VERSION and PATCHLEVEL, and scripts/kconfig/merge_config.sh)")
}

func isKernelTree(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "scripts", "kconfig", "merge_config.sh")); err != nil {
		return false
	}
	v, err := treeVersion(dir)
	return err == nil && v != ""
}

// treeVersion reads VERSION.PATCHLEVEL.SUBLEVEL from a kernel tree's
// Makefile.
func treeVersion(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, "Makefile"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 0; sc.Scan() && n < 20; n++ {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			vals[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if vals["VERSION"] == "" || vals["PATCHLEVEL"] == "" {
		return "", errors.New("the Makefile names no VERSION and PATCHLEVEL")
	}
	v := vals["VERSION"] + "." + vals["PATCHLEVEL"]
	if s := vals["SUBLEVEL"]; s != "" {
		v += "." + s
	}
	return v + vals["EXTRAVERSION"], nil
}

// InputError is an input (fragments, source) kbuild cannot use.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// firstLine is the first non-empty line of out, else err's text.
func firstLine(out string, err error) string {
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return err.Error()
}

// noSpace reports whether a tool's output says the disk is full.
func noSpace(out string) bool {
	return strings.Contains(out, "No space left on device")
}
