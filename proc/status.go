package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Status holds the lines of /proc/PID/status that kata-cr reads.
// procfs's ProcStatus has NSpid but not NSsid, NSpgid or NStgid, and
// those are what tell whether a session leader is inside a pid namespace.
type Status struct {
	Name      string
	State     string
	Tgid      int
	PPid      int
	TracerPid int
	// Uid is the real, effective, saved and filesystem uid.
	Uid []int
	// CapEff is the effective capability set, when HasCapEff.
	CapEff    uint64
	HasCapEff bool
	// Each NS* list has one entry per pid namespace the task is visible
	// in, from the namespace of the procfs mount down to the task's own:
	// the last entry is the id as the task itself sees it, and 0 there
	// means the session or group leader is outside the task's namespace.
	NStgid []int
	NSpid  []int
	NSpgid []int
	NSsid  []int
	// HasNS is false on kernels older than 4.1, which lack the NS* lines.
	HasNS bool
}

// ParseStatus parses /proc/PID/status.
func ParseStatus(data []byte) (Status, error) {
	var s Status
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Name":
			s.Name = val
		case "State":
			s.State = val
		case "Tgid":
			s.Tgid, err = strconv.Atoi(val)
		case "PPid":
			s.PPid, err = strconv.Atoi(val)
		case "TracerPid":
			s.TracerPid, err = strconv.Atoi(val)
		case "Uid":
			s.Uid, err = parseInts(val)
		case "CapEff":
			s.CapEff, err = strconv.ParseUint(val, 16, 64)
			s.HasCapEff = true
		case "NStgid":
			s.NStgid, err = parseInts(val)
		case "NSpid":
			s.NSpid, err = parseInts(val)
			s.HasNS = true
		case "NSpgid":
			s.NSpgid, err = parseInts(val)
		case "NSsid":
			s.NSsid, err = parseInts(val)
		}
		if err != nil {
			return Status{}, fmt.Errorf("parse status line %q: %w", sc.Text(), err)
		}
	}
	if err := sc.Err(); err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	if s.HasNS && (len(s.NSsid) == 0 || len(s.NSpgid) == 0) {
		return Status{}, fmt.Errorf("parse status: NSpid present but NSsid or NSpgid missing")
	}
	return s, nil
}

// ReadStatus reads /proc/PID/status.
func (f FS) ReadStatus(pid int) (Status, error) {
	return readFile(f.Path(pid, "status"), ParseStatus)
}

// ReadSelfStatus reads /proc/self/status, the calling process's.
func (f FS) ReadSelfStatus() (Status, error) {
	return readFile(filepath.Join(f.Root(), "self", "status"), ParseStatus)
}

// ReadTaskStatus reads /proc/PID/task/TID/status, a thread's.
func (f FS) ReadTaskStatus(pid, tid int) (Status, error) {
	return readFile(f.Path(pid, "task", strconv.Itoa(tid), "status"), ParseStatus)
}

// Last returns the last element of l (the id in the innermost pid
// namespace, of an NS* list), or -1 for an empty list.
func Last(l []int) int {
	if len(l) == 0 {
		return -1
	}
	return l[len(l)-1]
}

// parseInts parses numbers separated by blanks.
func parseInts(s string) ([]int, error) {
	f := strings.Fields(s)
	out := make([]int, 0, len(f))
	for _, x := range f {
		n, err := strconv.Atoi(x)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
