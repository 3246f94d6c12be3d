package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/proc"
)

// A bundle's rootfs reaches the guest as a read-only virtio-9p share of
// the host directory (Kata's shared_fs = "virtio-9p"), never through the
// initramfs, which lives in the guest's RAM (a Debian tree would be held
// there as the cpio, again unpacked, and again in the agent's tmpfs root)
// and would make every bundle a new guest image. The container's root is
// an overlay in the guest: the share is its read-only lower layer, and
// what the container writes goes to an upper layer on the guest's tmpfs,
// so the user's bundle on the host is never written, and a restarted
// container starts from the bundle again.

// SharedDir is where the guest mounts the shares of bundle rootfs
// directories, one directory per tag, as Kata's agent mounts its shared
// directory under /run/kata-containers/shared.
const SharedDir = "/run/kata-cr/shared"

// BundleRootfsTag is the 9p mount tag of a bundle's rootfs share.
const BundleRootfsTag = "kata-cr.rootfs"

// ninePOptions are the 9p options of a rootfs share: the Linux dialect
// over virtio, and cache=mmap, which Kata used for its 9p shares, so that
// programs can map their files shared.
const ninePOptions = "trans=virtio,version=9p2000.L,cache=mmap,msize=262144"

// MountBundleRootfs makes rootfs the container root for the share tagged
// tag: it mounts the share read-only under SharedDir (once) and an overlay
// on rootfs with a fresh upper layer beside it.
func MountBundleRootfs(rootfs, tag string) error {
	share := filepath.Join(SharedDir, tag)
	if !isMountPoint(share) {
		if err := os.MkdirAll(share, 0o755); err != nil {
			return fmt.Errorf("mount the rootfs share %s: %w", tag, err)
		}
		if err := unix.Mount(tag, share, "9p", unix.MS_RDONLY, ninePOptions); err != nil {
			return fmt.Errorf("mount the rootfs share %s (9p) on %s: %w", tag, share, err)
		}
	}
	return mountOverlayRootfs(rootfs, share)
}

// mountOverlayRootfs mounts on rootfs an overlay of the read-only lower
// directory and a fresh upper layer beside rootfs.
func mountOverlayRootfs(rootfs, lower string) error {
	if err := ClearRootfs(rootfs); err != nil {
		return err
	}
	upper, work := overlayDirs(rootfs)
	for _, d := range []string{rootfs, upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("prepare the overlay rootfs: %w", err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount the overlay rootfs on %s (%s): %w", rootfs, opts, err)
	}
	return nil
}

// overlayDirs are the upper and work directories of the overlay on rootfs.
func overlayDirs(rootfs string) (upper, work string) {
	base := filepath.Clean(rootfs) + ".overlay"
	return filepath.Join(base, "upper"), filepath.Join(base, "work")
}

// ClearRootfs removes a container rootfs directory, unmounting the overlay
// of a bundle's rootfs first and dropping its upper layer.
func ClearRootfs(rootfs string) error {
	if isMountPoint(rootfs) {
		if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount the rootfs %s: %w", rootfs, err)
		}
	}
	if err := os.RemoveAll(rootfs); err != nil {
		return fmt.Errorf("clear the rootfs: %w", err)
	}
	if err := os.RemoveAll(filepath.Clean(rootfs) + ".overlay"); err != nil {
		return fmt.Errorf("clear the rootfs: %w", err)
	}
	return nil
}

// isMountPoint reports whether dir is a mount point of this mount
// namespace.
func isMountPoint(dir string) bool {
	return mountAt(dir) != nil
}

// mountAt is the topmost mount on dir in this mount namespace, nil when
// there is none.
func mountAt(dir string) *proc.Mount {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	mounts, err := proc.ParseMountInfo(data)
	if err != nil {
		return nil
	}
	dir = filepath.Clean(dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		if mounts[i].MountPoint == dir {
			return &mounts[i]
		}
	}
	return nil
}

// overlayUpper is the upper directory of the overlay mounted on rootfs,
// "" when rootfs is not an overlay.
func overlayUpper(rootfs string) string {
	m := mountAt(rootfs)
	if m == nil || m.FSType != "overlay" {
		return ""
	}
	for _, o := range strings.Split(m.SuperOpts, ",") {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			return v
		}
	}
	return ""
}

// scanUpper lists what a container changed on an overlay root from its
// upper layer alone, without walking the shared tree: every entry there
// is new or changed, and a whiteout (a 0:0 character device) is a
// deletion.
func scanUpper(upper string) (*RootfsDiff, error) {
	d := &RootfsDiff{Changed: []string{}, Deleted: []string{}}
	err := filepath.WalkDir(upper, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		switch t := fi.Mode().Type(); {
		case t == fs.ModeDevice|fs.ModeCharDevice:
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
				d.Deleted = append(d.Deleted, rel)
			}
		case t == 0, t == fs.ModeDir, t == fs.ModeSymlink:
			d.Changed = append(d.Changed, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan the overlay's upper layer %s: %w", upper, err)
	}
	sort.Strings(d.Changed)
	sort.Strings(d.Deleted)
	return d, nil
}
