package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// FD is one open file descriptor of a process.
type FD struct {
	FD int
	// Target is the readlink of /proc/PID/fd/FD: a path (with " (deleted)"
	// when unlinked), "socket:[INO]", "pipe:[INO]", "anon_inode:[eventfd]"...
	Target string
}

// FDs lists the open fds of pid, ascending. An fd closed meanwhile is
// passed over.
func (f FS) FDs(pid int) ([]FD, error) {
	fds, err := readNumbers(f.Path(pid, "fd"))
	if err != nil {
		return nil, err
	}
	out := make([]FD, 0, len(fds))
	for _, fd := range fds {
		target, err := os.Readlink(f.Path(pid, "fd", strconv.Itoa(fd)))
		if err != nil {
			if Gone(err) {
				continue
			}
			return nil, err
		}
		out = append(out, FD{FD: fd, Target: target})
	}
	return out, nil
}

// SocketInode returns INO of a "socket:[INO]" fd target.
func SocketInode(target string) (uint64, bool) {
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

// AnonType returns the type of an "anon_inode:[eventfd]" or
// "anon_inode:inotify" fd target, without brackets.
func AnonType(target string) (string, bool) {
	s, ok := strings.CutPrefix(target, "anon_inode:")
	if !ok {
		return "", false
	}
	return strings.Trim(s, "[]"), true
}

// FDInfo is what kata-cr reads from /proc/PID/fdinfo/FD.
type FDInfo struct {
	Flags uint64
	MntID int
	Ino   uint64
	// TTYIndex is the pty index of a /dev/ptmx fd, -1 otherwise.
	TTYIndex int
	Locks    []Lock
	// Inotify and Fanotify are the watch and mark lines, verbatim.
	Inotify  []string
	Fanotify []string
}

// ReadFDInfo reads /proc/PID/fdinfo/FD.
func (f FS) ReadFDInfo(pid, fd int) (FDInfo, error) {
	return readFile(f.Path(pid, "fdinfo", strconv.Itoa(fd)), ParseFDInfo)
}

// ParseFDInfo parses /proc/PID/fdinfo/FD.
func ParseFDInfo(data []byte) (FDInfo, error) {
	fi := FDInfo{MntID: -1, TTYIndex: -1}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch {
		case key == "flags":
			fi.Flags, err = strconv.ParseUint(val, 8, 64)
		case key == "mnt_id":
			fi.MntID, err = strconv.Atoi(val)
		case key == "ino":
			fi.Ino, err = strconv.ParseUint(val, 10, 64)
		case key == "tty-index":
			fi.TTYIndex, err = strconv.Atoi(val)
		case key == "lock":
			var l Lock
			l, err = ParseLockLine(val)
			fi.Locks = append(fi.Locks, l)
		case strings.HasPrefix(line, "inotify "):
			fi.Inotify = append(fi.Inotify, line)
		case strings.HasPrefix(line, "fanotify "):
			fi.Fanotify = append(fi.Fanotify, line)
		}
		if err != nil {
			return FDInfo{}, fmt.Errorf("parse fdinfo line %q: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return FDInfo{}, fmt.Errorf("read fdinfo: %w", err)
	}
	return fi, nil
}
