// Package proc reads what kata-cr needs of a procfs mount and
// prometheus/procfs does not give: /proc/PID/status with the NSpid,
// NStgid, NSpgid and NSsid lines, the process tree below a pid (through the
// children files, or every process's parent where the kernel has none),
// open file descriptors and their fdinfo, and /proc/locks. The mount is a
// path (FS), so that tests point it at fixture trees.
package proc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// FS is a procfs mount.
type FS struct {
	root string
}

// New returns the procfs mounted at root; "" means /proc.
func New(root string) FS {
	if root == "" {
		root = "/proc"
	}
	return FS{root: root}
}

// Root is where the procfs is mounted.
func (f FS) Root() string {
	if f.root == "" {
		return "/proc"
	}
	return f.root
}

// Path returns the path of elem below /proc/PID.
func (f FS) Path(pid int, elem ...string) string {
	return filepath.Join(append([]string{f.Root(), strconv.Itoa(pid)}, elem...)...)
}

// Gone reports whether err means a process (or one of its tasks or fds)
// went away while it was being read.
func Gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// Pids lists the processes of the procfs, ascending.
func (f FS) Pids() ([]int, error) {
	return readNumbers(f.Root())
}

// NSLink reads /proc/PID/ns/NAME, e.g. "pid:[4026531836]".
func (f FS) NSLink(pid int, name string) (string, error) {
	return os.Readlink(f.Path(pid, "ns", name))
}

// SelfNS reads a namespace of the calling process as the procfs shows it
// (/proc/self/ns/NAME).
func (f FS) SelfNS(name string) (string, error) {
	return os.Readlink(filepath.Join(f.Root(), "self", "ns", name))
}

// Live reports whether f is the procfs of the running kernel as seen by
// the calling process (and not a fixture tree): only then can what it
// names be looked up through netlink or stat'ed.
func (f FS) Live() bool {
	self, err := os.Readlink(filepath.Join(f.Root(), "self"))
	return err == nil && self == strconv.Itoa(os.Getpid())
}

// readFile reads the file at path and parses it; a parse error names the
// path, a read error is the *fs.PathError of the read.
func readFile[T any](path string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	data, err := os.ReadFile(path)
	if err != nil {
		return zero, err
	}
	v, err := parse(data)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// readDir lists dir, numbers ascending first, then other names in order.
func readDir(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(names, func(a, b string) int {
		na, ea := strconv.Atoi(a)
		nb, eb := strconv.Atoi(b)
		if ea == nil && eb == nil {
			return na - nb
		}
		return strings.Compare(a, b)
	})
	return names, nil
}

// readNumbers lists the entries of dir that are numbers (pids, tids,
// fds), ascending.
func readNumbers(dir string) ([]int, error) {
	names, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, n := range names {
		if v, err := strconv.Atoi(n); err == nil {
			out = append(out, v)
		}
	}
	return out, nil
}
