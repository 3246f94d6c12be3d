package criu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDumpArgsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		opts DumpOpts
		args []string
	}{
		{"none", DumpOpts{}, nil},
		{"flags", DumpOpts{LeaveRunning: true, ShellJob: true, FileLocks: true, TCPEstablished: true, ExtUnixSk: true, OrphanPtsMaster: true},
			[]string{"--leave-running", "--shell-job", "--file-locks", "--tcp-established", "--ext-unix-sk", "--orphan-pts-master"}},
		{"external mounts", DumpOpts{ExternalMounts: []ExternalMount{{Path: "/etc/hosts", Key: "hosts"}, {Path: "/etc/resolv.conf", Key: "resolv.conf"}}, External: []string{"unix[4242]"}},
			[]string{"--external", "mnt[/etc/hosts]:hosts", "--external", "mnt[/etc/resolv.conf]:resolv.conf", "--external", "unix[4242]"}},
		{"skip, cgroups, root", DumpOpts{SkipMounts: []string{"/etc/hosts"}, ManageCgroups: "soft", Root: "/run/c/rootfs"},
			[]string{"--skip-mnt", "/etc/hosts", "--manage-cgroups=soft", "--root", "/run/c/rootfs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.opts.Args()
			if !reflect.DeepEqual(got, tt.args) {
				t.Fatalf("Args() = %q, want %q", got, tt.args)
			}
			back, err := ParseDumpArgs(got)
			if err != nil {
				t.Fatalf("ParseDumpArgs(%q): %v", got, err)
			}
			if !reflect.DeepEqual(back, tt.opts) {
				t.Errorf("round trip: %+v, want %+v", back, tt.opts)
			}
		})
	}
}

func TestParseDumpArgsForms(t *testing.T) {
	o, err := ParseDumpArgs([]string{"--external=mnt[/etc/hostname]:hostname", "--manage-cgroups", "ignore", "--shell-job"})
	if err != nil {
		t.Fatal(err)
	}
	want := DumpOpts{ExternalMounts: []ExternalMount{{Path: "/etc/hostname", Key: "hostname"}}, ManageCgroups: "ignore", ShellJob: true}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("got %+v, want %+v", o, want)
	}
}

func TestParseArgsErrors(t *testing.T) {
	tests := []struct {
		restore bool
		args    []string
		want    string
	}{
		{false, []string{"--tree", "1"}, `criu option "--tree": not one kata-cr passes to criu`},
		{false, []string{"--external"}, "criu option --external: missing its value"},
		{false, []string{"--manage-cgroups=sometimes"}, `--manage-cgroups "sometimes": want one of full, ignore, none, props, soft, strict`},
		{false, []string{"--shell-job=yes"}, `criu option "--shell-job=yes": not one kata-cr passes to criu`},
		{false, []string{"--restore-sibling"}, `criu option "--restore-sibling": not one kata-cr passes to criu`},
		// The rejected option is named, not the value after it.
		{false, []string{"--inherit-fd", "fd[3]:tty"}, `criu option "--inherit-fd": not one kata-cr passes to criu`},
		{true, []string{"--inherit-fd", "fd[3]:tty"}, `criu option "--inherit-fd": not one kata-cr passes to criu`},
		{true, []string{"--skip-mnt", "/etc/hosts"}, `criu option "--skip-mnt": not one kata-cr passes to criu`},
		{true, []string{"--leave-running"}, `criu option "--leave-running": not one kata-cr passes to criu`},
		{true, []string{"--root"}, "criu option --root: missing its value"},
	}
	for _, tt := range tests {
		var err error
		if tt.restore {
			_, err = ParseRestoreArgs(tt.args)
		} else {
			_, err = ParseDumpArgs(tt.args)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parse (restore %v) %q = %v, want %q", tt.restore, tt.args, err, tt.want)
		}
	}
}

func TestRestoreArgsRoundTrip(t *testing.T) {
	o := RestoreOpts{
		ShellJob: true, FileLocks: true, TCPEstablished: true, ExtUnixSk: true, RestoreSibling: true,
		ExternalMounts: []ExternalMount{{Key: "hosts", Path: "/run/sandbox/hosts"}},
		External:       []string{"veth[eth0]:vethX"},
		ManageCgroups:  "ignore",
		Root:           "/run/c/rootfs",
	}
	args := o.Args()
	want := []string{"--shell-job", "--file-locks", "--tcp-established", "--ext-unix-sk", "--restore-sibling",
		"--external", "mnt[hosts]:/run/sandbox/hosts", "--external", "veth[eth0]:vethX", "--manage-cgroups=ignore", "--root", "/run/c/rootfs"}
	if !reflect.DeepEqual(args, want) {
		t.Fatalf("Args() = %q, want %q", args, want)
	}
	back, err := ParseRestoreArgs(args)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, o) {
		t.Errorf("round trip: %+v, want %+v", back, o)
	}
	if _, err := ParseRestoreArgs([]string{"--inherit-fd", "fd[3]:tty"}); err == nil {
		t.Error("ParseRestoreArgs accepted --inherit-fd, which needs an open file")
	}
}

func TestRPCOptsAlwaysLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := DumpOpts{PID: 42, ExternalMounts: []ExternalMount{{Path: "/etc/hosts", Key: "hosts"}}, SkipMounts: []string{"/x"}, ManageCgroups: "soft"}.rpcOpts(ctx, 7, 8, DumpLogName)
	if err != nil {
		t.Fatal(err)
	}
	if d.GetLogLevel() != 4 || d.GetLogFile() != DumpLogName || d.GetImagesDirFd() != 7 || d.GetWorkDirFd() != 8 || d.GetPid() != 42 {
		t.Errorf("dump opts: level %d file %q images %d work %d pid %d", d.GetLogLevel(), d.GetLogFile(), d.GetImagesDirFd(), d.GetWorkDirFd(), d.GetPid())
	}
	if !reflect.DeepEqual(d.GetExternal(), []string{"mnt[/etc/hosts]:hosts"}) || !reflect.DeepEqual(d.GetSkipMnt(), []string{"/x"}) {
		t.Errorf("external %q skip %q", d.GetExternal(), d.GetSkipMnt())
	}
	if !d.GetManageCgroups() || d.GetManageCgroupsMode().String() != "SOFT" {
		t.Errorf("cgroups %v %v", d.GetManageCgroups(), d.GetManageCgroupsMode())
	}
	if d.GetTimeout() < 80 || d.GetTimeout() > 90 {
		t.Errorf("timeout %d, want about 90 s from the context", d.GetTimeout())
	}
	r, err := RestoreOpts{RestoreSibling: true, Root: "/r", ExternalMounts: []ExternalMount{{Key: "hosts", Path: "/sb/hosts"}}}.rpcOpts(context.Background(), 7, 8, RestoreLogName)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetLogLevel() != 4 || r.GetLogFile() != RestoreLogName || !r.GetRstSibling() || r.GetRoot() != "/r" || r.Timeout != nil {
		t.Errorf("restore opts: %v", r)
	}
	if !reflect.DeepEqual(r.GetExternal(), []string{"mnt[hosts]:/sb/hosts"}) {
		t.Errorf("restore external %q", r.GetExternal())
	}
	expired, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := (DumpOpts{PID: 1}).rpcOpts(expired, 7, 8, DumpLogName); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestErrorQuotesLog(t *testing.T) {
	src, err := os.ReadFile("../criulog/testdata/dump-sl-plain.log")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), DumpLogName)
	if err := os.WriteFile(logPath, src, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newError("dump", logPath, errors.New("operation failed (msg: err:0)\ncriu swrk failed: exit status 1"))
	want := []string{
		"Error (criu/cr-dump.c:1618): A session leader of 206(1) is outside of its pid namespace",
		"Error (criu/cr-dump.c:2053): Dumping FAILED.",
	}
	if !reflect.DeepEqual(e.ErrorLines, want) {
		t.Errorf("ErrorLines = %q, want %q", e.ErrorLines, want)
	}
	if len(e.Explanations) == 0 || e.Explanations[0].Signature != "session-leader-outside-pidns" || !e.Explanations[0].Known {
		t.Fatalf("explanations: %+v", e.Explanations)
	}
	msg := e.Error()
	if !strings.Contains(msg, "A session leader of 206(1) is outside of its pid namespace") || !strings.Contains(msg, logPath) || strings.Contains(msg, "\n") {
		t.Errorf("Error() = %q: want the session-leader line and the log path on one line", msg)
	}

	gone := newError("restore", filepath.Join(t.TempDir(), "nope.log"), errors.New("boom"))
	if gone.LogPath != "" || !strings.Contains(gone.Error(), "the log cannot be read") {
		t.Errorf("missing log: %v", gone)
	}
}

func TestLogErrors(t *testing.T) {
	lines := []string{
		"(00.001036) Version: 3.17.1 (gitid 0)",
		"(00.295595) Error (criu/cr-dump.c:1618): A session leader of 206(1) is outside of its pid namespace",
		"Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds",
		"(00.3) Warn  (criu/net.c:3767): NSID isn't reported for network links",
	}
	got := LogErrors(lines)
	want := []string{
		"Error (criu/cr-dump.c:1618): A session leader of 206(1) is outside of its pid namespace",
		"Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LogErrors = %q, want %q", got, want)
	}
}

// TestDumpOnThisHost runs a real dump of a real process with the host's
// criu. Where that CRIU cannot work on the running kernel (CRIU 3.17.1 on
// 6.13 or later: vDSO) the dump must fail with the log quoted and
// explained; where it can, the images must hold the live tree.
func TestDumpOnThisHost(t *testing.T) {
	path, err := exec.LookPath("criu")
	if err != nil {
		path = "/usr/sbin/criu"
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("criu not found: install criu (apt-get install criu): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("criu dump needs root: run the tests as root")
	}
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	live, err := LiveTree("/proc", cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b := &Binary{Path: path}
	res, err := b.Dump(context.Background(), DumpOpts{PID: cmd.Process.Pid, ImagesDir: filepath.Join(dir, "img"), ShellJob: true, LeaveRunning: true})
	if err != nil {
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("Dump error is %T, want *Error: %v", err, err)
		}
		if _, serr := os.Stat(ce.LogPath); serr != nil {
			t.Fatalf("the error's log %q: %v", ce.LogPath, serr)
		}
		if len(ce.ErrorLines) == 0 || len(ce.Explanations) == 0 {
			t.Fatalf("error without quoted lines or explanations: %v", err)
		}
		t.Logf("dump failed as this host's CRIU does on this kernel: %v (%s)", err, ce.Explanations[0].Signature)
		return
	}
	if _, err := os.Stat(res.LogPath); err != nil {
		t.Errorf("log %s: %v", res.LogPath, err)
	}
	dumped, err := ReadPstree(res.ImagesDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := CompareTrees(dumped, live); err != nil {
		t.Error(err)
	}
	if _, err := ReadDumpStats(res.ImagesDir); err != nil {
		t.Error(err)
	}
}

func TestRestoreRefusesEmptyDir(t *testing.T) {
	b := &Binary{Path: "/usr/sbin/criu"}
	_, err := b.Restore(context.Background(), RestoreOpts{ImagesDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "holds no CRIU images") {
		t.Errorf("Restore of an empty dir = %v", err)
	}
}
