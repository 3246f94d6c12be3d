package crjob

import (
	"context"
	"fmt"
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

// cpJob is one checkpoint job: the workload, the container running it,
// what the fixers changed and the report being built.
type cpJob struct {
	d         *Deps
	opts      agentapi.CheckpointOptions
	fix       bool
	w         container.Workload
	spec      container.Spec
	ctr       Container
	paths     paths
	sb        container.SandboxFiles
	base      *container.Baseline
	restarted bool
	env       *checks.Env
	target    reports.Target
	r         *reports.Report
	cp        *reports.Checkpoint
	// imagesBad says why the images do not match the frozen tree.
	imagesBad string
	// putBack holds the pty of a workload restored in place, open until
	// the job ends.
	putBack *restoredWorkload
	// preDumps are the pre-dumps that ran before the final dump.
	preDumps []reports.PreDump
	// warming says start waited for the workload's Up only: Ready is
	// still to be waited for before the dump (warmUp).
	warming bool
}

// Checkpoint starts the workload o names the way the Kata agent starts a
// container, predicts the dump from the checks, fixes what it may (fix is
// --auto-fix), dumps, verifies the images, sends them to the host with a
// manifest, and sends the report. A failure of the workload or of CRIU is
// a result in the report; only a failure of the job itself is an error.
func Checkpoint(ctx context.Context, d *Deps, o agentapi.CheckpointOptions, fix bool) error {
	w, err := checkpointWorkload(o)
	if err != nil {
		return err
	}
	p, err := newPaths(d.root())
	if err != nil {
		return err
	}
	j := &cpJob{d: d, opts: o, fix: fix, w: w, paths: p}
	defer j.stop()
	j.r = reports.New("checkpoint", d.Version)
	j.cp = &reports.Checkpoint{Workload: w.Name, Command: w.Args, Stage: "start"}
	j.r.Checkpoint = j.cp
	j.env, j.target = d.Guest.Env(ctx)
	j.r.Target = j.target
	if err := j.run(ctx); err != nil {
		return err
	}
	return j.report()
}

// report sends the report as it stands.
func (j *cpJob) report() error {
	return j.d.Host.Send(agentapi.Event{Kind: agentapi.EventReport, Report: j.r})
}

// run goes through the stages; a stage that ends the job early has put
// its reason in the report.
func (j *cpJob) run(ctx context.Context) error {
	if ok, err := j.startContainer(ctx); !ok || err != nil {
		return err
	}
	return j.checkpointStarted(ctx)
}

// checkpointStarted goes through the stages after the start: j.ctr runs
// (a pod's job starts its containers itself, then checkpoints each).
func (j *cpJob) checkpointStarted(ctx context.Context) error {
	res := j.preflight(ctx)
	probe := container.Probe{PID: j.ctr.PID()}
	if j.refuseFix(ctx, res, probe) {
		return nil
	}
	do, skipped, err := j.dumpOpts(res)
	if err != nil {
		return err
	}
	j.cp.Container = containerInfo(j.ctr.PID(), specSource(j.bundleDir()), j.d.cgroupRoot(), j.notes())
	if err := j.warmUp(ctx); err != nil {
		j.cp.Error = err.Error()
		j.r.Findings = append(j.r.Findings, res.Findings...)
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, readyTimeout)
	if len(j.opts.VerifyExecBefore) > 0 {
		j.d.Host.Progress("probe", "running %d command(s) in the container to record its state", len(j.opts.VerifyExecBefore))
		j.cp.Probes = runProbes(sctx, j.ctr.PID(), j.w.Spec, j.d.cgroupRoot(), reports.ProbeBefore, j.opts.VerifyExecBefore, true)
	}
	if err := probesFailed(j.cp.Probes); err != nil {
		cancel()
		j.cp.Error = fmt.Sprintf("record the workload's state before the dump: %v", err)
		j.r.Findings = append(j.r.Findings, res.Findings...)
		return nil
	}
	state, err := j.w.Snapshot(sctx, probe)
	cancel()
	if err != nil {
		j.cp.Error = fmt.Sprintf("snapshot the workload's state before the dump: %v", err)
		j.r.Findings = append(j.r.Findings, res.Findings...)
		return nil
	}
	j.cp.Stage = "dump"
	j.cp.StateBefore = state
	j.cp.DumpOptions = do.DumpArgs()
	if j.fix {
		j.r.Findings = append(j.r.Findings, planFinding(res.Plan, j.cp.DumpOptions, skipped))
	}
	j.r.Findings = append(j.r.Findings, markWorkedAround(res.Findings, do.Set, j.fix)...)
	cr := j.d.criu(j.env)
	if cr == nil {
		j.cp.Error = "no criu in the guest: " + j.env.CRIUMissing
		return nil
	}
	// A tree CRIU cannot seize is refused before the proofs of the
	// options: each of their dumps would only wait for CRIU's timeout.
	if j.refuseHang(ctx, cr, do, j.predicted(res), probe) {
		return nil
	}
	// The options are proven only for a plan predicted to work: a dump
	// without one of them would fail first on a blocker they do not mend.
	if j.opts.Prove && j.fix && res.Plan.WithOptions {
		j.r.Findings = append(j.r.Findings, j.prove(ctx, cr, res.Findings, do)...)
	}
	if j.refuseLoss(ctx, res.Plan, probe) {
		return nil
	}
	do = j.preDump(ctx, cr, do, res.Findings)
	dumped, ok := j.dump(ctx, cr, do, j.expect(res), res.Plan, probe)
	if !ok {
		return nil
	}
	m := j.manifest(do, state)
	if !j.save(ctx, cr, m, dumped) {
		return nil
	}
	if err := j.bench(ctx, cr, do, dumped.Duration); err != nil {
		return err
	}
	j.cp.Stage = "done"
	return nil
}

// startContainer prepares the rootfs and the sandbox and starts the
// workload. ok is false when the workload did not start; the report says
// why.
func (j *cpJob) startContainer(ctx context.Context) (ok bool, err error) {
	h := j.d.Host
	h.Progress("prepare", "preparing the rootfs and the sandbox for %s", j.w.Name)
	if err := j.prepareRootfs(); err != nil {
		return false, err
	}
	sb, err := j.d.Runtime.PrepareSandbox(j.paths.sandbox, SandboxHostname)
	if err != nil {
		return false, err
	}
	j.sb = sb
	j.spec = container.Spec{Rootfs: j.paths.rootfs, Setsid: j.opts.RuntimeSetsid, Sandbox: sb}
	if j.w.Spec != nil {
		// A bundle's spec says everything about its process.
		j.spec.OCI = j.w.Spec
	} else {
		j.spec.ID, j.spec.Args, j.spec.Hostname = j.w.Name, j.w.Args, SandboxHostname
		j.spec.Terminal = j.opts.Terminal || j.w.Terminal
		j.spec.Resources = j.w.Resources
	}
	how := "as the Kata agent 2.5.0 to 4.0.0 does: the init is not a session leader"
	if j.spec.Setsid || j.spec.HasTerminal() {
		how = "with the init a session leader, as runc and the Kata agent 4.1.0 do"
	}
	h.Progress("start", "starting %s (%s) %s", j.w.Name, strings.Join(j.w.Args, " "), how)
	if f, err := j.start(ctx); err != nil {
		if f == nil {
			return false, err
		}
		j.r.Findings = append(j.r.Findings, *f)
		j.cp.Error = f.Summary
		return false, nil
	}
	return true, nil
}

// prepareRootfs builds the container's rootfs afresh and records it as the
// baseline of the rootfs diff: a restarted workload must find it as a new
// container would, without the sockets and pid files of its first run.
func (j *cpJob) prepareRootfs() error {
	if err := container.ClearRootfs(j.paths.rootfs); err != nil {
		return err
	}
	if err := j.d.Runtime.PrepareRootfs(j.paths.rootfs, j.w, j.d.Guest.ExtraFiles); err != nil {
		return err
	}
	base, err := container.TakeBaseline(j.paths.rootfs)
	if err != nil {
		return err
	}
	j.base = base
	return nil
}

// preflight runs the checks of the guest and of the live workload and
// predicts the dump before anything is changed or dumped; with fix it
// applies the fixes, checks again and predicts again.
func (j *cpJob) preflight(ctx context.Context) checks.DoctorResult {
	h := j.d.Host
	j.cp.Stage = "preflight"
	j.env.PID = j.ctr.PID()
	runner := checks.Runner{Checks: append(append(append([]checks.Check(nil), j.d.Guest.Checks...), checks.ProcessChecks()...), checks.MountChecks()...)}
	fixers := append(append([]checks.Fixer(nil), j.d.Guest.Fixers...), j.criuOptionFixer(), j.restartFixer())
	h.Progress("checks", "running %d checks on the guest and on the workload (pid %d)", len(runner.Checks), j.env.PID)
	if j.fix {
		j.cp.Stage = "fix"
	}
	res := checks.Doctor(ctx, j.env, runner, fixers, checks.DoctorOptions{Fix: j.fix, Predict: true,
		BeforeFix: func(first checks.DoctorResult) {
			if j.opts.Prove {
				j.judgePlain(ctx, first.Prediction)
			}
		},
		BeforeRecheck: func(env *checks.Env) {
			env.PID = j.ctr.PID()
			h.Progress("checks", "checking again after the fixes")
		}})
	j.r.Prediction = res.Prediction
	if j.fix {
		j.r.Plan = res.Plan
	}
	h.Progress("predict", "%s", predictionLine(res.Prediction))
	if j.fix {
		for _, a := range res.Actions {
			h.Logf("fix %s: applied=%v %s %s", a.Fixer, a.Applied, a.Summary, a.Error)
		}
	} else {
		res.Actions = describeActions(res.Before, res.Actions, fixers, j)
	}
	j.r.Actions = res.Actions
	return res
}

// expect is what the dump that runs is predicted to do: a plain dump
// without fixes, the plan's dump with them.
func (j *cpJob) expect(res checks.DoctorResult) bool {
	if j.fix {
		return res.Plan.WithOptions
	}
	return res.Prediction.DumpWillSucceed
}

// predicted is the prediction of the dump that runs: the plan's with
// fixes, the plain one's without.
func (j *cpJob) predicted(res checks.DoctorResult) *reports.Prediction {
	if j.fix {
		return res.Plan
	}
	return res.Prediction
}

// dumpOpts are the options of the dump that runs: the plan's with fixes,
// none without, less (and returned) those kata-cr does not pass to CRIU; a
// terminal container's pty becomes an external tty.
func (j *cpJob) dumpOpts(res checks.DoctorResult) (criu.DumpOpts, criuopt.Set, error) {
	var do criu.DumpOpts
	var skipped criuopt.Set
	if j.fix {
		do.Set, skipped = res.Plan.CRIU.Passed()
	}
	if !skipped.IsZero() {
		j.d.Host.Logf("criu options %s: kata-cr does not pass them", skipped.DumpLine())
	}
	do.PID = j.ctr.PID()
	do.ImagesDir = j.paths.images
	if masked := checks.MaskedMounts("/proc", do.PID, do.Set); len(masked) > 0 {
		// The masked directories declared external hold nothing only
		// if nothing remounted and filled them since the check: look
		// again while CRIU holds the tree frozen, and abort otherwise.
		do.Frozen = func() error {
			for _, d := range masked {
				if err := checks.EmptyReadOnly(d); err != nil {
					return fmt.Errorf("a masked directory declared external is no longer empty and read-only: %w", err)
				}
			}
			return nil
		}
	}
	do.LeaveRunning = j.opts.LeaveRunning
	if j.spec.HasTerminal() {
		// The pty's master stays with the agent: the slave is an external
		// tty, handed back on restore with --inherit-fd; --shell-job would
		// look for a session outside the container instead.
		key, err := j.ctr.TTYKey()
		if err != nil {
			return do, skipped, err
		}
		tty, ok := criuopt.ParseTTY(key)
		if !ok {
			return do, skipped, fmt.Errorf("the container's terminal key %q is not tty[RDEV:DEV]", key)
		}
		do.ShellJob = false
		do.TTYs = append(do.TTYs, tty)
	}
	return do, skipped, nil
}

// dump runs CRIU's dump and compares it with the prediction. ok is false
// when the dump failed: CRIU thawed the tree, and the report says whether
// the workload still runs.
func (j *cpJob) dump(ctx context.Context, cr CRIU, do criu.DumpOpts, expect bool, plan *reports.Prediction, probe container.Probe) (*criu.DumpResult, bool) {
	h := j.d.Host
	h.Progress(agentapi.StageFreeze, "criu dump %s", strings.Join(j.cp.DumpOptions, " "))
	dctx, cancel := context.WithTimeout(ctx, dumpTimeout)
	recordFault := j.injectFault(&do)
	res, err := cr.Dump(dctx, do)
	recordFault()
	cancel()
	matched := (err == nil) == expect
	j.cp.PredictionMatched = &matched
	j.r.Findings = append(j.r.Findings, predictionFinding(plan, expect, err))
	if err != nil {
		criuFailure(j.cp, err)
		j.sendDumpLog(err)
		j.cp.FailureSignature, j.cp.PredictedBy = predictedCause(plan, err)
		running := j.thawed(probe)
		j.cp.WorkloadRunning = &running
		if running {
			j.cp.StateAfter = j.stateAfterFailedDump(ctx, probe)
		}
		h.Progress("dump", "failed: %v; the workload is %s", err, map[bool]string{true: "still running", false: "NOT running any more"}[running])
		return nil, false
	}
	j.cp.DumpOK = true
	j.cp.DumpSeconds = res.Duration.Seconds()
	j.cp.Timing = dumpTiming(res)
	j.cp.Timing.PreDumps = j.preDumps
	if do.ParentDir != "" {
		if err := unlinkPreDumps(do.ImagesDir); err != nil {
			j.imagesBad = err.Error()
		}
	}
	h.Progress("dump", "dumped in %s", res.Duration.Round(time.Millisecond))
	imgs := imagesFinding(res)
	j.r.Findings = append(j.r.Findings, imgs)
	if imgs.Status == reports.Fail {
		j.imagesBad = imgs.Reason
	}
	if j.opts.LeaveRunning {
		j.r.Findings = append(j.r.Findings, j.leftRunning(probe))
	}
	return res, true
}

// stateAfterFailedDump probes the original workload again a moment after
// a failed dump, so that the report shows it carrying on (a counter that
// moved on), not merely alive.
func (j *cpJob) stateAfterFailedDump(ctx context.Context, probe container.Probe) map[string]string {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(500 * time.Millisecond):
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := j.w.Snapshot(sctx, probe)
	if err != nil {
		j.d.Host.Logf("probe the workload after the failed dump: %v", err)
		return nil
	}
	return st
}

// leftRunning checks that --leave-running left the original running.
func (j *cpJob) leftRunning(probe container.Probe) reports.Finding {
	running := j.ctr.Running() && probe.Alive()
	j.cp.WorkloadRunning = &running
	f := reports.Finding{ID: "checkpoint.leave-running", Category: "checkpoint", Level: reports.Required, Status: reports.Pass,
		Summary: fmt.Sprintf("the original workload (pid %d) still runs in this guest after the dump (--leave-running)", probe.PID)}
	if !running {
		f.Status = reports.Fail
		f.Summary = fmt.Sprintf("the original workload (pid %d) stopped after the dump despite --leave-running", probe.PID)
	}
	return f
}

// manifest describes the checkpoint for the host and for its restore.
func (j *cpJob) manifest(do criu.DumpOpts, state container.State) images.Manifest {
	m := images.Manifest{
		KernelRelease: j.d.Guest.Release, CRIUVersion: j.target.CRIUVersion, Arch: j.d.Guest.Machine,
		Workload: j.w.Name, Command: j.w.Args, Terminal: j.spec.HasTerminal(), Setsid: j.spec.Setsid || j.spec.HasTerminal(),
		WorkloadState: state, DumpOptions: do.Set, RestoreOptions: do.RestoreNeeds(),
		VerifyExec: j.opts.VerifyExec,
	}
	if b := j.opts.Bundle; b != nil {
		// The host adds where the rootfs is and its fingerprint.
		m.Bundle = &images.Bundle{Dir: b.Dir, Spec: b.Spec}
	}
	for _, em := range do.ExternalMounts {
		m.ExternalMounts = append(m.ExternalMounts, images.ExternalMount{Key: em.Key, Target: em.Path})
	}
	return m
}

// save checks the images, adds the container's changed files and sends
// them to the host. Until the host says it saved them, a failure must not
// lose the workload: without --leave-running CRIU killed the tree, and the
// local images are its only copy, so the workload is restored in place.
func (j *cpJob) save(ctx context.Context, cr CRIU, m images.Manifest, res *criu.DumpResult) bool {
	notSaved := func(why string) bool {
		j.cp.Error = why
		if !j.opts.LeaveRunning {
			j.restoreInPlace(ctx, cr, m, why)
		}
		return false
	}
	if j.imagesBad != "" {
		return notSaved("the images do not match the frozen process tree (" + j.imagesBad + "): they were not sent")
	}
	j.cp.Stage = "copy"
	diff, err := j.base.Diff(j.paths.rootfs)
	if err == nil {
		err = container.WriteRootfsDiff(j.paths.images, j.paths.rootfs, diff)
	}
	if err != nil {
		return notSaved(fmt.Sprintf("save the container's changed files: %v", err))
	}
	j.d.Host.Logf("rootfs diff: %d changed, %d deleted", len(diff.Changed), len(diff.Deleted))
	j.d.Host.Progress("copy", "sending the images to the host")
	saved, err := j.d.Host.SendImages(m, j.paths.images)
	switch {
	case err != nil:
		return notSaved(err.Error())
	case !saved.OK:
		return notSaved(fmt.Sprintf("the host could not save the images: %s", saved.Error))
	}
	j.d.Host.Logf("the host saved the images in %s", saved.Dir)
	return true
}
