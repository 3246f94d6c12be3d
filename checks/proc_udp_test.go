package checks

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/reports"
)

// TestProcUDPCorkLive hands a sleep a UDP socket, corked with a datagram
// waiting or not: CRIU refuses the corked one either way.
func TestProcUDPCorkLive(t *testing.T) {
	procNeedRoot(t)
	sleep := procNeedTool(t, "sleep", "coreutils")
	for _, tc := range []struct {
		name        string
		cork, write bool
		want        reports.Status
	}{
		{"corked with a datagram waiting", true, true, reports.Fail},
		{"corked and empty", true, false, reports.Fail},
		{"not corked", false, true, reports.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), "udp")
			t.Cleanup(func() { f.Close() })
			if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				t.Fatal(err)
			}
			if tc.cork {
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_CORK, 1); err != nil {
					t.Fatal(err)
				}
			}
			if tc.write {
				// Uncorked, it goes to the discard port and is dropped.
				_, _ = unix.Write(fd, []byte("pending"))
			}
			pid := procSleepWith(t, sleep, f)
			g := procOne(t, procRunAll(t, pid), "process.udp-cork")
			t.Logf("%s", procDump([]reports.Finding{g}))
			if g.Status != tc.want {
				t.Fatalf("udp-cork: %s %s", g.Status, g.Summary)
			}
			if tc.want == reports.Fail && !strings.Contains(g.Summary, "Can't dump corked dgram socket") {
				t.Errorf("summary %q does not quote CRIU", g.Summary)
			}
		})
	}
}

// procSleepWith starts a sleep holding files (as fds 3 and on) as the init
// of a new pid namespace, and returns its pid.
func procSleepWith(t *testing.T, sleep string, files ...*os.File) int {
	t.Helper()
	cmd := exec.Command(sleep, "1000")
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return procStart(t, cmd, procCount("sleep", 1))
}
