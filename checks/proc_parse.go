package checks

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// procStatus holds the lines of /proc/PID/status that the process checks
// need. procfs's ProcStatus has NSpid but not NSsid, NSpgid or NStgid, and
// those are what tell whether a session leader is inside a pid namespace.
type procStatus struct {
	Name      string
	State     string
	Tgid      int
	PPid      int
	TracerPid int
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

// procParseStatus parses /proc/PID/status.
func procParseStatus(data []byte) (procStatus, error) {
	var s procStatus
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
		case "NStgid":
			s.NStgid, err = procParseInts(val)
		case "NSpid":
			s.NSpid, err = procParseInts(val)
			s.HasNS = true
		case "NSpgid":
			s.NSpgid, err = procParseInts(val)
		case "NSsid":
			s.NSsid, err = procParseInts(val)
		}
		if err != nil {
			return procStatus{}, fmt.Errorf("parse status line %q: %w", sc.Text(), err)
		}
	}
	if err := sc.Err(); err != nil {
		return procStatus{}, fmt.Errorf("read status: %w", err)
	}
	if s.HasNS && (len(s.NSsid) == 0 || len(s.NSpgid) == 0) {
		return procStatus{}, fmt.Errorf("parse status: NSpid present but NSsid or NSpgid missing")
	}
	return s, nil
}

func procParseInts(s string) ([]int, error) {
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

// procLast returns the last element of l, or -1 for an empty list.
func procLast(l []int) int {
	if len(l) == 0 {
		return -1
	}
	return l[len(l)-1]
}

// procParseChildren parses /proc/PID/task/TID/children: pids separated by
// spaces.
func procParseChildren(data []byte) ([]int, error) {
	return procParseInts(string(data))
}

// procLock is one line of /proc/locks, or one "lock:" line of an fdinfo
// file, which has the same format.
type procLock struct {
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

// procParseTable parses the lines of a /proc table with parse, skipping
// blank lines and, with header, the first line; what names the table in a
// read error.
func procParseTable[T any](data []byte, what string, header bool, parse func(line string) (T, error)) ([]T, error) {
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

// procParseLocks parses /proc/locks. procfs has no parser for it.
func procParseLocks(data []byte) ([]procLock, error) {
	return procParseTable(data, "locks", false, func(line string) (procLock, error) {
		return procParseLockLine(strings.TrimSpace(line))
	})
}

// procParseLockLine parses "1: POSIX  ADVISORY  WRITE 1234 08:02:1311 0 EOF",
// with an optional "->" after the id for a blocked waiter.
func procParseLockLine(line string) (procLock, error) {
	f := strings.Fields(line)
	bad := func(why string) (procLock, error) {
		return procLock{}, fmt.Errorf("parse lock line %q: %s", line, why)
	}
	if len(f) < 8 || !strings.HasSuffix(f[0], ":") {
		return bad("too few fields")
	}
	l := procLock{ID: strings.TrimSuffix(f[0], ":"), Line: line}
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

// procFDInfo is what the checks read from /proc/PID/fdinfo/FD.
type procFDInfo struct {
	Flags uint64
	MntID int
	Ino   uint64
	// TTYIndex is the pty index of a /dev/ptmx fd, -1 otherwise.
	TTYIndex int
	Locks    []procLock
	// Inotify and Fanotify are the watch and mark lines, verbatim.
	Inotify  []string
	Fanotify []string
}

// procParseFDInfo parses /proc/PID/fdinfo/FD.
func procParseFDInfo(data []byte) (procFDInfo, error) {
	fi := procFDInfo{MntID: -1, TTYIndex: -1}
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
			var l procLock
			l, err = procParseLockLine(val)
			fi.Locks = append(fi.Locks, l)
		case strings.HasPrefix(line, "inotify "):
			fi.Inotify = append(fi.Inotify, line)
		case strings.HasPrefix(line, "fanotify "):
			fi.Fanotify = append(fi.Fanotify, line)
		}
		if err != nil {
			return procFDInfo{}, fmt.Errorf("parse fdinfo line %q: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return procFDInfo{}, fmt.Errorf("read fdinfo: %w", err)
	}
	return fi, nil
}

// procMount is one line of /proc/PID/mountinfo with its paths unescaped.
type procMount struct {
	ID       int
	ParentID int
	// MajMin is "major:minor" of the filesystem.
	MajMin string
	// Root is the path inside the filesystem that is mounted: "/" for a
	// whole filesystem, something else for a bind mount of a subtree.
	Root       string
	MountPoint string
	Options    string
	Optional   []string
	FSType     string
	Source     string
	SuperOpts  string
	Line       string
}

// procParseMountInfo parses /proc/PID/mountinfo. Unlike procfs's MountInfo it
// unescapes the octal escapes (\040 for a space and so on) that the kernel
// writes in paths.
func procParseMountInfo(data []byte) ([]procMount, error) {
	return procParseTable(data, "mountinfo", false, procParseMountLine)
}

func procParseMountLine(line string) (procMount, error) {
	f := strings.Fields(line)
	bad := func(why string) (procMount, error) {
		return procMount{}, fmt.Errorf("parse mountinfo line %q: %s", line, why)
	}
	if len(f) < 9 {
		return bad("too few fields")
	}
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return bad("no separator")
	}
	id, err1 := strconv.Atoi(f[0])
	parent, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return bad("bad mount id")
	}
	if !strings.Contains(f[2], ":") {
		return bad("bad major:minor")
	}
	m := procMount{
		ID: id, ParentID: parent, MajMin: f[2],
		Root: procUnescape(f[3]), MountPoint: procUnescape(f[4]),
		Options:  f[5],
		Optional: f[6:sep],
		FSType:   procUnescape(f[sep+1]),
		Source:   procUnescape(f[sep+2]),
		Line:     line,
	}
	if len(f) > sep+3 {
		m.SuperOpts = f[sep+3]
	}
	return m, nil
}

// procUnescape undoes the kernel's mangle() of mountinfo fields: a space,
// tab, newline or backslash is written as a backslash and three octal
// digits.
func procUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// procEscape writes a path the way the kernel writes it in mountinfo, for
// quoting evidence on one line.
func procEscape(s string) string {
	r := strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`)
	return r.Replace(s)
}

// procTCPConn is one line of /proc/PID/net/tcp or tcp6.
type procTCPConn struct {
	Local  netip.AddrPort
	Remote netip.AddrPort
	// State is the kernel's TCP state number (1 established, 10 listen).
	State int
	Inode uint64
}

// procTCPStates names the kernel's TCP states (include/net/tcp_states.h).
var procTCPStates = map[int]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
	12: "NEW_SYN_RECV",
}

// procParseTCP parses /proc/net/tcp or /proc/net/tcp6. procfs has a
// parser too, but it is deprecated there.
func procParseTCP(data []byte) ([]procTCPConn, error) {
	return procParseTable(data, "tcp table", true, procParseTCPLine)
}

func procParseTCPLine(line string) (procTCPConn, error) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return procTCPConn{}, fmt.Errorf("parse tcp line %q: too few fields", line)
	}
	local, err1 := procParseSockAddr(f[1])
	remote, err2 := procParseSockAddr(f[2])
	st, err3 := strconv.ParseUint(f[3], 16, 8)
	ino, err4 := strconv.ParseUint(f[9], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return procTCPConn{}, fmt.Errorf("parse tcp line %q: %w", line, err)
	}
	return procTCPConn{Local: local, Remote: remote, State: int(st), Inode: ino}, nil
}

// procParseSockAddr parses "0100007F:1F90": the address as the kernel's
// 32-bit words printed in host byte order, then the port.
func procParseSockAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	b := make([]byte, len(a)/2)
	for w := 0; w < len(a)/8; w++ {
		v, err := strconv.ParseUint(a[w*8:w*8+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
		}
		binary.NativeEndian.PutUint32(b[w*4:], uint32(v))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// procUnixEntry is one line of /proc/PID/net/unix.
type procUnixEntry struct {
	Inode uint64
	Type  int
	State int
	Path  string
}

// procParseNetUnix parses /proc/net/unix: the unix sockets of a network
// namespace, without their peers.
func procParseNetUnix(data []byte) ([]procUnixEntry, error) {
	return procParseTable(data, "unix table", true, func(line string) (procUnixEntry, error) {
		f := strings.Fields(line)
		if len(f) < 7 {
			return procUnixEntry{}, fmt.Errorf("parse unix line %q: too few fields", line)
		}
		typ, err1 := strconv.ParseUint(f[4], 16, 16)
		st, err2 := strconv.ParseUint(f[5], 16, 8)
		ino, err3 := strconv.ParseUint(f[6], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return procUnixEntry{}, fmt.Errorf("parse unix line %q: %w", line, err)
		}
		e := procUnixEntry{Inode: ino, Type: int(typ), State: int(st)}
		if len(f) > 7 {
			e.Path = strings.Join(f[7:], " ")
		}
		return e, nil
	})
}
