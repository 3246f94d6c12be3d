package reports

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// renderMarkdown writes r as a Markdown document for issues and pull
// requests: a findings table, then one section per part of the report.
func renderMarkdown(w io.Writer, r *Report) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# kata-cr %s\n\n", r.Command)
	fmt.Fprintf(&b, "**Verdict:** %s\n\n", mdText(r.Verdict))
	fmt.Fprintf(&b, "**Target:** %s\n\n", mdText(targetLine(r.Target)))
	if len(r.Target.Sources) > 0 {
		fmt.Fprintf(&b, "**Sources:** %s\n\n", mdCodeList(r.Target.Sources))
	}
	fmt.Fprintf(&b, "**Tally:** %s\n", tallyLine(r.Tally))

	if len(r.Findings) > 0 {
		b.WriteString("\n## Findings\n\n")
		b.WriteString("| Status | ID | Level | Summary | Fix | Auto |\n")
		b.WriteString("|---|---|---|---|---|---|\n")
		for _, f := range r.Findings {
			fix, auto := "", ""
			if f.Fix != nil && f.Status != Pass && f.Status != Skip {
				fix = mdCell(f.Fix.Description)
				if !f.Fix.CRIU.IsZero() {
					fix = joinNonEmpty("<br>", fix, mdCode(f.Fix.CRIU.DumpLine()))
				}
				auto = boolWord(f.Fix.AutoFixable)
			}
			summary := mdCell(f.Summary)
			if f.Status == Skip && f.Reason != "" {
				summary += "<br>skipped: " + mdCell(f.Reason)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n",
				mdStatus(f.Status), mdCode(f.ID), f.Level, summary, fix, auto)
		}
		writeMarkdownDetails(&b, r.Findings)
	}

	if p := r.Prediction; p != nil {
		b.WriteString("\n## Prediction\n\n")
		headline, reasons, tail := predictionLines(p)
		fmt.Fprintf(&b, "%s\n", mdText(upperFirst(headline)))
		if len(reasons) > 0 {
			b.WriteString("\n")
			for _, reason := range reasons {
				fmt.Fprintf(&b, "- %s\n", mdText(reason))
			}
		}
		for _, t := range tail {
			fmt.Fprintf(&b, "\n%s\n", mdText(upperFirst(t)))
		}
	}

	if len(r.Actions) > 0 {
		b.WriteString("\n## Actions\n\n")
		b.WriteString("| Result | Fixer | Finding | Summary | Command |\n")
		b.WriteString("|---|---|---|---|---|\n")
		for _, a := range r.Actions {
			summary := mdCell(a.Summary)
			if a.Error != "" {
				summary += "<br>error: " + mdCell(a.Error)
			}
			cmd := ""
			if len(a.Command) > 0 {
				cmd = mdCode(strings.Join(a.Command, " "))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n",
				actionOutcome(a), mdCode(string(a.Fixer)), mdCodeOrEmpty(a.Finding), summary, cmd)
		}
	}

	if len(r.Explanations) > 0 {
		b.WriteString("\n## Explanations\n")
		writeMarkdownExplanations(&b, r.Explanations, "###")
	}

	if c := r.Checkpoint; c != nil {
		b.WriteString("\n## Checkpoint\n\n")
		fmt.Fprintf(&b, "Workload %s", mdCode(c.Workload))
		if len(c.Command) > 0 {
			fmt.Fprintf(&b, " (%s)", mdCode(strings.Join(c.Command, " ")))
		}
		fmt.Fprintf(&b, ", stage reached: %s.\n\n", c.Stage)
		b.WriteString("| Stage | Result | Seconds | Details |\n")
		b.WriteString("|---|---|---|---|\n")
		for _, row := range stageRows(c) {
			secs := ""
			if row.Seconds > 0 {
				secs = fmt.Sprintf("%.2f", row.Seconds)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row.Name, row.Outcome, secs, mdCell(row.Detail))
		}
		var facts []string
		if c.ImagesDir != "" {
			facts = append(facts, "Images: "+mdCode(c.ImagesDir))
		}
		if c.ImageBytes > 0 {
			facts = append(facts, "Image size: "+humanBytes(c.ImageBytes))
		}
		if c.Timing != nil {
			facts = append(facts, "Timing: "+mdText(c.Timing.Line()))
		}
		if c.PredictionMatched != nil {
			facts = append(facts, "Prediction matched CRIU: "+boolWord(*c.PredictionMatched))
		}
		if c.WorkloadRunning != nil {
			facts = append(facts, "Workload still running after the failed dump: "+boolWord(*c.WorkloadRunning))
		}
		if c.Error != "" {
			facts = append(facts, "Error: "+mdText(c.Error))
		}
		if len(facts) > 0 {
			b.WriteString("\n")
			for _, f := range facts {
				fmt.Fprintf(&b, "- %s\n", f)
			}
		}
		if len(c.Explanations) > 0 {
			writeMarkdownExplanations(&b, c.Explanations, "###")
		}
	}

	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// writeMarkdownDetails lists evidence and reasons of the findings that are
// not passes; the table has no room for them.
func writeMarkdownDetails(b *bytes.Buffer, fs []Finding) {
	var started bool
	for _, f := range fs {
		if f.Status == Pass || (len(f.Evidence) == 0 && (f.Reason == "" || f.Status == Skip)) {
			continue
		}
		if !started {
			b.WriteString("\n### Details\n")
			started = true
		}
		fmt.Fprintf(b, "\n**%s** %s", mdCode(f.ID), mdStatus(f.Status))
		if f.Reason != "" && f.Status != Skip {
			fmt.Fprintf(b, ": %s", mdText(f.Reason))
		}
		b.WriteString("\n")
		if len(f.Evidence) > 0 {
			codeBlock(b, f.Evidence)
		}
		if f.Fix != nil && !f.Fix.Restore.IsZero() {
			fmt.Fprintf(b, "\nRestore options: %s\n", mdCode(f.Fix.Restore.RestoreLine()))
		}
	}
}

func writeMarkdownExplanations(b *bytes.Buffer, es []Explanation, heading string) {
	for _, e := range es {
		where := e.Source
		if e.Line > 0 {
			where = fmt.Sprintf("%s:%d", e.Source, e.Line)
		}
		sig := mdCode(e.Signature)
		if !e.Known {
			sig = mdText(e.Label())
		}
		fmt.Fprintf(b, "\n%s %s %s\n\n", heading, mdCode(where), sig)
		fmt.Fprintf(b, "**Cause:** %s\n", mdText(e.Cause))
		if e.Fix != "" {
			fmt.Fprintf(b, "\n**Fix:** %s\n", mdText(e.Fix))
		}
		if len(e.Quote) > 0 {
			codeBlock(b, e.Quote)
		}
	}
}

func mdStatus(s Status) string {
	switch s {
	case Fail, Error:
		return "**" + string(s) + "**"
	}
	return string(s)
}

// mdText escapes what Markdown would otherwise interpret in running text.
var mdEscaper = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "<", "&lt;", ">", "&gt;", "[", `\[`, "]", `\]`, "|", `\|`,
)

func mdText(s string) string { return mdEscaper.Replace(s) }

// mdCell is mdText for a table cell, which must stay on one line.
func mdCell(s string) string {
	return strings.ReplaceAll(mdText(s), "\n", "<br>")
}

// mdCode wraps s in a code span whose fence is longer than any run of
// backticks inside it. A pipe still ends a table cell inside a code span
// in GitHub's Markdown, so it is escaped.
func mdCode(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", `\|`)
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

func mdCodeOrEmpty(s string) string {
	if s == "" {
		return ""
	}
	return mdCode(s)
}

func mdCodeList(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = mdCode(s)
	}
	return strings.Join(out, ", ")
}

// codeBlock writes lines as a fenced block whose fence is longer than any
// run of backticks in them, so that no quoted line can close it early.
func codeBlock(b *bytes.Buffer, lines []string) {
	longest := 0
	for _, l := range lines {
		run := 0
		for _, r := range l {
			if r == '`' {
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
	}
	fence := strings.Repeat("`", max(3, longest+1))
	b.WriteString("\n" + fence + "text\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString(fence + "\n")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
