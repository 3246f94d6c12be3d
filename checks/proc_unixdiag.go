package checks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// procUnixSock is one unix socket as the kernel's unix_diag reports it.
type procUnixSock struct {
	Inode uint32
	// Type is unix.SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
	Type uint8
	// State is a TCP state number: 1 established, 7 close, 10 listen.
	State uint8
	// Peer is the inode of the other end, 0 when not connected.
	Peer uint32
	// Name is the bound path (abstract names start with "@").
	Name string
	// Icons are, for a listening socket, the inodes of the clients whose
	// connections wait to be accepted (0 for a client that closed).
	Icons []uint32
	// RQueue and WQueue are, for a listening socket, the connections
	// waiting and the backlog; otherwise the bytes waiting to be read and
	// the bytes written and not yet read by the peer.
	RQueue, WQueue uint32
	// HasQueues says whether the kernel sent RQueue and WQueue.
	HasQueues bool
}

// Constants of linux/unix_diag.h, which x/sys/unix does not carry.
const (
	procUDiagShowName  = 0x1
	procUDiagShowPeer  = 0x4
	procUDiagShowIcons = 0x8
	procUDiagShowRQLen = 0x10
	procUnixDiagName   = 0
	procUnixDiagPeer   = 2
	procUnixDiagIcons  = 3
	procUnixDiagRQLen  = 4
	// sizes of struct unix_diag_req and struct unix_diag_msg
	procSizeofUnixDiagReq = 24
	procSizeofUnixDiagMsg = 16
)

// errNoUnixDiag says the kernel answered ENOENT: there is no
// unix_diag handler (CONFIG_UNIX_DIAG off, or the module not loadable).
var errNoUnixDiag = errors.New("unix_diag is not available (NETLINK_SOCK_DIAG answered ENOENT): load the unix_diag module or enable CONFIG_UNIX_DIAG")

// procUnixDiag lists the unix sockets of the network namespace at
// netnsPath (a /proc/PID/ns/net link), or of kata-cr's own network
// namespace when netnsPath is "". Unix sockets are listed per network
// namespace, the one they were created in.
func procUnixDiag(netnsPath string) (map[uint32]procUnixSock, error) {
	if netnsPath == "" {
		return procUnixDiagHere()
	}
	type result struct {
		socks map[uint32]procUnixSock
		err   error
	}
	ch := make(chan result, 1)
	// setns changes only the calling thread. The goroutine keeps its
	// thread locked and, if it cannot switch back, exits without
	// unlocking so that the runtime throws the thread away instead of
	// reusing it in the wrong namespace.
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("open own network namespace: %w", err)}
			return
		}
		defer orig.Close()
		target, err := os.Open(netnsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("open network namespace %s: %w", netnsPath, err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter network namespace %s: %w", netnsPath, err)}
			return
		}
		socks, derr := procUnixDiagHere()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("return to own network namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{socks, derr}
	}()
	r := <-ch
	return r.socks, r.err
}

// procUnixDiagHere sends one SOCK_DIAG_BY_FAMILY dump request for AF_UNIX
// with UDIAG_SHOW_PEER and reads every answer.
func procUnixDiagHere() (map[uint32]procUnixSock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open NETLINK_SOCK_DIAG socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("bind NETLINK_SOCK_DIAG socket: %w", err)
	}

	req := make([]byte, unix.NLMSG_HDRLEN+procSizeofUnixDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence
	b := req[unix.NLMSG_HDRLEN:]
	b[0] = unix.AF_UNIX
	ne.PutUint32(b[4:], 0xffffffff) // every state
	ne.PutUint32(b[12:], procUDiagShowPeer|procUDiagShowName|procUDiagShowIcons|procUDiagShowRQLen)
	ne.PutUint32(b[16:], 0xffffffff) // no cookie
	ne.PutUint32(b[20:], 0xffffffff)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send unix_diag request: %w", err)
	}

	out := map[uint32]procUnixSock{}
	buf := make([]byte, 64*1024)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, fmt.Errorf("read unix_diag answer: %w", err)
		}
		done, err := procParseUnixDiag(buf[:n], out)
		if err != nil {
			return nil, err
		}
		if done {
			return out, nil
		}
	}
}

// procParseUnixDiag parses one datagram of netlink messages into out. It
// returns true at NLMSG_DONE.
func procParseUnixDiag(b []byte, out map[uint32]procUnixSock) (bool, error) {
	ne := binary.NativeEndian
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return false, fmt.Errorf("parse unix_diag answer: bad message length %d", l)
		}
		msg := b[unix.NLMSG_HDRLEN:l]
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(msg) < 4 {
				return false, fmt.Errorf("parse unix_diag answer: short error message")
			}
			errno := -int32(ne.Uint32(msg))
			if errno == 0 {
				return true, nil
			}
			if unix.Errno(errno) == unix.ENOENT {
				return false, errNoUnixDiag
			}
			return false, fmt.Errorf("unix_diag request: %w", unix.Errno(errno))
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(msg) < procSizeofUnixDiagMsg {
				return false, fmt.Errorf("parse unix_diag answer: short message")
			}
			s := procUnixSock{Type: msg[1], State: msg[2], Inode: ne.Uint32(msg[4:])}
			attrs := msg[procSizeofUnixDiagMsg:]
			for len(attrs) >= 4 {
				al := int(ne.Uint16(attrs[0:]))
				at := ne.Uint16(attrs[2:])
				if al < 4 || al > len(attrs) {
					break
				}
				data := attrs[4:al]
				switch at {
				case procUnixDiagPeer:
					if len(data) >= 4 {
						s.Peer = ne.Uint32(data)
					}
				case procUnixDiagIcons:
					for i := 0; i+4 <= len(data); i += 4 {
						s.Icons = append(s.Icons, ne.Uint32(data[i:]))
					}
				case procUnixDiagRQLen:
					if len(data) >= 8 {
						s.RQueue, s.WQueue, s.HasQueues = ne.Uint32(data), ne.Uint32(data[4:]), true
					}
				case procUnixDiagName:
					// A path name comes with its terminating NUL; an
					// abstract one starts with NUL and is shown with "@".
					if len(data) > 0 && data[0] == 0 {
						s.Name = "@" + string(data[1:])
					} else {
						s.Name = strings.TrimRight(string(data), "\x00")
					}
				}
				next := (al + 3) &^ 3
				if next > len(attrs) {
					break
				}
				attrs = attrs[next:]
			}
			out[s.Inode] = s
		}
		next := (l + 3) &^ 3
		if next > len(b) {
			break
		}
		b = b[next:]
	}
	return false, nil
}

// procUnixType names a unix socket type for evidence.
func procUnixType(t uint8) string {
	switch t {
	case unix.SOCK_STREAM:
		return "stream"
	case unix.SOCK_DGRAM:
		return "datagram"
	case unix.SOCK_SEQPACKET:
		return "seqpacket"
	}
	return fmt.Sprintf("type %d", t)
}
