package reports

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/kata-cr/kata-cr/internal/junit"
)

// renderJUnit writes one testsuite for the report, one testcase per
// finding (classname = category, name = ID) and, when a checkpoint ran,
// one testcase per checkpoint stage.
func renderJUnit(w io.Writer, r *Report) error {
	suite := junit.Suite{Name: "kata-cr " + r.Command}
	suite.Properties = junitProperties(r)

	names := map[string]int{}
	for _, f := range r.Findings {
		c := junit.Case{Classname: f.Category, Name: uniqueName(names, f.ID)}
		if c.Classname == "" {
			c.Classname = "kata-cr"
		}
		body := findingBody(f)
		switch f.Status {
		case Fail:
			c.Failure = junit.NewProblem(f.Summary, string(f.Level), body)
		case Error:
			msg := f.Summary
			if f.Reason != "" {
				msg += ": " + f.Reason
			}
			c.Error = junit.NewProblem(msg, string(f.Level), body)
		case Skip:
			c.Skipped = &junit.Skip{Message: f.Reason}
		case Warn:
			c.SystemOut = junit.NewText("warning: " + f.Summary + "\n" + body)
		default:
			c.SystemOut = junit.NewText(body)
		}
		suite.Cases = append(suite.Cases, c)
	}
	if r.Checkpoint != nil {
		suite.Cases = append(suite.Cases, checkpointCases(r.Checkpoint)...)
		if total := r.Checkpoint.DumpSeconds + r.Checkpoint.RestoreSeconds; total > 0 {
			suite.Time = seconds(total)
		}
	}
	var out strings.Builder
	for _, e := range r.Explanations {
		out.WriteString(explanationText(e))
	}
	suite.SystemOut = junit.NewText(out.String())

	doc := junit.Suites{Name: "kata-cr"}
	doc.Add(suite)
	if err := doc.Write(w); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func junitProperties(r *Report) []junit.Property {
	var ps []junit.Property
	add := func(name, value string) {
		if value != "" {
			ps = append(ps, junit.Property{Name: name, Value: value})
		}
	}
	add("schema_version", r.SchemaVersion)
	add("version", r.Version)
	add("target", r.Target.Kind)
	add("kernel_release", r.Target.KernelRelease)
	add("criu_version", r.Target.CRIUVersion)
	add("arch", r.Target.Arch)
	add("accelerator", r.Target.Accelerator)
	add("accelerator_reason", r.Target.AcceleratorReason)
	add("sources", strings.Join(r.Target.Sources, ", "))
	add("verdict", r.Verdict)
	return ps
}

// uniqueName keeps testcase names distinct when one check reports several
// findings under the same ID, since many JUnit readers merge duplicates.
func uniqueName(seen map[string]int, id string) string {
	seen[id]++
	if n := seen[id]; n > 1 {
		return fmt.Sprintf("%s #%d", id, n)
	}
	return id
}

func findingBody(f Finding) string {
	var b strings.Builder
	for _, e := range f.Evidence {
		b.WriteString(e + "\n")
	}
	if f.Reason != "" && f.Status != Skip {
		b.WriteString("reason: " + f.Reason + "\n")
	}
	if f.Fix != nil && f.Status != Pass && f.Status != Skip {
		if f.Fix.Description != "" {
			b.WriteString("fix: " + f.Fix.Description + "\n")
		}
		if !f.Fix.CRIU.IsZero() {
			b.WriteString("criu options: " + f.Fix.CRIU.DumpLine() + "\n")
		}
		if !f.Fix.Restore.IsZero() {
			b.WriteString("restore options: " + f.Fix.Restore.RestoreLine() + "\n")
		}
		b.WriteString(autoFixLine(f.Fix) + "\n")
	}
	return b.String()
}

func explanationText(e Explanation) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d %s\ncause: %s\n", e.Source, e.Line, e.Label(), e.Cause)
	if e.Fix != "" {
		fmt.Fprintf(&b, "fix: %s\n", e.Fix)
	}
	for _, q := range e.Quote {
		fmt.Fprintf(&b, "> %s\n", q)
	}
	return b.String()
}

func checkpointCases(c *Checkpoint) []junit.Case {
	var cases []junit.Case
	for _, row := range stageRows(c) {
		jc := junit.Case{Classname: "checkpoint", Name: row.Name}
		if row.Seconds > 0 {
			jc.Time = seconds(row.Seconds)
		}
		switch row.Outcome {
		case "ok":
			jc.SystemOut = junit.NewText(row.Detail)
		case "failed":
			msg := row.Name + " failed"
			if c.Error != "" {
				msg += ": " + c.Error
			}
			var body strings.Builder
			if row.Detail != "" {
				body.WriteString(row.Detail + "\n")
			}
			for _, e := range c.Explanations {
				body.WriteString(explanationText(e))
			}
			jc.Failure = junit.NewProblem(msg, "checkpoint", body.String())
		default:
			jc.Skipped = &junit.Skip{Message: row.Outcome + " (stage reached: " + c.Stage + ")"}
		}
		cases = append(cases, jc)
	}
	return cases
}

func seconds(s float64) string {
	return strconv.FormatFloat(s, 'f', 3, 64)
}
