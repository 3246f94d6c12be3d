package gate

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/kata-cr/kata-cr/internal/junit"
	"github.com/kata-cr/kata-cr/reports"
)

// clean shows what could drive a terminal (text from guests, CRIU logs
// and workloads) as text.
func clean(s string) string { return reports.TerminalText(s) }

// rows are the workloads of every cell, in the order they first appear.
func rows(r *Result) []string {
	var out []string
	for _, c := range r.Cells {
		for _, w := range c.Workloads {
			if !slices.Contains(out, w.Name) {
				out = append(out, w.Name)
			}
		}
	}
	return out
}

func (c CellResult) workload(name string) *WorkloadResult {
	for i := range c.Workloads {
		if c.Workloads[i].Name == name {
			return &c.Workloads[i]
		}
	}
	return nil
}

// mark is a workload's entry in the table: its status, and the corpus's
// verdict.
func mark(w *WorkloadResult) string {
	switch {
	case w == nil:
		return "-"
	case w.Status == Pass:
		return "ok " + w.Verdict
	case w.Status == Skipped:
		return "skipped"
	case w.Verdict == "" || w.Verdict == "error":
		return "ERROR"
	}
	return "FAIL " + w.Verdict
}

// CellLine is one line about a finished cell: its name, counts, accuracy
// and time.
func CellLine(c CellResult) string {
	s := fmt.Sprintf("%-5s %s: %d/%d passed", strings.ToUpper(string(c.Status)), c.Name, c.Counts.Passed, c.Counts.Workloads)
	if c.Counts.Failed > 0 {
		s += fmt.Sprintf(", %d failed", c.Counts.Failed)
	}
	if c.Counts.Errors > 0 {
		s += fmt.Sprintf(", %d not judged", c.Counts.Errors)
	}
	s += fmt.Sprintf("; predictions %s; %.0fs", c.Accuracy, c.Seconds)
	if c.Error != "" {
		s += ": " + firstLine(c.Error)
	}
	return clean(s)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// WriteText writes the result for a terminal: a table (rows workloads,
// columns cells), each cell's kernel, CRIU, accuracy and times, then each
// failure with its explanation and fix, the baseline's regressions and
// improvements, and a verdict.
func WriteText(w io.Writer, r *Result) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	head := []string{"WORKLOAD"}
	for _, c := range r.Cells {
		head = append(head, c.Name)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, name := range rows(r) {
		line := []string{name}
		for _, c := range r.Cells {
			line = append(line, mark(c.workload(name)))
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	for _, s := range []struct {
		name string
		f    func(CellResult) string
	}{
		{"(cell)", func(c CellResult) string { return strings.ToUpper(string(c.Status)) }},
		{"(predictions agreed)", func(c CellResult) string { return c.Accuracy.String() }},
		{"(dump / restore s)", func(c CellResult) string { return fmt.Sprintf("%.1f / %.1f", c.DumpSeconds, c.RestoreTotalSeconds) }},
		{"(cell time s)", func(c CellResult) string { return fmt.Sprintf("%.0f", c.Seconds) }},
	} {
		line := []string{s.name}
		for _, c := range r.Cells {
			line = append(line, s.f(c))
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	_ = tw.Flush()
	b.WriteString("\n")
	for _, c := range r.Cells {
		fmt.Fprintf(&b, "cell %s: kernel %s (%s), CRIU %s (%s)", c.Name, c.Kernel, orDash(c.KernelRelease), c.CRIU, orDash(c.CRIUVersion))
		if c.Accelerator != "" {
			fmt.Fprintf(&b, ", %s", c.Accelerator)
		}
		b.WriteString("\n")
		if c.Error != "" {
			fmt.Fprintf(&b, "  %s: %s\n", strings.ToUpper(string(c.Status)), c.Error)
		}
	}
	for _, c := range r.Cells {
		if c.Error != "" {
			continue
		}
		for _, wr := range c.Workloads {
			if wr.Status == Fail || wr.Status == Error {
				fmt.Fprintf(&b, "\n%-5s %s / %s: %s\n", strings.ToUpper(string(wr.Status)), c.Name, wr.Name, wr.Message)
			}
		}
	}
	if cmp := r.Baseline; cmp != nil {
		fmt.Fprintf(&b, "\nbaseline %s: %d regressions, %d improvements\n", cmp.File, len(cmp.Regressions), len(cmp.Improvements))
		for _, ch := range cmp.Regressions {
			fmt.Fprintf(&b, "REGRESSION  %s\n", ch)
		}
		for _, ch := range cmp.Improvements {
			fmt.Fprintf(&b, "IMPROVED    %s\n", ch)
		}
		for _, g := range cmp.Gone {
			fmt.Fprintf(&b, "GONE        %s (in the baseline, not in this run)\n", g)
		}
	}
	fmt.Fprintf(&b, "\n%s\n", Verdict(r))
	_, err := io.WriteString(w, clean(b.String()))
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Verdict says in one line how the gate ended.
func Verdict(r *Result) string {
	pass := 0
	for _, c := range r.Cells {
		if c.Status == Pass {
			pass++
		}
	}
	s := fmt.Sprintf("gate: %d of %d cells passed in %.0fs (-j %d)", pass, len(r.Cells), r.Seconds, r.Jobs)
	if r.Baseline != nil {
		s += fmt.Sprintf("; %d regressions and %d improvements against the baseline", len(r.Baseline.Regressions), len(r.Baseline.Improvements))
	}
	return s
}

// WriteJSON writes the result as JSON (schema_version SchemaVersion).
func WriteJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteMarkdown writes the result as Markdown for a CI summary
// ($GITHUB_STEP_SUMMARY, a merge request note): the table, the cells, the
// failures and the baseline's changes.
func WriteMarkdown(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## kata-cr gate\n\n%s.\n\n", Verdict(r))
	b.WriteString("| workload |")
	for _, c := range r.Cells {
		fmt.Fprintf(&b, " %s |", md(c.Name))
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---|", len(r.Cells)))
	b.WriteString("\n")
	for _, name := range rows(r) {
		fmt.Fprintf(&b, "| %s |", md(name))
		for _, c := range r.Cells {
			fmt.Fprintf(&b, " %s |", md(mark(c.workload(name))))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| cell | kernel | CRIU | accelerator | status | passed | predictions agreed | dump s | restore s | cell s |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.Cells {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d/%d | %s | %.1f | %.1f | %.0f |\n", md(c.Name),
			md(c.Kernel+" ("+orDash(c.KernelRelease)+")"), md(c.CRIU+" ("+orDash(c.CRIUVersion)+")"), md(orDash(c.Accelerator)),
			c.Status, c.Counts.Passed, c.Counts.Workloads, c.Accuracy, c.DumpSeconds, c.RestoreTotalSeconds, c.Seconds)
	}
	var fails []string
	for _, c := range r.Cells {
		if c.Error != "" {
			fails = append(fails, fmt.Sprintf("- **%s** %s: %s", c.Status, md(c.Name), md(c.Error)))
			continue
		}
		for _, wr := range c.Workloads {
			if wr.Status == Fail || wr.Status == Error {
				fails = append(fails, fmt.Sprintf("- **%s** %s / %s: %s", wr.Status, md(c.Name), md(wr.Name), md(wr.Message)))
			}
		}
	}
	if len(fails) > 0 {
		b.WriteString("\n### Failures\n\n" + strings.Join(fails, "\n") + "\n")
	}
	if cmp := r.Baseline; cmp != nil {
		fmt.Fprintf(&b, "\n### Against the baseline\n\n%d regressions, %d improvements (times: beyond %.2gx + %.1fs).\n\n", len(cmp.Regressions), len(cmp.Improvements), cmp.Tolerance.Factor, cmp.Tolerance.SlackSeconds)
		for _, ch := range cmp.Regressions {
			fmt.Fprintf(&b, "- regression: %s\n", md(ch.String()))
		}
		for _, ch := range cmp.Improvements {
			fmt.Fprintf(&b, "- improvement: %s\n", md(ch.String()))
		}
	}
	_, err := io.WriteString(w, clean(b.String()))
	return err
}

// md keeps text on its table line: no pipe, no newline.
func md(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func secs(f float64) string { return fmt.Sprintf("%.3f", f) }

// WriteJUnit writes the result as JUnit XML: one testsuite per cell with
// its kernel, CRIU and accelerator as properties, one testcase per
// workload; a failure's message is its explanation and fix, and a
// regression against the baseline fails its testcase too.
func WriteJUnit(w io.Writer, r *Result) error {
	doc := junit.Suites{Name: "kata-cr gate", Time: secs(r.Seconds)}
	regressions := map[[2]string][]string{}
	if r.Baseline != nil {
		for _, ch := range r.Baseline.Regressions {
			k := [2]string{ch.Cell, ch.Workload}
			regressions[k] = append(regressions[k], ch.Kind+": "+ch.Message)
		}
	}
	for _, c := range r.Cells {
		s := junit.Suite{Name: clean(c.Name), Time: secs(c.Seconds)}
		for _, p := range [][2]string{
			{"kernel", c.Kernel}, {"kernel_source", c.KernelSource}, {"kernel_release", c.KernelRelease},
			{"criu", c.CRIU}, {"criu_source", c.CRIUSource}, {"criu_version", c.CRIUVersion},
			{"accelerator", c.Accelerator}, {"predictions", fmt.Sprint(c.Accuracy.Predictions)},
			{"predictions_agreed", fmt.Sprint(c.Accuracy.Agreed)}, {"dump_seconds", secs(c.DumpSeconds)},
			{"restore_seconds", secs(c.RestoreTotalSeconds)},
		} {
			s.Properties = append(s.Properties, junit.Property{Name: p[0], Value: clean(p[1])})
		}
		for _, wr := range c.Workloads {
			tc := junit.Case{Classname: "kata-cr.gate." + clean(c.Name), Name: clean(wr.Name), Time: secs(wr.DumpSeconds + wr.RestoreSeconds)}
			msg := clean(wr.Message)
			switch wr.Status {
			case Fail:
				tc.Failure = junit.NewProblem(msg, wr.Verdict, msg)
			case Error:
				tc.Error = junit.NewProblem(msg, "not-judged", msg)
			case Skipped:
				tc.Skipped = &junit.Skip{Message: msg}
			}
			if regs := regressions[[2]string{c.Name, wr.Name}]; len(regs) > 0 && tc.Failure == nil && tc.Error == nil {
				m := clean("regression against the baseline: " + strings.Join(regs, "; "))
				tc.Failure = junit.NewProblem(m, "regression", m)
			}
			tc.SystemOut = junit.NewText(clean(fmt.Sprintf("expect %s, verdict %s, predictions agreed %s", wr.Expect, orDash(wr.Verdict), wr.Accuracy)))
			s.Cases = append(s.Cases, tc)
		}
		doc.Add(s)
	}
	return doc.Write(w)
}
