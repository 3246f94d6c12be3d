package proc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"syscall"
)

// ErrNoChildren says the kernel has no /proc/PID/task/TID/children files:
// they exist only with CONFIG_PROC_CHILDREN (which CHECKPOINT_RESTORE
// selects).
var ErrNoChildren = errors.New("no /proc/PID/task/TID/children (kernel without CONFIG_PROC_CHILDREN)")

// Tasks lists the thread ids of pid, ascending.
func (f FS) Tasks(pid int) ([]int, error) {
	return readNumbers(f.Path(pid, "task"))
}

// ParseChildren parses /proc/PID/task/TID/children: pids separated by
// spaces.
func ParseChildren(data []byte) ([]int, error) {
	return parseInts(string(data))
}

// Children lists the children of every thread of pid, ascending. A
// thread that exits meanwhile is passed over; ErrNoChildren says the
// kernel has no children files, and Parents must do instead.
func (f FS) Children(pid int) ([]int, error) {
	tids, err := f.Tasks(pid)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, tid := range tids {
		t := strconv.Itoa(tid)
		data, err := os.ReadFile(f.Path(pid, "task", t, "children"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if _, serr := os.Stat(f.Path(pid, "task", t)); serr == nil {
					return nil, ErrNoChildren
				}
				continue // the thread exited
			}
			if errors.Is(err, syscall.ESRCH) {
				continue
			}
			return nil, err
		}
		kids, err := ParseChildren(data)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f.Path(pid, "task", t, "children"), err)
		}
		out = append(out, kids...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Parents maps every process of the procfs to its children, ascending,
// from each one's PPid: the slow way to walk a tree, for a kernel without
// children files. Processes that exit meanwhile are left out.
func (f FS) Parents() (map[int][]int, error) {
	pids, err := f.Pids()
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", f.Root(), err)
	}
	m := map[int][]int{}
	for _, pid := range pids {
		st, err := f.ReadStatus(pid)
		if err != nil {
			continue
		}
		m[st.PPid] = append(m[st.PPid], pid)
	}
	return m, nil
}

// Walk visits the process root and its descendants, each once, breadth
// first and each one's children in ascending order: the tree a
// `criu dump -t root` walks. It calls read for root, then for each child
// found (through Children, or Parents without children files). read's
// error for root ends the walk and is returned as it is. A descendant
// that read finds Gone, or whose children cannot be listed because it is
// Gone, exited during the walk: it is listed in vanished and its subtree
// is not walked. Any other error ends the walk.
func (f FS) Walk(root int, read func(pid int) error) (vanished []int, err error) {
	if err := read(root); err != nil {
		return nil, err
	}
	seen := map[int]bool{root: true}
	queue := []int{root}
	var byParent map[int][]int // read only when children files are missing
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		kids, err := f.Children(pid)
		if errors.Is(err, ErrNoChildren) {
			if byParent == nil {
				if byParent, err = f.Parents(); err != nil {
					return vanished, err
				}
			}
			kids, err = byParent[pid], nil
		}
		if err != nil {
			if Gone(err) {
				vanished = append(vanished, pid)
				continue
			}
			return vanished, fmt.Errorf("list children of process %d: %w", pid, err)
		}
		for _, k := range kids {
			if seen[k] {
				continue
			}
			seen[k] = true
			if err := read(k); err != nil {
				if Gone(err) {
					vanished = append(vanished, k)
					continue
				}
				return vanished, fmt.Errorf("read process %d: %w", k, err)
			}
			queue = append(queue, k)
		}
	}
	return vanished, nil
}
