package checks

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

func TestProcInetProtoOK(t *testing.T) {
	v317, v42 := criu.Version{Major: 3, Minor: 17, Sublevel: 1}, criu.Version{Major: 4, Minor: 2}
	tests := []struct {
		v          criu.Version
		typ, proto int
		want       bool
	}{
		{v317, unix.SOCK_STREAM, unix.IPPROTO_TCP, true},
		{v317, unix.SOCK_DGRAM, unix.IPPROTO_UDP, true},
		{v317, unix.SOCK_STREAM, unix.IPPROTO_MPTCP, false},
		{v42, unix.SOCK_STREAM, unix.IPPROTO_MPTCP, false},
		{v317, unix.SOCK_DGRAM, unix.IPPROTO_ICMP, false},
		{v42, unix.SOCK_DGRAM, unix.IPPROTO_ICMP, true},
		{v317, unix.SOCK_RAW, unix.IPPROTO_ICMP, true},
		{criu.Version{}, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6, false},
	}
	for _, tt := range tests {
		if got := procInetProtoOK(tt.v, tt.typ, tt.proto); got != tt.want {
			t.Errorf("CRIU %s, type %d, protocol %d: %v, want %v", tt.v, tt.typ, tt.proto, got, tt.want)
		}
	}
}

// TestProcSocketProtocolsLive hands a sleep a TCP listener made with MPTCP
// (as Go 1.24 and later listen by default) or without.
func TestProcSocketProtocolsLive(t *testing.T) {
	procNeedRoot(t)
	sleep := procNeedTool(t, "sleep", "coreutils")
	if data, err := os.ReadFile("/proc/sys/net/mptcp/enabled"); err != nil || strings.TrimSpace(string(data)) != "1" {
		t.Fatalf("this test needs MPTCP in the kernel, enabled (/proc/sys/net/mptcp/enabled: %q, %v)", data, err)
	}
	for _, tc := range []struct {
		name  string
		mptcp bool
		want  reports.Status
	}{
		{"MPTCP listener", true, reports.Fail},
		{"TCP listener", false, reports.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lc net.ListenConfig
			lc.SetMultipathTCP(tc.mptcp)
			ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			f, err := ln.(*net.TCPListener).File()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			pid := procSleepWith(t, sleep, f)
			g := procOne(t, procRunAll(t, pid), "process.socket-protocols")
			t.Logf("%s", procDump([]reports.Finding{g}))
			if g.Status != tc.want {
				t.Fatalf("socket-protocols: %s %s", g.Status, g.Summary)
			}
			if tc.mptcp && (!strings.Contains(g.Summary, "Unsupported proto 262") || !strings.Contains(g.Fix.Description, "GODEBUG=multipathtcp=0")) {
				t.Errorf("summary %q, fix %q: want CRIU quoted and the Go setting named", g.Summary, g.Fix.Description)
			}
		})
	}
}
