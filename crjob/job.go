// Package crjob runs kata-cr's checkpoint and restore jobs inside a guest,
// as library code: start the workload the way the Kata agent starts a
// container, check and predict, fix, dump, verify the images, save them on
// the host, restore and verify. The agent's main only decodes a job and
// calls Checkpoint or Restore; what a step talks to (the host, CRIU, the
// container runtime, the clock) is injected through Deps, so every step
// runs in unit tests without a VM and many jobs can share one guest.
package crjob

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// Host is a job's channel to kata-cr on the host.
type Host interface {
	// Progress says that the job reached a stage; Logf gives a detail.
	Progress(stage, format string, args ...any)
	Logf(format string, args ...any)
	// Send sends an event (the job's report).
	Send(ev agentapi.Event) error
	// Result sends a structured result under a stage name.
	Result(stage string, v any) error
	// SendImages streams the images in dir with their manifest and waits
	// for the host's answer; ReceiveImages extracts the host's into dir.
	SendImages(m images.Manifest, dir string) (agentapi.ImagesSaved, error)
	ReceiveImages(dir string) error
}

// CRIU dumps and restores process trees; *criu.Binary is the real one.
type CRIU interface {
	Dump(ctx context.Context, o criu.DumpOpts) (*criu.DumpResult, error)
	Restore(ctx context.Context, o criu.RestoreOpts) (*criu.RestoreResult, error)
}

// Container is a running container; *container.Container is the real one.
type Container interface {
	PID() int
	Running() bool
	Done() <-chan struct{}
	Wait(ctx context.Context) (container.ExitStatus, error)
	Kill() error
	TTYKey() (string, error)
}

// Runtime prepares, starts and adopts containers the way the Kata agent
// does; Kata is the real one.
type Runtime interface {
	PrepareRootfs(rootfs string, w container.Workload, extra map[string]string) error
	PrepareSandbox(dir, hostname string) (container.SandboxFiles, error)
	Start(spec container.Spec) (Container, error)
	Adopt(pid int, rootfs string) (Container, error)
	// CgroupRoot is where the guest has cgroup v2, "" without cgroups.
	CgroupRoot() string
}

// Kata is the container runtime of runtime/container.
type Kata struct {
	// Cgroups is where the guest has cgroup v2 (container.
	// GuestCgroupRoot); PrepareSandbox mounts it there when it is not yet,
	// and each container started gets its cgroup below it. Empty: no
	// cgroups.
	Cgroups string
	// LoadModules loads the modules a bundle's container needs (9p,
	// overlay); nil when they are built in.
	LoadModules func() error
}

// CgroupRoot is where the guest has cgroup v2.
func (k Kata) CgroupRoot() string { return k.Cgroups }

// PrepareRootfs builds the workload's rootfs, or for a bundle mounts its
// shared rootfs, after loading the modules that takes.
func (k Kata) PrepareRootfs(rootfs string, w container.Workload, extra map[string]string) error {
	if w.RootfsTag != "" && k.LoadModules != nil {
		if err := k.LoadModules(); err != nil {
			return err
		}
	}
	return container.PrepareWorkload(rootfs, w, extra)
}

// PrepareSandbox writes the sandbox's /etc files and mounts the guest's
// cgroup v2, as Kata's agent does when it starts.
func (k Kata) PrepareSandbox(dir, hostname string) (container.SandboxFiles, error) {
	if k.Cgroups != "" {
		if err := container.EnsureCgroup2(k.Cgroups); err != nil {
			return container.SandboxFiles{}, err
		}
	}
	return container.PrepareSandbox(dir, hostname)
}

// Start starts a container, in a cgroup of its own below CgroupRoot.
func (k Kata) Start(spec container.Spec) (Container, error) {
	if spec.CgroupRoot == "" {
		spec.CgroupRoot = k.Cgroups
	}
	c, err := container.Start(spec)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Adopt takes over a restored container init.
func (Kata) Adopt(pid int, rootfs string) (Container, error) {
	c, err := container.Adopt(pid, rootfs)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Guest is what a job knows about the guest it runs in.
type Guest struct {
	// Release and Machine are uname -r and -m.
	Release, Machine string
	// Env gathers what the checks read (the kernel config, criu) and the
	// report's target.
	Env func(ctx context.Context) (*checks.Env, reports.Target)
	// Checks and Fixers are the guest's own, besides the workload's.
	Checks []checks.Check
	Fixers []checks.Fixer
	// ExtraFiles are the files the image carries for --include, mapped
	// into the container's rootfs.
	ExtraFiles map[string]string
	// CRIUModules are the modules the image ships for CRIU, and
	// LoadCRIUModules loads them.
	CRIUModules     []string
	LoadCRIUModules func() error
}

// Deps are a job's collaborators.
type Deps struct {
	Host    Host
	Guest   Guest
	Runtime Runtime
	// CRIU overrides the guest's criu binary (env.CRIU) when set.
	CRIU CRIU
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Root holds the job's directories (DefaultRoot when empty): the
	// container's rootfs, the sandbox's files and the images.
	Root string
	// Version is kata-cr's, for the report.
	Version string
	// InheritFDs gives the files a restore hands CRIU besides a
	// terminal's (--inherit-fd): in a pod, a new connection for each unix
	// socket the dump declared external. Nil for none.
	InheritFDs func(dump criuopt.Set) ([]criu.InheritFD, error)
}

// DefaultRoot is where a job builds the container and the images in the
// guest: on the agent's tmpfs root, never on the initramfs (which CRIU
// cannot dump).
const DefaultRoot = "/var/lib/kata-cr"

// SandboxHostname is the pod's hostname in the sandbox's files and the
// container's uts namespace.
const SandboxHostname = "kata-cr-pod"

// Time limits under TCG.
const (
	// readyTimeout bounds the wait for a workload to come up (or,
	// restored, to prove it carries on).
	readyTimeout = 90 * time.Second
	// dumpTimeout bounds one CRIU dump; it also becomes CRIU's timeout
	// for freezing the tree.
	dumpTimeout = 3 * time.Minute
	// restoreTimeout bounds one CRIU restore.
	restoreTimeout = 3 * time.Minute
)

func (d *Deps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Deps) root() string {
	if d.Root != "" {
		return d.Root
	}
	return DefaultRoot
}

// criu is the CRIU the job drives: the override, else the guest's binary;
// nil when the guest has none.
func (d *Deps) criu(env *checks.Env) CRIU {
	if d.CRIU != nil {
		return d.CRIU
	}
	if env.CRIU == nil {
		return nil
	}
	return env.CRIU
}

// paths are the directories of one job.
type paths struct {
	root, rootfs, sandbox, images string
}

// newPaths clears and creates the job's directories below root.
func newPaths(root string) (paths, error) {
	p := paths{
		root:    root,
		rootfs:  filepath.Join(root, "rootfs"),
		sandbox: filepath.Join(root, "sandbox"),
		images:  filepath.Join(root, "images"),
	}
	for _, d := range []string{p.rootfs, p.sandbox, p.images} {
		if err := os.RemoveAll(d); err != nil {
			return p, fmt.Errorf("prepare %s: %w", d, err)
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return p, fmt.Errorf("prepare %s: %w", root, err)
	}
	return p, nil
}
