package crjob

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

func TestParseDumpWords(t *testing.T) {
	tests := []struct {
		words   []string
		args    []string
		skipped []string
	}{
		{nil, nil, nil},
		{[]string{"--file-locks", "--external=mnt[/etc/hosts]:hosts"}, []string{"--file-locks", "--external", "mnt[/etc/hosts]:hosts"}, nil},
		// The network-lock fix comes as two words kata-cr does not pass.
		{[]string{"--network-lock", "nftables", "--tcp-established"}, []string{"--tcp-established"}, []string{"--network-lock", "nftables"}},
		{[]string{"--ghost-limit=1000000"}, nil, []string{"--ghost-limit=1000000"}},
	}
	for _, tt := range tests {
		o, skipped := parseDumpWords(tt.words)
		if got := o.Args(); !slices.Equal(got, tt.args) {
			t.Errorf("parseDumpWords(%q): args %q, want %q", tt.words, got, tt.args)
		}
		if !slices.Equal(skipped, tt.skipped) {
			t.Errorf("parseDumpWords(%q): skipped %q, want %q", tt.words, skipped, tt.skipped)
		}
	}
}

func TestMarkWorkedAround(t *testing.T) {
	fs := []reports.Finding{
		{ID: "mount.external-bind", Status: reports.Fail, Level: reports.Required, Summary: "hosts",
			Fix: &reports.Fix{CRIUOptions: []string{"--external=mnt[/etc/hosts]:hosts"}}},
		{ID: "process.file-locks", Status: reports.Fail, Level: reports.Required, Summary: "locks",
			Fix: &reports.Fix{CRIUOptions: []string{"--file-locks"}}},
		{ID: "process.tty", Status: reports.Fail, Level: reports.Required, Summary: "tty",
			Fix: &reports.Fix{CRIUOptions: []string{"--shell-job"}}},
		{ID: "process.session-leader", Status: reports.Fail, Level: reports.Required, Summary: "session"},
	}
	dump := []string{"--external", "mnt[/etc/hosts]:hosts", "--external", "tty[8800:27]"}
	got := markWorkedAround(fs, dump, true)
	want := map[string]reports.Status{
		"mount.external-bind":    reports.Warn,
		"process.file-locks":     reports.Fail, // the dump lacks --file-locks
		"process.tty":            reports.Warn, // the pty is an external tty
		"process.session-leader": reports.Fail, // no option fixes it
	}
	for _, f := range got {
		if f.Status != want[f.ID] {
			t.Errorf("%s: %s (%s), want %s", f.ID, f.Status, f.Summary, want[f.ID])
		}
	}
	if !strings.Contains(got[2].Summary, "tty[8800:27]") {
		t.Errorf("process.tty summary %q does not name the external tty", got[2].Summary)
	}
	if fs[0].Status != reports.Fail {
		t.Error("markWorkedAround changed its input")
	}
	for _, f := range markWorkedAround(fs, dump, false) {
		if f.Status != reports.Fail {
			t.Errorf("without fixes %s became %s", f.ID, f.Status)
		}
	}
}

func TestRestoreOpts(t *testing.T) {
	paths := paths{rootfs: "/r/rootfs", sandbox: "/r/sandbox", images: "/r/images"}
	sb := container.SandboxFiles{Hosts: "/r/sandbox/hosts", Hostname: "/r/sandbox/hostname", ResolvConf: "/r/sandbox/resolv.conf"}
	m := images.Manifest{
		RestoreOptions: []string{"--file-locks"},
		ExternalMounts: []images.ExternalMount{{Key: "hosts", Target: "/etc/hosts"}, {Key: "resolv.conf", Target: "/etc/resolv.conf"}},
	}
	ro, mapped, err := restoreOpts(m, paths, sb)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--file-locks", "--restore-sibling", "--external", "mnt[hosts]:/r/sandbox/hosts",
		"--external", "mnt[resolv.conf]:/r/sandbox/resolv.conf", "--root", "/r/rootfs"}
	if got := ro.Args(); !slices.Equal(got, want) {
		t.Errorf("restore args %q, want %q", got, want)
	}
	if mapped.Hosts != sb.Hosts || mapped.ResolvConf != sb.ResolvConf || mapped.Hostname != "" {
		t.Errorf("mapped sandbox files %+v", mapped)
	}
	m.ExternalMounts = append(m.ExternalMounts, images.ExternalMount{Key: "data", Target: "/data"})
	if _, _, err := restoreOpts(m, paths, sb); err == nil || !strings.Contains(err.Error(), "/data") {
		t.Errorf("an external mount kata-cr cannot map: err %v", err)
	}
}

func TestTTYKey(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--external", "mnt[/etc/hosts]:hosts", "--external", "tty[8800:27]"}, "tty[8800:27]"},
		{[]string{"--external=tty[8801:27]"}, "tty[8801:27]"},
		{[]string{"--shell-job"}, ""},
	} {
		if got := ttyKey(tt.args); got != tt.want {
			t.Errorf("ttyKey(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestRestoreWords(t *testing.T) {
	o := criu.DumpOpts{FileLocks: true, TCPEstablished: true, LeaveRunning: true, ExternalMounts: []criu.ExternalMount{{Key: "hosts", Path: "/etc/hosts"}}}
	if got, want := restoreWords(o), []string{"--file-locks", "--tcp-established"}; !slices.Equal(got, want) {
		t.Errorf("restoreWords = %q, want %q", got, want)
	}
}

func TestPredictionFinding(t *testing.T) {
	failOn := func(sig string) error {
		return &criu.Error{Op: "dump", Err: errors.New("exit status 1"), Explanations: []reports.Explanation{
			{Signature: "failed", Known: true},
			{Signature: sig, Known: true, Quote: []string{"Error (criu/x.c:1): " + sig}},
		}}
	}
	seed := &reports.Prediction{Reasons: []string{"process.session-leader: A session leader of 91(1) is outside of its pid namespace", "kernel.UNIX_DIAG: not loaded"}}
	tests := []struct {
		name    string
		p       *reports.Prediction
		expect  bool
		err     error
		status  reports.Status
		summary string
	}{
		{"predicted success", &reports.Prediction{}, true, nil, reports.Pass, "succeeded, as predicted"},
		{"unexpected success", seed, false, nil, reports.Warn, "although it was predicted to fail"},
		{"predicted cause", seed, false, failOn("session-leader-outside-pidns"), reports.Pass, "as process.session-leader predicted"},
		{"cause without a signature finding", seed, false, failOn("sock-diag-missing"), reports.Pass, "as kernel.UNIX_DIAG predicted"},
		{"unpredicted cause", seed, false, failOn("file-locks"), reports.Warn, "which no preflight check predicted"},
		{"unexpected failure", &reports.Prediction{}, true, failOn("file-locks"), reports.Warn, "which no preflight check predicted"},
	}
	for _, tt := range tests {
		f := predictionFinding(tt.p, tt.expect, tt.err)
		if f.Status != tt.status || !strings.Contains(f.Summary, tt.summary) {
			t.Errorf("%s: %s %q, want %s with %q", tt.name, f.Status, f.Summary, tt.status, tt.summary)
		}
	}
}

// TestDryRunActions: the plan pairs each action with its own finding (two
// bind mounts share an ID) and gives the command each step would run.
func TestDryRunActions(t *testing.T) {
	bind := func(target, key string) reports.Finding {
		return reports.Finding{ID: "mount.external-bind", Status: reports.Fail, Level: reports.Required,
			Fix: &reports.Fix{Description: "declare it external", CRIUOptions: []string{"--external=mnt[" + target + "]:" + key},
				AutoFixable: true, Fixer: fixerCRIUOption}}
	}
	fs := []reports.Finding{
		{ID: "kernel.UNIX_DIAG", Status: reports.Fail, Level: reports.Required,
			Fix: &reports.Fix{Description: "load module unix_diag and its dependencies", AutoFixable: true, Fixer: checks.FixerLoadModule}},
		{ID: "process.session-leader", Status: reports.Fail, Level: reports.Required,
			Fix: &reports.Fix{Description: "make the init a session leader", AutoFixable: true, Fixer: fixerRestartSetsid}},
		bind("/etc/hosts", "hosts"),
		{ID: "system.loopback", Status: reports.Pass},
		bind("/etc/resolv.conf", "resolv.conf"),
	}
	j := &cpJob{w: container.Workload{Args: []string{"busybox", "sleep", "3600"}}}
	fixers := []checks.Fixer{checks.LoopbackFixer(), checks.DevptsFixer(), checks.ModuleFixer(), j.criuOptionFixer(), j.restartFixer()}
	acts := describeActions(fs, checks.ApplyFixes(t.Context(), &checks.Env{}, fs, fixers, true), fixers, j)
	want := [][]string{
		{"modprobe", "unix_diag"},
		nil,
		{"criu", "dump", "--external=mnt[/etc/hosts]:hosts"},
		{"criu", "dump", "--external=mnt[/etc/resolv.conf]:resolv.conf"},
	}
	if len(acts) != len(want) {
		t.Fatalf("%d actions, want %d: %+v", len(acts), len(want), acts)
	}
	for i, a := range acts {
		if a.Applied {
			t.Errorf("action %d applied in a dry run: %+v", i, a)
		}
		if !slices.Equal(a.Command, want[i]) {
			t.Errorf("action %d (%s): command %q, want %q", i, a.Fixer, a.Command, want[i])
		}
	}
	if !strings.Contains(acts[1].Summary, "in-memory state since the start would be lost") {
		t.Errorf("restart action %q does not say the state is lost", acts[1].Summary)
	}
}
