// Package filecopy copies a regular file's contents to a new path, with
// the permission bits, the refusal to overwrite and the all-or-nothing
// replacement its callers ask for.
package filecopy

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Options say how Copy creates dst.
type Options struct {
	// Mode is dst's permission bits, set whatever the umask; 0 means the
	// permission bits of src.
	Mode fs.FileMode
	// Exclusive fails with fs.ErrExist when dst exists (O_EXCL). Without
	// it an existing dst is truncated and written over.
	Exclusive bool
	// Atomic writes a temporary file beside dst and renames it over dst,
	// so that dst is either the old file or the whole new one, and a
	// symlink at dst is replaced rather than followed. Exclusive is
	// ignored.
	Atomic bool
	// MakeParents creates dst's missing parent directories (0755).
	MakeParents bool
}

// ErrNotRegular is returned, in an *fs.PathError of the open of src, when
// src is not a regular file once symlinks are followed.
var ErrNotRegular = errors.New("not a regular file")

// Copy copies the regular file src (following symlinks) to dst. io.Copy
// between two files lets the kernel move the data (copy_file_range,
// sendfile) where it can.
func Copy(src, dst string, o Options) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return &fs.PathError{Op: "open", Path: src, Err: ErrNotRegular}
	}
	mode := o.Mode.Perm()
	if mode == 0 {
		mode = st.Mode().Perm()
	}
	if o.MakeParents {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
	}
	if o.Atomic {
		return copyAtomic(in, dst, mode)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if o.Exclusive {
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	out, err := os.OpenFile(dst, flags, mode)
	if err != nil {
		return err
	}
	return finish(out, in, mode)
}

// copyAtomic writes in to a temporary file beside dst and renames it
// over dst.
func copyAtomic(in *os.File, dst string, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := finish(tmp, in, mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// finish copies in to out, gives out its mode (which the umask may have
// masked at creation, or CreateTemp set to 0600) and closes it.
func finish(out, in *os.File, mode fs.FileMode) error {
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
