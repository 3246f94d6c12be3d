package cmd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kata-cr/kata-cr/criulog"
	"github.com/kata-cr/kata-cr/internal/safefile"
	"github.com/kata-cr/kata-cr/reports"
)

func init() { commandConstructors = append(commandConstructors, newExplainCmd) }

// explainOptions are the arguments of kata-cr explain.
type explainOptions struct {
	// Logs are paths of CRIU logs; "-" is standard input.
	Logs []string
}

func newExplainCmd(deps *Deps, g *globalOptions) *cobra.Command {
	o := &explainOptions{}
	return &cobra.Command{
		Use:   "explain LOG...",
		Short: "Explain the errors in CRIU dump, restore and check logs",
		Long: `explain reads CRIU dump, restore and check logs (with or without CRIU's
timestamps; - reads standard input), finds the error lines that matter and
maps each to its cause and fix, quoting it with the lines before it.
Follow-on lines such as "Dumping FAILED." are not counted as causes.

Exit codes: 0 the logs show no error, 3 they show a failure, 1 a log could
not be read.`,
		Example: `  kata-cr explain /tmp/criu/dump.log
  criu check 2>&1 | kata-cr explain -
  kata-cr explain -o json restore.log`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.Logs = args
			return runExplain(deps, g, o, c.InOrStdin())
		},
	}
}

func runExplain(deps *Deps, g *globalOptions, o *explainOptions, stdin io.Reader) error {
	if n := slices.Index(o.Logs, "-"); n >= 0 && slices.Contains(o.Logs[n+1:], "-") {
		return usagef("- (standard input) given more than once: it can be read only once")
	}
	// A bad -o or --color is a usage error even when a log is unreadable.
	if _, err := renderOptions(deps, g); err != nil {
		return err
	}
	r := reports.New("explain", Version)
	r.Target = reports.Target{Kind: "file"}
	var failed, unknown int
	for _, path := range o.Logs {
		name := path
		if path == "-" {
			name = "stdin"
		}
		es, size, err := readLog(path, stdin)
		if err != nil {
			return err
		}
		r.Target.Sources = append(r.Target.Sources, name)
		r.Explanations = append(r.Explanations, es...)
		r.Findings = append(r.Findings, logFinding(name, size, es))
		if len(es) > 0 {
			failed++
		}
		for _, e := range es {
			if !e.Known {
				unknown++
			}
		}
	}
	switch {
	case failed == 0:
		r.Verdict = fmt.Sprintf("no CRIU error in %s", plural(len(o.Logs), "log"))
	case unknown > 0:
		r.Verdict = fmt.Sprintf("CRIU failed in %d of %s: %s explained, %d unknown",
			failed, plural(len(o.Logs), "log"), plural(len(r.Explanations)-unknown, "cause"), unknown)
	default:
		r.Verdict = fmt.Sprintf("CRIU failed in %d of %s: %s explained",
			failed, plural(len(o.Logs), "log"), plural(len(r.Explanations), "cause"))
	}
	return render(deps, g, r)
}

// readLog explains one log and returns its size, so that an empty log can
// be told apart from a clean one.
func readLog(path string, stdin io.Reader) ([]reports.Explanation, int64, error) {
	name, in := "stdin", stdin
	if path != "-" {
		f, err := safefile.Open(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			if errors.Is(err, safefile.ErrNotRegular) {
				return nil, 0, fmt.Errorf("read CRIU log: %w (give the log file criu wrote with --log-file, or - for stdin)", err)
			}
			return nil, 0, fmt.Errorf("read CRIU log %s: %w (give the log criu wrote with --log-file, or - for stdin)", path, err)
		}
		defer f.Close()
		name, in = path, f
	}
	cr := &countingReader{r: in}
	es, err := criulog.Explain(name, cr)
	if err != nil {
		return nil, 0, err
	}
	return es, cr.n, nil
}

// logFinding sums up one log, so that the report's findings, tallies and
// exit code say whether that log shows a failure.
func logFinding(name string, size int64, es []reports.Explanation) reports.Finding {
	f := reports.Finding{ID: "criu-log", Category: "criu-log", Level: reports.Required}
	if len(es) == 0 {
		f.Status = reports.Pass
		f.Summary = name + ": no CRIU error lines"
		if size == 0 {
			f.Summary = name + ": empty log, no CRIU error lines"
		}
		return f
	}
	f.Status = reports.Fail
	var labels []string
	for _, e := range es {
		labels = append(labels, e.Label())
		ev := fmt.Sprintf("line %d: %s", e.Line, e.Label())
		if !e.Known && len(e.Quote) > 0 {
			// The signature alone says nothing here: show the line itself.
			ev += ": " + e.Quote[len(e.Quote)-1]
		}
		f.Evidence = append(f.Evidence, ev)
	}
	f.Summary = name + ": CRIU failed: " + strings.Join(labels, ", ")
	return f
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
