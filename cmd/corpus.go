package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kata-cr/kata-cr/corpus"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

func init() { commandConstructors = append(commandConstructors, newCorpusCmd) }

// corpusOptions are the corpus command's flags.
type corpusOptions struct {
	// Only names the entries to run (--only), all when empty.
	Only []string
	List bool
	// Cell picks the kernel and CRIU of a truth-table cell (--cell).
	Cell      string
	ListCells bool
	// Dir keeps the checkpoints (--dir); a new directory under the cache
	// when empty.
	Dir   string
	guest guestOptions
}

// Corpus guests run many workloads each: they get more time and memory
// than one checkpoint's.
const (
	corpusTimeout  = 30 * time.Minute
	corpusMemoryMB = 2048
)

func newCorpusCmd(deps *Deps, g *globalOptions) *cobra.Command {
	return newCorpusCmdWith(deps, g, nil)
}

// newCorpusCmdWith builds the command; a non-nil runF replaces the run.
func newCorpusCmdWith(deps *Deps, g *globalOptions, runF func(context.Context, *corpusOptions) error) *cobra.Command {
	o := &corpusOptions{}
	c := &cobra.Command{
		Use:   "corpus",
		Short: "Run the workload corpus in one guest cell with raw CRIU as the judge of every prediction",
		Long: `corpus starts every workload of kata-cr's corpus in one guest (a kernel and a
CRIU: --kernel-version, --criu-suite), each as a container the way Kata's agent
starts it, and lets raw CRIU judge kata-cr's predictions for each: a dump with
no options, the dump with the planned options, and the plan less each option
(all but the planned dump with --leave-running). Every checkpoint is then
restored in one fresh guest and verified by the workload's own probe.

The result is the cell's truth table (-o markdown is the form the README shows;
-o json is versioned). Exit codes: 0 every entry agreed with CRIU and was
restored and verified or predicted unfixable and left running; 3 an entry
disagreed, failed on a cause kata-cr does not know, or could not be judged;
1 a guest or the host failed; 2 usage.`,
		Example: `  kata-cr corpus
  kata-cr corpus --kernel-version 7.3 --criu-suite forky -o markdown
  kata-cr corpus --only tcp-established,vfork -o json
  kata-cr corpus --list`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(c.Context(), o)
			}
			return runCorpus(c.Context(), deps, g, o)
		},
	}
	f := c.Flags()
	f.StringSliceVar(&o.Only, "only", nil, "run only these `ENTRIES` (comma-separated names; --list lists them)")
	f.BoolVar(&o.List, "list", false, "list the corpus's entries and exit")
	f.StringVar(&o.Cell, "cell", "", "run in the guest of this truth-table `CELL` (its kernel version and CRIU suite; --list-cells lists them)")
	f.BoolVar(&o.ListCells, "list-cells", false, "list the truth table's cells and exit")
	f.StringVar(&o.Dir, "dir", "", "keep the checkpoints in this new `DIR` (default: a new directory under kata-cr's cache)")
	o.guest.addFlags(f, true)
	return c
}

// validate checks what can be checked before a guest boots and fills in
// the defaults; it adds the entries' binaries (nginx, redis-server) to
// the image.
func (o *corpusOptions) validate() ([]corpus.Entry, error) {
	if o.Cell != "" {
		if o.guest.KernelVersion != "" || o.guest.CRIUSuite != "" || o.guest.Kernel != "" || o.guest.Rootfs != "" {
			return nil, usagef("--cell %s and a kernel or CRIU flag both given: use one", o.Cell)
		}
		c, err := corpus.LookupCell(o.Cell)
		if err != nil {
			return nil, usagef("--cell: %v", err)
		}
		o.guest.KernelVersion, o.guest.CRIUSuite = c.KernelVersion, c.CRIUSuite
	}
	entries, err := corpus.Select(o.Only)
	if err != nil {
		return nil, usageError{err}
	}
	if err := corpus.Check(entries); err != nil {
		return nil, err
	}
	for _, e := range entries {
		w, err := container.Lookup(e.Workload)
		if err != nil {
			return nil, err
		}
		if err := o.guest.includeWorkload(w); err != nil {
			return nil, err
		}
	}
	if o.guest.Timeout == 0 {
		o.guest.Timeout = corpusTimeout
	}
	if o.guest.MemoryMB == 0 {
		o.guest.MemoryMB = corpusMemoryMB
	}
	if err := o.guest.validate(); err != nil {
		return nil, err
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(kernel.CacheDir(), "corpus", time.Now().UTC().Format("20060102-150405.000"))
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, usagef("--dir %s: %v", o.Dir, err)
	}
	o.Dir = abs
	if err := checkDirWritable("--dir", abs); err != nil {
		return nil, err
	}
	return entries, nil
}

func runCorpus(ctx context.Context, deps *Deps, g *globalOptions, o *corpusOptions) error {
	opts, err := renderOptions(deps, g)
	if err != nil {
		return err
	}
	if opts.Format == reports.JUnit || opts.Format == reports.Prometheus {
		return usagef("-o %s: the corpus writes text, json or markdown", opts.Format)
	}
	switch {
	case o.List:
		for _, e := range corpus.Entries {
			fmt.Fprintf(deps.Stdout, "%-24s %s\n", e.Name, e.Covers)
		}
		return nil
	case o.ListCells:
		for _, c := range corpus.Cells {
			fmt.Fprintf(deps.Stdout, "%-14s %s\n", c.Name, c.Description)
		}
		return nil
	}
	entries, err := o.validate()
	if err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	p := newProgress(deps, o.guest.Verbose)
	gst, err := prepareGuest(ctx, &o.guest, p)
	if err != nil {
		return err
	}
	b := &corpusBooter{gst: gst, o: &o.guest, p: p}
	res, err := corpus.Run(ctx, b, corpus.Options{Entries: entries, Dir: o.Dir, Version: Version, Verbose: o.guest.Verbose, Event: p.event})
	if err != nil {
		reportGuestError(deps, err)
		return guestRunError(err, o.guest.Timeout)
	}
	res.Cell.Accelerator, res.Cell.Spec = gst.accel.Name, o.Cell
	if err := writeCorpus(deps, opts.Format, res); err != nil {
		return err
	}
	if !res.OK() {
		return errCheckFailed
	}
	return nil
}

func writeCorpus(deps *Deps, f reports.Format, res *corpus.Result) error {
	switch f {
	case reports.JSON:
		enc := json.NewEncoder(deps.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	case reports.Markdown:
		return corpus.WriteMarkdown(deps.Stdout, res)
	}
	return corpus.WriteText(deps.Stdout, res)
}

// corpusBooter boots the command's guest, once per job.
type corpusBooter struct {
	gst *guest
	o   *guestOptions
	p   *progress
	n   int
}

func (b *corpusBooter) Run(ctx context.Context, job agentapi.Job, handle func(*vm.VM, agentapi.Event) error) (*vm.Result, error) {
	b.n++
	b.p.printf("booting guest %d under %s for the corpus's %s job", b.n, b.gst.accel.Name, job.Kind)
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	return vm.RunWith(ctx, b.gst.bootSpec(b.o, b.p), job, func(v *vm.VM, ev agentapi.Event) error {
		if guestEventHook != nil {
			guestEventHook(v, ev)
		}
		return handle(v, ev)
	})
}
