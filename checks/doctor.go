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
func Doctor(ctx context.Context, env *Env, runner Runner, fixers []Fixer, o DoctorOptions) DoctorResult {
	var res DoctorResult
	res.Before = runner.Run(ctx, env)
	res.Findings = res.Before
	if o.Predict {
		res.Prediction = Predict(res.Before)
		res.Plan = res.Prediction
	}
	dry := !o.Fix || o.DryRun
	res.Actions = ApplyFixes(ctx, env, res.Before, fixers, dry)
	if dry || len(res.Actions) == 0 {
		return res
	}
	if o.BeforeRecheck != nil {
		o.BeforeRecheck(env)
	}
	res.Findings = runner.Run(ctx, env)
	if o.Predict {
		res.Plan = Predict(res.Findings)
	}
	return res
}
