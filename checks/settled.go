package checks

import (
	"context"
	"slices"

	"github.com/kata-cr/kata-cr/reports"
)

// Settle runs cs against env and returns them with each check that found
// nothing to fix replaced by one that gives those findings again without
// reading the system: for a job that checks many workloads in one guest
// whose kernel and CRIU do not change between them (a corpus). A check
// with a finding that is Unsettled stays live, so that a fix and the check
// after it see the system. live lists those checks' IDs.
func Settle(ctx context.Context, env *Env, cs []Check) (settled []Check, live []string) {
	settled = make([]Check, len(cs))
	for i, c := range cs {
		fs := Runner{Checks: []Check{c}}.Run(ctx, env)
		if slices.ContainsFunc(fs, Unsettled) {
			settled[i] = c
			live = append(live, c.ID)
			continue
		}
		c.Needs = nil
		c.Run = func(context.Context, *Env) []reports.Finding {
			out := make([]reports.Finding, len(fs))
			for i, f := range fs {
				f.Evidence = slices.Clone(f.Evidence)
				out[i] = f
			}
			return out
		}
		settled[i] = c
	}
	return settled, live
}

// Unsettled says a finding keeps its check live in Settle: anything but a
// pass, a skip or a warning without a fix.
func Unsettled(f reports.Finding) bool {
	switch f.Status {
	case reports.Pass, reports.Skip:
		return false
	case reports.Warn:
		return f.Fix != nil
	}
	return true
}
