package checks

import (
	"context"

	"github.com/kata-cr/kata-cr/reports"
)

// DoctorOptions say what one doctor pass may do.
type DoctorOptions struct {
	// Fix applies the fixers and checks again; without it the fixers
	// only say what they would do.
	Fix bool
	// DryRun, with Fix, lists the fixes without applying them.
	DryRun bool
	// Predict adds the dump prediction to the result.
	Predict bool
	// BeforeRecheck runs after the fixes and before the checks run again
	// (a fixer that restarted the workload moves env.PID there).
	BeforeRecheck func(env *Env)
	// BeforeFix runs, when fixes are applied, after the first checks and
	// their prediction and before any fixer: the system and the workload
	// as they were found (--prove lets CRIU judge that prediction there).
	BeforeFix func(res DoctorResult)
}

// DoctorResult is what a doctor pass found and did.
type DoctorResult struct {
	// Before are the findings before any fix; Findings the ones after
	// (the same slice when nothing was fixed).
	Before, Findings []reports.Finding
	Actions          []reports.Action
	// Before's prediction, and the prediction after the fixes (Plan);
	// nil unless DoctorOptions.Predict.
	Prediction, Plan *reports.Prediction
}

// Doctor is the one doctor flow, shared by the host doctor, the guest
// doctor and a checkpoint's preflight: run every check, apply the fixers
// (or only list them), check again when anything was applied, predict.
// Destructive fixers come last: the others are applied and the checks run
// again, so that a destructive fix is judged on what they left (Unmended)
// and made only when nothing else would still block the dump.
func Doctor(ctx context.Context, env *Env, runner Runner, fixers []Fixer, o DoctorOptions) DoctorResult {
	var res DoctorResult
	res.Before = runner.Run(ctx, env)
	res.Findings = res.Before
	if o.Predict {
		res.Prediction = Predict(res.Before)
		res.Plan = res.Prediction
	}
	if !o.Fix || o.DryRun {
		res.Actions = ApplyFixes(ctx, env, res.Before, fixers, true)
		return res
	}
	if o.BeforeFix != nil {
		o.BeforeFix(res)
	}
	recheck := func() {
		if o.BeforeRecheck != nil {
			o.BeforeRecheck(env)
		}
		res.Findings = runner.Run(ctx, env)
	}
	var safe, destructive []Fixer
	for _, fx := range fixers {
		if fx.Destructive {
			destructive = append(destructive, fx)
		} else {
			safe = append(safe, fx)
		}
	}
	res.Actions = ApplyFixes(ctx, env, res.Before, safe, false)
	rechecked := false
	if len(ApplyFixes(ctx, env, res.Before, destructive, true)) > 0 {
		if len(res.Actions) > 0 {
			recheck()
			rechecked = true
		}
		d := ApplyFixes(ctx, env, res.Findings, destructive, false)
		res.Actions = append(res.Actions, d...)
		if rechecked {
			// Only the destructive fixes ran since the last look, and
			// they change the workload alone (a restart): the checks of
			// the guest, the kernel and CRIU would find the same again.
			if anyApplied(d) {
				if o.BeforeRecheck != nil {
					o.BeforeRecheck(env)
				}
				res.Findings = runner.Rerun(ctx, env, res.Findings, NeedPID)
			}
			if o.Predict {
				res.Plan = Predict(res.Findings)
			}
			return res
		}
	}
	if len(res.Actions) == 0 {
		return res
	}
	recheck()
	if o.Predict {
		res.Plan = Predict(res.Findings)
	}
	return res
}

// anyApplied reports whether one of actions changed something.
func anyApplied(actions []reports.Action) bool {
	for _, a := range actions {
		if a.Applied {
			return true
		}
	}
	return false
}
