package container

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Container is a running (or finished) container init and its pid
// namespace.
type Container struct {
	pid     int
	dir     string
	console *os.File
	// output reads what the init writes to stdout and stderr (OutputTail).
	output *os.File

	// Exactly one of cmd and pidfd identifies the process: cmd for a
	// container Start launched, pidfd for one Adopt took over.
	cmd   *exec.Cmd
	pidfd int
	// cg is the cgroup Start created for the container, removed once the
	// init is reaped; nil for an adopted process or without a cgroup root.
	cg *cgroup

	done   chan struct{}
	mu     sync.Mutex
	status ExitStatus
	err    error
}

// ExitStatus is how a container init ended.
type ExitStatus struct {
	// Code is the exit code, or -1 when a signal killed it or the status
	// could not be known (an adopted process that is not our child).
	Code int `json:"code"`
	// Signal is the signal that killed it, or 0.
	Signal syscall.Signal `json:"signal,omitempty"`
}

func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return "killed by " + s.Signal.String()
	}
	if s.Code < 0 {
		return "exited, status unknown"
	}
	return "exit status " + strconv.Itoa(s.Code)
}

// Start starts a container as described by spec and returns once the
// workload has been exec'd inside it (or with the reason it could not be).
// The calling binary must have called Init first thing in main.
func Start(spec Spec) (*Container, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	oci, err := spec.resolve()
	if err != nil {
		return nil, err
	}
	var flags uintptr
	for _, ns := range oci.Linux.Namespaces {
		flags |= namespaceFlags[ns.Type]
	}
	for _, j := range spec.Join {
		// Born in the sandbox's namespace, not in a new one.
		flags &^= namespaceFlags[j.Type]
	}
	var cg *cgroup
	if spec.CgroupRoot != "" && oci.Linux.CgroupsPath != "" {
		if cg, err = createCgroup(spec.CgroupRoot, oci.Linux.CgroupsPath, oci.Linux.Resources); err != nil {
			return nil, err
		}
	} else if limits := cgroupFiles(oci.Linux.Resources); len(limits) > 0 {
		return nil, fmt.Errorf("container cgroup: linux.resources sets %s, but the launcher has no cgroup v2 root to apply it", strings.Join(slices.Sorted(maps.Keys(limits)), ", "))
	}
	c, err := start(spec, oci, flags, cg)
	if err != nil && cg != nil {
		cg.remove()
	}
	return c, err
}

func start(spec Spec, oci *specs.Spec, flags uintptr, cg *cgroup) (*Container, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start container: socketpair: %w", err)
	}
	parent := fds[0]
	child := os.NewFile(uintptr(fds[1]), "container-init")
	defer unix.Close(parent)

	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"kata-cr-container-init"}
	cmd.Env = []string{initEnv + "=" + strconv.Itoa(initFD)}
	cmd.ExtraFiles = []*os.File{child}
	setsid := spec.Setsid || oci.Process.Terminal
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: flags,
		Setsid:     setsid,
		// Without a session of its own the init still leads its own
		// process group, as under the Kata agent (ps shows PGID = PID,
		// SID outside the container).
		Setpgid: !setsid,
	}
	if cg != nil {
		// Born in its cgroup, so that its cgroup namespace is rooted
		// there, as under Kata's agent.
		fd, err := cg.open()
		if err != nil {
			child.Close()
			return nil, err
		}
		defer unix.Close(fd)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	err = startJoined(cmd, spec.Join)
	child.Close()
	if err != nil {
		return nil, fmt.Errorf("start container init: %w", err)
	}
	c := &Container{pid: cmd.Process.Pid, dir: spec.Rootfs, cmd: cmd, pidfd: -1, cg: cg, done: make(chan struct{})}
	go c.reapCmd()

	cfg := initConfig{Rootfs: spec.Rootfs, Spec: oci, Binds: spec.Sandbox.Binds()}
	if err := c.handshake(parent, cfg); err != nil {
		_ = c.cmd.Process.Kill()
		<-c.done
		c.closeConsole()
		return nil, err
	}
	return c, nil
}

// handshake sends the config and reads the helper's replies until the
// socket closes, which happens when the workload's execve succeeds.
func (c *Container) handshake(sock int, cfg initConfig) error {
	msg, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode container config: %w", err)
	}
	if err := unix.Sendmsg(sock, msg, nil, nil, 0); err != nil {
		return fmt.Errorf("send container config: %w", err)
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read from container init: %w", err)
		}
		if n == 0 && oobn == 0 {
			return nil
		}
		var r initReply
		if err := json.Unmarshal(buf[:n], &r); err != nil {
			return fmt.Errorf("decode reply of container init: %w", err)
		}
		if r.Error != "" {
			return fmt.Errorf("start container: %s", r.Error)
		}
		if r.Console {
			f, err := consoleFrom(oob[:oobn])
			if err != nil {
				return err
			}
			c.console = f
		}
		if r.Output {
			f, err := outputFrom(oob[:oobn])
			if err != nil {
				return err
			}
			c.output = f
		}
	}
}

func consoleFrom(oob []byte) (*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive pty master: bad control message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive pty master: no file descriptor")
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

// Adopt takes over a process that something else started, typically a
// container init that CRIU restored, so that it can be waited for and
// killed like a started one. When the process is our child (CRIU restores
// it as one with rst_sibling) Wait reaps it; otherwise Wait only sees that
// it ended.
func Adopt(pid int, dir string) (*Container, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("adopt process %d: %w", pid, err)
	}
	c := &Container{pid: pid, dir: dir, pidfd: fd, done: make(chan struct{})}
	go c.reapPidfd()
	return c, nil
}

// exitStatusOf is how a process that Wait returned ended; Code -1 when it
// has not ended.
func exitStatusOf(ps *os.ProcessState) ExitStatus {
	st := ExitStatus{Code: -1}
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.Signal = ws.Signal()
		} else {
			st.Code = ps.ExitCode()
		}
	}
	return st
}

// waitError drops the error of Wait that is only a non-zero status: that
// is a result, not an error.
func waitError(err error) error {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return nil
	}
	return err
}

func (c *Container) reapCmd() {
	err := waitError(c.cmd.Wait())
	st := exitStatusOf(c.cmd.ProcessState)
	if c.cg != nil {
		c.cg.remove()
	}
	c.finish(st, err)
}

func (c *Container) reapPidfd() {
	// Kill signals through the pidfd: close it under the lock, or Kill
	// could signal a reused fd number, another process.
	defer func() {
		c.mu.Lock()
		unix.Close(c.pidfd)
		c.pidfd = -1
		c.mu.Unlock()
	}()
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, c.pidfd, &info, unix.WEXITED, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err == nil {
			c.finish(statusFromSiginfo(&info), nil)
			return
		}
		if !errors.Is(err, unix.ECHILD) {
			c.finish(ExitStatus{Code: -1}, fmt.Errorf("wait for process %d: %w", c.pid, err))
			return
		}
		break
	}
	// Not our child: a pidfd becomes readable when the process exits.
	fds := []unix.PollFd{{Fd: int32(c.pidfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.finish(ExitStatus{Code: -1}, fmt.Errorf("wait for process %d: %w", c.pid, err))
			return
		}
		c.finish(ExitStatus{Code: -1}, nil)
		return
	}
}

// The si_code values of SIGCHLD (asm-generic/siginfo.h).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

func statusFromSiginfo(info *unix.Siginfo) ExitStatus {
	// For SIGCHLD, si_status follows si_pid and si_uid in the union that
	// starts at byte 16 of siginfo_t on every 64-bit Linux architecture;
	// x/sys leaves the union opaque.
	raw := unsafe.Slice((*byte)(unsafe.Pointer(info)), unsafe.Sizeof(*info))
	status := int(int32(binary.NativeEndian.Uint32(raw[24:28])))
	switch info.Code {
	case cldExited:
		return ExitStatus{Code: status}
	case cldKilled, cldDumped:
		return ExitStatus{Code: -1, Signal: syscall.Signal(status)}
	}
	return ExitStatus{Code: -1}
}

func (c *Container) finish(st ExitStatus, err error) {
	c.mu.Lock()
	c.status, c.err = st, err
	c.mu.Unlock()
	close(c.done)
}

// PID is the container init's pid as the launcher (the guest agent) sees
// it; inside the container it is 1.
func (c *Container) PID() int { return c.pid }

// Cgroup is the container's cgroup below the cgroup v2 root, as
// /proc/PID/cgroup shows it from the launcher, with the limits written
// into it; "" when the container has no cgroup of its own.
func (c *Container) Cgroup() (path string, limits map[string]string) {
	if c.cg == nil {
		return "", nil
	}
	return c.cg.rel, c.cg.limits
}

// Dir is the container's rootfs directory.
func (c *Container) Dir() string { return c.dir }

// Console is the master side of the container's pty, or nil when it has no
// terminal. Kill closes it.
func (c *Container) Console() *os.File { return c.console }

// TTYKey names the container's terminal the way CRIU does for an external
// tty: dumping a terminal container needs `--external KEY` (the pty's
// master stays with the launcher), and restoring it `--inherit-fd
// fd[N]:KEY` with the slave of a new pty (OpenPty). The key is built from
// the init's fd 0.
func (c *Container) TTYKey() (string, error) {
	var st unix.Stat_t
	p := fmt.Sprintf("/proc/%d/fd/0", c.pid)
	if err := unix.Stat(p, &st); err != nil {
		return "", fmt.Errorf("terminal of container %d: %w", c.pid, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) < 136 || unix.Major(st.Rdev) > 143 {
		return "", fmt.Errorf("terminal of container %d: fd 0 is not a pty slave", c.pid)
	}
	return fmt.Sprintf("tty[%x:%x]", st.Rdev, st.Dev), nil
}

// OpenPty allocates a pty from the caller's /dev/ptmx, for example to give
// a restored terminal container a new terminal.
func OpenPty() (master, slave *os.File, err error) {
	m, s, err := openPty()
	if err != nil {
		return nil, nil, err
	}
	unix.CloseOnExec(s)
	return os.NewFile(uintptr(m), "pty-master"), os.NewFile(uintptr(s), "pty-slave"), nil
}

// Running reports whether the container init has not ended yet.
func (c *Container) Running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Done is closed when the container init has ended (and was reaped).
func (c *Container) Done() <-chan struct{} { return c.done }

// Wait waits until the container init ends or ctx is done. The init is
// reaped in the background whether or not anyone waits, so a container
// never leaves a zombie behind.
func (c *Container) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-c.done:
	case <-ctx.Done():
		return ExitStatus{Code: -1}, fmt.Errorf("wait for container %d: %w", c.pid, ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status, c.err
}

// killTimeout bounds how long Kill waits for the kernel to tear down a
// SIGKILLed pid namespace.
const killTimeout = 10 * time.Second

// Kill kills the container init, and with it every process of its pid
// namespace, waits until it has been reaped and closes the console.
func (c *Container) Kill() error {
	defer c.closeConsole()
	if !c.Running() {
		return nil
	}
	var err error
	if c.cmd != nil {
		err = c.cmd.Process.Signal(syscall.SIGKILL)
		if errors.Is(err, os.ErrProcessDone) {
			err = nil
		}
	} else {
		c.mu.Lock()
		if c.pidfd >= 0 {
			err = unix.PidfdSendSignal(c.pidfd, unix.SIGKILL, nil, 0)
		}
		c.mu.Unlock()
		if errors.Is(err, unix.ESRCH) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("kill container %d: %w", c.pid, err)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("kill container %d: still running %s after SIGKILL", c.pid, killTimeout)
	}
}

func (c *Container) closeConsole() {
	c.closeOutput()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.console != nil {
		c.console.Close()
		c.console = nil
	}
}
