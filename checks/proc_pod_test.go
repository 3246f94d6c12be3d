package checks

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// TestPodUnixPeer: the client's end of a connection to the server of
// another container of the pod, as unix_diag shows it (a fixture of its
// answer), is external: the dump needs --external unix[the client's
// inode], a fix only where the peer has an address to connect a
// replacement to, and data queued in it is a loss.
func TestPodUnixPeer(t *testing.T) {
	server := PodMember{Name: "server", PID: 40}
	held := map[uint32]PodMember{2001: server, 2002: server}
	client := func(ino, peer uint32, typ uint8, rq, wq uint32, peerName string) procUnixExt {
		return procUnixExt{Sock: procUnixSock{Inode: ino, Peer: peer, Type: typ, State: 1, RQueue: rq, WQueue: wq, HasQueues: true},
			Holders: []string{"pid 7 (kata-cr-testload) fd 5"}, PeerSk: procUnixSock{Inode: peer, Peer: ino, Type: typ, Name: peerName}}
	}
	v317 := criu.Version{Major: 3, Minor: 17, Sublevel: 1}
	for _, tc := range []struct {
		name      string
		ext       []procUnixExt
		v         criu.Version
		status    reports.Status
		fixable   bool
		externals []uint32
		loses     bool
		together  bool
	}{
		{"idle connection to the server", []procUnixExt{client(1001, 2001, unix.SOCK_STREAM, 0, 0, "/run/pod/app.sock")}, v317, reports.Fail, true, []uint32{1001}, false, false},
		{"a request in flight", []procUnixExt{client(1001, 2001, unix.SOCK_STREAM, 0, 8, "/run/pod/app.sock")}, v317, reports.Fail, true, []uint32{1001}, true, false},
		{"an answer unread", []procUnixExt{client(1001, 2001, unix.SOCK_STREAM, 12, 0, "/run/pod/app.sock")}, v317, reports.Fail, true, []uint32{1001}, true, false},
		{"two connections", []procUnixExt{client(1001, 2001, unix.SOCK_STREAM, 0, 0, "/run/pod/app.sock"), client(1003, 2002, unix.SOCK_STREAM, 0, 0, "/run/pod/app.sock")}, v317, reports.Fail, true, []uint32{1001, 1003}, false, false},
		{"a peer without an address", []procUnixExt{client(1001, 2001, unix.SOCK_STREAM, 0, 0, "")}, v317, reports.Fail, false, nil, false, false},
		{"a peer without an address, dumped together (the whole pod)", []procUnixExt{client(1001, 2001, unix.SOCK_STREAM, 0, 0, "")}, v317, reports.Fail, true, []uint32{1001}, false, true},
		{"a CRIU too old", []procUnixExt{client(1001, 2001, unix.SOCK_STREAM, 0, 0, "/run/pod/app.sock")}, criu.Version{Major: 1, Minor: 6}, reports.Fail, false, nil, false, false},
		{"a peer outside the pod", []procUnixExt{client(1001, 9999, unix.SOCK_STREAM, 0, 0, "/run/x.sock")}, v317, reports.Pass, false, nil, false, false},
		{"a datagram peer (process.unix-sockets: --ext-unix-sk)", []procUnixExt{client(1001, 2001, unix.SOCK_DGRAM, 0, 0, "/run/pod/log.sock")}, v317, reports.Pass, false, nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peers := podJudgeUnix(tc.ext, held)
			fs := podPeerFindings(peers, tc.v, "criu "+tc.v.String(), tc.together)
			if len(fs) != 1 {
				t.Fatalf("%d findings", len(fs))
			}
			f := fs[0]
			if f.Status != tc.status {
				t.Fatalf("status %s, want %s: %s", f.Status, tc.status, f.Summary)
			}
			if tc.status == reports.Pass {
				return
			}
			if f.Fix == nil || f.Fix.AutoFixable != tc.fixable || !slices.Equal(f.Fix.CRIU.UnixSockets, tc.externals) {
				t.Errorf("fix %+v, want fixable %v with --external unix%v", f.Fix, tc.fixable, tc.externals)
			}
			if (f.Loses != "") != tc.loses {
				t.Errorf("loses %q, want a loss: %v", f.Loses, tc.loses)
			}
			for _, p := range peers {
				if p.PeerContainer != "server" || p.PeerPID != 40 {
					t.Errorf("peer %+v", p)
				}
			}
		})
	}
}
