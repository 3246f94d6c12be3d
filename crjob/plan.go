package crjob

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/reports"
)

// criuOptionFixer is the "criu-option" fixer: it adds a finding's CRIU
// options to the dump (and its restore options to the manifest). The
// options are taken from the checks run after all fixes, so that they fit
// the workload as it is dumped.
func (j *cpJob) criuOptionFixer() checks.Fixer {
	return checks.Fixer{ID: checks.FixerIDCRIUOption, Title: "add CRIU options to the dump",
		Apply: func(_ context.Context, _ *checks.Env, f reports.Finding) (reports.Action, error) {
			opts := f.Fix.CRIU
			a := reports.Action{Summary: "dump with " + opts.DumpLine(), Command: append([]string{"criu", "dump"}, opts.DumpArgs()...)}
			if _, not := opts.Passed(); !not.IsZero() {
				return a, fmt.Errorf("criu options %s: kata-cr does not pass them to CRIU", not.DumpLine())
			}
			a.Applied = true
			if !f.Fix.Restore.IsZero() {
				a.Summary += "; restore with " + f.Fix.Restore.RestoreLine()
			}
			return a, nil
		}}
}

// moduleName finds the module in the load-module fix's description.
var moduleName = regexp.MustCompile(`load module (\S+)`)

// describeActions completes the dry-run actions acts (checks.ApplyFixes
// for fs) with the commands and options each step would use.
func describeActions(fs []reports.Finding, acts []reports.Action, fixers []checks.Fixer, j *cpJob) []reports.Action {
	// ApplyFixes gives one action per fixable finding, in order; several
	// findings share an ID (one per bind mount), so pair them by order.
	known := map[checks.FixerID]bool{}
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
		case checks.FixerIDLoadModule:
			if m := moduleName.FindStringSubmatch(f.Fix.Description); m != nil {
				acts[i].Command = []string{"modprobe", m[1]}
			}
		case checks.FixerIDLoopbackUp:
			acts[i].Command = []string{"ip", "link", "set", "lo", "up"}
		case checks.FixerIDMountDevpts:
			acts[i].Command = []string{"mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts", "/dev/pts"}
		case checks.FixerIDCRIUOption:
			if f.Fix != nil {
				acts[i].Command = append([]string{"criu", "dump"}, f.Fix.CRIU.DumpArgs()...)
				acts[i].Summary = "would dump with " + f.Fix.CRIU.DumpLine()
				if !f.Fix.Restore.IsZero() {
					acts[i].Summary += " and restore with " + f.Fix.Restore.RestoreLine()
				}
			}
		case checks.FixerIDRestartSetsid:
			acts[i].Summary = fmt.Sprintf("would restart the workload (%s) with the runtime making its init a session leader (setsid() before exec, as runc does): its in-memory state since the start would be lost", strings.Join(j.w.Args, " "))
			if j.opts.NoRestart {
				acts[i].Summary = "would refuse to restart the workload (--no-restart): the dump fails"
			}
			// The other fixes are not made here, so judge by the tree's
			// own blockers: no fix of the machine mends them.
			var tree []reports.Finding
			for _, f := range fs {
				if f.Category == "process" || f.Category == "mount" {
					tree = append(tree, f)
				}
			}
			if blk := checks.Unmended(tree, fixers); len(blk) > 0 {
				acts[i].BlockedBy = blk
				acts[i].Summary = "would refuse to restart the workload: its in-memory state would be lost, and the dump would still fail on " + strings.Join(blk, ", ")
			}
		}
	}
	return acts
}

// markWorkedAround turns a failing finding into a warning when the dump
// carries every option of its fix: the problem is there, and the dump
// works around it. Without fixes nothing is worked around.
func markWorkedAround(fs []reports.Finding, dump criuopt.Set, fixed bool) []reports.Finding {
	out := append([]reports.Finding(nil), fs...)
	if !fixed {
		return out
	}
	have, tty := dump, ""
	if len(dump.TTYs) > 0 {
		// For a terminal container the pty is declared external instead
		// of --shell-job (see dumpOpts).
		have.ShellJob = true
		tty = dump.TTYs[0].Key()
	}
	for i, f := range out {
		if f.Status != reports.Fail || f.Fix == nil || f.Fix.CRIU.IsZero() || !have.Contains(f.Fix.CRIU) {
			continue
		}
		out[i].Status = reports.Warn
		if tty != "" && f.Fix.CRIU.ShellJob && !dump.ShellJob {
			out[i].Summary += " (worked around: the dump declares the pty external with --external " + tty + " and the restore hands it a new pty)"
		} else {
			out[i].Summary += " (worked around: the dump uses " + f.Fix.CRIU.DumpLine() + ")"
		}
	}
	return out
}

// planFinding records the prediction after the fixes: what the dump that
// runs, with the options it gets, is expected to do; skipped are the
// plan's options kata-cr does not pass to CRIU.
func planFinding(p *reports.Prediction, dumpArgs []string, skipped criuopt.Set) reports.Finding {
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
	if !skipped.IsZero() {
		f.Evidence = append(f.Evidence, "options "+skipped.DumpLine()+" left out: kata-cr does not pass them to CRIU")
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
		return fmt.Sprintf("a plain dump is predicted to fail; with %s it should succeed", p.CRIU.DumpLine())
	}
	return fmt.Sprintf("the dump is predicted to fail (%s)", strings.Join(p.BlockedBy, ", "))
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
	sig, ids, quote := causeOf(dumpErr)
	if sig != "" {
		_, hit := predictedCause(p, dumpErr)
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

// predictedCause names the first cause CRIU's log explains for a failed
// dump and the findings of the prediction p that named it.
func predictedCause(p *reports.Prediction, dumpErr error) (signature string, predictedBy []string) {
	sig, ids, _ := causeOf(dumpErr)
	if sig == "" || p == nil {
		return sig, nil
	}
	for _, id := range ids {
		if slices.Contains(p.BlockedBy, id) {
			predictedBy = append(predictedBy, id)
		}
	}
	return sig, predictedBy
}
