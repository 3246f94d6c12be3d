// Package container starts a workload the way the Kata agent starts a
// container inside its guest, from an OCI runtime spec (a user's bundle, or
// the spec containerd's CRI plugin would write, generated for a named
// workload): new pid, mount, uts, ipc and cgroup namespaces, a cgroup v2 of
// its own with the spec's limits, the spec's mounts (proc, a /dev tmpfs with
// the default devices, a devpts instance, /dev/shm, /dev/mqueue, a read-only
// sysfs and cgroup), the sandbox's /etc/hosts, /etc/hostname and
// /etc/resolv.conf bind-mounted onto the rootfs, a pivot_root, masked and
// read-only paths, rlimits, capabilities and no_new_privs, and stdio opened
// inside the container. Exec runs a command in a running container's
// namespaces, as the agent's exec does.
//
// It also prepares rootfs and sandbox directories, reads OCI bundles,
// records what changed in a rootfs (the rootfs-diff that travels with a
// checkpoint), and holds the table of named workloads with the checks that
// prove a restored workload carried on.
//
// Go cannot fork without exec, so Start re-executes the running binary as a
// small init helper that sets the mounts up and then execve()s the workload.
// Every binary that calls Start must call Init first thing in main (or in
// TestMain).
package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultPath is the PATH a container gets when its Env sets none; it is the
// one runc and the Kata agent use.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultShmSize is the size of /dev/shm when Spec.ShmSize is zero; it is
// Docker's and Kata's default.
const DefaultShmSize = 64 << 20

// Spec describes one container.
type Spec struct {
	// Rootfs is the absolute path of the container's root directory in
	// the launcher's mount namespace (a bundle's root.path, resolved).
	Rootfs string
	// OCI is the container's runtime spec, a user's bundle's config.json.
	// When it is nil, Start generates the spec containerd's CRI plugin
	// would write (GenerateSpec) from ID, Args, Env, Cwd, Terminal,
	// Hostname and ShmSize: a named workload is a generated bundle, run
	// through the same code. When it is set, those fields must be empty.
	OCI *specs.Spec
	// ID names a generated spec's cgroup (DefaultCgroupParent/ID);
	// "container" when empty.
	ID string
	// Args is the workload's argv; Args[0] is looked up in the container's
	// PATH when it has no slash.
	Args []string
	// Env is the workload's environment; PATH defaults to DefaultPath.
	Env []string
	// Cwd is the working directory inside the container, "/" when empty.
	Cwd string
	// Terminal gives the workload a pty (`-t`). The pty is allocated from
	// the container's own devpts instance so that its slave lives inside
	// the container; the launcher keeps the master (Container.Console).
	// Like every Kata agent and runc, a terminal process is always made a
	// session leader with the pty as its controlling terminal.
	Terminal bool
	// Setsid makes the container init a session leader. False models the
	// Kata agent from 2.5.0 to 4.0.0 for a non-terminal process: the init
	// leads its own process group but stays in the launcher's session,
	// which lies outside its pid namespace. True models Kata 4.1.0, runc
	// and crun.
	Setsid bool
	// Sandbox holds the sandbox files bind-mounted onto the rootfs's /etc.
	Sandbox SandboxFiles
	// ShmSize is the size in bytes of the tmpfs on /dev/shm; zero means
	// DefaultShmSize.
	ShmSize int64
	// Hostname is set in the container's uts namespace when not empty.
	Hostname string
	// CgroupRoot is where cgroup v2 is mounted in the launcher's mount
	// namespace (GuestCgroupRoot in the guest). The container starts in a
	// cgroup of its own below it (linux.cgroupsPath) with the limits of
	// linux.resources. Empty: it stays in the launcher's cgroup, and a
	// spec with limits is refused.
	CgroupRoot string
	// Resources are a generated spec's linux.resources (a named
	// workload's limits); nil for none.
	Resources *specs.LinuxResources
	// Join are namespaces of the pod's sandbox the container joins
	// instead of getting new ones (its shared IPC and UTS namespaces).
	Join []JoinNamespace
}

// HasTerminal reports whether the container's process gets a pty.
func (s *Spec) HasTerminal() bool {
	if s.OCI != nil && s.OCI.Process != nil {
		return s.OCI.Process.Terminal
	}
	return s.Terminal
}

// SandboxFiles are the sandbox's files that Kata bind-mounts into every
// container of a pod. Each is a path in the launcher's mount namespace; an
// empty path is not mounted.
type SandboxFiles struct {
	Hosts      string
	Hostname   string
	ResolvConf string
	// Volumes are directories of the pod's sandbox (emptyDir-like
	// volumes) bind-mounted into this container after the files, each
	// with Dir set.
	Volumes []BindMount
}

// BindMount is one file bind-mounted from the sandbox into the container.
// Key is the name CRIU uses for it as an external mount: `--external
// mnt[Target]:Key` on dump and `--external mnt[Key]:Source` on restore.
type BindMount struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Key    string `json:"key"`
	// Dir says the source is a directory (a pod's volume), not a file.
	Dir bool `json:"dir,omitempty"`
}

// Binds lists the sandbox files as bind mounts, in a fixed order.
func (s SandboxFiles) Binds() []BindMount {
	var out []BindMount
	add := func(src, target, key string) {
		if src != "" {
			out = append(out, BindMount{Source: src, Target: target, Key: key})
		}
	}
	add(s.Hosts, "/etc/hosts", "hosts")
	add(s.Hostname, "/etc/hostname", "hostname")
	add(s.ResolvConf, "/etc/resolv.conf", "resolv.conf")
	return append(out, s.Volumes...)
}

// validate returns one clear error naming the field that is wrong.
func (s *Spec) validate() error {
	if s.Rootfs == "" || !filepath.IsAbs(s.Rootfs) {
		return fmt.Errorf("container rootfs %q: must be an absolute path", s.Rootfs)
	}
	fi, err := os.Stat(s.Rootfs)
	if err != nil {
		return fmt.Errorf("container rootfs: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("container rootfs %s: not a directory", s.Rootfs)
	}
	if s.OCI != nil {
		if len(s.Args) > 0 || len(s.Env) > 0 || s.Cwd != "" || s.Terminal || s.Hostname != "" || s.ShmSize != 0 {
			return errors.New("container spec: the runtime spec (OCI) gives the process, hostname and mounts: leave Args, Env, Cwd, Terminal, Hostname and ShmSize empty")
		}
		if err := CheckSpec(s.OCI); err != nil {
			return err
		}
	} else {
		if len(s.Args) == 0 || s.Args[0] == "" {
			return errors.New("container args: empty: give the command to run")
		}
		if s.Cwd != "" && !filepath.IsAbs(s.Cwd) {
			return fmt.Errorf("container cwd %q: must be an absolute path", s.Cwd)
		}
		if s.ShmSize < 0 {
			return fmt.Errorf("container shm size %d: must not be negative", s.ShmSize)
		}
		for _, e := range s.Env {
			if !strings.Contains(e, "=") {
				return fmt.Errorf("container env %q: want NAME=VALUE", e)
			}
		}
	}
	for _, b := range s.Sandbox.Binds() {
		fi, err := os.Stat(b.Source)
		if err != nil {
			return fmt.Errorf("sandbox file for %s: %w", b.Target, err)
		}
		if b.Dir && !fi.IsDir() {
			return fmt.Errorf("sandbox volume %s for %s: not a directory", b.Source, b.Target)
		}
		if !b.Dir && !fi.Mode().IsRegular() {
			return fmt.Errorf("sandbox file %s for %s: not a regular file", b.Source, b.Target)
		}
	}
	return nil
}

// resolve returns the runtime spec the container runs: a copy of OCI, or
// the generated one, with PATH, HOME (and TERM for a terminal) filled in
// when the spec leaves them out.
func (s *Spec) resolve() (*specs.Spec, error) {
	var out *specs.Spec
	if s.OCI != nil {
		data, err := json.Marshal(s.OCI)
		if err != nil {
			return nil, fmt.Errorf("container spec: %w", err)
		}
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, fmt.Errorf("container spec: %w", err)
		}
	} else {
		id := s.ID
		if id == "" {
			id = "container"
		}
		out = GenerateSpec(id, s.Args)
		out.Process.Env = append(append([]string(nil), s.Env...), out.Process.Env...)
		if s.Cwd != "" {
			out.Process.Cwd = s.Cwd
		}
		out.Process.Terminal = s.Terminal
		out.Hostname = s.Hostname
		out.Mounts = DefaultMounts(s.ShmSize)
		out.Linux.Resources = s.Resources
	}
	p := out.Process
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	has := func(name string) bool {
		for _, e := range p.Env {
			if strings.HasPrefix(e, name+"=") {
				return true
			}
		}
		return false
	}
	if !has("PATH") {
		p.Env = append(p.Env, "PATH="+DefaultPath)
	}
	if p.Terminal && !has("TERM") {
		p.Env = append(p.Env, "TERM=xterm")
	}
	if !has("HOME") {
		p.Env = append(p.Env, "HOME=/root")
	}
	if out.Linux == nil {
		out.Linux = &specs.Linux{}
	}
	return out, nil
}
