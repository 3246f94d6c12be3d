package checks

import (
	"context"
	"slices"

	"github.com/kata-cr/kata-cr/reports"
)

// Settled returns cs with each check that found nothing to fix replaced by
// one that gives those findings again without reading the system: for a
// job that checks many workloads in one guest whose kernel and CRIU do not
// change between them (a corpus), found being what cs found in that guest.
// A check with a finding that is not a pass, a skip or a warning without
// a fix stays live, so that a fix and the check after it see the system.
func Settled(cs []Check, found []reports.Finding) []Check {
	out := make([]Check, len(cs))
	for i, c := range cs {
		var fs []reports.Finding
		for _, f := range found {
			if f.ID == c.ID {
				fs = append(fs, f)
			}
		}
		if len(fs) == 0 || slices.ContainsFunc(fs, Unsettled) {
			out[i] = c
			continue
		}
		c.Needs = nil
		c.Run = func(context.Context, *Env) []reports.Finding {
			return slices.Clone(fs)
		}
		out[i] = c
	}
	return out
}

// Unsettled says a finding keeps its check live in Settled: anything but a
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
