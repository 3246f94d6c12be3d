package checks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// procUnixInflightFrom is the first CRIU release that refuses a listening
// unix socket whose queued (in-flight) connection has sent data, or whose
// client has closed: earlier releases dump the connection and drop what
// it sent (CRIU commit dca55d281, "fail migration if data was sent to an
// in-flight socket").
var procUnixInflightFrom = criu.Version{Major: 3, Minor: 18}

// procUnixQueue is what waits on the listening unix sockets of a tree.
type procUnixQueue struct {
	// sent are in-flight clients of the tree with data written, closed
	// the connections whose client is gone, outside those whose client is
	// not in the tree; ok the clients of the tree that sent nothing.
	sent, closed, outside, ok int
	// first is the inode CRIU names in its error.
	first uint32
	ev    []string
}

// procJudgeUnixQueues looks at the connections waiting on each listening
// unix socket the tree holds (unix_diag's icons: the clients' inodes).
func procJudgeUnixQueues(held map[uint64][]string, socks map[uint32]procUnixSock) procUnixQueue {
	var q procUnixQueue
	for _, ino := range procSortedInodes(held) {
		l, ok := socks[uint32(ino)]
		if !ok || !procUnixListening(l) || len(l.Icons) == 0 {
			continue
		}
		name := fmt.Sprintf("listening unix socket inode %d", l.Inode)
		if l.Name != "" {
			name += " on " + l.Name
		}
		for _, c := range l.Icons {
			where := fmt.Sprintf("%s: %s", strings.Join(held[ino], ", "), name)
			cs, inTree := socks[c], held[uint64(c)] != nil
			switch {
			case c == 0:
				q.closed++
				if q.first == 0 {
					q.first = l.Inode
				}
				q.ev = append(q.ev, where+": a queued connection whose client has closed")
			case !inTree:
				q.outside++
				q.ev = append(q.ev, fmt.Sprintf("%s: a queued connection from socket inode %d outside the tree: it is not dumped", where, c))
			case cs.WQueue > 0:
				q.sent++
				if q.first == 0 {
					q.first = c
				}
				q.ev = append(q.ev, fmt.Sprintf("%s: a queued connection from %s (socket inode %d) that sent data, not accepted yet (write queue %d bytes)", where, strings.Join(held[uint64(c)], ", "), c, cs.WQueue))
			default:
				q.ok++
				q.ev = append(q.ev, fmt.Sprintf("%s: a queued connection from %s (socket inode %d), nothing sent: CRIU connects it again", where, strings.Join(held[uint64(c)], ", "), c))
			}
		}
	}
	return q
}

// checkProcUnixQueued finds listening unix sockets with connections that
// wait to be accepted. CRIU saves such a connection by connecting its
// client again on restore: what the client sent is not saved. CRIU 3.18
// and later refuse the dump then ("Non-empty write queue on an in-flight
// socket", "Found a closed in-flight socket"); earlier ones dump it and
// the restored server never reads the request. So the prediction depends
// on the CRIU that dumps (CRIU is the judge).
func checkProcUnixQueued(ctx context.Context, env *Env, t *procTree) []reports.Finding {
	ss, gone, done := procTreeSockets(t)
	if done != nil {
		return done
	}
	if len(ss.held) == 0 {
		return []reports.Finding{{Status: reports.Pass, Evidence: gone, Summary: "the tree holds no sockets"}}
	}
	if !t.fs.Live() {
		return []reports.Finding{{Status: reports.Skip, Summary: "queued unix connections not checked",
			Reason: "the queues of listening sockets come from the kernel's unix_diag, which cannot be asked about a /proc fixture at " + t.fs.Root()}}
	}
	socks, err := procTreeUnixDiag(ctx, t, ss)
	if errors.Is(err, errNoUnixDiag) || (err != nil && len(socks) == 0) {
		return []reports.Finding{{Status: reports.Skip, Summary: "queued unix connections not checked",
			Reason: "cannot ask unix_diag (see process.unix-sockets): " + err.Error()}}
	}
	q := procJudgeUnixQueues(ss.held, socks)
	v, vline := procCRIUVersion(ctx, env)
	return procUnixQueueFindings(q, v, vline, gone)
}

// procUnixQueueFindings judges the queues for CRIU v.
func procUnixQueueFindings(q procUnixQueue, v criu.Version, vline string, gone []string) []reports.Finding {
	ev := append(append(slices.Clone(q.ev), vline), gone...)
	lost := q.sent + q.closed
	n := procN(lost, "queued unix connection", "queued unix connections")
	accept := "have the server accept its queued connections before the dump (or the clients connect after it)"
	switch {
	case lost > 0 && !v.IsZero() && v.Int() >= procUnixInflightFrom.Int():
		msg := fmt.Sprintf("Non-empty write queue on an in-flight socket %#x", q.first)
		if q.sent == 0 {
			msg = fmt.Sprintf("Found a closed in-flight socket to %#x", q.first)
		}
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("%s whose data CRIU cannot save: CRIU %s refuses it: \"%s\"", n, v, msg),
			Fix:     &reports.Fix{Description: accept + ": CRIU saves a queued connection without what its client sent, and refuses to lose it"}}}
	case lost > 0 && !v.IsZero():
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: fmt.Sprintf("%s with data: CRIU %s dumps them without it: the restored server accepts the connection and never reads the request (CRIU %s and later refuse the dump instead)", n, v, procUnixInflightFrom),
			Loses:   "what the clients of the queued unix connections sent before the dump",
			Fix:     &reports.Fix{Description: accept + ", or use CRIU " + procUnixInflightFrom.String() + " or later, which refuses rather than loses it"}}}
	case lost > 0:
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: fmt.Sprintf("%s with data: CRIU before %s dumps them without it, later CRIU refuses the dump", n, procUnixInflightFrom),
			Loses:   "what the clients of the queued unix connections sent before the dump, with a CRIU before " + procUnixInflightFrom.String(),
			Fix:     &reports.Fix{Description: accept}}}
	case q.outside > 0:
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: fmt.Sprintf("%s from clients outside the tree: CRIU does not dump them, and those clients lose their connection", procN(q.outside, "queued unix connection", "queued unix connections")),
			Loses:   "the queued connections of clients outside the tree",
			Fix:     &reports.Fix{Description: accept}}}
	}
	s := "no listening unix socket of the tree has connections waiting"
	if q.ok > 0 {
		s = fmt.Sprintf("%s from the tree that sent nothing: CRIU connects them again", procN(q.ok, "queued unix connection", "queued unix connections"))
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev, Summary: s}}
}

// procUnixListening reports whether a unix_diag state is TCP_LISTEN.
func procUnixListening(s procUnixSock) bool { return s.State == 10 && s.Type != unix.SOCK_DGRAM }
