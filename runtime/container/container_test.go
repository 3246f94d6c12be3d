package container

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	Init()
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("containers need root (namespaces, mounts): run the tests as root")
	}
}

type fixture struct {
	rootfs  string
	sandbox SandboxFiles
}

// newFixture prepares a rootfs with files and a sandbox.
func newFixture(t *testing.T, w Workload) fixture {
	t.Helper()
	needRoot(t)
	base := t.TempDir()
	rootfs := filepath.Join(base, "rootfs")
	if err := PrepareWorkload(rootfs, w, nil); err != nil {
		t.Fatalf("PrepareWorkload: %v", err)
	}
	sb, err := PrepareSandbox(filepath.Join(base, "sandbox"), "kata-cr-test")
	if err != nil {
		t.Fatalf("PrepareSandbox: %v", err)
	}
	return fixture{rootfs: rootfs, sandbox: sb}
}

func (f fixture) start(t *testing.T, spec Spec) *Container {
	t.Helper()
	spec.Rootfs = f.rootfs
	spec.Sandbox = f.sandbox
	c, err := Start(spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Kill(); err != nil {
			t.Errorf("Kill: %v", err)
		}
	})
	return c
}

// status reads the fields of /proc/PID/status.
func status(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return out
}

func sleepWorkload(t *testing.T) Workload {
	w, err := Lookup("sleep")
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestStartSession(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	tests := []struct {
		setsid bool
		// The last field of NSsid: the session in the container's pid
		// namespace, 0 when the session leader is outside it.
		wantNSsid string
	}{
		{false, "0"},
		{true, "1"},
	}
	for _, tt := range tests {
		t.Run("setsid="+strconv.FormatBool(tt.setsid), func(t *testing.T) {
			c := f.start(t, Spec{Args: []string{"busybox", "sleep", "3600"}, Setsid: tt.setsid})
			st := status(t, c.PID())
			nspid := strings.Fields(st["NSpid"])
			if len(nspid) != 2 || nspid[1] != "1" || nspid[0] != strconv.Itoa(c.PID()) {
				t.Errorf("NSpid %q: want %d 1", st["NSpid"], c.PID())
			}
			nssid := strings.Fields(st["NSsid"])
			if len(nssid) != 2 || nssid[1] != tt.wantNSsid {
				t.Errorf("NSsid %q: want the container's view %s", st["NSsid"], tt.wantNSsid)
			}
			// Either way the init leads its own process group.
			if nspgid := strings.Fields(st["NSpgid"]); len(nspgid) != 2 || nspgid[1] != "1" {
				t.Errorf("NSpgid %q: want the init's own group, 1", st["NSpgid"])
			}
			sid, err := unix.Getsid(c.PID())
			if err != nil {
				t.Fatal(err)
			}
			mine, _ := unix.Getsid(0)
			if tt.setsid && sid != c.PID() {
				t.Errorf("session %d: want the init's own %d", sid, c.PID())
			}
			if !tt.setsid && sid != mine {
				t.Errorf("session %d: want the launcher's %d (Kata 2.5-4.0 for a non-terminal process)", sid, mine)
			}
			if !c.Running() {
				t.Error("Running() = false")
			}
		})
	}
}

func TestContainerMounts(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	c := f.start(t, Spec{
		Args:     []string{"sh", "-c", "hostname > /tmp/hostname; exec sleep 3600"},
		Setsid:   true,
		Hostname: "kata-cr-test",
		ShmSize:  8 << 20,
	})
	p := Probe{PID: c.PID()}

	hosts, err := p.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(hosts, []byte(SandboxHostsMarker)) {
		t.Errorf("the container's /etc/hosts lacks the sandbox's line:\n%s", hosts)
	}
	if err := CheckSandboxFiles("/proc", c.PID(), f.sandbox); err != nil {
		t.Error(err)
	}
	// Underneath the bind, the rootfs's own file is still empty.
	if data, _ := os.ReadFile(filepath.Join(f.rootfs, "etc/hosts")); len(data) != 0 {
		t.Errorf("the bind mount leaked onto the rootfs file: %q", data)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = p.poll(ctx, "read hostname", func() error {
		b, err := p.ReadFile("/tmp/hostname")
		if err != nil || len(b) == 0 {
			return notYet("no hostname yet")
		}
		if got := strings.TrimSpace(string(b)); got != "kata-cr-test" {
			t.Errorf("hostname in the container %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// stdio is the container's own /dev/null, on the container's /dev.
	fd0 := filepath.Join("/proc", strconv.Itoa(c.PID()), "fd", "0")
	link, err := os.Readlink(fd0)
	if err != nil {
		t.Fatal(err)
	}
	if link != "/dev/null" {
		t.Errorf("fd 0 -> %q, want /dev/null", link)
	}
	var stdin, inner, guest unix.Stat_t
	if err := unix.Stat(fd0, &stdin); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(p.Path("/dev/null"), &inner); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/dev/null", &guest); err != nil {
		t.Fatal(err)
	}
	if stdin.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(stdin.Rdev) != 1 || unix.Minor(stdin.Rdev) != 3 {
		t.Errorf("fd 0 is not a null device: mode %o rdev %d:%d", stdin.Mode, unix.Major(stdin.Rdev), unix.Minor(stdin.Rdev))
	}
	if stdin.Dev != inner.Dev || stdin.Ino != inner.Ino {
		t.Errorf("fd 0 is not the container's /dev/null node")
	}
	if stdin.Dev == guest.Dev {
		t.Errorf("fd 0 is on the launcher's /dev, which CRIU cannot find in the container")
	}

	mounts, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.PID()), "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/dev": "tmpfs", "/dev/shm": "tmpfs", "/proc": "proc", "/etc/hosts": "", "/etc/hostname": "", "/etc/resolv.conf": ""}
	for _, l := range strings.Split(string(mounts), "\n") {
		fields := strings.Fields(l)
		if len(fields) < 10 {
			continue
		}
		mp := fields[4]
		sep := 6
		for fields[sep] != "-" {
			sep++
		}
		if fstype, ok := want[mp]; ok && (fstype == "" || fields[sep+1] == fstype) {
			delete(want, mp)
			if mp == "/dev/shm" && !strings.Contains(fields[sep+3], "size=8192k") {
				t.Errorf("/dev/shm options %q: want size=8192k", fields[sep+3])
			}
		}
		if strings.Contains(l, " shared:") {
			t.Errorf("mount propagates to the launcher (not private): %s", l)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing mounts %v in\n%s", want, mounts)
	}
	// The container's root is the rootfs, not the launcher's.
	root, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(c.PID()), "root"))
	if err != nil || root != "/" {
		t.Errorf("root link %q %v", root, err)
	}
	if _, err := os.Stat(p.Path("/bin/busybox")); err != nil {
		t.Errorf("the container does not see its rootfs: %v", err)
	}
}

func TestTerminal(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	c := f.start(t, Spec{Args: []string{"sh", "-c", "echo ready-$(tty); exec sleep 3600"}, Terminal: true})
	if c.Console() == nil {
		t.Fatal("no console for a terminal container")
	}
	got := make(chan string, 1)
	go func() {
		var buf bytes.Buffer
		b := make([]byte, 256)
		for !strings.Contains(buf.String(), "\n") {
			n, err := c.Console().Read(b)
			if err != nil {
				break
			}
			buf.Write(b[:n])
		}
		got <- buf.String()
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, "ready-/dev/pts/0") {
			t.Errorf("console said %q, want the slave /dev/pts/0 of the container's devpts", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing on the console")
	}
	st := status(t, c.PID())
	if nssid := strings.Fields(st["NSsid"]); len(nssid) != 2 || nssid[1] != "1" {
		t.Errorf("a terminal init must be a session leader: NSsid %q", st["NSsid"])
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.PID()), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	if fields[4] == "0" {
		t.Error("the init has no controlling terminal")
	}
	key, err := c.TTYKey()
	if err != nil {
		t.Fatal(err)
	}
	var st0 unix.Stat_t
	if err := unix.Stat(filepath.Join("/proc", strconv.Itoa(c.PID()), "fd", "0"), &st0); err != nil {
		t.Fatal(err)
	}
	if want := "tty[" + strconv.FormatUint(st0.Rdev, 16) + ":" + strconv.FormatUint(st0.Dev, 16) + "]"; key != want {
		t.Errorf("TTYKey = %q, want %q", key, want)
	}
	master, slave, err := OpenPty()
	if err != nil {
		t.Fatal(err)
	}
	master.Close()
	slave.Close()
	nc := f.start(t, Spec{Args: []string{"busybox", "sleep", "3600"}})
	if _, err := nc.TTYKey(); err == nil {
		t.Error("TTYKey of a container without a terminal succeeded")
	}
}

func TestKillCleansUp(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	c, err := Start(Spec{Rootfs: f.rootfs, Args: []string{"sh", "-c", "sleep 3600 & sleep 3600 & wait"}, Sandbox: f.sandbox})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := Probe{PID: c.PID()}
	if err := readyInTree("sleep", "3600")(ctx, p); err != nil {
		t.Fatal(err)
	}
	tree, err := p.Tree()
	if err != nil || len(tree) != 3 {
		t.Fatalf("tree %v %v", tree, err)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if c.Running() {
		t.Error("Running() after Kill")
	}
	st, err := c.Wait(ctx)
	if err != nil || st.Signal != syscall.SIGKILL {
		t.Errorf("Wait = %v, %v: want killed by SIGKILL", st, err)
	}
	for _, pid := range tree {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
			t.Errorf("process %d of the container survived", pid)
		}
	}
	assertNoZombies(t)
	if err := c.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
}

// assertNoZombies fails when a child of the test process is a zombie.
func assertNoZombies(t *testing.T) {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndex(s, ") ")
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) > 1 && f[1] == me && f[0] == "Z" {
			t.Errorf("zombie child %s", e.Name())
		}
	}
}

func TestWaitReturnsExitCode(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	c := f.start(t, Spec{Args: []string{"sh", "-c", "exit 7"}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.Wait(ctx)
	if err != nil || st.Code != 7 || st.Signal != 0 {
		t.Errorf("Wait = %v, %v: want exit status 7", st, err)
	}
	assertNoZombies(t)
}

func TestStartErrors(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"relative rootfs", Spec{Rootfs: "rootfs", Args: []string{"sh"}}, `container rootfs "rootfs": must be an absolute path`},
		{"no args", Spec{Rootfs: f.rootfs}, "container args: empty"},
		{"missing command", Spec{Rootfs: f.rootfs, Args: []string{"no-such-cmd"}}, `command "no-such-cmd": not found in the container's PATH`},
		{"missing sandbox file", Spec{Rootfs: f.rootfs, Args: []string{"sh"}, Sandbox: SandboxFiles{Hosts: "/nonexistent/hosts"}}, "sandbox file for /etc/hosts"},
		{"bad env", Spec{Rootfs: f.rootfs, Args: []string{"sh"}, Env: []string{"NOEQUALS"}}, `container env "NOEQUALS": want NAME=VALUE`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Start(tt.spec)
			if err == nil {
				c.Kill()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Start = %q, want one line with %q", err, tt.want)
			}
		})
	}
	assertNoZombies(t)
}

func TestAdopt(t *testing.T) {
	needRoot(t)
	t.Run("child", func(t *testing.T) {
		cmd := exec.Command("sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c, err := Adopt(cmd.Process.Pid, "/")
		if err != nil {
			t.Fatal(err)
		}
		if !c.Running() {
			t.Fatal("adopted process not running")
		}
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
		st, err := c.Wait(context.Background())
		if err != nil || st.Signal != syscall.SIGKILL {
			t.Errorf("Wait = %v, %v: want killed by SIGKILL (reaped through the pidfd)", st, err)
		}
		assertNoZombies(t)
	})
	t.Run("not a child", func(t *testing.T) {
		// sh starts a background sleep, prints its pid and exits: the
		// sleep is reparented away from us.
		out, err := exec.Command("sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!").Output()
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		c, err := Adopt(pid, "/")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Kill(); err != nil {
			t.Fatal(err)
		}
		st, err := c.Wait(context.Background())
		if err != nil || st.Code != -1 {
			t.Errorf("Wait = %v, %v: want an unknown status", st, err)
		}
	})
	t.Run("ended elsewhere", func(t *testing.T) {
		// Once the reaper closes the pidfd its number can be reused by
		// another file: Kill must not signal through it any more.
		cmd := exec.Command("sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c, err := Adopt(cmd.Process.Pid, "/")
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-c.Done()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c.mu.Lock()
			fd := c.pidfd
			c.mu.Unlock()
			if fd == -1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pidfd %d still held after the process ended", fd)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := c.Kill(); err != nil {
			t.Errorf("Kill after the end: %v", err)
		}
	})
}

func TestPrepareRootfs(t *testing.T) {
	needRoot(t)
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Fatal("flock not found: install util-linux")
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := PrepareRootfs(dir, map[string]string{"/usr/bin/flock": flock}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bin/busybox", "usr/bin/flock", "etc/passwd", "etc/hosts"} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v", p, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != BusyboxPath {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
	// flock is dynamic: its loader and libc came along.
	libs, _ := filepath.Glob(filepath.Join(dir, "lib*/*/libc.so.6"))
	loaders, _ := filepath.Glob(filepath.Join(dir, "lib64/ld-linux-*"))
	if len(libs) == 0 || len(loaders) == 0 {
		t.Errorf("flock's shared libraries are missing (libc %v, loader %v)", libs, loaders)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("tmp mode %v %v", fi.Mode(), err)
	}
	if err := PrepareRootfs("relative", nil); err == nil {
		t.Error("a relative rootfs was accepted")
	}
}

func TestLookup(t *testing.T) {
	for _, name := range []string{"sleep", "seed-fix", "counter", "flock", "nginx", "redis"} {
		if _, err := Lookup(name); err != nil {
			t.Errorf("Lookup(%q): %v", name, err)
		}
	}
	_, err := Lookup("postgres")
	want := `unknown workload "postgres": known workloads are counter, flock, nginx, redis, seed-fix, sleep`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Lookup(postgres) = %v, want %q", err, want)
	}
	if DefaultWorkload != "sleep" {
		t.Errorf("the default workload is %q, want the seed's sleep", DefaultWorkload)
	}
	if _, err := (Workload{Name: "x", Binaries: []Binary{{Name: "no-such-binary", Package: "nothing"}}}).HostFiles(); err == nil ||
		!strings.Contains(err.Error(), "apt-get install nothing") {
		t.Errorf("HostFiles of a missing binary = %v", err)
	}
}
