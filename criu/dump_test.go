package criu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/criu/criuopt"
)

// TestRestoreArgsInheritFD: the words of a restore are its options' (the
// table's, tested in criuopt) with each inherited file after them.
func TestRestoreArgsInheritFD(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := RestoreOpts{Set: criuopt.Set{FileLocks: true, Root: "/r"}, InheritFDs: []InheritFD{{Key: "tty[8800:27]", File: f}}}
	want := []string{"--file-locks", "--root", "/r", "--inherit-fd", "fd[" + strconv.Itoa(int(f.Fd())) + "]:tty[8800:27]"}
	if got := o.Args(); !reflect.DeepEqual(got, want) {
		t.Errorf("Args() = %q, want %q", got, want)
	}
}

func TestRPCOptsAlwaysLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := DumpOpts{PID: 42, Set: criuopt.Set{ExternalMounts: []ExternalMount{{Path: "/etc/hosts", Key: "hosts"}}, SkipMounts: []string{"/x"}, ManageCgroups: "soft"}}.rpcOpts(ctx, 7, 8, DumpLogName)
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
	// CRIU's own --timeout is its time to seize the tree, not the dump's
	// time limit (the context's, which kills CRIU).
	if d.GetTimeout() != uint32(DefaultFreezeTimeout/time.Second) {
		t.Errorf("timeout %d, want the default freeze timeout %s", d.GetTimeout(), DefaultFreezeTimeout)
	}
	if d, err := (DumpOpts{PID: 42, FreezeTimeout: 2500 * time.Millisecond}).rpcOpts(ctx, 7, 8, DumpLogName); err != nil || d.GetTimeout() != 3 {
		t.Errorf("freeze timeout 2.5 s: --timeout %d (%v), want 3", d.GetTimeout(), err)
	}
	r, err := RestoreOpts{Set: criuopt.Set{RestoreSibling: true, Root: "/r", ExternalMounts: []ExternalMount{{Key: "hosts", Path: "/sb/hosts"}}}}.rpcOpts(context.Background(), 7, 8, RestoreLogName)
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
	res, err := b.Dump(context.Background(), DumpOpts{PID: cmd.Process.Pid, ImagesDir: filepath.Join(dir, "img"), Set: criuopt.Set{ShellJob: true, LeaveRunning: true}})
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
