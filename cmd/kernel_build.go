package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kata-cr/kata-cr/internal/safefile"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/kernel/kbuild"
	"github.com/kata-cr/kata-cr/reports"
)

// kernelBuildOptions are the arguments of kata-cr kernel build.
type kernelBuildOptions struct {
	Fragments, Source, Arch string
	Stock                   bool
	Jobs                    int
	// KataConfigDir is where the Kata drop-in goes; Print shows it on
	// stdout instead.
	KataConfigDir string
	Print         bool
	Verbose       bool
}

func newKernelBuildCmd(deps *Deps, g *globalOptions) *cobra.Command {
	o := &kernelBuildOptions{}
	c := &cobra.Command{
		Use:   "build --fragments DIR [--source 6.12|TARBALL] [--stock]",
		Short: "Build Kata's guest kernel from Kata's fragments, with kata-cr's CRIU fragment",
		Long: `build builds Kata's guest kernel the way Kata's own kernel build does
(tools/packaging/kernel/build-kernel.sh): the fragments of --fragments (a Kata
checkout's tools/packaging/kernel/configs, or its fragments directory),
common/*.conf without those whose header excludes the arch, then
<arch>/*.conf, merged on allnoconfig by the kernel's merge_config.sh -r -n,
and by default kata-cr's CRIU fragment last (what kernel check
--emit-fragment writes for those fragments); --stock leaves it out.

Like Kata's build it refuses when an option the fragments ask for did not
make the final .config, unless Kata's whitelist.conf (or
whitelist-VERSION.conf) names it, and lists them. The source is a Debian
kernel source series fetched into kata-cr's cache by
scripts/fetch-kernel.sh source 6.12, or a kernel source tarball. The output
says which source version was used against the version Kata pins.

make runs with every CPU (--jobs). The kernel is cached in kata-cr's cache
by a hash of its inputs: the same build again is taken from the cache at
once. The unpacked source and its object tree are kept per source and arch,
so the other variant (--stock) builds incrementally. Boot the kernel with
kata-cr doctor --kernel-version NAME (or checkpoint, guest shell).
--kata-config-dir DIR writes a Kata configuration drop-in
(DIR/config.d/` + kbuild.DropInName + `) booting it; --print shows the drop-in on
stdout instead of the report.

Exit codes: 0 built or cached, 1 the fragments, the source or the build
failed (a directory that is not a fragment tree, a tarball that is not a
kernel source, an arch the tree has no fragments for, a full disk), 2 usage
(an unknown --arch), 3 options the fragments ask for did not make the final
.config.`,
		Example: `  scripts/fetch-kernel.sh source 6.12
  kata-cr kernel build --fragments kata-containers/tools/packaging/kernel/configs
  kata-cr kernel build --fragments DIR --stock -o json
  kata-cr kernel build --fragments DIR --kata-config-dir /etc/kata-containers
  kata-cr doctor --kernel-version 6.12.118-x86_64-criu-0123456789ab`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runKernelBuild(c.Context(), deps, g, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Fragments, "fragments", "", "Kata's kernel config fragment tree `DIR` (tools/packaging/kernel/configs)")
	f.StringVar(&o.Source, "source", "6.12", "kernel source: a Debian `SERIES` fetched by scripts/fetch-kernel.sh source SERIES, or a source tarball")
	f.StringVar(&o.Arch, "arch", "", "architecture to build for (default: the host's)")
	f.BoolVar(&o.Stock, "stock", false, "build Kata's configuration as it is, without kata-cr's CRIU fragment")
	f.IntVarP(&o.Jobs, "jobs", "j", 0, "make -j `N` (default: every CPU)")
	f.StringVar(&o.KataConfigDir, "kata-config-dir", "", "write a Kata drop-in booting the kernel into `DIR`/config.d (DIR holds configuration.toml)")
	f.BoolVar(&o.Print, "print", false, "print the Kata drop-in on stdout instead of the report")
	f.BoolVarP(&o.Verbose, "verbose", "v", false, "show progress, and merge_config.sh's and make's output, on stderr")
	_ = c.MarkFlagRequired("fragments")
	return c
}

func runKernelBuild(ctx context.Context, deps *Deps, g *globalOptions, o *kernelBuildOptions) error {
	opts, err := renderOptions(deps, g)
	if err != nil {
		return err
	}
	if opts.Format != reports.Text && opts.Format != reports.JSON {
		return usagef("-o %s: kernel build writes text or json", g.Output)
	}
	if o.Arch != "" && kernel.KataArch(o.Arch) == "" {
		return usagef("--arch %q: use one of %s", o.Arch, strings.Join(kernel.KataArches, ", "))
	}
	if o.Jobs < 0 {
		return usagef("--jobs %d: give a positive number", o.Jobs)
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	p := newProgress(deps, o.Verbose)
	bo := kbuild.Options{Fragments: o.Fragments, Source: o.Source, Arch: o.Arch, Jobs: o.Jobs,
		Progress: func(msg string) { p.printf("%s", msg) }}
	if o.Stock {
		bo.Variant = kbuild.Stock
	}
	if o.Verbose {
		bo.Log = deps.Stderr
	}
	r, err := kbuild.Build(ctx, bo)
	var notLanded *kbuild.NotLandedError
	var archErr *kbuild.ArchError
	switch {
	case errors.As(err, &notLanded):
		fmt.Fprintf(deps.Stderr, "kata-cr: %s\n", notLanded)
		return errCheckFailed
	case errors.As(err, &archErr):
		return usageError{err}
	case err != nil:
		return err
	}
	if o.Print {
		data, err := kbuild.DropIn(r)
		if err != nil {
			return err
		}
		_, err = deps.Stdout.Write(data)
		return err
	}
	if o.KataConfigDir != "" {
		path, err := kbuild.WriteDropIn(o.KataConfigDir, r, func(p string, data []byte) error {
			return safefile.Write(p, data, 0o644)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(deps.Stderr, "kata-cr: wrote %s: Kata's qemu guest boots %s\n", path, r.Kernel)
	}
	if opts.Format == reports.JSON {
		enc := json.NewEncoder(deps.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	writeKernelBuild(deps.Stdout, r)
	return nil
}

// writeKernelBuild is the text twin of the JSON result.
func writeKernelBuild(w io.Writer, r *kbuild.Result) {
	how := "from scratch"
	if r.Incremental {
		how = "incremental, on the object tree of an earlier build"
	}
	built := fmt.Sprintf("built in %s (make -j%d, %s)", secondsText(r.BuildSeconds), r.Jobs, how)
	if r.CacheHit {
		fmt.Fprintf(w, "kernel %s (%s, %s): taken from the cache in %s; %s on %s\n", r.Release, r.Arch, r.Variant, secondsText(r.Seconds), built, r.BuiltAt)
	} else {
		fmt.Fprintf(w, "kernel %s (%s, %s): %s\n", r.Release, r.Arch, r.Variant, built)
	}
	fmt.Fprintf(w, "  name:      %s (kata-cr doctor --kernel-version %s)\n", r.Name, r.Name)
	fmt.Fprintf(w, "  kernel:    %s\n", r.Kernel)
	fmt.Fprintf(w, "  config:    %s\n", r.Config)
	src := "Linux " + r.Source.Version
	if r.Source.Package != "" {
		src += " (" + r.Source.Package + ")"
	}
	fmt.Fprintf(w, "  source:    %s, %s\n", src, r.Source.Tarball)
	fmt.Fprintf(w, "  versions:  %s\n", r.VersionNote)
	frag := fmt.Sprintf("%s: %d merged, %d excluded for %s", r.Fragments, r.Merged, len(r.Excluded), r.Arch)
	if r.Kata.ConfigVersion != "" {
		frag += ", kata_config_version " + r.Kata.ConfigVersion
	}
	fmt.Fprintf(w, "  fragments: %s\n", frag)
	if r.Variant == kbuild.CRIU {
		fmt.Fprintf(w, "  criu:      %s sets %s\n", r.CRIUFragment, strings.Join(r.CRIUOptions, ", "))
	} else {
		fmt.Fprintf(w, "  criu:      none (--stock)\n")
	}
	if len(r.Whitelisted) > 0 {
		names := make([]string, len(r.Whitelisted))
		for i, u := range r.Whitelisted {
			names[i] = u.Option
		}
		fmt.Fprintf(w, "  whitelist: %d requested option(s) not in the final .config, excused by Kata's whitelist: %s\n", len(names), strings.Join(names, ", "))
	}
}

func secondsText(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(100 * time.Millisecond).String()
}
