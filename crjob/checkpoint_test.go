package crjob

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

var hostsMount = []criuopt.Mount{{Key: "hosts", Path: "/etc/hosts"}}

// TestPlanLeavesOutOptionsNotPassed: the plan's options kata-cr does not
// pass to CRIU are left out of the dump, and the plan finding names them.
func TestPlanLeavesOutOptionsNotPassed(t *testing.T) {
	tests := []struct {
		plan    criuopt.Set
		args    []string
		skipped []string
	}{
		{criuopt.Set{}, nil, nil},
		{criuopt.Set{FileLocks: true, ExternalMounts: hostsMount}, []string{"--file-locks", "--external", "mnt[/etc/hosts]:hosts"}, nil},
		// The network lock goes to CRIU with the TCP connections it locks.
		{criuopt.Set{NetworkLock: criuopt.NetworkLockNFTables, TCPEstablished: true}, []string{"--tcp-established", "--network-lock", "nftables"}, nil},
		{criuopt.Set{Unprivileged: true, FileLocks: true}, []string{"--file-locks"}, []string{"--unprivileged"}},
		// CRIU takes the ghost limit over RPC: it is passed.
		{criuopt.Set{GhostLimit: 1000000}, []string{"--ghost-limit", "1000000"}, nil},
	}
	for _, tt := range tests {
		passed, skipped := tt.plan.Passed()
		if got := passed.DumpArgs(); !slices.Equal(got, tt.args) {
			t.Errorf("plan %q: args %q, want %q", tt.plan.DumpArgs(), got, tt.args)
		}
		if got := skipped.DumpArgs(); !slices.Equal(got, tt.skipped) {
			t.Errorf("plan %q: skipped %q, want %q", tt.plan.DumpArgs(), got, tt.skipped)
		}
		f := planFinding(&reports.Prediction{WithOptions: true}, passed.DumpArgs(), skipped)
		named := slices.ContainsFunc(f.Evidence, func(e string) bool {
			return strings.Contains(e, "left out") && strings.Contains(e, strings.Join(tt.skipped, " "))
		})
		if named != (len(tt.skipped) > 0) {
			t.Errorf("plan %q: evidence %q", tt.plan.DumpArgs(), f.Evidence)
		}
	}
}

func TestMarkWorkedAround(t *testing.T) {
	fs := []reports.Finding{
		{ID: "mount.external-bind", Status: reports.Fail, Level: reports.Required, Summary: "hosts",
			Fix: &reports.Fix{CRIU: criuopt.Set{ExternalMounts: hostsMount}}},
		{ID: "process.file-locks", Status: reports.Fail, Level: reports.Required, Summary: "locks",
			Fix: &reports.Fix{CRIU: criuopt.Set{FileLocks: true}}},
		{ID: "process.tty", Status: reports.Fail, Level: reports.Required, Summary: "tty",
			Fix: &reports.Fix{CRIU: criuopt.Set{ShellJob: true}}},
		{ID: "process.session-leader", Status: reports.Fail, Level: reports.Required, Summary: "session"},
	}
	dump := criuopt.Set{ExternalMounts: hostsMount, TTYs: []criuopt.TTY{{Rdev: 0x8800, Dev: 0x27}}}
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
		RestoreOptions: criuopt.Set{FileLocks: true},
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

// TestRestoreSchema1Checkpoint builds the restore of a checkpoint whose
// manifest schema 1 wrote (options as argv words): the options come back
// from the words.
func TestRestoreSchema1Checkpoint(t *testing.T) {
	set, err := images.Open("../images/testdata/v1-checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	if err := set.VerifyFiles(); err != nil {
		t.Fatal(err)
	}
	paths := paths{rootfs: "/r/rootfs", sandbox: "/r/sandbox", images: "/r/images"}
	sb := container.SandboxFiles{Hosts: "/r/sandbox/hosts", Hostname: "/r/sandbox/hostname", ResolvConf: "/r/sandbox/resolv.conf"}
	ro, _, err := restoreOpts(set.Manifest, paths, sb)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--file-locks", "--tcp-established", "--restore-sibling", "--external", "mnt[hosts]:/r/sandbox/hosts", "--root", "/r/rootfs"}
	if got := ro.Args(); !slices.Equal(got, want) {
		t.Errorf("restore args %q, want %q", got, want)
	}
	if got := ttyKey(set.Manifest.DumpOptions); got != "tty[8800:27]" {
		t.Errorf("ttyKey = %q, want the schema 1 dump's tty[8800:27]", got)
	}
}

func TestTTYKey(t *testing.T) {
	for _, tt := range []struct {
		dump criuopt.Set
		want string
	}{
		{criuopt.Set{ExternalMounts: hostsMount, TTYs: []criuopt.TTY{{Rdev: 0x8800, Dev: 0x27}}}, "tty[8800:27]"},
		{criuopt.Set{ShellJob: true}, ""},
	} {
		if got := ttyKey(tt.dump); got != tt.want {
			t.Errorf("ttyKey(%q) = %q, want %q", tt.dump.DumpArgs(), got, tt.want)
		}
	}
}

// TestManifestRestoreOptions: the manifest's restore options are those of
// the dump that its restore needs too; the root and the external mounts
// come from the restoring side.
func TestManifestRestoreOptions(t *testing.T) {
	o := criu.DumpOpts{Set: criuopt.Set{FileLocks: true, TCPEstablished: true, LeaveRunning: true, ExternalMounts: hostsMount}}
	if got, want := o.RestoreNeeds().RestoreArgs(), []string{"--file-locks", "--tcp-established"}; !slices.Equal(got, want) {
		t.Errorf("restore options = %q, want %q", got, want)
	}
}

func TestPredictionFinding(t *testing.T) {
	failOn := func(sig string) error {
		return &criu.Error{Op: "dump", Err: errors.New("exit status 1"), Explanations: []reports.Explanation{
			{Signature: "failed", Known: true},
			{Signature: sig, Known: true, Quote: []string{"Error (criu/x.c:1): " + sig}},
		}}
	}
	seed := &reports.Prediction{Reasons: []string{"process.session-leader: A session leader of 91(1) is outside of its pid namespace", "kernel.UNIX_DIAG: not loaded"},
		BlockedBy: []string{"process.session-leader", "kernel.UNIX_DIAG"}}
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
			Fix: &reports.Fix{Description: "declare it external", CRIU: criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: key, Path: target}}},
				AutoFixable: true, Fixer: checks.FixerIDCRIUOption}}
	}
	fs := []reports.Finding{
		{ID: "kernel.UNIX_DIAG", Status: reports.Fail, Level: reports.Required,
			Fix: &reports.Fix{Description: "load module unix_diag and its dependencies", AutoFixable: true, Fixer: checks.FixerIDLoadModule}},
		{ID: "process.session-leader", Status: reports.Fail, Level: reports.Required,
			Fix: &reports.Fix{Description: "make the init a session leader", AutoFixable: true, Fixer: checks.FixerIDRestartSetsid}},
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
		{"criu", "dump", "--external", "mnt[/etc/hosts]:hosts"},
		{"criu", "dump", "--external", "mnt[/etc/resolv.conf]:resolv.conf"},
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
