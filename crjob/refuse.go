package crjob

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// The dumps that prove a predicted hang (--prove): one where CRIU's own
// --timeout runs out first, so that CRIU says why in its own words, and one
// where kata-cr's time limit does, so that the limit is seen to hold.
const (
	hangProofFreeze    = 5 * time.Second
	hangProofLimit     = time.Minute
	hangProofKillAfter = 15 * time.Second
)

// refuseFix ends the job before the dump when a destructive fix was
// refused (checks.Unmended): the workload is left as it runs, and the
// report lists the blockers. It reports whether it did.
func (j *cpJob) refuseFix(ctx context.Context, res checks.DoctorResult, probe container.Probe) bool {
	for _, a := range res.Actions {
		if len(a.BlockedBy) > 0 {
			j.cp.Refusals = append(j.cp.Refusals, reports.Refusal{Step: string(a.Fixer), BlockedBy: a.BlockedBy,
				Reason: fmt.Sprintf("%s would lose the workload's state, and the dump would still fail on %s, which no fix mends", a.Fixer, strings.Join(a.BlockedBy, ", "))})
		}
	}
	if len(j.cp.Refusals) == 0 {
		return false
	}
	j.r.Findings = append(j.r.Findings, res.Findings...)
	j.refused(ctx, probe)
	return true
}

// refuseHang ends the job before the dump when the dump's prediction has
// blockers that would keep CRIU waiting for its time limit
// (checks.WouldHang): kata-cr does not start that dump. With --prove it
// first lets CRIU judge, in the proof dumps of proveHang. It reports
// whether it refused.
func (j *cpJob) refuseHang(ctx context.Context, cr CRIU, do criu.DumpOpts, p *reports.Prediction, probe container.Probe) bool {
	hang := checks.WouldHang(p)
	if len(hang) == 0 {
		return false
	}
	if j.opts.Prove {
		j.r.Findings = append(j.r.Findings, j.proveHang(ctx, cr, do, hang, probe)...)
	}
	j.cp.Refusals = append(j.cp.Refusals, reports.Refusal{Step: "dump", BlockedBy: hang,
		Reason: "CRIU cannot seize the tree: it would wait until its time limit and fail (" + strings.Join(hang, ", ") + ")"})
	j.refused(ctx, probe)
	return true
}

// refuseLoss ends the job before the dump when, with --auto-fix, the plan
// predicts that CRIU would dump the tree but lose some of its state
// (Prediction.Losses): the workload would be stopped and come back without
// it. --accept-loss dumps anyway. It reports whether it refused.
func (j *cpJob) refuseLoss(ctx context.Context, plan *reports.Prediction, probe container.Probe) bool {
	if !j.fix || j.opts.AcceptLoss || plan == nil || len(plan.Losses) == 0 {
		return false
	}
	j.cp.Refusals = append(j.cp.Refusals, reports.Refusal{Step: "dump", BlockedBy: plan.Losses,
		Reason: "CRIU would dump the tree but lose part of its state (" + strings.Join(plan.Losses, ", ") + "): the restored workload would not carry on; --accept-loss dumps anyway"})
	j.refused(ctx, probe)
	return true
}

// refused records a refusal: the error, the finding that fails the
// checkpoint, whether the workload still runs and its state as it runs on.
func (j *cpJob) refused(ctx context.Context, probe container.Probe) {
	var why []string
	for _, r := range j.cp.Refusals {
		why = append(why, fmt.Sprintf("refused %s: %s", r.Step, r.Reason))
	}
	j.cp.Error = strings.Join(why, "; ")
	running := j.thawed(probe)
	j.cp.WorkloadRunning = &running
	if running && j.cp.StateBefore == nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if st, err := j.w.Snapshot(sctx, probe); err == nil {
			j.cp.StateBefore = st
		}
		cancel()
	}
	f := reports.Finding{ID: "checkpoint.refused", Category: "checkpoint", Level: reports.Required, Status: reports.Fail,
		Summary: j.cp.Error, Evidence: []string{fmt.Sprintf("the workload (pid %d) was left running as it was: %v", probe.PID, running)}}
	j.r.Findings = append(j.r.Findings, f)
	j.d.Host.Progress(j.cp.Stage, "%s; the workload is %s", j.cp.Error, map[bool]string{true: "still running", false: "NOT running any more"}[running])
}

// proveHang dumps twice, into scratch directories with --leave-running,
// what kata-cr predicts CRIU cannot seize: once with CRIU's own --timeout
// short, where CRIU must fail on a cause the findings name; once with it
// longer than kata-cr's limit, where CRIU must hang and be killed. After
// each, the workload must run on.
func (j *cpJob) proveHang(ctx context.Context, cr CRIU, planned criu.DumpOpts, hang []string, probe container.Probe) []reports.Finding {
	var out []reports.Finding
	for i, run := range []struct {
		freeze, limit time.Duration
	}{{hangProofFreeze, hangProofLimit}, {10 * hangProofLimit, hangProofKillAfter}} {
		o := planned
		o.ImagesDir = fmt.Sprintf("%s/hang-proof-%d", j.paths.root, i)
		o.WorkDir, o.LeaveRunning, o.FreezeTimeout = o.ImagesDir, true, run.freeze
		what := fmt.Sprintf("criu dump with --timeout %s, killed after %s", run.freeze, run.limit)
		j.d.Host.Progress("prove", "%s, as %s predicts CRIU cannot seize the tree", what, strings.Join(hang, ", "))
		dctx, cancel := context.WithTimeout(ctx, run.limit)
		_, err := cr.Dump(dctx, o)
		cancel()
		var ce *criu.Error
		hung := errors.As(err, &ce) && ce.Hung
		sig, ids, quote := causeOf(err)
		running := j.thawed(probe)
		pr := reports.Proof{Finding: strings.Join(hang, ","), Without: "the refusal to dump", Failed: err != nil, Signature: sig, Hung: hung, WorkloadRunning: &running}
		f := reports.Finding{ID: "checkpoint.proof." + hang[0], Category: "checkpoint", Level: reports.Optional, Evidence: []string{what}}
		switch {
		case err == nil:
			f.Status, f.Summary = reports.Fail, what+": the dump succeeded, although "+strings.Join(hang, ", ")+" predicted CRIU could not seize the tree"
		case run.freeze < run.limit && slices.ContainsFunc(hang, func(id string) bool { return slices.Contains(ids, id) }):
			pr.Confirmed = true
			f.Status, f.Summary = reports.Pass, fmt.Sprintf("%s: CRIU gave up on %s, as %s predicted", what, sig, strings.Join(hang, ", "))
		case run.freeze > run.limit && hung:
			pr.Confirmed = true
			f.Status, f.Summary = reports.Pass, fmt.Sprintf("%s: CRIU hung and was killed, as %s predicted", what, strings.Join(hang, ", "))
		default:
			f.Status, f.Summary = reports.Warn, fmt.Sprintf("%s: CRIU failed, but on %s rather than as %s predicted: %v", what, orUnknown(sig), strings.Join(hang, ", "), err)
		}
		if !running {
			f.Status = reports.Fail
			f.Summary += "; the workload does not run any more"
		}
		f.Evidence = append(f.Evidence, quote...)
		j.cp.Proofs = append(j.cp.Proofs, pr)
		out = append(out, f)
	}
	return out
}

// thawed makes sure the workload runs on after a dump that failed or was
// killed: a task CRIU left stopped gets SIGCONT (CRIU's ptrace hold ends
// with CRIU, and it does not use the freezer cgroup). It reports whether
// the workload runs.
func (j *cpJob) thawed(probe container.Probe) bool {
	if n, err := thawTree(proc.New(probe.ProcRoot), probe.PID); err != nil {
		j.d.Host.Logf("thaw the workload: %v", err)
	} else if n > 0 {
		j.d.Host.Logf("thawed %d stopped task(s) of the workload", n)
	}
	return j.ctr.Running() && probe.Alive()
}

// thawTree sends SIGCONT to each process of the tree rooted at pid that
// has a stopped task (state T or t) and returns how many it woke.
func thawTree(fs proc.FS, pid int) (int, error) {
	n := 0
	_, err := fs.Walk(pid, func(p int) error {
		tids, err := fs.Tasks(p)
		if err != nil {
			return err
		}
		for _, tid := range tids {
			st, err := fs.ReadTaskState(p, tid)
			if err != nil || (st != "T" && st != "t") {
				continue
			}
			if err := syscall.Kill(p, syscall.SIGCONT); err != nil {
				return fmt.Errorf("wake process %d: %w", p, err)
			}
			n++
			break
		}
		return nil
	})
	return n, err
}
