package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
)

// procGhostLimit is CRIU's default --ghost-limit: a deleted file held open
// is copied into the images only up to this size (DEFAULT_GHOST_LIMIT).
const procGhostLimit = 1 << 20

// checkProcLocks finds file locks held by the tree. CRIU refuses to dump
// them unless asked: "Some file locks are hold by dumping tasks! You can
// try --file-locks to dump them." The locks come from the "lock:" lines
// of each fd's fdinfo (which catch flocks inherited across fork and OFD
// locks) and from /proc/locks for owners in the tree.
func checkProcLocks(_ context.Context, t *procTree) []reports.Finding {
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procFDError(err)
	}
	key := func(l proc.Lock) string {
		return fmt.Sprintf("%s %d:%d:%d %s %s %d", l.Kind, l.Major, l.Minor, l.Inode, l.Start, l.End, l.PID)
	}
	seen := map[string]bool{}
	var ev, waiting []string
	for _, p := range t.Procs {
		for _, fd := range fdsOf[p] {
			fi, err := t.fdInfo(p.PID, fd.FD)
			if err != nil {
				continue // closed or exited meanwhile
			}
			for _, l := range fi.Locks {
				if l.Blocked {
					waiting = append(waiting, fmt.Sprintf("%s fd %d -> %s waits for a lock: %s", p.label(), fd.FD, fd.Target, l.Line))
					continue
				}
				if seen[key(l)] {
					continue
				}
				seen[key(l)] = true
				ev = append(ev, fmt.Sprintf("%s fd %d -> %s holds %s %s %s (fdinfo: lock: %s)", p.label(), fd.FD, fd.Target, l.Kind, l.Mode, l.Access, l.Line))
			}
		}
	}
	var note []string
	lp := t.fs.LocksPath()
	data, err := os.ReadFile(lp)
	if err != nil {
		note = append(note, fmt.Sprintf("%s: %v", lp, err))
	} else if locks, err := proc.ParseLocks(data); err != nil {
		note = append(note, err.Error())
	} else {
		for _, l := range locks {
			p, ok := t.byPID[l.PID]
			if !ok || l.Blocked || seen[key(l)] {
				continue
			}
			seen[key(l)] = true
			ev = append(ev, fmt.Sprintf("%s holds %s %s %s on inode %d of device %02x:%02x (%s: %s)", p.label(), l.Kind, l.Mode, l.Access, l.Inode, l.Major, l.Minor, lp, l.Line))
		}
	}
	ev = append(ev, waiting...)
	ev = append(ev, note...)
	ev = append(ev, procVanished(t, vanished)...)
	if len(seen) > 0 {
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("the tree holds %s: CRIU: \"Some file locks are hold by dumping tasks! You can try --file-locks to dump them.\"", procN(len(seen), "file lock", "file locks")),
			Fix: &reports.Fix{Description: "dump and restore with --file-locks: CRIU then saves the locks and takes them again on restore",
				CRIU: criuopt.Set{FileLocks: true}, Restore: criuopt.Set{FileLocks: true},
				AutoFixable: true, Fixer: FixerIDCRIUOption}}}
	}
	if len(note) > 0 {
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: "no lock found in fdinfo, but /proc/locks could not be read: POSIX locks may be missed"}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev, Summary: "the tree holds no file locks"}}
}

// procMountIDs returns the mount ids of pid's mount namespace and the
// namespace's name, caching per namespace.
type procMountIDs struct {
	t     *procTree
	cache map[string]map[int]procMount
}

func (m *procMountIDs) of(pid int) (string, map[int]procMount, error) {
	ns, err := m.t.nsLink(pid, "mnt")
	if err != nil {
		return "", nil, err
	}
	if ids, ok := m.cache[ns]; ok {
		return ns, ids, nil
	}
	data, err := os.ReadFile(m.t.fs.Path(pid, "mountinfo"))
	if err != nil {
		return "", nil, err
	}
	mounts, err := procParseMountInfo(data)
	if err != nil {
		return "", nil, err
	}
	ids := map[int]procMount{}
	for _, mt := range mounts {
		ids[mt.ID] = mt
	}
	m.cache[ns] = ids
	return ns, ids, nil
}

// procSDevMajMin turns an inotify/fanotify "sdev:" value (the kernel's
// internal dev_t: major << 20 | minor, in hex) into "major:minor".
func procSDevMajMin(hex string) string {
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", v>>20, v&0xfffff)
}

// procField returns the value of "key:value" among the words of line.
func procField(line, key string) string {
	for _, w := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(w, key+":"); ok {
			return v
		}
	}
	return ""
}

// checkProcInotify lists inotify watches. CRIU saves a watch by the
// watched inode's file handle and on restore needs a path to it again:
// a watch on a deleted file, or on a filesystem that is not mounted in the
// process's namespace or has no file handles, fails the dump.
func checkProcInotify(_ context.Context, t *procTree) []reports.Finding {
	return procNotify(t, "inotify")
}

// checkProcFanotify lists fanotify groups and marks, which CRIU restores
// the same way (and only with CONFIG_FANOTIFY in the kernel).
func checkProcFanotify(_ context.Context, t *procTree) []reports.Finding {
	return procNotify(t, "fanotify")
}

func procNotify(t *procTree, kind string) []reports.Finding {
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procFDError(err)
	}
	mids := &procMountIDs{t: t, cache: map[string]map[int]procMount{}}
	var ev []string
	groups, marks, unmounted, removed := 0, 0, 0, 0
	for _, p := range t.Procs {
		for _, fd := range fdsOf[p] {
			if typ, ok := proc.AnonType(fd.Target); !ok || typ != kind {
				continue
			}
			groups++
			fi, err := t.fdInfo(p.PID, fd.FD)
			if err != nil {
				continue
			}
			lines := fi.Inotify
			if kind == "fanotify" {
				lines = fi.Fanotify
			}
			devs := map[string]bool{}
			_, ids, err := mids.of(p.PID)
			if err == nil {
				for _, m := range ids {
					devs[m.MajMin] = true
				}
			}
			for _, l := range lines {
				sdev := procField(l, "sdev")
				if sdev == "" {
					ev = append(ev, fmt.Sprintf("%s fd %d: %s", p.label(), fd.FD, l))
					continue
				}
				marks++
				line := fmt.Sprintf("%s fd %d: %s", p.label(), fd.FD, l)
				if mm := procSDevMajMin(sdev); mm != "" && len(devs) > 0 && !devs[mm] {
					unmounted++
					line += fmt.Sprintf(" (device %s is not mounted in the process's mount namespace: CRIU cannot find a path to it)", mm)
				} else if kind == "inotify" && t.fs.Live() && ids != nil {
					note, gone := procWatchNote(t, p.PID, ids, l)
					line += note
					if gone {
						removed++
					}
				}
				ev = append(ev, line)
			}
		}
	}
	ev = append(ev, procVanished(t, vanished)...)
	if groups == 0 {
		return []reports.Finding{{Status: reports.Pass, Evidence: ev, Summary: "the tree has no " + kind + " instances"}}
	}
	what := "watches"
	if kind == "fanotify" {
		what = "marks"
	}
	if removed > 0 {
		// Blocking: CRIU fails the dump, whatever it is asked.
		return []reports.Finding{{Status: reports.Fail, Level: reports.Required, Evidence: ev,
			Summary: fmt.Sprintf("%s on removed files on tmpfs: CRIU: \"Can't find suitable path for handle\"", procN(removed, "inotify watch", "inotify watches")),
			Fix: &reports.Fix{Description: "keep the watched file's name (or another hard link to it) until the dump, or remove the watch (inotify_rm_watch) before dumping: " +
				"CRIU saves a watch by the watched file's path, and tmpfs inodes cannot be found again by handle after a restore"}}}
	}
	s := fmt.Sprintf("the tree has %d %s instances with %d %s: CRIU re-creates them from the watched inodes' paths, which must still exist on dump and restore", groups, kind, marks, what)
	if unmounted > 0 {
		s = fmt.Sprintf("%d of %d %s %s are on filesystems not mounted in the process's namespace: CRIU will not find their paths", unmounted, marks, kind, what)
	}
	return []reports.Finding{{Status: reports.Warn, Evidence: ev, Summary: s,
		Fix: &reports.Fix{Description: "keep the watched files in place (not deleted, on a filesystem mounted in the container) or close the " + kind + " descriptors before dumping"}}}
}

// procWatchNote says, for the evidence, where an inotify watch leads when
// its handle is opened as CRIU opens it; gone is true when the watched
// file has no name left on a tmpfs, where CRIU cannot dump the watch.
func procWatchNote(t *procTree, pid int, ids map[int]procMount, line string) (note string, gone bool) {
	w, err := procOpenWatch(t, pid, ids, line)
	switch {
	case err != nil:
		return " (its handle does not open here: " + err.Error() + "; CRIU then scans the filesystem for the inode)", false
	case !w.Removed():
		return " (watches " + w.Path + ")", false
	case w.Nlink > 0:
		return fmt.Sprintf(" (watches %s, whose name was removed; %d other link(s) keep it, through which CRIU finds it, or through the link --link-remap makes for a descriptor open on it)", w.Path, w.Nlink), false
	case w.FSType == "tmpfs" || w.FSType == "devtmpfs":
		return fmt.Sprintf(" (watches %s on %s: removed, with no other link: CRIU: \"Can't find suitable path for handle\")", w.Path, w.FSType), true
	}
	return fmt.Sprintf(" (watches %s on %s: removed; CRIU saves the watch by its handle alone, which only the same filesystem opens again)", w.Path, w.FSType), false
}

// checkProcPtrace finds traced processes: CRIU has to seize every task
// with ptrace itself, and a task already traced (a debugger, strace)
// cannot be seized.
func checkProcPtrace(_ context.Context, t *procTree) []reports.Finding {
	var ev []string
	for _, p := range t.Procs {
		tp := p.Status.TracerPid
		if tp == 0 {
			continue
		}
		// TracerPid is the tracing thread; its Tgid names the process.
		who, tracer := fmt.Sprintf("pid %d", tp), tp
		if st, err := t.fs.ReadStatus(tp); err == nil {
			who = fmt.Sprintf("pid %d (%s)", tp, st.Name)
			if st.Tgid > 0 && st.Tgid != tp {
				tracer = st.Tgid
				who = fmt.Sprintf("thread %d of pid %d (%s)", tp, st.Tgid, st.Name)
			}
		}
		where := "outside the tree"
		if t.Has(tracer) {
			where = "inside the tree"
		}
		ev = append(ev, fmt.Sprintf("%s: TracerPid %d: traced by %s, %s", p.label(), tp, who, where))
	}
	if len(ev) > 0 {
		return []reports.Finding{{Status: reports.Fail, Evidence: append(ev, procVanished(t, nil)...),
			Summary: fmt.Sprintf("%s of the tree traced by another process: CRIU cannot ptrace-seize a traced task", procN(len(ev), "process", "processes")),
			Fix:     &reports.Fix{Description: "detach the tracer (debugger, strace) from the processes before dumping"}}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: procVanished(t, nil),
		Summary: "no process of the tree is traced"}}
}

// procHasPath reports whether an fd target is a path on a mount (and not
// a socket, pipe, anonymous inode or memfd).
func procHasPath(target string) bool {
	return strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "/memfd:")
}

// checkProcFDMounts finds files open on mounts that are not in the
// process's mount namespace, such as a container init whose stdio is the
// guest's /dev/null. CRIU looks up every file's mount in the dumped
// namespace and fails: "Can't lookup mount=N for fd=F path=P".
func checkProcFDMounts(_ context.Context, t *procTree) []reports.Finding {
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procFDError(err)
	}
	mids := &procMountIDs{t: t, cache: map[string]map[int]procMount{}}
	var bad []string
	checked := 0
	for _, p := range t.Procs {
		ns, ids, err := mids.of(p.PID)
		if err != nil {
			if proc.Gone(err) {
				vanished = append(vanished, p.label())
				continue
			}
			if errors.Is(err, fs.ErrPermission) {
				return procPermSkip(err, t.fs.Path(p.PID, "mountinfo"))
			}
			return []reports.Finding{{Status: reports.Error, Summary: "cannot read the mount namespace", Reason: err.Error()}}
		}
		for _, fd := range fdsOf[p] {
			if !procHasPath(fd.Target) {
				continue
			}
			fi, err := t.fdInfo(p.PID, fd.FD)
			if err != nil || fi.MntID < 0 {
				continue
			}
			checked++
			if _, ok := ids[fi.MntID]; !ok {
				bad = append(bad, fmt.Sprintf("%s fd %d -> %s: mnt_id %d is not a mount of %s: CRIU: \"Can't lookup mount=%d for fd=%d path=%s\"",
					p.label(), fd.FD, fd.Target, fi.MntID, ns, fi.MntID, fd.FD, fd.Target))
			}
		}
	}
	gone := procVanished(t, vanished)
	if len(bad) > 0 {
		return []reports.Finding{{Status: reports.Fail, Evidence: append(bad, gone...),
			Summary: fmt.Sprintf("%s of the tree on mounts outside its mount namespace: CRIU: \"Can't lookup mount\"", procN(len(bad), "open file", "open files")),
			Fix: &reports.Fix{Description: "open these files from inside the container: give the init its stdio from the container's own /dev/null (or pipes), " +
				"not from the guest's or the host's mounts, and close inherited files"}}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: gone,
		Summary: fmt.Sprintf("every open file of the tree (%s) is on a mount of its mount namespace", procN(checked, "file", "files"))}}
}

// The anonymous-inode fds CRIU knows how to dump (criu/files.c), and the
// ones it is known to refuse.
var (
	procAnonSupported = map[string]bool{
		"eventfd": true, "eventpoll": true, "signalfd": true, "timerfd": true,
		"inotify": true, "fanotify": true, "bpf-map": true,
	}
	procAnonUnsupported = map[string]string{
		"io_uring":   "CRIU cannot dump io_uring instances",
		"perf_event": "CRIU cannot dump perf events",
	}
	// procPidfdNote: pidfd support came to CRIU after 3.x.
	procPidfdNote = "a pidfd: CRIU 3.x cannot dump pidfds (newer CRIU can, when the process it refers to is in the tree)"
)

// procPidfdFrom is the first CRIU release kata-cr does not hold to fail
// on a pidfd: CRIU 3.17.1 fails ("Can't dump file N of that type [600]
// (anon anon_inode:[pidfd])"); pidfd support was added to CRIU later.
// Go's os/exec keeps a pidfd for every child it starts, so many Go
// workloads hold one.
var procPidfdFrom = criu.Version{Major: 4}

// checkProcFiles finds descriptors CRIU has no dumper for: some
// anonymous inodes (io_uring, perf events) and character devices other
// than the memory devices (/dev/null ...), tun and terminals; CRIU fails
// with "Can't dump file N of that type".
func checkProcFiles(ctx context.Context, env *Env, t *procTree) []reports.Finding {
	v, vLine := procCRIUVersion(ctx, env)
	// An unknown version is held to the older CRIU: the failure is certain
	// there and only likely to pass on the newer ones.
	pidfdFails := v.IsZero() || v.Int() < procPidfdFrom.Int()
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procFDError(err)
	}
	live := t.fs.Live()
	var bad, odd []string
	total := 0
	for _, p := range t.Procs {
		for _, fd := range fdsOf[p] {
			total++
			where := fmt.Sprintf("%s fd %d -> %s", p.label(), fd.FD, fd.Target)
			if typ, ok := proc.AnonType(fd.Target); strings.HasPrefix(fd.Target, "pidfd:") || (ok && typ == "pidfd") {
				if pidfdFails {
					bad = append(bad, where+": a pidfd, which this CRIU cannot dump (\"Can't dump file "+strconv.Itoa(fd.FD)+" of that type [600] (anon anon_inode:[pidfd])\"); "+vLine)
				} else {
					odd = append(odd, where+": "+procPidfdNote)
				}
				continue
			}
			if typ, ok := proc.AnonType(fd.Target); ok {
				if why, ok := procAnonUnsupported[typ]; ok {
					bad = append(bad, where+": "+why)
				} else if !procAnonSupported[typ] {
					odd = append(odd, where+": an anonymous inode kata-cr does not know; CRIU fails on types it has no dumper for")
				}
				continue
			}
			d, ok := t.charDev(p.PID, fd, live)
			if !ok {
				continue
			}
			switch {
			case d.Major == 1, d.Major == 10 && d.Minor == 200, procTTYKind(d) != procTTYNone:
			default:
				bad = append(bad, fmt.Sprintf("%s: character device %s, which CRIU cannot dump (\"Can't dump file %d of that type ... (chr %s)\")", where, d, fd.FD, d))
			}
		}
	}
	gone := procVanished(t, vanished)
	if len(bad) > 0 {
		return []reports.Finding{{Status: reports.Fail, Evidence: append(append(bad, odd...), gone...),
			Summary: fmt.Sprintf("%s of the tree of a kind CRIU cannot dump", procN(len(bad), "file descriptor", "file descriptors")),
			Fix:     &reports.Fix{Description: "close these descriptors before dumping, or run the workload without them (for a console device: give the workload its stdio on /dev/null, pipes or a pty; for a pidfd: a CRIU that dumps pidfds, or a program that does not keep them, such as one that reaps its children at once)"}}}
	}
	if len(odd) > 0 {
		return []reports.Finding{{Status: reports.Warn, Evidence: append(odd, gone...),
			Summary: fmt.Sprintf("%s of a kind only some CRIU versions can dump", procN(len(odd), "file descriptor", "file descriptors"))}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: gone,
		Summary: fmt.Sprintf("every file descriptor of the tree (%d) is of a kind CRIU can dump", total)}}
}

// procGhostBlocksFrom is the first CRIU release that measures a ghost
// file against --ghost-limit by the blocks it occupies (st_blocks * 512)
// rather than by its size, so that a large sparse file fits.
var procGhostBlocksFrom = criu.Version{Major: 3, Minor: 18}

// procGhostMeasure is a ghost file's size as CRIU v measures it against
// --ghost-limit, and how; for an unknown version, the larger of the two.
func procGhostMeasure(v criu.Version, size, allocated int64) (int64, string) {
	switch {
	case v.IsZero():
		return max(size, allocated), "the larger of its size and its allocated bytes (the CRIU version is unknown)"
	case v.Int() >= procGhostBlocksFrom.Int():
		return allocated, fmt.Sprintf("its allocated bytes, as CRIU %s counts them (st_blocks, from %s on)", v, procGhostBlocksFrom)
	}
	return size, fmt.Sprintf("its size, as CRIU %s counts it (before %s)", v, procGhostBlocksFrom)
}

// procDeleted is a deleted file the tree holds open (or runs).
type procDeleted struct {
	Where, Name string
	Size        int64
	Allocated   int64
	Nlink       uint64
}

// procDeletedFiles lists the deleted files the tree holds, with their
// sizes and link counts on a live tree; unknown counts those a /proc
// fixture does not size.
func procDeletedFiles(t *procTree, fdsOf map[*treeProc][]proc.FD) (files []procDeleted, unknown []string) {
	live := t.fs.Live()
	consider := func(where, target, statPath string) {
		name, deleted := strings.CutSuffix(target, " (deleted)")
		if !deleted || !procHasPath(target) || strings.HasPrefix(name, "/dev/zero") || strings.HasPrefix(name, "/SYSV") {
			return
		}
		if !live {
			unknown = append(unknown, fmt.Sprintf("%s: deleted file %s of unknown size", where, name))
			return
		}
		fi, err := os.Stat(statPath)
		if err != nil || !fi.Mode().IsRegular() {
			return
		}
		d := procDeleted{Where: where, Name: name, Size: fi.Size()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			d.Allocated, d.Nlink = st.Blocks*512, uint64(st.Nlink)
		}
		files = append(files, d)
	}
	for _, p := range t.Procs {
		if exe, err := os.Readlink(t.fs.Path(p.PID, "exe")); err == nil {
			consider(p.label()+" exe", exe, t.fs.Path(p.PID, "exe"))
		}
		for _, fd := range fdsOf[p] {
			consider(fmt.Sprintf("%s fd %d", p.label(), fd.FD), fd.Target, t.fs.Path(p.PID, "fd", strconv.Itoa(fd.FD)))
		}
	}
	return files, unknown
}

// checkProcGhosts finds deleted files held open (and deleted executables)
// that have no link left: CRIU copies each into the images, but only up to
// --ghost-limit (1 MiB by default): "Can't dump ghost file F of N size,
// increase limit". CRIU before 3.18 measures a file by its size, later
// ones by the blocks it occupies: a sparse file differs.
func checkProcGhosts(ctx context.Context, env *Env, t *procTree) []reports.Finding {
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procFDError(err)
	}
	files, unknown := procDeletedFiles(t, fdsOf)
	v, vline := procCRIUVersion(ctx, env)
	ev := append([]string(nil), unknown...)
	var largest int64
	var largestName, how string
	sized := 0
	for _, d := range files {
		if d.Nlink > 0 {
			// Linked elsewhere: CRIU links it back (process.link-remap).
			continue
		}
		sized++
		m, h := procGhostMeasure(v, d.Size, d.Allocated)
		ev = append(ev, fmt.Sprintf("%s: deleted file %s, %d bytes, %d allocated", d.Where, d.Name, d.Size, d.Allocated))
		if m > largest || largestName == "" {
			largest, largestName, how = m, d.Name, h
		}
	}
	if sized > 0 {
		ev = append(ev, vline, "measured by "+how)
	}
	ev = append(ev, procVanished(t, vanished)...)
	switch {
	case largest > procGhostLimit:
		limit := (largest + procGhostLimit - 1) / procGhostLimit * procGhostLimit
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("deleted file %s is held open and counts %d bytes, over CRIU's ghost limit of %d: CRIU: \"Can't dump ghost file %s of %d size, increase limit\"", largestName, largest, procGhostLimit, largestName, largest),
			Fix: &reports.Fix{Description: fmt.Sprintf("dump with --ghost-limit %d so CRIU copies the deleted files into the images", limit),
				CRIU: criuopt.Set{GhostLimit: uint64(limit)}, AutoFixable: true, Fixer: FixerIDCRIUOption}}}
	case len(unknown) > 0:
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: fmt.Sprintf("%s held open, of sizes a /proc fixture does not show (CRIU copies up to %d bytes each)", procN(len(unknown), "deleted file", "deleted files"), procGhostLimit)}}
	case sized > 0:
		return []reports.Finding{{Status: reports.Pass, Evidence: ev,
			Summary: fmt.Sprintf("deleted files held open are within CRIU's ghost limit (largest %d bytes): CRIU copies them into the images", largest)}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev, Summary: "the tree holds no deleted files open"}}
}

// checkProcLinkRemap finds files the tree holds open whose name was
// removed while other hard links keep them: CRIU saves such a file by
// linking it back under a new name next to the old one, and only with
// --link-remap ("Can't create link remap for P. Use link-remap option.").
// An inotify watch on the file then finds it through that link too.
func checkProcLinkRemap(_ context.Context, t *procTree) []reports.Finding {
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procFDError(err)
	}
	files, unknown := procDeletedFiles(t, fdsOf)
	gone := procVanished(t, vanished)
	var ev []string
	first := ""
	for _, d := range files {
		if d.Nlink == 0 {
			continue
		}
		if first == "" {
			first = d.Name
		}
		ev = append(ev, fmt.Sprintf("%s: %s was removed, and %d other link(s) keep the file", d.Where, d.Name, d.Nlink))
	}
	if len(ev) > 0 {
		return []reports.Finding{{Status: reports.Fail, Evidence: append(ev, gone...),
			Summary: fmt.Sprintf("%s open under a removed name, still linked elsewhere: CRIU: \"Can't create link remap for %s. Use link-remap option.\"", procN(len(ev), "file", "files"), first),
			Fix: &reports.Fix{Description: "dump with --link-remap: CRIU links each file back under a new name next to the old one (link_remap.N), which travels with the container's files, and the restore opens and removes it",
				CRIU: criuopt.Set{LinkRemap: true}, AutoFixable: true, Fixer: FixerIDCRIUOption}}}
	}
	if len(unknown) > 0 {
		return []reports.Finding{{Status: reports.Skip, Evidence: unknown, Summary: "links of deleted files not checked",
			Reason: "a /proc fixture does not show whether a deleted file has other links: that is read from the live file"}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: gone, Summary: "no open file of the tree has a removed name and other links"}}
}
