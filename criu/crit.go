package criu

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit"
	criucore "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"google.golang.org/protobuf/proto"

	"github.com/kata-cr/kata-cr/proc"
)

// Process is one process of a tree, as the dumped images record it or as
// /proc shows it live. IDs are those of the tree's own pid namespace (the
// last field of NSpid, NSpgid and NSsid), the ones CRIU stores; 0 means
// "outside the namespace".
type Process struct {
	PID     int    `json:"pid"`
	PPID    int    `json:"ppid"`
	PGID    int    `json:"pgid"`
	SID     int    `json:"sid"`
	Threads []int  `json:"threads"`
	Comm    string `json:"comm,omitempty"`
	// Zombie says the process has exited and waits for its parent to
	// reap it. CRIU records a zombie with its ids and exit code but
	// without threads: it restores it by having it exit again.
	Zombie bool `json:"zombie,omitempty"`
}

// taskDead is CRIU's task_state of a zombie in core-PID.img (compel's
// TASK_DEAD; an alive task is 1).
const taskDead = 2

// ReadPstree decodes the process tree of an images directory: pstree.img
// and, for each process, the command name from core-PID.img. It decodes
// the files itself rather than through crit's explorer, which caches
// files.img in package variables and would answer for a previous
// directory.
func ReadPstree(dir string) ([]Process, error) {
	img, err := decodeImage(filepath.Join(dir, "pstree.img"), &pstree.PstreeEntry{})
	if err != nil {
		return nil, fmt.Errorf("read process tree of %s: %w", dir, err)
	}
	var out []Process
	for _, e := range img.Entries {
		pe, ok := e.Message.(*pstree.PstreeEntry)
		if !ok {
			return nil, fmt.Errorf("read process tree of %s: pstree.img holds %T", dir, e.Message)
		}
		p := Process{
			PID:  int(pe.GetPid()),
			PPID: int(pe.GetPpid()),
			PGID: int(pe.GetPgid()),
			SID:  int(pe.GetSid()),
		}
		for _, t := range pe.GetThreads() {
			p.Threads = append(p.Threads, int(t))
		}
		core, err := decodeImage(filepath.Join(dir, fmt.Sprintf("core-%d.img", p.PID)), &criucore.CoreEntry{})
		if err != nil {
			return nil, fmt.Errorf("read process tree of %s: %w", dir, err)
		}
		if len(core.Entries) > 0 {
			if ce, ok := core.Entries[0].Message.(*criucore.CoreEntry); ok {
				p.Comm = ce.GetTc().GetComm()
				p.Zombie = ce.GetTc().GetTaskState() == taskDead
			}
		}
		out = append(out, p)
	}
	sortTree(out)
	return out, nil
}

func decodeImage(path string, entry proto.Message) (*crit.CriuImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := crit.New(f, nil, "", false, false).Decode(entry)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Base(path), err)
	}
	return img, nil
}

// LiveTree reads the process tree rooted at pid (in procRoot's view) from
// procRoot (proc.FS.Walk). It must be read before a dump that does not
// leave the tree running.
func LiveTree(procRoot string, pid int) ([]Process, error) {
	fs := proc.New(procRoot)
	var out []liveProc
	_, err := fs.Walk(pid, func(p int) error {
		lp, err := liveProcess(fs, p)
		if err != nil {
			return err
		}
		out = append(out, lp)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read live tree of %d: %w", pid, err)
	}
	// The root's parent is outside the tree, whatever /proc says.
	out[0].PPID = 0
	// PPIDs from status are in procRoot's namespace: map them into the
	// tree's own.
	ns := map[int]int{}
	for _, p := range out {
		ns[p.hostPID] = p.PID
	}
	for i := range out {
		if out[i].PPID != 0 {
			out[i].PPID = ns[out[i].PPID]
		}
	}
	res := make([]Process, len(out))
	for i, p := range out {
		res[i] = p.Process
	}
	sortTree(res)
	return res, nil
}

type liveProc struct {
	Process
	hostPID int
}

func liveProcess(fs proc.FS, pid int) (liveProc, error) {
	st, err := fs.ReadStatus(pid)
	if err != nil {
		return liveProc{}, err
	}
	p := liveProc{hostPID: pid}
	p.PID = nsID(st.NSpid)
	p.PGID = nsID(st.NSpgid)
	p.SID = nsID(st.NSsid)
	p.PPID = st.PPid
	p.Comm = st.Name
	p.Zombie = strings.HasPrefix(st.State, "Z")
	tids, err := fs.Tasks(pid)
	if err != nil {
		return liveProc{}, err
	}
	for _, tid := range tids {
		ts, err := fs.ReadTaskStatus(pid, tid)
		if err != nil {
			continue // the thread exited
		}
		p.Threads = append(p.Threads, nsID(ts.NSpid))
	}
	sort.Ints(p.Threads)
	return p, nil
}

// nsID is the id in the innermost pid namespace, the last of an NS* list
// of /proc/PID/status ("NSpid: 812 1"); 0 without one.
func nsID(l []int) int {
	return max(proc.Last(l), 0)
}

func sortTree(t []Process) {
	sort.Slice(t, func(i, j int) bool { return t[i].PID < t[j].PID })
	for i := range t {
		sort.Ints(t[i].Threads)
	}
}

// CompareTrees checks that the dumped tree is the live one: the same
// processes with the same parents, sessions, groups and threads. The error
// lists every difference.
func CompareTrees(dumped, live []Process) error {
	d := map[int]Process{}
	for _, p := range dumped {
		d[p.PID] = p
	}
	l := map[int]Process{}
	for _, p := range live {
		l[p.PID] = p
	}
	var diffs []string
	for _, lp := range live {
		dp, ok := d[lp.PID]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("pid %d (%s) is missing from the images", lp.PID, lp.Comm))
			continue
		}
		if dp.PPID != lp.PPID || dp.PGID != lp.PGID || dp.SID != lp.SID {
			diffs = append(diffs, fmt.Sprintf("pid %d: images have ppid %d pgid %d sid %d, live %d %d %d",
				lp.PID, dp.PPID, dp.PGID, dp.SID, lp.PPID, lp.PGID, lp.SID))
		}
		switch {
		case dp.Zombie != lp.Zombie:
			diffs = append(diffs, fmt.Sprintf("pid %d: images have it %s, live %s", lp.PID, zombieWord(dp.Zombie), zombieWord(lp.Zombie)))
		case lp.Zombie:
			// CRIU records no threads for a zombie.
		case !slices.Equal(dp.Threads, lp.Threads):
			diffs = append(diffs, fmt.Sprintf("pid %d: images have threads %v, live %v", lp.PID, dp.Threads, lp.Threads))
		}
	}
	for _, dp := range dumped {
		if _, ok := l[dp.PID]; !ok {
			diffs = append(diffs, fmt.Sprintf("pid %d (%s) is in the images but not in the live tree", dp.PID, dp.Comm))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("dumped tree (%d processes) differs from the live one (%d): %s", len(dumped), len(live), strings.Join(diffs, "; "))
	}
	return nil
}

func zombieWord(z bool) string {
	if z {
		return "a zombie"
	}
	return "alive"
}

// DumpStats are CRIU's statistics of one dump (stats-dump).
type DumpStats struct {
	FreezingTime time.Duration `json:"freezing_time"`
	FrozenTime   time.Duration `json:"frozen_time"`
	MemdumpTime  time.Duration `json:"memdump_time"`
	MemwriteTime time.Duration `json:"memwrite_time"`
	PagesScanned uint64        `json:"pages_scanned"`
	// PagesSkippedParent are the pages a previous pre-dump's images
	// already hold unchanged (--prev-images-dir with --track-mem).
	PagesSkippedParent uint64 `json:"pages_skipped_parent"`
	PagesWritten       uint64 `json:"pages_written"`
}

// Freeze is the time the tree was stopped: CRIU's time to freeze it and
// the time it stayed frozen until the dump ended.
func (s *DumpStats) Freeze() time.Duration { return s.FreezingTime + s.FrozenTime }

// ReadDumpStats reads the stats-dump file of an images directory.
func ReadDumpStats(dir string) (*DumpStats, error) {
	s, err := crit.GetDumpStats(dir)
	if err != nil {
		return nil, fmt.Errorf("read dump stats of %s: %w", dir, err)
	}
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	return &DumpStats{
		FreezingTime:       us(s.GetFreezingTime()),
		FrozenTime:         us(s.GetFrozenTime()),
		MemdumpTime:        us(s.GetMemdumpTime()),
		MemwriteTime:       us(s.GetMemwriteTime()),
		PagesScanned:       s.GetPagesScanned(),
		PagesSkippedParent: s.GetPagesSkippedParent(),
		PagesWritten:       s.GetPagesWritten(),
	}, nil
}
