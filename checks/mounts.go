package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
)

// MountChecks are the checks of the mount namespace of Env.PID, as CRIU
// will dump it: bind mounts whose source is outside the container root,
// filesystems CRIU cannot dump, and tmpfs contents (saved with tar). They
// only apply when the process has a mount namespace of its own.
func MountChecks() []Check {
	need := []Need{NeedPID}
	return []Check{
		{ID: "mount.external-bind", Category: "mount", Level: reports.Required, Needs: need,
			Title: "bind mounts from outside the container root", Run: checkMountBinds},
		{ID: "mount.filesystems", Category: "mount", Level: reports.Required, Needs: need,
			Title: "filesystems CRIU can dump", Run: checkMountFilesystems},
		{ID: "mount.tmpfs", Category: "mount", Level: reports.Required, Needs: need,
			Title: "tmpfs mounts (saved with GNU tar)", Run: checkMountTmpfs},
		{ID: "mount.masked-dirs", Category: "mount", Level: reports.Optional, Needs: need,
			Title: "masked directories CRIU need not save", Run: checkMountMasked},
	}
}

// procMountView is the mount namespace of the checked process next to
// kata-cr's own.
type procMountView struct {
	PID    int
	NS     string
	Mounts []procMount
	// Host is kata-cr's own mount table, to find where a container's
	// mount source lives for the restore options.
	Host []procMount
	// Root is the namespace's root mount, nil if none is found.
	Root *procMount
}

// procLoadMounts reads the mount namespace of env.PID. It returns the
// findings to report instead when there is nothing to check: the process
// is missing, unreadable, or shares kata-cr's mount namespace (then CRIU
// does not dump mounts at all).
func procLoadMounts(env *Env) (*procMountView, []reports.Finding) {
	root := procRootDir(env)
	pdir := filepath.Join(root, strconv.Itoa(env.PID))
	ns, err := os.Readlink(filepath.Join(pdir, "ns", "mnt"))
	if err != nil {
		if proc.Gone(err) {
			return nil, procMissingSkip(env.PID)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, procPermSkip(err, filepath.Join(pdir, "ns", "mnt"))
		}
		return nil, []reports.Finding{{Status: reports.Error, Summary: "cannot read the mount namespace", Reason: err.Error()}}
	}
	self, serr := proc.New(root).SelfNS("mnt")
	if serr == nil && self == ns {
		return nil, []reports.Finding{{Status: reports.Pass,
			Evidence: []string{fmt.Sprintf("pid %d: ns/mnt %s; kata-cr: ns/mnt %s", env.PID, ns, self)},
			Summary:  fmt.Sprintf("pid %d shares kata-cr's mount namespace: its mounts are the host's and CRIU does not dump them", env.PID)}}
	}
	read := func(p string) ([]procMount, error) {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		return procParseMountInfo(data)
	}
	mounts, err := read(filepath.Join(pdir, "mountinfo"))
	if err != nil {
		if proc.Gone(err) {
			return nil, []reports.Finding{{Status: reports.Skip, Summary: "mounts not checked",
				Reason: fmt.Sprintf("process %d vanished during the check", env.PID)}}
		}
		return nil, []reports.Finding{{Status: reports.Error, Summary: "cannot read the mount table", Reason: err.Error()}}
	}
	host, _ := read(filepath.Join(root, "self", "mountinfo"))
	v := &procMountView{PID: env.PID, NS: ns, Mounts: mounts, Host: host}
	v.Root = procNSRoot(mounts)
	return v, nil
}

// procNSRoot finds the root mount of a namespace: the mount on "/" that
// nothing else is mounted over.
func procNSRoot(mounts []procMount) *procMount {
	var cands []int
	for i, m := range mounts {
		if m.MountPoint == "/" {
			cands = append(cands, i)
		}
	}
	for _, i := range cands {
		covered := false
		for _, j := range cands {
			if mounts[j].ParentID == mounts[i].ID && j != i {
				covered = true
			}
		}
		if !covered {
			return &mounts[i]
		}
	}
	return nil
}

// procUnder reports whether p is dir or below it.
func procUnder(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// hostPath finds where the subtree m.Root of m's filesystem is visible in
// kata-cr's own mount namespace, "" when it is not mounted there.
func (v *procMountView) hostPath(m procMount) string {
	best := -1
	for i, h := range v.Host {
		if h.MajMin != m.MajMin || !procUnder(m.Root, h.Root) {
			continue
		}
		if best < 0 || len(h.Root) > len(v.Host[best].Root) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	h := v.Host[best]
	rel := strings.TrimPrefix(m.Root, strings.TrimSuffix(h.Root, "/"))
	return path.Join(h.MountPoint, rel)
}

// The filesystems CRIU has a dumper for (criu/filesystems.c fstypes[]).
// btrfs is listed there as unsupported and fuse as "always fail".
var procFSSupported = map[string]bool{
	"proc": true, "sysfs": true, "devtmpfs": true, "binfmt_misc": true, "tmpfs": true,
	"devpts": true, "simfs": true, "pstore": true, "mqueue": true, "securityfs": true,
	"fusectl": true, "debugfs": true, "tracefs": true, "cgroup": true, "cgroup2": true,
	"aufs": true, "autofs": true, "rpc_pipefs": true, "nsfs": true,
}

// procFSCaveat is what happens to filesystems CRIU handles only partly.
var procFSCaveat = map[string]string{
	"nfs":     "CRIU restores NFS mounts only through spfs (Virtuozzo's stub filesystem manager), which is rarely installed",
	"nfs4":    "CRIU restores NFS mounts only through spfs (Virtuozzo's stub filesystem manager), which is rarely installed",
	"overlay": "CRIU mounts overlay again with the same lowerdir, upperdir and workdir paths, which must exist where it restores",
}

// procMountExt is a mount CRIU needs declared external.
type procMountExt struct {
	M procMount
	// Bind is true for a bind mount of a subtree, false for a whole
	// filesystem CRIU cannot dump.
	Bind bool
	Key  string
}

// bindExternal reports whether a bind mount has no "root mount" in the
// namespace: no mount of the same filesystem whose root contains its root.
// CRIU fails on such a mount: "N:./etc/hosts doesn't have a proper root
// mount". cgroup and nsfs mounts are handled by CRIU's own rules.
func (v *procMountView) bindExternal(m procMount) bool {
	if m.Root == "/" || (v.Root != nil && m.ID == v.Root.ID) {
		return false
	}
	switch m.FSType {
	case "cgroup", "cgroup2", "nsfs":
		return false
	}
	for _, n := range v.Mounts {
		if n.ID != m.ID && n.MajMin == m.MajMin && procUnder(m.Root, n.Root) {
			return false
		}
	}
	return true
}

// fsUnsupported reports whether a whole-filesystem mount is of a type
// CRIU cannot dump.
func (v *procMountView) fsUnsupported(m procMount) bool {
	if m.Root != "/" || (v.Root != nil && m.ID == v.Root.ID) {
		return false
	}
	if procFSSupported[m.FSType] {
		return false
	}
	_, caveat := procFSCaveat[m.FSType]
	return !caveat
}

// externals lists every mount that needs --external, with a stable key for
// each: the mount point's base name, or the whole path with dashes when
// two base names collide.
func (v *procMountView) externals() []procMountExt {
	var out []procMountExt
	for _, m := range v.Mounts {
		switch {
		case v.bindExternal(m):
			out = append(out, procMountExt{M: m, Bind: true})
		case v.fsUnsupported(m):
			out = append(out, procMountExt{M: m})
		}
	}
	base := func(mp string) string {
		b := procKeySafe(path.Base(mp))
		if b == "" || b == "_" {
			b = "root"
		}
		return b
	}
	count := map[string]int{}
	for _, e := range out {
		count[base(e.M.MountPoint)]++
	}
	used := map[string]bool{}
	for i := range out {
		k := base(out[i].M.MountPoint)
		if count[k] > 1 {
			k = procKeySafe(strings.ReplaceAll(strings.Trim(out[i].M.MountPoint, "/"), "/", "-"))
		}
		if IsMaskedKey(k) {
			// Keys of masked directories are restored from the empty
			// read-only tmpfs: a mount merely named so must not be.
			k = "mnt-" + k
		}
		k0 := k
		for n := 2; used[k]; n++ {
			k = fmt.Sprintf("%s-%d", k0, n)
		}
		used[k] = true
		out[i].Key = k
	}
	return out
}

var procKeyUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// procKeySafe keeps a CRIU external key to characters that cannot clash
// with the mnt[KEY]:VALUE syntax.
func procKeySafe(s string) string { return procKeyUnsafe.ReplaceAllString(s, "_") }

// fix is the --external remedy for one external mount. It is applied
// automatically only when the source's path where kata-cr runs is known,
// since restore has to be told where it is.
func (v *procMountView) fix(e procMountExt) *reports.Fix {
	f := &reports.Fix{CRIU: criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: e.Key, Path: e.M.MountPoint}}}}
	rootArg := "ROOTFS"
	if v.Root != nil {
		if p := v.hostPath(*v.Root); p != "" {
			rootArg = p
			f.Restore.Root = p
		}
	}
	srcArg := "SOURCE"
	note := ""
	if src := v.hostPath(e.M); src != "" {
		srcArg = src
		f.Restore.ExternalMounts = []criuopt.Mount{{Key: e.Key, Path: src}}
		f.AutoFixable, f.Fixer = true, FixerIDCRIUOption
	} else {
		note = fmt.Sprintf(", where SOURCE is the path of %s of device %s (%s %s), which is not mounted where kata-cr runs", e.M.Root, e.M.MajMin, e.M.FSType, e.M.Source)
	}
	if rootArg == "ROOTFS" {
		note += ", and ROOTFS is the container's root directory"
	}
	what := "bind mount"
	if !e.Bind {
		what = "mount"
	}
	f.Description = fmt.Sprintf("declare the %s external: dump with --external mnt[%s]:%s and restore with --root %s --external mnt[%s]:%s%s, so the restored container gets the same source again. "+
		"Do not use --skip-mnt: CRIU then drops the mount silently and the restored %s is empty",
		what, e.M.MountPoint, e.Key, rootArg, e.Key, srcArg, note, e.M.MountPoint)
	return f
}

// checkMountBinds finds bind mounts whose source lies outside the
// container's root: the sandbox's /etc/hosts, /etc/hostname,
// /etc/resolv.conf, /dev/shm and any other file or directory bind.
func checkMountBinds(_ context.Context, env *Env) []reports.Finding {
	v, done := procLoadMounts(env)
	if done != nil {
		return done
	}
	var out []reports.Finding
	binds := 0
	for _, e := range v.externals() {
		if !e.Bind {
			continue
		}
		m := e.M
		ev := []string{
			fmt.Sprintf("%s/%d/mountinfo: %s", procRootDir(env), v.PID, m.Line),
			fmt.Sprintf("no mount of device %s in %s has a root containing %s", m.MajMin, v.NS, procEscape(m.Root)),
		}
		if v.Root != nil {
			ev = append(ev, fmt.Sprintf("container root: mount %d, %s %s on device %s, root %s", v.Root.ID, v.Root.FSType, v.Root.Source, v.Root.MajMin, procEscape(v.Root.Root)))
		}
		if src := v.hostPath(m); src != "" {
			ev = append(ev, "source where kata-cr runs: "+src)
		}
		out = append(out, reports.Finding{Status: reports.Fail, Evidence: ev, Fix: v.fix(e),
			Summary: fmt.Sprintf("%s is a bind of %s of %s device %s, from outside the container root: CRIU: \"%d:.%s doesn't have a proper root mount\"",
				m.MountPoint, m.Root, m.FSType, m.MajMin, m.ID, m.MountPoint)})
	}
	for _, m := range v.Mounts {
		if m.Root != "/" {
			binds++
		}
	}
	if len(out) > 0 {
		return out
	}
	return []reports.Finding{{Status: reports.Pass,
		Evidence: []string{fmt.Sprintf("%d mounts in %s, %d of them binds of subtrees", len(v.Mounts), v.NS, binds)},
		Summary:  "every bind mount of the container comes from a filesystem mounted inside it"}}
}

// checkMountFilesystems finds whole-filesystem mounts of types CRIU cannot
// dump (virtio-fs, 9p, FUSE, block filesystems, ...): CRIU fails with "FS
// mnt ... unsupported" unless they are declared external.
func checkMountFilesystems(_ context.Context, env *Env) []reports.Finding {
	v, done := procLoadMounts(env)
	if done != nil {
		return done
	}
	var out []reports.Finding
	for _, e := range v.externals() {
		if e.Bind {
			continue
		}
		m := e.M
		maj, mnr := procMajMin(m.MajMin)
		why := fmt.Sprintf("CRIU: \"FS mnt .%s dev %#x root %s unsupported id %d\"", m.MountPoint, maj<<20|mnr, m.Root, m.ID)
		if m.FSType == "fuse" || strings.HasPrefix(m.FSType, "fuse.") {
			why = fmt.Sprintf("CRIU cannot dump FUSE mounts: \"failed to dump fs .%s (fuse): always fail\"", m.MountPoint)
		}
		f := v.fix(e)
		f.Description += fmt.Sprintf("; or, when the filesystem can simply be mounted again from its source (a block device, a virtio-fs tag), dump with --enable-fs %s", m.FSType)
		out = append(out, reports.Finding{Status: reports.Fail, Fix: f,
			Evidence: []string{fmt.Sprintf("%s/%d/mountinfo: %s", procRootDir(env), v.PID, m.Line)},
			Summary:  fmt.Sprintf("%s is a %s mount: %s", m.MountPoint, m.FSType, why)})
	}
	for _, m := range v.Mounts {
		caveat, ok := procFSCaveat[m.FSType]
		if !ok || (v.Root != nil && m.ID == v.Root.ID) || m.Root != "/" {
			continue
		}
		out = append(out, reports.Finding{Status: reports.Warn,
			Evidence: []string{fmt.Sprintf("%s/%d/mountinfo: %s", procRootDir(env), v.PID, m.Line)},
			Summary:  fmt.Sprintf("%s is a %s mount: %s", m.MountPoint, m.FSType, caveat),
			Fix:      &reports.Fix{Description: fmt.Sprintf("declare it external (--external mnt[%s]:KEY on dump, --external mnt[KEY]:PATH on restore) when the restore side has the same filesystem", m.MountPoint)}})
	}
	if len(out) > 0 {
		return out
	}
	var types []string
	for _, m := range v.Mounts {
		if !slices.Contains(types, m.FSType) {
			types = append(types, m.FSType)
		}
	}
	ev := []string{"filesystem types: " + strings.Join(types, ", ")}
	if v.Root != nil {
		ev = append(ev, fmt.Sprintf("container root (not dumped; restore gives it with --root): %s %s", v.Root.FSType, v.Root.Source))
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("CRIU can dump every filesystem mounted in the container (%s)", procN(len(v.Mounts), "mount", "mounts"))}}
}

func procMajMin(s string) (uint64, uint64) {
	a, b, _ := strings.Cut(s, ":")
	maj, _ := strconv.ParseUint(a, 10, 32)
	mnr, _ := strconv.ParseUint(b, 10, 32)
	return maj, mnr
}

// checkMountTmpfs lists the tmpfs mounts of the container. CRIU saves
// their contents by running tar with GNU options (tar --create --gzip
// --no-unquote --no-wildcards --one-file-system --check-links
// --preserve-permissions --sparse --numeric-owner); busybox's tar fails
// with "Can't dump tmpfs content".
func checkMountTmpfs(ctx context.Context, env *Env) []reports.Finding {
	v, done := procLoadMounts(env)
	if done != nil {
		return done
	}
	var ev []string
	for _, m := range v.Mounts {
		if (m.FSType == "tmpfs" || m.FSType == "devtmpfs") && m.Root == "/" && (v.Root == nil || m.ID != v.Root.ID) {
			ev = append(ev, fmt.Sprintf("%s (%s %s)", m.MountPoint, m.FSType, m.Source))
		}
	}
	if len(ev) == 0 {
		return []reports.Finding{{Status: reports.Pass, Summary: "the container has no tmpfs mounts"}}
	}
	if !proc.New(procRootDir(env)).Live() {
		return []reports.Finding{{Status: reports.Skip, Evidence: ev, Summary: fmt.Sprintf("%s to be saved with tar", procN(len(ev), "tmpfs mount", "tmpfs mounts")),
			Reason: "tar is probed only on the live system, not for a /proc fixture"}}
	}
	_, gnu, tarEv := sysGNUTar(ctx)
	ev = append(ev, tarEv)
	if !gnu {
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("%s to be saved with tar, and no GNU tar: CRIU: \"Can't dump tmpfs content\"", procN(len(ev)-1, "tmpfs mount", "tmpfs mounts")),
			Fix:     &reports.Fix{Description: "install GNU tar where CRIU runs (in the guest image; busybox tar does not work)"}}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("%s to be saved with GNU tar", procN(len(ev)-1, "tmpfs mount", "tmpfs mounts"))}}
}
