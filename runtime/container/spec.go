// Package container starts a workload the way the Kata agent starts a
// container inside its guest: new pid, mount, uts and ipc namespaces, a
// pivot_root into the container's rootfs, the sandbox's /etc/hosts,
// /etc/hostname and /etc/resolv.conf bind-mounted onto the rootfs, private
// tmpfs mounts on /dev and /dev/shm, and stdio opened inside the container.
//
// It also prepares rootfs and sandbox directories, records what changed in a
// rootfs (the rootfs-diff that travels with a checkpoint), and holds the
// table of named workloads with the checks that prove a restored workload
// carried on.
//
// Go cannot fork without exec, so Start re-executes the running binary as a
// small init helper that sets the mounts up and then execve()s the workload.
// Every binary that calls Start must call Init first thing in main (or in
// TestMain).
package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultPath is the PATH a container gets when its Env sets none; it is the
// one runc and the Kata agent use.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultShmSize is the size of /dev/shm when Spec.ShmSize is zero; it is
// Docker's and Kata's default.
const DefaultShmSize = 64 << 20

// Spec describes one container.
type Spec struct {
	// Rootfs is the absolute path of the container's root directory.
	Rootfs string
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
}

// SandboxFiles are the sandbox's files that Kata bind-mounts into every
// container of a pod. Each is a path in the launcher's mount namespace; an
// empty path is not mounted.
type SandboxFiles struct {
	Hosts      string
	Hostname   string
	ResolvConf string
}

// BindMount is one file bind-mounted from the sandbox into the container.
// Key is the name CRIU uses for it as an external mount: `--external
// mnt[Target]:Key` on dump and `--external mnt[Key]:Source` on restore.
type BindMount struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Key    string `json:"key"`
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
	return out
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
	for _, b := range s.Sandbox.Binds() {
		fi, err := os.Stat(b.Source)
		if err != nil {
			return fmt.Errorf("sandbox file for %s: %w", b.Target, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("sandbox file %s for %s: not a regular file", b.Source, b.Target)
		}
	}
	return nil
}

// env returns the workload's environment with PATH (and TERM for a
// terminal) filled in when the spec leaves them out.
func (s *Spec) env() []string {
	env := append([]string(nil), s.Env...)
	has := func(name string) bool {
		for _, e := range env {
			if strings.HasPrefix(e, name+"=") {
				return true
			}
		}
		return false
	}
	if !has("PATH") {
		env = append(env, "PATH="+DefaultPath)
	}
	if s.Terminal && !has("TERM") {
		env = append(env, "TERM=xterm")
	}
	if !has("HOME") {
		env = append(env, "HOME=/root")
	}
	return env
}
