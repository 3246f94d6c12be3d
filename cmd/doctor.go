package cmd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

func init() { commandConstructors = append(commandConstructors, newDoctorCmd) }

// The targets of kata-cr doctor.
const (
	targetGuest = "guest"
	targetHost  = "host"
)

// doctorOptions are the flags of kata-cr doctor.
type doctorOptions struct {
	Target string
	// PIDArg is --pid as typed; PID is its value once validated, 0 when
	// no process was given.
	PIDArg       string
	PID          int
	CRIUPath     string
	KernelConfig string
	Fix          bool

	// procRoot and sysRoot are where the host doctor reads procfs and
	// sysfs; tests point them at fixture trees.
	procRoot, sysRoot string

	// guest holds the flags of the guest target (cmd/guest.go).
	guest guestOptions
}

func newDoctorCmd(deps *Deps, g *globalOptions) *cobra.Command {
	return newDoctorCmdWith(deps, g, nil)
}

// newDoctorCmdWith builds the command; a non-nil runF replaces the run, so
// that tests can capture the parsed options.
func newDoctorCmdWith(deps *Deps, g *globalOptions, runF func(context.Context, *doctorOptions) error) *cobra.Command {
	o := &doctorOptions{procRoot: "/proc", sysRoot: "/sys"}
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check whether CRIU can checkpoint and restore here, and why not",
		Long: `kata-cr doctor checks everything CRIU needs: the criu binary and
'criu check', the kernel's options and modules, the loopback device, devpts,
the network lock backend and privileges. With --pid it checks the process
tree rooted at PID the way CRIU will see it and predicts whether a dump will
succeed.

--target guest (the default) boots a Kata-style guest and runs the checks
inside it; --target host checks the machine kata-cr runs on.
--fix applies the fixes kata-cr can make itself (bring lo up, mount devpts,
load modules), then checks again.

Exit codes: 0 no required check failed, 3 one did, 1 the checks could not
run (no such --pid, a --criu or --kernel-config that cannot be read, a guest
that failed), 2 usage.`,
		Example: `  kata-cr doctor --target host
  kata-cr doctor --target host --pid 1234 -o json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(c.Context(), o)
			}
			if o.Target == targetHost {
				return runHostDoctor(c.Context(), deps, g, o)
			}
			return runGuestDoctor(c.Context(), deps, g, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Target, "target", targetGuest, "where to check: guest (boot a Kata-style guest) or host")
	f.StringVar(&o.PIDArg, "pid", "", "check the process tree rooted at `PID` and predict its dump")
	f.StringVar(&o.CRIUPath, "criu", "", "criu binary to use (default: criu on PATH, then "+criu.DefaultPath+")")
	f.StringVar(&o.KernelConfig, "kernel-config", "", "kernel config `FILE` to check instead of the running kernel's")
	f.BoolVar(&o.Fix, "fix", false, "apply the fixes kata-cr can make (lo up, devpts, modules), then check again")
	o.guest.addFlags(f, false)
	return c
}

// validate checks the flags that need more than their type.
func (o *doctorOptions) validate() error {
	switch o.Target {
	case targetGuest, targetHost:
	default:
		return usagef("--target %q: use guest or host", o.Target)
	}
	if o.PIDArg != "" {
		n, err := strconv.Atoi(strings.TrimSpace(o.PIDArg))
		if err != nil || n <= 0 {
			return usagef("--pid %q: not a process ID: pass a positive number", o.PIDArg)
		}
		o.PID = n
	}
	return nil
}

// hostFixers are the fixers --fix may apply on the host.
func hostFixers() []checks.Fixer {
	return []checks.Fixer{checks.LoopbackFixer(), checks.DevptsFixer(), checks.ModuleFixer()}
}

// hostChecks are every check the host doctor runs.
func hostChecks() []checks.Check {
	var cs []checks.Check
	for _, group := range [][]checks.Check{
		checks.SystemChecks(), checks.CRIUChecks(), checks.KernelChecks(),
		checks.ProcessChecks(), checks.MountChecks(),
	} {
		cs = append(cs, group...)
	}
	return cs
}

// runHostDoctor checks the machine kata-cr runs on.
func runHostDoctor(ctx context.Context, deps *Deps, g *globalOptions, o *doctorOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	// Decide the output format before the work, so a bad -o fails fast.
	if _, err := renderOptions(deps, g); err != nil {
		return err
	}
	env, target, err := hostEnv(ctx, o)
	if err != nil {
		return err
	}
	res := checks.Doctor(ctx, env, checks.Runner{Checks: hostChecks(), Workers: checkWorkers}, hostFixers(),
		checks.DoctorOptions{Fix: o.Fix, Predict: env.PID != 0})
	r := reports.New("doctor", Version)
	r.Target, r.Findings, r.Actions, r.Prediction = target, res.Findings, res.Actions, res.Plan
	return render(deps, g, r)
}

// checkWorkers bounds how many checks run at once. Checks only read, and
// most of their time is spent waiting for criu or tar, so a few run
// side by side even on two cores.
const checkWorkers = 4

// hostEnv gathers what the checks read on this machine. Bad flag values
// are errors; a missing criu or kernel config is not: the checks that need
// them skip with the reason.
func hostEnv(ctx context.Context, o *doctorOptions) (*checks.Env, reports.Target, error) {
	target := reports.Target{Kind: targetHost}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, target, fmt.Errorf("read kernel release: %w", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	target.KernelRelease = release
	target.Arch = unix.ByteSliceToString(u.Machine[:])

	env, err := checks.NewHostEnv(o.procRoot, o.sysRoot)
	if err != nil {
		return nil, target, fmt.Errorf("read procfs at %s: %w", o.procRoot, err)
	}
	env.KernelRelease = release
	env.ModulesDir = modulesDir(release)

	if o.KernelConfig != "" {
		cfg, err := kernel.Load(o.KernelConfig)
		if err != nil {
			// kernel.Load's error names the file already.
			return nil, target, fmt.Errorf("--kernel-config: %w", err)
		}
		env.Config, env.ConfigSource = cfg, cfg.Source
	} else if cfg, err := kernel.Running(o.procRoot, release); err == nil {
		env.Config, env.ConfigSource = cfg, cfg.Source
	} else {
		env.ConfigSource = err.Error() + ": pass --kernel-config FILE"
	}
	if env.Config != nil {
		target.Sources = append(target.Sources, "kernel config "+env.ConfigSource)
	}

	bin, v, err := criu.Open(ctx, o.CRIUPath)
	switch {
	case err == nil:
		env.CRIU = bin
		target.Sources = append(target.Sources, "criu "+bin.Path)
		target.CRIUVersion = v.String()
	case o.CRIUPath != "":
		return nil, target, fmt.Errorf("--criu: %w", err)
	default:
		env.CRIUMissing = err.Error()
	}

	if o.PID != 0 {
		if _, err := os.Stat(filepath.Join(o.procRoot, strconv.Itoa(o.PID))); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, target, fmt.Errorf("--pid %d: no such process: pass the PID of a running process", o.PID)
			}
			return nil, target, fmt.Errorf("--pid %d: %w", o.PID, err)
		}
		env.PID = o.PID
		target.Sources = append(target.Sources, fmt.Sprintf("process tree of pid %d", o.PID))
	}
	return env, target, nil
}

// modulesDir is where the modules of release live: /lib/modules, or
// /usr/lib/modules on a merged-/usr system without the /lib link.
func modulesDir(release string) string {
	for _, d := range []string{"/lib/modules", "/usr/lib/modules"} {
		p := filepath.Join(d, release)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join("/lib/modules", release)
}
