package checks

import (
	"encoding/binary"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// TestProcParseUnixDiagQueues: the icons of a listening socket and the
// queue lengths are read from their attributes.
func TestProcParseUnixDiagQueues(t *testing.T) {
	ne := binary.NativeEndian
	attr := func(typ uint16, data []byte) []byte {
		a := make([]byte, (4+len(data)+3)&^3)
		ne.PutUint16(a[0:], uint16(4+len(data)))
		ne.PutUint16(a[2:], typ)
		copy(a[4:], data)
		return a
	}
	u32s := func(vs ...uint32) []byte {
		b := make([]byte, 4*len(vs))
		for i, v := range vs {
			ne.PutUint32(b[4*i:], v)
		}
		return b
	}
	msg := make([]byte, procSizeofUnixDiagMsg)
	msg[0], msg[1], msg[2] = unix.AF_UNIX, unix.SOCK_STREAM, 10
	ne.PutUint32(msg[4:], 300)
	msg = append(msg, attr(procUnixDiagIcons, u32s(301, 0))...)
	msg = append(msg, attr(procUnixDiagRQLen, u32s(2, 128))...)
	out := map[uint32]procUnixSock{}
	if _, err := procParseUnixDiag(procNlMsg(unix.SOCK_DIAG_BY_FAMILY, msg), out); err != nil {
		t.Fatal(err)
	}
	got := out[300]
	if !slices.Equal(got.Icons, []uint32{301, 0}) || got.RQueue != 2 || got.WQueue != 128 || !got.HasQueues {
		t.Errorf("got %+v", got)
	}
}

// TestProcUnixQueueFindings: a client of the tree that sent data on a
// queued connection is lost by CRIU before 3.18 (a warning that the
// restore loses it) and refused from 3.18 on (a failure quoting CRIU).
func TestProcUnixQueueFindings(t *testing.T) {
	held := map[uint64][]string{10: {"pid 1 (srv) fd 3"}, 11: {"pid 1 (srv) fd 4"}}
	socks := map[uint32]procUnixSock{
		10: {Inode: 10, Type: unix.SOCK_STREAM, State: 10, Name: "/run/q.sock", Icons: []uint32{11}},
		11: {Inode: 11, Type: unix.SOCK_STREAM, State: 1, WQueue: 10, HasQueues: true},
	}
	old, newer := criu.Version{Major: 3, Minor: 17, Sublevel: 1}, criu.Version{Major: 4, Minor: 1, Sublevel: 1}
	tests := []struct {
		name   string
		socks  map[uint32]procUnixSock
		v      criu.Version
		want   reports.Status
		loses  bool
		quotes string
	}{
		{"data, CRIU 3.17.1", socks, old, reports.Warn, true, "never reads the request"},
		{"data, CRIU 4.1.1", socks, newer, reports.Fail, false, "Non-empty write queue on an in-flight socket 0xb"},
		{"data, CRIU unknown", socks, criu.Version{}, reports.Warn, true, "later CRIU refuses"},
		{"closed client, CRIU 4.1.1", map[uint32]procUnixSock{10: {Inode: 10, State: 10, Icons: []uint32{0}}}, newer, reports.Fail, false, "Found a closed in-flight socket to 0xa"},
		{"nothing sent", map[uint32]procUnixSock{10: socks[10], 11: {Inode: 11, State: 1}}, newer, reports.Pass, false, "CRIU connects them again"},
		{"client outside", map[uint32]procUnixSock{10: {Inode: 10, State: 10, Icons: []uint32{99}}}, newer, reports.Warn, true, "outside the tree"},
		{"nothing queued", map[uint32]procUnixSock{10: {Inode: 10, State: 10}}, old, reports.Pass, false, "no listening unix socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := procUnixQueueFindings(procJudgeUnixQueues(held, tt.socks), tt.v, "CRIU "+tt.v.String(), nil)
			f := fs[0]
			if len(fs) != 1 || f.Status != tt.want || (f.Loses != "") != tt.loses || !strings.Contains(f.Summary, tt.quotes) {
				t.Errorf("%s %q (loses %q), want %s quoting %q, loses %v", f.Status, f.Summary, f.Loses, tt.want, tt.quotes, tt.loses)
			}
			f.ID, f.Level = "process.unix-queued", reports.Required
			if p := Predict([]reports.Finding{f}); p.DumpWillSucceed != (tt.want != reports.Fail) || slices.Contains(p.Losses, f.ID) != tt.loses {
				t.Errorf("prediction %+v", p)
			}
		})
	}
}

// TestProcUnixQueuedLive: a sleep holds a listening unix socket and a
// client whose connection, with its request sent, waits to be accepted.
func TestProcUnixQueuedLive(t *testing.T) {
	procNeedRoot(t)
	sleep := procNeedTool(t, "sleep", "coreutils")
	addr := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "q.sock"), Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := net.DialUnix("unix", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("request\n")); err != nil {
		t.Fatal(err)
	}
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	cf, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cf.Close() })
	pid := procSleepWith(t, sleep, lf, cf)
	f := procOne(t, procRunAll(t, pid), "process.unix-queued")
	t.Logf("%s", procDump([]reports.Finding{f}))
	// No criu here: the version is unknown, so the loss is a warning.
	if f.Status != reports.Warn || f.Loses == "" || !strings.Contains(strings.Join(f.Evidence, "\n"), "that sent data, not accepted yet") {
		t.Fatalf("unix-queued: %s %q", f.Status, f.Summary)
	}
}
