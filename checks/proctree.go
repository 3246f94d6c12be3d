package checks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/prometheus/procfs"
)

// treeProc is one process of the tree CRIU would dump, as /proc shows it.
// Pids are as the procfs mount at Env.ProcRoot sees them.
type treeProc struct {
	PID     int
	Comm    string
	State   string
	PPID    int
	PGRP    int
	Session int
	// TTY is the controlling terminal's device number, 0 for none.
	TTY    int
	Status procStatus
}

// label names a process in evidence: "pid 4242 (sh, ns pid 1)".
func (p *treeProc) label() string {
	if v := procLast(p.Status.NSpid); v > 0 && v != p.PID {
		return fmt.Sprintf("pid %d (%s, ns pid %d)", p.PID, p.Comm, v)
	}
	return fmt.Sprintf("pid %d (%s)", p.PID, p.Comm)
}

// procTree is the process env.PID and all its descendants: the tree a
// `criu dump -t PID` walks.
type procTree struct {
	root  string
	proc  procfs.FS
	Root  *treeProc
	Procs []*treeProc // root first, then breadth first
	byPID map[int]*treeProc
	// Vanished lists processes that exited while the tree was read.
	Vanished []string

	// The checks sharing this reading also share what they read of each
	// process, read on first use.
	mu        sync.Mutex
	fdCache   map[int]procResult[[]procFD]
	infoCache map[[2]int]procResult[procFDInfo]
	nsCache   map[string]procResult[string]
}

// procResult is one cached read of a procTree.
type procResult[V any] struct {
	v   V
	err error
}

// procCached returns m[k], reading it with read on first use. t.mu guards
// m, not the read: two checks asking at once may both read, and either
// answer is a true reading.
func procCached[K comparable, V any](t *procTree, m map[K]procResult[V], k K, read func() (V, error)) (V, error) {
	t.mu.Lock()
	r, ok := m[k]
	t.mu.Unlock()
	if ok {
		return r.v, r.err
	}
	v, err := read()
	t.mu.Lock()
	m[k] = procResult[V]{v, err}
	t.mu.Unlock()
	return v, err
}

// procErrNoProcess says the root of the tree does not exist.
type procErrNoProcess struct {
	PID  int
	Root string
}

func (e procErrNoProcess) Error() string {
	return fmt.Sprintf("process %d does not exist (no %s): pass the PID of a running process", e.PID, filepath.Join(e.Root, strconv.Itoa(e.PID)))
}

// procGone reports whether err means the process (or one of its tasks or
// fds) went away while it was being read.
func procGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// procRootDir is env.ProcRoot, or /proc when the Env was built by hand.
func procRootDir(env *Env) string {
	if env.ProcRoot == "" {
		return "/proc"
	}
	return env.ProcRoot
}

// procFSOf is env.Proc, or one built from procRootDir when it is unset.
func procFSOf(env *Env) (procfs.FS, error) {
	if env.Proc != (procfs.FS{}) {
		return env.Proc, nil
	}
	return procfs.NewFS(procRootDir(env))
}

// procLoadTree reads the tree rooted at env.PID. A missing root gives an
// procErrNoProcess; descendants that exit while being read are listed in
// Vanished.
func procLoadTree(env *Env) (*procTree, error) {
	pfs, err := procFSOf(env)
	if err != nil {
		return nil, fmt.Errorf("open procfs %s: %w", procRootDir(env), err)
	}
	t := &procTree{root: procRootDir(env), proc: pfs, byPID: map[int]*treeProc{},
		fdCache: map[int]procResult[[]procFD]{}, infoCache: map[[2]int]procResult[procFDInfo]{}, nsCache: map[string]procResult[string]{}}
	if env.PID <= 0 {
		return nil, fmt.Errorf("invalid pid %d: pass the PID of a running process", env.PID)
	}
	root, err := t.readProc(env.PID)
	if err != nil {
		if procGone(err) {
			return nil, procErrNoProcess{PID: env.PID, Root: t.root}
		}
		return nil, fmt.Errorf("read process %d: %w", env.PID, err)
	}
	t.add(root)
	var byParent map[int][]int // filled only when children files are missing
	for i := 0; i < len(t.Procs); i++ {
		p := t.Procs[i]
		kids, err := t.children(p.PID)
		if errors.Is(err, procErrNoChildren) {
			if byParent == nil {
				if byParent, err = t.scanParents(); err != nil {
					return nil, err
				}
			}
			kids, err = byParent[p.PID], nil
		}
		if err != nil {
			if procGone(err) {
				t.Vanished = append(t.Vanished, p.label())
				continue
			}
			return nil, fmt.Errorf("list children of %s: %w", p.label(), err)
		}
		for _, k := range kids {
			if _, seen := t.byPID[k]; seen {
				continue
			}
			c, err := t.readProc(k)
			if err != nil {
				if procGone(err) {
					t.Vanished = append(t.Vanished, fmt.Sprintf("pid %d", k))
					continue
				}
				return nil, fmt.Errorf("read process %d: %w", k, err)
			}
			t.add(c)
		}
	}
	return t, nil
}

func (t *procTree) add(p *treeProc) {
	t.byPID[p.PID] = p
	if t.Root == nil {
		t.Root = p
	}
	t.Procs = append(t.Procs, p)
}

// Has reports whether host pid is in the tree.
func (t *procTree) Has(pid int) bool {
	_, ok := t.byPID[pid]
	return ok
}

func (t *procTree) path(pid int, elem ...string) string {
	return filepath.Join(append([]string{t.root, strconv.Itoa(pid)}, elem...)...)
}

func (t *procTree) readProc(pid int) (*treeProc, error) {
	p, err := t.proc.Proc(pid)
	if err != nil {
		return nil, err
	}
	st, err := p.Stat()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(t.path(pid, "status"))
	if err != nil {
		return nil, err
	}
	status, err := procParseStatus(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.path(pid, "status"), err)
	}
	return &treeProc{
		PID: pid, Comm: st.Comm, State: st.State, PPID: st.PPID,
		PGRP: st.PGRP, Session: st.Session, TTY: st.TTY, Status: status,
	}, nil
}

var procErrNoChildren = errors.New("no /proc/PID/task/TID/children (kernel without CONFIG_PROC_CHILDREN)")

// children lists the children of every thread of pid. The children files
// exist only with CONFIG_PROC_CHILDREN (selected by CHECKPOINT_RESTORE);
// without them the caller scans every process's parent instead.
func (t *procTree) children(pid int) ([]int, error) {
	tids, err := procReadDir(t.path(pid, "task"))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, tid := range tids {
		data, err := os.ReadFile(t.path(pid, "task", tid, "children"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if _, serr := os.Stat(t.path(pid, "task", tid)); serr == nil {
					return nil, procErrNoChildren
				}
				continue // the thread exited
			}
			if errors.Is(err, syscall.ESRCH) {
				continue
			}
			return nil, err
		}
		kids, err := procParseChildren(data)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", t.path(pid, "task", tid, "children"), err)
		}
		out = append(out, kids...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// scanParents maps every process to its parent by reading all of /proc.
func (t *procTree) scanParents() (map[int][]int, error) {
	procs, err := t.proc.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", t.root, err)
	}
	m := map[int][]int{}
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil {
			continue // exited meanwhile
		}
		m[st.PPID] = append(m[st.PPID], p.PID)
	}
	for k := range m {
		slices.Sort(m[k])
	}
	return m, nil
}

// procFD is one open file descriptor of a process.
type procFD struct {
	FD int
	// Target is the readlink of /proc/PID/fd/FD: a path (with " (deleted)"
	// when unlinked), "socket:[INO]", "pipe:[INO]", "anon_inode:[eventfd]"...
	Target string
}

// fds lists the open fds of pid.
func (t *procTree) fds(pid int) ([]procFD, error) {
	return procCached(t, t.fdCache, pid, func() ([]procFD, error) { return t.readFDs(pid) })
}

func (t *procTree) readFDs(pid int) ([]procFD, error) {
	names, err := procReadDir(t.path(pid, "fd"))
	if err != nil {
		return nil, err
	}
	out := make([]procFD, 0, len(names))
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		target, err := os.Readlink(t.path(pid, "fd", n))
		if err != nil {
			if procGone(err) {
				continue // closed meanwhile
			}
			return nil, err
		}
		out = append(out, procFD{FD: fd, Target: target})
	}
	slices.SortFunc(out, func(a, b procFD) int { return a.FD - b.FD })
	return out, nil
}

// fdInfo reads /proc/PID/fdinfo/FD.
func (t *procTree) fdInfo(pid, fd int) (procFDInfo, error) {
	return procCached(t, t.infoCache, [2]int{pid, fd}, func() (procFDInfo, error) { return t.readFDInfo(pid, fd) })
}

func (t *procTree) readFDInfo(pid, fd int) (procFDInfo, error) {
	p := t.path(pid, "fdinfo", strconv.Itoa(fd))
	data, err := os.ReadFile(p)
	if err != nil {
		return procFDInfo{}, err
	}
	fi, err := procParseFDInfo(data)
	if err != nil {
		return procFDInfo{}, fmt.Errorf("%s: %w", p, err)
	}
	return fi, nil
}

// nsLink reads /proc/PID/ns/NAME, e.g. "pid:[4026531836]".
func (t *procTree) nsLink(pid int, name string) (string, error) {
	return procCached(t, t.nsCache, strconv.Itoa(pid)+"/"+name, func() (string, error) { return os.Readlink(t.path(pid, "ns", name)) })
}

// procSelfNS reads a namespace of kata-cr itself, as the procfs at root
// shows it (root/self).
func procSelfNS(root, name string) (string, error) {
	return os.Readlink(filepath.Join(root, "self", "ns", name))
}

// procLive reports whether root is the procfs of the running kernel as
// seen by this process (and not a fixture tree): only then can sockets be
// looked up through netlink or files be stat'ed.
func procLive(root string) bool {
	self, err := os.Readlink(filepath.Join(root, "self"))
	return err == nil && self == strconv.Itoa(os.Getpid())
}

func procReadDir(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
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

// procSocketInode returns INO of a "socket:[INO]" fd target.
func procSocketInode(target string) (uint64, bool) {
	s, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// procAnonType returns the type of an "anon_inode:[eventfd]" or
// "anon_inode:inotify" fd target, without brackets.
func procAnonType(target string) (string, bool) {
	s, ok := strings.CutPrefix(target, "anon_inode:")
	if !ok {
		return "", false
	}
	return strings.Trim(s, "[]"), true
}
