package corpus

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/kata-cr/kata-cr/checks"
)

// WriteMarkdown writes the cell's truth table: per entry, what kata-cr
// predicted and what raw CRIU did with no options, the fix, the same with
// the fix, CRIU's answer without each option of the fix, and the
// outcome. It holds no timings, so that it regenerates byte for byte.
func WriteMarkdown(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", r.Cell.Name())
	fmt.Fprintf(&b, "%d workloads: %d restored and verified, %d unfixable (predicted, left running), %d wrong, %d not judged; %d disagreements, %d unknown causes.\n\n",
		r.Counts.Entries, r.Counts.Restored, r.Counts.Unfixable, r.Counts.Wrong, r.Counts.Error, r.Counts.Disagreements, r.Counts.Unknown)
	b.WriteString("| workload | no options: predicted / CRIU | fix | with the fix: predicted / CRIU | CRIU without each option | outcome |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, e := range r.Entries {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", e.Name, cellOutcome(e.Plain), mdList(codeWords(fixWords(e.Fix))),
			cellOutcome(e.Planned), mdList(withoutWords(e.Without)), outcome(e))
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText writes the cell's result for a terminal: one line per entry,
// then the disagreements and the counts.
func WriteText(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "corpus on %s\n\n", r.Cell.Name())
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tNO OPTIONS\tWITH THE FIX\tWITHOUT EACH\tOUTCOME")
	for _, e := range r.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, cellOutcome(e.Plain), cellOutcome(e.Planned), confirmed(e.Without), outcome(e))
	}
	_ = tw.Flush()
	for _, e := range r.Entries {
		for _, d := range e.Disagreements {
			fmt.Fprintf(&b, "\nDISAGREE  %s: %s", e.Name, d)
		}
		for _, u := range e.Unknown {
			fmt.Fprintf(&b, "\nUNKNOWN   %s: %s", e.Name, u)
		}
		if e.Verdict == VerdictError {
			fmt.Fprintf(&b, "\nERROR     %s: %s", e.Name, e.Detail)
		}
	}
	c := r.Counts
	fmt.Fprintf(&b, "\n%d workloads: %d restored and verified, %d unfixable, %d wrong, %d not judged; %d disagreements, %d unknown; checkpoint guest %.0fs, restore guest %.0fs\n",
		c.Entries, c.Restored, c.Unfixable, c.Wrong, c.Error, c.Disagreements, c.Unknown, r.CheckpointSeconds, r.RestoreSeconds)
	_, err := io.WriteString(w, b.String())
	return err
}

func cellOutcome(o Outcome) string {
	s := o.Predicted + " / " + o.CRIU
	if o.Signature != "" {
		s += " (" + o.Signature + ")"
	}
	return s
}

func outcome(e EntryResult) string {
	switch e.Verdict {
	case VerdictRestored:
		return "restored, verified"
	case VerdictUnfixable:
		if len(e.Refused) > 0 {
			return "unfixable: refused " + strings.Join(e.Refused, "; ") + ", left running"
		}
		return "unfixable: left running"
	case VerdictWrong:
		return fmt.Sprintf("WRONG: %d disagreements, %d unknown", len(e.Disagreements), len(e.Unknown))
	}
	return "NOT JUDGED: " + e.Detail
}

// sandboxBind is how every entry's fix declares the sandbox's /etc files:
// the table folds them into one word.
const sandboxBind = "--external mnt[/etc/"

// maskedDir reports whether w ("--external mnt[PATH]:KEY") declares a
// masked directory external: a speed-up every entry's plan has
// (mount.masked-dirs), not a fix, so the table leaves it out.
func maskedDir(w string) bool {
	v, ok := strings.CutPrefix(w, "--external mnt[")
	if !ok {
		return false
	}
	_, key, ok := strings.Cut(v, "]:")
	return ok && checks.IsMaskedKey(key)
}

// fixWords are the fix's options, each option with its value, the
// sandbox's three binds folded into one and the masked directories left
// out.
func fixWords(fix []string) []string {
	var out []string
	binds := 0
	for i := 0; i < len(fix); i++ {
		w := fix[i]
		if strings.HasPrefix(w, "--") && i+1 < len(fix) && !strings.HasPrefix(fix[i+1], "--") {
			w += " " + fix[i+1]
			i++
		}
		if strings.HasPrefix(w, sandboxBind) {
			binds++
			continue
		}
		if maskedDir(w) {
			continue
		}
		out = append(out, w)
	}
	if binds > 0 {
		out = append(out, fmt.Sprintf("the sandbox's %d binds external", binds))
	}
	return out
}

func withoutWords(ws []Without) []string {
	var out []string
	binds, bindsOK := 0, 0
	for _, w := range ws {
		if strings.HasPrefix(w.Options, sandboxBind) {
			binds++
			if w.Confirmed {
				bindsOK++
			}
			continue
		}
		what := "`" + w.Options + "`"
		if !strings.HasPrefix(w.Options, "--") {
			// A refused dump's proof: CRIU let loose on the tree.
			what = "dumping anyway"
		}
		mark := "fails on " + orNone(w.Signature)
		switch {
		case !w.Confirmed:
			mark = "NOT CONFIRMED (" + failedOn(w.Failed, w.Signature) + ")"
		case w.Hung:
			mark = "hangs, killed at kata-cr's limit"
		}
		out = append(out, what+": "+mark)
	}
	if binds > 0 {
		out = append(out, fmt.Sprintf("each sandbox bind: %d of %d fail as predicted", bindsOK, binds))
	}
	return out
}

func confirmed(ws []Without) string {
	if len(ws) == 0 {
		return "-"
	}
	n := 0
	for _, w := range ws {
		if w.Confirmed {
			n++
		}
	}
	return fmt.Sprintf("%d/%d confirmed", n, len(ws))
}

// codeWords marks the options among words as code.
func codeWords(words []string) []string {
	for i, w := range words {
		if strings.HasPrefix(w, "--") {
			words[i] = "`" + w + "`"
		}
	}
	return words
}

func mdList(words []string) string {
	if len(words) == 0 {
		return "-"
	}
	return strings.Join(words, "<br>")
}
