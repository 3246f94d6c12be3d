package gate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kata-cr/kata-cr/corpus"
	"github.com/kata-cr/kata-cr/reports"
)

// SchemaVersion is the version of the gate's JSON (a Result); it changes
// when a field changes meaning or goes away, not when one is added.
const SchemaVersion = 1

// Status is how a cell or a workload ended.
type Status string

// The statuses.
const (
	// Pass: the workload met its expectation, or every workload of the
	// cell did.
	Pass Status = "pass"
	// Fail: a workload missed its expectation, or kata-cr's prediction
	// disagreed with CRIU.
	Fail Status = "fail"
	// Error: the workload could not be judged, or the cell's guests did
	// not run to the end.
	Error Status = "error"
	// Skipped: the cell never ran (--fail-fast, or the run was stopped).
	Skipped Status = "skipped"
)

// Result is one run of the gate.
type Result struct {
	SchemaVersion int    `json:"schema_version"`
	KataCRVersion string `json:"kata_cr_version,omitempty"`
	// Matrix is the matrix file, "default" for the built-in one.
	Matrix  string       `json:"matrix"`
	Jobs    int          `json:"jobs"`
	Seconds float64      `json:"seconds"`
	Cells   []CellResult `json:"cells"`
	// Baseline is the comparison with --baseline, when one was given.
	Baseline *Comparison `json:"baseline,omitempty"`
}

// CellResult is one cell of the matrix.
type CellResult struct {
	Name          string   `json:"name"`
	Kernel        string   `json:"kernel"`
	KernelSource  string   `json:"kernel_source"`
	CRIU          string   `json:"criu"`
	CRIUSource    string   `json:"criu_source"`
	KernelRelease string   `json:"kernel_release,omitempty"`
	CRIUVersion   string   `json:"criu_version,omitempty"`
	Accelerator   string   `json:"accelerator,omitempty"`
	Options       Options  `json:"options"`
	Status        Status   `json:"status"`
	Error         string   `json:"error,omitempty"`
	Accuracy      Accuracy `json:"accuracy"`
	Counts        Counts   `json:"counts"`
	// Seconds is the cell's wall time; CheckpointSeconds and
	// RestoreSeconds the corpus's two guests, boots included.
	Seconds           float64 `json:"seconds"`
	CheckpointSeconds float64 `json:"checkpoint_seconds"`
	RestoreSeconds    float64 `json:"restore_seconds"`
	// DumpSeconds and RestoreTotalSeconds sum the workloads' timed CRIU
	// dumps and restores.
	DumpSeconds         float64          `json:"dump_seconds"`
	RestoreTotalSeconds float64          `json:"restore_total_seconds"`
	Workloads           []WorkloadResult `json:"workloads"`
	// Dir holds the cell's checkpoints and each workload's whole report.
	Dir string `json:"dir,omitempty"`
}

// Counts sums up a cell's workloads.
type Counts struct {
	Workloads int `json:"workloads"`
	Passed    int `json:"passed"`
	Failed    int `json:"failed"`
	Errors    int `json:"errors"`
	Skipped   int `json:"skipped"`
}

// Accuracy is how many of kata-cr's predictions CRIU confirmed: the dump
// with no options, the planned dump and each option of the plan proved by
// a dump without it.
type Accuracy struct {
	Predictions int `json:"predictions"`
	Agreed      int `json:"agreed"`
}

// String is "agreed/predictions (percent)".
func (a Accuracy) String() string {
	if a.Predictions == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d (%.0f%%)", a.Agreed, a.Predictions, 100*float64(a.Agreed)/float64(a.Predictions))
}

func (a *Accuracy) add(b Accuracy) {
	a.Predictions += b.Predictions
	a.Agreed += b.Agreed
}

// WorkloadResult is one workload in one cell.
type WorkloadResult struct {
	Name   string `json:"name"`
	Expect Expect `json:"expect"`
	Status Status `json:"status"`
	// Verdict is the corpus's: restored, unfixable, wrong or error.
	Verdict string `json:"verdict,omitempty"`
	// Message explains a failure or an error and says what to do.
	Message        string   `json:"message,omitempty"`
	Accuracy       Accuracy `json:"accuracy"`
	DumpSeconds    float64  `json:"dump_seconds,omitempty"`
	RestoreSeconds float64  `json:"restore_seconds,omitempty"`
	// Corpus is the corpus's whole judgement of the workload.
	Corpus *corpus.EntryResult `json:"corpus,omitempty"`
}

// Agreed says the prediction agreed with CRIU everywhere CRIU judged it.
func (w WorkloadResult) Agreed() bool {
	return w.Verdict != corpus.VerdictWrong && w.Verdict != corpus.VerdictError && w.Status != Error
}

// Restored says the workload was restored and verified.
func (w WorkloadResult) Restored() bool { return w.Verdict == corpus.VerdictRestored }

// newCell is a cell's result before it runs.
func newCell(c Cell) CellResult {
	return CellResult{Name: c.Name, Kernel: c.Kernel.Name, KernelSource: c.Kernel.Source(), CRIU: c.CRIU.Name,
		CRIUSource: c.CRIU.Source(), Options: c.Options}
}

// judgeCell sets the corpus's result of a cell beside what the cell
// expects of each workload.
func judgeCell(c Cell, res *corpus.Result, dir string) CellResult {
	cr := newCell(c)
	cr.Dir = dir
	cr.KernelRelease, cr.CRIUVersion, cr.Accelerator = res.Cell.KernelRelease, res.Cell.CRIUVersion, res.Cell.Accelerator
	cr.CheckpointSeconds, cr.RestoreSeconds = res.CheckpointSeconds, res.RestoreSeconds
	for _, w := range c.Workloads {
		i := slices.IndexFunc(res.Entries, func(e corpus.EntryResult) bool { return e.Name == w.Name })
		if i < 0 {
			cr.Workloads = append(cr.Workloads, WorkloadResult{Name: w.Name, Expect: w.Expect, Status: Error,
				Message: "the corpus run has no result for this workload"})
			continue
		}
		cr.Workloads = append(cr.Workloads, judgeWorkload(w, &res.Entries[i], dir))
	}
	cr.finish()
	return cr
}

// failedCell is a cell whose guests did not run to the end.
func failedCell(c Cell, status Status, why string) CellResult {
	cr := newCell(c)
	cr.Status, cr.Error = status, why
	for _, w := range c.Workloads {
		cr.Workloads = append(cr.Workloads, WorkloadResult{Name: w.Name, Expect: w.Expect, Status: status, Message: why})
	}
	cr.finish()
	cr.Status = status
	return cr
}

// finish sums up the workloads.
func (cr *CellResult) finish() {
	cr.Counts = Counts{Workloads: len(cr.Workloads)}
	cr.Accuracy = Accuracy{}
	cr.DumpSeconds, cr.RestoreTotalSeconds = 0, 0
	for _, w := range cr.Workloads {
		cr.Accuracy.add(w.Accuracy)
		cr.DumpSeconds += w.DumpSeconds
		cr.RestoreTotalSeconds += w.RestoreSeconds
		switch w.Status {
		case Pass:
			cr.Counts.Passed++
		case Fail:
			cr.Counts.Failed++
		case Skipped:
			cr.Counts.Skipped++
		default:
			cr.Counts.Errors++
		}
	}
	switch {
	case cr.Counts.Failed > 0:
		cr.Status = Fail
	case cr.Counts.Errors > 0:
		cr.Status = Error
	case cr.Counts.Skipped > 0:
		cr.Status = Skipped
	default:
		cr.Status = Pass
	}
}

// accuracy counts the predictions CRIU judged in an entry and those it
// confirmed.
func accuracy(e *corpus.EntryResult) Accuracy {
	var a Accuracy
	for _, o := range []corpus.Outcome{e.Plain, e.Planned} {
		if o.Predicted == "-" || o.CRIU == "-" {
			continue
		}
		a.Predictions++
		if (o.Predicted == "ok" || o.Predicted == "loses") == (o.CRIU == "ok") {
			a.Agreed++
		}
	}
	for _, w := range e.Without {
		a.Predictions++
		if w.Confirmed {
			a.Agreed++
		}
	}
	return a
}

func judgeWorkload(w Workload, e *corpus.EntryResult, dir string) WorkloadResult {
	wr := WorkloadResult{Name: w.Name, Expect: w.Expect, Verdict: e.Verdict, Accuracy: accuracy(e),
		DumpSeconds: e.DumpSeconds, RestoreSeconds: e.RestoreSeconds, Corpus: e}
	switch {
	case e.Verdict == corpus.VerdictWrong:
		wr.Status = Fail
		wr.Message = wrongMessage(e, dir)
	case e.Verdict == corpus.VerdictError:
		wr.Status = Error
		wr.Message = fmt.Sprintf("the workload could not be judged: %s; its report: %s", orNone(e.Detail), reportPath(dir, w.Name))
	case w.Expect == ExpectRestore && e.Verdict != corpus.VerdictRestored:
		wr.Status = Fail
		wr.Message = "expected restore, but " + unfixableMessage(e, dir)
	case w.Expect == ExpectUnfixable && e.Verdict != corpus.VerdictUnfixable:
		wr.Status = Fail
		wr.Message = "expected unfixable, but kata-cr checkpointed it, and it was restored and verified: if the kernel or CRIU now handle it, expect restore"
	default:
		wr.Status = Pass
		if e.Verdict == corpus.VerdictUnfixable {
			// Why, for a baseline that later sees it restored or not.
			wr.Message = unfixableMessage(e, dir)
		}
	}
	return wr
}

func orNone(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

func reportPath(dir, name string) string {
	if dir == "" {
		return name + ".report.json"
	}
	return filepath.Join(dir, name+".report.json")
}

// wrongMessage explains a disagreement with CRIU: a bug of kata-cr's
// checks or a CRIU failure it does not know.
func wrongMessage(e *corpus.EntryResult, dir string) string {
	var b strings.Builder
	b.WriteString("kata-cr's prediction disagrees with CRIU: ")
	b.WriteString(strings.Join(append(slices.Clone(e.Disagreements), e.Unknown...), "; "))
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", e.Detail)
	}
	fmt.Fprintf(&b, ". Fix: kata-cr must learn this case (a check, a fixer or a CRIU log signature): report it with the workload's report %s and CRIU's logs beside it", reportPath(dir, e.Name))
	return b.String()
}

// unfixableMessage explains a workload kata-cr did not checkpoint: the
// blockers the plan left, each with its explanation and fix from the
// workload's report.
func unfixableMessage(e *corpus.EntryResult, dir string) string {
	var b strings.Builder
	b.WriteString("kata-cr predicted that CRIU cannot dump it, and CRIU agreed")
	if len(e.Refused) > 0 {
		fmt.Fprintf(&b, " (refused: %s)", strings.Join(e.Refused, "; "))
	}
	if e.Planned.Signature != "" {
		fmt.Fprintf(&b, "; CRIU failed on %s", e.Planned.Signature)
	}
	if why := explain(dir, e); why != "" {
		b.WriteString(": ")
		b.WriteString(why)
	} else if len(e.Blockers) > 0 {
		fmt.Fprintf(&b, ": blocked by %s", strings.Join(e.Blockers, ", "))
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", e.Detail)
	}
	return b.String()
}

// explain reads the workload's report the corpus keeps (DIR/NAME.report.json)
// for the blockers that remained after the fixes, each with its summary
// and fix.
func explain(dir string, e *corpus.EntryResult) string {
	if dir == "" {
		return ""
	}
	data, err := os.ReadFile(reportPath(dir, e.Name))
	if err != nil {
		return ""
	}
	var r reports.Report
	if json.Unmarshal(data, &r) != nil {
		return ""
	}
	blockers := e.Blockers
	if r.Plan != nil && len(r.Plan.BlockedBy) > 0 {
		blockers = r.Plan.BlockedBy
	}
	var out []string
	for _, id := range blockers {
		i := slices.IndexFunc(r.Findings, func(f reports.Finding) bool { return f.ID == id })
		switch {
		case i < 0:
			out = append(out, id)
			continue
		case r.Findings[i].Status != reports.Fail && r.Findings[i].Status != reports.Error:
			// A warning the plan works around is not why it failed.
			continue
		}
		f := r.Findings[i]
		s := id + ": " + f.Summary
		if f.Fix != nil && f.Fix.Description != "" {
			s += "; fix: " + f.Fix.Description
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}
