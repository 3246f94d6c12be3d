package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
)

func init() { register(agentapi.JobCheckpoint, runCheckpoint) }

// The fixers that process and mount findings name (checks/process.go);
// they act on the workload, so they live here, with it.
const (
	fixerCRIUOption    = "criu-option"
	fixerRestartSetsid = "restart-setsid"
)

// dumpTimeout bounds one CRIU dump under TCG; it also becomes CRIU's
// timeout for freezing the tree.
const dumpTimeout = 3 * time.Minute

// cpJob is one checkpoint job: the workload, the container running it and
// what the fixers changed.
type cpJob struct {
	s         *session
	opts      agentapi.CheckpointOptions
	w         container.Workload
	spec      container.Spec
	ctr       *container.Container
	paths     crPaths
	sb        container.SandboxFiles
	base      *container.Baseline
	restarted bool
	// putBack holds the pty of a workload restored in place, open until
	// the job ends.
	putBack *restoredWorkload
}

// prepareRootfs builds the container's rootfs afresh and records it as the
// baseline of the rootfs diff: a restarted workload must find it as a new
// container would, without the sockets and pid files of its first run.
func (j *cpJob) prepareRootfs() error {
	if err := os.RemoveAll(j.paths.rootfs); err != nil {
		return fmt.Errorf("clear the rootfs: %w", err)
	}
	if err := container.PrepareWorkload(j.paths.rootfs, j.w, j.s.extraFiles()); err != nil {
		return err
	}
	base, err := container.TakeBaseline(j.paths.rootfs)
	if err != nil {
		return err
	}
	j.base = base
	return nil
}

// runCheckpoint starts the workload the way the Kata agent starts a
// container, predicts the dump from the checks, fixes what it may, dumps,
// verifies the images and streams them to the host with a manifest, and
// sends the report. A failure of the workload or of CRIU is a result in the
// report; only a failure of the agent itself is an error.
func runCheckpoint(ctx context.Context, s *session, job agentapi.Job) error {
	var o agentapi.CheckpointOptions
	if len(job.Options) > 0 {
		if err := json.Unmarshal(job.Options, &o); err != nil {
			return fmt.Errorf("checkpoint options: %w", err)
		}
	}
	if err := s.requireTmpfsRoot(); err != nil {
		return err
	}
	ensurePath()
	w, err := workloadFor(o.Workload, o.Command)
	if err != nil {
		return err
	}
	paths, err := newCRPaths()
	if err != nil {
		return err
	}
	j := &cpJob{s: s, opts: o, w: w, paths: paths}
	defer j.stop()

	r := reports.New("checkpoint", version)
	cp := &reports.Checkpoint{Workload: w.Name, Command: w.Args, Stage: "start"}
	r.Checkpoint = cp
	env, target := s.guestEnv(ctx)
	r.Target = target

	s.progress("prepare", "preparing the rootfs and the sandbox for %s", w.Name)
	if err := j.prepareRootfs(); err != nil {
		return err
	}
	sb, err := container.PrepareSandbox(paths.sandbox, sandboxHostname)
	if err != nil {
		return err
	}
	j.sb = sb
	j.spec = container.Spec{
		Rootfs: paths.rootfs, Args: w.Args, Terminal: o.Terminal || w.Terminal,
		Setsid: o.RuntimeSetsid, Sandbox: sb, Hostname: sandboxHostname,
	}
	how := "as the Kata agent 2.5.0 to 4.0.0 does: the init is not a session leader"
	if j.spec.Setsid || j.spec.Terminal {
		how = "with the init a session leader, as runc and the Kata agent 4.1.0 do"
	}
	s.progress("start", "starting %s (%s) %s", w.Name, strings.Join(w.Args, " "), how)
	if f, err := j.start(ctx); err != nil {
		if f == nil {
			return err
		}
		r.Findings = append(r.Findings, *f)
		cp.Error = f.Summary
		return s.send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
	}

	// Preflight: the checks of the guest and of the live workload, and
	// the prediction, before anything is changed or dumped.
	cp.Stage = "preflight"
	env.PID = j.ctr.PID()
	runner := checks.Runner{Checks: append(append(guestChecks(), checks.ProcessChecks()...), checks.MountChecks()...)}
	s.progress("checks", "running %d checks on the guest and on the workload (pid %d)", len(runner.Checks), env.PID)
	findings := runner.Run(ctx, env)
	pre := checks.Predict(findings)
	r.Prediction = pre
	s.progress("predict", "%s", predictionLine(pre))

	fixers := append(guestFixers(), j.criuOptionFixer(), j.restartFixer())
	plan := pre
	expect := pre.DumpWillSucceed
	var dumpWords []string
	if job.Fix {
		cp.Stage = "fix"
		s.progress("fix", "applying the fixes")
		r.Actions = checks.ApplyFixes(ctx, env, findings, fixers, false)
		for _, a := range r.Actions {
			s.logf("fix %s: applied=%v %s %s", a.Fixer, a.Applied, a.Summary, a.Error)
		}
		if len(r.Actions) > 0 {
			env.PID = j.ctr.PID()
			s.progress("checks", "checking again after %d fixes", len(r.Actions))
			findings = runner.Run(ctx, env)
			plan = checks.Predict(findings)
		}
		dumpWords = plan.CRIUOptions
		expect = plan.WithOptions
	} else {
		r.Actions = dryRunActions(ctx, env, findings, fixers, j)
	}

	do, skipped := parseDumpWords(dumpWords)
	for _, w := range skipped {
		s.logf("criu option %s: kata-cr does not pass it", w)
	}
	do.PID = j.ctr.PID()
	do.ImagesDir = paths.images
	do.LeaveRunning = o.LeaveRunning
	if j.spec.Terminal {
		// The pty's master stays with the agent: the slave is an external
		// tty, handed back on restore with --inherit-fd; --shell-job would
		// look for a session outside the container instead.
		key, err := j.ctr.TTYKey()
		if err != nil {
			return err
		}
		do.ShellJob = false
		do.External = append(do.External, key)
	}

	probe := container.Probe{PID: j.ctr.PID()}
	sctx, cancel := context.WithTimeout(ctx, readyTimeout)
	state, err := w.Snapshot(sctx, probe)
	cancel()
	if err != nil {
		cp.Error = fmt.Sprintf("snapshot the workload's state before the dump: %v", err)
		r.Findings = append(r.Findings, findings...)
		return s.send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
	}

	cp.Stage = "dump"
	cp.DumpOptions = do.Args()
	if job.Fix {
		r.Findings = append(r.Findings, planFinding(plan, cp.DumpOptions, skipped))
	}
	r.Findings = append(r.Findings, markWorkedAround(findings, cp.DumpOptions, job.Fix)...)
	if env.CRIU == nil {
		cp.Error = "no criu in the guest: " + env.CRIUMissing
		return s.send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
	}
	if o.Prove && job.Fix {
		r.Findings = append(r.Findings, j.prove(ctx, env, findings, do)...)
	}
	s.progress("dump", "criu dump %s", strings.Join(cp.DumpOptions, " "))
	dctx, cancel := context.WithTimeout(ctx, dumpTimeout)
	res, err := env.CRIU.Dump(dctx, do)
	cancel()
	matched := (err == nil) == expect
	cp.PredictionMatched = &matched
	r.Findings = append(r.Findings, predictionFinding(plan, expect, err))
	if err != nil {
		criuFailure(cp, err)
		// CRIU thaws the tree when a dump fails: the workload must still
		// run, and the report says whether it does.
		running := j.ctr.Running() && probe.Alive()
		cp.WorkloadRunning = &running
		s.progress("dump", "failed: %v; the workload is %s", err, map[bool]string{true: "still running", false: "NOT running any more"}[running])
		return s.send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
	}
	cp.DumpOK = true
	cp.DumpSeconds = res.Duration.Seconds()
	s.progress("dump", "dumped in %s", res.Duration.Round(time.Millisecond))
	imgs := imagesFinding(res)
	r.Findings = append(r.Findings, imgs)
	if o.LeaveRunning {
		running := j.ctr.Running() && probe.Alive()
		cp.WorkloadRunning = &running
		f := reports.Finding{ID: "checkpoint.leave-running", Category: "checkpoint", Level: reports.Required, Status: reports.Pass,
			Summary: fmt.Sprintf("the original workload (pid %d) still runs in this guest after the dump (--leave-running)", probe.PID)}
		if !running {
			f.Status = reports.Fail
			f.Summary = fmt.Sprintf("the original workload (pid %d) stopped after the dump despite --leave-running", probe.PID)
		}
		r.Findings = append(r.Findings, f)
	}
	m := images.Manifest{
		KernelRelease: s.release, CRIUVersion: target.CRIUVersion, Arch: s.machine,
		Workload: w.Name, Command: w.Args, Terminal: j.spec.Terminal, Setsid: j.spec.Setsid || j.spec.Terminal,
		WorkloadState: state, DumpOptions: cp.DumpOptions, RestoreOptions: restoreWords(do),
	}
	for _, em := range do.ExternalMounts {
		m.ExternalMounts = append(m.ExternalMounts, images.ExternalMount{Key: em.Key, Target: em.Path})
	}
	// From here on, until the host says it saved the images, a failure
	// must not lose the workload: without --leave-running CRIU killed the
	// tree, and the local images are the only copy of it.
	notSaved := func(why string) error {
		cp.Error = why
		if !o.LeaveRunning {
			j.restoreInPlace(ctx, env, m, r, why)
		}
		return s.send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
	}
	if imgs.Status == reports.Fail {
		return notSaved("the images do not match the frozen process tree (" + imgs.Reason + "): they were not sent")
	}

	cp.Stage = "copy"
	diff, err := j.base.Diff(paths.rootfs)
	if err == nil {
		err = container.WriteRootfsDiff(paths.images, paths.rootfs, diff)
	}
	if err != nil {
		return notSaved(fmt.Sprintf("save the container's changed files: %v", err))
	}
	s.logf("rootfs diff: %d changed, %d deleted", len(diff.Changed), len(diff.Deleted))
	data, err := json.Marshal(agentapi.ImagesReady{Manifest: m})
	if err != nil {
		return notSaved(fmt.Sprintf("encode the images' manifest: %v", err))
	}
	port, err := s.Data()
	if err != nil {
		return notSaved(fmt.Sprintf("open the data port to send the images: %v", err))
	}
	s.progress("copy", "sending the images to the host")
	if err := s.send(agentapi.Event{Kind: agentapi.EventResult, Stage: agentapi.ResultImages, Data: data}); err != nil {
		return errors.Join(err, notSaved(fmt.Sprintf("announce the images to the host: %v", err)))
	}
	if err := images.WriteTar(port, paths.images); err != nil {
		return notSaved(fmt.Sprintf("send the images to the host: %v", err))
	}
	saved, err := s.waitImagesSaved(savedWait)
	switch {
	case err != nil:
		return notSaved(fmt.Sprintf("the host did not confirm it saved the images: %v", err))
	case !saved.OK:
		return notSaved(fmt.Sprintf("the host could not save the images: %s", saved.Error))
	}
	s.logf("the host saved the images in %s", saved.Dir)
	if o.Bench {
		s.progress("bench", "timing kata-cr's restore and raw criu dump and restore")
		bctx, cancel := context.WithTimeout(ctx, 2*dumpTimeout)
		b, err := j.bench(bctx, env, do, res.Duration)
		cancel()
		if err != nil {
			r.Findings = append(r.Findings, reports.Finding{ID: "checkpoint.bench", Category: "checkpoint", Level: reports.Optional,
				Status: reports.Error, Summary: "the benchmark could not run", Reason: err.Error()})
		} else {
			data, err := json.Marshal(b)
			if err != nil {
				return err
			}
			if err := s.send(agentapi.Event{Kind: agentapi.EventResult, Stage: agentapi.ResultBench, Data: data}); err != nil {
				return err
			}
		}
	}
	cp.Stage = "done"
	return s.send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
}

// savedWait bounds the wait for the host's images-saved answer once the
// images are sent: the host then only seals and syncs what it received.
const savedWait = 2 * time.Minute

// waitImagesSaved reads the host's answer to the images. When none comes
// within wait it unblocks its reader, so that the done and ack exchange
// that ends the job gets the control port to itself.
func (s *session) waitImagesSaved(wait time.Duration) (agentapi.ImagesSaved, error) {
	type answer struct {
		msg agentapi.HostMessage
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		for {
			var msg agentapi.HostMessage
			err := s.dec.Decode(&msg)
			if err != nil || msg.Kind == agentapi.HostImagesSaved {
				ch <- answer{msg, err}
				return
			}
			log.Printf("ignoring a %s message from the host while waiting for images-saved", msg.Kind)
		}
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case a := <-ch:
		if a.err != nil {
			return agentapi.ImagesSaved{}, fmt.Errorf("read the host's answer: %w", a.err)
		}
		if a.msg.Saved == nil {
			return agentapi.ImagesSaved{}, errors.New("the host's images-saved message carries no answer")
		}
		return *a.msg.Saved, nil
	case <-t.C:
		if err := s.port.SetReadDeadline(time.Now()); err == nil {
			<-ch
			_ = s.port.SetReadDeadline(time.Time{})
		}
		return agentapi.ImagesSaved{}, fmt.Errorf("no answer within %s", wait)
	}
}

// restoreInPlace puts a workload that the dump stopped back in this
// guest, from the local images, when they could not be saved: a
// checkpoint must never lose the workload. It uses the restore job's code
// (the rootfs as --root, the sandbox's files on the external mounts, the
// restored init adopted) on the rootfs the workload left, verifies that it
// carries on, and reports the outcome as an action and a finding.
func (j *cpJob) restoreInPlace(ctx context.Context, env *checks.Env, m images.Manifest, r *reports.Report, why string) {
	cp := r.Checkpoint
	running := false
	cp.WorkloadRunning = &running
	s := j.s
	s.progress("restore-in-place", "%s; the dump stopped the workload: restoring it in place from this guest's images", why)
	a := reports.Action{Fixer: "restore-in-place", Summary: "restore the workload in place from this guest's images"}
	f := reports.Finding{ID: "checkpoint.restored-in-place", Category: "checkpoint", Level: reports.Required, Status: reports.Fail,
		Evidence: []string{"why: " + why}}
	if j.ctr != nil {
		// CRIU restores the tree's pids: the old init must be reaped.
		select {
		case <-j.ctr.Done():
		case <-time.After(10 * time.Second):
		}
	}
	err := errors.New("no criu in the guest")
	var rw *restoredWorkload
	if env.CRIU != nil {
		rw, err = restoreWorkload(ctx, s, env.CRIU, m, j.paths, j.sb, "restore-in-place")
	}
	msg := ""
	if err == nil {
		j.putBack = rw
		// The job's end kills it as it would have killed the original.
		j.ctr = rw.ctr
		msg, err = verifyRestored(ctx, j.w, rw.res.PID, m.WorkloadState, rw.mapped)
	}
	if rw != nil {
		a.Command = append([]string{"criu", "restore"}, rw.args...)
	}
	if err != nil {
		a.Error = err.Error()
		f.Summary = "the dump stopped the workload and it could not be put back in place: the workload is lost"
		f.Reason = err.Error()
		var ce *criu.Error
		if errors.As(err, &ce) {
			cp.Explanations = append(cp.Explanations, ce.Explanations...)
		}
		s.progress("restore-in-place", "failed: %v", err)
	} else {
		running = true
		a.Applied = true
		a.Summary = fmt.Sprintf("restored the workload in place in this guest as pid %d, since its checkpoint was not saved", rw.res.PID)
		f.Status = reports.Pass
		f.Summary = fmt.Sprintf("the workload was put back: it runs again in this guest as pid %d, restored from the local images (%s)", rw.res.PID, msg)
		s.progress("restore-in-place", "%s", f.Summary)
	}
	r.Actions = append(r.Actions, a)
	r.Findings = append(r.Findings, f)
}

// start starts the container and waits until the workload is ready. When
// the workload itself fails (it exits at once, it never gets ready) it
// returns the finding that says so; otherwise a nil finding.
func (j *cpJob) start(ctx context.Context) (*reports.Finding, error) {
	ctr, err := container.Start(j.spec)
	if err != nil {
		return &reports.Finding{ID: "workload.start", Category: "workload", Level: reports.Required, Status: reports.Fail,
			Summary: fmt.Sprintf("the workload %s did not start: %v", j.w.Name, err)}, err
	}
	j.ctr = ctr
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	err = j.w.Ready(rctx, container.Probe{PID: ctr.PID()})
	if err == nil {
		return nil, nil
	}
	f := &reports.Finding{ID: "workload.start", Category: "workload", Level: reports.Required, Status: reports.Fail,
		Summary:  fmt.Sprintf("the workload %s (%s) did not get ready: %v", j.w.Name, strings.Join(j.w.Args, " "), err),
		Evidence: []string{"command: " + strings.Join(j.w.Args, " ")}}
	// The probe can see the init gone before the reaper has reaped it:
	// give the reaper a moment, so an exit is reported as one.
	select {
	case <-ctr.Done():
	case <-time.After(2 * time.Second):
	}
	if !ctr.Running() {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		st, _ := ctr.Wait(wctx)
		cancel()
		f.Summary = fmt.Sprintf("the workload %s exited right after it started (%s): there is nothing to checkpoint", j.w.Name, st)
		f.Evidence = append(f.Evidence, fmt.Sprintf("container init %d: %s", ctr.PID(), st))
	}
	if j.w.CallsSetsid {
		f.Evidence = append(f.Evidence,
			"busybox sh execs a lone command, so setsid(1) runs as the container init (pid 1)",
			"pid 1 leads its own process group (as under the Kata agent, and with a runtime that calls setsid() too), and setsid() refuses a group leader, so setsid(1) forks the command and exits",
			"pid 1 exiting ends the container: the seed's proposed fix cannot work; the init itself must be made a session leader by the runtime")
		f.Fix = &reports.Fix{Description: "run the plain command (kata-cr checkpoint -- sh -c 'sleep 3600') with --auto-fix, which restarts it with the runtime making the init a session leader, or use a runtime that does so (runc, crun, Kata agent 4.1.0+; --runtime-setsid)"}
	}
	return f, errors.New(f.Summary)
}

// stop kills the container, whatever state the job left it in.
func (j *cpJob) stop() {
	if j.ctr != nil {
		_ = j.ctr.Kill()
	}
	if j.putBack != nil {
		j.putBack.close()
	}
}

// restartFixer is the "restart-setsid" fixer: it kills the workload and
// starts it again with the container init a session leader (the runtime
// calls setsid() before exec, as runc and the Kata agent 4.1.0 do).
// Wrapping the entrypoint in setsid(1) cannot work in this container: the
// init leads its own process group, so setsid(1) forks and pid 1 exits.
func (j *cpJob) restartFixer() checks.Fixer {
	return checks.Fixer{ID: fixerRestartSetsid, Title: "restart the workload with its init a session leader",
		Apply: func(ctx context.Context, env *checks.Env, _ reports.Finding) (reports.Action, error) {
			a := reports.Action{Summary: "restart the workload with its init a session leader"}
			if j.restarted {
				a.Applied = true
				a.Summary = "the workload was already restarted with its init a session leader"
				return a, nil
			}
			if j.opts.NoRestart {
				return a, errors.New("--no-restart: the workload was not restarted, so its init stays in a session outside its pid namespace and CRIU refuses to dump it")
			}
			old := j.ctr.PID()
			if err := j.ctr.Kill(); err != nil {
				return a, fmt.Errorf("stop the workload: %w", err)
			}
			j.spec.Setsid = true
			if err := j.prepareRootfs(); err != nil {
				return a, fmt.Errorf("restart the workload: %w", err)
			}
			if _, err := j.start(ctx); err != nil {
				return a, fmt.Errorf("restart the workload: %w", err)
			}
			j.restarted = true
			env.PID = j.ctr.PID()
			a.Applied = true
			a.Summary = fmt.Sprintf("restarted the workload (pid %d, now pid %d) with the runtime making its init a session leader, as runc and the Kata agent 4.1.0 do: its in-memory state since the start is lost", old, env.PID)
			return a, nil
		}}
}

// criuOptionFixer is the "criu-option" fixer: it adds a finding's CRIU
// options to the dump (and its restore options to the manifest). The
// options are taken from the checks run after all fixes, so that they fit
// the workload as it is dumped.
func (j *cpJob) criuOptionFixer() checks.Fixer {
	return checks.Fixer{ID: fixerCRIUOption, Title: "add CRIU options to the dump",
		Apply: func(_ context.Context, _ *checks.Env, f reports.Finding) (reports.Action, error) {
			words := f.Fix.CRIUOptions
			a := reports.Action{Summary: "dump with " + strings.Join(words, " "), Command: append([]string{"criu", "dump"}, words...)}
			if _, err := criu.ParseDumpArgs(words); err != nil {
				return a, err
			}
			a.Applied = true
			if len(f.Fix.RestoreOptions) > 0 {
				a.Summary += "; restore with " + strings.Join(f.Fix.RestoreOptions, " ")
			}
			return a, nil
		}}
}

// moduleName finds the module in the load-module fix's description.
var moduleName = regexp.MustCompile(`load module (\S+)`)

// dryRunActions lists the plan without applying it, with the commands and
// options each step would use.
func dryRunActions(ctx context.Context, env *checks.Env, fs []reports.Finding, fixers []checks.Fixer, j *cpJob) []reports.Action {
	acts := checks.ApplyFixes(ctx, env, fs, fixers, true)
	// ApplyFixes gives one action per fixable finding, in order; several
	// findings share an ID (one per bind mount), so pair them by order.
	known := map[string]bool{}
	for _, fx := range fixers {
		known[fx.ID] = true
	}
	var fixable []reports.Finding
	for _, f := range fs {
		if (f.Status == reports.Fail || f.Status == reports.Warn || f.Status == reports.Error) &&
			f.Fix != nil && f.Fix.AutoFixable && known[f.Fix.Fixer] {
			fixable = append(fixable, f)
		}
	}
	for i, a := range acts {
		if i >= len(fixable) || fixable[i].ID != a.Finding {
			continue
		}
		f := fixable[i]
		switch a.Fixer {
		case checks.FixerLoadModule:
			if m := moduleName.FindStringSubmatch(f.Fix.Description); m != nil {
				acts[i].Command = []string{"modprobe", m[1]}
			}
		case checks.FixerLoopbackUp:
			acts[i].Command = []string{"ip", "link", "set", "lo", "up"}
		case checks.FixerMountDevpts:
			acts[i].Command = []string{"mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts", "/dev/pts"}
		case fixerCRIUOption:
			if f.Fix != nil {
				acts[i].Command = append([]string{"criu", "dump"}, f.Fix.CRIUOptions...)
				acts[i].Summary = "would dump with " + strings.Join(f.Fix.CRIUOptions, " ")
				if len(f.Fix.RestoreOptions) > 0 {
					acts[i].Summary += " and restore with " + strings.Join(f.Fix.RestoreOptions, " ")
				}
			}
		case fixerRestartSetsid:
			acts[i].Summary = fmt.Sprintf("would restart the workload (%s) with the runtime making its init a session leader (setsid() before exec, as runc does): its in-memory state since the start would be lost", strings.Join(j.w.Args, " "))
			if j.opts.NoRestart {
				acts[i].Summary = "would refuse to restart the workload (--no-restart): the dump fails"
			}
		}
	}
	return acts
}

// parseDumpWords turns the plan's option words into DumpOpts, leaving out
// (and returning) those kata-cr does not pass to CRIU.
func parseDumpWords(words []string) (criu.DumpOpts, []string) {
	var ok, skipped []string
	for _, w := range words {
		if _, err := criu.ParseDumpArgs([]string{w}); err != nil {
			skipped = append(skipped, w)
			continue
		}
		ok = append(ok, w)
	}
	o, err := criu.ParseDumpArgs(ok)
	if err != nil {
		return criu.DumpOpts{}, words
	}
	return o, skipped
}

// restoreWords are the restore options a dump with o needs, besides the
// root and the external mounts, which depend on the restoring guest.
func restoreWords(o criu.DumpOpts) []string {
	return criu.RestoreOpts{ShellJob: o.ShellJob, FileLocks: o.FileLocks, TCPEstablished: o.TCPEstablished, ExtUnixSk: o.ExtUnixSk}.Args()
}

// markWorkedAround turns a failing finding into a warning when the dump
// carries every option of its fix: the problem is there, and the dump
// works around it. Without fixes nothing is worked around.
func markWorkedAround(fs []reports.Finding, dumpArgs []string, fixed bool) []reports.Finding {
	out := append([]reports.Finding(nil), fs...)
	if !fixed {
		return out
	}
	have := map[string]bool{}
	tty := ""
	for i, a := range dumpArgs {
		have[a] = true
		if i > 0 && dumpArgs[i-1] == "--external" {
			have["--external="+a] = true
			if strings.HasPrefix(a, "tty[") {
				// For a terminal container the pty is declared
				// external instead of --shell-job (see runCheckpoint).
				have["--shell-job"] = true
				tty = a
			}
		}
	}
	for i, f := range out {
		if f.Status != reports.Fail || f.Fix == nil || len(f.Fix.CRIUOptions) == 0 {
			continue
		}
		all := true
		for _, o := range f.Fix.CRIUOptions {
			if !have[o] {
				all = false
			}
		}
		if !all {
			continue
		}
		out[i].Status = reports.Warn
		if tty != "" && slices.Contains(f.Fix.CRIUOptions, "--shell-job") && !slices.Contains(dumpArgs, "--shell-job") {
			out[i].Summary += " (worked around: the dump declares the pty external with --external " + tty + " and the restore hands it a new pty)"
		} else {
			out[i].Summary += " (worked around: the dump uses " + strings.Join(f.Fix.CRIUOptions, " ") + ")"
		}
	}
	return out
}

// planFinding records the prediction after the fixes: what the dump that
// runs, with the options it gets, is expected to do.
func planFinding(p *reports.Prediction, dumpArgs, skipped []string) reports.Finding {
	f := reports.Finding{ID: "checkpoint.plan", Category: "checkpoint", Level: reports.Optional, Status: reports.Pass,
		Summary: "after the fixes the dump is predicted to succeed"}
	if len(dumpArgs) > 0 {
		f.Summary += " with " + strings.Join(dumpArgs, " ")
	}
	if !p.WithOptions {
		f.Status = reports.Warn
		f.Summary = "after the fixes the dump is still predicted to fail"
	}
	f.Evidence = append(f.Evidence, p.Reasons...)
	for _, w := range skipped {
		f.Evidence = append(f.Evidence, "option "+w+" left out: kata-cr does not pass it to CRIU")
	}
	return f
}

// imagesFinding checks the images against the tree CRIU froze, and quotes
// the dump's statistics.
func imagesFinding(res *criu.DumpResult) reports.Finding {
	f := reports.Finding{ID: "checkpoint.images", Category: "checkpoint", Level: reports.Required, Status: reports.Pass,
		Summary: "the images hold the process tree CRIU froze"}
	if err := res.VerifyTree(); err != nil {
		f.Status = reports.Fail
		f.Summary = "the images do not match the frozen process tree"
		f.Reason = err.Error()
	} else if len(res.Tree) > 0 {
		f.Summary = fmt.Sprintf("the images hold the %d processes CRIU froze", len(res.Tree))
	}
	if st, err := criu.ReadDumpStats(res.ImagesDir); err == nil {
		f.Evidence = append(f.Evidence, fmt.Sprintf("dump stats: frozen %s, memory dump %s, %d pages scanned, %d written",
			st.FrozenTime, st.MemdumpTime, st.PagesScanned, st.PagesWritten))
	} else {
		f.Evidence = append(f.Evidence, err.Error())
	}
	f.Evidence = append(f.Evidence, "log: "+res.LogPath)
	return f
}

// predictionLine says the prediction in one line, naming the blocking
// checks.
func predictionLine(p *reports.Prediction) string {
	switch {
	case p.DumpWillSucceed:
		return "a plain dump is predicted to succeed"
	case p.WithOptions:
		return fmt.Sprintf("a plain dump is predicted to fail; with %s it should succeed", strings.Join(p.CRIUOptions, " "))
	}
	var ids []string
	for _, r := range p.Reasons {
		id, _, _ := strings.Cut(r, ":")
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return fmt.Sprintf("the dump is predicted to fail (%s)", strings.Join(ids, ", "))
}

// predictionFinding compares the prediction of the dump that ran with what
// CRIU did, down to the error: the first error CRIU's log explains must be
// one a blocking check predicted.
func predictionFinding(p *reports.Prediction, expect bool, dumpErr error) reports.Finding {
	f := reports.Finding{ID: "checkpoint.prediction", Category: "checkpoint", Level: reports.Optional, Status: reports.Pass}
	if dumpErr == nil {
		f.Summary = "the dump succeeded, as predicted"
		if !expect {
			f.Status = reports.Warn
			f.Summary = "the dump succeeded although it was predicted to fail"
		}
		return f
	}
	if expect {
		f.Status = reports.Warn
		f.Summary = "the dump failed although it was predicted to succeed"
	}
	predicted := map[string]bool{}
	for _, r := range p.Reasons {
		id, _, _ := strings.Cut(r, ":")
		predicted[id] = true
	}
	sig, ids, quote := causeOf(dumpErr)
	if sig != "" {
		var hit []string
		for _, id := range ids {
			if predicted[id] {
				hit = append(hit, id)
			}
		}
		if len(hit) > 0 {
			if f.Summary == "" {
				f.Summary = fmt.Sprintf("the dump failed on %s, as %s predicted", sig, strings.Join(hit, ", "))
			}
		} else {
			f.Status = reports.Warn
			f.Summary = fmt.Sprintf("the dump failed on %s, which no preflight check predicted (it maps to %s)", sig, strings.Join(ids, ", "))
		}
		f.Evidence = append(f.Evidence, quote...)
		return f
	}
	if f.Summary == "" {
		f.Summary = "the dump failed, as predicted; its log names no cause kata-cr knows"
	}
	return f
}
