package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// initEnv marks the re-executed binary as a container init helper; its value
// is the number of the fd that carries the setup protocol.
const initEnv = "_KATA_CR_CONTAINER_INIT"

// initFD is where Start puts the child's end of the setup socket.
const initFD = 3

// initConfig is what Start sends the helper: the resolved runtime spec and
// the sandbox's binds, everything it needs to build the container's mounts
// and to exec the workload.
type initConfig struct {
	Rootfs string      `json:"rootfs"`
	Spec   *specs.Spec `json:"spec"`
	Binds  []BindMount `json:"binds"`
}

// initReply is what the helper sends back before it execs the workload. A
// console reply carries the pty master as SCM_RIGHTS. When the workload's
// execve succeeds the socket closes (it is close-on-exec) without an error
// reply.
type initReply struct {
	Console bool `json:"console,omitempty"`
	// Output carries a reader of the init's OutputFile as SCM_RIGHTS.
	Output bool   `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Init turns the process into a container init helper when Start
// re-executed it, and returns at once otherwise. In a helper it never
// returns: it sets the container up, then execs the workload or exits with
// status 1 after sending the error to Start. Call it first thing in main and
// in TestMain of any test that starts containers.
func Init() {
	v, ok := os.LookupEnv(initEnv)
	if !ok {
		return
	}
	// Credentials, capabilities and no_new_privs are per thread: set them
	// on the thread that execs the workload.
	runtime.LockOSThread()
	fd, err := strconv.Atoi(v)
	if err != nil || fd != initFD {
		fmt.Fprintf(os.Stderr, "container init: bad %s=%q\n", initEnv, v)
		os.Exit(1)
	}
	err = runInit(fd)
	// runInit only returns on failure: tell Start why.
	msg, _ := json.Marshal(initReply{Error: err.Error()})
	_ = unix.Sendmsg(fd, msg, nil, nil, 0)
	os.Exit(1)
}

// runInit sets the container up in the order of Kata's agent (and runc):
// mounts and devices while the rootfs is reachable from the launcher's
// root, hostname, pivot_root, sysctls, masked and read-only paths, rlimits,
// stdio, then the process's privileges, and exec.
func runInit(sock int) error {
	buf := make([]byte, 1<<20)
	n, _, _, _, err := unix.Recvmsg(sock, buf, nil, 0)
	if err != nil {
		return fmt.Errorf("read container config: %w", err)
	}
	var cfg initConfig
	if err := json.Unmarshal(buf[:n], &cfg); err != nil {
		return fmt.Errorf("decode container config: %w", err)
	}
	spec, p := cfg.Spec, cfg.Spec.Process
	umask := 0o022
	if p.User.Umask != nil {
		umask = int(*p.User.Umask)
	}
	unix.Umask(umask)
	lastCap, err := lastCapability()
	if err != nil {
		return err
	}
	if err := setupMounts(&cfg); err != nil {
		return err
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", spec.Hostname, err)
		}
	}
	if spec.Domainname != "" {
		if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
			return fmt.Errorf("set domainname %q: %w", spec.Domainname, err)
		}
	}
	if err := pivotRoot(cfg.Rootfs); err != nil {
		return err
	}
	if err := finishRootfs(spec); err != nil {
		return err
	}
	if err := setLimits(p); err != nil {
		return err
	}
	if err := setupStdio(sock, p); err != nil {
		return err
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if err := setPrivileges(p, lastCap); err != nil {
		return err
	}
	if err := unix.Chdir(p.Cwd); err != nil {
		return fmt.Errorf("change to working directory %s: %w", p.Cwd, err)
	}
	path, err := lookPath(p.Args[0], p.Env)
	if err != nil {
		return err
	}
	// Close-on-exec: a successful execve closes the socket, which is how
	// Start learns that the workload runs.
	unix.CloseOnExec(sock)
	if err := unix.Exec(path, p.Args, p.Env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// setupMounts builds the container's mounts while the old root is still
// reachable: the spec's mounts in order, the sandbox's binds, then the
// devices of /dev.
func setupMounts(cfg *initConfig) error {
	// Private (or slave) first, or every mount below would propagate
	// back into the guest's namespace.
	prop := uintptr(unix.MS_REC | unix.MS_PRIVATE)
	if l := cfg.Spec.Linux; l != nil && strings.HasSuffix(l.RootfsPropagation, "slave") {
		prop = unix.MS_REC | unix.MS_SLAVE
	}
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	root := cfg.Rootfs
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s onto itself: %w", root, err)
	}
	devTmpfs, devpts := false, false
	for _, m := range cfg.Spec.Mounts {
		if err := mountOne(root, m); err != nil {
			return err
		}
		switch filepath.Clean(m.Destination) {
		case "/dev":
			devTmpfs = m.Type == "tmpfs"
		case "/dev/pts":
			devpts = m.Type == "devpts"
		}
	}
	for _, b := range cfg.Binds {
		target, err := inRoot(root, b.Target)
		if err != nil {
			return err
		}
		mkpoint := ensureFile
		if b.Dir {
			mkpoint = func(p string) error { return os.MkdirAll(p, 0o755) }
		}
		if err := mkpoint(target); err != nil {
			return fmt.Errorf("create mount point %s: %w", b.Target, err)
		}
		if err := unix.Mount(b.Source, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s onto %s: %w", b.Source, b.Target, err)
		}
	}
	dev := filepath.Join(root, "dev")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return fmt.Errorf("create /dev: %w", err)
	}
	var specDevices []specs.LinuxDevice
	if cfg.Spec.Linux != nil {
		specDevices = cfg.Spec.Linux.Devices
	}
	if devTmpfs {
		if err := makeDevices(root, specDevices, devpts); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Join(root, "proc"), 0o555)
}

// mountOne mounts one entry of the spec's mounts below root. A cgroup
// mount is the cgroup v2 hierarchy, seen from the container's cgroup
// namespace.
func mountOne(root string, m specs.Mount) error {
	target, err := inRoot(root, m.Destination)
	if err != nil {
		return err
	}
	flags, prop, data := parseMountOptions(m.Options)
	fstype, source := m.Type, m.Source
	if fstype == "cgroup" || fstype == "cgroup2" {
		fstype, source = "cgroup2", "cgroup2"
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create mount point %s: %w", m.Destination, err)
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, m.Destination, err)
	}
	if prop != 0 {
		if err := unix.Mount("", target, "", prop, ""); err != nil {
			return fmt.Errorf("set the propagation of %s: %w", m.Destination, err)
		}
	}
	return nil
}

// mountFlags are the mount options that are flags rather than file-system
// data (mount(8)); clear says the option turns its flag off.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"async": {true, unix.MS_SYNCHRONOUS}, "atime": {true, unix.MS_NOATIME}, "defaults": {false, 0},
	"dev": {true, unix.MS_NODEV}, "diratime": {true, unix.MS_NODIRATIME}, "dirsync": {false, unix.MS_DIRSYNC},
	"exec": {true, unix.MS_NOEXEC}, "mand": {false, unix.MS_MANDLOCK}, "noatime": {false, unix.MS_NOATIME},
	"nodev": {false, unix.MS_NODEV}, "nodiratime": {false, unix.MS_NODIRATIME}, "noexec": {false, unix.MS_NOEXEC},
	"nomand": {true, unix.MS_MANDLOCK}, "norelatime": {true, unix.MS_RELATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid": {false, unix.MS_NOSUID}, "relatime": {false, unix.MS_RELATIME}, "ro": {false, unix.MS_RDONLY},
	"rw": {true, unix.MS_RDONLY}, "strictatime": {false, unix.MS_STRICTATIME}, "suid": {true, unix.MS_NOSUID},
	"sync": {false, unix.MS_SYNCHRONOUS},
}

var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits a mount's options into flags, a propagation
// change and the file system's data.
func parseMountOptions(opts []string) (flags, prop uintptr, data string) {
	var rest []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			prop |= p
			continue
		}
		rest = append(rest, o)
	}
	return flags, prop, strings.Join(rest, ",")
}

// defaultDevices are the nodes every container's /dev gets (runc's and
// Kata's agent's defaults).
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// makeDevices creates the default devices and the spec's in the
// container's /dev tmpfs, the /dev/fd and stdio links, and /dev/ptmx as a
// link into the container's devpts.
func makeDevices(root string, extra []specs.LinuxDevice, devpts bool) error {
	for _, d := range append(append([]specs.LinuxDevice(nil), defaultDevices...), extra...) {
		p, err := inRoot(root, d.Path)
		if err != nil {
			return err
		}
		mode := uint32(0o666)
		if d.FileMode != nil {
			mode = uint32(d.FileMode.Perm())
		}
		kind := map[string]uint32{"c": unix.S_IFCHR, "u": unix.S_IFCHR, "b": unix.S_IFBLK, "p": unix.S_IFIFO}[d.Type]
		_ = os.Remove(p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d.Path, err)
		}
		if err := unix.Mknod(p, kind|mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
			return fmt.Errorf("create %s: %w", d.Path, err)
		}
		// Explicit, whatever the umask.
		if err := unix.Chmod(p, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", d.Path, err)
		}
		if d.UID != nil || d.GID != nil {
			uid, gid := -1, -1
			if d.UID != nil {
				uid = int(*d.UID)
			}
			if d.GID != nil {
				gid = int(*d.GID)
			}
			if err := unix.Lchown(p, uid, gid); err != nil {
				return fmt.Errorf("chown %s: %w", d.Path, err)
			}
		}
	}
	dev := filepath.Join(root, "dev")
	links := [][2]string{
		{"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"},
	}
	if devpts {
		// The container's ptys come from its own devpts instance, so that
		// CRIU finds a pty's slave on a mount inside the dumped namespace.
		links = append(links, [2]string{"pts/ptmx", "ptmx"})
	}
	for _, l := range links {
		p := filepath.Join(dev, l[1])
		_ = os.Remove(p)
		if err := os.Symlink(l[0], p); err != nil {
			return fmt.Errorf("create /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

// finishRootfs runs inside the new root: the spec's sysctls, its masked
// and read-only paths, and a read-only root.
func finishRootfs(spec *specs.Spec) error {
	l := spec.Linux
	for _, k := range slices.Sorted(maps.Keys(l.Sysctl)) {
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		if err := os.WriteFile(p, []byte(l.Sysctl[k]), 0); err != nil {
			return fmt.Errorf("linux.sysctl %s: %w", k, err)
		}
	}
	for _, p := range l.MaskedPaths {
		if err := maskPath(p); err != nil {
			return err
		}
	}
	for _, p := range l.ReadonlyPaths {
		if err := readonlyPath(p); err != nil {
			return err
		}
	}
	if spec.Root != nil && spec.Root.Readonly {
		if err := remountReadonly("/", 0); err != nil {
			return fmt.Errorf("root.readonly: %w", err)
		}
	}
	return nil
}

// maskPath hides p: a directory under a read-only tmpfs, a file under the
// container's /dev/null. A path the kernel does not have is left alone.
func maskPath(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	if fi.IsDir() {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "")
	} else {
		err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}

// readonlyPath binds p onto itself and makes the bind read-only.
func readonlyPath(p string) error {
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", p, err)
	}
	if err := remountReadonly(p, 0); err != nil {
		return fmt.Errorf("make %s read-only: %w", p, err)
	}
	return nil
}

// remountReadonly remounts the bind mount at p read-only, keeping the
// flags it has (a bind remount that drops nosuid, nodev or noexec fails
// where they are locked).
func remountReadonly(p string, extra uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|keep|extra, "")
}

// setLimits applies the process's oom_score_adj and rlimits.
func setLimits(p *specs.Process) error {
	if p.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*p.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("process.oomScoreAdj: %w", err)
		}
	}
	for _, r := range p.Rlimits {
		lim := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		if err := unix.Prlimit(0, rlimitNumbers[r.Type], &lim, nil); err != nil {
			return fmt.Errorf("process.rlimits %s: %w", r.Type, err)
		}
	}
	return nil
}

// lastCapability is the highest capability the running kernel knows.
func lastCapability() (int, error) {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read the last capability: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("read the last capability: %w", err)
	}
	return n, nil
}

// setPrivileges drops the capabilities the spec does not keep and becomes
// the spec's user, on this thread (the one that execs): the bounding set
// first, then the groups and ids with the capabilities kept across the
// change, then the effective, permitted, inheritable and ambient sets.
// Without capabilities in the spec the process keeps none, as under runc.
func setPrivileges(p *specs.Process, lastCap int) error {
	c := p.Capabilities
	if c == nil {
		c = &specs.LinuxCapabilities{}
	}
	sets := map[string]uint64{}
	for name, names := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted, "inheritable": c.Inheritable, "ambient": c.Ambient} {
		set, err := capSet(names)
		if err != nil {
			return fmt.Errorf("process.capabilities.%s: %w", name, err)
		}
		sets[name] = set
	}
	for cp := 0; cp <= lastCap; cp++ {
		if sets["bounding"]&(1<<cp) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(cp), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", cp, err)
		}
	}
	u := p.User
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities across the user change: %w", err)
	}
	// Raw system calls: the change is for this thread only, which execs;
	// the Go wrappers would change every thread of the helper, and refuse
	// when cgo is linked in.
	gids := make([]uint32, len(u.AdditionalGids))
	copy(gids, u.AdditionalGids)
	var gp unsafe.Pointer
	if len(gids) > 0 {
		gp = unsafe.Pointer(&gids[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(gp), 0); e != 0 {
		return fmt.Errorf("process.user.additionalGids: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return fmt.Errorf("process.user.gid %d: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return fmt.Errorf("process.user.uid %d: %w", u.UID, e)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keepcaps: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		data[i].Effective = uint32(sets["effective"] >> (32 * i))
		data[i].Permitted = uint32(sets["permitted"] >> (32 * i))
		data[i].Inheritable = uint32(sets["inheritable"] >> (32 * i))
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("process.capabilities: %w", err)
	}
	for cp := 0; cp <= lastCap; cp++ {
		if sets["ambient"]&(1<<cp) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(cp), 0, 0); err != nil {
			return fmt.Errorf("process.capabilities.ambient: raise %d: %w", cp, err)
		}
	}
	return nil
}

// pivotRoot makes root the container's / and drops the old root, the way
// runc does it: pivot_root(".", ".") stacks the old root on top of the new
// one, and a lazy unmount of "." removes it.
func pivotRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("enter rootfs %s: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("pivot_root into %s: %w (the current root is probably the initramfs: switch_root into a tmpfs first)", root, err)
		}
		return fmt.Errorf("pivot_root into %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("enter new root: %w", err)
	}
	return nil
}

// setupStdio points fds 0, 1 and 2 at files opened inside the container:
// stdio left on the guest's /dev/null makes CRIU fail with "Can't lookup
// mount=N for fd=0 path=/dev/null".
func setupStdio(sock int, p *specs.Process) error {
	var fd int
	terminal := p.Terminal
	if terminal {
		master, slave, err := openPty()
		if err != nil {
			return err
		}
		if b := p.ConsoleSize; b != nil {
			ws := unix.Winsize{Row: uint16(b.Height), Col: uint16(b.Width)}
			if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, &ws); err != nil {
				unix.Close(master)
				unix.Close(slave)
				return fmt.Errorf("process.consoleSize: %w", err)
			}
		}
		msg, _ := json.Marshal(initReply{Console: true})
		err = unix.Sendmsg(sock, msg, unix.UnixRights(master), nil, 0)
		unix.Close(master)
		if err != nil {
			unix.Close(slave)
			return fmt.Errorf("send pty master to the launcher: %w", err)
		}
		fd = slave
	} else {
		var err error
		fd, err = unix.Open("/dev/null", unix.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open the container's /dev/null: %w", err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := unix.Dup2(fd, i); err != nil {
			return fmt.Errorf("set up fd %d: %w", i, err)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	if !terminal {
		if err := redirectOutput(sock); err != nil {
			return err
		}
	}
	if terminal {
		// The helper is a session leader (Start sets Setsid for a
		// terminal), so the slave can become its controlling terminal.
		if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
			return fmt.Errorf("make the pty the controlling terminal: %w", err)
		}
	}
	return nil
}

// openPty allocates a pty from the container's devpts.
func openPty() (master, slave int, err error) {
	master, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("open the container's /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(master)
		return -1, -1, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		unix.Close(master)
		return -1, -1, fmt.Errorf("get pty number: %w", err)
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	slave, err = unix.Open(name, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		unix.Close(master)
		return -1, -1, fmt.Errorf("open %s: %w", name, err)
	}
	return master, slave, nil
}

// inRoot joins a container path to the rootfs, refusing paths that leave it
// or cross a symlink (which could point anywhere in the guest).
func inRoot(root, p string) (string, error) {
	clean := filepath.Clean("/" + p)
	full := filepath.Join(root, clean)
	rel, err := filepath.Rel(root, full)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("container path %q: leaves the rootfs", p)
	}
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("container path %q: %w", p, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return "", fmt.Errorf("container path %q: %s is a symlink", p, strings.TrimPrefix(cur, root))
		}
	}
	return full, nil
}

// ensureFile creates an empty file (and its directory) for a bind mount of
// a file to land on.
func ensureFile(p string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// lookPath finds the workload's executable in the container's PATH, after
// pivot_root.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := DefaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q: not found in the container's PATH %s", name, path)
}
