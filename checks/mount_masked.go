package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
	"golang.org/x/sys/unix"
)

// MaskedDirSource is the empty read-only tmpfs the kata-cr agent mounts in
// every guest: the source a restore binds in place of a masked directory.
const MaskedDirSource = "/run/kata-cr/masked"

// maskedKeyPrefix starts the external key of a masked directory; the rest
// is its path with dashes ("masked-proc-acpi").
const maskedKeyPrefix = "masked-"

// MaskedKey is the external key of the masked directory target.
func MaskedKey(target string) string {
	return maskedKeyPrefix + procKeySafe(strings.ReplaceAll(strings.Trim(target, "/"), "/", "-"))
}

// IsMaskedKey reports whether key names a masked directory: its restore
// source is MaskedDirSource.
func IsMaskedKey(key string) bool { return strings.HasPrefix(key, maskedKeyPrefix) }

// EmptyReadOnly checks that dir is a read-only filesystem with nothing in
// it. A masked directory that is both holds nothing a dump must save.
func EmptyReadOnly(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Flags&unix.ST_RDONLY == 0 {
		return fmt.Errorf("%s is writable", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("%s holds %s", dir, names[0])
	}
	return nil
}

// maskedDirs are the container's mounts that mask a directory: a whole
// tmpfs, read-only in its superblock (mounted MS_RDONLY, as Kata's agent
// and runc mask a directory), with nothing mounted below it.
func (v *procMountView) maskedDirs() []procMount {
	var out []procMount
	for _, m := range v.Mounts {
		if m.FSType != "tmpfs" || m.Root != "/" || (v.Root != nil && m.ID == v.Root.ID) {
			continue
		}
		if !slices.Contains(strings.Split(m.SuperOpts, ","), "ro") {
			continue
		}
		if slices.ContainsFunc(v.Mounts, func(c procMount) bool { return c.ParentID == m.ID && c.ID != m.ID }) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// MaskedMounts maps the mount points of the masked directories declared
// external in dump to their paths through /proc/PID/root, for
// EmptyReadOnly to look at again while CRIU holds the tree frozen.
func MaskedMounts(procRoot string, pid int, dump criuopt.Set) []string {
	var out []string
	for _, m := range dump.ExternalMounts {
		if IsMaskedKey(m.Key) {
			out = append(out, filepath.Join(procRoot, strconv.Itoa(pid), "root", m.Path))
		}
	}
	return out
}

// checkMountMasked finds the masked directories (/proc/acpi,
// /sys/firmware...) that are empty read-only tmpfs mounts. CRIU saves a
// tmpfs with tar --gzip while the tree is frozen, a fork and two execs
// each (60 ms under TCG); declared external and bound on restore from an
// empty read-only tmpfs of the restore guest, they come back the same
// without it. The finding passes either way: its fix is a speed-up
// (reports.Fix.Speedup) the plan takes when kata-cr's source is there.
func checkMountMasked(_ context.Context, env *Env) []reports.Finding {
	v, done := procLoadMounts(env)
	if done != nil {
		return done
	}
	masked := v.maskedDirs()
	if len(masked) == 0 {
		return []reports.Finding{{Status: reports.Pass, Summary: "no read-only tmpfs masks a directory of the container"}}
	}
	var ev []string
	for _, m := range masked {
		ev = append(ev, fmt.Sprintf("%s/%d/mountinfo: %s", procRootDir(env), v.PID, m.Line))
	}
	if !proc.New(procRootDir(env)).Live() {
		return []reports.Finding{{Status: reports.Skip, Evidence: ev, Summary: fmt.Sprintf("%s masked by a read-only tmpfs", procN(len(masked), "directory", "directories")),
			Reason: "whether they are empty is read only on the live system, not for a /proc fixture"}}
	}
	var set, restore criuopt.Set
	var empty []string
	for _, m := range masked {
		p := filepath.Join(procRootDir(env), strconv.Itoa(v.PID), "root", m.MountPoint)
		if err := EmptyReadOnly(p); err != nil {
			ev = append(ev, fmt.Sprintf("%s: saved with tar: %v", m.MountPoint, err))
			continue
		}
		empty = append(empty, m.MountPoint)
		key := MaskedKey(m.MountPoint)
		set.ExternalMounts = append(set.ExternalMounts, criuopt.Mount{Key: key, Path: m.MountPoint})
		restore.ExternalMounts = append(restore.ExternalMounts, criuopt.Mount{Key: key, Path: MaskedDirSource})
	}
	if len(empty) == 0 {
		return []reports.Finding{{Status: reports.Pass, Evidence: ev,
			Summary: "no masked directory is both empty and read-only: CRIU saves each with tar"}}
	}
	summary := fmt.Sprintf("%s (%s) empty and read-only", procN(len(empty), "masked directory", "masked directories"), strings.Join(empty, ", "))
	if err := EmptyReadOnly(MaskedDirSource); err != nil {
		ev = append(ev, fmt.Sprintf("restore source %s: %v", MaskedDirSource, err))
		return []reports.Finding{{Status: reports.Pass, Evidence: ev,
			Summary: summary + ": CRIU saves each with tar, as kata-cr's empty read-only source to restore them from is missing here"}}
	}
	ev = append(ev, "restore source: "+MaskedDirSource+", an empty read-only tmpfs in every kata-cr guest")
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: summary + ": declared external, CRIU does not tar them while the tree is frozen",
		Fix: &reports.Fix{CRIU: set, Restore: restore, AutoFixable: true, Fixer: FixerIDCRIUOption, Speedup: true,
			Description: fmt.Sprintf("dump with %s and restore with %s: the restore binds an empty read-only tmpfs where CRIU would unpack an empty tar",
				set.DumpLine(), restore.RestoreLine())}}}
}
