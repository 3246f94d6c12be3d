package checks

import (
	"context"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// procEnvCheck is a check of the tree whose verdict depends on the CRIU
// that will dump it (its version, its features), so it reads the Env too.
func procEnvCheck(id string, level reports.Level, title string, run func(ctx context.Context, env *Env, t *procTree) []reports.Finding) Check {
	return Check{ID: id, Category: "process", Level: level, Title: title, Needs: []Need{NeedPID},
		Run: func(ctx context.Context, env *Env) []reports.Finding {
			t, skip := procTreeOrSkip(ctx, env)
			if skip != nil {
				return skip
			}
			return run(ctx, env, t)
		}}
}

// procCRIUVersion is the version of the CRIU that will dump the tree, and
// the evidence line saying so; zero (and why) when it is not known.
func procCRIUVersion(ctx context.Context, env *Env) (criu.Version, string) {
	if env.CRIU == nil {
		why := env.CRIUMissing
		if why == "" {
			why = "no criu binary found"
		}
		return criu.Version{}, "CRIU version unknown: " + why
	}
	v, err := env.CRIU.Version(ctx)
	if err != nil {
		return criu.Version{}, "CRIU version unknown: " + err.Error()
	}
	return v, "CRIU " + v.String() + " (" + env.CRIU.Path + ")"
}
