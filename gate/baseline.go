package gate

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/kata-cr/kata-cr/internal/safefile"
)

// Tolerance is how much slower a timed dump or restore may be than the
// baseline's before it is a regression: more than Factor times the
// baseline's time plus SlackSeconds. The slack keeps the noise of short
// dumps under TCG (a dump of a small workload takes well under a second,
// and a busy host doubles that) from failing a gate.
type Tolerance struct {
	Factor       float64 `json:"factor"`
	SlackSeconds float64 `json:"slack_seconds"`
}

// DefaultTolerance: 50% slower and 2 seconds more.
var DefaultTolerance = Tolerance{Factor: 1.5, SlackSeconds: 2}

// slower says now is beyond the tolerance of was.
func (t Tolerance) slower(was, now float64) bool {
	return was > 0 && now > was*t.Factor+t.SlackSeconds
}

// faster says now is as far below was as slower is above.
func (t Tolerance) faster(was, now float64) bool {
	return now > 0 && was > now*t.Factor+t.SlackSeconds
}

// The kinds of change against a baseline.
const (
	ChangeRestore    = "restore"
	ChangePrediction = "prediction"
	ChangeStatus     = "status"
	ChangeDumpTime   = "dump-time"
	ChangeRestTime   = "restore-time"
	ChangeNotJudged  = "not-judged"
	ChangeNew        = "new"
)

// Change is one workload of one cell that got worse or better.
type Change struct {
	Cell     string `json:"cell"`
	Workload string `json:"workload"`
	Kind     string `json:"kind"`
	Message  string `json:"message"`
}

func (c Change) String() string {
	return fmt.Sprintf("%s / %s: %s", c.Cell, c.Workload, c.Message)
}

// Comparison is a run set beside its baseline.
type Comparison struct {
	File         string    `json:"file"`
	Tolerance    Tolerance `json:"tolerance"`
	Regressions  []Change  `json:"regressions"`
	Improvements []Change  `json:"improvements"`
	// Gone are the baseline's cells and workloads this run did not have
	// ("CELL" or "CELL / WORKLOAD"): listed, not regressions.
	Gone []string `json:"gone,omitempty"`
}

// LoadBaseline reads a gate's JSON result.
func LoadBaseline(path string) (*Result, error) {
	f, err := safefile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the baseline: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read the baseline %s: %w", path, err)
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("baseline %s is not a kata-cr gate JSON result: %w", path, err)
	}
	switch {
	case r.SchemaVersion == 0 || len(r.Cells) == 0:
		return nil, fmt.Errorf("baseline %s is not a kata-cr gate JSON result (no schema_version or no cells): write one with --write-baseline", path)
	case r.SchemaVersion > SchemaVersion:
		return nil, fmt.Errorf("baseline %s has schema version %d, newer than this kata-cr's %d", path, r.SchemaVersion, SchemaVersion)
	}
	return &r, nil
}

// Compare sets a run beside its baseline, cell by cell (by name) and
// workload by workload. A regression is a workload that was restored and
// is not; a prediction that agreed with CRIU and does not; a workload
// that passed and does not (or cannot be judged now); a dump or restore
// slower than the tolerance allows; a workload or cell new in this run
// that does not pass. The opposite changes are improvements.
func Compare(base, cur *Result, tol Tolerance, file string) *Comparison {
	cmp := &Comparison{File: file, Tolerance: tol, Regressions: []Change{}, Improvements: []Change{}}
	for _, bc := range base.Cells {
		ci := slices.IndexFunc(cur.Cells, func(c CellResult) bool { return c.Name == bc.Name })
		if ci < 0 {
			cmp.Gone = append(cmp.Gone, bc.Name)
			continue
		}
		for _, bw := range bc.Workloads {
			if !slices.ContainsFunc(cur.Cells[ci].Workloads, func(w WorkloadResult) bool { return w.Name == bw.Name }) {
				cmp.Gone = append(cmp.Gone, bc.Name+" / "+bw.Name)
			}
		}
	}
	for _, cc := range cur.Cells {
		bi := slices.IndexFunc(base.Cells, func(c CellResult) bool { return c.Name == cc.Name })
		for _, w := range cc.Workloads {
			ch := Change{Cell: cc.Name, Workload: w.Name}
			var bw *WorkloadResult
			if bi >= 0 {
				if i := slices.IndexFunc(base.Cells[bi].Workloads, func(x WorkloadResult) bool { return x.Name == w.Name }); i >= 0 {
					bw = &base.Cells[bi].Workloads[i]
				}
			}
			if bw == nil {
				if w.Status != Pass {
					cmp.regress(ch, ChangeNew, "new since the baseline, and it does not pass: %s", w.Message)
				}
				continue
			}
			compareWorkload(cmp, ch, *bw, w, tol)
		}
	}
	return cmp
}

func compareWorkload(cmp *Comparison, ch Change, was, now WorkloadResult, tol Tolerance) {
	judged := func(w WorkloadResult) bool { return w.Status != Error && w.Status != Skipped }
	switch {
	case judged(was) && !judged(now):
		cmp.regress(ch, ChangeNotJudged, "judged before (%s), not now: %s", describe(was), now.Message)
		return
	case !judged(was) && judged(now):
		cmp.improve(ch, ChangeNotJudged, "not judged before, now %s", describe(now))
		return
	case !judged(now):
		return
	}
	switch {
	case was.Restored() && !now.Restored():
		cmp.regress(ch, ChangeRestore, "restored and verified before, now %s: %s", describe(now), now.Message)
	case !was.Restored() && now.Restored():
		cmp.improve(ch, ChangeRestore, "restored and verified now, %s before", describe(was))
	}
	switch {
	case was.Agreed() && !now.Agreed():
		cmp.regress(ch, ChangePrediction, "the prediction agreed with CRIU before, not now: %s", now.Message)
	case !was.Agreed() && now.Agreed():
		cmp.improve(ch, ChangePrediction, "the prediction agrees with CRIU now, not before")
	}
	// A pass lost in another way: an expectation that changed its
	// meaning (unfixable now restored).
	if was.Status == Pass && now.Status != Pass && (!was.Restored() || now.Restored()) && (!was.Agreed() || now.Agreed()) {
		cmp.regress(ch, ChangeStatus, "passed before, now %s: %s", now.Status, now.Message)
	}
	if was.Restored() && now.Restored() {
		for _, t := range []struct {
			kind, what string
			was, now   float64
		}{{ChangeDumpTime, "dump", was.DumpSeconds, now.DumpSeconds}, {ChangeRestTime, "restore", was.RestoreSeconds, now.RestoreSeconds}} {
			switch {
			case tol.slower(t.was, t.now):
				cmp.regress(ch, t.kind, "the %s took %.2fs, %.2fs before: beyond the tolerance (%.2gx + %.1fs)", t.what, t.now, t.was, tol.Factor, tol.SlackSeconds)
			case tol.faster(t.was, t.now):
				cmp.improve(ch, t.kind, "the %s took %.2fs, %.2fs before", t.what, t.now, t.was)
			}
		}
	}
}

func describe(w WorkloadResult) string {
	if w.Verdict != "" {
		return w.Verdict
	}
	return string(w.Status)
}

func (c *Comparison) regress(ch Change, kind, format string, args ...any) {
	ch.Kind, ch.Message = kind, fmt.Sprintf(format, args...)
	c.Regressions = append(c.Regressions, ch)
}

func (c *Comparison) improve(ch Change, kind, format string, args ...any) {
	ch.Kind, ch.Message = kind, fmt.Sprintf(format, args...)
	c.Improvements = append(c.Improvements, ch)
}
