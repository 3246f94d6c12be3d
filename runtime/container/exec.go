package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExecSpec is a command to run in a running container, as Kata's agent
// runs an exec (a Kubernetes exec probe): the argv is exec'd as is, with
// no shell unless the command is one.
type ExecSpec struct {
	Args []string
	// Env is the command's environment; PATH defaults to DefaultPath.
	Env []string
	// UID and GID are the user the command runs as.
	UID, GID uint32
	// CgroupRoot, when set, is the cgroup v2 root whose cgroup of the
	// container the command joins.
	CgroupRoot string
	// OutputLimit bounds the output kept (stdout and stderr together);
	// 0: 64 KiB.
	OutputLimit int
}

// ExecResult is how a command run by Exec ended.
type ExecResult struct {
	Status ExitStatus
	// Output is stdout and stderr together, up to the limit.
	Output    []byte
	Truncated bool
	Duration  time.Duration
}

// execNamespaces are the namespaces an exec joins, the mount namespace
// last. Not the cgroup namespace: the command is born in the container's
// cgroup (CLONE_INTO_CGROUP), which the kernel refuses (ENOENT) to a
// parent whose own cgroup lies outside its cgroup namespace.
var execNamespaces = []struct {
	name string
	flag int
}{
	{"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"net", unix.CLONE_NEWNET},
	{"pid", unix.CLONE_NEWPID}, {"mnt", unix.CLONE_NEWNS},
}

// Exec runs e.Args inside the container whose init is pid: in its ipc,
// uts, net, pid and mount namespaces, with its root as / and / as
// the working directory, in its cgroup, as e.UID:e.GID. It waits for the
// command, or kills it when ctx ends. A command that cannot be started is
// an error; one that fails is a result.
//
// Go cannot setns() into a mount namespace once it runs more than one
// thread, because the threads share their fs_struct. The namespaces are
// joined by one locked thread that first unshares its fs_struct; the
// command is forked from that thread and inherits them, and the thread is
// never given back to the scheduler, so nothing else runs in the
// container's namespaces.
func Exec(ctx context.Context, pid int, e ExecSpec) (ExecResult, error) {
	if len(e.Args) == 0 || e.Args[0] == "" {
		return ExecResult{}, errors.New("exec: empty command")
	}
	type out struct {
		cmd *exec.Cmd
		buf *limitedBuffer
		err error
	}
	started := make(chan out, 1)
	start := time.Now()
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread, in the container's namespaces,
		// exits with this goroutine. The command is then a child of the
		// agent's other threads, which can still wait for it.
		cmd, buf, err := startInContainer(pid, e)
		started <- out{cmd, buf, err}
	}()
	o := <-started
	if o.err != nil {
		return ExecResult{}, o.err
	}
	done := make(chan error, 1)
	go func() { done <- o.cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		_ = o.cmd.Process.Kill()
		werr = <-done
	}
	r := ExecResult{Status: exitStatusOf(o.cmd.ProcessState), Duration: time.Since(start)}
	r.Output, r.Truncated = o.buf.bytes()
	if werr := waitError(werr); werr != nil {
		return r, fmt.Errorf("exec %s: %w", e.Args[0], werr)
	}
	if ctx.Err() != nil {
		return r, fmt.Errorf("exec %s: %w", e.Args[0], ctx.Err())
	}
	return r, nil
}

// startInContainer joins the container's namespaces on this (locked)
// thread and starts the command from it.
func startInContainer(pid int, e ExecSpec) (*exec.Cmd, *limitedBuffer, error) {
	procDir := filepath.Join("/proc", strconv.Itoa(pid))
	var cgFD = -1
	if e.CgroupRoot != "" {
		cg, err := CgroupOf("/proc", pid)
		if err != nil {
			return nil, nil, fmt.Errorf("exec: cgroup of the container: %w", err)
		}
		fd, err := unix.Open(filepath.Join(e.CgroupRoot, cg), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("exec: open the container's cgroup: %w", err)
		}
		cgFD = fd
		defer unix.Close(cgFD)
	}
	fds := make([]int, len(execNamespaces))
	for i, ns := range execNamespaces {
		fd, err := unix.Open(filepath.Join(procDir, "ns", ns.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			for _, f := range fds[:i] {
				unix.Close(f)
			}
			return nil, nil, fmt.Errorf("exec: open the container's %s namespace: %w", ns.name, err)
		}
		fds[i] = fd
	}
	defer func() {
		for _, f := range fds {
			unix.Close(f)
		}
	}()
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return nil, nil, fmt.Errorf("exec: unshare the thread's fs_struct: %w", err)
	}
	for i, ns := range execNamespaces {
		if err := unix.Setns(fds[i], ns.flag); err != nil {
			return nil, nil, fmt.Errorf("exec: join the container's %s namespace: %w", ns.name, err)
		}
	}
	// Joining the mount namespace put this thread at its root: chroot
	// there explicitly, as the agent's exec does, and start from /.
	if err := unix.Chroot("/"); err != nil {
		return nil, nil, fmt.Errorf("exec: chroot to the container's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return nil, nil, fmt.Errorf("exec: chdir to /: %w", err)
	}
	env := e.Env
	if !hasEnv(env, "PATH") {
		env = append(append([]string(nil), env...), "PATH="+DefaultPath)
	}
	// Looked up on this thread: in the container's file system.
	path, err := lookPath(e.Args[0], env)
	if err != nil {
		return nil, nil, fmt.Errorf("exec: %w", err)
	}
	buf := &limitedBuffer{limit: e.OutputLimit}
	if buf.limit <= 0 {
		buf.limit = 64 << 10
	}
	cmd := &exec.Cmd{Path: path, Args: e.Args, Env: env, Dir: "/", Stdout: buf, Stderr: buf}
	devnull, err := os.Open(os.DevNull)
	if err == nil {
		cmd.Stdin = devnull
		defer devnull.Close()
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: e.UID, Gid: e.GID, NoSetGroups: true}}
	if cgFD >= 0 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cgFD
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("exec %s in the container: %w", e.Args[0], err)
	}
	return cmd, buf, nil
}

func hasEnv(env []string, name string) bool {
	for _, v := range env {
		if len(v) > len(name) && v[:len(name)+1] == name+"=" {
			return true
		}
	}
	return false
}

// limitedBuffer keeps the first limit bytes written to it.
type limitedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	limit     int
	truncated bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - b.buf.Len(); room < len(p) {
		if room > 0 {
			b.buf.Write(p[:room])
		}
		b.truncated = true
		return len(p), nil
	}
	b.buf.Write(p)
	return len(p), nil
}

func (b *limitedBuffer) bytes() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...), b.truncated
}
