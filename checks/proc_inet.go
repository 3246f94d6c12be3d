package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

// inetRemedy is kata-cr's way to a CRIU that dumps inet sockets on a
// kernel from 6.16 on.
const inetRemedy = "use CRIU 4.2 or later (e.g. kata-cr --criu-suite forky)"

// inetSocketsCheck is criu.inet-sockets: the CRIU/kernel pairs of the
// compatibility table that cannot dump a TCP or UDP socket, judged
// against the sockets the tree really holds. Packet sockets count too:
// CRIU reads the same socket options of them (seen: CRIU 4.1.1 on kernel
// 7.3 fails on an AF_PACKET socket with "Can't get 1:16 opt").
func inetSocketsCheck() Check {
	return Check{ID: "criu.inet-sockets", Category: "criu", Level: reports.Required, Needs: []Need{NeedPID, NeedCRIU},
		Title: "criu can dump the tree's TCP, UDP and packet sockets on this kernel", Run: checkCRIUInetSockets}
}

// procInetSocket is a TCP or UDP socket the tree holds.
type procInetSocket struct {
	table   string
	conn    procTCPConn
	holders []string
}

// procInetSockets lists the TCP and UDP sockets (any state) the tree
// holds, from the tables of each of its network namespaces; unreadable
// says which tables could not be read.
func procInetSockets(t *procTree, ss procSockets) (out []procInetSocket, unreadable []string) {
	unreadable = procReadSockTables(t, ss, []string{"tcp", "tcp6", "udp", "udp6"}, func(_, table string, c procTCPConn) {
		out = append(out, procInetSocket{table: table, conn: c, holders: ss.held[c.Inode]})
	})
	return out, unreadable
}

// checkCRIUInetSockets predicts the dump failure of a CRIU/kernel pair
// that cannot dump inet sockets (kernel.CompatIssue.InetSockets) for a tree
// that holds any; the compatibility row alone (criu.kernel-compat) only
// warns, as it hits some workloads only.
func checkCRIUInetSockets(ctx context.Context, env *Env) []reports.Finding {
	t, skip := procTreeOrSkip(ctx, env)
	if skip != nil {
		return skip
	}
	if env.KernelRelease == "" {
		return []reports.Finding{{Status: reports.Skip, Reason: "kernel release unknown"}}
	}
	v, err := env.CRIU.Version(ctx)
	if err != nil {
		return []reports.Finding{{Status: reports.Skip, Reason: "criu version unknown (see criu.binary): " + err.Error()}}
	}
	pair := fmt.Sprintf("criu %s on kernel %s", v, env.KernelRelease)
	var issues []kernel.CompatIssue
	for _, is := range kernel.CompatIssues(env.KernelRelease, v.Int()) {
		if is.InetSockets {
			issues = append(issues, is)
		}
	}
	ss, gone, done := procTreeSockets(t)
	if done != nil {
		return done
	}
	socks, unreadable := procInetSockets(t, ss)
	packets, punreadable := procPacketSockets(t, ss)
	socks = append(socks, packets...)
	unreadable = append(unreadable, punreadable...)
	ev := []string{pair}
	for _, s := range socks {
		state := procTCPStates[s.conn.State]
		switch {
		case strings.HasPrefix(s.table, "udp"):
			state = "udp"
		case s.table == "packet":
			ev = append(ev, fmt.Sprintf("%s: packet socket (inode %d)", strings.Join(s.holders, ", "), s.conn.Inode))
			continue
		}
		ev = append(ev, fmt.Sprintf("%s: %s %s %s (inode %d)", strings.Join(s.holders, ", "), s.table, s.conn.Local, strings.ToLower(state), s.conn.Inode))
	}
	ev = append(append(ev, unreadable...), gone...)
	n := procN(len(socks), "TCP, UDP or packet socket", "TCP, UDP or packet sockets")
	switch {
	case len(socks) == 0 && len(unreadable) > 0:
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: "could not read every TCP, UDP and packet table of the tree's network namespaces"}}
	case len(socks) == 0:
		return []reports.Finding{{Status: reports.Pass, Evidence: ev, Summary: "the tree holds no TCP, UDP or packet socket"}}
	case len(issues) == 0:
		return []reports.Finding{{Status: reports.Pass, Evidence: ev,
			Summary: fmt.Sprintf("%s in the tree: %s dumps them", n, pair)}}
	}
	is := issues[0]
	ev = append(ev, pair+": "+is.ID, "criu fails with: "+is.Signature, "source: "+is.Source, "also: "+is.Fix)
	return []reports.Finding{{Status: reports.Fail, Evidence: ev,
		Summary: fmt.Sprintf("%s in the tree, and %s cannot dump any: %s: CRIU: %q", n, pair, is.Summary, is.Signature),
		Fix:     &reports.Fix{Description: inetRemedy + "; no CRIU option helps"}}}
}

// procPacketSockets lists the packet sockets the tree holds, from the
// packet table of each of its network namespaces (its last column is the
// socket's inode).
func procPacketSockets(t *procTree, ss procSockets) (out []procInetSocket, unreadable []string) {
	for _, ns := range ss.order {
		p := t.fs.Path(ss.netns[ns], "net", "packet")
		data, err := os.ReadFile(p)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				unreadable = append(unreadable, fmt.Sprintf("%s: %v", p, err))
			}
			continue
		}
		for _, ino := range procParsePacket(data) {
			if holders, ok := ss.held[ino]; ok {
				out = append(out, procInetSocket{table: "packet", conn: procTCPConn{Inode: ino}, holders: holders})
			}
		}
	}
	return out, unreadable
}

// procParsePacket reads the inodes of /proc/net/packet: a header line,
// then one socket a line, the inode last.
func procParsePacket(data []byte) []uint64 {
	var out []uint64
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 {
			continue
		}
		if ino, err := strconv.ParseUint(f[len(f)-1], 10, 64); err == nil && ino != 0 {
			out = append(out, ino)
		}
	}
	return out
}
