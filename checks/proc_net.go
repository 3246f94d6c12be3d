package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
)

// procSockets is what the tree holds in sockets: socket inodes with their
// holders, and one process per network namespace to read tables through.
type procSockets struct {
	held  map[uint64][]string // inode -> "pid N (comm) fd F"
	netns map[string]int      // ns/net link -> a pid of the tree in it
	order []string            // netns links in tree order
}

func procSocketsOf(t *procTree, fdsOf map[*treeProc][]proc.FD) procSockets {
	s := procSockets{held: map[uint64][]string{}, netns: map[string]int{}}
	for _, p := range t.Procs {
		fds := fdsOf[p]
		for _, fd := range fds {
			if ino, ok := proc.SocketInode(fd.Target); ok {
				s.held[ino] = append(s.held[ino], fmt.Sprintf("%s fd %d", p.label(), fd.FD))
			}
		}
		if len(fds) == 0 {
			continue
		}
		ns, err := t.nsLink(p.PID, "net")
		if err != nil {
			continue
		}
		if _, ok := s.netns[ns]; !ok {
			s.netns[ns] = p.PID
			s.order = append(s.order, ns)
		}
	}
	return s
}

// procTreeSockets reads the sockets the tree holds, with the evidence
// lines of processes that exited meanwhile; done is what the check reports
// instead when the fds cannot be read.
func procTreeSockets(t *procTree) (ss procSockets, gone []string, done []reports.Finding) {
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procSockets{}, nil, procFDError(err)
	}
	return procSocketsOf(t, fdsOf), procVanished(t, vanished), nil
}

// procUnixExt is a unix socket of the tree whose peer is outside it.
type procUnixExt struct {
	Sock    procUnixSock
	Holders []string
	PeerSk  procUnixSock // the peer, when unix_diag listed it
}

// procJudgeUnix sorts the held unix sockets: external ones (peer not held
// by the tree), and those unix_diag did not list at all.
func procJudgeUnix(held map[uint64][]string, socks map[uint32]procUnixSock) (ext []procUnixExt, unresolved []uint64, internal int) {
	for _, ino := range procSortedInodes(held) {
		s, ok := socks[uint32(ino)]
		if !ok {
			unresolved = append(unresolved, ino)
			continue
		}
		if s.Peer == 0 {
			internal++
			continue
		}
		if _, ok := held[uint64(s.Peer)]; ok {
			internal++
			continue
		}
		ext = append(ext, procUnixExt{Sock: s, Holders: held[ino], PeerSk: socks[s.Peer]})
	}
	return ext, unresolved, internal
}

// checkProcUnix finds unix sockets connected to peers outside the tree.
// CRIU dumps both ends of a connection from the tree; for an outside
// datagram peer it needs --ext-unix-sk ("External socket is used"), and an
// outside stream peer cannot be dumped at all ("Can't dump half of stream
// unix connection") unless the socket is declared external and a
// replacement is passed on restore. The peers come from the kernel's
// unix_diag (NETLINK_SOCK_DIAG, UDIAG_SHOW_PEER): /proc has no peers.
func checkProcUnix(ctx context.Context, t *procTree) []reports.Finding {
	ss, gone, done := procTreeSockets(t)
	if done != nil {
		return done
	}

	// Which held sockets are unix ones, from /proc/PID/net/unix; this works
	// on fixture trees too.
	isUnix := map[uint64]procUnixEntry{}
	for _, ns := range ss.order {
		data, err := os.ReadFile(t.fs.Path(ss.netns[ns], "net", "unix"))
		if err != nil {
			continue
		}
		ents, err := procParseNetUnix(data)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if _, ok := ss.held[e.Inode]; ok {
				isUnix[e.Inode] = e
			}
		}
	}

	if len(ss.held) == 0 {
		return []reports.Finding{{Status: reports.Pass, Evidence: gone, Summary: "the tree holds no sockets"}}
	}
	if !t.fs.Live() {
		if len(isUnix) == 0 {
			return []reports.Finding{{Status: reports.Pass, Evidence: gone,
				Summary: fmt.Sprintf("the tree holds no unix sockets (%s, none in net/unix)", procN(len(ss.held), "socket", "sockets"))}}
		}
		return []reports.Finding{{Status: reports.Skip, Summary: "unix socket peers not checked",
			Reason: fmt.Sprintf("the tree holds %d unix sockets; their peers come from the kernel's unix_diag, which cannot be asked about a /proc fixture at %s", len(isUnix), t.fs.Root())}}
	}
	socks, diagErr := procTreeUnixDiag(ctx, t, ss)
	if errors.Is(diagErr, errNoUnixDiag) || (diagErr != nil && len(socks) == 0) {
		reason := diagErr.Error()
		if len(isUnix) == 0 {
			return []reports.Finding{{Status: reports.Warn, Evidence: gone,
				Summary: fmt.Sprintf("cannot look up socket peers (%s held, none listed in net/unix): %s", procN(len(ss.held), "socket", "sockets"), reason),
				Fix:     &reports.Fix{Description: "load unix_diag (modprobe unix_diag): CRIU needs it too"}}}
		}
		return []reports.Finding{{Status: reports.Warn, Evidence: gone,
			Summary: fmt.Sprintf("cannot see the peers of %s: %s", procN(len(isUnix), "unix socket", "unix sockets"), reason),
			Fix:     &reports.Fix{Description: "load unix_diag (modprobe unix_diag): CRIU needs it too"}}}
	}

	// Only unix sockets matter here: drop held inodes that are not unix.
	heldUnix := map[uint64][]string{}
	for ino, h := range ss.held {
		if _, ok := socks[uint32(ino)]; ok {
			heldUnix[ino] = h
		} else if _, ok := isUnix[ino]; ok {
			heldUnix[ino] = h
		}
	}
	ext, unresolved, internal := procJudgeUnix(heldUnix, socks)
	var ev []string
	var stream criuopt.Set
	var dgram []procUnixExt
	for _, e := range ext {
		line := fmt.Sprintf("%s: unix %s socket inode %d, %s, peer inode %d outside the tree",
			strings.Join(e.Holders, ", "), procUnixType(e.Sock.Type), e.Sock.Inode, procUnixState(e.Sock.State), e.Sock.Peer)
		if e.PeerSk.Name != "" {
			line += " (bound to " + e.PeerSk.Name + ")"
		}
		ev = append(ev, line)
		if e.Sock.Type == unix.SOCK_DGRAM {
			dgram = append(dgram, e)
		} else {
			stream.UnixSockets = append(stream.UnixSockets, e.Sock.Inode)
		}
	}
	for _, ino := range unresolved {
		ev = append(ev, fmt.Sprintf("%s: unix socket inode %d not listed by unix_diag in any namespace of the tree", strings.Join(heldUnix[ino], ", "), ino))
	}
	ev = append(ev, fmt.Sprintf("%s held, %d with no peer or a peer inside the tree", procN(len(heldUnix), "unix socket", "unix sockets"), internal))
	if diagErr != nil {
		ev = append(ev, "unix_diag: "+diagErr.Error())
	}
	ev = append(ev, gone...)

	var out []reports.Finding
	if n := len(stream.UnixSockets); n > 0 {
		out = append(out, reports.Finding{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("%s with the peer outside the tree: CRIU: \"Can't dump half of stream unix connection\"", procN(n, "unix stream socket", "unix stream sockets")),
			Fix: &reports.Fix{
				Description: "close the connection before dumping, or declare each socket external (" + stream.DumpLine() +
					") and on restore hand CRIU a connected replacement with --inherit-fd fd[N]:socket:[INODE]; --ext-unix-sk does not cover stream sockets",
				CRIU: stream}})
	}
	if len(dgram) > 0 {
		out = append(out, reports.Finding{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("%s with the peer outside the tree: CRIU: \"External socket is used. Consider using --ext-unix-sk option.\"", procN(len(dgram), "unix datagram socket", "unix datagram sockets")),
			Fix: &reports.Fix{Description: "dump and restore with --ext-unix-sk: the restored socket reconnects to the peer's address",
				CRIU: criuopt.Set{ExtUnixSk: true}, Restore: criuopt.Set{ExtUnixSk: true},
				AutoFixable: true, Fixer: FixerIDCRIUOption}})
	}
	if len(out) > 0 {
		return out
	}
	if len(unresolved) > 0 {
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: fmt.Sprintf("%s of the tree not listed by unix_diag: peers unknown", procN(len(unresolved), "unix socket", "unix sockets"))}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("no unix socket of the tree has a peer outside it (%s)", procN(len(heldUnix), "unix socket", "unix sockets"))}}
}

type procUnixDiagKey struct{}

// procTreeUnixDiag asks unix_diag, once per Runner.Run, about the unix
// sockets of every network namespace the tree uses and of kata-cr's own:
// a socket lives in the namespace it was created in, which need not be its
// holder's. The error joins what went wrong with some namespaces.
func procTreeUnixDiag(ctx context.Context, t *procTree, ss procSockets) (map[uint32]procUnixSock, error) {
	return memoize(ctx, procUnixDiagKey{}, func() (map[uint32]procUnixSock, error) {
		socks := map[uint32]procUnixSock{}
		selfNet, _ := t.fs.SelfNS("net")
		asked := map[string]bool{}
		var diagErr error
		ask := func(ns, path string) {
			if asked[ns] {
				return
			}
			asked[ns] = true
			m, err := procUnixDiag(path)
			if err != nil {
				diagErr = errors.Join(diagErr, err)
				return
			}
			for k, v := range m {
				socks[k] = v
			}
		}
		for _, ns := range ss.order {
			path := t.fs.Path(ss.netns[ns], "ns", "net")
			if ns == selfNet {
				path = ""
			}
			ask(ns, path)
		}
		ask(selfNet, "")
		return socks, diagErr
	})
}

func procUnixState(s uint8) string {
	if n, ok := procTCPStates[int(s)]; ok {
		return strings.ToLower(n)
	}
	return fmt.Sprintf("state %d", s)
}

// checkProcTCP finds established TCP connections, which CRIU dumps only
// with --tcp-established ("Connected TCP socket, consider using
// --tcp-established option"). Listening sockets need nothing. CRIU locks
// the connections it dumps with the network lock (planNetLock); without
// one that works the dump fails however it is asked ("Iptables
// configuration failed").
func checkProcTCP(ctx context.Context, env *Env, t *procTree) []reports.Finding {
	ss, gone, done := procTreeSockets(t)
	if done != nil {
		return done
	}
	if len(ss.held) == 0 {
		return []reports.Finding{{Status: reports.Pass, Evidence: gone, Summary: "the tree holds no sockets"}}
	}
	var ev []string
	connected, listening := 0, 0
	unreadable := procReadSockTables(t, ss, []string{"tcp", "tcp6"}, func(ns, _ string, c procTCPConn) {
		holders := ss.held[c.Inode]
		switch c.State {
		case 10:
			listening++
			ev = append(ev, fmt.Sprintf("%s: listening on %s (inode %d)", strings.Join(holders, ", "), c.Local, c.Inode))
		case 7:
		default:
			connected++
			ev = append(ev, fmt.Sprintf("%s: %s -> %s %s (inode %d, %s)", strings.Join(holders, ", "), c.Local, c.Remote, procTCPStates[c.State], c.Inode, ns))
		}
	})
	ev = append(ev, gone...)
	if connected > 0 {
		if !t.fs.Live() {
			// The lock is this machine's, not the fixture's.
			return procTCPFindings(connected, ev, netLock{Evidence: []string{"network lock: not chosen for a /proc fixture"}}, false)
		}
		return procTCPFindings(connected, ev, planNetLock(ctx, env), true)
	}
	if len(unreadable) > 0 {
		return []reports.Finding{{Status: reports.Warn, Evidence: append(ev, unreadable...),
			Summary: "could not read every TCP table of the tree's network namespaces"}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("no established TCP connection in the tree (%s, which CRIU dumps as they are)", procN(listening, "listening socket", "listening sockets"))}}
}

// procReadSockTables reads the socket tables of /proc/PID/net named
// tables (tcp, udp6...: they share a layout) in every network namespace of
// the tree, and calls each for every socket of them the tree holds. It
// returns what it could not read.
func procReadSockTables(t *procTree, ss procSockets, tables []string, each func(ns, table string, c procTCPConn)) (unreadable []string) {
	for _, ns := range ss.order {
		for _, table := range tables {
			p := t.fs.Path(ss.netns[ns], "net", table)
			data, err := os.ReadFile(p)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					unreadable = append(unreadable, fmt.Sprintf("%s: %v", p, err))
				}
				continue
			}
			conns, err := procParseTCP(data)
			if err != nil {
				unreadable = append(unreadable, err.Error())
				continue
			}
			for _, c := range conns {
				if _, ok := ss.held[c.Inode]; ok && c.Inode != 0 {
					each(ns, table, c)
				}
			}
		}
	}
	return unreadable
}

// procSortedInodes lists the socket inodes of held, ascending.
func procSortedInodes(held map[uint64][]string) []uint64 {
	return slices.Sorted(maps.Keys(held))
}

// procTCPFindings are the findings for established connections: the
// connections themselves (--tcp-established), and, when judged, the lock
// CRIU holds them with: a second finding when CRIU's default lock,
// iptables, is missing here, fixed with the nftables lock this CRIU has or
// by nothing. Two findings, so that CRIU confirms each (--prove).
func procTCPFindings(connected int, ev []string, lock netLock, judged bool) []reports.Finding {
	f := reports.Finding{Status: reports.Fail, Evidence: append(slices.Clone(ev), lock.Evidence...),
		Summary: fmt.Sprintf("%s in the tree: CRIU: \"Connected TCP socket, consider using --tcp-established option\"", procN(connected, "established TCP connection", "established TCP connections")),
		Fix: &reports.Fix{Description: "dump and restore with --tcp-established (CRIU repairs the connections; the peer must keep them and the addresses must be the same on restore)",
			CRIU: criuopt.Set{TCPEstablished: true}, Restore: criuopt.Set{TCPEstablished: true},
			AutoFixable: true, Fixer: FixerIDCRIUOption}}
	switch {
	case !judged:
		f.Fix.Description += ", with a network lock that works where CRIU runs (--network-lock nftables, or iptables)"
		return []reports.Finding{f}
	case lock.Method == "":
		return []reports.Finding{f, {Status: reports.Fail, Evidence: lock.Evidence,
			Summary: "no network lock to dump TCP connections with: this CRIU has no nftables lock and there is no iptables-restore: CRIU: \"Iptables configuration failed\"",
			Fix: &reports.Fix{Description: "use a CRIU built with libnftables on a kernel with nf_tables (criu check --feature " + criuFeatureNFTablesLock +
				"), or put iptables in the guest (apt-get install iptables), or close the connections before dumping"}}}
	case lock.DefaultWorks:
		// CRIU's default would do; the plan names the lock it uses.
		f.Fix.CRIU.NetworkLock = lock.Method
		f.Fix.Description += "; the connections are locked with --network-lock " + string(lock.Method)
		return []reports.Finding{f}
	}
	return []reports.Finding{f, {Status: reports.Fail, Evidence: lock.Evidence,
		Summary: "the TCP connections need a network lock, and CRIU's default one, iptables, is not here: CRIU: \"Iptables configuration failed\"",
		Fix: &reports.Fix{Description: "dump with --network-lock " + string(lock.Method) + ", which this CRIU supports (criu check --feature " + criuFeatureNFTablesLock + ")",
			CRIU: criuopt.Set{NetworkLock: lock.Method}, AutoFixable: true, Fixer: FixerIDCRIUOption}}}
}
