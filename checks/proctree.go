package checks

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/prometheus/procfs"

	"github.com/kata-cr/kata-cr/proc"
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
	Status proc.Status
}

// label names a process in evidence: "pid 4242 (sh, ns pid 1)".
func (p *treeProc) label() string {
	if v := proc.Last(p.Status.NSpid); v > 0 && v != p.PID {
		return fmt.Sprintf("pid %d (%s, ns pid %d)", p.PID, p.Comm, v)
	}
	return fmt.Sprintf("pid %d (%s)", p.PID, p.Comm)
}

// procTree is the process env.PID and all its descendants: the tree a
// `criu dump -t PID` walks.
type procTree struct {
	fs    proc.FS
	proc  procfs.FS
	Root  *treeProc
	Procs []*treeProc // root first, then breadth first
	byPID map[int]*treeProc
	// Vanished lists processes that exited while the tree was read.
	Vanished []string

	// The checks sharing this reading also share what they read of each
	// process, read on first use.
	mu        sync.Mutex
	fdCache   map[int]procResult[[]proc.FD]
	infoCache map[[2]int]procResult[proc.FDInfo]
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

// procLoadTree reads the tree rooted at env.PID (proc.FS.Walk). A missing
// root gives an procErrNoProcess; descendants that exit while being read
// are listed in Vanished.
func procLoadTree(env *Env) (*procTree, error) {
	pfs, err := procFSOf(env)
	if err != nil {
		return nil, fmt.Errorf("open procfs %s: %w", procRootDir(env), err)
	}
	t := &procTree{fs: proc.New(procRootDir(env)), proc: pfs, byPID: map[int]*treeProc{},
		fdCache: map[int]procResult[[]proc.FD]{}, infoCache: map[[2]int]procResult[proc.FDInfo]{}, nsCache: map[string]procResult[string]{}}
	if env.PID <= 0 {
		return nil, fmt.Errorf("invalid pid %d: pass the PID of a running process", env.PID)
	}
	vanished, err := t.fs.Walk(env.PID, func(pid int) error {
		p, err := t.readProc(pid)
		if err != nil {
			return err
		}
		t.add(p)
		return nil
	})
	if err != nil {
		if t.Root != nil {
			return nil, err
		}
		if proc.Gone(err) {
			return nil, procErrNoProcess{PID: env.PID, Root: t.fs.Root()}
		}
		return nil, fmt.Errorf("read process %d: %w", env.PID, err)
	}
	for _, pid := range vanished {
		if p, ok := t.byPID[pid]; ok {
			t.Vanished = append(t.Vanished, p.label())
		} else {
			t.Vanished = append(t.Vanished, fmt.Sprintf("pid %d", pid))
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

func (t *procTree) readProc(pid int) (*treeProc, error) {
	p, err := t.proc.Proc(pid)
	if err != nil {
		return nil, err
	}
	st, err := p.Stat()
	if err != nil {
		return nil, err
	}
	status, err := t.fs.ReadStatus(pid)
	if err != nil {
		return nil, err
	}
	return &treeProc{
		PID: pid, Comm: st.Comm, State: st.State, PPID: st.PPID,
		PGRP: st.PGRP, Session: st.Session, TTY: st.TTY, Status: status,
	}, nil
}

// fds lists the open fds of pid.
func (t *procTree) fds(pid int) ([]proc.FD, error) {
	return procCached(t, t.fdCache, pid, func() ([]proc.FD, error) { return t.fs.FDs(pid) })
}

// fdInfo reads /proc/PID/fdinfo/FD.
func (t *procTree) fdInfo(pid, fd int) (proc.FDInfo, error) {
	return procCached(t, t.infoCache, [2]int{pid, fd}, func() (proc.FDInfo, error) { return t.fs.ReadFDInfo(pid, fd) })
}

// nsLink reads /proc/PID/ns/NAME, e.g. "pid:[4026531836]".
func (t *procTree) nsLink(pid int, name string) (string, error) {
	return procCached(t, t.nsCache, strconv.Itoa(pid)+"/"+name, func() (string, error) { return t.fs.NSLink(pid, name) })
}
