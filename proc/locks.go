package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Lock is one line of /proc/locks, or one "lock:" line of an fdinfo
// file, which has the same format.
type Lock struct {
	ID string
	// Blocked is true for a waiter ("->"): it holds nothing yet.
	Blocked bool
	// Kind is POSIX, FLOCK, OFDLCK, LEASE, DELEG, ...
	Kind   string
	Mode   string
	Access string
	// PID is the owner as the reader's pid namespace sees it; -1 for OFD
	// locks, which belong to an open file, not a process.
	PID   int
	Major uint32
	Minor uint32
	Inode uint64
	Start string
	End   string
	Line  string
}

// LocksPath is the path of /proc/locks.
func (f FS) LocksPath() string {
	return filepath.Join(f.Root(), "locks")
}

// Locks reads /proc/locks. procfs has no parser for it.
func (f FS) Locks() ([]Lock, error) {
	return readFile(f.LocksPath(), ParseLocks)
}

// ParseLocks parses /proc/locks.
func ParseLocks(data []byte) ([]Lock, error) {
	return ParseTable(data, "locks", false, func(line string) (Lock, error) {
		return ParseLockLine(strings.TrimSpace(line))
	})
}

// ParseLockLine parses "1: POSIX  ADVISORY  WRITE 1234 08:02:1311 0 EOF",
// with an optional "->" after the id for a blocked waiter.
func ParseLockLine(line string) (Lock, error) {
	f := strings.Fields(line)
	bad := func(why string) (Lock, error) {
		return Lock{}, fmt.Errorf("parse lock line %q: %s", line, why)
	}
	if len(f) < 8 || !strings.HasSuffix(f[0], ":") {
		return bad("too few fields")
	}
	l := Lock{ID: strings.TrimSuffix(f[0], ":"), Line: line}
	i := 1
	if f[1] == "->" {
		l.Blocked = true
		i = 2
	}
	if len(f) < i+7 {
		return bad("too few fields")
	}
	l.Kind, l.Mode, l.Access = f[i], f[i+1], f[i+2]
	pid, err := strconv.Atoi(f[i+3])
	if err != nil {
		return bad("bad pid")
	}
	l.PID = pid
	dev := strings.Split(f[i+4], ":")
	if len(dev) != 3 {
		return bad("bad device:inode")
	}
	maj, err1 := strconv.ParseUint(dev[0], 16, 32)
	minor, err2 := strconv.ParseUint(dev[1], 16, 32)
	ino, err3 := strconv.ParseUint(dev[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return bad("bad device:inode")
	}
	l.Major, l.Minor, l.Inode = uint32(maj), uint32(minor), ino
	l.Start, l.End = f[i+5], f[i+6]
	return l, nil
}

// ParseTable parses the lines of a /proc table with parse, skipping blank
// lines and, with header, the first line; what names the table in a read
// error.
func ParseTable[T any](data []byte, what string, header bool, parse func(line string) (T, error)) ([]T, error) {
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for first := true; sc.Scan(); first = false {
		line := sc.Text()
		if (header && first) || strings.TrimSpace(line) == "" {
			continue
		}
		v, err := parse(line)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return out, nil
}
