package checks

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
)

// procUDPTables are the /proc/PID/net tables of UDP sockets; their lines
// have the layout of the TCP tables.
var procUDPTables = []string{"udp", "udp6", "udplite", "udplite6"}

// procHeldSocket is a socket of the tree and the first fd that holds it.
type procHeldSocket struct {
	Inode   uint64
	PID, FD int
	Label   string
}

// procFirstHolders lists the sockets the tree holds, each with the first
// fd that holds it, in the tree's order.
func procFirstHolders(t *procTree, fdsOf map[*treeProc][]proc.FD) []procHeldSocket {
	var out []procHeldSocket
	seen := map[uint64]bool{}
	for _, p := range t.Procs {
		for _, fd := range fdsOf[p] {
			if ino, ok := proc.SocketInode(fd.Target); ok && !seen[ino] {
				seen[ino] = true
				out = append(out, procHeldSocket{Inode: ino, PID: p.PID, FD: fd.FD, Label: fmt.Sprintf("%s fd %d", p.label(), fd.FD)})
			}
		}
	}
	return out
}

// procUDPSock is a UDP socket of the tree, as its table shows it.
type procUDPSock struct {
	procHeldSocket
	Conn  procTCPConn
	Table string
}

// procTreeUDP lists the UDP sockets the tree holds, from the UDP tables of
// its network namespaces.
func procTreeUDP(t *procTree, fdsOf map[*treeProc][]proc.FD) ([]procUDPSock, []string) {
	first := map[uint64]procHeldSocket{}
	for _, h := range procFirstHolders(t, fdsOf) {
		first[h.Inode] = h
	}
	var out []procUDPSock
	unreadable := procReadSockTables(t, procSocketsOf(t, fdsOf), procUDPTables, func(_, table string, c procTCPConn) {
		out = append(out, procUDPSock{procHeldSocket: first[c.Inode], Conn: c, Table: table})
	})
	return out, unreadable
}

// procWithFD runs f on a copy (pidfd_getfd) of the fd that process pid
// holds: what only the open file answers (socket options) is read there,
// and the process's own fd is untouched.
func procWithFD(pid, fd int, f func(dup int) error) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return fmt.Errorf("pidfd_getfd %d fd %d: %w", pid, fd, err)
	}
	defer unix.Close(dup)
	return f(dup)
}

// procUDPCorked reads UDP_CORK of a socket that process pid holds as fd.
func procUDPCorked(pid, fd int) (bool, error) {
	var v int
	err := procWithFD(pid, fd, func(dup int) error {
		var err error
		v, err = unix.GetsockoptInt(dup, unix.IPPROTO_UDP, unix.UDP_CORK)
		if err != nil {
			return fmt.Errorf("getsockopt UDP_CORK of pid %d fd %d: %w", pid, fd, err)
		}
		return nil
	})
	return v != 0, err
}

// procSkipPidfdGetfd turns a failure of pidfd_getfd into the skip a check
// reports, or nil when it is another failure.
func procSkipPidfdGetfd(err error, what string, ev []string) []reports.Finding {
	switch {
	case errors.Is(err, unix.ENOSYS):
		return []reports.Finding{{Status: reports.Skip, Evidence: ev, Summary: what + " not checked",
			Reason: "this kernel has no pidfd_getfd (Linux 5.6 and later) to read a socket's options through"}}
	case errors.Is(err, unix.EPERM):
		return []reports.Finding{{Status: reports.Skip, Evidence: ev, Summary: what + " not checked",
			Reason: "pidfd_getfd was refused (it needs ptrace access to the tree): run kata-cr as root"}}
	}
	return nil
}

// checkProcUDPCork finds UDP sockets with UDP_CORK set. CRIU refuses every
// one of them, whether data waits in it or not ("Can't dump corked dgram
// socket"). The cork is a socket option only the socket answers for, so
// the check reads it from a copy of the holder's fd.
func checkProcUDPCork(_ context.Context, t *procTree) []reports.Finding {
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procFDError(err)
	}
	socks, unreadable := procTreeUDP(t, fdsOf)
	gone := procVanished(t, vanished)
	if len(socks) == 0 {
		if len(unreadable) > 0 {
			return []reports.Finding{{Status: reports.Warn, Evidence: append(unreadable, gone...),
				Summary: "could not read every UDP table of the tree's network namespaces"}}
		}
		return []reports.Finding{{Status: reports.Pass, Evidence: gone, Summary: "the tree holds no UDP sockets"}}
	}
	if !t.fs.Live() {
		return []reports.Finding{{Status: reports.Skip, Summary: "UDP_CORK not checked",
			Reason: fmt.Sprintf("the tree holds %s; UDP_CORK is read from the live socket, not from a /proc fixture at %s", procN(len(socks), "UDP socket", "UDP sockets"), t.fs.Root())}}
	}
	var corked, ev []string
	var failed error
	for _, s := range socks {
		line := fmt.Sprintf("%s: %s socket %s -> %s (inode %d)", s.Label, s.Table, s.Conn.Local, s.Conn.Remote, s.Conn.Inode)
		c, err := procUDPCorked(s.PID, s.FD)
		switch {
		case err != nil:
			failed = errors.Join(failed, err)
			ev = append(ev, line+": "+err.Error())
		case c:
			corked = append(corked, fmt.Sprintf("%x", s.Conn.Inode))
			ev = append(ev, line+": UDP_CORK set")
		default:
			ev = append(ev, line+": not corked")
		}
	}
	ev = append(append(ev, unreadable...), gone...)
	if len(corked) > 0 {
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("%s with UDP_CORK set: CRIU: \"Can't dump corked dgram socket %s\"", procN(len(corked), "UDP socket", "UDP sockets"), strings.Join(corked, ", ")),
			Fix: &reports.Fix{Description: "have the workload clear UDP_CORK (which sends what it holds) before the dump: " +
				"CRIU refuses a corked UDP socket even with nothing queued, and no option changes that"}}}
	}
	if failed != nil {
		if skip := procSkipPidfdGetfd(failed, "UDP_CORK", ev); skip != nil {
			return skip
		}
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: fmt.Sprintf("could not read UDP_CORK of every UDP socket of the tree (%d)", len(socks))}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("no UDP socket of the tree is corked (%s)", procN(len(socks), "UDP socket", "UDP sockets"))}}
}
