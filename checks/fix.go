package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/kata-cr/kata-cr/reports"
)

// FixerID names a fixer: a finding's Fix.Fixer points at the Fixer whose
// ID it is.
type FixerID = reports.FixerID

// The fixers that findings of the checks point at. Those of the process
// and mount checks live with the checkpoint (crjob): FixerIDCRIUOption adds
// the finding's Fix.CRIU options to the dump (and Fix.Restore to the
// restore), FixerIDRestartSetsid restarts the workload with setsid()
// called for its init before exec.
const (
	FixerIDCRIUOption    FixerID = "criu-option"
	FixerIDRestartSetsid FixerID = "restart-setsid"
	FixerIDLoadModule    FixerID = "load-module"
	FixerIDLoopbackUp    FixerID = "loopback-up"
	FixerIDMountDevpts   FixerID = "mount-devpts"
)

// Fixer changes the system to mend one kind of finding. Fixers run only
// when the user asks (--fix, --auto-fix), after all checks have run, and
// each says what it changed.
type Fixer struct {
	// ID matches Fix.Fixer of the findings it mends.
	ID    FixerID
	Title string
	// Apply mends finding f and returns what it did. It returns an error
	// when the change could not be made; the finding then stays as it is.
	Apply func(ctx context.Context, env *Env, f reports.Finding) (reports.Action, error)
	// Destructive says the fix loses the workload's state (a restart): it
	// is applied only when the whole plan is predicted to succeed, that
	// is, when every other blocker of the dump is mended by a fix too
	// (Unmended); otherwise its action says which would still block.
	Destructive bool
}

// Unmended returns the IDs of the blocking findings among fs that no fix
// mends: a finding is mended by its CRIU options, or by its fixer when
// that is among fixers. A destructive fix is judged as if it had been
// made: a restart that cannot help with the rest would only lose state.
func Unmended(fs []reports.Finding, fixers []Fixer) []string {
	known := map[FixerID]bool{}
	for _, fx := range fixers {
		known[fx.ID] = true
	}
	var out []string
	for _, f := range fs {
		if !f.Blocking() || slices.Contains(out, f.ID) {
			continue
		}
		if f.Fix != nil && (!f.Fix.CRIU.IsZero() || (f.Fix.AutoFixable && known[f.Fix.Fixer])) {
			continue
		}
		out = append(out, f.ID)
	}
	return out
}

// ApplyFixes runs, for each failing or warning finding whose fix names a
// known fixer, that fixer once per finding. With dryRun it only lists what
// would be done.
func ApplyFixes(ctx context.Context, env *Env, fs []reports.Finding, fixers []Fixer, dryRun bool) []reports.Action {
	byID := map[FixerID]Fixer{}
	for _, fx := range fixers {
		byID[fx.ID] = fx
	}
	var out []reports.Action
	unmended := Unmended(fs, fixers)
	for _, f := range fs {
		if f.Status != reports.Fail && f.Status != reports.Warn && f.Status != reports.Error {
			continue
		}
		if f.Fix == nil || !f.Fix.AutoFixable || f.Fix.Fixer == "" {
			continue
		}
		fx, ok := byID[f.Fix.Fixer]
		if !ok {
			continue
		}
		if fx.Destructive && !dryRun && len(unmended) > 0 {
			out = append(out, reports.Action{Fixer: fx.ID, Finding: f.ID, BlockedBy: unmended,
				Summary: "not applied: it loses the workload's state, and the dump would still fail on " + strings.Join(unmended, ", "),
				Error:   "refused: no fix mends " + strings.Join(unmended, ", ")})
			continue
		}
		if dryRun {
			out = append(out, reports.Action{Fixer: fx.ID, Finding: f.ID, Summary: "would " + f.Fix.Description})
			continue
		}
		a, err := applyOne(ctx, env, fx, f)
		a.Fixer, a.Finding = fx.ID, f.ID
		if err != nil {
			a.Applied = false
			a.Error = err.Error()
		}
		out = append(out, a)
	}
	return out
}

func applyOne(ctx context.Context, env *Env, fx Fixer, f reports.Finding) (a reports.Action, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("fixer %s panicked: %v", fx.ID, p)
		}
	}()
	return fx.Apply(ctx, env, f)
}
