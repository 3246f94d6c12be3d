package criulog_test

import (
	"slices"
	"testing"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criulog"
)

// TestSignatureFindingsExist keeps the signature table and the checks in
// step: every finding a signature names is the ID of a check that the
// doctor and the checkpoint preflight run. It lives in package criulog_test
// because checks imports criulog.
func TestSignatureFindingsExist(t *testing.T) {
	known := map[string]bool{}
	for _, group := range [][]checks.Check{checks.SystemChecks(), checks.CRIUChecks(),
		checks.KernelChecks(), checks.ProcessChecks(), checks.MountChecks(), checks.PodChecks(nil, nil, false)} {
		for _, c := range group {
			known[c.ID] = true
		}
	}
	for _, s := range criulog.Signatures {
		for _, id := range s.Findings {
			if !known[id] {
				t.Errorf("signature %s: finding %q is not the ID of any check", s.ID, id)
			}
		}
		if s.FollowOn && len(s.Findings) > 0 {
			t.Errorf("signature %s: a follow-on line names no finding of its own, got %q", s.ID, s.Findings)
		}
	}
}

// TestSignatureFindings pins the findings of the signatures that a dump in
// the guest meets.
func TestSignatureFindings(t *testing.T) {
	tests := []struct {
		sig  string
		want []string
	}{
		{"session-leader-outside-pidns", []string{"process.session-leader"}},
		{"sock-diag-missing", []string{"kernel.UNIX_DIAG", "kernel.INET_DIAG", "kernel.INET_TCP_DIAG",
			"kernel.INET_UDP_DIAG", "kernel.PACKET_DIAG", "kernel.NETLINK_DIAG", "criu.check"}},
		{"nftables-missing", []string{"system.network-lock", "kernel.NF_TABLES", "criu.check"}},
		{"mount-no-root", []string{"mount.external-bind"}},
		{"tun-missing", []string{"kernel.TUN"}},
		{"veth-missing", []string{"kernel.VETH"}},
		{"membarrier", []string{"kernel.MEMBARRIER"}},
		{"not-session-leader-on-restore", nil},
		{"network-lock-iptables", []string{"process.tcp", "system.network-lock"}},
		{"udp-corked", []string{"process.udp-cork"}},
		{"inet-proto-unsupported", []string{"process.socket-protocols"}},
		{"link-remap", []string{"process.link-remap", "process.inotify"}},
		{"inotify-no-path", []string{"process.inotify"}},
		{"unix-inflight-data", []string{"process.unix-queued"}},
		{"unix-external", []string{"process.unix-sockets", "process.unix-pod-peer"}},
		{"unix-stream-external", []string{"process.unix-sockets", "process.unix-pod-peer"}},
		{"fifo-missing", nil},
		{"traced-task", []string{"process.ptrace"}},
		{"send-fds-refused", []string{"process.files"}},
		{"nested-userns", []string{"process.userns"}},
	}
	for _, tt := range tests {
		t.Run(tt.sig, func(t *testing.T) {
			s, ok := criulog.SignatureByID(tt.sig)
			if !ok {
				t.Fatalf("no signature %s", tt.sig)
			}
			if !slices.Equal(s.Findings, tt.want) {
				t.Errorf("Findings %q, want %q", s.Findings, tt.want)
			}
		})
	}
}
