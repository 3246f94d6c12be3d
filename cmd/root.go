// Package cmd holds the kata-cr command line: one constructor per command,
// each with its own options struct, and the single place that maps errors
// to exit codes.
package cmd

import (
	"io"
	"os"
	"slices"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kata-cr/kata-cr/reports"
)

// Version is set at build time with -ldflags "-X .../cmd.Version=...".
var Version = "dev"

// Deps is what commands need from the outside world.
type Deps struct {
	Stdout io.Writer
	Stderr io.Writer
	// IsTerminal reports whether w is a terminal.
	IsTerminal func(w io.Writer) bool
	// Getenv reads the environment (NO_COLOR, TERM).
	Getenv func(string) string
	// output is the --output-file being written, in place of Stdout.
	output *outputFile
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	Output string
	// OutputFile receives the report instead of stdout, atomically.
	OutputFile string
	Color      string
	// All lists every finding in text output; Quiet prints the verdict
	// only.
	All, Quiet bool
}

// Main runs kata-cr with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	deps := &Deps{Stdout: stdout, Stderr: stderr, IsTerminal: isTerminal, Getenv: os.Getenv}
	root := newRootCmd(deps)
	root.SetArgs(args)
	err := root.Execute()
	if deps.output != nil {
		err = deps.output.finish(err)
	}
	return exitCode(err, stderr)
}

func newRootCmd(deps *Deps) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "kata-cr",
		Short: "Check, checkpoint and restore containers inside Kata Containers guests with CRIU",
		Long: `kata-cr predicts and explains why CRIU fails inside Kata Containers guests,
fixes what it can, and checkpoints and restores workloads to prove it.

Exit codes: 0 nothing required failed, 1 tool error, 2 usage error,
3 a required check failed (a CRIU log shows an error, a checkpoint did not
succeed); kata-cr COMMAND --help says what each means for that command.`,
		Version:           Version,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error { return preRun(c, deps, g) },
	}
	root.SetOut(deps.Stdout)
	root.SetErr(deps.Stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&g.Output, "output", "o", "text", "output format: text, json, junit, markdown, prometheus (node_exporter textfile metrics)")
	pf.StringVar(&g.OutputFile, "output-file", "", "write the report to `FILE` instead of stdout: atomically (a temporary file renamed over it), mode 0644, and only when the command produced its report")
	pf.StringVar(&g.Color, "color", "auto", "colour: auto, always, never (NO_COLOR is honoured)")
	pf.BoolVar(&g.All, "all", false, "text output: list every finding (by default passes are counted per category)")
	pf.BoolVarP(&g.Quiet, "quiet", "q", false, "text output: print the verdict only")
	for _, c := range commandConstructors {
		root.AddCommand(c(deps, g))
	}
	return root
}

// preRun checks the flags every command shares, then points Stdout at
// --output-file when it is given.
func preRun(c *cobra.Command, deps *Deps, g *globalOptions) error {
	if err := emptyFlag(c); err != nil {
		return err
	}
	if g.OutputFile != "" {
		out, err := openOutputFile(g.OutputFile)
		if err != nil {
			return err
		}
		deps.output, deps.Stdout = out, out.tmp
	}
	return nil
}

// emptyFlag refuses a flag given with an empty value (--pid ”, --criu ”):
// it would otherwise read as the flag left out, silently.
func emptyFlag(c *cobra.Command) error {
	var err error
	c.Flags().Visit(func(f *pflag.Flag) {
		if err != nil {
			return
		}
		empty := f.Value.String() == ""
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			empty = slices.Contains(sv.GetSlice(), "")
		}
		if empty && f.Value.Type() != "bool" {
			err = usagef("--%s '': empty value: give a %s, or leave the flag out", f.Name, flagNoun(f))
		}
	})
	return err
}

// flagNoun is what a flag's value is, for the message: its usage's
// back-quoted name, else its type.
func flagNoun(f *pflag.Flag) string {
	if name, _ := pflag.UnquoteUsage(f); name != "" {
		return name
	}
	return f.Value.Type()
}

// commandConstructors lists the subcommands; each file adds its own.
var commandConstructors []func(*Deps, *globalOptions) *cobra.Command

// render prints r in the chosen format and returns errCheckFailed when a
// required finding failed.
func render(deps *Deps, g *globalOptions, r *reports.Report) error {
	r.Version = Version
	r.Finish()
	opts, err := renderOptions(deps, g)
	if err != nil {
		return err
	}
	if err := reports.Render(deps.Stdout, r, opts); err != nil {
		return err
	}
	if r.Failed {
		return errCheckFailed
	}
	return nil
}

// renderOptions decides the format and colour once.
func renderOptions(deps *Deps, g *globalOptions) (reports.Options, error) {
	f, err := reports.ParseFormat(g.Output)
	if err != nil {
		return reports.Options{}, usageError{err}
	}
	var color bool
	switch g.Color {
	case "always":
		color = true
	case "never":
		color = false
	case "auto":
		color = deps.Getenv("NO_COLOR") == "" && deps.Getenv("TERM") != "dumb" && deps.IsTerminal(deps.Stdout)
	default:
		return reports.Options{}, usagef("--color %q: use auto, always or never", g.Color)
	}
	if g.All && g.Quiet {
		return reports.Options{}, usagef("--all and --quiet both given: use one")
	}
	return reports.Options{Format: f, Color: color, All: g.All, Quiet: g.Quiet}, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}
