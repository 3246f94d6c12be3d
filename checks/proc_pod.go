package checks

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/reports"
)

// PodMember is another container of the pod the checked tree runs in: its
// name and its init's pid.
type PodMember struct {
	Name string
	PID  int
}

// PodUnixPeer is a unix stream socket of the checked tree whose other end
// is held in another container of the pod.
type PodUnixPeer struct {
	// Inode is the tree's socket: the inode CRIU looks up among the
	// external sockets (--external unix[INODE]) and names the restored
	// socket by (--inherit-fd fd[N]:socket:[INODE]).
	Inode   uint32
	Holders []string
	// PeerInode is the other end, held in container PeerContainer.
	PeerInode     uint32
	PeerContainer string
	PeerPID       int
	// Address is where the peer is bound in its container (an accepted
	// connection shares its listening socket's path); "" for none, and
	// then no replacement can be connected on restore.
	Address string
	// RQueue and WQueue are the bytes waiting in the tree's socket and
	// those it wrote that the peer has not read.
	RQueue, WQueue uint32
}

// Queued is the data in the connection, lost with an external socket.
func (p PodUnixPeer) Queued() uint32 { return p.RQueue + p.WQueue }

// podExternalUnixFrom is the first CRIU that dumps a unix socket declared
// external by inode (--external unix[INODE]: "Add dumping of unnamed unix
// sockets", CRIU 1.7).
var podExternalUnixFrom = criu.Version{Major: 1, Minor: 7}

// PodCheckID is the ID of the check of unix connections to the pod's
// other containers.
const PodCheckID = "process.unix-pod-peer"

// PodChecks are the checks of a tree that runs in a container of a pod
// besides others: members gives the pod's other containers when the
// checks run, and seen, when not nil, is told the connections found (the
// job that hands CRIU their replacements on restore needs them). together
// says the members are dumped with the tree (the whole pod): each
// connection is then external on both sides and restored as a new
// socketpair, so its peer needs no address.
func PodChecks(members func() []PodMember, seen func([]PodUnixPeer), together bool) []Check {
	return []Check{procEnvCheck(PodCheckID, reports.Required, "unix connections to the pod's other containers (--external unix[...], --inherit-fd)",
		func(ctx context.Context, env *Env, t *procTree) []reports.Finding {
			peers, skip := podUnixPeersOf(ctx, env, t, members())
			if skip != nil {
				return skip
			}
			if seen != nil {
				seen(peers)
			}
			v, vline := procCRIUVersion(ctx, env)
			return podPeerFindings(peers, v, vline, together)
		})}
}

// podUnixPeersOf reads the tree's sockets, unix_diag and the sockets the
// members hold; skip is what the check reports instead when it cannot.
func podUnixPeersOf(ctx context.Context, env *Env, t *procTree, members []PodMember) ([]PodUnixPeer, []reports.Finding) {
	ss, _, done := procTreeSockets(t)
	if done != nil {
		return nil, done
	}
	if !t.fs.Live() {
		return nil, []reports.Finding{{Status: reports.Skip, Summary: "unix connections to the pod not checked",
			Reason: "the peers of unix sockets come from the kernel's unix_diag, which cannot be asked about a /proc fixture at " + t.fs.Root()}}
	}
	if len(ss.held) == 0 {
		return nil, nil
	}
	socks, err := procTreeUnixDiag(ctx, t, ss)
	if errors.Is(err, errNoUnixDiag) || (err != nil && len(socks) == 0) {
		return nil, []reports.Finding{{Status: reports.Skip, Summary: "unix connections to the pod not checked",
			Reason: "cannot ask unix_diag (see process.unix-sockets): " + err.Error()}}
	}
	held := map[uint32]PodMember{}
	for _, m := range members {
		mt, err := procLoadTree(&Env{ProcRoot: env.ProcRoot, PID: m.PID})
		if err != nil {
			return nil, []reports.Finding{{Status: reports.Skip, Summary: "unix connections to the pod not checked",
				Reason: fmt.Sprintf("cannot read container %s (pid %d): %v", m.Name, m.PID, err)}}
		}
		ms, _, done := procTreeSockets(mt)
		if done != nil {
			return nil, []reports.Finding{{Status: reports.Skip, Summary: "unix connections to the pod not checked",
				Reason: fmt.Sprintf("cannot read the sockets of container %s (pid %d): %s", m.Name, m.PID, done[0].Summary)}}
		}
		for ino := range ms.held {
			held[uint32(ino)] = m
		}
	}
	ext, _, _ := procJudgeUnix(ss.held, socks)
	return podJudgeUnix(ext, held), nil
}

// podJudgeUnix keeps the stream sockets of ext whose peer a member holds.
func podJudgeUnix(ext []procUnixExt, held map[uint32]PodMember) []PodUnixPeer {
	var out []PodUnixPeer
	for _, e := range ext {
		m, ok := held[e.Sock.Peer]
		if !ok || e.Sock.Type == unix.SOCK_DGRAM {
			continue
		}
		out = append(out, PodUnixPeer{Inode: e.Sock.Inode, Holders: e.Holders, PeerInode: e.Sock.Peer,
			PeerContainer: m.Name, PeerPID: m.PID, Address: e.PeerSk.Name, RQueue: e.Sock.RQueue, WQueue: e.Sock.WQueue})
	}
	return out
}

// podPeerFindings judges the connections to the pod for CRIU v: a plain
// dump fails on each ("External socket is used"); declared external and
// handed a new connection on restore, the tree carries on in the same pod,
// without the data queued in the connection at the dump.
func podPeerFindings(peers []PodUnixPeer, v criu.Version, vline string, together bool) []reports.Finding {
	if len(peers) == 0 {
		return []reports.Finding{{Status: reports.Pass, Summary: "no unix socket of the tree is connected to another container of the pod"}}
	}
	var ev, lost, noAddr []string
	var set criuopt.Set
	for _, p := range peers {
		line := fmt.Sprintf("%s: unix stream socket inode %d, peer inode %d in container %s (pid %d)", strings.Join(p.Holders, ", "), p.Inode, p.PeerInode, p.PeerContainer, p.PeerPID)
		if p.Address != "" {
			line += ", bound to " + p.Address + " there"
		}
		ev = append(ev, fmt.Sprintf("%s; queued: %d bytes to read, %d written and unread", line, p.RQueue, p.WQueue))
		set.UnixSockets = append(set.UnixSockets, p.Inode)
		if p.Queued() > 0 {
			lost = append(lost, fmt.Sprintf("%d bytes (socket inode %d)", p.Queued(), p.Inode))
		}
		if p.Address == "" && !together {
			noAddr = append(noAddr, fmt.Sprint(p.Inode))
		}
	}
	ev = append(ev, vline)
	n := procN(len(peers), "unix stream socket", "unix stream sockets")
	f := reports.Finding{Status: reports.Fail, Evidence: ev,
		Summary: fmt.Sprintf("%s connected to another container of the pod: CRIU: \"External socket is used\" (and with --ext-unix-sk \"Can't dump half of stream unix connection\")", n)}
	switch {
	case !v.IsZero() && v.Int() < podExternalUnixFrom.Int():
		f.Fix = &reports.Fix{Description: fmt.Sprintf("CRIU %s cannot declare a unix socket external by inode: use CRIU %s or later, or checkpoint the whole pod", v, podExternalUnixFrom)}
	case len(noAddr) > 0:
		f.Fix = &reports.Fix{Description: "the peer of socket inode " + strings.Join(noAddr, ", ") + " has no address to connect a replacement to on restore (a socketpair, or an unbound socket): checkpoint the whole pod instead"}
	case together:
		f.Fix = &reports.Fix{CRIU: set, AutoFixable: true, Fixer: FixerIDCRIUOption,
			Description: "declare each end external in its container's dump (" + set.DumpLine() + " here: CRIU looks up the tree's own socket inode) and restore the containers together, the two ends handed a new socketpair with --inherit-fd fd[N]:socket:[INODE]"}
	default:
		f.Fix = &reports.Fix{CRIU: set, AutoFixable: true, Fixer: FixerIDCRIUOption,
			Description: "declare the tree's end external (" + set.DumpLine() + ": CRIU looks up the tree's own socket inode) and restore in the same pod with --inherit-fd fd[N]:socket:[INODE], N a new socket connected to the peer's address in its container; a fresh guest has no peer: checkpoint the whole pod for that"}
	}
	if len(lost) > 0 {
		f.Loses = "the data queued in the connection to the pod at the dump (" + strings.Join(lost, ", ") + "): it is in the external end, which CRIU does not dump"
	}
	return []reports.Finding{f}
}
