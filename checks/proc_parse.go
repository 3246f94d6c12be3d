package checks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/kata-cr/kata-cr/proc"
)

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
	return proc.ParseTable(data, "mountinfo", false, procParseMountLine)
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
	return proc.ParseTable(data, "tcp table", true, procParseTCPLine)
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
	return proc.ParseTable(data, "unix table", true, func(line string) (procUnixEntry, error) {
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
