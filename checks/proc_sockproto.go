package checks

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// procICMPFrom is the first CRIU release that dumps ICMP sockets.
var procICMPFrom = criu.Version{Major: 4, Minor: 2}

// procInetProtoOK says whether CRIU v dumps an inet socket of type typ and
// protocol proto, as CRIU's can_dump_ipproto decides: raw sockets of any
// protocol; otherwise TCP, UDP and UDP-Lite (and ICMP from 4.2 on).
func procInetProtoOK(v criu.Version, typ, proto int) bool {
	if typ == unix.SOCK_RAW {
		return true
	}
	switch proto {
	case 0, unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_UDPLITE:
		return true
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		return !v.IsZero() && v.Int() >= procICMPFrom.Int()
	}
	return false
}

// procProtoName names the protocols that come up.
func procProtoName(p int) string {
	switch p {
	case unix.IPPROTO_MPTCP:
		return "MPTCP"
	case unix.IPPROTO_SCTP:
		return "SCTP"
	case unix.IPPROTO_ICMP:
		return "ICMP"
	case unix.IPPROTO_ICMPV6:
		return "ICMPv6"
	}
	return fmt.Sprintf("protocol %d", p)
}

// checkProcSocketProtocols finds inet sockets of protocols CRIU has no
// dumper for ("Unsupported proto 262 for socket N"). The one met most is
// MPTCP: Go programs from Go 1.24 on listen with MPTCP by default where
// the kernel has it, and CRIU cannot dump an MPTCP socket. The protocol
// of a socket is a socket option, read from a copy of the holder's fd.
func checkProcSocketProtocols(ctx context.Context, env *Env, t *procTree) []reports.Finding {
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procFDError(err)
	}
	gone := procVanished(t, vanished)
	socks := procFirstHolders(t, fdsOf)
	if len(socks) == 0 {
		return []reports.Finding{{Status: reports.Pass, Evidence: gone, Summary: "the tree holds no sockets"}}
	}
	if !t.fs.Live() {
		return []reports.Finding{{Status: reports.Skip, Summary: "socket protocols not checked",
			Reason: fmt.Sprintf("the tree holds %s; a socket's protocol is read from the live socket, not from a /proc fixture at %s", procN(len(socks), "socket", "sockets"), t.fs.Root())}}
	}
	v, vline := procCRIUVersion(ctx, env)
	var bad, ev []string
	var failed error
	inet, mptcp := 0, false
	for _, s := range socks {
		var domain, typ, proto int
		err := procWithFD(s.PID, s.FD, func(dup int) error {
			var err error
			if domain, err = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || (domain != unix.AF_INET && domain != unix.AF_INET6) {
				return err
			}
			if typ, err = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
				return err
			}
			proto, err = unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_PROTOCOL)
			return err
		})
		if err != nil {
			failed = errors.Join(failed, err)
			ev = append(ev, fmt.Sprintf("%s (inode %d): %v", s.Label, s.Inode, err))
			continue
		}
		if domain != unix.AF_INET && domain != unix.AF_INET6 {
			continue
		}
		inet++
		if procInetProtoOK(v, typ, proto) {
			continue
		}
		mptcp = mptcp || proto == unix.IPPROTO_MPTCP
		bad = append(bad, fmt.Sprintf("%d for socket %x", proto, s.Inode))
		ev = append(ev, fmt.Sprintf("%s: inet socket inode %d is %s, which CRIU cannot dump", s.Label, s.Inode, procProtoName(proto)))
	}
	ev = append(append(ev, vline), gone...)
	if len(bad) > 0 {
		fix := "have the workload open these sockets with a protocol CRIU dumps (TCP, UDP)"
		if mptcp {
			fix = "have the workload use plain TCP: Go programs from Go 1.24 on listen with MPTCP by default; GODEBUG=multipathtcp=0 in the workload's environment turns that off " +
				"(or sysctl net.mptcp.enabled=0 in the sandbox before the workload starts)"
		}
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("%s of a protocol CRIU cannot dump: CRIU: \"Unsupported proto %s\"", procN(len(bad), "inet socket", "inet sockets"), strings.Join(bad, ", ")),
			Fix:     &reports.Fix{Description: fix + "; no CRIU option dumps them"}}}
	}
	if failed != nil {
		if skip := procSkipPidfdGetfd(failed, "socket protocols", ev); skip != nil {
			return skip
		}
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: fmt.Sprintf("could not read the protocol of every socket of the tree (%d)", len(socks))}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("every inet socket of the tree (%d) is of a protocol CRIU dumps", inet)}}
}
