package reports

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/fatih/color"

	"github.com/kata-cr/kata-cr/internal/excerpt"
)

// textStyle paints text for a terminal, or leaves it plain. Each colour
// object is switched on or off explicitly, because fatih/color's global
// NoColor is decided once from the process's stdout, which is not
// necessarily where this report goes.
type textStyle struct{ color bool }

func (s textStyle) paint(text string, attrs ...color.Attribute) string {
	c := color.New(attrs...)
	if s.color {
		c.EnableColor()
	} else {
		c.DisableColor()
	}
	return c.Sprint(text)
}

func (s textStyle) bold(text string) string  { return s.paint(text, color.Bold) }
func (s textStyle) faint(text string) string { return s.paint(text, color.Faint) }

// status renders a status: a coloured mark on a terminal, a fixed-width
// word otherwise, so that plain output stays easy to grep and diff.
func (s textStyle) status(st Status) string {
	if !s.color {
		return fmt.Sprintf("%-5s", strings.ToUpper(string(st)))
	}
	switch st {
	case Pass:
		return s.paint("✓", color.FgGreen, color.Bold)
	case Warn:
		return s.paint("⚠", color.FgYellow, color.Bold)
	case Fail:
		return s.paint("✗", color.FgRed, color.Bold)
	case Skip:
		return s.paint("○", color.FgCyan)
	case Error:
		return s.paint("‼", color.FgMagenta, color.Bold)
	}
	return s.paint("?", color.Bold)
}

func (s textStyle) outcome(word string) string {
	padded := fmt.Sprintf("%-8s", word)
	switch word {
	case "ok", "applied":
		return s.paint(padded, color.FgGreen)
	case "failed":
		return s.paint(padded, color.FgRed, color.Bold)
	case "planned":
		return s.paint(padded, color.FgYellow)
	}
	return s.faint(padded)
}

// renderText writes r for people. Sections appear only when they have
// content; the verdict is always the last line.
func renderText(w io.Writer, r *Report, opts Options) error {
	s := textStyle{color: opts.Color}
	var b bytes.Buffer
	if opts.Quiet {
		writeVerdict(&b, s, r)
		return writeOut(w, b.Bytes())
	}
	section := func() {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
	}

	var passed []Finding
	for _, f := range r.Findings {
		switch {
		case opts.All || (f.Status != Pass && f.Status != Skip):
			writeFinding(&b, s, f)
		case f.Status == Skip:
			// A skip keeps its reason, on its own line.
			fmt.Fprintf(&b, "%s %s  %s: %s\n", s.status(f.Status), s.bold(f.ID), f.Summary, f.Reason)
		default:
			passed = append(passed, f)
		}
	}
	writeCounts(&b, s, passed)

	if p := r.Prediction; p != nil {
		section()
		headline, reasons, tail := predictionLines(p)
		hl := s.paint(headline, color.FgGreen)
		if !p.DumpWillSucceed {
			hl = s.paint(headline, color.FgRed)
		}
		fmt.Fprintf(&b, "%s %s\n", s.bold("prediction:"), hl)
		for _, reason := range reasons {
			fmt.Fprintf(&b, "  - %s\n", reason)
		}
		for _, t := range tail {
			fmt.Fprintf(&b, "  %s\n", t)
		}
	}

	if len(r.Actions) > 0 {
		section()
		fmt.Fprintf(&b, "%s\n", s.bold("actions:"))
		for i := 0; i < len(r.Actions); i++ {
			a := r.Actions[i]
			if n := sameActions(r.Actions[i:]); !opts.All && n >= 3 {
				var ids []string
				for _, x := range r.Actions[i : i+n] {
					ids = append(ids, x.Finding)
				}
				fmt.Fprintf(&b, "  %s %s for %d findings: %s %s\n", s.outcome(actionOutcome(a)), a.Fixer, n,
					strings.Join(ids, ", "), s.faint("(--all lists each)"))
				i += n - 1
				continue
			}
			name := string(a.Fixer)
			if a.Finding != "" {
				name += " (" + a.Finding + ")"
			}
			fmt.Fprintf(&b, "  %s %s: %s\n", s.outcome(actionOutcome(a)), name, a.Summary)
			if len(a.Command) > 0 {
				fmt.Fprintf(&b, "    command: %s\n", strings.Join(a.Command, " "))
			}
			if a.Error != "" {
				fmt.Fprintf(&b, "    error: %s\n", a.Error)
			}
		}
	}

	if len(r.Explanations) > 0 {
		section()
		fmt.Fprintf(&b, "%s\n", s.bold("explanations:"))
		writeExplanations(&b, s, r.Explanations, "  ")
	}

	if c := r.Checkpoint; c != nil {
		section()
		writeCheckpoint(&b, s, c)
	}

	section()
	fmt.Fprintf(&b, "%s %s\n", s.bold("target:"), targetLine(r.Target))
	if len(r.Target.Sources) > 0 {
		fmt.Fprintf(&b, "%s %s\n", s.bold("sources:"), strings.Join(r.Target.Sources, ", "))
	}
	fmt.Fprintf(&b, "%s %s\n", s.bold("tally:"), tallyLine(r.Tally))
	writeVerdict(&b, s, r)
	return writeOut(w, b.Bytes())
}

func writeVerdict(b *bytes.Buffer, s textStyle, r *Report) {
	verdict := s.paint(r.Verdict, color.FgGreen, color.Bold)
	if r.Failed {
		verdict = s.paint(r.Verdict, color.FgRed, color.Bold)
	}
	fmt.Fprintf(b, "%s %s\n", s.bold("verdict:"), verdict)
}

func writeOut(w io.Writer, data []byte) error {
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// sameActions counts the actions at the head of as that the same fixer
// took with the same outcome, without an error or a command to show: a run
// of them is one line in the default text report.
func sameActions(as []Action) int {
	n := 0
	for _, a := range as {
		if a.Fixer != as[0].Fixer || a.Applied != as[0].Applied || a.Error != "" || len(a.Command) > 0 {
			break
		}
		n++
	}
	return n
}

// writeCounts sums up the passing findings fs in one line per category,
// in the order the categories first appear.
func writeCounts(b *bytes.Buffer, s textStyle, fs []Finding) {
	var order []string
	counts := map[string]int{}
	for _, f := range fs {
		if _, ok := counts[f.Category]; !ok {
			order = append(order, f.Category)
		}
		counts[f.Category]++
	}
	for _, cat := range order {
		name := cat
		if name == "" {
			name = "other"
		}
		fmt.Fprintf(b, "%s %s  %d passed %s\n", s.status(Pass), s.bold(name), counts[cat], s.faint("(--all lists them)"))
	}
}

func writeFinding(b *bytes.Buffer, s textStyle, f Finding) {
	line := fmt.Sprintf("%s %s  %s", s.status(f.Status), s.bold(f.ID), f.Summary)
	if f.Level != "" && f.Level != Required {
		line += " " + s.faint("["+string(f.Level)+"]")
	}
	b.WriteString(line + "\n")
	if f.Status == Pass {
		// A pass needs no proof on a terminal; -o json keeps its evidence.
		return
	}
	const ind = "      "
	for _, e := range f.Evidence {
		fmt.Fprintf(b, "%s%s\n", ind, e)
	}
	if f.Reason != "" {
		fmt.Fprintf(b, "%sreason: %s\n", ind, f.Reason)
	}
	if f.Fix == nil || f.Status == Skip {
		return
	}
	if f.Fix.Description != "" {
		fmt.Fprintf(b, "%s%s %s\n", ind, s.paint("fix:", color.FgCyan, color.Bold), f.Fix.Description)
	}
	if !f.Fix.CRIU.IsZero() {
		fmt.Fprintf(b, "%scriu options: %s\n", ind, f.Fix.CRIU.DumpLine())
	}
	if !f.Fix.Restore.IsZero() {
		fmt.Fprintf(b, "%srestore options: %s\n", ind, f.Fix.Restore.RestoreLine())
	}
	fmt.Fprintf(b, "%s%s\n", ind, autoFixLine(f.Fix))
}

func writeExplanations(b *bytes.Buffer, s textStyle, es []Explanation, ind string) {
	for _, e := range es {
		where := e.Source
		if e.Line > 0 {
			where = fmt.Sprintf("%s:%d", e.Source, e.Line)
		}
		sig := s.bold(e.Signature)
		if !e.Known {
			sig = s.paint(e.Label(), color.FgYellow, color.Bold)
		}
		fmt.Fprintf(b, "%s%s  %s\n", ind, where, sig)
		fmt.Fprintf(b, "%s  cause: %s\n", ind, e.Cause)
		if e.Fix != "" {
			fmt.Fprintf(b, "%s  %s %s\n", ind, s.paint("fix:", color.FgCyan, color.Bold), e.Fix)
		}
		for _, q := range e.Quote {
			fmt.Fprintf(b, "%s  %s\n", ind, s.faint("> "+q))
		}
	}
}

func writeCheckpoint(b *bytes.Buffer, s textStyle, c *Checkpoint) {
	head := "checkpoint: workload " + c.Workload
	if len(c.Command) > 0 {
		head += " (" + strings.Join(c.Command, " ") + ")"
	}
	fmt.Fprintf(b, "%s\n", s.bold(head))
	for _, row := range stageRows(c) {
		secs := fmt.Sprintf("%8s", "-")
		if row.Seconds > 0 {
			secs = fmt.Sprintf("%7.2fs", row.Seconds)
		}
		line := fmt.Sprintf("  %-8s %s %s", row.Name, s.outcome(row.Outcome), secs)
		if row.Detail != "" {
			line += "  " + row.Detail
		}
		b.WriteString(line + "\n")
	}
	if c.ImagesDir != "" || c.ImageBytes > 0 {
		images := c.ImagesDir
		if c.ImageBytes > 0 {
			images = joinNonEmpty(" ", images, "("+humanBytes(c.ImageBytes)+")")
		}
		fmt.Fprintf(b, "  images: %s\n", images)
	}
	if c.Timing != nil {
		fmt.Fprintf(b, "  timing: %s\n", c.Timing.Line())
	}
	if ci := c.Container; ci != nil {
		fmt.Fprintf(b, "  container: %s\n", ci.Summary())
	}
	for _, p := range c.Probes {
		outcome := "ok"
		if !p.Passed() {
			outcome = "failed"
		}
		line := fmt.Sprintf("  probe %-6s %s exit %d: %s", p.Phase, outcome, p.ExitCode, strings.Join(p.Args, " "))
		if p.Error != "" {
			line += ": " + p.Error
		} else if out := strings.TrimSpace(p.Output); out != "" {
			line += " -> " + excerpt.FirstLine(out)
		}
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(b, "  stage reached: %s\n", c.Stage)
	if c.PredictionMatched != nil {
		fmt.Fprintf(b, "  prediction matched CRIU: %s\n", boolWord(*c.PredictionMatched))
	}
	if c.WorkloadRunning != nil {
		fmt.Fprintf(b, "  workload still running after the failed dump: %s\n", boolWord(*c.WorkloadRunning))
	}
	if c.Error != "" {
		fmt.Fprintf(b, "  %s %s\n", s.paint("error:", color.FgRed, color.Bold), c.Error)
	}
	if len(c.InitOutput) > 0 {
		fmt.Fprintf(b, "  the init's last output:\n")
		for _, l := range c.InitOutput {
			fmt.Fprintf(b, "    | %s\n", l)
		}
	}
	if c.DumpLog != "" {
		fmt.Fprintf(b, "  CRIU's dump log: %s\n", c.DumpLog)
	}
	if len(c.Explanations) > 0 {
		fmt.Fprintf(b, "  explanations:\n")
		writeExplanations(b, s, c.Explanations, "    ")
	}
}
