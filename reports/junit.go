package reports

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The JUnit XML shape that CI systems (Jenkins, GitLab, GitHub actions
// reporters) read: testsuites > testsuite > testcase with an optional
// failure, error or skipped child.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  *junitText      `xml:"system-out,omitempty"`
}

// junitText keeps multi-line text readable: CDATA instead of &#xA;.
type junitText struct {
	Text string `xml:",cdata"`
}

func text(s string) *junitText {
	if s == "" {
		return nil
	}
	return &junitText{Text: xmlSafe(s)}
}

// xmlSafe replaces what XML 1.0 cannot carry (control characters from a
// log, broken UTF-8), which CDATA, unlike escaped text, would pass through.
func xmlSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r == utf8.RuneError, r >= 0xD800 && r <= 0xDFFF, r == 0xFFFE, r == 0xFFFF:
			return '\uFFFD'
		}
		return r
	}, s)
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr,omitempty"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",cdata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// renderJUnit writes one testsuite for the report, one testcase per
// finding (classname = category, name = ID) and, when a checkpoint ran,
// one testcase per checkpoint stage.
func renderJUnit(w io.Writer, r *Report) error {
	suite := junitSuite{Name: "kata-cr " + r.Command}
	suite.Properties = junitProperties(r)

	names := map[string]int{}
	for _, f := range r.Findings {
		c := junitCase{Classname: f.Category, Name: uniqueName(names, f.ID)}
		if c.Classname == "" {
			c.Classname = "kata-cr"
		}
		body := findingBody(f)
		switch f.Status {
		case Fail:
			c.Failure = &junitProblem{Message: f.Summary, Type: string(f.Level), Body: xmlSafe(body)}
		case Error:
			msg := f.Summary
			if f.Reason != "" {
				msg += ": " + f.Reason
			}
			c.Error = &junitProblem{Message: msg, Type: string(f.Level), Body: xmlSafe(body)}
		case Skip:
			c.Skipped = &junitSkipped{Message: f.Reason}
		case Warn:
			c.SystemOut = text("warning: " + f.Summary + "\n" + body)
		default:
			c.SystemOut = text(body)
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
	suite.SystemOut = text(out.String())

	for _, c := range suite.Cases {
		suite.Tests++
		switch {
		case c.Failure != nil:
			suite.Failures++
		case c.Error != nil:
			suite.Errors++
		case c.Skipped != nil:
			suite.Skipped++
		}
	}
	doc := junitSuites{Name: "kata-cr", Tests: suite.Tests, Failures: suite.Failures,
		Errors: suite.Errors, Skipped: suite.Skipped, Suites: []junitSuite{suite}}
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report as junit xml: %w", err)
	}
	if _, err := io.WriteString(w, xml.Header+string(b)+"\n"); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func junitProperties(r *Report) []junitProperty {
	var ps []junitProperty
	add := func(name, value string) {
		if value != "" {
			ps = append(ps, junitProperty{Name: name, Value: value})
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

func checkpointCases(c *Checkpoint) []junitCase {
	var cases []junitCase
	for _, row := range stageRows(c) {
		jc := junitCase{Classname: "checkpoint", Name: row.Name}
		if row.Seconds > 0 {
			jc.Time = seconds(row.Seconds)
		}
		switch row.Outcome {
		case "ok":
			jc.SystemOut = text(row.Detail)
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
			jc.Failure = &junitProblem{Message: msg, Type: "checkpoint", Body: xmlSafe(body.String())}
		default:
			jc.Skipped = &junitSkipped{Message: row.Outcome + " (stage reached: " + c.Stage + ")"}
		}
		cases = append(cases, jc)
	}
	return cases
}

func seconds(s float64) string {
	return strconv.FormatFloat(s, 'f', 3, 64)
}
