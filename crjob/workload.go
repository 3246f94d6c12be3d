package crjob

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// restoreInPlace puts a workload that the dump stopped back in this
// guest, from the local images, when they could not be saved: a
// checkpoint must never lose the workload. It uses the restore job's code
// (the rootfs as --root, the sandbox's files on the external mounts, the
// restored init adopted) on the rootfs the workload left, verifies that it
// carries on, and reports the outcome as an action and a finding.
func (j *cpJob) restoreInPlace(ctx context.Context, cr CRIU, m images.Manifest, why string) {
	cp, r := j.cp, j.r
	running := false
	cp.WorkloadRunning = &running
	s := j.d.Host
	s.Progress("restore-in-place", "%s; the dump stopped the workload: restoring it in place from this guest's images", why)
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
	rw, err := j.d.restoreWorkload(ctx, cr, m, j.paths, j.sb, "restore-in-place")
	msg := ""
	if err == nil {
		j.putBack = rw
		// The job's end kills it as it would have killed the original.
		j.ctr = rw.ctr
		var v verified
		v, err = j.d.verifyRestored(ctx, j.w, rw.res.PID, m.WorkloadState, rw.mapped, j.opts.VerifyExec)
		msg = v.msg
		j.cp.Probes = append(j.cp.Probes, v.probes...)
		cp.StateAfter, cp.SandboxFilesSeen = v.after, v.seen
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
		s.Progress("restore-in-place", "failed: %v", err)
	} else {
		running = true
		a.Applied = true
		a.Summary = fmt.Sprintf("restored the workload in place in this guest as pid %d, since its checkpoint was not saved", rw.res.PID)
		f.Status = reports.Pass
		f.Summary = fmt.Sprintf("the workload was put back: it runs again in this guest as pid %d, restored from the local images (%s)", rw.res.PID, msg)
		s.Progress("restore-in-place", "%s", f.Summary)
	}
	r.Actions = append(r.Actions, a)
	r.Findings = append(r.Findings, f)
}

// start starts the container and waits until the workload is ready. When
// the workload itself fails (it exits at once, it never gets ready) it
// returns the finding that says so; otherwise a nil finding.
func (j *cpJob) start(ctx context.Context) (*reports.Finding, error) {
	ctr, err := j.d.Runtime.Start(j.spec)
	if err != nil {
		return &reports.Finding{ID: "workload.start", Category: "workload", Level: reports.Required, Status: reports.Fail,
			Summary: fmt.Sprintf("the workload %s did not start: %v", j.w.Name, err)}, err
	}
	j.ctr = ctr
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	wait := j.w.Ready
	if j.w.Up != nil {
		// The checks need the workload up, not its state built: they run
		// while it builds, and warmUp waits for Ready before the dump.
		wait, j.warming = j.w.Up, true
	}
	err = wait(rctx, container.Probe{PID: ctr.PID()})
	if err == nil {
		return nil, nil
	}
	j.warming = false
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
		j.cp.InitExit = &reports.ExitStatus{Code: st.Code, Signal: int(st.Signal)}
		f.Evidence = append(f.Evidence, fmt.Sprintf("container init %d: %s", ctr.PID(), st))
		if out := initOutput(ctr); len(out) > 0 {
			j.cp.InitOutput = out
			f.Evidence = append(f.Evidence, "its output ends with: "+strings.Join(out, " | "))
		}
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

// warmUp waits for Ready when start waited only for Up; the error says
// what the workload did not reach.
func (j *cpJob) warmUp(ctx context.Context) error {
	if !j.warming {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := j.w.Ready(rctx, container.Probe{PID: j.ctr.PID()}); err != nil {
		return fmt.Errorf("the workload %s (%s) did not get ready: %w", j.w.Name, strings.Join(j.w.Args, " "), err)
	}
	j.warming = false
	return nil
}

// restartFixer is the "restart-setsid" fixer: it kills the workload and
// starts it again with the container init a session leader (the runtime
// calls setsid() before exec, as runc and the Kata agent 4.1.0 do).
// Wrapping the entrypoint in setsid(1) cannot work in this container: the
// init leads its own process group, so setsid(1) forks and pid 1 exits.
func (j *cpJob) restartFixer() checks.Fixer {
	return checks.Fixer{ID: checks.FixerIDRestartSetsid, Title: "restart the workload with its init a session leader", Destructive: true,
		Apply: func(ctx context.Context, _ *checks.Env, _ reports.Finding) (reports.Action, error) {
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
			a.Applied = true
			a.Summary = fmt.Sprintf("restarted the workload (pid %d, now pid %d) with the runtime making its init a session leader, as runc and the Kata agent 4.1.0 do: its in-memory state since the start is lost", old, j.ctr.PID())
			return a, nil
		}}
}
