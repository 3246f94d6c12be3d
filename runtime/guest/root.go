package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/internal/filecopy"
	"github.com/kata-cr/kata-cr/runtime/container"
	"golang.org/x/sys/unix"
)

// newRoot is where the tmpfs root is assembled.
const newRoot = "/.kata-cr-root"

// mountsToMove are the file systems u-root's init and the agent mounted,
// moved under the new root with everything mounted below them.
var mountsToMove = []string{"/dev", "/proc", "/sys", "/tmp", "/run"}

// SwitchRoot moves the agent off the initramfs root, as switch_root does:
// CRIU cannot dump files that live on rootfs ("Can't lookup mount=1 for
// fd=-3"), and pivot_root does not work there. It copies / into a tmpfs
// (leaving out u-root's init, which nothing runs again), moves the kernel
// file systems over and makes the tmpfs the root with MS_MOVE and chroot.
// Every process the agent starts from then on lives on the tmpfs. The agent
// does not re-execute itself: its own binary is never part of a dump, and
// under TCG a second start of the Go runtime costs a tenth of a second.
func SwitchRoot() error {
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("switch root: mount tmpfs: %w", err)
	}
	skip := map[string]bool{newRoot: true, "/init": true}
	for _, m := range mountsToMove {
		skip[m] = true
	}
	if err := copyTree("/", newRoot, skip); err != nil {
		return fmt.Errorf("switch root: copy the initramfs: %w", err)
	}
	for _, m := range mountsToMove {
		dst := filepath.Join(newRoot, m)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("switch root: %w", err)
		}
		if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("switch root: move %s: %w", m, err)
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move the tmpfs onto /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	return nil
}

// MountRun gives the guest a tmpfs on /run, as a Kata guest's systemd
// does. CRIU keeps what it learnt about the kernel there (criu.kdat, only
// on a tmpfs): without it every criu invocation probes the kernel again,
// a quarter of a second each under TCG, inside every dump's freeze. A
// guest without it still works, only slower. The agent mounts it first
// thing; SwitchRoot moves it along.
func MountRun() {
	if err := os.MkdirAll("/run", 0o755); err != nil {
		return
	}
	_ = unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755")
}

// MountMaskedDirSource mounts the empty read-only tmpfs a restore binds
// where the container had a masked directory (checks.MaskedDirSource),
// after MountRun: SwitchRoot moves it along with /run. It is mounted as
// the container's init masks a directory (MS_RDONLY, no options), so the
// bind CRIU makes of it on restore looks the same.
func MountMaskedDirSource() error {
	if err := os.MkdirAll(checks.MaskedDirSource, 0o755); err != nil {
		return fmt.Errorf("mount the masked-directory source: %w", err)
	}
	if err := unix.Mount("tmpfs", checks.MaskedDirSource, "tmpfs", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount the masked-directory source: %w", err)
	}
	return nil
}

// copyTree copies the tree at src into dst, keeping modes, symlinks and
// device nodes, and leaving out the paths in skip.
func copyTree(src, dst string, skip map[string]bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if skip[p] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			if rel == "." {
				return os.Chmod(target, mode.Perm())
			}
			if err := os.Mkdir(target, mode.Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			return os.Chmod(target, mode.Perm()|mode&(fs.ModeSticky))
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case mode.IsRegular():
			return filecopy.Copy(p, target, filecopy.Options{Mode: mode.Perm(), Exclusive: true})
		default:
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				return nil
			}
			return unix.Mknod(target, st.Mode, int(st.Rdev))
		}
	})
}

// EnsurePath puts the usual directories in PATH: container.PrepareRootfs
// looks busybox and the workloads' binaries up there, and CRIU finds GNU
// tar there to save tmpfs contents.
func EnsurePath() {
	old := os.Getenv("PATH")
	have := map[string]bool{}
	for _, d := range filepath.SplitList(old) {
		have[d] = true
	}
	parts := []string{}
	for _, d := range filepath.SplitList(container.DefaultPath) {
		if !have[d] {
			parts = append(parts, d)
		}
	}
	if old != "" {
		parts = append(parts, old)
	}
	os.Setenv("PATH", strings.Join(parts, ":"))
}
