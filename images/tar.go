package images

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// WriteTar writes every entry under srcDir to w as a tar stream with names
// relative to srcDir, in a stable order (WriteTarFiles says which kinds).
func WriteTar(w io.Writer, srcDir string) error {
	var names []string
	err := filepath.WalkDir(srcDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == srcDir {
			return nil
		}
		rel, err := filepath.Rel(srcDir, p)
		if err != nil {
			return err
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", srcDir, err)
	}
	return WriteTarFiles(w, srcDir, names)
}

// WriteTarFiles writes the named entries of srcDir (slash-separated paths
// relative to it) to w as a tar stream. A directory is written as an entry
// of its own, without its contents. Regular files, directories, symlinks,
// FIFOs and device nodes; a regular file named twice through hard links is
// written once and linked after. A socket cannot be carried in a tar: it
// is an error.
func WriteTarFiles(w io.Writer, srcDir string, names []string) error {
	tw := tar.NewWriter(w)
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	links := map[[2]uint64]string{}
	for _, name := range sorted {
		clean, err := cleanName(name)
		if err != nil {
			return fmt.Errorf("tar %s: %w", srcDir, err)
		}
		if err := addTarEntry(tw, srcDir, clean, links); err != nil {
			return fmt.Errorf("tar %s: %w", srcDir, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar %s: %w", srcDir, err)
	}
	return nil
}

// addTarEntry writes one entry; links maps the device and inode of the
// regular files with other hard links written so far to their names.
func addTarEntry(tw *tar.Writer, srcDir, name string, links map[[2]uint64]string) error {
	p := filepath.Join(srcDir, filepath.FromSlash(name))
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(unixMode(fi.Mode())),
		ModTime: fi.ModTime(),
		Format:  tar.FormatPAX,
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil {
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	}
	switch {
	case fi.Mode().IsRegular() && st != nil && st.Nlink > 1 && links[[2]uint64{st.Dev, st.Ino}] != "":
		hdr.Typeflag = tar.TypeLink
		hdr.Linkname = links[[2]uint64{st.Dev, st.Ino}]
	case fi.Mode().IsRegular():
		hdr.Typeflag = tar.TypeReg
		hdr.Size = fi.Size()
		if st != nil && st.Nlink > 1 {
			links[[2]uint64{st.Dev, st.Ino}] = name
		}
	case fi.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case fi.Mode()&fs.ModeSymlink != 0:
		hdr.Typeflag = tar.TypeSymlink
		if hdr.Linkname, err = os.Readlink(p); err != nil {
			return err
		}
	case fi.Mode()&fs.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
	case fi.Mode()&fs.ModeDevice != 0 && st != nil:
		hdr.Typeflag = tar.TypeBlock
		if fi.Mode()&fs.ModeCharDevice != 0 {
			hdr.Typeflag = tar.TypeChar
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	default:
		return fmt.Errorf("%s: %s cannot be carried in a tar", name, fi.Mode().Type())
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%s: changed size while being read (%d, then %d bytes)", name, hdr.Size, n)
	}
	return nil
}

// unixMode turns Go's file mode bits back into the permission, setuid,
// setgid and sticky bits of a tar header.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}

// ErrUnsafePath is wrapped by ExtractTar's error for an entry that would
// land outside the target directory.
var ErrUnsafePath = errors.New("unsafe path")

// cleanName checks a tar entry name: relative, no "..", and returns it
// cleaned. The root itself comes back as ".".
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty entry name: %w", ErrUnsafePath)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry %q is absolute: %w", name, ErrUnsafePath)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q leaves the directory: %w", name, ErrUnsafePath)
		}
	}
	return path.Clean(name), nil
}

// ExtractTar extracts a tar stream into dstDir (created 0700 when missing):
// regular files, directories and symlinks. Entries that are absolute, climb
// out with "..", or would be written through a symlink (including one the
// stream itself created) are refused with ErrUnsafePath, before anything
// is written for them. Symlinks are created as they are and never
// followed. Ownership is kept when running as root.
func ExtractTar(r io.Reader, dstDir string) error {
	return extractTar(r, dstDir, false)
}

// ExtractTarSpecial is ExtractTar that also makes FIFOs, device nodes and
// hard links (to entries inside dstDir): for a container's own files,
// extracted where the container will run, never on the host.
func ExtractTarSpecial(r io.Reader, dstDir string) error {
	return extractTar(r, dstDir, true)
}

func extractTar(r io.Reader, dstDir string, special bool) error {
	if err := os.MkdirAll(dstDir, 0o700); err != nil {
		return fmt.Errorf("extract into %s: %w", dstDir, err)
	}
	root, err := unix.Open(dstDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("extract into %s: %w", dstDir, err)
	}
	defer unix.Close(root)
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract into %s: read tar: %w", dstDir, err)
		}
		if err := extractEntry(root, hdr, tr, special); err != nil {
			return fmt.Errorf("extract into %s: %w", dstDir, err)
		}
	}
}

func extractEntry(root int, hdr *tar.Header, r io.Reader, special bool) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil
	}
	parent, err := openParent(root, path.Dir(name))
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	defer unix.Close(parent)
	base := path.Base(name)
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = unix.Mkdirat(parent, base, 0o700)
		if errors.Is(err, unix.EEXIST) {
			var st unix.Stat_t
			if err = unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				err = fmt.Errorf("exists and is not a directory")
			}
		}
		if err == nil {
			err = unix.Fchmodat(parent, base, mode, 0)
		}
	case tar.TypeReg:
		err = extractFile(parent, base, mode, hdr.Size, r)
	case tar.TypeSymlink:
		if err = removeEntry(parent, base); err == nil {
			err = unix.Symlinkat(hdr.Linkname, parent, base)
		}
	case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
		if !special {
			return fmt.Errorf("entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
		}
		kind := map[byte]uint32{tar.TypeFifo: unix.S_IFIFO, tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK}[hdr.Typeflag]
		if err = removeEntry(parent, base); err == nil {
			err = unix.Mknodat(parent, base, kind|mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))))
		}
	case tar.TypeLink:
		if !special {
			return fmt.Errorf("entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
		}
		return extractLink(root, parent, base, hdr)
	default:
		return fmt.Errorf("entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
	}
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("entry %q: chown: %w", hdr.Name, err)
		}
		if hdr.Typeflag != tar.TypeSymlink {
			// chown clears setuid and setgid: set the mode again.
			if err := unix.Fchmodat(parent, base, mode, 0); err != nil {
				return fmt.Errorf("entry %q: chmod: %w", hdr.Name, err)
			}
		}
	}
	if !hdr.ModTime.IsZero() && hdr.Typeflag != tar.TypeDir {
		ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		if err := unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("entry %q: set times: %w", hdr.Name, err)
		}
	}
	return nil
}

// extractLink makes a hard link to an entry already extracted, reached
// like every entry without crossing a symlink.
func extractLink(root, parent int, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil || target == "." {
		return fmt.Errorf("entry %q: link to %q: %w", hdr.Name, hdr.Linkname, ErrUnsafePath)
	}
	tparent, err := openParent(root, path.Dir(target))
	if err != nil {
		return fmt.Errorf("entry %q: link to %q: %w", hdr.Name, hdr.Linkname, err)
	}
	defer unix.Close(tparent)
	if err := removeEntry(parent, base); err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	if err := unix.Linkat(tparent, path.Base(target), parent, base, 0); err != nil {
		return fmt.Errorf("entry %q: link to %q: %w", hdr.Name, hdr.Linkname, err)
	}
	return nil
}

func extractFile(parent int, base string, mode uint32, size int64, r io.Reader) error {
	if err := removeEntry(parent, base); err != nil {
		return err
	}
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	n, err := io.CopyN(f, r, size)
	if err != nil {
		return fmt.Errorf("truncated: %d of %d bytes: %w", n, size, err)
	}
	if err := f.Chmod(fs.FileMode(mode & 0o777)); err != nil {
		return err
	}
	if mode&^0o777 != 0 {
		if err := unix.Fchmod(fd, mode); err != nil {
			return err
		}
	}
	return f.Close()
}

// removeEntry removes a file or symlink that an entry replaces; it refuses
// to replace a directory with something else.
func removeEntry(parent int, base string) error {
	err := unix.Unlinkat(parent, base, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.EISDIR) {
		return fmt.Errorf("a directory is in the way")
	}
	return err
}

// openParent opens dir (relative to root) one component at a time,
// creating missing directories, and refuses to pass through a symlink, so
// that nothing is ever written outside root.
func openParent(root int, dir string) (int, error) {
	cur, err := unix.Dup(root)
	if err != nil {
		return -1, err
	}
	if dir == "." {
		return cur, nil
	}
	for _, part := range strings.Split(dir, "/") {
		how := &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
		next, err := unix.Openat2(cur, part, how)
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(cur, part, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(cur)
				return -1, err
			}
			next, err = unix.Openat2(cur, part, how)
		}
		unix.Close(cur)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%s is a symlink or not a directory: %w", part, ErrUnsafePath)
		}
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}
