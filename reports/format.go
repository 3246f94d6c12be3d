package reports

import (
	"fmt"
	"strings"
)

// Helpers shared by the human renderers (text and Markdown), so that both
// say the same thing in the same words.

// stageOrder is the order of Checkpoint.Stage values.
var stageOrder = map[string]int{
	"preflight": 0, "fix": 1, "dump": 2, "copy": 3, "restore": 4, "verify": 5, "done": 6,
}

// reached reports whether the checkpoint got at least to stage.
func (c *Checkpoint) reached(stage string) bool {
	got, ok := stageOrder[c.Stage]
	if !ok {
		// An unknown stage name: trust the outcome fields instead.
		return c.DumpOK || c.RestoreRan
	}
	return got >= stageOrder[stage]
}

// stageRow is one line of the checkpoint table: dump, restore or verify.
type stageRow struct {
	Name    string
	Outcome string // "ok", "failed", "not run", "not requested"
	Seconds float64
	Detail  string
}

// stageRows turns a Checkpoint into the outcome of each stage.
func stageRows(c *Checkpoint) []stageRow {
	dump := stageRow{Name: "dump", Seconds: c.DumpSeconds, Detail: optionsDetail(c.DumpOptions)}
	switch {
	case c.DumpOK:
		dump.Outcome = "ok"
	case c.reached("dump"):
		dump.Outcome = "failed"
	default:
		dump.Outcome = "not run"
	}
	restore := stageRow{Name: "restore", Seconds: c.RestoreSeconds, Detail: optionsDetail(c.RestoreOptions)}
	switch {
	case c.RestoreRan && c.RestoreOK:
		restore.Outcome = "ok"
		if c.RestoredPID > 0 {
			restore.Detail = joinNonEmpty("; ", restore.Detail, fmt.Sprintf("restored pid %d", c.RestoredPID))
		}
	case c.RestoreRan:
		restore.Outcome = "failed"
	case c.WantRestore:
		restore.Outcome = "not run"
	default:
		restore.Outcome = "not requested"
	}
	verify := stageRow{Name: "verify", Detail: c.Verification}
	switch {
	case c.Verified:
		verify.Outcome = "ok"
	case c.RestoreOK:
		verify.Outcome = "failed"
	case c.WantRestore:
		verify.Outcome = "not run"
	default:
		verify.Outcome = "not requested"
	}
	return []stageRow{dump, restore, verify}
}

func optionsDetail(opts []string) string {
	if len(opts) == 0 {
		return ""
	}
	return "options: " + strings.Join(opts, " ")
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// humanBytes prints a size the way people read it: 64.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// targetLine describes where the checks ran in one line.
func targetLine(t Target) string {
	kind := t.Kind
	if kind == "" {
		kind = "unknown"
	}
	parts := []string{kind}
	if t.KernelRelease != "" {
		parts = append(parts, "kernel "+t.KernelRelease)
	}
	if t.CRIUVersion != "" {
		parts = append(parts, "CRIU "+t.CRIUVersion)
	}
	if t.Arch != "" {
		parts = append(parts, t.Arch)
	}
	if t.Accelerator != "" {
		acc := "accelerator " + t.Accelerator
		if t.AcceleratorReason != "" {
			acc += " (" + t.AcceleratorReason + ")"
		}
		parts = append(parts, acc)
	}
	return strings.Join(parts, ", ")
}

// tallyLine counts findings, worst first.
func tallyLine(t Tally) string {
	return fmt.Sprintf("%d fail, %d error, %d warn, %d skip, %d pass", t.Fail, t.Error, t.Warn, t.Skip, t.Pass)
}

// predictionLines says what a dump will do, one sentence per line.
func predictionLines(p *Prediction) (headline string, reasons []string, tail []string) {
	if p.DumpWillSucceed {
		headline = "a plain dump will succeed"
		if !p.CRIU.IsZero() {
			tail = append(tail, "recommended dump options: "+p.CRIU.DumpLine())
		}
	} else {
		headline = "a plain dump will fail because:"
		reasons = p.Reasons
		switch {
		case p.WithOptions && !p.CRIU.IsZero():
			tail = append(tail, "with options "+p.CRIU.DumpLine()+" it will succeed")
		default:
			tail = append(tail, "CRIU options alone will not make it succeed: apply the fixes above")
			if !p.CRIU.IsZero() {
				tail = append(tail, "it will also need options "+p.CRIU.DumpLine())
			}
		}
	}
	if !p.Restore.IsZero() {
		tail = append(tail, "restore options: "+p.Restore.RestoreLine())
	}
	if !p.DumpWillSucceed {
		tail = append(tail, "the process tree: "+yesNo(p.TreeDumpable, "dumpable (with the options above)", "not dumpable as it is"))
		tail = append(tail, "this machine: "+yesNo(p.EnvironmentReady, "ready for CRIU", "not ready for CRIU"))
	}
	return headline, reasons, tail
}

// actionOutcome is one word for what happened to an action.
func actionOutcome(a Action) string {
	switch {
	case a.Error != "":
		return "failed"
	case a.Applied:
		return "applied"
	default:
		return "planned"
	}
}

// autoFixLine says whether kata-cr can apply a fix itself.
func autoFixLine(f *Fix) string {
	if f.AutoFixable {
		if f.Fixer != "" {
			return "kata-cr can apply this fix (fixer " + string(f.Fixer) + ")"
		}
		return "kata-cr can apply this fix"
	}
	return "kata-cr cannot apply this fix: do it yourself"
}

// boolWord prints an optional yes/no.
func boolWord(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
