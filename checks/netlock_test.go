package checks

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/reports"
)

// TestProcTCPFindings: the connections are dumped with the network lock
// this machine has; without one a second failure, which no option works
// around, keeps the prediction from promising the dump.
func TestProcTCPFindings(t *testing.T) {
	tests := []struct {
		name string
		lock netLock
		// want are the findings' statuses; opts the plan's options.
		want []reports.Status
		opts criuopt.Set
	}{
		// CRIU's default lock is missing: a finding of its own, which a
		// dump with --tcp-established alone proves.
		{"nftables", netLock{Method: criuopt.NetworkLockNFTables, Evidence: []string{"network_lock_nftables is supported"}},
			[]reports.Status{reports.Fail, reports.Fail}, criuopt.Set{TCPEstablished: true, NetworkLock: criuopt.NetworkLockNFTables}},
		{"nftables, iptables here too", netLock{Method: criuopt.NetworkLockNFTables, DefaultWorks: true, Evidence: []string{"network_lock_nftables is supported"}},
			[]reports.Status{reports.Fail}, criuopt.Set{TCPEstablished: true, NetworkLock: criuopt.NetworkLockNFTables}},
		{"iptables", netLock{Method: criuopt.NetworkLockIPTables, DefaultWorks: true, Evidence: []string{"iptables-restore: /usr/sbin/iptables-restore"}},
			[]reports.Status{reports.Fail}, criuopt.Set{TCPEstablished: true, NetworkLock: criuopt.NetworkLockIPTables}},
		{"no lock", netLock{Evidence: []string{"iptables-restore: not found on PATH"}},
			[]reports.Status{reports.Fail, reports.Fail}, criuopt.Set{TCPEstablished: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := procTCPFindings(1, []string{"pid 7 (x) fd 3: 127.0.0.1:1 -> 127.0.0.1:2 ESTABLISHED"}, tt.lock, true)
			var got []reports.Status
			for i := range fs {
				fs[i].ID, fs[i].Level, fs[i].Category = "process.tcp", reports.Required, "process"
				got = append(got, fs[i].Status)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("statuses %v, want %v", got, tt.want)
			}
			if !fs[0].Fix.CRIU.TCPEstablished || !fs[0].Fix.Restore.Equal(criuopt.Set{TCPEstablished: true}) || !fs[0].Fix.AutoFixable {
				t.Errorf("fix %+v, want --tcp-established", fs[0].Fix)
			}
			if !slices.Contains(fs[len(fs)-1].Evidence, tt.lock.Evidence[0]) {
				t.Errorf("evidence %q does not say how the lock was chosen", fs[len(fs)-1].Evidence)
			}
			p := Predict(fs)
			if p.DumpWillSucceed || p.WithOptions != (tt.lock.Method != "") {
				t.Errorf("prediction %+v: with options %v, want %v", p, p.WithOptions, tt.lock.Method != "")
			}
			if !p.CRIU.Equal(tt.opts) {
				t.Errorf("the plan is %q, want %q", p.CRIU.DumpArgs(), tt.opts.DumpArgs())
			}
		})
	}
}

// TestChooseNetLock asks a stand-in criu about the nftables lock: its
// answer decides, and iptables-restore on PATH is the fallback.
func TestChooseNetLock(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	// The stand-in answers `criu check --feature NAME -v4 --log-file LOG`
	// as CRIU does: its log, then "NAME is supported" and status 0, or a
	// warning and status 1.
	fake := func(t *testing.T, supported bool) *criu.Binary {
		p := filepath.Join(t.TempDir(), "criu")
		body := "#!" + sh + "\necho '(00.000001) Version: 3.17.1' > \"$6\"\n"
		if supported {
			body += "echo \"$3 is supported\"\n"
		} else {
			body += "echo 'Warn  (criu/cr-check.c:1): Nftables based locking requires libnftables and set concatenations support'\nexit 1\n"
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := criu.Find(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name      string
		supported bool
		iptables  bool
		want      criuopt.NetworkLock
	}{
		{"criu has the nftables lock", true, false, criuopt.NetworkLockNFTables},
		{"nftables first", true, true, criuopt.NetworkLockNFTables},
		{"iptables when criu has no nftables lock", false, true, criuopt.NetworkLockIPTables},
		{"neither", false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			links := map[string]string{}
			if tt.iptables {
				links["iptables-restore"] = sh
			}
			t.Setenv("PATH", sysPathWith(t, links))
			env := &Env{CRIU: fake(t, tt.supported)}
			l := chooseNetLock(context.Background(), env)
			if l.Method != tt.want {
				t.Errorf("lock %q, want %q (evidence %q)", l.Method, tt.want, l.Evidence)
			}
			if !strings.Contains(strings.Join(l.Evidence, "\n"), criuFeatureNFTablesLock) {
				t.Errorf("evidence %q does not say what CRIU answered", l.Evidence)
			}
		})
	}
	if l := chooseNetLock(context.Background(), &Env{CRIUMissing: "no criu here"}); !strings.Contains(l.Evidence[0], "no criu here") {
		t.Errorf("without criu: %+v", l)
	}
}
