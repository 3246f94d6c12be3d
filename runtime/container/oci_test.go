package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/proc"
)

// TestCheckSpec: every key kata-cr does not run as Kata's agent would is
// refused by name; the generated spec and the keys Kata ignores by default
// pass.
func TestCheckSpec(t *testing.T) {
	tests := []struct {
		name string
		edit func(s *specs.Spec)
		key  string
	}{
		{"generated", func(*specs.Spec) {}, ""},
		{"seccomp, device rules and a network namespace path", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
			s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
			s.Linux.Namespaces[4].Path = "/var/run/netns/pod"
		}, ""},
		{"limits", func(s *specs.Spec) {
			limit, pids := int64(64<<20), int64(100)
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, Pids: &specs.LinuxPids{Limit: &pids}}
		}, ""},
		{"old version", func(s *specs.Spec) { s.Version = "0.6.0" }, "ociVersion"},
		{"no root", func(s *specs.Spec) { s.Root = nil }, "root.path"},
		{"no args", func(s *specs.Spec) { s.Process.Args = nil }, "process.args"},
		{"relative cwd", func(s *specs.Spec) { s.Process.Cwd = "tmp" }, "process.cwd"},
		{"bad env", func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "NOEQUALS") }, "process.env"},
		{"unknown capability", func(s *specs.Spec) { s.Process.Capabilities.Ambient = []string{"CAP_FLY"} }, "process.capabilities.ambient"},
		{"unknown rlimit", func(s *specs.Spec) { s.Process.Rlimits[0].Type = "RLIMIT_FUN" }, "process.rlimits"},
		{"selinux", func(s *specs.Spec) { s.Process.SelinuxLabel = "system_u:system_r:container_t:s0" }, "process.selinuxLabel"},
		{"bind mount", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Source: "/srv", Options: []string{"bind"}})
		}, "mounts[7] (/data)"},
		{"nfs mount", func(s *specs.Spec) { s.Mounts = append(s.Mounts, specs.Mount{Destination: "/nfs", Type: "nfs"}) }, "mounts[7] (/nfs)"},
		{"relative mount", func(s *specs.Spec) { s.Mounts[0].Destination = "proc" }, "mounts[0] (proc).destination"},
		{"user namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}, "linux.namespaces[6] (user)"},
		{"joined pid namespace", func(s *specs.Spec) { s.Linux.Namespaces[0].Path = "/proc/1/ns/pid" }, "linux.namespaces[0] (pid).path"},
		{"no pid namespace", func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[1:] }, "linux.namespaces"},
		{"id mappings", func(s *specs.Spec) { s.Linux.UIDMappings = []specs.LinuxIDMapping{{Size: 1}} }, "linux.uidMappings"},
		{"systemd cgroup", func(s *specs.Spec) { s.Linux.CgroupsPath = "system.slice:kata:x" }, "linux.cgroupsPath"},
		{"shared propagation", func(s *specs.Spec) { s.Linux.RootfsPropagation = "rshared" }, "linux.rootfsPropagation"},
		{"block io", func(s *specs.Spec) { s.Linux.Resources = &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{}} }, "linux.resources.blockIO"},
		{"swappiness", func(s *specs.Spec) {
			v := uint64(10)
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: &v}}
		}, "linux.resources.memory.swappiness"},
		{"bad device", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "z"}} }, "linux.devices[0] (/dev/x).type"},
		{"hooks", func(s *specs.Spec) { s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/x"}}} }, "hooks"},
		{"windows", func(s *specs.Spec) { s.Windows = &specs.Windows{} }, "windows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := GenerateSpec("t", []string{"sleep", "1"})
			tt.edit(s)
			err := CheckSpec(s)
			var ue *UnsupportedError
			switch {
			case tt.key == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.key != "" && (!errors.As(err, &ue) || ue.Key != tt.key):
				t.Errorf("CheckSpec = %v, want the key %q named", err, tt.key)
			case tt.key != "" && (strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), BundleConfig+": "+tt.key+": ")):
				t.Errorf("CheckSpec = %q: want one line %q", err, BundleConfig+": "+tt.key+": ...")
			}
		})
	}
	s := GenerateSpec("t", []string{"sleep", "1"})
	s.Linux.Seccomp = &specs.LinuxSeccomp{}
	if notes := SpecNotes(s); len(notes) != 1 || !strings.Contains(notes[0], "disable_guest_seccomp") {
		t.Errorf("SpecNotes = %q, want the seccomp profile noted as not applied", notes)
	}
}

// TestCgroupFiles: linux.resources become the cgroup v2 files runc and
// Kata's agent write.
func TestCgroupFiles(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	u := func(v uint64) *uint64 { return &v }
	got := cgroupFiles(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i(256 << 20), Reservation: i(64 << 20), Swap: i(512 << 20)},
		CPU:    &specs.LinuxCPU{Shares: u(1024), Quota: i(50000), Period: u(100000), Cpus: "0"},
		Pids:   &specs.LinuxPids{Limit: i(-1)},
	})
	want := map[string]string{
		"memory.max": "268435456", "memory.low": "67108864", "memory.swap.max": "268435456",
		"cpu.weight": "39", "cpu.max": "50000 100000", "cpuset.cpus": "0", "pids.max": "max",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("files %v, want %v", got, want)
	}
	if len(cgroupFiles(nil)) != 0 {
		t.Error("no resources, yet files")
	}
}

// TestLoadBundle reads a bundle from disk: a relative root.path is the
// bundle's, and the spec runs as given.
func TestLoadBundle(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	dir := t.TempDir()
	s := GenerateSpec("bundle-test", []string{"sh", "-c", "id -u > /tmp/uid; exec sleep 3600"})
	s.Root.Path = f.rootfs
	s.Process.User = specs.User{UID: 65534, GID: 65534}
	s.Process.NoNewPrivileges = true
	s.Hostname = "from-the-bundle"
	data, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, BundleConfig), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Rootfs != f.rootfs || b.Spec.Hostname != "from-the-bundle" {
		t.Fatalf("bundle %+v", b)
	}
	c, err := Start(Spec{Rootfs: b.Rootfs, OCI: b.Spec, Setsid: true, Sandbox: f.sandbox})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Kill() })
	p := Probe{PID: c.PID()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.poll(ctx, "wait for the uid", func() error {
		if b, err := p.ReadFile("/tmp/uid"); err != nil || len(b) == 0 {
			return notYet("no uid yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if uid, _ := p.ReadFile("/tmp/uid"); strings.TrimSpace(string(uid)) != "65534" {
		t.Errorf("the process runs as uid %q, want the spec's 65534", uid)
	}
	st := status(t, c.PID())
	if st["NoNewPrivs"] != "1" || st["CapEff"] != "0000000000000000" {
		t.Errorf("no_new_privs %q, effective capabilities %q: want 1 and none for a non-root user", st["NoNewPrivs"], st["CapEff"])
	}
	if _, err := Start(Spec{Rootfs: b.Rootfs, OCI: b.Spec, Args: []string{"sh"}}); err == nil || !strings.Contains(err.Error(), "leave Args") {
		t.Errorf("a spec with both an OCI spec and Args: %v", err)
	}
}

// TestContainerAsKataBuildsIt: a non-terminal container has the mounts of
// a CRI spec (devpts included), the default devices, masked and read-only
// paths (the masked /proc/keys reads as the container's /dev/null; the
// host's kernel has no /proc/kcore), containerd's default capabilities and RLIMIT_NOFILE, and its own
// cgroup namespace.
func TestContainerAsKataBuildsIt(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	c := f.start(t, Spec{Args: []string{"busybox", "sleep", "3600"}, Setsid: true})
	mounts, err := proc.New("/proc").MountInfo(c.PID())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
		"/dev/mqueue": "mqueue", "/sys": "sysfs", "/sys/fs/cgroup": "cgroup2", "/proc/keys": "tmpfs", "/proc/sys": "proc"}
	readonly := map[string]bool{"/sys": true, "/sys/fs/cgroup": true, "/proc/sys": true}
	for _, m := range mounts {
		if fstype, ok := want[m.MountPoint]; ok && m.FSType == fstype {
			delete(want, m.MountPoint)
			if readonly[m.MountPoint] && !strings.HasPrefix(m.Options, "ro") {
				t.Errorf("%s is mounted %s, want read-only", m.MountPoint, m.Options)
			}
			if m.MountPoint == "/dev/pts" && !strings.Contains(m.SuperOpts, "ptmxmode=666") {
				t.Errorf("/dev/pts options %q: want a new instance with ptmxmode=0666", m.SuperOpts)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("missing mounts %v", want)
	}
	p := Probe{PID: c.PID()}
	for name, rdev := range map[string]uint64{"null": unix.Mkdev(1, 3), "urandom": unix.Mkdev(1, 9), "tty": unix.Mkdev(5, 0)} {
		var st unix.Stat_t
		if err := unix.Stat(p.Path("/dev/"+name), &st); err != nil || st.Rdev != rdev || st.Mode&0o777 != 0o666 {
			t.Errorf("/dev/%s: %v, rdev %x mode %o", name, err, st.Rdev, st.Mode&0o777)
		}
	}
	if l, err := os.Readlink(p.Path("/dev/ptmx")); err != nil || l != "pts/ptmx" {
		t.Errorf("/dev/ptmx -> %q %v, want pts/ptmx", l, err)
	}
	if keys, err := os.ReadFile(p.Path("/proc/keys")); err != nil || len(keys) > 0 {
		t.Errorf("/proc/keys is not masked with the container's /dev/null: %q %v", keys, err)
	}
	st := status(t, c.PID())
	if caps, _ := capSet(DefaultCapabilities); st["CapEff"] != strconv.FormatUint(caps, 16) && st["CapEff"] != "00000000"+strconv.FormatUint(caps, 16) {
		t.Errorf("CapEff %q, want containerd's defaults %x", st["CapEff"], caps)
	}
	limits, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.PID()), "limits"))
	if err != nil || !bytes.Contains(limits, []byte("Max open files            1024                 1024")) {
		t.Errorf("RLIMIT_NOFILE is not 1024:\n%s", limits)
	}
	self, _ := os.Readlink("/proc/self/ns/cgroup")
	if ns, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(c.PID()), "ns", "cgroup")); ns == self {
		t.Error("the container shares the launcher's cgroup namespace")
	}
}

// TestContainerCgroup: with a cgroup v2 root the container starts in a
// cgroup of its own, which is removed when it ends; limits the root's
// controllers cannot apply are refused.
func TestContainerCgroup(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	root := t.TempDir()
	if err := unix.Mount("cgroup2", root, "cgroup2", 0, ""); err != nil {
		t.Fatalf("mount cgroup2 for the test: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
	c := f.start(t, Spec{ID: "cg-test", Args: []string{"busybox", "sleep", "3600"}, Setsid: true, CgroupRoot: root})
	path, _ := c.Cgroup()
	if path != DefaultCgroupParent+"/cg-test" {
		t.Errorf("cgroup %q, want %s/cg-test", path, DefaultCgroupParent)
	}
	procs, err := os.ReadFile(filepath.Join(root, path, "cgroup.procs"))
	if err != nil || strings.TrimSpace(string(procs)) != strconv.Itoa(c.PID()) {
		t.Errorf("cgroup.procs %q %v, want the init %d", procs, err, c.PID())
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, path)); err == nil {
		t.Error("the cgroup outlived the container")
	}
	limit := int64(1 << 30)
	s := GenerateSpec("cg-limits", []string{"sleep", "1"})
	s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	avail, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if !bytes.Contains(avail, []byte("memory")) {
		if _, err := Start(Spec{Rootfs: f.rootfs, OCI: s, CgroupRoot: root}); err == nil || !strings.Contains(err.Error(), "memory controller") {
			t.Errorf("a memory limit without the memory controller: %v", err)
		}
	}
	if _, err := Start(Spec{Rootfs: f.rootfs, OCI: s}); err == nil || !strings.Contains(err.Error(), "memory.max") {
		t.Errorf("a memory limit without a cgroup root: %v", err)
	}
}
