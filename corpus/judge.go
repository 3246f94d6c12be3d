package corpus

import (
	"fmt"
	"strings"

	"github.com/kata-cr/kata-cr/reports"
)

// SchemaVersion is the version of the JSON of a Result; it changes when
// the format does.
const SchemaVersion = 1

// Outcome is what one dump was predicted to do and what CRIU did.
type Outcome struct {
	// Predicted and CRIU are "ok", "fail", "hang", or "-" when that dump
	// did not run; a prediction is "loses" when CRIU is predicted to dump
	// the tree but lose part of its state.
	Predicted string `json:"predicted"`
	CRIU      string `json:"criu"`
	// Signature is the cause CRIU's log names for a failure.
	Signature string `json:"signature,omitempty"`
}

// Without is CRIU's answer to a dump without one finding's options.
type Without struct {
	Finding string `json:"finding"`
	// Options are the options left out, as criu words; for a refused
	// dump (a tree CRIU cannot seize), what the proof did instead.
	Options   string `json:"options"`
	Failed    bool   `json:"failed"`
	Signature string `json:"signature,omitempty"`
	// Hung says CRIU did not answer and was killed at kata-cr's limit.
	Hung      bool `json:"hung,omitempty"`
	Confirmed bool `json:"confirmed"`
}

// The verdicts of an entry.
const (
	// VerdictRestored: restored in the fresh guest and verified by the
	// workload's own probe.
	VerdictRestored = "restored"
	// VerdictUnfixable: predicted to fail whatever kata-cr does, CRIU
	// agreed, and the workload runs on as it was.
	VerdictUnfixable = "unfixable"
	// VerdictWrong: a disagreement or an unknown cause.
	VerdictWrong = "wrong"
	// VerdictError: the entry could not be judged (its job failed).
	VerdictError = "error"
)

// EntryResult is one entry of the corpus on one cell.
type EntryResult struct {
	Name     string `json:"name"`
	Workload string `json:"workload"`
	Covers   string `json:"covers"`
	// Plain is the dump with no options, Planned the dump with the plan.
	Plain   Outcome   `json:"plain"`
	Planned Outcome   `json:"planned"`
	Without []Without `json:"without,omitempty"`
	// Blockers are the findings the plain prediction named; Fix the plan:
	// its CRIU options and the fixers kata-cr applied.
	Blockers []string `json:"blockers,omitempty"`
	Fix      []string `json:"fix,omitempty"`
	Refused  []string `json:"refused,omitempty"`
	Restored bool     `json:"restored"`
	Verified bool     `json:"verified"`
	// WorkloadRunning says the original workload ran on after a failed or
	// refused dump.
	WorkloadRunning bool   `json:"workload_running"`
	Verdict         string `json:"verdict"`
	// Disagreements are where CRIU and the prediction differ; Unknown the
	// CRIU failures no signature explains.
	Disagreements []string `json:"disagreements,omitempty"`
	Unknown       []string `json:"unknown,omitempty"`
	Detail        string   `json:"detail,omitempty"`
	// DumpSeconds and RestoreSeconds are the timed dump and restore.
	DumpSeconds    float64 `json:"dump_seconds,omitempty"`
	RestoreSeconds float64 `json:"restore_seconds,omitempty"`
}

// Judge sets an entry's report (the checkpoint's, with the restore merged
// in) beside what CRIU did. A nil report is an entry whose job failed:
// why says why.
func Judge(e Entry, r *reports.Report, why string) EntryResult {
	res := EntryResult{Name: e.Name, Workload: e.Workload, Covers: e.Covers,
		Plain: Outcome{Predicted: "-", CRIU: "-"}, Planned: Outcome{Predicted: "-", CRIU: "-"}}
	if r == nil || r.Checkpoint == nil {
		res.Verdict, res.Detail = VerdictError, why
		return res
	}
	cp := r.Checkpoint
	j := judge{res: &res}
	j.plain(r.Prediction, cp.Plain)
	j.planned(r, cp)
	for _, p := range cp.Proofs {
		res.Without = append(res.Without, Without{Finding: p.Finding, Options: p.Without, Failed: p.Failed, Signature: p.Signature, Hung: p.Hung, Confirmed: p.Confirmed})
		if !p.Confirmed {
			j.disagree("without %s CRIU %s, not what %s predicts", p.Without, failedOn(p.Failed, p.Signature), p.Finding)
		}
	}
	for _, rf := range cp.Refusals {
		res.Refused = append(res.Refused, fmt.Sprintf("%s (%s)", rf.Step, strings.Join(rf.BlockedBy, ", ")))
	}
	res.Restored, res.Verified = cp.RestoreOK, cp.Verified
	res.WorkloadRunning = cp.WorkloadRunning != nil && *cp.WorkloadRunning
	res.DumpSeconds, res.RestoreSeconds = cp.DumpSeconds, cp.RestoreSeconds
	j.verdict(r, cp)
	return res
}

type judge struct{ res *EntryResult }

func (j judge) disagree(format string, args ...any) {
	j.res.Disagreements = append(j.res.Disagreements, fmt.Sprintf(format, args...))
}

func failedOn(failed bool, sig string) string {
	switch {
	case !failed:
		return "succeeded"
	case sig == "":
		return "failed on a cause kata-cr does not know"
	}
	return "failed on " + sig
}

func predicted(ok bool) string {
	if ok {
		return "ok"
	}
	return "fail"
}

// plain judges the prediction before any fix by the dump with no options.
func (j judge) plain(p *reports.Prediction, raw *reports.RawDump) {
	if p == nil {
		return
	}
	j.res.Blockers = p.BlockedBy
	j.res.Plain.Predicted = predicted(p.DumpWillSucceed)
	if raw == nil {
		j.disagree("no plain dump ran: CRIU did not judge the prediction before the fixes")
		return
	}
	j.res.Plain.CRIU, j.res.Plain.Signature = criuResult(raw.OK, raw.Hung, raw.Signature)
	switch {
	case raw.OK != p.DumpWillSucceed:
		j.disagree("with no options CRIU %s, predicted %s", failedOn(!raw.OK, raw.Signature), j.res.Plain.Predicted)
	case raw.Unexplained:
		j.res.Unknown = append(j.res.Unknown, "the plain dump failed on a cause no signature explains")
	case !raw.OK && len(raw.PredictedBy) == 0:
		j.disagree("with no options CRIU failed on %s, which none of the predicted blockers (%s) names", raw.Signature, strings.Join(p.BlockedBy, ", "))
	}
}

func criuResult(ok, hung bool, sig string) (string, string) {
	switch {
	case ok:
		return "ok", ""
	case hung:
		return "hang", sig
	}
	return "fail", sig
}

// planned judges the plan by the dump kata-cr ran with it.
func (j judge) planned(r *reports.Report, cp *reports.Checkpoint) {
	plan := r.Prediction
	if r.Plan != nil {
		plan = r.Plan
	}
	if plan != nil {
		j.res.Planned.Predicted = predicted(plan.WithOptions)
		if plan.WithOptions && len(plan.Losses) > 0 {
			j.res.Planned.Predicted = "loses"
		}
		j.res.Fix = append(j.res.Fix, plan.CRIU.DumpArgs()...)
	}
	for _, a := range r.Actions {
		if a.Applied && a.Fixer != "criu-option" && a.Fixer != "load-module" {
			j.res.Fix = append(j.res.Fix, string(a.Fixer))
		}
	}
	if cp.PredictionMatched == nil {
		return
	}
	j.res.Planned.CRIU, j.res.Planned.Signature = criuResult(cp.DumpOK, cp.CRIUHung, cp.FailureSignature)
	switch {
	case !*cp.PredictionMatched:
		j.disagree("with the plan CRIU %s, predicted %s", failedOn(!cp.DumpOK, cp.FailureSignature), j.res.Planned.Predicted)
	case !cp.DumpOK && cp.FailureSignature == "":
		j.res.Unknown = append(j.res.Unknown, "the planned dump failed on a cause no signature explains")
	case !cp.DumpOK && len(cp.PredictedBy) == 0:
		j.disagree("with the plan CRIU failed on %s, which no predicted blocker names", cp.FailureSignature)
	}
}

// verdict says how the entry ended.
func (j judge) verdict(r *reports.Report, cp *reports.Checkpoint) {
	res := j.res
	switch {
	case len(res.Disagreements) > 0 || len(res.Unknown) > 0:
		res.Verdict = VerdictWrong
	case cp.DumpOK && res.Restored && res.Verified:
		res.Verdict = VerdictRestored
		res.Detail = cp.Verification
	case cp.DumpOK:
		res.Verdict = VerdictWrong
		res.Detail = cp.Error
		j.disagree("the plan was predicted to work and CRIU dumped, but the restored workload was not verified: %s", orNone(cp.Error))
	case res.WorkloadRunning && (len(cp.Refusals) > 0 || cp.PredictionMatched != nil):
		res.Verdict = VerdictUnfixable
		res.Detail = cp.Error
	default:
		res.Verdict = VerdictError
		res.Detail = orNone(cp.Error)
		if !res.WorkloadRunning && (len(cp.Refusals) > 0 || cp.PredictionMatched != nil) {
			res.Verdict = VerdictWrong
			j.disagree("the workload does not run any more after the failed dump")
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}
