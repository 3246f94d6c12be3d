package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// initEnv marks the re-executed binary as a container init helper; its value
// is the number of the fd that carries the setup protocol.
const initEnv = "_KATA_CR_CONTAINER_INIT"

// initFD is where Start puts the child's end of the setup socket.
const initFD = 3

// initConfig is what Start sends the helper: everything it needs to build
// the container's mounts and to exec the workload.
type initConfig struct {
	Rootfs   string      `json:"rootfs"`
	Args     []string    `json:"args"`
	Env      []string    `json:"env"`
	Cwd      string      `json:"cwd"`
	Terminal bool        `json:"terminal"`
	Binds    []BindMount `json:"binds"`
	ShmSize  int64       `json:"shm_size"`
	Hostname string      `json:"hostname"`
}

// initReply is what the helper sends back before it execs the workload. A
// console reply carries the pty master as SCM_RIGHTS. When the workload's
// execve succeeds the socket closes (it is close-on-exec) without an error
// reply.
type initReply struct {
	Console bool   `json:"console,omitempty"`
	Error   string `json:"error,omitempty"`
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
	unix.Umask(0o022)
	if err := setupMounts(&cfg); err != nil {
		return err
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", cfg.Hostname, err)
		}
	}
	if err := pivotRoot(cfg.Rootfs); err != nil {
		return err
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc on /proc: %w", err)
	}
	if err := setupStdio(sock, cfg.Terminal); err != nil {
		return err
	}
	cwd := cfg.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("change to working directory %s: %w", cwd, err)
	}
	path, err := lookPath(cfg.Args[0], cfg.Env)
	if err != nil {
		return err
	}
	// Close-on-exec: a successful execve closes the socket, which is how
	// Start learns that the workload runs.
	unix.CloseOnExec(sock)
	if err := unix.Exec(path, cfg.Args, cfg.Env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// setupMounts builds the container's mounts while the old root is still
// reachable: everything except proc, which must be mounted after
// pivot_root so that it is the container's pid namespace's.
func setupMounts(cfg *initConfig) error {
	// Private first, or every mount below would propagate back into the
	// guest's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	root := cfg.Rootfs
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s onto itself: %w", root, err)
	}
	for _, b := range cfg.Binds {
		target, err := inRoot(root, b.Target)
		if err != nil {
			return err
		}
		if err := ensureFile(target); err != nil {
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
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mount tmpfs on /dev: %w", err)
	}
	if err := makeDevices(dev, cfg.Terminal); err != nil {
		return err
	}
	shm := filepath.Join(dev, "shm")
	if err := os.Mkdir(shm, 0o755); err != nil {
		return fmt.Errorf("create /dev/shm: %w", err)
	}
	size := cfg.ShmSize
	if size == 0 {
		size = DefaultShmSize
	}
	if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("mode=1777,size=%d", size)); err != nil {
		return fmt.Errorf("mount tmpfs on /dev/shm: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o555); err != nil {
		return fmt.Errorf("create /proc: %w", err)
	}
	return nil
}

// device is one node of the container's /dev; these are the nodes runc
// creates for every container.
type device struct {
	name         string
	major, minor uint32
}

var devices = []device{
	{"null", 1, 3},
	{"zero", 1, 5},
	{"full", 1, 7},
	{"random", 1, 8},
	{"urandom", 1, 9},
	{"tty", 5, 0},
}

func makeDevices(dev string, terminal bool) error {
	for _, d := range devices {
		p := filepath.Join(dev, d.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("create /dev/%s: %w", d.name, err)
		}
		// Explicit, whatever the umask.
		if err := os.Chmod(p, 0o666); err != nil {
			return fmt.Errorf("chmod /dev/%s: %w", d.name, err)
		}
	}
	links := [][2]string{
		{"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"},
	}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return fmt.Errorf("create /dev/%s: %w", l[1], err)
		}
	}
	if !terminal {
		// Only a terminal needs a devpts: the non-terminal container
		// stays exactly the setup that CRIU was seen to dump.
		return nil
	}
	pts := filepath.Join(dev, "pts")
	if err := os.Mkdir(pts, 0o755); err != nil {
		return fmt.Errorf("create /dev/pts: %w", err)
	}
	// A new devpts instance: the pty then belongs to the container, and
	// CRIU finds its slave on a mount inside the dumped namespace.
	if err := unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mount devpts on /dev/pts: %w", err)
	}
	if err := os.Symlink("pts/ptmx", filepath.Join(dev, "ptmx")); err != nil {
		return fmt.Errorf("create /dev/ptmx: %w", err)
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
func setupStdio(sock int, terminal bool) error {
	var fd int
	if terminal {
		master, slave, err := openPty()
		if err != nil {
			return err
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
