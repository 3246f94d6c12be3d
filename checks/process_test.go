package checks

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
)

// These tests build real process trees in new pid (and mount) namespaces
// and run the checks on them through the live /proc.

func procNeedRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("this test builds process trees in new pid and mount namespaces: run it as root (CI does)")
	}
}

func procNeedTool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s not found on PATH: apt-get install %s", name, pkg)
	}
	return p
}

func procHostEnv(tb testing.TB, pid int) *Env {
	tb.Helper()
	env, err := NewHostEnv("/proc", "/sys")
	if err != nil {
		tb.Fatalf("host env: %v", err)
	}
	env.PID = pid
	return env
}

// procStart starts cmd as the init of a new pid namespace, kills it (and
// with it the whole namespace) at cleanup, and waits until ready says the
// tree is complete.
func procStart(tb testing.TB, cmd *exec.Cmd, ready func(*procTree) bool) int {
	tb.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWPID
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %v: %v", cmd.Args, err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	env := procHostEnv(tb, cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		t, err := procLoadTree(env)
		if err == nil && ready(t) {
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			desc := fmt.Sprint(err)
			if t != nil {
				for _, p := range t.Procs {
					desc += " " + p.label()
				}
			}
			tb.Fatalf("tree of %v not ready after 10s: %s", cmd.Args, desc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procCount is a ready func: n processes named comm.
func procCount(comm string, n int) func(*procTree) bool {
	return func(t *procTree) bool {
		c := 0
		for _, p := range t.Procs {
			if p.Comm == comm {
				c++
			}
		}
		return c >= n
	}
}

// procRunAll runs the checks as the doctor does: several at once, sharing
// one reading of the tree.
func procRunAll(tb testing.TB, pid int) []reports.Finding {
	tb.Helper()
	return Runner{Checks: append(ProcessChecks(), MountChecks()...), Workers: 4}.Run(context.Background(), procHostEnv(tb, pid))
}

func procByID(fs []reports.Finding, id string) []reports.Finding {
	var out []reports.Finding
	for _, f := range fs {
		if f.ID == id {
			out = append(out, f)
		}
	}
	return out
}

func procOne(tb testing.TB, fs []reports.Finding, id string) reports.Finding {
	tb.Helper()
	got := procByID(fs, id)
	if len(got) != 1 {
		tb.Fatalf("want one %s finding, got %d: %+v", id, len(got), got)
	}
	return got[0]
}

func procDump(fs []reports.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  %s %s: %s %s\n", f.Status, f.ID, f.Summary, f.Reason)
		for _, e := range f.Evidence {
			fmt.Fprintf(&b, "      %s\n", e)
		}
	}
	return b.String()
}

func TestProcSessionLeaderLive(t *testing.T) {
	procNeedRoot(t)
	sh := procNeedTool(t, "sh", "dash")
	procNeedTool(t, "setsid", "util-linux")
	procNeedTool(t, "sleep", "coreutils")
	tests := []struct {
		name     string
		args     []string
		setsid   bool
		ready    func(*procTree) bool
		want     reports.Status
		wantDump bool
		evidence string
	}{
		{name: "init without setsid, as Kata starts a non-tty process",
			args: []string{sh, "-c", "sleep 1000 & wait"}, ready: procCount("sleep", 1),
			want: reports.Fail},
		{name: "init is a session leader (setsid as pid 1)",
			args: []string{sh, "-c", "sleep 1000 & wait"}, setsid: true, ready: procCount("sleep", 1),
			want: reports.Pass, wantDump: true},
		{name: "the seed's fix: setsid wraps a child, not pid 1",
			args: []string{sh, "-c", `setsid sh -c "sleep 1000"`}, ready: procCount("sleep", 1),
			want: reports.Fail, evidence: "does not help"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.args[0], tc.args[1:]...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: tc.setsid}
			pid := procStart(t, cmd, tc.ready)
			fs := procRunAll(t, pid)
			f := procOne(t, fs, "process.session-leader")
			t.Logf("%s", procDump([]reports.Finding{f}))
			if f.Status != tc.want {
				t.Fatalf("session-leader: got %s, want %s\n%s", f.Status, tc.want, procDump(fs))
			}
			if pidns := procOne(t, fs, "process.pidns"); pidns.Status != reports.Pass || !strings.Contains(pidns.Summary, "pid 1 (init)") {
				t.Errorf("pidns: %s %s", pidns.Status, pidns.Summary)
			}
			p := Predict(fs)
			if p.DumpWillSucceed != tc.wantDump {
				t.Fatalf("Predict: dump will succeed = %v, want %v: %v\n%s", p.DumpWillSucceed, tc.wantDump, p.Reasons, procDump(fs))
			}
			if tc.want != reports.Fail {
				return
			}
			wantSummary := fmt.Sprintf("A session leader of %d(1) is outside of its pid namespace", pid)
			if !strings.Contains(f.Summary, wantSummary) {
				t.Errorf("summary %q does not carry CRIU's message %q", f.Summary, wantSummary)
			}
			if f.Fix == nil || !f.Fix.AutoFixable || f.Fix.Fixer != FixerIDRestartSetsid || !f.Fix.CRIU.IsZero() ||
				!strings.Contains(f.Fix.Description, "runtime call setsid() for it") {
				t.Errorf("fix: %+v", f.Fix)
			}
			if p.WithOptions {
				t.Errorf("Predict says CRIU options help; no option dumps a session outside the namespace")
			}
			if !slices.ContainsFunc(p.Reasons, func(r string) bool { return strings.HasPrefix(r, "process.session-leader: ") }) {
				t.Errorf("Predict reasons %v lack process.session-leader", p.Reasons)
			}
			if tc.evidence != "" && !slices.ContainsFunc(f.Evidence, func(e string) bool { return strings.Contains(e, tc.evidence) }) {
				t.Errorf("evidence lacks %q:\n%s", tc.evidence, strings.Join(f.Evidence, "\n"))
			}
		})
	}
}

// procOpenPTY opens a new pty pair.
func procOpenPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v (mount devpts on /dev/pts)", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave %d: %v", n, err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func TestProcTTYLive(t *testing.T) {
	procNeedRoot(t)
	sleep := procNeedTool(t, "sleep", "coreutils")
	for _, tc := range []struct {
		name         string
		masterInTree bool
		want         reports.Status
	}{
		{name: "terminal whose master is outside the tree", want: reports.Fail},
		{name: "pty pair inside the tree", masterInTree: true, want: reports.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			master, slave := procOpenPTY(t)
			cmd := exec.Command(sleep, "1000")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
			if tc.masterInTree {
				cmd.ExtraFiles = []*os.File{master}
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			pid := procStart(t, cmd, procCount("sleep", 1))
			fs := procRunAll(t, pid)
			f := procOne(t, fs, "process.tty")
			t.Logf("%s", procDump([]reports.Finding{f}))
			if f.Status != tc.want {
				t.Fatalf("tty: got %s, want %s\n%s", f.Status, tc.want, procDump(fs))
			}
			if tc.want == reports.Pass {
				return
			}
			if !strings.Contains(f.Summary, "Found slave peer index") {
				t.Errorf("summary %q lacks CRIU's message", f.Summary)
			}
			if f.Fix == nil || !reflect.DeepEqual(f.Fix.CRIU, criuopt.Set{ShellJob: true}) || !f.Fix.AutoFixable || f.Fix.Fixer != FixerIDCRIUOption {
				t.Errorf("fix: %+v", f.Fix)
			}
			if p := Predict(fs); p.DumpWillSucceed || !p.WithOptions || !p.CRIU.ShellJob {
				t.Errorf("Predict: %+v", p)
			}
		})
	}
}

func TestProcFileLocksLive(t *testing.T) {
	procNeedRoot(t)
	flock := procNeedTool(t, "flock", "util-linux")
	sleep := procNeedTool(t, "sleep", "coreutils")
	lock := filepath.Join(t.TempDir(), "lock")
	for _, tc := range []struct {
		name string
		args []string
		want reports.Status
	}{
		{name: "flock held by the tree", args: []string{flock, lock, sleep, "1000"}, want: reports.Fail},
		{name: "no lock", args: []string{sleep, "1000"}, want: reports.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.args[0], tc.args[1:]...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			pid := procStart(t, cmd, procCount("sleep", 1))
			fs := procRunAll(t, pid)
			f := procOne(t, fs, "process.file-locks")
			t.Logf("%s", procDump([]reports.Finding{f}))
			if f.Status != tc.want {
				t.Fatalf("file-locks: got %s, want %s\n%s", f.Status, tc.want, procDump(fs))
			}
			if tc.want != reports.Fail {
				return
			}
			if !slices.ContainsFunc(f.Evidence, func(e string) bool { return strings.Contains(e, lock) && strings.Contains(e, "FLOCK") }) {
				t.Errorf("evidence does not quote the flock on %s:\n%s", lock, strings.Join(f.Evidence, "\n"))
			}
			if f.Fix == nil || !reflect.DeepEqual(f.Fix.CRIU, criuopt.Set{FileLocks: true}) || f.Fix.Fixer != FixerIDCRIUOption || !f.Fix.AutoFixable {
				t.Errorf("fix: %+v", f.Fix)
			}
		})
	}
}

// procSocketPair returns both ends of a unix socket pair as files, and
// the inode of the second.
func procSocketPair(t *testing.T, typ int) (a, b *os.File, inoB uint64) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	a, b = os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { a.Close(); b.Close() })
	var st unix.Stat_t
	if err := unix.Fstat(fds[1], &st); err != nil {
		t.Fatalf("fstat: %v", err)
	}
	return a, b, st.Ino
}

func TestProcUnixSocketsLive(t *testing.T) {
	procNeedRoot(t)
	sleep := procNeedTool(t, "sleep", "coreutils")
	for _, tc := range []struct {
		name     string
		typ      int
		bothEnds bool
		want     reports.Status
		wantOpts func(ino uint64) criuopt.Set
		auto     bool
	}{
		{name: "stream peer outside the tree", typ: unix.SOCK_STREAM, want: reports.Fail,
			wantOpts: func(ino uint64) criuopt.Set { return criuopt.Set{UnixSockets: []uint32{uint32(ino)}} }},
		{name: "datagram peer outside the tree", typ: unix.SOCK_DGRAM, want: reports.Fail,
			wantOpts: func(uint64) criuopt.Set { return criuopt.Set{ExtUnixSk: true} }, auto: true},
		{name: "both ends inside the tree", typ: unix.SOCK_STREAM, bothEnds: true, want: reports.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, ino := procSocketPair(t, tc.typ)
			cmd := exec.Command(sleep, "1000")
			cmd.ExtraFiles = []*os.File{b}
			if tc.bothEnds {
				cmd.ExtraFiles = append(cmd.ExtraFiles, a)
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			pid := procStart(t, cmd, procCount("sleep", 1))
			fs := procRunAll(t, pid)
			got := procByID(fs, "process.unix-sockets")
			t.Logf("%s", procDump(got))
			if len(got) != 1 || got[0].Status != tc.want {
				t.Fatalf("unix-sockets: got %+v, want one %s\n%s", got, tc.want, procDump(fs))
			}
			f := got[0]
			if tc.want != reports.Fail {
				return
			}
			if f.Fix == nil || !reflect.DeepEqual(f.Fix.CRIU, tc.wantOpts(ino)) || f.Fix.AutoFixable != tc.auto {
				t.Errorf("fix: %+v, want options %v auto %v", f.Fix, tc.wantOpts(ino).DumpArgs(), tc.auto)
			}
			if !slices.ContainsFunc(f.Evidence, func(e string) bool { return strings.Contains(e, fmt.Sprintf("inode %d", ino)) }) {
				t.Errorf("evidence lacks socket inode %d:\n%s", ino, strings.Join(f.Evidence, "\n"))
			}
		})
	}
}

func TestProcTCPLive(t *testing.T) {
	procNeedRoot(t)
	sleep := procNeedTool(t, "sleep", "coreutils")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	connFile, err := c.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connFile.Close() })
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lnFile.Close() })
	for _, tc := range []struct {
		name string
		file *os.File
		want reports.Status
	}{
		{name: "established connection", file: connFile, want: reports.Fail},
		{name: "listening socket", file: lnFile, want: reports.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(sleep, "1000")
			cmd.ExtraFiles = []*os.File{tc.file}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			pid := procStart(t, cmd, procCount("sleep", 1))
			fs := procRunAll(t, pid)
			// The first finding is the connections; a second one says
			// when this machine has no network lock for them.
			f := procByID(fs, "process.tcp")[0]
			t.Logf("%s", procDump([]reports.Finding{f}))
			if f.Status != tc.want {
				t.Fatalf("tcp: got %s, want %s\n%s", f.Status, tc.want, procDump(fs))
			}
			if tc.want == reports.Fail && (f.Fix == nil || !f.Fix.CRIU.TCPEstablished || !f.Fix.Restore.TCPEstablished) {
				t.Errorf("fix: %+v", f.Fix)
			}
			if tc.want == reports.Pass && !strings.Contains(f.Summary, "1 listening") {
				t.Errorf("summary %q does not count the listening socket", f.Summary)
			}
		})
	}
}

func TestProcPtraceLive(t *testing.T) {
	procNeedRoot(t)
	sleep := procNeedTool(t, "sleep", "coreutils")
	cmd := exec.Command(sleep, "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pid := procStart(t, cmd, procCount("sleep", 1))
	seized := make(chan error, 1)
	tid := make(chan int, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		// ptrace ties the tracee to this thread: it stays locked, and when
		// the goroutine ends the thread exits and the kernel detaches.
		runtime.LockOSThread()
		tid <- unix.Gettid()
		seized <- unix.PtraceSeize(pid)
		<-done
	}()
	tracer := <-tid
	if err := <-seized; err != nil {
		t.Fatalf("ptrace seize %d: %v", pid, err)
	}
	fs := procRunAll(t, pid)
	f := procOne(t, fs, "process.ptrace")
	t.Logf("%s", procDump([]reports.Finding{f}))
	ev := strings.Join(f.Evidence, "\n")
	if f.Status != reports.Fail || !strings.Contains(ev, "TracerPid "+strconv.Itoa(tracer)) || !strings.Contains(ev, "outside the tree") {
		t.Fatalf("ptrace: %s %s\n%s", f.Status, f.Summary, strings.Join(f.Evidence, "\n"))
	}
}

func TestProcGhostFilesLive(t *testing.T) {
	procNeedRoot(t)
	sleep := procNeedTool(t, "sleep", "coreutils")
	for _, tc := range []struct {
		name string
		size int64
		want reports.Status
		opt  criuopt.Set
		// summary is a part of the summary, when the test cares.
		summary string
	}{
		{name: "deleted file over the ghost limit", size: 3<<20 + 1, want: reports.Fail, opt: criuopt.Set{GhostLimit: 4194304}},
		{name: "small deleted file", size: 4096, want: reports.Pass},
		// An empty file used to be reported as "holds no deleted files".
		{name: "empty deleted file", size: 0, want: reports.Pass, summary: "within CRIU's ghost limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "scratch")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			if err := f.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(sleep, "1000")
			cmd.ExtraFiles = []*os.File{f}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			pid := procStart(t, cmd, procCount("sleep", 1))
			fs := procRunAll(t, pid)
			g := procOne(t, fs, "process.ghost-files")
			t.Logf("%s", procDump([]reports.Finding{g}))
			if g.Status != tc.want || !strings.Contains(strings.Join(g.Evidence, "\n"), p) {
				t.Fatalf("ghost-files: %s %s\n%s", g.Status, g.Summary, strings.Join(g.Evidence, "\n"))
			}
			if !strings.Contains(g.Summary, tc.summary) {
				t.Errorf("summary %q, want it to say %q", g.Summary, tc.summary)
			}
			if !tc.opt.IsZero() && (g.Fix == nil || !reflect.DeepEqual(g.Fix.CRIU, tc.opt)) {
				t.Errorf("fix: %+v, want %s", g.Fix, tc.opt.DumpArgs())
			}
		})
	}
}

// TestProcHelperProcess is not a test: the mount tests run the test
// binary again as the init of a new mount and pid namespace, and this
// function, told so by the environment, sets up that namespace's mounts
// and execs sleep.
func TestProcHelperProcess(t *testing.T) {
	mode := os.Getenv("KATA_CR_PROC_HELPER")
	if mode == "" {
		return
	}
	dir := os.Getenv("KATA_CR_PROC_HELPER_DIR")
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "helper %s: %s: %v\n", mode, what, err)
		os.Exit(2)
	}
	if mode != "netns-connect" {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fail("make / private", err)
		}
	}
	switch mode {
	case "external-bind":
		// Kata's shape: the sandbox's file bound onto the container's
		// /etc/hosts, the sandbox itself not mounted in the container.
		if err := unix.Mount(filepath.Join(dir, "hosts"), "/etc/hosts", "", unix.MS_BIND, ""); err != nil {
			fail("bind hosts", err)
		}
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			fail("unmount sandbox", err)
		}
	case "internal-bind":
		if err := unix.Mount("kata-cr-test", dir, "tmpfs", 0, "size=1m"); err != nil {
			fail("mount tmpfs", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte("127.0.0.1 inside\n"), 0o644); err != nil {
			fail("write hosts", err)
		}
		if err := unix.Mount(filepath.Join(dir, "hosts"), "/etc/hosts", "", unix.MS_BIND, ""); err != nil {
			fail("bind hosts", err)
		}
	case "netns-connect":
		// A socket made in this new network namespace, connected to a
		// listener of the test in its own: sleep inherits it as fd 3.
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			fail("socket", err)
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: filepath.Join(dir, "sock")}); err != nil {
			fail("connect", err)
		}
		if fd != 3 {
			if err := unix.Dup2(fd, 3); err != nil {
				fail("dup2", err)
			}
		}
	default:
		fail("mode", fmt.Errorf("unknown mode %q", mode))
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		fail("find sleep", err)
	}
	fail("exec sleep", syscall.Exec(sleep, []string{"sleep", "1000"}, os.Environ()))
}

// procStartMountHelper runs the helper in mode as the init of a new mount
// and pid namespace and waits until it has become sleep.
func procStartMountHelper(t *testing.T, mode, dir string) int {
	t.Helper()
	return procStartHelper(t, mode, dir, syscall.CLONE_NEWNS)
}

// procStartHelper runs the helper in mode as the init of a new pid
// namespace and the namespaces of flags, and waits until it has become
// sleep.
func procStartHelper(t *testing.T, mode, dir string, flags uintptr) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcHelperProcess$")
	cmd.Env = append(os.Environ(), "KATA_CR_PROC_HELPER="+mode, "KATA_CR_PROC_HELPER_DIR="+dir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: flags}
	return procStart(t, cmd, procCount("sleep", 1))
}

// TestProcUnixSocketsNetnsLive looks up a socket that lives in the
// workload's own network namespace: the check has to ask unix_diag there.
func TestProcUnixSocketsNetnsLive(t *testing.T) {
	procNeedRoot(t)
	procNeedTool(t, "sleep", "coreutils")
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	})
	pid := procStartHelper(t, "netns-connect", dir, syscall.CLONE_NEWNET)
	target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", pid))
	if err != nil {
		t.Fatal(err)
	}
	ino, ok := proc.SocketInode(target)
	if !ok {
		t.Fatalf("fd 3 of the helper is %s, not a socket", target)
	}
	netns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	self, _ := os.Readlink("/proc/self/ns/net")
	if netns == self {
		t.Fatalf("the helper shares the test's network namespace %s", netns)
	}
	fs := procRunAll(t, pid)
	got := procByID(fs, "process.unix-sockets")
	t.Logf("%s", procDump(got))
	want := criuopt.Set{UnixSockets: []uint32{uint32(ino)}}
	if len(got) != 1 || got[0].Status != reports.Fail || got[0].Fix == nil || !reflect.DeepEqual(got[0].Fix.CRIU, want) {
		t.Fatalf("unix-sockets: want one failure with %v, got:\n%s", want.DumpArgs(), procDump(fs))
	}
}

func TestMountExternalBindLive(t *testing.T) {
	procNeedRoot(t)
	procNeedTool(t, "sleep", "coreutils")
	// The sandbox: a tmpfs mounted where kata-cr runs, with the file the
	// container gets as /etc/hosts.
	sandbox := t.TempDir()
	if err := unix.Mount("kata-cr-test", sandbox, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", sandbox, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sandbox, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(sandbox, "hosts"), []byte("10.0.0.1 sandbox\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	pid := procStartMountHelper(t, "external-bind", sandbox)
	fs := procRunAll(t, pid)
	t.Logf("%s", procDump(fs))
	var hosts *reports.Finding
	for _, f := range procByID(fs, "mount.external-bind") {
		if strings.HasPrefix(f.Summary, "/etc/hosts ") {
			hosts = &f
		}
	}
	if hosts == nil || hosts.Status != reports.Fail {
		t.Fatalf("no failing mount.external-bind for /etc/hosts:\n%s", procDump(fs))
	}
	if !strings.Contains(hosts.Summary, "doesn't have a proper root mount") {
		t.Errorf("summary %q lacks CRIU's message", hosts.Summary)
	}
	fix := hosts.Fix
	hostsMount := criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: "hosts", Path: "/etc/hosts"}}}
	if fix == nil || !reflect.DeepEqual(fix.CRIU, hostsMount) {
		t.Fatalf("dump options: %+v", fix)
	}
	wantRestore := criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: "hosts", Path: filepath.Join(sandbox, "hosts")}}, Root: "/"}
	if !reflect.DeepEqual(fix.Restore, wantRestore) || !fix.AutoFixable || fix.Fixer != FixerIDCRIUOption {
		t.Errorf("restore: %+v, want %v", fix, wantRestore.RestoreArgs())
	}
	if !strings.Contains(fix.Description, "Do not use --skip-mnt") || len(fix.CRIU.SkipMounts) > 0 {
		t.Errorf("fix must warn against --skip-mnt and not use it: %+v", fix)
	}
	// stdio opened by the test in its own mount namespace: CRIU cannot
	// look up that mount in the container's (FACTS: stdio on the guest's
	// /dev/null).
	if f := procOne(t, fs, "process.fd-mounts"); f.Status != reports.Fail || !strings.Contains(strings.Join(f.Evidence, "\n"), "Can't lookup mount=") {
		t.Errorf("fd-mounts: %s %s\n%s", f.Status, f.Summary, strings.Join(f.Evidence, "\n"))
	}
	if p := Predict(fs); p.DumpWillSucceed || !p.CRIU.Contains(hostsMount) {
		t.Errorf("Predict: %+v", p)
	}

	// Negative control: the same bind from a tmpfs mounted inside the
	// container is not external.
	pid = procStartMountHelper(t, "internal-bind", t.TempDir())
	fs = procRunAll(t, pid)
	for _, f := range procByID(fs, "mount.external-bind") {
		if strings.HasPrefix(f.Summary, "/etc/hosts ") {
			t.Errorf("/etc/hosts bound from a tmpfs inside the namespace reported external: %s", f.Summary)
		}
	}
}

func TestProcMissingPID(t *testing.T) {
	data, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	fs := procRunAll(t, pidMax+1)
	var errs []reports.Finding
	for _, f := range fs {
		switch f.Status {
		case reports.Error:
			errs = append(errs, f)
		case reports.Skip:
			if f.Reason == "" {
				t.Errorf("%s: skip without a reason", f.ID)
			}
		default:
			t.Errorf("%s: %s for a missing process", f.ID, f.Status)
		}
	}
	if len(errs) != 1 || errs[0].ID != "process.pidns" || !strings.Contains(errs[0].Reason, "pass the PID of a running process") {
		t.Fatalf("want one error from process.pidns naming the PID, got:\n%s", procDump(errs))
	}

	// No PID at all: the runner skips every check, saying why.
	for _, f := range procRunAll(t, 0) {
		if f.Status != reports.Skip || !strings.Contains(f.Reason, "--pid") {
			t.Errorf("%s without a PID: %s %q", f.ID, f.Status, f.Reason)
		}
	}
}

// TestProcChurn runs the checks on a tree whose processes come and go
// while it is read: they must never error or panic.
func TestProcChurn(t *testing.T) {
	procNeedRoot(t)
	sh := procNeedTool(t, "sh", "dash")
	cmd := exec.Command(sh, "-c", "while :; do sleep 0.001 & sleep 0.002 & wait; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pid := procStart(t, cmd, func(*procTree) bool { return true })
	for i := 0; i < 30; i++ {
		for _, f := range procRunAll(t, pid) {
			if f.Status == reports.Error {
				t.Fatalf("%s errored on a changing tree: %s %s", f.ID, f.Summary, f.Reason)
			}
		}
	}
}

// BenchmarkProcessChecks50 times the process and mount checks on a real
// tree of 50 processes. The doctor should stay under 100 ms on it.
func BenchmarkProcessChecks50(b *testing.B) {
	procNeedRoot(b)
	sh := procNeedTool(b, "sh", "dash")
	cmd := exec.Command(sh, "-c", "i=0; while [ $i -lt 49 ]; do sleep 1000 & i=$((i+1)); done; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pid := procStart(b, cmd, procCount("sleep", 49))
	env := procHostEnv(b, pid)
	r := Runner{Checks: append(ProcessChecks(), MountChecks()...)}
	if n := len(procByID(r.Run(context.Background(), env), "process.pidns")); n != 1 {
		b.Fatalf("process.pidns findings: %d", n)
	}
	if t, err := procLoadTree(env); err != nil || len(t.Procs) != 50 {
		b.Fatalf("tree: %v, %v", t, err)
	}
	// criu --version, timed in the same run, is the yardstick the doctor's
	// time is printed next to.
	criuMS := -1.0
	if criu, err := exec.LookPath("criu"); err == nil {
		start := time.Now()
		if err := exec.Command(criu, "--version").Run(); err == nil {
			criuMS = float64(time.Since(start).Microseconds()) / 1000
		}
	}
	for b.Loop() {
		r.Run(context.Background(), env)
	}
	// b.Loop drops metrics reported before it.
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "doctor-ms")
	if criuMS >= 0 {
		b.ReportMetric(criuMS, "criu-version-ms")
	}
}
