package crjob

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// Restore restores a checkpoint in this fresh guest: it refuses images
// from another kernel, CRIU or architecture before asking for them, gets
// them from the host, prepares the container's rootfs and sandbox as the
// checkpoint job did, replays the rootfs diff, restores with the sandbox's
// files mapped back onto the external mounts, adopts the restored init and
// verifies that the workload carried on.
func Restore(ctx context.Context, d *Deps, o agentapi.RestoreOptions, loadModules bool) error {
	r := reports.New("restore", d.Version)
	cp := &reports.Checkpoint{Stage: "restore", DumpOK: true, WantRestore: true, RestoreRan: true}
	r.Checkpoint = cp
	send := func() error { return d.Host.Send(agentapi.Event{Kind: agentapi.EventReport, Report: r}) }
	// Everything that does not need the checkpoint comes first: a guest
	// given its job before the checkpoint exists (ManifestFromImages) does
	// it while the workload is still being dumped.
	env, target := d.Guest.Env(ctx)
	r.Target = target
	if loadModules {
		if err := d.Guest.LoadCRIUModules(); err != nil {
			return err
		}
		r.Actions = append(r.Actions, reports.Action{Fixer: "load-module", Applied: true,
			Summary: "loaded the modules CRIU needs: " + strings.Join(d.Guest.CRIUModules, " ")})
	}
	m := o.Manifest
	var p paths
	var err error
	var early *earlyRootfs
	if o.ManifestFromImages {
		warmKerndat(ctx, d.Host, d.criu(env))
		if early, err = d.prepareEarly(o); err != nil {
			return err
		}
		if early != nil {
			p = early.paths
		}
		if p, err = d.receiveImages(cp, early != nil, p, true); err != nil || cp.Error != "" {
			return errors.Join(err, send())
		}
		set, err := images.Open(p.images)
		if err != nil {
			return errors.Join(err, send())
		}
		m = set.Manifest
	}
	w, err := restoreWorkloadOf(m, o.RootfsTag)
	if err != nil {
		return err
	}
	probes := m.VerifyExec
	if len(o.VerifyExec) > 0 {
		probes = o.VerifyExec
	}
	cp.Workload, cp.Command, cp.DumpOptions = m.Workload, m.Command, m.DumpOptions.DumpArgs()
	cr := d.criu(env)
	if cr == nil {
		cp.Error = "no criu in the guest: " + env.CRIUMissing
		return send()
	}
	// The host refused a mismatch before booting; this guards against an
	// image that is not what the host thought it booted.
	if probs := images.CheckCompat(m, images.Compat{KernelRelease: d.Guest.Release, CRIUVersion: target.CRIUVersion, Arch: d.Guest.Machine}); len(probs) > 0 {
		cp.Error = (&images.RefusedError{Dir: "(received)", Problems: probs}).Error()
		return send()
	}
	if !o.ManifestFromImages {
		if p, err = d.receiveImages(cp, false, p, false); err != nil || cp.Error != "" {
			return errors.Join(err, send())
		}
	}
	var sb container.SandboxFiles
	if early.fits(w) {
		sb, err = early.sb, container.ApplyRootfsDiff(p.images, p.rootfs)
	} else {
		if early != nil {
			if err := container.ClearRootfs(p.rootfs); err != nil {
				return errors.Join(err, send())
			}
		}
		sb, err = d.prepareFor(w, p)
	}
	if err != nil {
		return errors.Join(err, send())
	}
	rw, err := d.restoreWorkload(ctx, cr, m, p, sb, "restore")
	defer rw.close()
	cp.RestoreOptions = rw.args
	if rw.res != nil {
		cp.RestoreOK = true
		cp.RestoreSeconds = rw.res.Duration.Seconds()
		cp.RestoredPID = rw.res.PID
	}
	if err != nil {
		criuFailure(cp, err)
		return send()
	}
	defer rw.ctr.Kill()
	cp.Stage = "verify"
	cp.StateBefore = m.WorkloadState
	bundleDir := ""
	if m.Bundle != nil {
		bundleDir = m.Bundle.Dir
	}
	cp.RestoredContainer = containerInfo(rw.res.PID, specSource(bundleDir), d.cgroupRoot(), nil)
	v, err := d.verifyRestored(ctx, w, rw.res.PID, m.WorkloadState, rw.mapped, probes)
	cp.Probes = append(cp.Probes, v.probes...)
	if err != nil {
		cp.Error = err.Error()
		cp.Verification = err.Error()
		cp.StateAfter = v.after
		return send()
	}
	cp.Verified = true
	cp.Verification, cp.StateAfter, cp.SandboxFilesSeen = v.msg, v.after, v.seen
	cp.Stage = "done"
	d.Host.Progress("verify", "%s", v.msg)
	return send()
}

// receiveImages gets the images from the host and checks them against
// their manifest. Damaged images are a result, in cp.Error, not an error.
//
// With twoStreams (a job given before the checkpoint existed), the host
// sends two tar streams: the images as they reached it, then the manifest
// once it saved them (or the whole checkpoint, then nothing).
func (d *Deps) receiveImages(cp *reports.Checkpoint, prepared bool, p paths, twoStreams bool) (paths, error) {
	if !prepared {
		var err error
		if p, err = newPaths(d.root()); err != nil {
			return p, err
		}
	}
	d.Host.Progress(agentapi.StageReceiveImages, "waiting for the images")
	if err := d.Host.ReceiveImages(p.images); err != nil {
		return p, err
	}
	if twoStreams {
		if err := d.Host.ReceiveImages(p.images); err != nil {
			return p, err
		}
	}
	set, err := images.Open(p.images)
	if err == nil {
		err = set.VerifyFiles()
	}
	if err != nil {
		cp.Error = fmt.Sprintf("the images arrived damaged: %v", err)
		return p, nil
	}
	d.Host.Logf("received %d bytes of images", set.Size())
	return p, nil
}

// prepareFor prepares the rootfs (with the checkpoint's changed files) and
// the sandbox of the restored workload w.
func (d *Deps) prepareFor(w container.Workload, p paths) (container.SandboxFiles, error) {
	var sb container.SandboxFiles
	d.Host.Progress("prepare", "preparing the rootfs and the sandbox for %s", w.Name)
	if err := d.Runtime.PrepareRootfs(p.rootfs, w, d.Guest.ExtraFiles); err != nil {
		return sb, err
	}
	sb, err := d.Runtime.PrepareSandbox(p.sandbox, SandboxHostname)
	if err != nil {
		return sb, err
	}
	return sb, container.ApplyRootfsDiff(p.images, p.rootfs)
}

// restoredWorkload is what a restore from local images gives: CRIU's
// result, the adopted container, the sandbox files mapped back onto the
// external mounts, and a terminal's new pty, which must stay open while
// the workload runs.
type restoredWorkload struct {
	args   []string
	res    *criu.RestoreResult
	ctr    Container
	mapped container.SandboxFiles
	pty    []*os.File
}

func (rw *restoredWorkload) close() {
	for _, f := range rw.pty {
		_ = f.Close()
	}
	rw.pty = nil
}

// restoreWorkload restores the checkpoint m from paths.images into the
// prepared paths.rootfs, with sb's files mapped back onto the external
// mounts, and adopts the restored init. The restore job and the
// checkpoint job putting a workload back in place share it. What it got
// to (the options, CRIU's result) is in the returned value even on error.
func (d *Deps) restoreWorkload(ctx context.Context, cr CRIU, m images.Manifest, paths paths, sb container.SandboxFiles, stage string) (*restoredWorkload, error) {
	rw := &restoredWorkload{}
	ro, mapped, err := restoreOpts(m, paths, sb)
	if err != nil {
		return rw, err
	}
	rw.mapped = mapped
	if m.Terminal {
		key := ttyKey(m.DumpOptions)
		if key == "" {
			return rw, errors.New("the checkpoint is of a terminal container but its dump options name no external tty")
		}
		// A new pty for the restored terminal; the agent keeps the master
		// as it did for the original.
		master, slave, err := container.OpenPty()
		if err != nil {
			return rw, err
		}
		rw.pty = append(rw.pty, master, slave)
		ro.InheritFDs = append(ro.InheritFDs, criu.InheritFD{Key: key, File: slave})
	}
	if d.InheritFDs != nil {
		// A pod's new connections for the unix sockets the dump declared
		// external; closed with the pty's files.
		fds, err := d.InheritFDs(m.DumpOptions)
		if err != nil {
			return rw, err
		}
		for _, f := range fds {
			rw.pty = append(rw.pty, f.File)
		}
		ro.InheritFDs = append(ro.InheritFDs, fds...)
	}
	rw.args = ro.Args()
	if err := linkPreDumps(paths.images); err != nil {
		return rw, err
	}
	if err := d.prepareCgroup(m, stage); err != nil {
		return rw, err
	}
	d.Host.Progress(stage, "criu restore %s", strings.Join(rw.args, " "))
	rctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	res, err := cr.Restore(rctx, ro)
	cancel()
	if err != nil {
		return rw, err
	}
	rw.res = res
	done := stage
	if stage == "restore" {
		// The host's clock stops the downtime here.
		done = agentapi.StageRestored
	}
	d.Host.Progress(done, "restored in %s as pid %d", res.Duration.Round(time.Millisecond), res.PID)
	ctr, err := d.Runtime.Adopt(res.PID, paths.rootfs)
	if err != nil {
		return rw, err
	}
	rw.ctr = ctr
	return rw, nil
}

// restoreOpts builds the restore's options: the checkpoint's own (file
// locks, tcp...), the new rootfs as --root, each external mount mapped back
// to the file of this guest's sandbox that the dump's mount point had, and
// the restored init as our child. It returns the sandbox files it mapped,
// for the verification.
func restoreOpts(m images.Manifest, paths paths, sb container.SandboxFiles) (criu.RestoreOpts, container.SandboxFiles, error) {
	ro := criu.RestoreOpts{Set: m.RestoreOptions.Clone()}
	ro.ImagesDir = paths.images
	ro.Root = paths.rootfs
	ro.RestoreSibling = true
	var mapped container.SandboxFiles
	for _, em := range m.ExternalMounts {
		src, err := externalSource(em.Key, em.Target, sb)
		if err != nil {
			return ro, mapped, err
		}
		switch em.Target {
		case "/etc/hosts":
			mapped.Hosts = src
		case "/etc/hostname":
			mapped.Hostname = src
		case "/etc/resolv.conf":
			mapped.ResolvConf = src
		}
		ro.ExternalMounts = append(ro.ExternalMounts, criu.ExternalMount{Key: em.Key, Path: src})
	}
	return ro, mapped, nil
}

// externalSource is where this guest has the source of the checkpoint's
// external mount key at target: the sandbox's file or volume bound there,
// or, for a masked directory, the agent's empty read-only tmpfs.
func externalSource(key, target string, sb container.SandboxFiles) (string, error) {
	// The sandbox's binds come first: a masked directory is never one of
	// their targets.
	for _, b := range sb.Binds() {
		if b.Target == target {
			return b.Source, nil
		}
	}
	if checks.IsMaskedKey(key) {
		if err := checks.EmptyReadOnly(checks.MaskedDirSource); err != nil {
			return "", fmt.Errorf("the checkpoint declares the masked directory %s external (key %s), and this guest has no empty read-only tmpfs to restore it from: %w", target, key, err)
		}
		return checks.MaskedDirSource, nil
	}
	return "", fmt.Errorf("the checkpoint declares the mount %s external (key %s): kata-cr maps back only the sandbox's /etc/hosts, /etc/hostname and /etc/resolv.conf", target, key)
}

// ttyKey is the key of the external tty among the dump's options, "" when
// there is none.
func ttyKey(dump criuopt.Set) string {
	if len(dump.TTYs) == 0 {
		return ""
	}
	return dump.TTYs[0].Key()
}

// verified is what the verification of a restored workload saw.
type verified struct {
	msg string
	// after is the workload's state probed again once it was verified.
	after container.State
	// seen are the sandbox's files the restored container sees.
	seen []string
	// probes are the results of the user's commands (--verify-exec).
	probes []reports.ExecProbe
}

// verifyRestored runs the workload's own verification against the state
// recorded before the dump, records the state it carries on with, checks
// that the sandbox's files came back on their mount points, and runs the
// user's commands in the restored container (probes, --verify-exec): it is
// verified only when every one exits 0.
func (d *Deps) verifyRestored(ctx context.Context, w container.Workload, pid int, state container.State, mapped container.SandboxFiles, probes [][]string) (verified, error) {
	vctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	probe := container.Probe{PID: pid}
	msg, err := w.Verify(vctx, probe, state)
	if err != nil {
		// What the workload's probe sees now says what it lost.
		after, _ := w.Snapshot(vctx, probe)
		return verified{after: after}, err
	}
	v := verified{msg: msg}
	if len(probes) > 0 {
		d.Host.Progress("verify", "running %d command(s) in the restored container", len(probes))
		v.probes = runProbes(vctx, pid, w.Spec, d.cgroupRoot(), reports.ProbeAfter, probes, false)
		if err := probesFailed(v.probes); err != nil {
			return v, err
		}
		v.msg += fmt.Sprintf("; %d command(s) exited 0 in the restored container", len(probes))
	}
	if after, err := w.Snapshot(vctx, probe); err == nil {
		v.after = after
	}
	if binds := mapped.Binds(); len(binds) > 0 {
		if err := container.CheckSandboxFiles("/proc", pid, mapped); err != nil {
			return verified{}, err
		}
		for _, b := range binds {
			v.seen = append(v.seen, b.Target)
		}
		v.msg += fmt.Sprintf("; the restored container sees the sandbox's %s", strings.Join(v.seen, ", "))
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return verified{}, fmt.Errorf("the restored init %d is gone after the verification", pid)
	}
	return v, nil
}
