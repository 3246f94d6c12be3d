package container

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// JoinNamespace is a namespace of the pod's sandbox that a container
// joins: Path is a file bound to it (SharedNamespaces).
type JoinNamespace struct {
	Type specs.LinuxNamespaceType `json:"type"`
	Path string                   `json:"path"`
}

// SharedNamespaces are the namespaces the sandbox of a pod creates once
// and every container joins, as Kata's agent does for IPC and UTS (its
// shared namespaces, kept alive by bind mounts of their files).
type SharedNamespaces struct {
	IPC, UTS string
}

// Join lists them for Spec.Join.
func (s SharedNamespaces) Join() []JoinNamespace {
	return []JoinNamespace{{Type: specs.IPCNamespace, Path: s.IPC}, {Type: specs.UTSNamespace, Path: s.UTS}}
}

// CreateSharedNamespaces creates a new IPC and a new UTS namespace with
// hostname set, and binds their files below dir (dir/ipc, dir/uts) so that
// they live without a process in them. The namespaces are created on a
// locked thread that goes back to its own afterwards.
func CreateSharedNamespaces(dir, hostname string) (SharedNamespaces, error) {
	s := SharedNamespaces{IPC: filepath.Join(dir, "ipc"), UTS: filepath.Join(dir, "uts")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s, fmt.Errorf("create shared namespaces: %w", err)
	}
	for _, p := range []string{s.IPC, s.UTS} {
		if err := ensureFile(p); err != nil {
			return s, fmt.Errorf("create shared namespaces: %w", err)
		}
	}
	err := onLockedThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWIPC | unix.CLONE_NEWUTS); err != nil {
			return fmt.Errorf("unshare ipc and uts: %w", err)
		}
		if hostname != "" {
			if err := unix.Sethostname([]byte(hostname)); err != nil {
				return fmt.Errorf("set the sandbox's hostname: %w", err)
			}
		}
		for _, b := range []struct{ ns, at string }{{"ipc", s.IPC}, {"uts", s.UTS}} {
			if err := unix.Mount("/proc/thread-self/ns/"+b.ns, b.at, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind the sandbox's %s namespace to %s: %w", b.ns, b.at, err)
			}
		}
		return nil
	}, []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace})
	if err != nil {
		return s, fmt.Errorf("create shared namespaces: %w", err)
	}
	return s, nil
}

// ReleaseSharedNamespaces unbinds the namespaces' files: the namespaces
// end with their last process.
func ReleaseSharedNamespaces(s SharedNamespaces) error {
	var errs []error
	for _, p := range []string{s.IPC, s.UTS} {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("release %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// nsFiles are the names of the namespaces below /proc/thread-self/ns.
var nsFiles = map[specs.LinuxNamespaceType]string{
	specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.NetworkNamespace: "net",
	specs.CgroupNamespace: "cgroup",
}

// onLockedThread runs f on a locked thread whose namespaces of the kinds
// given are put back afterwards. When they cannot be put back, the thread
// is never unlocked, so it ends with its goroutine instead of running
// other code in the wrong namespaces.
func onLockedThread(f func() error, kinds []specs.LinuxNamespaceType) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var own []*os.File
		closeAll := func() {
			for _, o := range own {
				o.Close()
			}
		}
		for _, k := range kinds {
			name, ok := nsFiles[k]
			if !ok {
				closeAll()
				runtime.UnlockOSThread()
				done <- fmt.Errorf("namespace %s cannot be joined from a thread", k)
				return
			}
			o, err := os.Open("/proc/thread-self/ns/" + name)
			if err != nil {
				closeAll()
				runtime.UnlockOSThread()
				done <- fmt.Errorf("open own %s namespace: %w", name, err)
				return
			}
			own = append(own, o)
		}
		defer closeAll()
		err := f()
		for _, o := range own {
			if berr := unix.Setns(int(o.Fd()), 0); berr != nil {
				done <- errors.Join(err, fmt.Errorf("return to own namespace: %w", berr))
				return
			}
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}

// startJoined starts cmd from a thread that has joined the namespaces of
// join: the child, forked from that thread, is born in them.
func startJoined(cmd *exec.Cmd, join []JoinNamespace) error {
	if len(join) == 0 {
		return cmd.Start()
	}
	kinds := make([]specs.LinuxNamespaceType, 0, len(join))
	for _, j := range join {
		kinds = append(kinds, j.Type)
	}
	return onLockedThread(func() error {
		for _, j := range join {
			f, err := os.Open(j.Path)
			if err != nil {
				return fmt.Errorf("open the sandbox's %s namespace: %w", j.Type, err)
			}
			err = unix.Setns(int(f.Fd()), int(namespaceFlags[j.Type]))
			f.Close()
			if err != nil {
				return fmt.Errorf("join the sandbox's %s namespace %s: %w", j.Type, j.Path, err)
			}
		}
		return cmd.Start()
	}, kinds)
}
