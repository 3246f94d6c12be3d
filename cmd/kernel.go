package cmd

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/internal/safefile"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

func init() { commandConstructors = append(commandConstructors, newKernelCmd) }

// kernelCheckOptions are the arguments of kata-cr kernel check.
type kernelCheckOptions struct {
	// Sources are config files, compressed configs, kernel images or Kata
	// fragment directories; none means the running kernel.
	Sources []string
	// Arch is the arch a fragment directory is merged for.
	Arch string
	// EmitFragment is where to write a fragment adding what is missing.
	EmitFragment string
	// procRoot and sysRoot are where the running kernel is looked at.
	procRoot, sysRoot string
}

func newKernelCmd(deps *Deps, g *globalOptions) *cobra.Command {
	k := &cobra.Command{
		Use:   "kernel",
		Short: "Check kernel configurations for what CRIU needs",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return c.Help()
		},
	}
	k.AddCommand(newKernelCheckCmd(deps, g))
	k.AddCommand(newKernelBuildCmd(deps, g))
	return k
}

func newKernelCheckCmd(deps *Deps, g *globalOptions) *cobra.Command {
	return newKernelCheckCmdWith(deps, g, func(ctx context.Context, o *kernelCheckOptions) error {
		return runKernelCheck(ctx, deps, g, o)
	})
}

// newKernelCheckCmdWith builds the command with run as its action, so that
// tests can capture the parsed options.
func newKernelCheckCmdWith(deps *Deps, g *globalOptions, run func(context.Context, *kernelCheckOptions) error) *cobra.Command {
	o := &kernelCheckOptions{procRoot: "/proc", sysRoot: "/sys"}
	c := &cobra.Command{
		Use:   "check [SOURCE...]",
		Short: "Report the kernel options CRIU needs as enabled, module or missing",
		Long: `check reads kernel configurations and reports every option CRIU needs as
enabled, module or missing, with its level (required, recommended, optional),
what breaks without it and the CRIU version that needs it.

A SOURCE is told by its content: a .config, a gzip'd (or xz, zstd, bzip2)
config such as /proc/config.gz, /boot/config-RELEASE or
/usr/lib/modules/RELEASE/config, a kernel image built with CONFIG_IKCONFIG
(bzImage, vmlinux, Image.gz), or a directory holding Kata's kernel config
fragments, merged the way Kata's kernel build merges them for --arch.
Without a SOURCE the running kernel is checked, modules loaded or not.

--emit-fragment writes a Kata-style config fragment that adds the missing
required and recommended options: copy it into the <arch>/ directory of
Kata's fragments and rebuild the guest kernel.

Exit codes: 0 no required option is missing, 3 one is, 1 a source could not
be read, 2 usage.`,
		Example: `  kata-cr kernel check
  kata-cr kernel check /boot/config-$(uname -r)
  kata-cr kernel check --arch x86_64 kata-containers/tools/packaging/kernel/configs/fragments
  kata-cr kernel check --emit-fragment criu.conf /usr/share/kata-containers/config-6.18.35
  kata-cr kernel check -o json /proc/config.gz`,
		RunE: func(c *cobra.Command, args []string) error {
			o.Sources = args
			if err := o.validate(); err != nil {
				return err
			}
			return run(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Arch, "arch", "", "arch a fragment directory is merged for: x86_64, arm64, s390, powerpc, riscv (default the host's)")
	f.StringVar(&o.EmitFragment, "emit-fragment", "", "write a Kata config fragment adding the missing options to `FILE`")
	return c
}

// validate checks the flags that need more than their type.
func (o *kernelCheckOptions) validate() error {
	if o.Arch == "" {
		o.Arch = kernel.KataArch(runtime.GOARCH)
		return nil
	}
	a := kernel.KataArch(o.Arch)
	if a == "" {
		return usagef("--arch %q: use one of %s", o.Arch, strings.Join(kernel.KataArches, ", "))
	}
	o.Arch = a
	return nil
}

func runKernelCheck(ctx context.Context, deps *Deps, g *globalOptions, o *kernelCheckOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := o.validate(); err != nil {
		return err
	}
	if _, err := renderOptions(deps, g); err != nil {
		return err
	}
	r := reports.New("kernel check", Version)
	var configs []*kernel.Config
	runner := checks.Runner{Checks: checks.KernelChecks()}

	if len(o.Sources) == 0 {
		env, err := runningKernelEnv(o)
		if err != nil {
			return err
		}
		configs = append(configs, env.Config)
		r.Target = reports.Target{Kind: "host", KernelRelease: env.KernelRelease, Arch: env.Config.Arch,
			Sources: []string{"kernel config " + env.Config.Source}}
		r.Findings = runner.Run(ctx, env)
	} else {
		r.Target = reports.Target{Kind: "file"}
		for _, src := range o.Sources {
			cfg, err := kernel.LoadArch(src, o.Arch)
			if err != nil {
				return err
			}
			configs = append(configs, cfg)
			r.Target.Sources = append(r.Target.Sources, describeSource(cfg))
			r.Findings = append(r.Findings, runner.Run(ctx, &checks.Env{Config: cfg, ConfigSource: cfg.Source})...)
		}
		if len(configs) == 1 {
			r.Target.KernelRelease = configs[0].Version
			r.Target.Arch = configs[0].Arch
		}
	}
	r.Verdict = kernelVerdict(r.Findings)

	if o.EmitFragment != "" {
		if err := writeFragment(deps, o.EmitFragment, configs); err != nil {
			return err
		}
	}
	return render(deps, g, r)
}

// runningKernelEnv is the Env of the kernel kata-cr runs on.
func runningKernelEnv(o *kernelCheckOptions) (*checks.Env, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, fmt.Errorf("read kernel release: %w", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	cfg, err := kernel.Running(o.procRoot, release)
	if err != nil {
		return nil, fmt.Errorf("no SOURCE given and %w", err)
	}
	env, err := checks.NewHostEnv(o.procRoot, o.sysRoot)
	if err != nil {
		return nil, fmt.Errorf("read procfs at %s: %w", o.procRoot, err)
	}
	env.KernelRelease = release
	env.ModulesDir = modulesDir(release)
	env.Config, env.ConfigSource = cfg, cfg.Source
	return env, nil
}

// describeSource names a source in the report's target.
func describeSource(c *kernel.Config) string {
	if len(c.Fragments) > 0 {
		return fmt.Sprintf("%s (Kata fragments for %s: %d merged, %d excluded)", c.Source, c.Arch, len(c.Fragments), len(c.Excluded))
	}
	return c.Source
}

// kernelVerdict names the required options that failed.
func kernelVerdict(fs []reports.Finding) string {
	var failed []string
	seen := map[string]bool{}
	for _, f := range fs {
		if f.Blocking() && !seen[f.ID] {
			seen[f.ID] = true
			failed = append(failed, strings.TrimPrefix(f.ID, "kernel."))
		}
	}
	if len(failed) == 0 {
		return "no required kernel option is missing"
	}
	return fmt.Sprintf("%d required kernel option(s) missing or unusable: %s", len(failed), strings.Join(failed, ", "))
}

// writeFragment writes the fragment that adds the required and recommended
// options missing from configs.
func writeFragment(deps *Deps, path string, configs []*kernel.Config) error {
	missing := kernel.MissingFor(configs...)
	// EmitFragment leaves out what the config it is given already has; with
	// several sources an option one has may be what another misses, so the
	// fragment then sets every option of the missing requirements.
	var have *kernel.Config
	if len(configs) == 1 {
		have = configs[0]
	}
	data := kernel.EmitFragment(have, missing...)
	// The fragment is meant to be shared: 0644 whatever the umask. A
	// device or FIFO in its place is refused, never written through.
	if err := safefile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("write fragment: %w: give the path of a new or regular file", err)
	}
	names := make([]string, 0, len(missing))
	for _, m := range missing {
		names = append(names, m.Option)
	}
	sort.Strings(names)
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	if len(missing) == 0 {
		fmt.Fprintf(deps.Stderr, "kata-cr: wrote %s: nothing is missing\n", abs)
		return nil
	}
	fmt.Fprintf(deps.Stderr, "kata-cr: wrote %s adding %s; copy it into the %s/ directory of Kata's kernel config fragments\n",
		abs, strings.Join(names, ", "), fragmentArch(configs))
	return nil
}

// fragmentArch names the fragment directory the configs share, "<arch>"
// when they do not tell or disagree.
func fragmentArch(configs []*kernel.Config) string {
	a := configs[0].Arch
	for _, c := range configs[1:] {
		if c.Arch != a {
			return "<arch>"
		}
	}
	if a == "" {
		return "<arch>"
	}
	return a
}
