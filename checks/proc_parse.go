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

// procMount is one line of /proc/PID/mountinfo with its paths unescaped
// (proc.Mount).
type procMount = proc.Mount

// procParseMountInfo parses /proc/PID/mountinfo (proc.ParseMountInfo).
func procParseMountInfo(data []byte) ([]procMount, error) { return proc.ParseMountInfo(data) }

// procUnescape and procEscape undo and redo the kernel's escapes of
// mountinfo paths (proc.Unescape, proc.Escape).
func procUnescape(s string) string { return proc.Unescape(s) }
func procEscape(s string) string   { return proc.Escape(s) }

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
