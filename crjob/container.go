package crjob

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/internal/excerpt"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// cgroupLimitFiles are the cgroup v2 files a container's report quotes:
// the limits linux.resources can set.
var cgroupLimitFiles = []string{"memory.max", "memory.low", "memory.swap.max", "pids.max", "cpu.max", "cpu.weight", "cpuset.cpus", "cpuset.mems"}

// containerInfo reads how the container whose init is pid was built: its
// own mount table, and its cgroup with the limits set there. cgroupRoot is
// where the guest has cgroup v2 ("" when the job has none). What cannot be
// read is left out: the report is evidence, not a judge.
func containerInfo(pid int, source, cgroupRoot string, notes []string) *reports.ContainerInfo {
	info := &reports.ContainerInfo{Spec: source, Notes: notes}
	if mounts, err := proc.New("/proc").MountInfo(pid); err == nil {
		for _, m := range mounts {
			info.Mounts = append(info.Mounts, reports.ContainerMount{
				Path: m.MountPoint, FSType: m.FSType, Source: m.Source, Root: m.Root,
				ReadOnly: hasMountOption(m.Options, "ro"),
			})
		}
	}
	cg, err := container.CgroupOf("/proc", pid)
	if err != nil || cg == "/" || cgroupRoot == "" {
		return info
	}
	info.Cgroup = cg
	for _, f := range cgroupLimitFiles {
		data, err := os.ReadFile(filepath.Join(cgroupRoot, cg, f))
		if err != nil {
			continue
		}
		if info.CgroupLimits == nil {
			info.CgroupLimits = map[string]string{}
		}
		info.CgroupLimits[f] = strings.TrimSpace(string(data))
	}
	return info
}

func hasMountOption(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// specSource names where a container's runtime spec came from, for the
// report.
func specSource(bundleDir string) string {
	if bundleDir == "" {
		return "generated"
	}
	return bundleDir
}

// Probe timing: a probe is a program started in the container under TCG
// (a Python interpreter takes seconds); a before-probe is retried, as a
// startup probe, until it passes or readyTimeout ends.
const (
	probeTimeout = 60 * time.Second
	probeRetry   = 500 * time.Millisecond
	// probeOutput bounds the output a report keeps of one probe.
	probeOutput = 4096
)

// runProbes runs each command in the container whose init is pid, as the
// spec's user with its environment (the generated spec's for a named
// workload), and returns their results. retry keeps running a failing
// command until it passes or ctx ends; otherwise each runs once.
func runProbes(ctx context.Context, pid int, spec *specs.Spec, cgroupRoot, phase string, cmds [][]string, retry bool) []reports.ExecProbe {
	var out []reports.ExecProbe
	for _, args := range cmds {
		p := reports.ExecProbe{Phase: phase, Args: args, ExitCode: -1}
		for {
			p.Attempts++
			runProbe(ctx, pid, spec, cgroupRoot, &p)
			if p.Passed() || !retry {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(probeRetry):
				continue
			}
			break
		}
		out = append(out, p)
	}
	return out
}

func runProbe(ctx context.Context, pid int, spec *specs.Spec, cgroupRoot string, p *reports.ExecProbe) {
	e := container.ExecSpec{Args: p.Args, CgroupRoot: cgroupRoot}
	if spec != nil && spec.Process != nil {
		e.Env = spec.Process.Env
		e.UID, e.GID = spec.Process.User.UID, spec.Process.User.GID
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	r, err := container.Exec(pctx, pid, e)
	p.ExitCode, p.Signal, p.Seconds = r.Status.Code, int(r.Status.Signal), r.Duration.Seconds()
	p.Output = excerpt.Clip(string(r.Output), probeOutput)
	p.Truncated = r.Truncated || len(p.Output) < len(r.Output)
	p.Error = ""
	if err != nil {
		p.Error = err.Error()
	}
}

// probesFailed says which probes did not pass, nil when all did.
func probesFailed(ps []reports.ExecProbe) error {
	var errs []error
	for _, p := range ps {
		if p.Passed() {
			continue
		}
		why := fmt.Sprintf("exit code %d", p.ExitCode)
		switch {
		case p.Error != "":
			why = p.Error
		case p.Signal != 0:
			why = fmt.Sprintf("killed by signal %d", p.Signal)
		}
		when := "in the restored container"
		if p.Phase == reports.ProbeBefore {
			when = "before the dump"
		}
		errs = append(errs, fmt.Errorf("probe %q %s failed: %s: %q", strings.Join(p.Args, " "), when, why, excerpt.FirstLine(p.Output)))
	}
	return errors.Join(errs...)
}

// checkpointWorkload is the workload a checkpoint job runs: the user's
// bundle, or a named workload or command.
func checkpointWorkload(o agentapi.CheckpointOptions) (container.Workload, error) {
	if b := o.Bundle; b != nil {
		if b.Spec == nil {
			return container.Workload{}, errors.New("checkpoint job: the bundle has no runtime spec")
		}
		if err := container.CheckSpec(b.Spec); err != nil {
			return container.Workload{}, err
		}
		return container.FromBundle(b.Spec, b.RootfsTag), nil
	}
	return container.LookupWorkload(o.Workload, o.Command)
}

// restoreWorkloadOf is the workload a checkpoint holds; a bundle's rootfs
// is the share tagged tag (container.BundleRootfsTag when empty).
func restoreWorkloadOf(m images.Manifest, tag string) (container.Workload, error) {
	if b := m.Bundle; b != nil {
		if b.Spec == nil {
			return container.Workload{}, errors.New("the checkpoint's bundle has no runtime spec")
		}
		if tag == "" {
			tag = container.BundleRootfsTag
		}
		return container.FromBundle(b.Spec, tag), nil
	}
	return container.LookupWorkload(m.Workload, m.Command)
}

// bundleDir is the host directory of the job's bundle, "" for a named
// workload.
func (j *cpJob) bundleDir() string {
	if j.opts.Bundle == nil {
		return ""
	}
	return j.opts.Bundle.Dir
}

// notes are the spec's keys accepted without effect.
func (j *cpJob) notes() []string {
	if j.w.Spec == nil {
		return nil
	}
	return container.SpecNotes(j.w.Spec)
}

// cgroupRoot is where the guest has cgroup v2, "" without cgroups.
func (d *Deps) cgroupRoot() string {
	if d.Runtime == nil {
		return ""
	}
	return d.Runtime.CgroupRoot()
}

// prepareCgroup creates the cgroup of the checkpoint's container, with the
// limits of its spec, before CRIU restores the container into it: CRIU
// recreates a missing cgroup but not its limits, as runc knows (it applies
// the container's resources itself on restore).
func (d *Deps) prepareCgroup(m images.Manifest, stage string) error {
	root := d.cgroupRoot()
	if root == "" {
		return nil
	}
	spec := container.GenerateSpec(m.Workload, m.Command)
	if w, err := container.Lookup(m.Workload); err == nil {
		spec.Linux.Resources = w.Resources
	}
	if m.Bundle != nil && m.Bundle.Spec != nil {
		spec = m.Bundle.Spec
	}
	cg, err := container.CreateCgroup(root, spec)
	if err != nil {
		return fmt.Errorf("prepare the container's cgroup: %w", err)
	}
	if cg != "" {
		d.Host.Logf("%s: created the container's cgroup %s with its limits", stage, cg)
	}
	return nil
}
