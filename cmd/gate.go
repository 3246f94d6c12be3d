package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kata-cr/kata-cr/corpus"
	"github.com/kata-cr/kata-cr/gate"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

func init() { commandConstructors = append(commandConstructors, newGateCmd) }

// gateOptions are the gate command's flags.
type gateOptions struct {
	Matrix string
	// Check only checks the matrix (--check).
	Check    bool
	Jobs     int
	FailFast bool
	Dir      string
	// Baseline is a previous JSON result to compare with; WriteBaseline
	// where to save this run's.
	Baseline, WriteBaseline string
	TimeFactor              float64
	TimeSlack               time.Duration
	// JUnit, JSON and Markdown are files the result is also written to;
	// the Markdown is appended ($GITHUB_STEP_SUMMARY).
	JUnit, JSON, Markdown string
	Accel                 string
	Verbose               bool
}

func newGateCmd(deps *Deps, g *globalOptions) *cobra.Command {
	o := &gateOptions{}
	c := &cobra.Command{
		Use:   "gate",
		Short: "The CI gate: run the corpus (or your workloads) over a matrix of guest kernels x CRIU builds, compare with a baseline",
		Long: `gate runs a matrix of cells, each a guest kernel and a CRIU build, and in each
cell checkpoints every workload the way kata-cr corpus does: raw CRIU judges
each prediction (a dump with no options, the planned dump, the plan less each
option), then every checkpoint is restored in a fresh guest and verified.

--matrix FILE is a TOML file of [[kernel]]s (a Debian series, an image with its
config and modules, or the kernel Kata's configuration.toml names), [[criu]]s
(the host's, a Debian suite's, a rootfs tar's), [[workload]]s (corpus entries,
or commands with the files they need) with what each expects (restore,
unfixable, judged), [options] (auto_fix, runtime_setsid, time_limit) and
optionally the [[cell]]s to run (else every kernel with every CRIU). Without
--matrix the default matrix runs the whole corpus in the cells of
kata-cr corpus --list-cells. A mistake in the file is one line naming the file,
the line and the key, before anything boots.

Cells run in parallel (-j; the default is one per core, as memory
allows) and share cached kernels, CRIU rootfs and guest images; a cell that
fails does not stop the others (--fail-fast does); Ctrl-C stops every guest.
On a terminal each cell prints one line on stderr when it finishes.

The result is a table (rows workloads, columns cells) with each cell's
prediction accuracy against CRIU and its dump and restore times; -o json
(versioned), junit (one testsuite per cell, one testcase per workload) and
markdown print the same. --junit, --json and --markdown FILE write them too
(--markdown appends: give it $GITHUB_STEP_SUMMARY).

--baseline FILE compares with an earlier --write-baseline (or -o json) result:
a regression is a workload that was restored and verified and is not, a
prediction that agreed with CRIU and does not, a workload that passed and
does not, a dump or restore more than --time-factor times slower than before
plus --time-slack, or a new workload that does not pass. Improvements are
listed too.

Exit codes:
  0  every cell ran and every workload met its expectation; with --baseline:
     no regression
  1  a cell could not run (a guest failed, a kernel is not cached) and nothing
     failed or regressed, or the gate was interrupted
  2  usage: a bad flag, or a bad matrix file (before anything boots)
  3  without --baseline: a workload missed its expectation or a prediction
     disagreed with CRIU; with --baseline: a regression (only)`,
		Example: `  kata-cr gate
  kata-cr gate --matrix gate.toml -j 2 --junit gate.xml --markdown "$GITHUB_STEP_SUMMARY"
  kata-cr gate --matrix gate.toml --write-baseline baseline.json
  kata-cr gate --matrix gate.toml --baseline baseline.json
  kata-cr gate --matrix gate.toml --check`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runGate(c.Context(), deps, g, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Matrix, "matrix", "", "the matrix `FILE` (TOML); default: the corpus in the cells of kata-cr corpus --list-cells")
	f.BoolVar(&o.Check, "check", false, "check the matrix file and the cells' inputs, print the cells and exit")
	f.IntVarP(&o.Jobs, "jobs", "j", 0, "run `N` cells at once (default: one per core, as memory allows)")
	f.BoolVar(&o.FailFast, "fail-fast", false, "stop the other cells once one does not pass")
	f.StringVar(&o.Dir, "dir", "", "keep the cells' checkpoints and reports in this new `DIR` (default: a new directory under kata-cr's cache)")
	f.StringVar(&o.Baseline, "baseline", "", "compare with this earlier JSON result `FILE`: exit 3 only on a regression")
	f.StringVar(&o.WriteBaseline, "write-baseline", "", "write this run's JSON result to `FILE`, a baseline for later runs")
	f.Float64Var(&o.TimeFactor, "time-factor", gate.DefaultTolerance.Factor, "with --baseline, a dump or restore slower than this many times the baseline's (plus --time-slack) is a regression")
	f.DurationVar(&o.TimeSlack, "time-slack", time.Duration(gate.DefaultTolerance.SlackSeconds*float64(time.Second)), "with --baseline, the time a dump or restore may take beyond --time-factor")
	f.StringVar(&o.JUnit, "junit", "", "also write the result as JUnit XML to `FILE`")
	f.StringVar(&o.JSON, "json", "", "also write the result as JSON to `FILE`")
	f.StringVar(&o.Markdown, "markdown", "", "also append the result as Markdown to `FILE` (such as $GITHUB_STEP_SUMMARY)")
	f.StringVar(&o.Accel, "accel", "", "accelerator: auto (the default), kvm or tcg")
	f.BoolVarP(&o.Verbose, "verbose", "v", false, "print every cell's progress (prefixed with the cell) on stderr")
	return c
}

// gateCell is a cell ready to run: the guest to build and boot.
type gateCell struct {
	cell  gate.Cell
	guest guestOptions
}

// loadMatrix reads the matrix (or the default) and checks every cell's
// inputs: nothing boots or builds.
func (o *gateOptions) loadMatrix() (*gate.Matrix, []gateCell, error) {
	m := gate.Default()
	if o.Matrix != "" {
		var err error
		if m, err = gate.Load(o.Matrix); err != nil {
			return nil, nil, usageError{err}
		}
	}
	var cells []gateCell
	for _, c := range m.Cells {
		gc, err := o.cellGuest(m, c)
		if err != nil {
			return nil, nil, err
		}
		cells = append(cells, gc)
	}
	return m, cells, nil
}

// matrixError is a mistake found in the matrix beyond its syntax (a
// command not in the guest image): usage, naming the file and line.
func matrixError(m *gate.Matrix, line int, key string, err error) error {
	var u usageError
	if errors.As(err, &u) {
		err = u.err
	}
	file := m.File
	if file == "" {
		file = "the default matrix"
	}
	return usageError{&gate.MatrixError{File: file, Line: line, Key: key, Msg: err.Error()}}
}

// cellGuest is the guest of a cell: its kernel, its CRIU and the files
// its workloads need in the image.
func (o *gateOptions) cellGuest(m *gate.Matrix, c gate.Cell) (gateCell, error) {
	g := guestOptions{Accel: o.Accel, Verbose: o.Verbose, Timeout: c.Options.TimeLimit, MemoryMB: corpusMemoryMB}
	k := c.Kernel
	switch {
	case k.Debian != "":
		g.KernelVersion = k.Debian
	case k.Built != "":
		g.KernelVersion = k.Built
	case k.Image != "":
		g.Kernel, g.KernelConfig, g.Modules = k.Image, k.Config, k.Modules
	default:
		// The kernel Kata's configuration names, with the config and
		// modules found beside it, booted as a kernel given by path.
		kg, err := kernel.Find(kernel.FindOptions{KataConfigPaths: []string{k.KataConfig}})
		if err != nil {
			return gateCell{}, matrixError(m, c.Line, "kernel.kata_config", err)
		}
		g.Kernel, g.KernelConfig, g.Modules = kg.Image, kg.Config, kg.ModulesDir
	}
	switch cr := c.CRIU; {
	case cr.Suite != "":
		g.CRIUSuite = cr.Suite
	case cr.Rootfs != "":
		g.Rootfs = cr.Rootfs
	case cr.Binary != "":
		g.CRIUPath = cr.Binary
	}
	for _, e := range c.Entries() {
		for _, inc := range e.Include {
			if !g.includes(inc) {
				if err := g.Include.Set(inc); err != nil {
					return gateCell{}, matrixError(m, workloadLine(c, e.Name), "workload.include", err)
				}
			}
		}
	}
	for _, e := range c.Entries() {
		if e.Bundle != nil {
			// Its rootfs is shared with the guest, not in the image.
			continue
		}
		if len(e.Command) > 0 {
			co := checkpointOptions{guest: g}
			if err := co.checkCommandInImage(e.Command[0]); err != nil {
				return gateCell{}, matrixError(m, workloadLine(c, e.Name), "workload.command", err)
			}
			continue
		}
		w, err := container.Lookup(e.Workload)
		if err != nil {
			return gateCell{}, matrixError(m, workloadLine(c, e.Name), "workload.corpus", err)
		}
		if err := g.includeWorkload(w); err != nil {
			return gateCell{}, err
		}
	}
	if err := g.validate(); err != nil {
		return gateCell{}, matrixError(m, c.Line, "cell "+c.Name, err)
	}
	return gateCell{cell: c, guest: g}, nil
}

func workloadLine(c gate.Cell, name string) int {
	for _, w := range c.Workloads {
		if w.Name == name {
			return w.Line
		}
	}
	return c.Line
}

func (o *gateOptions) validate() error {
	if o.Jobs < 0 {
		return usagef("-j %d: give a positive number of cells to run at once, or leave -j out", o.Jobs)
	}
	if o.TimeFactor < 1 {
		return usagef("--time-factor %g: give 1 or more", o.TimeFactor)
	}
	if o.TimeSlack < 0 {
		return usagef("--time-slack %s: give 0 or more", o.TimeSlack)
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(kernel.CacheDir(), "gate", time.Now().UTC().Format("20060102-150405.000"))
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return usagef("--dir %s: %v", o.Dir, err)
	}
	o.Dir = abs
	return checkDirWritable("--dir", abs)
}

func runGate(ctx context.Context, deps *Deps, g *globalOptions, o *gateOptions) error {
	ropts, err := renderOptions(deps, g)
	if err != nil {
		return err
	}
	if ropts.Format == reports.Prometheus {
		return usagef("-o prometheus: the gate writes text, json, junit or markdown")
	}
	if err := o.validate(); err != nil {
		return err
	}
	m, cells, err := o.loadMatrix()
	if err != nil {
		return err
	}
	var base *gate.Result
	if o.Baseline != "" {
		if base, err = gate.LoadBaseline(o.Baseline); err != nil {
			return usagef("--baseline: %v", err)
		}
	}
	if o.Check {
		for _, gc := range cells {
			fmt.Fprintf(deps.Stdout, "%-24s kernel %s (%s), CRIU %s (%s), %d workloads, time limit %s\n", gc.cell.Name,
				gc.cell.Kernel.Name, gc.cell.Kernel.Source(), gc.cell.CRIU.Name, gc.cell.CRIU.Source(), len(gc.cell.Workloads), gc.cell.Options.TimeLimit)
		}
		return nil
	}
	if o.Jobs == 0 {
		o.Jobs = gate.DefaultJobs(corpusMemoryMB)
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	guests := map[string]guestOptions{}
	for _, gc := range cells {
		guests[gc.cell.Name] = gc.guest
	}
	term := deps.IsTerminal(deps.Stderr)
	var errMu sync.Mutex
	start := time.Now()
	results := gate.Run(ctx, m, func(ctx context.Context, c gate.Cell, dir string) (*corpus.Result, error) {
		gopt := guests[c.Name]
		return runGateCell(ctx, deps, &errMu, c, gopt, dir, start)
	}, gate.RunOptions{Jobs: o.Jobs, FailFast: o.FailFast, Dir: o.Dir, Done: func(cr gate.CellResult) {
		if term || o.Verbose {
			errMu.Lock()
			fmt.Fprintf(deps.Stderr, "kata-cr: [%6.1fs] %s\n", time.Since(start).Seconds(), gate.CellLine(cr))
			errMu.Unlock()
		}
	}})
	res := &gate.Result{SchemaVersion: gate.SchemaVersion, KataCRVersion: Version, Matrix: "default", Jobs: o.Jobs,
		Seconds: time.Since(start).Seconds(), Cells: results}
	if o.Matrix != "" {
		res.Matrix = o.Matrix
	}
	if base != nil {
		res.Baseline = gate.Compare(base, res, gate.Tolerance{Factor: o.TimeFactor, SlackSeconds: o.TimeSlack.Seconds()}, o.Baseline)
	}
	if err := o.writeFiles(res); err != nil {
		return err
	}
	if err := writeGate(deps.Stdout, ropts.Format, res); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errors.New("interrupted: every cell's guest was stopped")
	}
	return gateExit(res)
}

// gateExit is the gate's exit: 3 on a regression (with a baseline) or a
// failed workload (without), 1 when a cell could not run.
func gateExit(res *gate.Result) error {
	if res.Baseline != nil {
		if len(res.Baseline.Regressions) > 0 {
			return errCheckFailed
		}
	} else {
		for _, c := range res.Cells {
			if c.Error == "" && c.Status != gate.Pass {
				return errCheckFailed
			}
		}
	}
	for _, c := range res.Cells {
		if c.Error != "" {
			return fmt.Errorf("cell %s could not run: %s", c.Name, c.Error)
		}
	}
	return nil
}

// runGateCell builds the cell's guest and runs the corpus in it.
func runGateCell(ctx context.Context, deps *Deps, errMu *sync.Mutex, c gate.Cell, gopt guestOptions, dir string, start time.Time) (*corpus.Result, error) {
	p := &progress{w: &prefixWriter{w: deps.Stderr, mu: errMu, prefix: "[" + c.Name + "] "}, on: gopt.Verbose, verbose: gopt.Verbose, start: start}
	gst, err := prepareGuest(ctx, &gopt, p)
	if err != nil {
		return nil, err
	}
	entries := c.Entries()
	for _, e := range entries {
		if e.Bundle != nil {
			gst.shares = append(gst.shares, vm.Share{Tag: e.RootfsTag, Path: e.Bundle.Rootfs, ReadOnly: true})
		}
	}
	b := &corpusBooter{gst: gst, o: &gopt, p: p}
	res, err := corpus.Run(ctx, b, corpus.Options{Entries: entries, Dir: dir, Version: Version, Verbose: gopt.Verbose,
		Event: p.event, NoFix: !c.Options.AutoFix})
	if err != nil {
		return nil, guestRunError(err, gopt.Timeout)
	}
	res.Cell.Accelerator, res.Cell.Spec = gst.accel.Name, c.Name
	return res, nil
}

// prefixWriter writes each line of a cell's progress with the cell's name,
// one write at a time among the cells.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if len(l) > 0 {
			out.WriteString(p.prefix)
			out.Write(l)
		}
	}
	if _, err := p.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}

func writeGate(w io.Writer, f reports.Format, res *gate.Result) error {
	switch f {
	case reports.JSON:
		return gate.WriteJSON(w, res)
	case reports.JUnit:
		return gate.WriteJUnit(w, res)
	case reports.Markdown:
		return gate.WriteMarkdown(w, res)
	}
	return gate.WriteText(w, res)
}

// writeFiles writes --write-baseline, --json, --junit and --markdown.
func (o *gateOptions) writeFiles(res *gate.Result) error {
	for _, f := range []struct {
		path   string
		format reports.Format
		append bool
	}{{o.WriteBaseline, reports.JSON, false}, {o.JSON, reports.JSON, false}, {o.JUnit, reports.JUnit, false}, {o.Markdown, reports.Markdown, true}} {
		if f.path == "" {
			continue
		}
		var buf bytes.Buffer
		if err := writeGate(&buf, f.format, res); err != nil {
			return err
		}
		flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if f.append {
			flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		fh, err := os.OpenFile(f.path, flags, 0o644)
		if err != nil {
			return fmt.Errorf("write the result: %w", err)
		}
		_, werr := fh.Write(buf.Bytes())
		if cerr := fh.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("write the result to %s: %w", f.path, werr)
		}
	}
	return nil
}
