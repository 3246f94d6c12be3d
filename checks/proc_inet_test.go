package checks

import (
	"context"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// TestCRIUInetSockets judges the fixture trees with the host's CRIU (a
// 3.x) as if it ran on a given kernel: from 6.16 on CRIU before 4.2 cannot
// dump a TCP or UDP socket, so a tree that holds one is predicted to fail,
// one that holds none is not.
func TestCRIUInetSockets(t *testing.T) {
	b, err := criu.Find("")
	if err != nil {
		t.Fatalf("this test asks the host's criu for its version: apt-get install criu (%v)", err)
	}
	v, err := b.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v.Int() >= 40200 {
		t.Skipf("the host's CRIU %s dumps inet sockets on every kernel", v)
	}
	tests := []struct {
		dir     string
		pid     int
		kernel  string
		want    reports.Status
		summary string
	}{
		{"proc-seed", 100, "7.3.0+deb13-amd64", reports.Fail, "2 TCP, UDP or packet sockets in the tree, and criu " + v.String() + " on kernel 7.3.0+deb13-amd64 cannot dump any"},
		{"proc-seed", 100, "6.1.0-57-amd64", reports.Pass, "2 TCP, UDP or packet sockets in the tree: criu " + v.String() + " on kernel 6.1.0-57-amd64 dumps them"},
		{"proc-setsid", 200, "7.3.0+deb13-amd64", reports.Pass, "the tree holds no TCP, UDP or packet socket"},
	}
	for _, tt := range tests {
		t.Run(tt.dir+" "+tt.kernel, func(t *testing.T) {
			env := procFixtureEnv(t, tt.dir, tt.pid)
			env.CRIU, env.KernelRelease = b, tt.kernel
			fs := Runner{Checks: []Check{inetSocketsCheck()}}.Run(context.Background(), env)
			f := procOne(t, fs, "criu.inet-sockets")
			if f.Status != tt.want || !strings.HasPrefix(f.Summary, tt.summary) {
				t.Fatalf("criu.inet-sockets: %s %q, want %s %q\n%s", f.Status, f.Summary, tt.want, tt.summary, strings.Join(f.Evidence, "\n"))
			}
			if tt.want != reports.Fail {
				return
			}
			if !strings.Contains(f.Summary, "Can't get 1:16 opt") || f.Fix == nil || !strings.Contains(f.Fix.Description, "--criu-suite forky") {
				t.Errorf("the failure names neither CRIU's error nor the fix: %+v", f)
			}
			if p := Predict(fs); p.DumpWillSucceed || p.WithOptions || p.EnvironmentReady || !p.TreeDumpable {
				t.Errorf("prediction %+v: want a dump that fails for this CRIU, not for the tree", p)
			}
		})
	}
	env := procFixtureEnv(t, "proc-seed", 100)
	env.CRIU = b
	if f := procOne(t, Runner{Checks: []Check{inetSocketsCheck()}}.Run(context.Background(), env), "criu.inet-sockets"); f.Status != reports.Skip || !strings.Contains(f.Reason, "kernel release") {
		t.Errorf("without a kernel release: %s %q, want a skip saying why", f.Status, f.Reason)
	}
}

func TestProcParsePacket(t *testing.T) {
	data := []byte("sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n" +
		"ffff8e0a43a1f000 3      3    0003   1     1 0      0      24131\n" +
		"ffff8e0a43a1f800 3      2    0800   0     1 0      0      0\n\n")
	if got := procParsePacket(data); len(got) != 1 || got[0] != 24131 {
		t.Errorf("procParsePacket = %v, want [24131]", got)
	}
}
