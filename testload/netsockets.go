package testload

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Modes and state keys of the network socket scenarios.
const (
	// ModeTCPHalfClosed holds an established TCP connection inside the
	// tree whose client has shut its sending side down (SHUT_WR); the
	// server sends the client a line every beat, one line always in
	// flight, and checks that it still reads the client's end of stream.
	ModeTCPHalfClosed = "tcp-half-closed"
	// KeyHalfClosedLines counts the lines the client read in order.
	KeyHalfClosedLines = "tcp_half_closed_lines"

	// ModeUDP exchanges a datagram and its echo every beat between two
	// UDP sockets bound on 127.0.0.1 and connected to each other.
	ModeUDP = "udp"
	// KeyUDPEchoes counts the datagrams echoed back; KeyLost counts the
	// datagrams (or netlink answers, or frames) that never arrived:
	// CRIU does not save what waits in a datagram socket's queue.
	KeyUDPEchoes = "udp_echoes"
	KeyLost      = "lost"

	// ModeNetlink asks the kernel for the list of network links over a
	// bound NETLINK_ROUTE socket every beat.
	ModeNetlink = "netlink"
	// KeyNetlinkDumps counts the answered requests, KeyLinks the links
	// the last one listed.
	KeyNetlinkDumps = "netlink_dumps"
	KeyLinks        = "netlink_links"

	// ModePacket holds an AF_PACKET socket bound to lo for an ethertype of
	// local use and sends a frame to it on lo every beat from a second
	// packet socket.
	ModePacket = "packet"
	// KeyFrames counts the frames received.
	KeyFrames = "packet_frames"
	// packetProto is the ethertype of the frames: IEEE 802 local
	// experimental ethertype 1.
	packetProto = 0x88b5
)

func init() {
	Register(Mode{Name: ModeTCPHalfClosed, Description: "an established TCP connection whose client shut down its sending side; the server sends it a line every beat", Run: runTCPHalfClosed})
	Register(Mode{Name: ModeUDP, Description: "two connected UDP sockets on 127.0.0.1 exchanging a datagram and its echo every beat", Run: runUDP})
	Register(Mode{Name: ModeNetlink, Description: "a bound NETLINK_ROUTE socket asking for the network links every beat", Run: runNetlink})
	Register(Mode{Name: ModePacket, Description: "an AF_PACKET socket bound to lo, receiving a frame sent on lo every beat", Run: runPacket})
	registerWorkload(NewWorkload("tcp-half-closed", "an established TCP connection half closed by its client, the server still sending ("+Name+" "+ModeTCPHalfClosed+")",
		ModeTCPHalfClosed, nil, verifyBeats(KeyHalfClosedLines, "lines read over the half-closed TCP connection, one always in flight")))
	registerWorkload(NewWorkload("udp", "two connected UDP sockets on 127.0.0.1 exchanging a datagram every beat ("+Name+" "+ModeUDP+")",
		ModeUDP, nil, verifyBeats(KeyUDPEchoes, "UDP datagrams echoed")))
	registerWorkload(NewWorkload("netlink", "a bound NETLINK_ROUTE socket asking for the link list every beat ("+Name+" "+ModeNetlink+")",
		ModeNetlink, nil, verifyBeats(KeyNetlinkDumps, "RTM_GETLINK requests answered over the netlink socket")))
	registerWorkload(NewWorkload("packet", "an AF_PACKET socket bound to lo receiving a frame every beat ("+Name+" "+ModePacket+")",
		ModePacket, nil, verifyBeats(KeyFrames, "frames received on the packet socket")))
}

// halfClosedLine is the nth line the server sends.
func halfClosedLine(n int) string {
	return fmt.Sprintf("line %08d\n", n)
}

func runTCPHalfClosed(ctx context.Context, s *State, _ []string) error {
	ln, err := listenTCP(ctx)
	if err != nil {
		return err
	}
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer client.Close()
	server, err := ln.Accept()
	ln.Close()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer server.Close()
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("shut down the client's sending side: %w", err)
	}
	_ = server.SetReadDeadline(time.Now().Add(stepTimeout))
	if n, err := server.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("the server reads %d byte(s), %v, after the client's shutdown: want the end of stream", n, err)
	}
	// endOfStream reads through the same descriptor: no deadline there.
	_ = server.SetReadDeadline(time.Time{})
	raw, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	if _, err := server.Write([]byte(halfClosedLine(0))); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := s.Ready("tcp_client", client.LocalAddr().String(), "tcp_server", server.LocalAddr().String(), KeyHalfClosedLines, "0"); err != nil {
		return err
	}
	r := bufio.NewReader(client)
	return beats(ctx, s, KeyHalfClosedLines, func(n int) ([]string, error) {
		if err := endOfStream(raw); err != nil {
			return nil, err
		}
		_ = server.SetWriteDeadline(time.Now().Add(stepTimeout))
		if _, err := server.Write([]byte(halfClosedLine(n))); err != nil {
			return nil, fmt.Errorf("the server sends: %w", err)
		}
		_ = client.SetReadDeadline(time.Now().Add(stepTimeout))
		got, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("the client reads: %w", err)
		}
		if want := halfClosedLine(n - 1); got != want {
			return nil, fmt.Errorf("the client read %q, want %q", got, want)
		}
		return nil, nil
	})
}

// endOfStream checks, without waiting, that the server still reads the
// end of the client's stream.
func endOfStream(raw syscall.RawConn) error {
	var n int
	var rerr error
	err := raw.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), make([]byte, 1), unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true
	})
	if err == nil {
		err = rerr
	}
	switch {
	case err != nil:
		return fmt.Errorf("the server no longer reads the client's end of stream: %w", err)
	case n != 0:
		return fmt.Errorf("the server reads data from the client, which had shut its sending side down")
	}
	return nil
}

// datagrams is a sequence of numbered datagrams sent over a socket and
// answered, where an answer may be lost (CRIU does not keep a datagram
// socket's queue): await skips answers to earlier requests and gives up
// on a lost one after stepTimeout, counting it.
type datagrams struct {
	lost int
}

// sendTries is how often a scenario of datagrams sends a request whose
// answer is lost before it fails the beat.
const sendTries = 3

// gaveUp is the error of a beat whose every answer was lost.
func (d *datagrams) gaveUp(n int) error {
	return fmt.Errorf("no answer to request %d in %d tries (%d lost in all)", n, sendTries, d.lost)
}

// await reads from fd until recv reports the answer to request n (true)
// or stepTimeout passes.
func (d *datagrams) await(fd, n int, recv func(fd int) (seq int, ok bool, err error)) (bool, error) {
	deadline := time.Now().Add(stepTimeout)
	for time.Now().Before(deadline) {
		seq, ok, err := recv(fd)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			if err := waitReadable(fd); err != nil {
				break
			}
			continue
		}
		if err != nil {
			return false, err
		}
		if ok && seq == n {
			return true, nil
		}
		if ok && seq > n {
			return false, fmt.Errorf("got the answer to request %d while awaiting %d", seq, n)
		}
	}
	d.lost++
	return false, nil
}

// udpSocket is a UDP socket bound on a free port of 127.0.0.1.
func udpSocket() (int, unix.Sockaddr, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return -1, nil, fmt.Errorf("bind: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return -1, nil, fmt.Errorf("getsockname: %w", err)
	}
	return fd, sa, nil
}

// recvSeq reads a datagram holding a decimal number.
func recvSeq(fd int) (int, bool, error) {
	b := make([]byte, 64)
	k, err := unix.Read(fd, b)
	if err != nil {
		return 0, false, err
	}
	n, err := strconv.Atoi(string(b[:k]))
	return n, err == nil, nil
}

func runUDP(ctx context.Context, s *State, _ []string) error {
	a, aAddr, err := udpSocket()
	if err != nil {
		return err
	}
	b, bAddr, err := udpSocket()
	if err != nil {
		return err
	}
	if err := unix.Connect(a, bAddr); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := unix.Connect(b, aAddr); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := s.Ready("udp_a", sockaddrString(aAddr), "udp_b", sockaddrString(bAddr), KeyUDPEchoes, "0", KeyLost, "0"); err != nil {
		return err
	}
	var d datagrams
	echo := func(fd int) (int, bool, error) {
		n, ok, err := recvSeq(fd)
		if err == nil && ok {
			_, err = unix.Write(b, []byte(strconv.Itoa(n)))
		}
		return n, ok, err
	}
	return beats(ctx, s, KeyUDPEchoes, func(n int) ([]string, error) {
		for range sendTries {
			if _, err := unix.Write(a, []byte(strconv.Itoa(n))); err != nil {
				return nil, fmt.Errorf("send: %w", err)
			}
			got, err := d.await(b, n, echo)
			if err == nil && got {
				got, err = d.await(a, n, recvSeq)
			}
			if err != nil {
				return nil, err
			}
			if got {
				return []string{KeyLost, strconv.Itoa(d.lost)}, nil
			}
		}
		return nil, d.gaveUp(n)
	})
}

// sockaddrString prints an inet address.
func sockaddrString(sa unix.Sockaddr) string {
	if in, ok := sa.(*unix.SockaddrInet4); ok {
		return net.JoinHostPort(net.IP(in.Addr[:]).String(), strconv.Itoa(in.Port))
	}
	return fmt.Sprint(sa)
}

// nlGetLink is an RTM_GETLINK dump request numbered seq.
func nlGetLink(seq int) []byte {
	const size = unix.NLMSG_HDRLEN + unix.SizeofIfInfomsg
	b := make([]byte, size)
	binary.NativeEndian.PutUint32(b[0:], size)
	binary.NativeEndian.PutUint16(b[4:], unix.RTM_GETLINK)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(b[8:], uint32(seq))
	b[unix.NLMSG_HDRLEN] = unix.AF_UNSPEC
	return b
}

func runNetlink(ctx context.Context, s *State, _ []string) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	portID := sa.(*unix.SockaddrNetlink).Pid
	if err := s.Ready("netlink_port", strconv.FormatUint(uint64(portID), 10), KeyNetlinkDumps, "0", KeyLost, "0"); err != nil {
		return err
	}
	var d datagrams
	links := 0
	// recv reads one datagram of the answer: its messages' sequence
	// number, and ok once it ends with NLMSG_DONE.
	recv := func(fd int) (int, bool, error) {
		b := make([]byte, 1<<16)
		k, _, err := unix.Recvfrom(fd, b, 0)
		if err != nil {
			return 0, false, err
		}
		msgs, err := syscall.ParseNetlinkMessage(b[:k])
		if err != nil {
			return 0, false, fmt.Errorf("parse the answer: %w", err)
		}
		seq, done := -1, false
		for _, m := range msgs {
			seq = int(m.Header.Seq)
			switch m.Header.Type {
			case unix.RTM_NEWLINK:
				links++
			case unix.NLMSG_DONE:
				done = true
			case unix.NLMSG_ERROR:
				return 0, false, fmt.Errorf("the kernel answered request %d with an error", seq)
			}
		}
		return seq, done, nil
	}
	return beats(ctx, s, KeyNetlinkDumps, func(n int) ([]string, error) {
		for range sendTries {
			links = 0
			if err := unix.Sendto(fd, nlGetLink(n), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				return nil, fmt.Errorf("send RTM_GETLINK: %w", err)
			}
			got, err := d.await(fd, n, recv)
			if err != nil {
				return nil, err
			}
			if !got {
				continue
			}
			if links == 0 {
				return nil, errors.New("the kernel listed no link")
			}
			return []string{KeyLinks, strconv.Itoa(links), KeyLost, strconv.Itoa(d.lost)}, nil
		}
		return nil, d.gaveUp(n)
	})
}

// htons turns a 16-bit number to network byte order.
func htons(v uint16) uint16 {
	return v<<8 | v>>8
}

func runPacket(ctx context.Context, s *State, _ []string) error {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	rcv, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(packetProto)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(rcv, &unix.SockaddrLinklayer{Protocol: htons(packetProto), Ifindex: lo.Index}); err != nil {
		return fmt.Errorf("bind the packet socket to lo: %w", err)
	}
	snd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(packetProto), Ifindex: lo.Index, Halen: 6}
	if err := s.Ready("packet_ifindex", strconv.Itoa(lo.Index), KeyFrames, "0", KeyLost, "0"); err != nil {
		return err
	}
	var d datagrams
	// recv reads a frame; lo shows each frame twice, going out and
	// coming in: only the incoming one counts.
	recv := func(fd int) (int, bool, error) {
		b := make([]byte, 256)
		k, from, err := unix.Recvfrom(fd, b, 0)
		if err != nil {
			return 0, false, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			return 0, false, nil
		}
		n, err := strconv.Atoi(string(b[:k]))
		return n, err == nil, nil
	}
	return beats(ctx, s, KeyFrames, func(n int) ([]string, error) {
		for range sendTries {
			if err := unix.Sendto(snd, []byte(strconv.Itoa(n)), 0, to); err != nil {
				return nil, fmt.Errorf("send a frame on lo: %w", err)
			}
			got, err := d.await(rcv, n, recv)
			if err != nil {
				return nil, err
			}
			if got {
				return []string{KeyLost, strconv.Itoa(d.lost)}, nil
			}
		}
		return nil, d.gaveUp(n)
	})
}
